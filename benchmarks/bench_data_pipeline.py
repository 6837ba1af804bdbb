"""Benchmark: multi-crop training batches per second, all augmentations on.

Measures the pretraining input pipeline: ``MultiCropDataset`` (2 x 3 s + 4 x 2 s crops per
utterance, with speed perturbation, reverb, noise incl. corpus babble and gain all applied
with probability 1) behind a ``torch.utils.data.DataLoader`` (batch 16, ``EpochSampler``,
``collate_crops``, ``persistent_workers=False``), for ``num_workers`` 0, 1 and 2.

Two variants are timed for each worker count:

* ``loader only``: batches are pulled from the loader and dropped;
* ``+ features on the fly``: each batch's crop groups also go through ``LogMelFilterbank`` in
  the main process, as a model's forward pass would.

After 2 warm-up batches, ``--batches`` batches are timed, cycling epochs (``set_epoch`` each
epoch). Because ``persistent_workers=False``, every new epoch restarts the worker processes, and
that cost is inside the timing (the tiny corpus has only a few batches per epoch).
Reported: batches/s, crops/s (items x 6 views), seconds of cropped audio per second, and for
``num_workers=0`` the milliseconds per batch.

The corpus is the ``tiny`` synthetic preset, generated into a temporary folder (a few seconds),
or an existing corpus folder given with ``--corpus`` (its ``pretrain.jsonl`` is used).

Run from the repository root::

    python benchmarks/bench_data_pipeline.py
    python benchmarks/bench_data_pipeline.py --corpus data/tiny --batches 50 --workers 0 2

The table is printed and written to ``benchmarks/results/bench_data_pipeline.md``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from _report import emit_table, machine_line
from paravox.audio.features import LogMelFilterbank
from paravox.data.augment import AugmentConfig, WaveAugment
from paravox.data.crops import CropConfig
from paravox.data.dataset import (
    CropBatch,
    EpochSampler,
    MultiCropDataset,
    SkipCounter,
    collate_crops,
)
from paravox.data.manifest import Manifest
from paravox.data.synth import PRESETS, SynthConfig, generate_corpus
from paravox.utils.config import build_config

RESULTS = Path(__file__).resolve().parent / "results"
WARMUP = 2




def make_corpus(out: Path, workers: int) -> None:
    cfg = build_config(SynthConfig, base=PRESETS["tiny"], overrides=[f"workers={workers}"])
    t0 = time.perf_counter()
    s = generate_corpus(cfg, out, progress=False, overwrite=True)
    print(f"generated tiny corpus in {time.perf_counter() - t0:.1f} s "
          f"({s['utterances']} utterances, {s['hours'] * 60:.1f} min)", file=sys.stderr)


def cycle_batches(loader: DataLoader, sampler: EpochSampler) -> Iterator[CropBatch]:
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def time_loader(ds: MultiCropDataset, workers: int, batch_size: int, n_batches: int,
                features: LogMelFilterbank | None, skips: SkipCounter) -> dict:
    sampler = EpochSampler(len(ds), seed=0)
    loader = DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=workers,
                        collate_fn=collate_crops, persistent_workers=False)
    it = cycle_batches(loader, sampler)
    items = crops = 0
    audio_s = 0.0
    t0 = 0.0
    with torch.inference_mode():
        for i in range(WARMUP + n_batches):
            if i == WARMUP:
                t0 = time.perf_counter()
            batch = next(it)
            if features is not None:
                for g in batch.groups:
                    features(g.flatten(0, 1))
            if i >= WARMUP:
                skips.update(batch.skipped)
                items += batch.batch_size
                for g in batch.groups:  # [views, B, samples]
                    crops += g.shape[0] * g.shape[1]
                    audio_s += g.shape[0] * g.shape[1] * g.shape[2] / ds.crops.sample_rate
    elapsed = time.perf_counter() - t0
    del it, loader  # shut the workers down before the next setting starts
    return {"seconds": elapsed, "batches": n_batches, "items": items, "crops": crops,
            "audio_s": audio_s}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=None,
                    help="existing corpus folder (with pretrain.jsonl); default: generate the "
                         "tiny preset in a temporary folder")
    ap.add_argument("--manifest", default="pretrain.jsonl", help="manifest inside the corpus")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2],
                    help="DataLoader num_workers values (default: 0 1 2)")
    ap.add_argument("--batches", type=int, default=30,
                    help=f"timed batches per setting, after {WARMUP} warm-up batches")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--synth-workers", type=int, default=2,
                    help="workers for generating the temporary corpus")
    ap.add_argument("--out", type=Path, default=RESULTS / "bench_data_pipeline.md",
                    help="where to write the Markdown table")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="paravox-bench-data-") as tmp:
        if args.corpus is None:
            corpus = Path(tmp) / "tiny"
            make_corpus(corpus, args.synth_workers)
            corpus_desc = "tiny preset (generated for this run)"
        else:
            corpus = args.corpus
            corpus_desc = str(corpus)
        m = Manifest.load(corpus / args.manifest)

        crops = CropConfig(n_long=2, long_seconds=3.0, n_short=4, short_seconds=2.0)
        aug_cfg = AugmentConfig(noise_prob=1.0, reverb_prob=1.0, speed_prob=1.0, gain_prob=1.0)
        augment = WaveAugment(aug_cfg, babble_sources=[m.audio_path(r) for r in m.rows][:50])
        ds = MultiCropDataset(m, crops, augment, seed=0)
        fb = LogMelFilterbank()
        views = sum(n for n, _ in crops.groups())
        per_epoch = -(-len(ds) // args.batch_size)

        results = []
        skips = SkipCounter()
        for workers in args.workers:
            for variant, feats in (("loader only", None), ("+ features on the fly", fb)):
                r = time_loader(ds, workers, args.batch_size, args.batches, feats, skips)
                r.update(workers=workers, variant=variant)
                results.append(r)
                print(f"[workers={workers}, {variant}] {r['batches'] / r['seconds']:.2f} "
                      f"batches/s", file=sys.stderr)

    lines = [
        "## Multi-crop data pipeline, all augmentations on",
        "",
        f"Machine: {machine_line()}",
        "",
        f"Corpus: {corpus_desc}, `{args.manifest}` with {len(ds)} utterances "
        f"({per_epoch} batches per epoch). Batch {args.batch_size}, {views} views per item "
        f"({crops.n_long} x {crops.long_seconds:g} s + {crops.n_short} x "
        f"{crops.short_seconds:g} s); noise, reverb, speed and gain with probability 1. "
        f"{args.batches} timed batches after {WARMUP} warm-up, persistent_workers=False "
        f"(worker start-up at every epoch is included). Skipped items: {skips.summary()}.",
        "",
        "| num_workers | variant | batches/s | crops/s | crop audio s / s | ms per batch |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for r in results:
        s = r["seconds"]
        ms = f"{1000 * s / r['batches']:.0f}" if r["workers"] == 0 else "-"
        lines.append(
            f"| {r['workers']} | {r['variant']} | {r['batches'] / s:.2f} | {r['crops'] / s:.0f} "
            f"| {r['audio_s'] / s:.0f} | {ms} |"
        )
    emit_table(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
