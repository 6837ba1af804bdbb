"""The report of ``paravox study dino``: the DINO paper's four findings as tables, curves and
one verdict per claim (:mod:`paravox.pipelines.dino_study`)."""

from __future__ import annotations

from pathlib import Path

from paravox.report.document import Document
from paravox.report.plots import metric_curves_plot
from paravox.report.tables import interval_verdict, pct, with_ci


def pct_dash(x: float | None) -> str:
    """A percentage, an en dash when missing."""
    return pct(x, missing="–")


PROXIES = {"style": "emotion proxy", "fluency": "pathological-speech proxy",
           "language": "language ID"}


def _uar(row: dict) -> str:
    return with_ci(row["uar"], row.get("uar_ci"))


CHANNEL_NOTE = "; their audio passed through the same kind of random channel as the test audio"


def _rule(rule: str) -> str:
    """How the sweep's row was chosen, as a clause of the report's first paragraph."""
    if rule == "clearly better":
        return (": the recipe (the first row) stays unless a row's whole dev interval lies "
                "below the recipe's dev EER")
    return ": the lowest dev EER"


def sweep_table(payload: dict) -> tuple[list[str], list[list[str]]]:
    """One row per DINO setting tried: teacher sharpness, effective rank, dev and test EER of
    the teacher, test EER of the student, training time (from the run folder, so a reused
    run shows what it took to train, "–" where that was not recorded)."""
    header = ["setting", "change from dino_demo", "steps", "teacher entropy / log K",
              "effective rank", f"{payload.get('selection_split', 'dev')} EER % (95 % CI)",
              "test EER % (95 % CI)", "student test EER %", "test minDCF 0.01", "training s"]
    rows = []
    for name, r in payload["sweep"].items():
        ent = (f"{r['teacher_entropy']:.2f} / {r['log_prototypes']:.2f}"
               if r.get("teacher_entropy") is not None else "–")
        rank = f"{r['effective_rank']:.1f}" if r.get("effective_rank") is not None else "–"
        student = r.get("student_test")
        mark = " **(chosen)**" if name == payload["best"] else ""
        rows.append([name + mark, ", ".join(o.split(".", 1)[1] for o in r["overrides"]) or "–",
                     r["steps"], ent, rank, with_ci(r["dev"]["eer"], r["dev"].get("eer_ci")),
                     with_ci(r["test"]["eer"], r["test"]["eer_ci"]),
                     pct_dash(student["eer"]) if student else "–",
                     f"{r['test']['min_dcf_0.01']:.3f}",
                     f"{r['train_seconds']:.0f}" if r.get("train_seconds") else "–"])
    return header, rows


def models_table(payload: dict) -> tuple[list[str], list[list[str]]]:
    """Finding 1: SV and every task (linear probe / staged fine-tuning UAR) per model."""
    tasks = payload["tasks"]
    header = ["model", "steps", "SV EER % (95 % CI)", "minDCF 0.01"]
    header += [f"{t} UAR % linear / staged (95 % CI)" for t in tasks]
    rows = []
    for key, r in payload["models"].items():
        row = [payload["names"][key], r["steps"], with_ci(r["sv"]["eer"], r["sv"]["eer_ci"]),
               f"{r['sv']['min_dcf_0.01']:.3f}"]
        for t in tasks:
            c = r["classify"][t]
            row.append(f"{pct_dash(c['linear']['uar'])} / {_uar(c['staged'])}")
        rows.append(row)
    return header, rows


def finetune_table(payload: dict, names: list[str]) -> tuple[list[str], list[list[str]]]:
    """Per task, the UAR (with its interval) of the named fine-tuning rows."""
    header = ["task"] + names
    rows = [[f"{t} ({PROXIES.get(t, t)})"] + [_uar(payload["finetuning"][t][n]) for n in names]
            for t in payload["tasks"]]
    return header, rows


def chunk_order(payload: dict) -> list[str]:
    """The chunk-length rows, shortest first, whole utterances last."""
    first = next(iter(payload["finetuning"].values()), {})
    names = [n for n in first if n.startswith("chunks")]
    return sorted(names, key=lambda n: float("inf") if n.endswith("whole")
                  else float(n.split()[1]))


def _chunk(name: str) -> str:
    return name.replace("chunks ", "")


def claims(payload: dict) -> list[str]:
    """One line per claim of the paper, with what these numbers say."""
    m, ft, tasks = payload["models"], payload["finetuning"], payload["tasks"]
    d, x, s = m["dino"], m["xvector"], m["simclr"]
    lines = []
    v = interval_verdict(d["sv"]["eer"], d["sv"]["eer_ci"], x["sv"]["eer"], x["sv"]["eer_ci"],
                         False)
    lines.append(f"**1a. DINO beats the supervised x-vector on speaker verification**: "
                 f"{v} (EER {pct_dash(d['sv']['eer'])} vs {pct_dash(x['sv']['eer'])} %).")
    v = interval_verdict(d["sv"]["eer"], d["sv"]["eer_ci"], s["sv"]["eer"], s["sv"]["eer_ci"],
                         False)
    lines.append(f"**1b. DINO beats SimCLR on speaker verification** (same steps): {v} "
                 f"(EER {pct_dash(d['sv']['eer'])} vs {pct_dash(s['sv']['eer'])} %).")
    for t in tasks:
        a, b = d["classify"][t]["staged"], x["classify"][t]["staged"]
        v = interval_verdict(a["uar"], a.get("uar_ci"), b["uar"], b.get("uar_ci"), True)
        lines.append(f"**1c. DINO beats the x-vector on {t}** ({PROXIES.get(t, t)}, staged "
                     f"fine-tuning): {v} (UAR {pct_dash(a['uar'])} vs {pct_dash(b['uar'])} %).")
    for t in tasks:
        r = ft[t]
        st = r["staged"]
        parts = []
        for other in ("all at once", "linear probe"):
            o = r[other]
            v = interval_verdict(st["uar"], st.get("uar_ci"), o["uar"], o.get("uar_ci"), True)
            parts.append(f"vs {other}: {v} ({pct_dash(st['uar'])} vs {pct_dash(o['uar'])})")
        lines.append(f"**2. Staged fine-tuning wins on {t}**: " + "; ".join(parts) + ".")
    names = chunk_order(payload)
    for t in tasks:
        r = ft[t]
        shortest, longest = names[0], names[-1]
        best = max(names, key=lambda n: r[n]["uar"])
        v = interval_verdict(r[longest]["uar"], r[longest].get("uar_ci"), r[shortest]["uar"],
                    r[shortest].get("uar_ci"), True)
        lines.append(f"**3. Shorter chunks are not better on {t}**: the longest "
                     f"({_chunk(longest)}, UAR {pct_dash(r[longest]['uar'])}) vs the shortest "
                     f"({_chunk(shortest)}, {pct_dash(r[shortest]['uar'])}): {v}; the best point "
                     f"estimate is {_chunk(best)} ({pct_dash(r[best]['uar'])}, read after the "
                     f"fact).")
    for t in tasks:
        a, b = ft[t]["staged"], ft[t]["staged, no augmentation"]
        v = interval_verdict(a["uar"], a.get("uar_ci"), b["uar"], b.get("uar_ci"), True)
        lines.append(f"**4. Augmentation helps {t}**: {v} (UAR {pct_dash(a['uar'])} with, "
                     f"{pct_dash(b['uar'])} without).")
    return lines


def write_dino_study_report(out_dir: str | Path, payload: dict) -> tuple[Path, Path]:
    """``report.md`` + ``report.html`` in ``out_dir`` from the study's results."""
    out = Path(out_dir)
    fig = out / "figures"
    doc = Document("paravox: the DINO paper's findings at demo scale")
    doc.note("**The corpus is synthetic** (espeak-ng voices; the test audio is channel-"
             "degraded): the numbers rank methods and settings at this budget on this corpus; "
             "they are not estimates on real speech.")
    ftc = payload["finetune_config"]
    doc.paragraph(
        f"Corpus `{payload['corpus']}`, preset `{payload['preset']}`. DINO settings are chosen "
        f"on {payload.get('selection_split', 'dev')}-split trials (speakers disjoint from the "
        "test split; DINO never trains on them"
        f"{CHANNEL_NOTE if payload.get('selection_channel') else ''}"
        f"){_rule(payload.get('selection_rule', 'lowest'))}; every other number is on the "
        "test split. EER: cosine scoring, 95 % bootstrap interval over trials. UAR: 95 % "
        "bootstrap interval over test speakers. A claim *holds* only when the intervals do "
        f"not overlap. Fine-tuning: stage 1 (embedding layer + classifier) "
        f"{ftc['stage1_epochs']} epoch(s) at lr {ftc['stage1_lr']:g}, stage 2 (everything) "
        f"{ftc['stage2_epochs']} epoch(s) at lr {ftc['stage2_lr']:g} ('all at once': stage 2 "
        f"only), {ftc['crop_seconds']:g} s training crops, whole test utterances unless "
        "a chunk length is named.")
    doc.heading("The paper's claims on these numbers")
    for line in claims(payload):
        doc.paragraph(line)
    doc.heading("1. DINO vs x-vector vs SimCLR vs random init")
    doc.table(*models_table(payload))
    doc.paragraph(f"SimCLR and the tuned DINO train {payload['long_epochs']} epochs on the "
                  "unlabelled pretrain split; the x-vector trains its recipe on the labelled "
                  "train split (speaker labels); the recipe-budget DINO is the sweep's first "
                  "row.")
    curves = {payload["names"][k]: v for k, v in payload["curves"].items() if v}
    if curves:
        metric_curves_plot(curves, fig / "eer_vs_steps.png", "test EER %",
                           "speaker verification during training", percent=True)
        doc.image("figures/eer_vs_steps.png", "EER against training steps")
    ent = {payload["names"][k]: v for k, v in payload["entropy"].items() if v}
    log_k = payload["sweep"][payload["best"]].get("log_prototypes")
    if ent:
        metric_curves_plot(ent, fig / "teacher_entropy.png", "nats",
                           "DINO teacher entropy (falls as the teacher sharpens)",
                           hline=(log_k, "log K (uniform)") if log_k else None)
        doc.image("figures/teacher_entropy.png", "teacher entropy against steps")
    doc.heading("DINO settings tried (every one, at the recipe's budget)", 3)
    doc.table(*sweep_table(payload))
    doc.heading("2. Staged vs all-at-once fine-tuning vs linear probe (tuned DINO)")
    doc.table(*finetune_table(payload, ["linear probe", "all at once", "staged"]))
    doc.heading("3. Chunk length (staged fine-tuning, train and test on the same length)")
    doc.table(*finetune_table(payload, chunk_order(payload)))
    doc.paragraph(f"'chunks whole': training crops of {payload['whole_train_seconds']:g} s "
                  "(shorter utterances tiled), whole test utterances. Chunked testing averages "
                  "the class posteriors of an utterance's chunks.")
    doc.heading("4. Augmentation during fine-tuning (staged)")
    doc.table(*finetune_table(payload, ["staged", "staged, no augmentation"]))
    doc.paragraph("Augmentation: speed perturbation, reverberation, noise / babble, gain and "
                  "SpecAugment, as in pretraining.")
    doc.heading("Timing")
    doc.table(["stage", "wall s"], [[k, f"{v:.1f}"] for k, v in
                                    payload["timing_seconds"].items()])
    return doc.write(out)
