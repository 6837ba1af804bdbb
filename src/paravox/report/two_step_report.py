"""The two-step experiment's report: one table per task (two-step vs each loss alone vs the
adapter without step 1 vs a linear probe vs end-to-end fine-tuning; UAR, accuracy, macro-F1,
and the quality of each embedding space), t-SNE maps of the test embeddings before and after
step 1, confusions, step-1 loss curves, and the configuration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from paravox.data.labels import labels_of
from paravox.data.manifest import Manifest
from paravox.report.document import Document
from paravox.report.plots import confusion_grid, projection_grid, training_curves
from paravox.report.tables import bold_best, pct
from paravox.training.run_folder import run_metrics

VARIANT_ORDER = ("two-step", "two-step, encoder space", "contrastive only",
                 "non-contrastive only", "adapter, no step 1", "linear probe", "end-to-end")


def task_table(payload: dict, task: str) -> tuple[list[str], list[list[str]]]:
    """One task's table from ``results.json``: a row per variant (in :data:`VARIANT_ORDER`,
    absent ones left out) with its step-1 loss, metrics and space measures; the best value of
    each column in bold."""
    header = ["method", "step-1 loss", "UAR % ↑", "accuracy % ↑", "macro-F1 % ↑",
              "per-speaker UAR % ↑", "5-shot NC acc. % ↑", "Davies-Bouldin ↓", "time s"]
    by_variant = {r["variant"]: r for r in payload["results"] if r["task"] == task}
    rows = []
    for v in VARIANT_ORDER:
        if v not in by_variant:
            continue
        r, space = by_variant[v], by_variant[v]["space"]
        spk = r.get("speaker_metrics")
        loss = payload["variants"].get(v, "") if v in ("two-step", "contrastive only",
                                                        "non-contrastive only") else "-"
        if v == "two-step, encoder space":
            loss = payload["variants"].get("two-step", "")
        rows.append([v, loss, pct(r["metrics"]["uar"]), pct(r["metrics"]["accuracy"]),
                     pct(r["metrics"]["macro_f1"]), pct(spk["uar"]) if spk else "-",
                     pct(space.get("nc_accuracy_5shot")),
                     f"{space['davies_bouldin']:.2f}" if "davies_bouldin" in space else "-",
                     f"{r['seconds']:.0f}"])
    for col in range(2, 7):
        bold_best(rows, col, lower_is_better=False)
    bold_best(rows, 7, lower_is_better=True)
    return header, rows


def write_two_step_report(out_dir: str | Path, payload: dict | None = None
                          ) -> tuple[Path, Path]:
    """``report.md`` + ``report.html`` from ``results.json`` (and the saved embeddings/logs)."""
    out = Path(out_dir)
    payload = payload or json.loads((out / "results.json").read_text())
    cfg = payload["config"]
    doc = Document("paravox: two-step fine-tuning vs its baselines")
    doc.paragraph(
        f"Encoder bundle `{payload['bundle']}`; training split `{payload['train']}`, test "
        f"split `{payload['test']}`. Step 1 (Lux et al. 2022): `{cfg['contrastive']}` + "
        f"{cfg['weight']} x `{cfg['noncontrastive']}` on a projector "
        f"{list(cfg['projector_dims'])} over the pooled embedding, {cfg['epochs']} epochs of "
        f"class-balanced batches ({cfg['batch_size']} = classes x {cfg['per_class']}), "
        f"Adam lr {cfg['lr']}, time masks p={cfg['time_mask_prob']}, "
        f"augmentation {'on' if cfg['augment'] else 'off'}. Step 2: a bottleneck adapter "
        f"({cfg['adapter_bottleneck']}) on the frozen step-1 embeddings of the training "
        f"utterances (+ {cfg['adapter_copies']} augmented copies each). End-to-end "
        f"fine-tuning uses the same crops, augmentation, learning rate and epochs.")
    doc.note("Space measures are on the test split's embeddings in the space the classifier "
             "reads (the projector output after step 1, as in BetterFinetuning; the encoder's "
             "embedding for *two-step, encoder space* — the same step-1 network read before "
             "its projector — and for the untouched encoder): "
             "5-shot nearest-centroid accuracy (centroids of 5 random training embeddings per "
             "class, 20 draws) and the Davies-Bouldin index of the true classes (lower = "
             "tighter, better separated). End-to-end fine-tuning has no frozen space.")
    test = Manifest.load(payload["test"])
    emb_file = out / "test_embeddings.npz"
    stored = np.load(emb_file) if emb_file.is_file() else {}
    for task in payload["tasks"]:
        doc.heading(f"Task: {task}")
        doc.table(*task_table(payload, task))
        maps = {k.split("/", 1)[1]: stored[k] for k in stored.files
                if k.startswith(f"{task}/")} if stored else {}
        if maps:
            png = projection_grid(maps, {task: labels_of(test, task),
                                         "speaker": [r.speaker or "?" for r in test]},
                                  out / f"space_{task}.png")
            doc.paragraph(f"Test embeddings (t-SNE) before step 1 (untouched encoder) and "
                          f"after each step-1 variant, coloured by {task} and by speaker: "
                          f"step 1 should gather each class and scatter speakers.")
            doc.image(png.name, f"{task} embedding space before and after step 1")
        panels = {}
        for r in payload["results"]:
            if r["task"] == task:
                classes = sorted(set(labels_of(test, task)))
                panels[("test", r["variant"])] = (np.array(r["metrics"]["confusion"]), classes)
        if panels:
            png = confusion_grid(panels, out / f"confusion_{task}.png", title=task)
            doc.image(png.name, f"{task} confusions")
        logs = {v: p for v in ("two-step", "contrastive only", "non-contrastive only")
                if (p := run_metrics(out / task / v.replace(" ", "_").replace("-", "_")
                                     / "step1"))}
        if logs:
            png = training_curves(logs, out / f"step1_losses_{task}.png",
                                  keys=("train/contrastive", "train/noncontrastive"))
            doc.paragraph("Step-1 losses per step (light: every step; dark: running mean).")
            doc.image(png.name, f"{task} step-1 losses")
    doc.details("two-step configuration", json.dumps(cfg, indent=2))
    return doc.write(out)

