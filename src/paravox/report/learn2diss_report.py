"""The Learn2Diss study's report: one table per question (content in the frame encoder,
speaker information left in it, the utterance encoder's tasks, the MI), the paper's claims
checked against the numbers, the MI and loss curves over both stages, the probes by layer."""

from __future__ import annotations

from pathlib import Path

from paravox.report.document import Document
from paravox.report.mgf_report import PHONE_SPREAD
from paravox.report.plots import layer_accuracy_plot, staged_curves_plot
from paravox.report.tables import (
    best_phone_layer,
    bold_best,
    frame_encoder_note,
    pct,
    spread_verdict,
)

MAIN = "Learn2Diss (joint + MI penalty)"
NO_MI = "joint, no MI penalty"
STAGE1 = "stage 1 only (independent)"


def results_table(payload: dict) -> tuple[list[str], list[list[str]]]:
    """One row per model: phone probe on the frame encoder (best layer, test / clean dev),
    speaker ID from the frame encoder's pooled last layer, SV EER (bootstrap interval), style
    and language UAR on the utterance embedding, the phone probe on the utterance encoder's
    layers, and the held-out MI estimate."""
    header = ["model", "MI weight", "phone probe, frame enc. % ↑ (test / dev)",
              "speaker ID from frame enc. % ↓", "SV EER % (95 % CI) ↓", "style UAR % ↑",
              "language UAR % ↑", "phone probe, utterance enc. % (test)",
              "held-out MI (nats) ↓"]
    weights = payload.get("mi_weights", {})
    rows = []
    for name in payload["rows"]:
        r = payload["results"][name]
        test, _ = best_phone_layer(r, "test")
        dev, _ = best_phone_layer(r, "dev")
        utt = r.get("utterance_frames_test")
        sv, cl = r["sv"], r["classify_test"]
        w = weights.get(name, 0.0 if name == "stage 1 only (independent)" else None)
        rows.append([
            name, "-" if w is None else f"{w:g}",
            f"{pct(test['frame_accuracy']) if test else '-'} / "
            f"{pct(dev['frame_accuracy']) if dev else '-'}",
            pct(r["frame_speaker_id"]["accuracy"]),
            f"{pct(sv['eer'])} ({pct(sv['eer_ci'][0])}–{pct(sv['eer_ci'][1])})",
            pct(cl["style"]["uar"]), pct(cl["language"]["uar"]),
            pct(utt["summary"]["best"]["frame_accuracy"]) if utt else "-",
            f"{r['mi']['mi_test']:.1f}" if "mi" in r else "-"])
    for col, lower in ((3, True), (4, True), (5, False), (6, False)):
        bold_best(rows, col, lower_is_better=lower)
    return header, rows


def _mi_change(curve: dict) -> tuple[float, float] | None:
    """Mean logged MI over the first and the last fifth of stage 2."""
    pts = [(s, v) for s, v in curve["series"].get("train/mi", []) if s > curve["stage2_start"]]
    if len(pts) < 5:
        return None
    k = max(1, len(pts) // 5)
    first = sum(v for _, v in pts[:k]) / k
    last = sum(v for _, v in pts[-k:]) / k
    return first, last


def claims(payload: dict) -> list[str]:
    """The paper's claims and this issue's checks, each on this run's numbers (phone-probe
    differences under :data:`PHONE_SPREAD` and EER differences within the bootstrap intervals
    are not resolved)."""
    res, curves = payload["results"], payload.get("curves", {})
    out = []

    def phone(name):
        best, _ = best_phone_layer(res[name], "test")
        return best["frame_accuracy"] if best else float("nan")

    def eer_better(a, b):
        (alo, ahi), (blo, bhi) = res[a]["sv"]["eer_ci"], res[b]["sv"]["eer_ci"]
        return 1.0 if ahi < blo else (-1.0 if bhi < alo else 0.0)

    for name in [n for n in curves if n != STAGE1]:
        change = _mi_change(curves.get(name, {"series": {}, "stage2_start": 0}))
        if change:
            a, b = change
            out.append(f"**{name}: the MI estimate during stage 2 goes from {a:.1f} to "
                       f"{b:.1f} nats** ({'falls' if b < a else 'does not fall'}; measured "
                       f"by the q trained beside the encoders, which the encoders can "
                       f"outpace: the held-out estimate below is the fair comparison).")
    penalised = [n for n, w in payload.get("mi_weights", {}).items() if w and n in res]
    if NO_MI in res:
        b = res[NO_MI]
        for name in penalised:
            a, w = res[name], payload["mi_weights"][name]
            if "mi" in a and "mi" in b:
                ma, mb = a["mi"]["mi_test"], b["mi"]["mi_test"]
                out.append(f"**The penalty lowers the held-out MI (weight {w:g}): "
                           f"{spread_verdict(mb - ma, 0.1 * abs(mb))}** ({ma:.1f} vs {mb:.1f} nats "
                           f"without it; a fresh CLUB fitted on the training split, read on "
                           f"the test split; differences under 10 % are not resolved).")
            sa, sb = a["frame_speaker_id"]["accuracy"], b["frame_speaker_id"]["accuracy"]
            out.append(f"**Less speaker information in the frame encoder (weight {w:g}): "
                       f"{spread_verdict(sb - sa, 0.02)}** (speaker ID from its pooled last layer "
                       f"{pct(sa)} % vs {pct(sb)} % without the penalty).")
    if MAIN in res and NO_MI in res:
        a, b = res[MAIN], res[NO_MI]
        out.append(f"**Content (frame encoder) improves with disentangling: "
                   f"{spread_verdict(phone(MAIN) - phone(NO_MI), PHONE_SPREAD)}** (phone probe "
                   f"{pct(phone(MAIN))} vs {pct(phone(NO_MI))} %).")
        out.append(f"**Speaker verification (utterance encoder) improves: "
                   f"{spread_verdict(eer_better(MAIN, NO_MI), 0.5)}** (EER {pct(a['sv']['eer'])} "
                   f"vs {pct(b['sv']['eer'])} %).")
        for task in ("style", "language"):
            ua, ub = a["classify_test"][task]["uar"], b["classify_test"][task]["uar"]
            out.append(f"**{task.capitalize()} (utterance encoder) improves: "
                       f"{spread_verdict(ua - ub, 0.03)}** (UAR {pct(ua)} vs {pct(ub)} %; "
                       f"differences under 3 points are not resolved).")
    if STAGE1 in res and NO_MI in res:
        out.append(f"Joint training alone (no penalty) vs stage 1: phone probe "
                   f"{pct(phone(NO_MI))} vs {pct(phone(STAGE1))} %, EER "
                   f"{pct(res[NO_MI]['sv']['eer'])} vs {pct(res[STAGE1]['sv']['eer'])} %: "
                   f"what the extra steps give without disentangling.")
    return out


def write_learn2diss_report(out_dir: str | Path, payload: dict) -> tuple[Path, Path]:
    """``report.md`` + ``report.html`` in ``out_dir`` from the study's results."""
    out = Path(out_dir)
    fig = out / "figures"
    doc = Document("paravox: Learn2Diss (disentangled frame- and utterance-level SSL)")
    doc.note("**The corpus is synthetic** (espeak-ng voices; test audio channel-degraded): "
             "the numbers rank methods at this budget on this corpus; they are not estimates "
             "on real speech.")
    e1, e2 = payload.get("stage_epochs", ["?", "?"])
    doc.paragraph(
        f"Corpus `{payload['corpus']}`, preset `{payload['preset']}`. Learn2Diss rows: the "
        f"`learn2diss_demo` recipe, stage 1 ({e1} epochs, the two encoders independent, the MI "
        f"monitored) and stage 2 ({e2} epochs with the CLUB penalty at the weight shown; every "
        "stage-2 row starts from the same stage 1). Phone probe: a linear probe per layer on "
        "frozen frame outputs (best layer; test split / clean dev split). Speaker ID from the "
        "frame encoder: its last layer mean-pooled, a linear probe on half of each training "
        "speaker's utterances (lower = more disentangled). SV, style and language on the "
        "utterance embedding (cosine EER with a bootstrap interval; linear probes). Held-out "
        "MI: a fresh CLUB fitted on the training split's (pooled frames, embedding) pairs, "
        "read on the test split. MGF and DINO are one encoder each: their 'frame encoder' and "
        "'utterance embedding' are that encoder's layers and embedding."
        + frame_encoder_note(payload, "Learn2Diss rows"))
    doc.heading("Results (test split)")
    doc.table(*results_table(payload))
    doc.heading("The paper's claims on these numbers")
    for line in claims(payload):
        doc.paragraph(line)
    curves = payload.get("curves", {})
    if curves:
        doc.heading("MI and losses over training")
        staged_curves_plot(curves, ["train/mi", "train/frame", "train/utterance",
                                    "train/frame_accuracy"], fig / "stages.png",
                           {"train/mi": "CLUB MI estimate (nats)",
                            "train/frame": "masked unit prediction (CE)",
                            "train/utterance": "utterance NT-Xent",
                            "train/frame_accuracy": "masked unit accuracy"})
        doc.image("figures/stages.png", "MI estimate and loss terms over both stages")
        doc.paragraph("Running means per stage-2 variant, stage 1 shared (dashed line: stage "
                      "2 starts). The MI panel is the CLUB estimate against the q trained "
                      "beside the encoders.")
    doc.heading("Phone probe by layer")
    for key, title in (("frames_test", "frame encoder (or the model's layers), test"),
                       ("frames_dev", "frame encoder (or the model's layers), clean dev"),
                       ("utterance_frames_test", "utterance encoder, test")):
        rows = {n: r[key]["rows"] for n, r in payload["results"].items() if key in r}
        if rows:
            png = fig / f"layers_{key}.png"
            layer_accuracy_plot(rows, png, title=f"phone probe by layer: {title}")
            doc.image(f"figures/{png.name}", title)
    doc.heading("Timing")
    doc.table(["stage", "wall s"], [[k, f"{v:.1f}"] for k, v in
                                    payload["timing_seconds"].items()])
    return doc.write(out)
