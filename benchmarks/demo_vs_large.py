"""Demo -> large: how speaker verification and the transfer tasks change when DINO and SimCLR
are pretrained on the `large` corpus instead of `demo` (more speakers, wider voices, channel
augmentation, more steps), each bundle scored on both test splits.

Reads the folders ``make large`` writes (``EVAL/{model}_{source}_on_{corpus}/sv_results.json``
and ``classify_results.json``), the corpora's ``summary.json`` and the runs' ``run_done.json``;
prints a Markdown table and writes it with a bar chart (``-o PREFIX`` -> PREFIX.md, PREFIX.png).

    python benchmarks/demo_vs_large.py --eval runs/large/eval --corpora data/demo data/large \
        --runs runs/demo/runs/{model} runs/{model}_large -o runs/large/demo_vs_large
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

MODELS = ("dino", "simclr")
NAMES = {"dino": "DINO", "simclr": "SimCLR"}
SOURCES = ("demo", "large")
TASKS = ("style", "fluency", "language")


def _read(path: Path):
    if not path.is_file():
        sys.exit(f"{path} is missing: run `make large` (it writes every evaluation folder)")
    return json.loads(path.read_text())


def collect(eval_dir: Path, corpora: list[Path]) -> dict:
    """{(model, source, corpus): {"eer", "eer_ci", "min_dcf", task: (uar, lo, hi)}}; an
    evaluation that was not run (no results file) is left out and shown as "not run"."""
    out = {}
    for m in MODELS:
        for src in SOURCES:
            for c in corpora:
                folder = eval_dir / f"{m}_{src}_on_{c.name}"
                row = {}
                if (folder / "sv_results.json").is_file():
                    sv = json.loads((folder / "sv_results.json").read_text())[0]
                    row = {"eer": sv["eer"], "eer_ci": sv["eer_ci"],
                           "min_dcf": sv["min_dcf_0.01"]}
                if (folder / "classify_results.json").is_file():
                    for r in json.loads((folder / "classify_results.json").read_text()):
                        if r["protocol"] == "linear":
                            row[r["task"]] = (r["uar"], *r["uar_ci"])
                out[m, src, c.name] = row
    if not any(out.values()):
        sys.exit(f"no results under {eval_dir}: run `make large` (it writes every evaluation "
                 f"folder)")
    return out


def pretrain_size(corpus: Path) -> str:
    """Pretraining data of a corpus: utterances, speakers and hours of ``pretrain.jsonl``."""
    from paravox.data.manifest import Manifest

    rows = Manifest.load(corpus / "pretrain.jsonl").rows
    header, *lines = (corpus / "speakers.tsv").read_text().splitlines()
    split = header.split("\t").index("split")
    speakers = sum(1 for line in lines if line.split("\t")[split] == "pretrain")
    hours = sum(r.duration or 0.0 for r in rows) / 3600
    return f"{len(rows)} utts, {speakers} speakers, {hours:.1f} h"


def table(results: dict, corpora: list[Path], sizes: dict, steps: dict) -> list[str]:
    """Markdown, one table per test split: a row per (model, pretraining corpus) with EER,
    minDCF and the linear-probe UARs, 95 % intervals in brackets."""
    pct = lambda x: f"{100 * x:.1f}"  # noqa: E731
    head = ["model", "pretrained on", "steps", "EER %", "minDCF0.01",
            *[f"{t} UAR %" for t in TASKS]]
    lines = []
    for c in corpora:
        lines += [f"Test split: `{c}` (trials and linear probes of that corpus)", "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for m in MODELS:
            for src in SOURCES:
                r = results[m, src, c.name]
                cells = [NAMES[m], f"{src} ({sizes[src]})", str(steps[m, src])]
                if "eer" in r:
                    lo, hi = r["eer_ci"]
                    cells += [f"{pct(r['eer'])} ({pct(lo)}–{pct(hi)})", f"{r['min_dcf']:.3f}"]
                else:
                    cells += ["not run", "not run"]
                cells += [f"{pct(r[t][0])} ({pct(r[t][1])}–{pct(r[t][2])})" if t in r
                          else "not run" for t in TASKS]
                lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def figure(results: dict, corpora: list[Path], out_png: Path) -> None:
    """EER and linear-probe UAR per test split, demo- vs large-pretrained, 95 % intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [("eer", "SV EER % (lower is better)")] + [(t, f"{t} UAR %") for t in TASKS]
    fig, axes = plt.subplots(len(corpora), len(metrics), figsize=(3.4 * len(metrics),
                                                                  2.9 * len(corpora)))
    axes = np.atleast_2d(axes)
    colours = {"demo": "#9ecae1", "large": "#08519c"}
    for i, c in enumerate(corpora):
        for j, (key, title) in enumerate(metrics):
            ax = axes[i, j]
            for k, src in enumerate(SOURCES):
                vals, errs = [], [[], []]
                for m in MODELS:
                    r = results[m, src, c.name]
                    if key not in r:  # not run: no bar
                        vals.append(np.nan)
                        errs[0].append(0.0)
                        errs[1].append(0.0)
                        continue
                    v, lo, hi = ((r["eer"], *r["eer_ci"]) if key == "eer" else r[key])
                    vals.append(100 * v)
                    # a percentile interval need not contain its point estimate
                    errs[0].append(100 * max(v - lo, 0.0))
                    errs[1].append(100 * max(hi - v, 0.0))
                x = np.arange(len(MODELS)) + (k - 0.5) * 0.38
                ax.bar(x, vals, 0.38, yerr=errs, capsize=3, color=colours[src],
                       label=f"pretrained on {src}")
            ax.set_xticks(range(len(MODELS)), [NAMES[m] for m in MODELS])
            ax.set_title(f"{title}\ntest split: {c.name}", fontsize=9)
            ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--eval", type=Path, default=Path("runs/large/eval"))
    p.add_argument("--corpora", type=Path, nargs=2, default=[Path("data/demo"),
                                                            Path("data/large")])
    p.add_argument("--runs", nargs=2, default=["runs/demo/runs/{model}", "runs/{model}_large"],
                   help="run folders of the demo and the large pretraining, {model} = dino|simclr")
    p.add_argument("-o", "--output", type=Path, default=Path("runs/large/demo_vs_large"))
    args = p.parse_args(argv)
    results = collect(args.eval, args.corpora)
    sizes = {src: pretrain_size(c) for src, c in zip(SOURCES, args.corpora)}
    steps = {(m, src): _read(Path(pattern.format(model=m)) / "run_done.json")["steps"]
             for m in MODELS for src, pattern in zip(SOURCES, args.runs)}
    lines = table(results, args.corpora, sizes, steps)
    text = "\n".join(lines) + "\n"
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.with_suffix(".md").write_text(text)
    figure(results, args.corpora, args.output.with_suffix(".png"))
    print(f"wrote {args.output}.md and {args.output}.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
