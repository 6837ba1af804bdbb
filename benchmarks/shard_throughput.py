"""Benchmark: utterances and augmented crops per second per loader worker, files vs shards.

One process does a loader worker's work (``num_workers=0``: the main process reads), so every
rate is per worker. Two workloads, each over the same utterances read from their files
(``MultiCropDataset`` in ``EpochSampler`` order, as the file-based loader reads them) and from
their tar shards (``ShardStream``, as ``train_shards`` reads them):

* ``decode``: read + decode + one 0.5 s crop, no augmentation: the reading cost alone;
* ``augmented``: the DINO recipe's items as training builds them (``crop_dataset`` with
  ``DINOConfig``'s defaults: 2 x 3 s + 4 x 2 s crops, speed perturbation, reverberation,
  noise incl. corpus babble, with the probabilities of the default ``AugmentConfig``).

``decode`` runs twice per source: with the audio in the page cache (``warm``) and after
``posix_fadvise(DONTNEED)`` evicted this benchmark's files and shards from it (``cold``: read
from the disk; a file in use elsewhere may stay cached). Every setting runs ``--repeats``
times, files and shards alternating; the table gives the median rate and the range.

The corpus is the first ``--utterances`` rows of an existing manifest (default: the demo
corpus's ``pretrain.jsonl``), sharded into a temporary folder at the start (timed too).

Run from the repository root (the machine's other load changes the numbers; say so)::

    OMP_NUM_THREADS=1 python benchmarks/shard_throughput.py --corpus data/demo

The table is printed and written to ``benchmarks/results/shard_throughput.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from _report import emit_table, machine_line
from paravox.data.crops import CropConfig
from paravox.data.dataset import EpochSampler, MultiCropDataset
from paravox.data.manifest import Manifest
from paravox.data.shard_stream import ShardStream
from paravox.data.shards import ShardIndex, write_shards
from paravox.methods.dino import DINOConfig
from paravox.training.engine import RunConfig, crop_dataset

RESULTS = Path(__file__).resolve().parent / "results"
DECODE = CropConfig(n_long=1, long_seconds=0.5, n_short=0)


def evict(paths) -> None:
    """Drop these files' pages from the page cache (Linux; clean pages only)."""
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def from_files(ds: MultiCropDataset):
    """Items in the file-based loader's order (epoch 0)."""
    for key in EpochSampler(len(ds), seed=0):
        yield ds[key]


def from_shards(index: ShardIndex, ds: MultiCropDataset, buffer: int):
    """Items as one loader worker streams them (epoch 0, one process, one worker)."""
    stream = ShardStream(index, ds, seed=0, buffer=buffer, num_replicas=1, rank=0)
    return stream.stream(0, 0, 1)


def timed(items) -> dict:
    t0 = time.perf_counter()
    n = crops = bad = 0
    for it in items:
        if isinstance(it, dict):
            n += 1
            crops += sum(g.shape[0] for g in it["groups"])
        else:
            bad += 1
    return {"seconds": time.perf_counter() - t0, "items": n, "crops": crops, "bad": bad}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=Path("data/demo"))
    ap.add_argument("--manifest", default="pretrain.jsonl")
    ap.add_argument("--utterances", type=int, default=400)
    ap.add_argument("--shard-mb", type=float, default=32.0)
    ap.add_argument("--buffer", type=int, default=RunConfig().shuffle_buffer,
                    help="shuffle buffer (items; default: run.shuffle_buffer's)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS / "shard_throughput.md")
    args = ap.parse_args(argv)

    m = Manifest.load(args.corpus / args.manifest)
    m.rows = m.rows[:args.utterances]
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="paravox-bench-shards-") as tmp:
        m.save(Path(tmp) / "part.jsonl")
        m = Manifest.load(Path(tmp) / "part.jsonl")
        files = [m.audio_path(r) for r in m.rows]
        t0 = time.perf_counter()
        s = write_shards(Path(tmp) / "part.jsonl", Path(tmp) / "shards", shard_mb=args.shard_mb,
                         seed=0, progress=False)
        shard_s = time.perf_counter() - t0
        index = ShardIndex.load(s["index"])
        sharded = index.manifest()
        tars = [index.folder / sh.file for sh in index.shards]
        print(f"sharded {s['items']} utterances ({s['bytes'] / 1e6:.0f} MB) into "
              f"{s['shards']} shards in {shard_s:.1f} s", file=sys.stderr)

        def run(workload, cache, make_files, make_shards):
            rates = {"files": [], "shards": []}
            bad = {"files": 0, "shards": 0}
            for _ in range(args.repeats):
                for source, make in (("files", make_files), ("shards", make_shards)):
                    if cache == "cold":
                        evict(files if source == "files" else tars)
                    r = timed(make())
                    rates[source].append(r["items"] / r["seconds"])
                    bad[source] += r["bad"]
            for source in ("files", "shards"):
                ups = sorted(rates[source])
                med = ups[len(ups) // 2]
                rows.append([workload, source, cache, f"{med:.1f}",
                             f"{ups[0]:.1f}-{ups[-1]:.1f}", f"{med * per_item[workload]:.0f}",
                             str(bad[source])])
                print(" | ".join(rows[-1]), file=sys.stderr)

        cfg, run_cfg = DINOConfig(), RunConfig(seed=0)
        per_item = {"decode": 1, "augmented": sum(n for n, _ in cfg.crops.groups())}
        timed(from_files(MultiCropDataset(m, DECODE)))  # warm the page cache for both
        timed(from_shards(index, MultiCropDataset(sharded, DECODE), args.buffer))
        for cache in ("warm", "cold"):
            run("decode", cache, lambda: from_files(MultiCropDataset(m, DECODE)),
                lambda: from_shards(index, MultiCropDataset(sharded, DECODE), args.buffer))
        aug_files, aug_shards = crop_dataset(m, cfg, run_cfg), crop_dataset(sharded, cfg, run_cfg)
        run("augmented", "warm", lambda: from_files(aug_files),
            lambda: from_shards(index, aug_shards, args.buffer))

    views = sum(n for n, _ in cfg.crops.groups())
    lines = [
        "## Loader throughput per worker: files vs shards",
        "",
        f"Machine: {machine_line()}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}",
        "",
        f"Corpus: first {s['items']} utterances of `{args.corpus / args.manifest}` "
        f"({index.seconds / 60:.1f} min, {s['bytes'] / 1e6:.0f} MB), sharded in "
        f"{shard_s:.1f} s into {s['shards']} shards of up to {args.shard_mb:g} MB; shuffle "
        f"buffer {args.buffer}. One process = one loader worker. `decode`: read, decode, "
        f"one 0.5 s crop; `augmented`: DINO defaults ({views} crops: "
        f"{cfg.crops.n_long} x {cfg.crops.long_seconds:g} s + {cfg.crops.n_short} x "
        f"{cfg.crops.short_seconds:g} s, default augmentation with corpus babble).",
        "",
        f"Median of {args.repeats} passes (files and shards alternating).",
        "",
        "| workload | source | page cache | utterances/s | range | crops/s | bad items |",
        "|---|---|---|---:|---:|---:|---:|",
        *("| " + " | ".join(r) + " |" for r in rows),
    ]
    emit_table(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
