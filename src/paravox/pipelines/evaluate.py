"""Evaluation runs as the ``paravox evaluate`` commands do them: embed or fine-tune, score,
write the results (JSON) and their figures into one output folder."""

from __future__ import annotations

import json
from pathlib import Path

from paravox.data.manifest import Manifest
from paravox.evaluation.classify import FROZEN_PROTOCOLS, evaluate_classification
from paravox.evaluation.phone_probe import LOGMEL, PhoneProbeConfig, phone_probe
from paravox.evaluation.sv import evaluate_sv
from paravox.inference import Embedder
from paravox.report.plots import confusion_plot, det_plot, layer_accuracy_plot
from paravox.transfer.finetune import FineTuneConfig, evaluate_finetuned
from paravox.utils.atomic_files import make_folder, write_text
from paravox.utils.config import build_config


def run_sv(bundle: str | Path, manifest: str | Path, trials: str | Path,
           out_dir: str | Path, train: str | Path | None = None,
           backends: list[str] = ("cosine",), chunk_seconds: float | None = None,
           top_k: int = 100, lda_dim: int | None = None, device: str = "cpu",
           progress: bool = True) -> list:
    """Speaker verification of a bundle on a trial list with each back-end; writes
    ``sv_results.json`` and ``det.png`` to ``out_dir``; returns the results."""
    embedder = Embedder.from_bundle(bundle, device=device)
    results = evaluate_sv(embedder, manifest, trials, train, list(backends), chunk_seconds,
                          top_k, lda_dim, progress=progress)
    out = Path(out_dir)
    make_folder(out)
    write_text(out / "sv_results.json", json.dumps([r.row() for r in results], indent=2))
    det_plot({r.backend: (r.scores, r.labels) for r in results}, out / "det.png",
             title=f"DET: {Path(bundle).name} on {Path(trials).name}")
    return results


def run_classify(bundle: str | Path, train: str | Path, test: str | Path, tasks: list[str],
                 protocols: list[str], out_dir: str | Path, finetune_overrides: list[str] = (),
                 chunk_seconds: float | None = None, device: str = "cpu", seed: int = 0,
                 progress: bool = True) -> list:
    """Utterance classification of a bundle: frozen-embedding probes and/or fine-tuning per
    task; writes ``classify_results.json`` and one confusion plot per (task, protocol)."""
    out = Path(out_dir)
    frozen = [p for p in protocols if p in FROZEN_PROTOCOLS]
    # fine-tuning trains where the embeddings are computed (the first visible GPU for cuda:N)
    accelerator = ("cpu" if device == "cpu" else "gpu" if device.startswith("cuda")
                   else "auto")
    ft_cfg = build_config(FineTuneConfig, overrides=[f"seed={seed}", f"accelerator={accelerator}",
                                                     *finetune_overrides])
    results = []
    if frozen:
        embedder = Embedder.from_bundle(bundle, device=device)
        results += evaluate_classification(embedder, train, test, tasks, frozen, chunk_seconds,
                                           progress=progress, seed=seed)
    for task in tasks:
        for protocol in [p for p in protocols if p not in FROZEN_PROTOCOLS]:
            results.append(evaluate_finetuned(bundle, train, test, task, protocol, ft_cfg,
                                              out / "finetune", chunk_seconds,
                                              progress=progress))
    make_folder(out)
    write_text(out / "classify_results.json", json.dumps([r.row() for r in results], indent=2))
    for r in results:
        confusion_plot(r.metrics["confusion"], r.classes,
                       out / f"confusion_{r.task}_{r.protocol}.png",
                       title=f"{r.task}, {r.protocol}")
    return results


def run_frames(bundle: str | Path | None, train: str | Path, test: str | Path,
               out_dir: str | Path, cfg=None, progress: bool = True):
    """Phone classification from frozen frame features: the bundle's layers and the log-mel
    floor (``bundle=None``: log-mel only); writes ``frames_results.json`` and
    ``phone_probe_layers.png``; returns the
    :class:`~paravox.evaluation.phone_probe.PhoneProbeResult`."""
    cfg = cfg or PhoneProbeConfig()
    source = "logmel" if bundle is None else Embedder.from_bundle(bundle, device=cfg.device)
    result = phone_probe(source, Manifest.load(train), Manifest.load(test), cfg, progress)
    out = Path(out_dir)
    make_folder(out)
    write_text(out / "frames_results.json", json.dumps(
        {"bundle": str(bundle) if bundle else None, "summary": result.summary(),
         "rows": result.rows(), "phones": result.phones}, indent=2) + "\n")
    floor = [r for r in result.rows() if r["layer"] == LOGMEL and r["probe"] == "linear"]
    layer_accuracy_plot({Path(bundle).name if bundle else "log-mel": result.rows()},
                        out / "phone_probe_layers.png",
                        floor=floor[0]["frame_accuracy"] if floor else None,
                        chance=result.summary()["chance"])
    return result
