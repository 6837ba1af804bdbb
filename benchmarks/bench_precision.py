"""Benchmark: float32 vs bf16-mixed training of the demo models, same steps, same seeds.

Trains ``dino_demo``, ``simclr_demo`` (on ``pretrain.jsonl``) and ``xvector_demo`` (on the
labelled ``train.jsonl``) with ``run.precision=32-true`` and ``run.precision=bf16-mixed``,
each for the recipe's steps, and scores every model the same way: cosine speaker verification
on the test trials (EER with a 95 % bootstrap interval over trials, minDCF at p=0.01), the
embeddings computed in float32. It also reports the training wall time, so the table says what
bf16 buys and what it costs. Run from the repository root (the demo corpus in ``data/demo``,
``make demo`` generates it)::

    python benchmarks/bench_precision.py                          # seed 0, all three models
    python benchmarks/bench_precision.py --seeds 0 1 --models simclr xvector

The table is printed and written to ``benchmarks/results/bench_precision.md``; runs go to
``runs/bench_precision/``.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np

from _report import emit_table, machine_line

MODELS = {"dino": ("DINO", "dino_demo", "pretrain"),
          "simclr": ("SimCLR", "simclr_demo", "pretrain"),
          "xvector": ("x-vector", "xvector_demo", "train")}
PRECISIONS = ("32-true", "bf16-mixed")


def train_and_score(key: str, precision: str, seed: int, corpus: Path, out: Path,
                    n_boot: int) -> dict:
    from paravox.data.manifest import Manifest
    from paravox.evaluation.metrics import eer_confidence_interval, equal_error_rate, min_dcf
    from paravox.evaluation.scoring import cosine_scores
    from paravox.evaluation.trials import read_trials
    from paravox.inference import Embedder
    from paravox.inference.bundle import export_bundle
    from paravox.inference.embedder import embed_manifest
    from paravox.training.recipes import load_recipe, run_recipe

    _, recipe_name, split = MODELS[key]
    run_dir = out / f"{key}_{precision}_seed{seed}"
    recipe = load_recipe(recipe_name, [
        f"train_manifest={corpus / f'{split}.jsonl'}", f"out_dir={run_dir}",
        "eval_manifest=null", "trials=null", "run.progress_bar=false", "run.tensorboard=false",
        f"run.precision={precision}", f"run.seed={seed}"])
    t0 = time.perf_counter()
    result = run_recipe(recipe, mode="restart")
    train_s = time.perf_counter() - t0
    bundle = export_bundle(run_dir, run_dir / "bundle")
    trials = read_trials(corpus / "trials.txt")
    labels = np.array([t for t, _, _ in trials])
    emb = embed_manifest(Embedder.from_bundle(bundle), Manifest.load(corpus / "test.jsonl"),
                         progress=False)
    scores = cosine_scores(emb, trials)
    lo, hi = eer_confidence_interval(scores, labels, n_boot=n_boot)
    return {"model": key, "precision": precision, "seed": seed, "steps": result["steps"],
            "train_s": train_s, "eer": equal_error_rate(scores, labels), "eer_ci": [lo, hi],
            "min_dcf_0.01": min_dcf(scores, labels, 0.01)}


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, default=Path("data/demo"))
    ap.add_argument("--out", type=Path, default=Path("runs/bench_precision"))
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--n-boot", type=int, default=1000)
    a = ap.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    warnings.filterwarnings("ignore")
    results_path = a.out / "results.json"
    rows = json.loads(results_path.read_text()) if results_path.is_file() else []
    for key in a.models:
        for seed in a.seeds:
            for precision in PRECISIONS:
                rows = [r for r in rows if (r["model"], r["precision"], r["seed"])
                        != (key, precision, seed)]
                rows.append(train_and_score(key, precision, seed, a.corpus, a.out, a.n_boot))
                a.out.mkdir(parents=True, exist_ok=True)
                results_path.write_text(json.dumps(rows, indent=2) + "\n")
    lines = ["## Training precision: float32 vs bf16-mixed (demo recipes, same steps and seeds)",
             "", f"Machine: {machine_line()}; corpus `{a.corpus}`, test trials, cosine scoring,",
             "EER 95 % interval: bootstrap over trials. Embeddings computed in float32.", "",
             "| model | seed | precision | steps | train s | EER % (95 % CI) | minDCF 0.01 |",
             "|---|---:|---|---:|---:|---:|---:|"]
    order = {k: i for i, k in enumerate(MODELS)}
    for r in sorted(rows, key=lambda r: (order[r["model"]], r["seed"], r["precision"])):
        lo, hi = r["eer_ci"]
        lines.append(f"| {MODELS[r['model']][0]} | {r['seed']} | {r['precision']} | "
                     f"{r['steps']} | {r['train_s']:.0f} | {100 * r['eer']:.1f} "
                     f"({100 * lo:.1f}–{100 * hi:.1f}) | {r['min_dcf_0.01']:.3f} |")
    emit_table(lines, Path(__file__).parent / "results" / "bench_precision.md")


if __name__ == "__main__":
    main()
