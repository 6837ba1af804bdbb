"""The MGF study's report: the results table, the clean-dev table, the paper's claims checked
against the numbers, training curves per loss term and the phone probe by layer."""

from __future__ import annotations

from pathlib import Path

from paravox.methods.run_folder import run_metrics
from paravox.report.demo_report import _bold_best, _pct
from paravox.report.document import Document

SCALES = ("frame only", "phoneme only", "utterance only")
PAIRS = ("frame + phoneme", "frame + utterance", "phoneme + utterance")
ALL = "MGF (all three scales)"


def _phone(r: dict, split: str = "test") -> tuple[dict | None, dict | None]:
    fr = r.get(f"frames_{split}")
    if not fr:
        return None, None
    s = fr["summary"]
    best = s.get("log_mel") if "log_mel" in s and s["best"]["layer"] == "log-mel" else s["best"]
    return best, s.get("weighted")


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
        best, w = _phone(r)
        sv, cl = r["sv"], r["classify_test"]
        rows.append([
            name, best["layer"] if best else "-", _pct(best["frame_accuracy"]) if best else "-",
            _pct(best["per"]) if best else "-",
            f"{_pct(w['frame_accuracy'])} / {_pct(w['per'])}" if w else "-",
            f"{_pct(sv['eer'])} ({_pct(sv['eer_ci'][0])}–{_pct(sv['eer_ci'][1])})",
            _pct(r["speaker_id"]["accuracy"]), _pct(cl["style"]["uar"]),
            _pct(cl["language"]["uar"])])
    for col, lower in ((2, False), (3, True), (5, True), (6, False), (7, False), (8, False)):
        _bold_best(rows, col, lower_is_better=lower)
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
        best, _ = _phone(r, "dev")
        rows.append([name, best["layer"] if best else "-",
                     _pct(best["frame_accuracy"]) if best else "-",
                     _pct(r["classify_dev"]["style"]["uar"]),
                     _pct(r["classify_dev"]["language"]["uar"])])
    for col in (2, 3, 4):
        _bold_best(rows, col, lower_is_better=False)
    return header, rows


PHONE_SPREAD = 0.02  # the phone probe's spread over probe seeds / utterance subsets (measured)


def _verdict(diff: float, tolerance: float) -> str:
    """``holds`` / ``does not hold`` when the difference (positive = the claim's direction)
    exceeds ``tolerance``, else ``not resolved``."""
    if diff > tolerance:
        return "holds"
    return "does not hold" if diff < -tolerance else "not resolved (within the spread)"


def claims(payload: dict) -> list[str]:
    """The paper's claims, each checked on this run's numbers: phone-probe differences within
    :data:`PHONE_SPREAD` and EER differences within the bootstrap intervals are reported as
    not resolved."""
    res = payload["results"]

    def phone(name, split="test"):
        best, _ = _phone(res[name], split)
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
                   f"{_verdict(phone(ALL) - phone(best_p), PHONE_SPREAD)}** (all three "
                   f"scales {_pct(phone(ALL))} %, best single scale or pair {best_p} "
                   f"{_pct(phone(best_p))} %; test split, best layer).")
        best_e = min(have, key=eer)
        out.append(f"**The combination beats every part on SV: "
                   f"{_verdict(eer_better(ALL, best_e), 0.5)}** (EER {_pct(eer(ALL))} % vs "
                   f"{best_e} {_pct(eer(best_e))} %; a difference counts when the bootstrap "
                   f"intervals do not overlap).")
    gen = "generative at phoneme scale"
    if ALL in res and gen in res:
        out.append(f"**Each scale needs its own loss (contrastive, not generative, at the "
                   f"phoneme scale): {_verdict(phone(ALL) - phone(gen), PHONE_SPREAD)}** on "
                   f"the phone probe ({_pct(phone(ALL))} vs {_pct(phone(gen))} %), "
                   f"{_verdict(eer_better(ALL, gen), 0.5)} on SV (EER {_pct(eer(ALL))} vs "
                   f"{_pct(eer(gen))} %).")
    rand = [n for n in res if n.startswith("random init")]
    if ALL in res and "log-mel floor" in res and rand:
        for split in ("test", "dev"):
            if f"frames_{split}" not in res[ALL]:
                continue
            a, f, r = phone(ALL, split), phone("log-mel floor", split), phone(rand[0], split)
            out.append(f"**An MGF layer beats the log-mel floor on the phone probe ({split} "
                       f"split): {_verdict(a - f, PHONE_SPREAD)}; and the random encoder: "
                       f"{_verdict(a - r, PHONE_SPREAD)}** ({_pct(a)} vs {_pct(f)} and "
                       f"{_pct(r)} %).")
        out.append(f"**MGF's embedding beats the random encoder on SV: "
                   f"{_verdict(eer_better(ALL, rand[0]), 0.5)}** ({_pct(eer(ALL))} vs "
                   f"{_pct(eer(rand[0]))} % EER).")
    return out


def write_mgf_report(out_dir: str | Path, payload: dict) -> tuple[Path, Path]:
    """``report.md`` + ``report.html`` in ``out_dir`` from the study's results."""
    from paravox.report.plots import layer_accuracy_plot, loss_terms_plot

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
        "The log-mel floor's utterance embedding is the mean and std of its frames.")
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
