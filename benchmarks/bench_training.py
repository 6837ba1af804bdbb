"""Benchmark: DINO training steps through the real engine (Lightning Trainer + loader).

Two configurations, each in a fresh subprocess so that its peak memory is its own:

* ``demo``: ``recipes/dino_demo.yaml`` as is (light ECAPA C=128, 1024 prototypes,
  2 x 2 s + 4 x 1 s crops, batch 32, 1 loader worker);
* ``ecapa512``: ECAPA C=512, DINO head 2048/256/65536, 2 x 3 s + 4 x 2 s crops, batch 16,
  2 loader workers (the VoxCeleb recipe's model and crops at a CPU-sized batch).

A callback timestamps every batch: *step time* = time between consecutive batch ends;
*data wait* = time from the previous batch end to this batch's start (what the loop spent
waiting for the loader); *compute* = the rest (forward, backward, clipping, optimiser, EMA).
The first ``--warmup`` steps are dropped. Peak memory: the process's maximum resident set
(CPU) or ``torch.cuda.max_memory_allocated`` (GPU).

The corpus is ``data/demo`` (``make demo`` generates it) or ``--corpus``. Run from the
repository root::

    python benchmarks/bench_training.py                # both configurations, 6 timed steps
    python benchmarks/bench_training.py --configs demo --steps 20

The table is printed and written to ``benchmarks/results/bench_training.md``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch

from _report import emit_table, machine_line

RESULTS = Path(__file__).resolve().parent / "results"
CONFIGS = {
    "demo": [],
    "ecapa512": ["dino.encoder_settings={channels: 512}", "dino.head.hidden_dim=2048",
                 "dino.head.bottleneck_dim=256", "dino.head.n_prototypes=65536",
                 "dino.crops.long_seconds=3.0", "dino.crops.short_seconds=2.0",
                 "run.batch_size=16", "run.num_workers=2"],
}


class StepTimer(L.Callback):
    def __init__(self):
        self.starts, self.ends = [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.starts.append(time.perf_counter())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.ends.append(time.perf_counter())


def measure(name: str, corpus: Path, steps: int, warmup: int, accelerator: str) -> dict:
    """Run one configuration in this process and return its figures."""
    from paravox.data.manifest import Manifest
    from paravox.training.engine import crop_loader, fit, seed_everything
    from paravox.training.recipes import build_module, load_recipe

    warnings.filterwarnings("ignore")
    overrides = CONFIGS[name] + [
        f"train_manifest={corpus}/pretrain.jsonl", "out_dir=/tmp/paravox_bench_training",
        f"run.max_steps={warmup + steps}", "run.epochs=100", "run.tensorboard=false",
        "run.progress_bar=false", f"run.accelerator={accelerator}",
        "run.checkpoint_every_n_steps=100000"]
    recipe = load_recipe("recipes/dino_demo.yaml", overrides)
    manifest = Manifest.load(recipe.train_manifest)
    seed_everything(0)
    module = build_module(recipe, manifest)
    timer = StepTimer()
    fit(module, crop_loader(manifest, recipe.dino, recipe.run), recipe.out_dir, recipe.run,
        callbacks=[timer])
    starts, ends = np.array(timer.starts), np.array(timer.ends)
    step = np.diff(ends)[warmup - 1:]  # step i: end_{i-1} -> end_i
    wait = (starts[1:] - ends[:-1])[warmup - 1:]
    c = recipe.dino.crops
    gpu = torch.cuda.is_available() and accelerator != "cpu"
    peak = (torch.cuda.max_memory_allocated() if gpu else
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"config": name, "encoder": f"{recipe.dino.encoder} C="
            f"{recipe.dino.encoder_settings.get('channels')}",
            "prototypes": recipe.dino.head.n_prototypes,
            "crops": f"{c.n_long}x{c.long_seconds:g}s+{c.n_short}x{c.short_seconds:g}s",
            "batch": recipe.run.batch_size, "workers": recipe.run.num_workers,
            "ms_per_step": 1000 * float(np.mean(step)),
            "ms_per_step_std": 1000 * float(np.std(step)),
            "data_wait": float(np.sum(wait) / np.sum(step)),
            "peak_gib": peak / 2**30, "device": "gpu" if gpu else "cpu", "steps": len(step)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=["demo", "ecapa512"])
    p.add_argument("--corpus", type=Path, default=Path("data/demo"))
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--accelerator", default="cpu")
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print("RESULT " + json.dumps(measure(a.child, a.corpus, a.steps, a.warmup,
                                             a.accelerator)))
        return
    if not (a.corpus / "pretrain.jsonl").is_file():
        sys.exit(f"bench_training: {a.corpus}/pretrain.jsonl not found; run `make demo` "
                 f"first or pass --corpus <folder made by paravox synth>")
    rows = []
    for name in a.configs:
        print(f"timing {name} ...", file=sys.stderr, flush=True)
        out = subprocess.run([sys.executable, __file__, "--child", name, "--corpus",
                              str(a.corpus), "--steps", str(a.steps), "--warmup",
                              str(a.warmup), "--accelerator", a.accelerator],
                             capture_output=True, text=True)
        line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
        if out.returncode or not line:
            sys.exit(f"bench_training: {name} failed:\n{out.stderr[-3000:]}")
        rows.append(json.loads(line[0][7:]))
    lines = [f"DINO training step ({machine_line()})", "",
             "| config | encoder | prototypes | crops | batch | workers | device | ms/step "
             "| data wait | peak memory |",
             "|---|---|---:|---|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['config']} | {r['encoder']} | {r['prototypes']} | {r['crops']} | "
                     f"{r['batch']} | {r['workers']} | {r['device']} | {r['ms_per_step']:.0f} "
                     f"± {r['ms_per_step_std']:.0f} | {100 * r['data_wait']:.1f} % | "
                     f"{r['peak_gib']:.2f} GiB |")
    lines.append("")
    lines.append(f"Mean ± std over {rows[0]['steps']} steps after {a.warmup} warm-up steps; "
                 f"data wait = time the training loop waited for the loader.")
    emit_table(lines, RESULTS / "bench_training.md")


if __name__ == "__main__":
    main()
