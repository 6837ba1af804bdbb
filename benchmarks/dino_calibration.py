"""DINO's calibration to a short budget, measured: each variant of the ``dino_demo`` recipe
(and SimCLR) trained at the recipe's budget with several seeds, teacher and student scored by
cosine EER on the test trials (95 % bootstrap interval), with the last logged teacher entropy
and effective rank of the embeddings.

    .venv/bin/python benchmarks/dino_calibration.py --corpus data/demo --seeds 0 1 \
        --variants "old recipe" "recipe (new schedules + head BN + crops + RDINO)" \
        -o runs/dino_calibration

Writes ``results.json`` and prints (and saves under benchmarks/results/) a Markdown table; runs
already trained in ``-o`` are reused (their config is checked by the run folder).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from _report import emit_table, machine_line
from paravox.data.manifest import Manifest
from paravox.inference import Embedder
from paravox.inference.embedder import embed_manifest
from paravox.pipelines.dino_study import last_logged
from paravox.pipelines.study_kit import quiet_study, slug, sv_row, train_and_export

OLD = ["dino.max_teacher_init_share=1.0", "dino.freeze_prototypes_fraction=0.25",
       "dino.optim.warmup_fraction=0.25"]
SGD = ["dino.optim.optimizer=sgd", "dino.optim.lr=0.2", "dino.optim.min_lr=5e-5",
       "dino.optim.weight_decay=5e-5", "dino.optim.weight_decay_end=5e-5"]
NO_BN = ["dino.head.use_bn=false"]
SHORT_CROPS = ["dino.crops.long_seconds=2.0", "dino.crops.short_seconds=1.0"]
NO_RDINO = ["dino.regulariser.weight=0.0"]
# name -> (recipe, overrides from today's dino_demo: budget-proof schedules, head batch norm,
# 2 x 3 s + 4 x 2 s crops, RDINO regulariser). "old recipe" is dino_demo before the
# calibration: momentum 0.996 -> 1 whatever the length, prototypes frozen and lr warmed up for
# its first epoch (a quarter of 200 steps), no head batch norm, 2 x 2 s + 4 x 1 s crops.
VARIANTS = {
    "old recipe": ("dino_demo", OLD + NO_BN + SHORT_CROPS + NO_RDINO),
    "new schedules": ("dino_demo", NO_BN + SHORT_CROPS + NO_RDINO),
    "new schedules + head batch norm": ("dino_demo", SHORT_CROPS + NO_RDINO),
    "new schedules + crops 2 x 3 s + 4 x 2 s": ("dino_demo", NO_BN + NO_RDINO),
    "new schedules + SGD 0.2, wd 5e-5": ("dino_demo", NO_BN + SHORT_CROPS + SGD + NO_RDINO),
    "new schedules + head BN + crops": ("dino_demo", NO_RDINO),
    "new schedules + head BN + crops + SGD": ("dino_demo", SGD + NO_RDINO),
    "recipe (new schedules + head BN + crops + RDINO)": ("dino_demo", []),
    "SimCLR": ("simclr_demo", []),
}


def score(bundle: Path, test: Manifest, trials: Path, n_boot: int) -> dict:
    """Cosine EER with its interval on the test trials."""
    emb = embed_manifest(Embedder.from_bundle(bundle), test, progress=False)
    row, _ = sv_row(emb, trials, n_boot)
    return {"eer": row["eer"], "eer_ci": row["eer_ci"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, default=Path("data/demo"))
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--set", nargs="*", default=[], help="extra overrides for every run")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("-o", "--output", type=Path, default=Path("runs/dino_calibration"))
    args = p.parse_args()
    test = Manifest.load(args.corpus / "test.jsonl")
    trials = args.corpus / "trials.txt"
    results_file = args.output / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    with quiet_study():
        for name in args.variants:
            recipe, overrides = VARIANTS[name]
            key = "dino" if recipe.startswith("dino") else "simclr"
            for seed in args.seeds:
                tag = f"{slug(name)}_seed{seed}"
                run_dir, bundle = args.output / "runs" / tag, args.output / "bundles" / tag
                print(f"\n== {name}, seed {seed}", flush=True)
                t0 = time.perf_counter()
                bundle, steps = train_and_export(
                    recipe, [f"run.seed={seed}", *overrides, *args.set], run_dir, bundle,
                    args.corpus / "pretrain.jsonl", reuse=True, progress=False)
                row = {"steps": steps, "teacher": score(bundle, test, trials, args.n_boot),
                       "effective_rank": last_logged(run_dir, "collapse/effective_rank"),
                       "teacher_entropy": last_logged(run_dir, "collapse/teacher_entropy")}
                took = time.perf_counter() - t0
                if took > 5.0:  # trained here (a reused run takes a second or two)
                    row["seconds_per_step"] = took / max(steps, 1)
                elif "seconds_per_step" in results.get(name, {}).get(str(seed), {}):
                    row["seconds_per_step"] = results[name][str(seed)]["seconds_per_step"]
                if key == "dino":
                    student = train_and_export(recipe, [f"run.seed={seed}", *overrides,
                                                        *args.set], run_dir,
                                               args.output / "bundles" / f"{tag}_student",
                                               args.corpus / "pretrain.jsonl", reuse=True,
                                               progress=False, which="student")[0]
                    row["student"] = score(student, test, trials, args.n_boot)
                results.setdefault(name, {})[str(seed)] = row
                results_file.parent.mkdir(parents=True, exist_ok=True)
                results_file.write_text(json.dumps(results, indent=2) + "\n")
    lines = [f"DINO calibration at the dino_demo budget on {args.corpus} ({machine_line()})", "",
             "| variant | seed | teacher EER % (95 % CI) | student EER % | effective rank | "
             "teacher entropy |", "|---|---:|---:|---:|---:|---:|"]
    for name, seeds in results.items():
        for seed, r in seeds.items():
            t = r["teacher"]
            lo, hi = t["eer_ci"]
            student = f"{100 * r['student']['eer']:.1f}" if "student" in r else "-"
            rank = f"{r['effective_rank']:.1f}" if r.get("effective_rank") else "-"
            ent = f"{r['teacher_entropy']:.2f}" if r.get("teacher_entropy") else "-"
            lines.append(f"| {name} | {seed} | {100 * t['eer']:.1f} ({100 * lo:.1f}-"
                         f"{100 * hi:.1f}) | {student} | {rank} | {ent} |")
        eers = [r["teacher"]["eer"] for r in seeds.values()]
        if len(eers) > 1:
            lines.append(f"| {name} | mean of {len(eers)} | {100 * np.mean(eers):.1f} | | | |")
    emit_table(lines, Path(__file__).parent / "results" / "dino_calibration.md")


if __name__ == "__main__":
    main()
