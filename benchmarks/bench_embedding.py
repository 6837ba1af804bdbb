"""Benchmark: embedding extraction speed per encoder, PyTorch vs ONNX Runtime, per CPU core.

Each encoder is drawn at random (speed does not depend on the weights), written as a bundle and
exported to ONNX (``paravox export --onnx`` does the same). The timed call is what
``Embedder.embed`` does for one whole utterance: waveform -> log-mel features -> encoder ->
embedding, batch 1. Both runtimes get one thread (``torch.set_num_threads(1)``; ONNX Runtime
``intra_op_num_threads=1``), so the real-time factor is per CPU core.

Run from the repository root::

    python benchmarks/bench_embedding.py                    # 10 s utterances, 5 repeats
    python benchmarks/bench_embedding.py --seconds 4 --repeats 10

The table is printed and written to ``benchmarks/results/bench_embedding.md``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from _report import emit_table, machine_line
from paravox.audio.features import FeatureConfig
from paravox.inference import Embedder
from paravox.inference.bundle import random_bundle
from paravox.inference.onnx_export import OnnxEmbedder, export_onnx

# name -> (encoder, settings); the demo recipes' sizes and the published ones
ENCODERS = {
    "ECAPA C=128 (demo recipes)": ("ecapa", {"channels": 128, "mfa_channels": 384}),
    "ECAPA C=512 (DINO paper)": ("ecapa", {"channels": 512}),
    "ResNet34 (32 ch)": ("resnet34", {}),
    "x-vector 256 (demo recipe)": ("xvector", {"channels": 256, "stats_channels": 768,
                                                "embedding_dim": 256}),
    "x-vector 512 (Snyder 2018)": ("xvector", {}),
}


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=10.0, help="utterance length")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default="benchmarks/results/bench_embedding.md")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    wave = (np.random.default_rng(0).standard_normal(int(args.seconds * 16000)) * 0.1
            ).astype(np.float32)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (encoder, settings) in ENCODERS.items():
            bundle = random_bundle(encoder, settings, vars(FeatureConfig()),
                                   Path(tmp) / encoder / str(len(rows)))
            export_onnx(bundle)
            torch_emb, onnx_emb = Embedder.from_bundle(bundle), OnnxEmbedder(bundle, threads=1)
            diff = float(np.abs(torch_emb.embed(wave) - onnx_emb.embed(wave)).max())
            t_torch = median_seconds(lambda e=torch_emb: e.embed(wave), args.repeats)
            t_onnx = median_seconds(lambda e=onnx_emb: e.embed(wave), args.repeats)
            n_params = sum(p.numel() for p in torch_emb.encoder.parameters())
            rows.append(f"| {name} | {n_params / 1e6:.2f} M | {1000 * t_torch:.0f} | "
                        f"{args.seconds / t_torch:.0f}x | {1000 * t_onnx:.0f} | "
                        f"{args.seconds / t_onnx:.0f}x | {t_torch / t_onnx:.2f}x | {diff:.1e} |")
            print(rows[-1], flush=True)
    lines = [f"## Embedding extraction, one CPU core, {args.seconds:g} s utterances, batch 1",
             "", f"Machine: {machine_line()}", "",
             "| encoder | parameters | PyTorch ms | PyTorch RTF | ONNX Runtime ms | ONNX RTF | "
             "ONNX speed-up | max abs diff |",
             "|---|---:|---:|---:|---:|---:|---:|---:|", *rows, "",
             f"Median of {args.repeats} runs after one warm-up; RTF = audio seconds per wall "
             f"second (higher is faster); features are included in both."]
    emit_table(lines, Path(args.out))


if __name__ == "__main__":
    main()
