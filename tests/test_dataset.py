import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from paravox.data.augment import AugmentConfig, WaveAugment
from paravox.data.crops import CropConfig
from paravox.data.dataset import EpochSampler, MultiCropDataset, SkipCounter, collate_crops
from paravox.data.manifest import Manifest, ManifestRow
from paravox.errors import AudioError

CROPS = CropConfig(n_long=2, long_seconds=1.0, n_short=3, short_seconds=0.5)


def loader_batches(ds, workers, epochs=(0, 1)):
    sampler = EpochSampler(len(ds), seed=3)
    dl = DataLoader(ds, batch_size=4, sampler=sampler, num_workers=workers,
                    collate_fn=collate_crops)
    out = []
    for e in epochs:
        sampler.set_epoch(e)
        out += list(dl)
    return out


def test_batches_identical_for_any_worker_count(tiny_corpus):
    root, _ = tiny_corpus
    m = Manifest.load(root / "pretrain.jsonl")
    m.rows = m.rows[:12]
    aug = WaveAugment(AugmentConfig(noise_prob=1, reverb_prob=1, speed_prob=1, gain_prob=1,
                                    n_simulated_rirs=4),
                      babble_sources=[m.audio_path(r) for r in m.rows[:5]])
    ds = MultiCropDataset(m, CROPS, aug, seed=7)
    b0, b2 = loader_batches(ds, 0), loader_batches(ds, 2)
    assert len(b0) == 6
    for x, y in zip(b0, b2):
        assert x.ids == y.ids
        assert [g.shape for g in x.groups] == [(2, 4, 16000), (3, 4, 8000)]
        for gx, gy in zip(x.groups, y.groups):
            assert torch.equal(gx, gy)
    # a new epoch draws new crops of the same utterance
    first = {i: g for b in b0[:3] for i, g in zip(b.ids, b.groups[0].unbind(1))}
    second = {i: g for b in b0[3:] for i, g in zip(b.ids, b.groups[0].unbind(1))}
    assert first.keys() == second.keys()
    assert not any(torch.equal(first[i], second[i]) for i in first)


def make_bad_manifest(tiny_corpus, tmp_path):
    root, _ = tiny_corpus
    good = Manifest.load(root / "train.jsonl")
    (tmp_path / "broken.wav").write_bytes(b"garbage")
    rows = [ManifestRow(r.id, str(good.audio_path(r))) for r in good.rows[:5]]
    rows.insert(2, ManifestRow("gone", str(tmp_path / "gone.wav")))
    rows.insert(4, ManifestRow("broken", str(tmp_path / "broken.wav")))
    return Manifest(rows)


def test_bad_items_are_skipped_counted_and_reported(tiny_corpus, tmp_path):
    ds = MultiCropDataset(make_bad_manifest(tiny_corpus, tmp_path), CROPS, seed=0)
    counter = SkipCounter()
    seen = 0
    for batch in loader_batches(ds, 0, epochs=(0,)):
        counter.update(batch.skipped)
        seen += batch.batch_size
    assert seen == 5 and counter.total == 2
    assert "gone.wav" in counter.summary() and "broken.wav" in counter.summary()


def test_fail_fast_names_the_file(tiny_corpus, tmp_path):
    ds = MultiCropDataset(make_bad_manifest(tiny_corpus, tmp_path), CROPS, on_error="raise")
    with pytest.raises(AudioError, match="gone.wav"):
        [ds[i] for i in range(len(ds))]


def test_too_short_items_are_dropped_when_asked(tiny_corpus):
    root, _ = tiny_corpus
    m = Manifest.load(root / "train.jsonl")
    m.rows = m.rows[:4]
    long_crop = CropConfig(n_long=1, long_seconds=60.0, n_short=0, short_policy="drop")
    batch = collate_crops([MultiCropDataset(m, long_crop)[i] for i in range(4)])
    assert batch.batch_size == 0 and len(batch.skipped) == 4
    assert all(b.reason.startswith("too_short") for b in batch.skipped)


def test_sampler_keys_encode_epoch():
    s = EpochSampler(5, seed=0)
    s.set_epoch(2)
    keys = list(s)
    assert sorted(k - 10 for k in keys) == list(range(5))
    assert list(EpochSampler(5, shuffle=False)) == list(range(5))
    assert np.unique(keys).size == 5
