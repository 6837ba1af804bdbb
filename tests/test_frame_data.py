"""The frame-level data path: crop offsets, phone targets cut to each crop, and masks that
come back with the features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from paravox.audio.features import LogMelFilterbank
from paravox.audio.io import load_audio
from paravox.data.augment import AugmentConfig, WaveAugment
from paravox.data.crops import (
    IGNORE,
    CropConfig,
    crop_frame_targets,
    fit_length,
    multi_crop,
    stretch_labels,
)
from paravox.data.dataset import (
    MultiCropDataset,
    collate_crops,
    read_item,
    utterance_frame_labels,
)
from paravox.data.labels import frame_label_ids, phone_inventory
from paravox.data.manifest import Manifest
from paravox.data.specaugment import SpecAugment, SpecAugmentConfig, draw_span_mask, time_mask

HOP = 160


def reference_targets(labels, n_samples, start, length, policy):
    """Per-frame loop: the label under the centre sample of each crop frame."""
    out = []
    for j in range(length // HOP + 1):
        p = start + j * HOP
        if policy == "repeat":
            p %= n_samples
        if p >= n_samples + HOP // 2:
            out.append(IGNORE)
            continue
        out.append(labels[min(int(np.floor(p / HOP + 0.5)), len(labels) - 1)])
    return np.array(out)


@pytest.mark.parametrize("policy", ["repeat", "pad"])
def test_crop_targets_match_a_per_frame_loop(policy):
    rng = np.random.default_rng(0)
    for n_samples in (16000, 3000, 4321):
        labels = rng.integers(0, 30, n_samples // HOP + 1)
        for length in (8000, 16000, 12345):
            fitted = fit_length(np.zeros(n_samples), length, policy)
            for start in rng.integers(0, fitted.size - length + 1, 5):
                got = crop_frame_targets(labels, n_samples, int(start), length, policy)
                want = reference_targets(labels, n_samples, int(start), length, policy)
                np.testing.assert_array_equal(got, want)


def test_crop_starts_reproduce_the_crops():
    wave = np.random.default_rng(1).standard_normal(40000).astype(np.float32)
    cfg = CropConfig(n_long=2, long_seconds=1.0, n_short=3, short_seconds=0.5)
    groups, starts = multi_crop(wave, cfg, np.random.default_rng(7), return_starts=True)
    same = multi_crop(wave, cfg, np.random.default_rng(7))  # the draws are unchanged
    for g, s, g2 in zip(groups, starts, same):
        np.testing.assert_array_equal(g, g2)
        for crop, st in zip(g, s):
            np.testing.assert_array_equal(crop, wave[st:st + crop.size])


def test_stretch_labels_follows_time():
    labels = np.repeat(np.arange(10), 10)  # 100 frames
    half = stretch_labels(labels, 50)  # twice as fast
    np.testing.assert_array_equal(half, np.repeat(np.arange(10), 5))
    assert stretch_labels(labels, 100) is labels


def test_dataset_batches_carry_targets_aligned_with_features(tiny_corpus):
    root, _ = tiny_corpus
    m = Manifest.load(root / "train.jsonl")
    m.rows = m.rows[:6]
    phones = phone_inventory(m)
    assert phones[0] == "sil" and len(phones) > 5
    index = {p: i for i, p in enumerate(phones)}
    crops = CropConfig(n_long=2, long_seconds=1.0, n_short=2, short_seconds=0.5)
    ds = MultiCropDataset(m, crops, seed=3, frame_labels=index)
    batch = collate_crops([ds[i] for i in range(len(ds))])
    fbank = LogMelFilterbank()
    for g, (wave_g, tgt_g, st_g) in enumerate(zip(batch.groups, batch.targets, batch.starts)):
        v, b, n = wave_g.shape
        feats, _ = fbank(wave_g.reshape(v * b, n))
        assert tgt_g.shape == (v, b, feats.shape[1])  # one target per feature frame
        for i, row in enumerate(batch.rows):
            labels = frame_label_ids(row, index)
            full = load_audio(m.audio_path(row))
            for view in range(v):
                st = int(st_g[view, i])
                np.testing.assert_array_equal(batch.groups[g][view, i].numpy(),
                                              fit_length(full, n, "repeat")[st:st + n])
                want = crop_frame_targets(labels, full.size, st, n)
                np.testing.assert_array_equal(tgt_g[view, i].numpy(), want)
    # a row without an alignment is skipped and named, not a crash
    m.rows[0].alignment = None
    item = MultiCropDataset(m, crops, frame_labels=index)[0]
    assert item.reason.startswith("no_alignment") and m.rows[0].id in item.reason


def test_speed_perturbed_targets_keep_their_length(tiny_corpus):
    root, _ = tiny_corpus
    m = Manifest.load(root / "train.jsonl")
    m.rows = m.rows[:3]
    index = {p: i for i, p in enumerate(phone_inventory(m))}
    aug = WaveAugment(AugmentConfig(speed_prob=1.0, noise_prob=0, reverb_prob=0, gain_prob=0))
    for i in range(3):
        row, _, wave = read_item(m, i, 0, aug)  # speed-perturbed whole utterance
        targets = utterance_frame_labels(row, index, wave.size, HOP)
        assert targets.size == wave.size // HOP + 1
        assert (targets != IGNORE).all()


def test_masks_come_back_with_the_features():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(3, 200, 40) + 5
    sa = SpecAugment(SpecAugmentConfig(time_masks=2, max_time_width=20, freq_masks=2,
                                       max_freq_width=8)).train()
    out, (tm, fm) = sa(feats, generator=g, return_mask=True)
    masked = tm[:, :, None] | fm[:, None, :]
    assert torch.equal(out == 0, masked) and masked.any()
    g = torch.Generator().manual_seed(0)
    again = sa(feats, generator=g)  # the same draws without the mask
    assert torch.equal(again, out)
    out, hit = time_mask(feats, 0.2, 2, torch.Generator().manual_seed(1), return_mask=True)
    assert torch.equal((out == 0).all(-1), hit)


def test_draw_span_mask_follows_wav2vec2_rules():
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([1000, 400, 7, 0])
    m = draw_span_mask(4, 1000, 0.065, 10, lengths=lengths, generator=g)
    for i, n in enumerate(lengths.tolist()):
        assert not m[i, n:].any()  # padding never masked
        runs = np.diff(np.flatnonzero(np.diff(np.r_[0, m[i].int().numpy(), 0])))[::2]
        assert all(r >= 10 for r in runs)  # spans (possibly merged) are >= span long
    assert not m[2].any()  # shorter than one span
    # expected coverage of p * L / span starts of length span, with overlaps
    big = draw_span_mask(64, 2000, 0.5, 10, generator=torch.Generator().manual_seed(2))
    starts = 0.5 * 2000 / 10
    expected = 1 - (1 - 10 / 1991) ** starts
    assert abs(big.float().mean().item() - expected) < 0.03
    assert draw_span_mask(2, 50, 0.0, 5, min_spans=2).sum(1).ge(5).all()
