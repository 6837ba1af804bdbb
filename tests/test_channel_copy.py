"""A split copied through the corpus's test channel: same rows, degraded audio, reproducible,
and only for generated corpora whose test audio has a channel."""

from __future__ import annotations

import numpy as np
import yaml

from paravox.audio.io import load_audio
from paravox.data.manifest import Manifest
from paravox.data.synth.channel_copy import channel_copy, corpus_channel


def test_copy_keeps_the_rows_and_degrades_the_audio(tiny_corpus, tmp_path):
    root, _ = tiny_corpus
    cfg = corpus_channel(root)
    assert cfg is not None and cfg.test_channel
    src = Manifest.load(root / "train.jsonl")
    dest = channel_copy(root / "train.jsonl", tmp_path / "a", cfg)
    copy = Manifest.load(dest)
    assert dest == tmp_path / "a" / "train.jsonl"
    assert [r.id for r in copy.rows] == [r.id for r in src.rows]
    for a, b in zip(src.rows[:6], copy.rows[:6]):
        assert b.speaker == a.speaker and b.alignment == a.alignment
        assert {k: v for k, v in b.labels.items() if k != "channel"} == a.labels
        assert b.labels["channel"].startswith("eq+")
        clean, noisy = load_audio(src.audio_path(a)), load_audio(copy.audio_path(b))
        assert noisy.shape == clean.shape and np.abs(noisy).max() <= 0.99 + 1e-4
        # EQ + noise at 5-25 dB SNR: the copy is audibly different, not a rescaled original
        corr = np.corrcoef(clean, noisy)[0, 1]
        assert corr < 0.999, (a.id, corr)
    # reproducible: the same seed gives the same files, another seed other ones
    again = Manifest.load(channel_copy(root / "train.jsonl", tmp_path / "b", cfg))
    other = Manifest.load(channel_copy(root / "train.jsonl", tmp_path / "c", cfg, seed=7))
    first = load_audio(copy.audio_path(copy.rows[0]))
    assert np.array_equal(first, load_audio(again.audio_path(again.rows[0])))
    assert not np.array_equal(first, load_audio(other.audio_path(other.rows[0])))


def test_only_generated_corpora_with_a_test_channel_have_one(tiny_corpus, tmp_path):
    root, _ = tiny_corpus
    assert corpus_channel(tmp_path) is None  # no config.yaml: a prepared real corpus
    (tmp_path / "config.yaml").write_text("source: voxceleb1\nsample_rate: 16000\n")
    assert corpus_channel(tmp_path) is None  # not a synth config
    cfg = yaml.safe_load((root / "config.yaml").read_text())
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg | {"test_channel": False}))
    assert corpus_channel(tmp_path) is None
