"""GPU check: every method trains a few dozen steps on the device in its default precision
(bf16-mixed on a GPU with bf16), is exported, and its bundle embeds the same utterances on
the device and on the CPU; with two or more GPUs DINO also trains as a 2-process DDP run
(NCCL). Prints one table (and saves it under benchmarks/results/).

    .venv/bin/python benchmarks/gpu_check.py                 # on a GPU machine
    .venv/bin/python benchmarks/gpu_check.py --device cpu    # the same checks on the CPU

Models are the tiny test presets on the tiny built-in corpus (generated into ``--out``), so
the check takes minutes and needs nothing downloaded; it checks the GPU path (CUDA kernels,
autocast, export from a GPU-trained run, device/CPU parity, NCCL), not speed at scale. A row
fails when training stops early, the loss is not finite or the device and CPU embeddings
differ by more than ``--tolerance`` (cosine distance).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import yaml

from _report import emit_table, machine_line
from paravox.audio.io import load_audio
from paravox.data.manifest import Manifest
from paravox.data.synth import PRESETS as CORPUS_PRESETS
from paravox.data.synth import SynthConfig, generate_corpus
from paravox.inference import Embedder
from paravox.pipelines.demo import PRESETS as DEMO_PRESETS
from paravox.pipelines.learn2diss_study import PRESETS as L2D_PRESETS
from paravox.pipelines.mgf_study import TINY_MGF
from paravox.pipelines.study_kit import quiet_study, train_and_export
from paravox.training.run_folder import run_metrics
from paravox.utils.config import build_config

TINY = DEMO_PRESETS["tiny"].overrides
# method -> (recipe, tiny overrides, training split)
METHODS = {
    "DINO": ("dino_demo", TINY["dino"], "pretrain"),
    "SimCLR": ("simclr_demo", TINY["simclr"], "pretrain"),
    "x-vector": ("xvector_demo", TINY["xvector"], "train"),
    "MGF": ("mgf_demo", TINY_MGF, "pretrain"),
    "Learn2Diss": ("learn2diss_demo", L2D_PRESETS["tiny"].overrides, "pretrain"),
}


def tiny_corpus(out: Path) -> Path:
    folder = out / "corpus"
    if not (folder / "summary.json").is_file():
        cfg = build_config(SynthConfig, base=CORPUS_PRESETS["tiny"], overrides=["workers=1"])
        generate_corpus(cfg, folder, progress=False, overwrite=True)
    return folder


def parity(bundle: Path, device: str, waves: list[np.ndarray]) -> float:
    """Largest cosine distance between the device's and the CPU's embedding of each wave."""
    on_device = Embedder.from_bundle(bundle, device=device).embed(waves, sample_rate=16000)
    on_cpu = Embedder.from_bundle(bundle, device="cpu").embed(waves, sample_rate=16000)
    a = on_device / np.linalg.norm(on_device, axis=1, keepdims=True)
    b = on_cpu / np.linalg.norm(on_cpu, axis=1, keepdims=True)
    return float((1 - (a * b).sum(1)).max())


def train_row(name: str, corpus: Path, out: Path, device: str, steps: int, devices: int = 1
              ) -> dict:
    recipe, tiny, split = METHODS[name]
    accel = "gpu" if device.startswith("cuda") else "cpu"
    overrides = [*tiny, f"run.max_steps={steps}", "run.epochs=100", f"run.accelerator={accel}",
                 f"run.devices={devices}", "run.progress_bar=false"]
    if devices > 1:
        overrides.append("run.strategy=ddp")
    slug = name.lower().replace("-", "") + (f"_ddp{devices}" if devices > 1 else "")
    start = time.perf_counter()
    bundle, done = train_and_export(recipe, overrides, out / "runs" / slug,
                                    out / "bundles" / slug, corpus / f"{split}.jsonl",
                                    reuse=False, progress=False)
    seconds = time.perf_counter() - start
    run = out / "runs" / slug
    # a staged method (Learn2Diss) logs under stages/<k>_<name>/: read the last stage's log
    logged = sorted({p.parent.parent.parent for p in run.rglob("logs/version_*/metrics.csv")})
    rows = run_metrics(logged[-1]) if logged else []
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    config = yaml.safe_load((run / "config.yaml").read_text()) if (
        run / "config.yaml").is_file() else {}
    return {"steps": done, "seconds": seconds, "bundle": bundle,
            "precision": (config.get("run") or {}).get("resolved_precision", "?"),
            "loss": losses[-1] if losses else float("nan")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--tolerance", type=float, default=1e-3,
                    help="largest device-vs-CPU cosine distance that passes")
    ap.add_argument("--out", default="runs/gpu_check")
    ap.add_argument("--table", default="benchmarks/results/gpu_check.md")
    a = ap.parse_args()
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device visible; run it on a GPU machine, or pass "
                         "--device cpu to check the script on this CPU")
    warnings.filterwarnings("ignore")
    out = Path(a.out)
    corpus = tiny_corpus(out)
    test = Manifest.load(corpus / "test.jsonl")
    waves = [load_audio(test.audio_path(r), r.offset, r.duration) for r in test.rows[:8]]
    jobs = [(name, 1) for name in METHODS]
    if a.device.startswith("cuda") and torch.cuda.device_count() >= 2:
        jobs.append(("DINO", 2))
    gpu = torch.cuda.get_device_name(0) if a.device.startswith("cuda") else "CPU"
    lines = [f"GPU check on {gpu} ({machine_line()}), {a.steps} steps per model, tiny presets",
             "", "| model | processes | precision | steps (all stages) | train s | last loss | "
             "device vs CPU cosine distance | result |", "|---|---:|---|---:|---:|---:|---:|---|"]
    failed = 0
    with quiet_study():
        for name, devices in jobs:
            try:
                r = train_row(name, corpus, out, a.device, a.steps, devices)
                dist = parity(r["bundle"], a.device, waves)
                # a staged method (Learn2Diss) trains max_steps in each of its stages
                ok = (r["steps"] >= a.steps and np.isfinite(r["loss"])
                      and dist <= a.tolerance)
                lines.append(f"| {name} | {devices} | {r['precision']} | {r['steps']} | "
                             f"{r['seconds']:.1f} | {r['loss']:.3f} | {dist:.2e} | "
                             f"{'ok' if ok else 'FAILED'} |")
            except Exception as exc:  # one broken method must not hide the others' rows
                ok = False
                lines.append(f"| {name} | {devices} | - | - | - | - | - | FAILED: "
                             f"{type(exc).__name__}: {str(exc)[:120]} |")
            failed += not ok
    emit_table(lines, Path(a.table))
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
