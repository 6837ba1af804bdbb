"""The MGF study's report: the results table, the clean-dev table, the paper's claims checked
against the numbers, training curves per loss term and the phone probe by layer."""

from __future__ import annotations

from pathlib import Path

from paravox.report.document import Document
from paravox.report.plots import layer_accuracy_plot, loss_terms_plot
from paravox.report.tables import (
    best_phone_layer,
    bold_best,
    frame_encoder_note,
    pct,
    spread_verdict,
)
from paravox.training.run_folder import run_metrics

SCALES = ("frame only", "phoneme only", "utterance only")
PAIRS = ("frame + phoneme", "frame + utterance", "phoneme + utterance")
ALL = "MGF (all three scales)"


def results_table(payload: dict) -> tuple[list[str], list[list[str]]]:
    """One row per model: phone probe (best layer, its frame accuracy and PER, the weighted
    sum), SV EER (bootstrap interval), closed-set speaker ID accuracy, style and language UAR
    (linear probes, test split)."""
    header = ["model", "phone probe: best layer", "frame acc. % ↑", "PER % ↓",
              "weighted layers acc. % / PER %", "SV EER % (95 % CI) ↓", "speaker ID acc. % ↑",
              "style UAR % ↑", "language UAR % ↑"]
    rows = []
    for name in payload["rows"]:
        r = payload["results"][name]
        best, w = best_phone_layer(r)
        sv, cl = r["sv"], r["classify_test"]
        rows.append([
            name, best["layer"] if best else "-", pct(best["frame_accuracy"]) if best else "-",
            pct(best["per"]) if best else "-",
            f"{pct(w['frame_accuracy'])} / {pct(w['per'])}" if w else "-",
            f"{pct(sv['eer'])} ({pct(sv['eer_ci'][0])}–{pct(sv['eer_ci'][1])})",
            pct(r["speaker_id"]["accuracy"]), pct(cl["style"]["uar"]),
            pct(cl["language"]["uar"])])
    for col, lower in ((2, False), (3, True), (5, True), (6, False), (7, False), (8, False)):
        bold_best(rows, col, lower_is_better=lower)
    return header, rows


def dev_table(payload: dict) -> tuple[list[str], list[list[str]]] | None:
    """The clean dev split: phone probe best layer accuracy, style and language UAR."""
    if not all("classify_dev" in payload["results"][n] for n in payload["rows"]):
        return None
    header = ["model", "phone probe: best layer", "frame acc. % ↑", "style UAR % ↑",
              "language UAR % ↑"]
    rows = []
    for name in payload["rows"]:
        r = payload["results"][name]
        best, _ = best_phone_layer(r, "dev")
        rows.append([name, best["layer"] if best else "-",
                     pct(best["frame_accuracy"]) if best else "-",
                     pct(r["classify_dev"]["style"]["uar"]),
                     pct(r["classify_dev"]["language"]["uar"])])
    for col in (2, 3, 4):
        bold_best(rows, col, lower_is_better=False)
    return header, rows


PHONE_SPREAD = 0.02  # the phone probe's spread over probe seeds / utterance subsets (measured)


def claims(payload: dict) -> list[str]:
    """The paper's claims, each checked on this run's numbers: phone-probe differences within
    :data:`PHONE_SPREAD` and EER differences within the bootstrap intervals are reported as
    not resolved."""
    res = payload["results"]

    def phone(name, split="test"):
        best, _ = best_phone_layer(res[name], split)
        return best["frame_accuracy"] if best else float("nan")

    def eer(name):
        return res[name]["sv"]["eer"]

    def eer_better(a, b):  # > 0 when a's interval lies below b's
        (alo, ahi), (blo, bhi) = res[a]["sv"]["eer_ci"], res[b]["sv"]["eer_ci"]
        return 1.0 if ahi < blo else (-1.0 if bhi < alo else 0.0)

    have = [n for n in (*SCALES, *PAIRS) if n in res]
    out = []
    if ALL in res and have:
        best_p = max(have, key=phone)
        out.append(f"**The combination beats every part on the phone probe: "
                   f"{spread_verdict(phone(ALL) - phone(best_p), PHONE_SPREAD)}** (all three "
                   f"scales {pct(phone(ALL))} %, best single scale or pair {best_p} "
                   f"{pct(phone(best_p))} %; test split, best layer).")
        best_e = min(have, key=eer)
        out.append(f"**The combination beats every part on SV: "
                   f"{spread_verdict(eer_better(ALL, best_e), 0.5)}** (EER {pct(eer(ALL))} % vs "
                   f"{best_e} {pct(eer(best_e))} %; a difference counts when the bootstrap "
                   f"intervals do not overlap).")
    gen = "generative at phoneme scale"
    if ALL in res and gen in res:
        out.append(f"**Each scale needs its own loss (contrastive, not generative, at the "
                   f"phoneme scale): {spread_verdict(phone(ALL) - phone(gen), PHONE_SPREAD)}** on "
                   f"the phone probe ({pct(phone(ALL))} vs {pct(phone(gen))} %), "
                   f"{spread_verdict(eer_better(ALL, gen), 0.5)} on SV (EER {pct(eer(ALL))} vs "
                   f"{pct(eer(gen))} %).")
    rand = [n for n in res if n.startswith("random init")]
    if ALL in res and "log-mel floor" in res and rand:
        for split in ("test", "dev"):
            if f"frames_{split}" not in res[ALL]:
                continue
            a, f, r = phone(ALL, split), phone("log-mel floor", split), phone(rand[0], split)
            out.append(f"**An MGF layer beats the log-mel floor on the phone probe ({split} "
                       f"split): {spread_verdict(a - f, PHONE_SPREAD)}; and the random encoder: "
                       f"{spread_verdict(a - r, PHONE_SPREAD)}** ({pct(a)} vs {pct(f)} and "
                       f"{pct(r)} %).")
        out.append(f"**MGF's embedding beats the random encoder on SV: "
                   f"{spread_verdict(eer_better(ALL, rand[0]), 0.5)}** ({pct(eer(ALL))} vs "
                   f"{pct(eer(rand[0]))} % EER).")
    return out


def write_mgf_report(out_dir: str | Path, payload: dict) -> tuple[Path, Path]:
    """``report.md`` + ``report.html`` in ``out_dir`` from the study's results."""
    out = Path(out_dir)
    fig = out / "figures"
    doc = Document("paravox: MGF (multi-granular SSL) and its ablations")
    doc.note("**The corpus is synthetic** (espeak-ng voices; test audio channel-degraded): "
             "the numbers rank methods at this budget on this corpus; they are not estimates "
             "on real speech.")
    doc.paragraph(
        f"Corpus `{payload['corpus']}`, preset `{payload['preset']}`. Every trained row uses "
        "the same data and budget (the `mgf_demo`, `dino_demo` and `simclr_demo` recipes). "
        "Phone probe: a linear probe per layer on frozen frame outputs (10 ms label grid), "
        "best layer and the learned weighted sum of equal-width layers; PER with a 9-frame "
        "majority filter. SV: cosine scoring of the test trials, bootstrap interval. "
        "Speaker ID: a linear probe on half of each training speaker's utterances, tested on "
        "the other half (closed set). Style and language: linear probes, train -> test. "
        "The log-mel floor's utterance embedding is the mean and std of its frames."
        + frame_encoder_note(payload, "MGF rows"))
    doc.heading("Results (test split)")
    doc.table(*results_table(payload))
    dev = dev_table(payload)
    if dev:
        doc.heading("Clean dev split", 3)
        doc.table(*dev)
        doc.paragraph("The dev split is speaker-disjoint and has the training channel: it "
                      "shows what the representations hold apart from the test channel.")
    doc.heading("The paper's claims on these numbers")
    for line in claims(payload):
        doc.paragraph(line)
    doc.paragraph(f"A phone-probe difference under {100 * PHONE_SPREAD:.0f} points is within "
                  "the spread of the probe itself (best-layer frame accuracy of one bundle over "
                  "probe seeds and utterance subsets); an EER difference counts only when the "
                  "bootstrap intervals do not overlap.")

    logs = {n: run_metrics(path) for n, path in payload.get("runs", {}).items()
            if n in payload["variants"]}
    logs = {n: rows for n, rows in logs.items() if rows}
    if logs:
        doc.heading("Training curves per loss term")
        loss_terms_plot(logs, ["train/frame", "train/phone", "train/utterance"],
                        fig / "loss_terms.png")
        doc.image("figures/loss_terms.png", "MGF loss terms per variant")
        doc.paragraph("Each panel is one loss term, one line per variant that trains it "
                      "(running mean). The phoneme-scale panel mixes the contrastive loss and, "
                      "for the generative ablation, a reconstruction loss.")
    doc.heading("Phone probe by layer")
    for split in ("test", "dev"):
        curves = {n: r[f"frames_{split}"]["rows"] for n, r in payload["results"].items()
                  if f"frames_{split}" in r and n != "log-mel floor"}
        floor = payload["results"].get("log-mel floor", {}).get(f"frames_{split}")
        if not curves:
            continue
        fs = floor["summary"] if floor else None
        layer_accuracy_plot(curves, fig / f"phone_layers_{split}.png",
                            floor=fs["log_mel"]["frame_accuracy"] if fs else None,
                            chance=fs["chance"] if fs else None,
                            title=f"phone probe by layer, {split} split")
        doc.image(f"figures/phone_layers_{split}.png", f"phone probe by layer, {split}")
    doc.heading("Timing")
    doc.table(["stage", "wall s"], [[k, f"{v:.1f}"] for k, v in
                                    payload["timing_seconds"].items()])
    return doc.write(out)
