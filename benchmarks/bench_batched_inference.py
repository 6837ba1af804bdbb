"""Benchmark: whole-utterance inference one utterance at a time vs in padded batches.

Times the three inference paths of the evaluations on a corpus's test split, each both ways
(the "one at a time" run switches the encoder's ``pads_exactly`` off on its instance):

* ``embed_manifest`` (speaker verification, linear probes, ``paravox embed``);
* ``Embedder.frames_many`` with every layer (the phone probe's extraction);
* fine-tuning's test posteriors (``predict_proba``, a random 4-class head).

and reports the largest difference between the two (float rounding only). The encoders are
the demo recipes' sizes, drawn at random (speed does not depend on the weights). Run from the
repository root after ``make demo`` (or ``paravox synth --preset demo -o data/demo``)::

    python benchmarks/bench_batched_inference.py [--corpus data/demo] [--utterances 480]

The table is printed and written to ``benchmarks/results/bench_batched_inference.md``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from _report import emit_table, machine_line
from paravox.audio.features import FeatureConfig
from paravox.audio.io import load_audio
from paravox.data.manifest import Manifest
from paravox.inference import Embedder
from paravox.inference.bundle import random_bundle
from paravox.inference.embedder import embed_manifest
from paravox.training.engine import cpu_has_native_bf16
from paravox.transfer.finetune import predict_proba

ENCODERS = {
    "ECAPA C=128 (DINO / SimCLR demo)": ("ecapa", {"channels": 128, "mfa_channels": 384}),
    "x-vector 256 (x-vector demo)": ("xvector", {"channels": 256, "stats_channels": 768,
                                                  "embedding_dim": 256}),
}


class Classifier(nn.Module):
    """Encoder + a linear layer: the shape of fine-tuning's classifier network."""

    def __init__(self, encoder, n_classes: int = 4):
        super().__init__()
        self.encoder = encoder
        self.classifier = nn.Module()
        self.classifier.linear = nn.Linear(encoder.embedding_dim, n_classes)

    def forward(self, feats, lengths=None):
        return self.classifier.linear(self.encoder(feats, lengths).embedding)


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def both_ways(emb: Embedder, fn, repeats: int = 2):
    """(seconds one at a time, seconds batched, largest difference) of ``fn(emb)``: the two
    ways alternate ``repeats`` times (so neither gets a warmer cache), best time of each."""
    t_one, t_batch = [], []
    for _ in range(repeats):
        emb.encoder.pads_exactly = False
        t, one = timed(lambda: fn(emb))
        t_one.append(t)
        del emb.encoder.pads_exactly  # back to the class's value
        t, batched = timed(lambda: fn(emb))
        t_batch.append(t)
    return min(t_one), min(t_batch), max(float(np.abs(a - b).max())
                                         for a, b in zip(one, batched))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", default="data/demo")
    p.add_argument("--utterances", type=int, default=480, help="test rows used")
    p.add_argument("--out", default="benchmarks/results/bench_batched_inference.md")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    test = Manifest.load(Path(args.corpus) / "test.jsonl")
    test.rows = test.rows[:args.utterances]
    waves = [load_audio(test.audio_path(r), r.offset, r.duration) for r in test]
    seconds = sum(len(w) for w in waves) / 16000
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (encoder, settings) in ENCODERS.items():
            bundle = random_bundle(encoder, settings, vars(FeatureConfig()),
                                   Path(tmp) / encoder)
            emb = Embedder.from_bundle(bundle)
            torch.manual_seed(0)
            net = Classifier(emb.encoder).eval()
            emb.embed(waves[:4], sample_rate=16000)  # warm-up, both ways
            emb.embed(waves[0], sample_rate=16000)
            jobs = {
                "embed_manifest": lambda e: list(embed_manifest(e, test, progress=False)
                                                 .values()),
                "frames_many (all layers)": lambda e: [
                    np.concatenate([f.layers[n].ravel() for n in f.layers])
                    for f in e.frames_many(waves)],
                "fine-tuning posteriors": lambda e, net=net: list(predict_proba(net, e.fbank,
                                                                                 waves)),
            }
            for job, fn in jobs.items():
                t_one, t_batch, diff = both_ways(emb, fn)
                rows.append(f"| {name} | {job} | {t_one:.1f} | {t_batch:.1f} | "
                            f"{t_one / t_batch:.2f}x | {diff:.1e} |")
                print(rows[-1], flush=True)
    lines = [f"## Whole-utterance inference: one at a time vs padded batches "
             f"({len(waves)} test utterances, {seconds / 60:.1f} min of audio)", "",
             f"Machine: {machine_line()}, native bf16: {cpu_has_native_bf16()} "
             f"(inference runs in float32 either way)", "",
             "Best of two alternations each.", "",
             "| encoder | path | one at a time (s) | batched (s) | speed-up | max abs diff |",
             "|---|---|---:|---:|---:|---:|", *rows]
    emit_table(lines, Path(args.out))


if __name__ == "__main__":
    main()
