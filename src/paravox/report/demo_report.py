"""The demo's report: results table, figures, configs and timing (Markdown + HTML)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from paravox.data.manifest import Manifest
from paravox.report.document import Document
from paravox.report.plots import (
    confusion_grid,
    det_plot,
    layer_accuracy_plot,
    projection_grid,
    training_curves,
)
from paravox.report.tables import bold_best, pct
from paravox.training.run_folder import run_metrics


def results_table(names: dict, results: dict) -> tuple[list[str], list[list[str]]]:
    """The headline table: one row per model (``names``: result key -> display name) with
    SV EER (bootstrap interval) and minDCF, and each task's UAR under both protocols (plus
    fluency per speaker); the best value of each column in bold."""
    header = ["model", "SV EER % (95 % CI) ↓", "minDCF 0.01 ↓"]
    for task in ("style", "fluency", "language"):
        header += [f"{task} UAR % linear ↑", f"{task} UAR % staged ↑"]
        if task == "fluency":
            header.append("fluency UAR % per speaker, staged ↑")
    rows = []
    for key, name in names.items():
        r = results[key]
        sv = r["sv"]
        row = [name, f"{pct(sv['eer'])} ({pct(sv['eer_ci'][0])}–{pct(sv['eer_ci'][1])})",
               f"{sv['min_dcf_0.01']:.3f}"]
        for task in ("style", "fluency", "language"):
            row += [pct(r["classify"][task][p]["uar"]) for p in ("linear", "staged")]
            if task == "fluency":
                spk = r["classify"]["fluency"]["staged"].get("speaker_level")
                row.append(pct(spk["uar"]) if spk else "-")
        rows.append(row)
    for col in range(1, len(header)):
        bold_best(rows, col, lower_is_better=col <= 2)
    return header, rows


def detail_table(names: dict, results: dict) -> tuple[list[str], list[list[str]]]:
    """Every classification metric (accuracy, UAR, macro-F1, split sizes) per task,
    protocol and model: the numbers the headline table leaves out."""
    header = ["task", "protocol", "model", "accuracy %", "UAR %", "macro-F1 %", "train / test"]
    rows = []
    for task in ("style", "fluency", "language"):
        for protocol in ("linear", "staged"):
            for key, name in names.items():
                r = results[key]["classify"][task][protocol]
                rows.append([task, protocol, name, pct(r["accuracy"]), pct(r["uar"]),
                             pct(r["macro_f1"]), f"{r['n_train']} / {r['n_test']}"])
    return header, rows


def frames_table(names: dict, results: dict, floor: dict) -> tuple[list[str], list[list[str]]]:
    """One row per model (and the log-mel floor): on the test split, the best layer's
    linear-probe frame accuracy and PER, the MLP probe on that layer and the weighted sum of
    layers; on the clean dev split (when probed), the best layer and its accuracy."""
    header = ["frame features", "best layer, test", "frame acc. % test", "PER % test",
              "MLP frame acc. % test", "weighted layers: acc. % / PER % test"]
    dev = "frames_dev" in floor
    if dev:
        header += ["best layer, clean dev", "frame acc. % dev"]

    def find(rows, layer, probe):
        return next((r for r in rows if r["layer"] == layer and r["probe"] == probe), None)

    f = floor["frames"]["summary"]["log_mel"]
    mlp = find(floor["frames"]["rows"], "log-mel", "mlp")
    rows = [["log-mel (floor)", "-", pct(f["frame_accuracy"]), pct(f["per"]),
             pct(mlp["frame_accuracy"]) if mlp else "-", "-"]]
    if dev:
        rows[0] += ["-", pct(floor["frames_dev"]["summary"]["log_mel"]["frame_accuracy"])]
    for key, name in names.items():
        fr = results[key].get("frames")
        if not fr:
            continue
        best, w = fr["summary"]["best"], fr["summary"].get("weighted")
        mlp = find(fr["rows"], best["layer"], "mlp")
        row = [name, best["layer"], pct(best["frame_accuracy"]), pct(best["per"]),
               pct(mlp["frame_accuracy"]) if mlp else "-",
               f"{pct(w['frame_accuracy'])} / {pct(w['per'])}" if w else "-"]
        if dev:
            best_dev = results[key]["frames_dev"]["summary"]["best"]
            row += [best_dev["layer"], pct(best_dev["frame_accuracy"])]
        rows.append(row)
    bold_best(rows, 2, lower_is_better=False)
    bold_best(rows, 3, lower_is_better=True)
    if dev:
        bold_best(rows, 7, lower_is_better=False)
    return header, rows


def write_report(out: Path, corpus: Path, summary: dict, names: dict, results: dict,
                 test_emb: dict, stages: list, machine: dict, preset: str,
                 finetune_yaml: str, frames_floor: dict | None = None) -> tuple[Path, Path]:
    """The demo's report under ``out`` (figures in ``out/figures``): what the synthetic
    corpus is, the results and detail tables, DET curves, training curves, t-SNE maps,
    confusions, timing per stage and the configurations. Returns the Markdown and HTML
    paths."""
    fig = out / "figures"
    doc = Document("paravox demo report")
    doc.note(
        f"**The corpus is synthetic.** `{corpus}` was generated by `paravox synth` with "
        f"espeak-ng formant synthesis ({summary['speakers']} speakers, "
        f"{summary['utterances']} utterances, {summary['hours']:.2f} h); test audio passed "
        "through a random channel (EQ, noise, reverberation). Its labels are **proxies**: "
        "*style* (neutral / high arousal / low arousal / whispered) stands in for emotion, "
        "*fluency* (inserted pauses, fillers, repetitions, slow rate) for pathological speech, "
        "*language* is espeak-ng's pronunciation rules over template word salad. The numbers "
        "show that the pipeline works and how the methods rank on this corpus at this short "
        "training budget; they are not estimates of performance on real speech.")
    doc.paragraph(
        f"Preset `{preset}`. Every model is evaluated the same way: speaker verification by "
        f"cosine scoring of whole test utterances on `trials.txt` ({summary['trials']} trials, "
        "test speakers unseen in training); each task by a **linear probe** (logistic regression "
        "on standardised frozen embeddings) and by **staged fine-tuning** (embedding layer + "
        "classifier on a frozen backbone, then the whole network at a 10x lower learning "
        "rate) on the labelled `train.jsonl`, tested on `test.jsonl` (speaker-disjoint). "
        "UAR = unweighted average recall. The random-init row is DINO's encoder before any "
        "training: the floor every method must beat.")

    doc.heading("Results")
    header, rows = results_table(names, results)
    doc.table(header, rows)
    any_model = next(iter(results.values()))["classify"]
    chance = ", ".join(f"{t} {100 / len(any_model[t]['linear']['classes']):.1f} %"
                       for t in ("style", "fluency", "language"))
    doc.paragraph(f"Chance: EER 50 %; UAR 100 / number of classes ({chance}). Best per column "
                  "in bold. Per speaker: the mean posterior over each test speaker's "
                  "utterances decides (fluency is a speaker trait here). The EER interval is a "
                  "bootstrap over trials (targets and non-targets resampled separately); "
                  "trials share utterances, so read it as a lower bound on the uncertainty.")

    if all("classify_dev" in r for r in results.values()):
        doc.heading("Linear probes: clean dev split vs channel-degraded test split", 3)
        rows = [[names[k]] + [f"{pct(r['classify_dev'][t]['uar'])} / "
                              f"{pct(r['classify'][t]['linear']['uar'])}"
                              for t in ("style", "fluency", "language")]
                for k, r in results.items()]
        doc.table(["model", "style UAR % dev / test", "fluency UAR % dev / test",
                   "language UAR % dev / test"], rows)
        doc.paragraph(
            "The probes learn from clean `train.jsonl` embeddings. On the clean, "
            "speaker-disjoint `dev.jsonl` they read style and language well; on the test "
            "split, whose audio passed through a random channel, the embeddings move and the "
            "probes collapse towards one class (see the confusion matrices). Staged "
            "fine-tuning trains with noise and reverberation augmentation and holds up. A "
            "frozen-embedding protocol is only as good as the embedding's channel robustness.")

    if frames_floor is not None:
        doc.heading("Frame level: phone classification from frozen frame features")
        doc.table(*frames_table(names, results, frames_floor))
        fs = frames_floor["frames"]["summary"]
        doc.paragraph(
            f"A linear probe (and an MLP on the best layer) on every layer's frame outputs, "
            f"read on the 10 ms grid of the espeak-ng phone alignments, trained on "
            f"`train.jsonl` ({fs['n_train_utterances']} utterances) and tested on the "
            f"channel-degraded `test.jsonl` ({fs['n_test_utterances']}); {fs['n_phones']} "
            f"phones, chance {pct(fs['chance'])} %. *Weighted layers*: a learned softmax "
            "weighting of the layers of equal width (SUPERB's protocol). PER: edit distance "
            "of the phone sequence (predictions majority-filtered over 9 frames, runs "
            "collapsed, silence dropped) over the reference length. The clean dev split "
            "(speaker-disjoint, the training channel) shows what the frames hold apart from "
            "the channel mismatch of the test split. These encoders were trained for "
            "utterance-level information; the log-mel frames (mean-normalised per "
            "utterance) are the floor a layer must beat to add phonetic information.")
        for split, label in (("frames", "test"), ("frames_dev", "clean dev")):
            if split not in frames_floor:
                continue
            curves = {names[k]: r[split]["rows"] for k, r in results.items() if split in r}
            floor = frames_floor[split]["summary"]
            slug = "" if split == "frames" else "_dev"
            layer_accuracy_plot(curves, fig / f"phone_probe_layers{slug}.png",
                                floor=floor["log_mel"]["frame_accuracy"],
                                chance=floor["chance"],
                                title=f"phone probe by layer, {label} split")
            doc.image(f"figures/phone_probe_layers{slug}.png",
                      f"phone probe frame accuracy by layer, {label} split")

    doc.heading("Speaker verification: DET curves")
    det_plot({names[k]: r["_sv_scores"] for k, r in results.items()}, fig / "det.png",
             title="DET, cosine scoring, demo trials")
    doc.image("figures/det.png", "DET curves")

    doc.heading("Training curves")
    logs = {names[k]: run_metrics(out / "runs" / k) for k in names if k != "random"}
    logs = {name: rows for name, rows in logs.items() if rows}
    if logs:
        training_curves(logs, fig / "training.png")
        doc.image("figures/training.png", "training loss per step")
        doc.paragraph("Training loss per step (light) and its running mean (dark). DINO's loss "
                      "is a cross-entropy between teacher and student prototype distributions, "
                      "SimCLR's the NT-Xent over the batch, the x-vector's AAM-softmax over the "
                      "training speakers: the scales are not comparable across panels.")

    doc.heading("Embedding maps (test utterances, t-SNE)")
    test_m = Manifest.load(corpus / "test.jsonl")
    colourings = {"speaker": [r.speaker or "?" for r in test_m],
                  "style": [str(r.labels.get("style", "?")) for r in test_m]}
    projection_grid({names[k]: e for k, e in test_emb.items()}, colourings,
                    fig / "projections.png")
    doc.image("figures/projections.png", "t-SNE maps coloured by speaker and by style")
    doc.paragraph("Each column is one model, each row colours the same map by another label. "
                  "Tight single-colour islands in the speaker row mean speaker information "
                  "dominates the embedding; style mixing inside islands means style is a "
                  "secondary direction a probe or fine-tuning has to find.")

    doc.heading("Confusion matrices")
    for task in ("style", "fluency", "language"):
        panels = {}
        for key, name in names.items():
            for protocol in ("linear", "staged"):
                r = results[key]["classify"][task][protocol]
                panels[(protocol, name)] = (np.array(r["confusion"]), r["classes"])
        confusion_grid(panels, fig / f"confusion_{task}.png", title=task)
        doc.image(f"figures/confusion_{task}.png", f"confusions for {task}")

    doc.heading("All classification metrics")
    header, rows = detail_table(names, results)
    doc.table(header, rows)

    doc.heading("Timing")
    total = sum(s for _, s in stages)
    doc.table(["stage", "wall s", "share %"],
              [[n, f"{s:.1f}", f"{100 * s / total:.1f}"] for n, s in stages]
              + [["total (before this report)", f"{total:.1f}", "100.0"]])
    doc.paragraph(f"Machine: {machine['cpu_count']} CPU cores, {machine['processor']}, "
                  f"torch {machine['torch']} with {machine['torch_threads']} threads, "
                  f"Python {machine['python']}.")

    doc.heading("Configuration")
    for key, name in names.items():
        cfg = out / "runs" / key / "config.yaml"
        if cfg.is_file():
            doc.details(f"{name}: {cfg}", cfg.read_text())
    bundle_cfg = out / "bundles" / "random" / "config.json"
    if bundle_cfg.is_file():
        doc.details(f"{names['random']}: {bundle_cfg}", bundle_cfg.read_text())
    doc.details("staged fine-tuning (every model, every task)", finetune_yaml)
    doc.paragraph("Reproduce: `paravox demo` (or `make demo`) with the same preset; every "
                  "stage is seeded. Bundles are in `bundles/`, training runs (checkpoints, CSV "
                  "and TensorBoard logs) in `runs/`, all numbers in `results.json`.")
    return doc.write(out)
