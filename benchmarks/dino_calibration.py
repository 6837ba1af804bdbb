"""DINO's calibration to a short budget, measured: each variant of the ``dino_demo`` recipe
(and SimCLR) trained at the recipe's budget with several seeds, teacher and student scored by
cosine EER on the test trials (95 % bootstrap interval), with the last logged teacher entropy
and effective rank of the embeddings.

    .venv/bin/python benchmarks/dino_calibration.py --corpus data/demo --seeds 0 1 \
        --variants "old recipe" "recipe (+ momentum ending at 0.99)" \
        -o runs/dino_calibration

Longer budgets with EER-against-steps curves (the test trials every ``--curve-every`` steps,
teacher for DINO), plotted to ``--plot``::

    .venv/bin/python benchmarks/dino_calibration.py --seeds 0 1 --set run.epochs=16 \
        --variants "recipe (+ momentum ending at 0.99)" SimCLR \
        --curve-every 100 -o runs/dino_long --plot docs/figures/dino_vs_simclr_800_steps.png

Writes ``results.json`` and prints (and saves as benchmarks/results/<output folder name>.md) a
Markdown table; runs already trained in ``-o`` are reused (their config is checked by the run
folder), their curves read back from their logs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from _report import emit_table, machine_line
from paravox.data.manifest import Manifest
from paravox.evaluation.callbacks import EERCurve
from paravox.inference import Embedder
from paravox.inference.embedder import embed_manifest
from paravox.pipelines.dino_study import (
    END_AT_1,
    NO_RDINO,
    OLD_SCHEDULES,
    SGD,
    SHORT_CROPS,
    last_logged,
    logged,
)
from paravox.pipelines.study_kit import quiet_study, slug, sv_row, train_and_export

NO_BN = ["dino.head.use_bn=false"]
# name -> (recipe, overrides from today's dino_demo: budget-proof schedules, head batch norm,
# 2 x 3 s + 4 x 2 s crops, RDINO regulariser, teacher momentum ending at 0.99). "old recipe"
# is dino_demo before the calibration: momentum 0.996 -> 1 whatever the length, prototypes
# frozen and lr warmed up for its first epoch (a quarter of 200 steps), no head batch norm,
# 2 x 2 s + 4 x 1 s crops. The steps in between keep the references' momentum end (1).
VARIANTS = {
    "old recipe": ("dino_demo", OLD_SCHEDULES + NO_BN + SHORT_CROPS + NO_RDINO),
    "new schedules": ("dino_demo", NO_BN + SHORT_CROPS + NO_RDINO + END_AT_1),
    "new schedules + head batch norm": ("dino_demo", SHORT_CROPS + NO_RDINO + END_AT_1),
    "new schedules + crops 2 x 3 s + 4 x 2 s": ("dino_demo", NO_BN + NO_RDINO + END_AT_1),
    "new schedules + SGD 0.2, wd 5e-5": ("dino_demo",
                                         NO_BN + SHORT_CROPS + SGD + NO_RDINO + END_AT_1),
    "new schedules + head BN + crops": ("dino_demo", NO_RDINO + END_AT_1),
    "new schedules + head BN + crops + SGD": ("dino_demo", SGD + NO_RDINO + END_AT_1),
    "new schedules + head BN + crops + RDINO": ("dino_demo", END_AT_1),
    # the teacher keeps following the student to the end (momentum 1 in the last steps
    # freezes it while the student still improves)
    "recipe (+ momentum ending at 0.99)": ("dino_demo", []),
    "SimCLR": ("simclr_demo", []),
}
# shorter names in the plot's legend
LABELS = {"new schedules + head BN + crops + RDINO": "momentum -> 1",
          "recipe (+ momentum ending at 0.99)": "recipe (momentum -> 0.99)"}


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
    p.add_argument("--curve-every", type=int, default=0,
                   help="steps between EER checks on the test trials (0: none)")
    p.add_argument("--plot", type=Path, default=None,
                   help="PNG of the EER-against-steps curves (needs --curve-every)")
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
                curve = ([EERCurve(args.corpus / "test.jsonl", trials, args.curve_every)]
                         if args.curve_every else None)
                bundle, steps = train_and_export(
                    recipe, [f"run.seed={seed}", *overrides, *args.set], run_dir, bundle,
                    args.corpus / "pretrain.jsonl", reuse=True, progress=False,
                    callbacks=curve)
                row = {"steps": steps, "teacher": score(bundle, test, trials, args.n_boot),
                       "effective_rank": last_logged(run_dir, "collapse/effective_rank"),
                       "teacher_entropy": last_logged(run_dir, "collapse/teacher_entropy"),
                       "curve": logged(run_dir, "eval/eer")}
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
    if args.plot:
        plot_curves(results, args.plot)
    lines = [f"DINO calibration on {args.corpus} ({machine_line()}; overrides for every run: "
             f"{' '.join(args.set) or 'none'})", "",
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
    emit_table(lines, Path(__file__).parent / "results" / f"{args.output.name}.md")


def plot_curves(results: dict, out: Path) -> None:
    """EER (test trials) against training steps, one line per variant and seed, the final
    score's 95 % interval as a bar at the last step."""
    import matplotlib  # noqa: PLC0415  (only for --plot)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(7, 4.2))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (name, seeds) in enumerate(results.items()):
        for j, (seed, r) in enumerate(seeds.items()):
            if not r.get("curve"):
                continue
            steps, eers = zip(*r["curve"])
            method = "SimCLR" if VARIANTS[name][0].startswith("simclr") else "DINO"
            label = f"{method} {LABELS.get(name, name)}" if method == "DINO" else method
            ax.plot(steps, [100 * e for e in eers], color=colours[k % len(colours)],
                    linestyle=("-", "--", ":")[j % 3], marker="o", markersize=3,
                    label=f"{label}, seed {seed}")
            # the final score's interval, offset a little so that the bars do not overlap
            at = steps[-1] + 0.012 * steps[-1] * (2 * k + j - 1.5)
            eer, (lo, hi) = r["teacher"]["eer"], r["teacher"]["eer_ci"]
            ax.errorbar([at], [100 * eer], yerr=[[100 * (eer - lo)], [100 * (hi - eer)]],
                        color=colours[k % len(colours)], capsize=3)
    ax.set_xlabel("training step (batch 32)")
    ax.set_ylabel("EER % on the test trials (cosine)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    print(f"wrote {out}", flush=True)


if __name__ == "__main__":
    main()
