"""Benchmark: the demo's wall time by stage (`paravox demo`), grouped into pipeline stages.

Runs the demo (or, with ``--results``, reads the ``results.json`` of one already run) and
prints the time spent generating the corpus, training each model, embedding, scoring + probes,
fine-tuning and writing the report. Run from the repository root::

    python benchmarks/bench_demo.py --preset tiny             # a minute or two
    python benchmarks/bench_demo.py --preset demo             # about 17 minutes on 2 cores
    python benchmarks/bench_demo.py --results runs/demo/results.json

The table is printed and written to ``benchmarks/results/bench_demo.md``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path

from _report import emit_table, machine_line

GROUPS = [("corpus", "corpus generation"), ("train", "training"),
          ("embed", "embedding train + test (+ dev)"),
          ("speaker verification", "SV scoring + linear probes (+ dev embedding)"),
          ("linear probes on the clean dev", "SV scoring + linear probes (+ dev embedding)"),
          ("staged fine-tuning", "staged fine-tuning (3 tasks per model)"),
          ("phone probe", "phone probe (frame features, test + dev)"),
          ("report", "report (figures, t-SNE, HTML)")]


def group_of(stage: str) -> str:
    for prefix, group in GROUPS:
        if stage.startswith(prefix):
            return group
    return stage


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="tiny", choices=["tiny", "demo"])
    p.add_argument("--results", help="results.json of a finished demo (no new run)")
    p.add_argument("--out", default="benchmarks/results/bench_demo.md")
    args = p.parse_args()
    if args.results:
        res = json.loads(Path(args.results).read_text())
    else:
        from paravox.pipelines.demo import run_demo

        with tempfile.TemporaryDirectory() as tmp:
            corpus = None if args.preset == "demo" else Path(tmp) / "corpus"
            run_demo(args.preset, Path(tmp) / "demo", corpus, progress=False)
            res = json.loads((Path(tmp) / "demo" / "results.json").read_text())
    timing = dict(res["timing_seconds"])
    total = timing.pop("total")
    by_group: dict[str, float] = defaultdict(float)
    by_model: dict[str, float] = defaultdict(float)
    for stage, seconds in timing.items():
        by_group[group_of(stage)] += seconds
        if stage.startswith("train "):
            by_model[stage.removeprefix("train ")] += seconds
    m = res.get("machine", {})
    lines = [f"## `paravox demo --preset {res['preset']}` wall time by stage", "",
             f"Machine: {machine_line()}" + (f" (run on {m.get('cpu_count')} cores)" if m else ""),
             "", "| stage | wall s | share % |", "|---|---:|---:|"]
    lines += [f"| {g} | {s:.0f} | {100 * s / total:.1f} |" for g, s in by_group.items()]
    lines += [f"| **total** | **{total:.0f}** ({total / 60:.1f} min) | 100 |", "",
              "| training | wall s |", "|---|---:|"]
    lines += [f"| {name} | {s:.0f} |" for name, s in by_model.items()]
    emit_table(lines, Path(args.out))


if __name__ == "__main__":
    main()
