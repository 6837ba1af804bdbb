"""The phone-classification probe on frozen frame features: the edit distance against an
independent implementation, PER and frame accuracy on a hand-made case, probes that separate
separable frames, layers read on the label grid, and end-to-end runs on the tiny corpus."""

from functools import cache

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from paravox.data.manifest import Manifest
from paravox.errors import ConfigError
from paravox.evaluation.frame_metrics import (
    collapse,
    edit_distance,
    frame_accuracy,
    phone_error_rate,
)
from paravox.evaluation.phone_probe import (
    LOGMEL,
    WEIGHTED,
    PhoneProbeConfig,
    WeightedSumProbe,
    make_probe,
    on_label_grid,
    phone_probe,
    predict,
    train_probe,
    weighted_layers,
)


def levenshtein_recursive(a: str, b: str) -> int:
    """The textbook recursion, memoised: an implementation independent of the DP's."""

    @cache
    def d(i: int, j: int) -> int:
        if i == 0 or j == 0:
            return i + j
        return min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (a[i - 1] != b[j - 1]))

    return d(len(a), len(b))


@settings(max_examples=200, deadline=None)
@given(st.text("abcd", max_size=12), st.text("abcd", max_size=12))
def test_edit_distance_equals_the_recursive_definition(a, b):
    assert edit_distance(a, b) == levenshtein_recursive(a, b) == edit_distance(b, a)


def test_edit_distance_known_values():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([], ["a", "b"]) == 2 and edit_distance(["a"], []) == 1
    assert edit_distance(["sh", "i", "p"], ["sh", "i", "p"]) == 0


def test_per_and_frame_accuracy_on_a_hand_made_case():
    ref = ["sil", "sil", "a", "a", "b", "b", "sil", "a", "c", "c"]
    hyp = ["sil", "a", "a", "a", "b", "d", "d", "a", "c", "c"]
    assert collapse(ref) == ["sil", "a", "b", "sil", "a", "c"]
    assert frame_accuracy([ref], [hyp]) == pytest.approx(7 / 10)
    # without silence: ref a b a c, hyp a b d a c -> one insertion
    assert phone_error_rate([ref], [hyp]) == pytest.approx(1 / 4)
    # with silence: ref sil a b sil a c, hyp sil a b d a c -> one substitution
    assert phone_error_rate([ref], [hyp], silence=None) == pytest.approx(1 / 6)
    # summed over utterances, not averaged: a perfect one of 1 phone and one of 4 with 1 error
    assert phone_error_rate([["x"], ref], [["x"], hyp]) == pytest.approx(1 / 5)
    assert frame_accuracy([["x"], ref], [["y"], hyp]) == pytest.approx(7 / 11)


def _separable(n=3000, classes=5, dim=12, seed=0):
    """Gaussian clusters with far-apart means: any sensible probe separates them."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((classes, dim)) * 4
    y = rng.integers(0, classes, n)
    x = means[y] + rng.standard_normal((n, dim))
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_probes_separate_separable_frames(kind):
    x, y = _separable()
    cfg = PhoneProbeConfig(epochs=5, batch_size=128, lr=3e-3)
    torch.manual_seed(0)
    model = train_probe(make_probe(kind, 12, 5, hidden=32), [x[:2000]], y[:2000], cfg)
    acc = (predict(model, [x[2000:]]) == y[2000:].numpy()).mean()
    assert acc > 0.95


def test_weighted_sum_learns_to_prefer_the_informative_layer():
    x, y = _separable(dim=8)
    noise = torch.randn_like(x)
    cfg = PhoneProbeConfig(epochs=8, batch_size=128, lr=1e-2)
    torch.manual_seed(0)
    model = train_probe(WeightedSumProbe(2, 8, 5), [noise[:2000], x[:2000]], y[:2000], cfg)
    acc = (predict(model, [noise[2000:], x[2000:]]) == y[2000:].numpy()).mean()
    w = torch.softmax(model.layer_weights.detach(), 0)
    assert acc > 0.95 and w[1] > w[0]


def test_weighted_layers_take_the_most_common_width():
    assert weighted_layers({"stem": 64, "block1": 64, "block2": 64, "mfa": 192}) == [
        "stem", "block1", "block2"]
    assert weighted_layers({"a": 8, "b": 8, "c": 16, "d": 16}) == ["c", "d"]  # tie: deeper
    assert weighted_layers({"a": 8, "b": 16}) == []


def test_layers_are_read_on_the_label_grid():
    # a 20 ms layer whose frame k is centred at 5 ms + 20 ms k; value = frame index
    frames = np.arange(6, dtype=np.float32)[:, None]
    grid = on_label_grid(frames, 0.02, 0.005, 12)[:, 0]
    np.testing.assert_array_equal(grid, [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5])


@pytest.fixture(scope="module")
def splits(tiny_corpus):
    root, _ = tiny_corpus
    return Manifest.load(root / "train.jsonl"), Manifest.load(root / "test.jsonl")


FAST = dict(epochs=2, max_train_frames=6000, max_utterances=16, batch_size=256, lr=3e-3,
            mlp_hidden=64)
KEYS = {"layer", "probe", "frame_accuracy", "per", "n_train_frames", "n_test_frames"}


def test_log_mel_probe_on_the_tiny_corpus(splits):
    train, test = splits
    result = phone_probe("logmel", train, test, PhoneProbeConfig(**FAST), progress=False)
    rows = result.rows()
    assert [(r["layer"], r["probe"]) for r in rows] == [(LOGMEL, "linear"), (LOGMEL, "mlp")]
    assert all(set(r) == KEYS for r in rows)
    assert rows[0]["n_train_frames"] == 6000 and rows[0]["n_test_frames"] > 1000
    chance = 1 / len(result.phones)
    assert len(result.phones) > 10
    assert all(r["frame_accuracy"] > 3 * chance for r in rows)
    assert all(r["per"] > 0 for r in rows)
    assert result.best == rows[0] and result.summary()["chance"] == pytest.approx(chance)
    assert result.layer_weights is None
    assert "| log-mel | linear |" in result.format_table()
    # seeded: the same again
    again = phone_probe("logmel", train, test, PhoneProbeConfig(**FAST), progress=False)
    assert again.rows() == rows


def test_random_ecapa_probe_table(splits, tmp_path):
    from paravox.inference import Embedder
    from paravox.inference.bundle import random_bundle

    train, test = splits
    bundle = random_bundle("ecapa", {"channels": 32, "mfa_channels": 96, "se_channels": 16,
                                     "attention_channels": 16, "scale": 4,
                                     "embedding_dim": 16}, {"n_mels": 40}, tmp_path / "b")
    emb = Embedder.from_bundle(bundle)
    small = {**FAST, "max_utterances": 6, "max_train_frames": 3000}
    cfg = PhoneProbeConfig(**{**small, "probes": ["linear"], "layers": ["stem", -1]})
    result = phone_probe(emb, train, test, cfg, progress=False)
    table = [(r["layer"], r["probe"]) for r in result.rows()]
    assert table == [(LOGMEL, "linear"), ("stem", "linear"), ("mfa", "linear")]  # no sum:
    # stem and mfa differ in width
    cfg = PhoneProbeConfig(**{**small, "probes": ["linear", "mlp"], "epochs": 1})
    result = phone_probe(emb, train, test, cfg, progress=False)
    layers = [r["layer"] for r in result.rows()]
    assert layers == [LOGMEL] * 2 + [n for n in emb.layer_names for _ in (0, 1)] + [WEIGHTED]
    assert set(result.layer_weights) == {"stem", "block1", "block2", "block3"}
    assert sum(result.layer_weights.values()) == pytest.approx(1.0)
    assert result.best["layer"] in emb.layer_names and result.best["probe"] == "linear"
    summary = result.summary()
    assert summary["source"] == "ecapa" and summary["weighted"]["layer"] == WEIGHTED
    chance = 1 / len(result.phones)
    assert all(0 <= r["frame_accuracy"] <= 1 and set(r) == KEYS for r in result.rows())
    assert result.row(LOGMEL)["frame_accuracy"] > 3 * chance


def test_bad_settings_are_named(splits):
    train, test = splits
    with pytest.raises(ConfigError, match="'svm'"):
        phone_probe("logmel", train, test, PhoneProbeConfig(probes=["svm"]), progress=False)
    with pytest.raises(ConfigError, match="Embedder or 'logmel'"):
        phone_probe("mfcc", train, test, progress=False)
    bare = Manifest([r.__class__(id=r.id, path=r.path) for r in train.rows[:2]],
                    root=train.root)
    with pytest.raises(ConfigError, match="alignment"):
        phone_probe("logmel", bare, test, progress=False)


def test_mode_filter_matches_a_window_loop():
    from collections import Counter

    from paravox.evaluation.frame_metrics import mode_filter

    rng = np.random.default_rng(0)
    for window in (1, 3, 5, 9):
        labels = rng.integers(0, 4, 57)
        got = mode_filter(labels, window)
        half = window // 2
        want = []
        for i in range(len(labels)):
            counts = Counter(labels[max(i - half, 0): i + half + 1].tolist())
            top = max(counts.values())
            want.append(min(k for k, c in counts.items() if c == top))
        np.testing.assert_array_equal(got, want)
    # one-frame flickers inside a phone disappear; a run of the window's majority survives
    assert mode_filter(np.array([1, 1, 1, 2, 1, 1, 1]), 3).tolist() == [1] * 7


def test_several_splits_score_like_one_split_each(splits, tmp_path):
    """Probes trained once and scored on two splits give each split exactly what a
    single-split run gives."""
    from paravox.evaluation.phone_probe import phone_probe_splits
    from paravox.inference import Embedder
    from paravox.inference.bundle import random_bundle

    train, test = splits
    bundle = random_bundle("ecapa", {"channels": 16, "mfa_channels": 48, "se_channels": 8,
                                     "attention_channels": 8, "embedding_dim": 16},
                           {"n_mels": 40}, tmp_path / "b")
    emb = Embedder.from_bundle(bundle)
    cfg = PhoneProbeConfig(**{**FAST, "max_utterances": 6, "max_train_frames": 2000,
                              "probes": ["linear"], "epochs": 1})
    both = phone_probe_splits(emb, train, {"a": test, "b": train}, cfg, progress=False)
    assert both["a"].rows() == phone_probe(emb, train, test, cfg, progress=False).rows()
    assert both["b"].rows() == phone_probe(emb, train, train, cfg, progress=False).rows()
    assert both["a"].rows() != both["b"].rows()
