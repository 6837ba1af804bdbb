"""A picture of what the data pipeline feeds a model: one utterance, its phone alignment,
its log-mel features, and the augmented multi-crop views."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from paravox.audio.features import LogMelFilterbank
from paravox.audio.io import load_audio
from paravox.data.augment import AugmentConfig, WaveAugment
from paravox.data.crops import CropConfig, multi_crop
from paravox.data.manifest import Manifest
from paravox.utils.atomic_files import atomic_path


def preview_utterance(manifest_path: str | Path, out_png: str | Path, utt_id: str | None = None,
                      seed: int = 0) -> Path:
    """Draw utterance ``utt_id`` (default: the first) of a manifest into ``out_png``: the wave
    with its phone alignment, its log-mel features and every augmented multi-crop view.

    A check of the data pipeline by eye (``paravox preview``): what a model is actually fed,
    with noise and gain on every view; ``seed`` fixes the crops and augmentation.
    """
    m = Manifest.load(manifest_path)
    row = m[utt_id] if utt_id else m[0]
    wave = load_audio(m.audio_path(row), row.offset, row.duration)
    fbank = LogMelFilterbank()
    feats = fbank(torch.from_numpy(wave))[0][0].numpy()
    rng = np.random.default_rng(seed)
    crops_cfg = CropConfig(long_seconds=min(3.0, len(wave) / 16000),
                           short_seconds=min(1.5, len(wave) / 16000))
    aug = WaveAugment(AugmentConfig(noise_prob=1.0, reverb_prob=0.5, gain_prob=1.0))
    groups = multi_crop(wave, crops_cfg, rng)
    views = [(f"{'long' if g == 0 else 'short'} {i}", aug.crop(v, rng))
             for g, grp in enumerate(groups) for i, v in enumerate(grp)]

    fig = Figure(figsize=(13, 3 + 1.4 * len(views)), constrained_layout=True)
    grid = fig.add_gridspec(2 + len(views), 1, height_ratios=[1.2, 1.6] + [1] * len(views))
    ax = fig.add_subplot(grid[0])
    t = np.arange(len(wave)) / 16000
    ax.plot(t, wave, lw=0.4, color="0.2")
    title = f"{row.id}  speaker={row.speaker}  lang={row.language}  " + "  ".join(
        f"{k}={v}" for k, v in row.labels.items())
    ax.set_title(title, fontsize=9, loc="left")
    ax.set_xlim(0, t[-1])
    ax.set_ylabel("wave")
    if row.alignment is not None:
        pos = 0
        for p, c in zip(row.alignment.phones, row.alignment.counts):
            if p != "sil":
                ax.axvspan(pos * 0.01, (pos + c) * 0.01, alpha=0.08, color="C0")
                ax.text((pos + c / 2) * 0.01, ax.get_ylim()[1] * 0.85, p, ha="center",
                        fontsize=6)
            pos += c
    ax2 = fig.add_subplot(grid[1])
    ax2.imshow(feats.T, origin="lower", aspect="auto", extent=(0, feats.shape[0] / 100, 0, 80),
               cmap="magma")
    ax2.set_ylabel("log-mel bin")
    ax2.set_xlabel("time (s)")
    for i, (name, v) in enumerate(views):
        axv = fig.add_subplot(grid[2 + i])
        f = fbank(torch.from_numpy(np.ascontiguousarray(v)))[0][0].numpy()
        axv.imshow(f.T, origin="lower", aspect="auto", cmap="magma",
                   extent=(0, f.shape[0] / 100, 0, 80))
        axv.set_ylabel(name, fontsize=8)
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:  # whole or not at all
        fig.savefig(tmp, dpi=90, format=out_png.suffix[1:] or "png")
    return out_png
