"""Benchmark: speed of synthetic corpus generation (``paravox synth``) for 1 and 2 workers.

For each worker count, a corpus of ``--speakers`` speakers from the ``--preset`` preset is
generated into a temporary folder with :func:`paravox.data.synth.generate_corpus`, and the
table reports:

* wall seconds of the whole ``generate_corpus`` call (planning, synthesis, manifests, card);
* hours of audio produced;
* real-time factor = audio seconds / wall seconds (higher is faster);
* per-core speed = audio seconds / worker seconds, where worker seconds is the sum over
  speakers of the time each worker spent synthesising that speaker (``worker_seconds`` in the
  summary; wall time inside the worker, so it includes any time the core was shared).

Each setting is run ``--repeats`` times (default 3) and the run with the median wall time is
reported, with the standard deviation of the wall times. The table is printed and written to
``benchmarks/results/bench_synth.md``.

Run from the repository root::

    python benchmarks/bench_synth.py                      # tiny preset, 48 speakers, workers 1,2
    python benchmarks/bench_synth.py --speakers 24 --workers 1 2 --repeats 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from _report import emit_table, machine_line
from paravox.data.synth import PRESETS, SynthConfig, generate_corpus
from paravox.utils.config import build_config

RESULTS = Path(__file__).resolve().parent / "results"




def run_once(preset: str, speakers: int, workers: int, seed: int) -> dict:
    cfg = build_config(SynthConfig, base=PRESETS[preset],
                       overrides=[f"workers={workers}", f"num_speakers={speakers}",
                                  f"seed={seed}"])
    with tempfile.TemporaryDirectory(prefix="paravox-bench-synth-") as tmp:
        return generate_corpus(cfg, Path(tmp) / "corpus", progress=False, overwrite=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    ap.add_argument("--speakers", type=int, default=48, help="num_speakers (default 48)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                    help="worker counts to measure (default: 1 2)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="runs per setting; the median-wall-time run is reported (default 3)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS / "bench_synth.md",
                    help="where to write the Markdown table")
    args = ap.parse_args(argv)

    rows = []
    for workers in args.workers:
        runs = []
        for r in range(args.repeats):
            s = run_once(args.preset, args.speakers, workers, args.seed)
            runs.append(s)
            print(f"[workers={workers} run {r + 1}/{args.repeats}] wall {s['wall_seconds']:.2f} s, "
                  f"{s['hours'] * 3600:.1f} s audio", file=sys.stderr)
        runs.sort(key=lambda s: s["wall_seconds"])
        s = runs[len(runs) // 2]
        audio_s = s["hours"] * 3600
        rows.append({
            "workers": workers, "speakers": s["speakers"], "utterances": s["utterances"],
            "wall": s["wall_seconds"], "hours": s["hours"], "rtf": audio_s / s["wall_seconds"],
            "per_core": audio_s / s["worker_seconds"] if s["worker_seconds"] > 0 else float("nan"),
            "spread": (statistics.pstdev([x["wall_seconds"] for x in runs])
                       if len(runs) > 1 else None),
        })

    base_wall = rows[0]["wall"]
    lines = [
        f"## Synthetic corpus generation: preset `{args.preset}`, {args.speakers} speakers",
        "",
        f"Machine: {machine_line()}",
        "",
        "| workers | speakers | utterances | wall s | audio h | real-time factor "
        "| per-core speed (audio s / worker s) | speed-up vs first |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        wall = f"{r['wall']:.2f}"
        if r["spread"] is not None:
            wall += f" (sd {r['spread']:.2f})"
        lines.append(
            f"| {r['workers']} | {r['speakers']} | {r['utterances']} | {wall} "
            f"| {r['hours']:.3f} | {r['rtf']:.0f}x | {r['per_core']:.0f}x "
            f"| {base_wall / r['wall']:.2f}x |"
        )
    lines += ["", f"Repeats per setting: {args.repeats} (median-wall-time run shown)."]
    emit_table(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
