"""Two-step fine-tuning: class-balanced batches, time masks, anchor/positive pairs, the step-1
loss composition, top-layer freezing, the adapter, and the whole experiment from the command
line on the tiny corpus (method + baselines + table + bundles that load like any other)."""

import json
import warnings
from collections import Counter

import numpy as np
import pytest
import torch

from paravox.data.balanced import ROUNDS_PER_EPOCH, ClassBalancedSampler
from paravox.data.specaugment import time_mask
from paravox.errors import ConfigError
from paravox.models import build_encoder
from paravox.objectives.redundancy import barlow_twins_loss
from paravox.objectives.triplet import cosine_triplet_loss
from paravox.transfer.two_step import (
    TwoStepConfig,
    TwoStepModule,
    adapter_probabilities,
    load_adapter,
    pair_indices,
    save_adapter,
    set_trainable_layers,
    step1_method_config,
    train_adapter,
)
from test_inference import dino_run  # noqa: F401  (module fixture)

LABELS = ["a"] * 10 + ["b"] * 3 + ["c"] * 20 + ["d"] * 7


def _labels_of_keys(keys, labels=LABELS):
    return [labels[k % len(labels)] for k in keys]


def test_balanced_batches_hold_whole_class_blocks_and_balance_classes():
    s = ClassBalancedSampler(LABELS, batch_size=8, per_class=4, seed=3)
    keys = list(s)
    assert len(keys) == len(s) == (len(LABELS) // 8) * 8
    labels = _labels_of_keys(keys)
    blocks = [labels[i:i + 4] for i in range(0, len(labels), 4)]
    assert all(len(set(b)) == 1 for b in blocks)
    # classes are drawn in cycles: over 10 blocks each of the 4 classes appears 2 or 3 times
    counts = Counter(b[0] for b in blocks)
    assert set(counts) == {"a", "b", "c", "d"} and max(counts.values()) - min(
        counts.values()) <= 1
    # class 'b' has 3 utterances: repeats come with a new key (a new crop), never a reused one
    assert len(set(keys)) == len(keys)
    rounds = {(k // len(LABELS)) % ROUNDS_PER_EPOCH for k, lab in zip(keys, labels)
              if lab == "b"}
    assert rounds - {0}


def test_balanced_sampler_under_ddp_splits_the_global_batch_by_process():
    single = ClassBalancedSampler(LABELS, batch_size=8, per_class=4, seed=1,
                                  num_replicas=1, rank=0)
    ranks = [ClassBalancedSampler(LABELS, batch_size=4, per_class=4, seed=1, num_replicas=2,
                                  rank=r) for r in range(2)]
    k0, k1 = list(ranks[0]), list(ranks[1])
    assert len(k0) == len(k1) == len(ranks[0])
    glob = single.global_batches()
    two = ranks[0].global_batches()
    assert two.shape == glob.shape
    np.testing.assert_array_equal(two, glob)  # same global batches as one process of 8
    np.testing.assert_array_equal(np.concatenate([np.reshape(k0, (-1, 4)),
                                                  np.reshape(k1, (-1, 4))], 1), glob)
    # mid-epoch resume: skip the first batch
    ranks[0].skip_next(4)
    assert list(ranks[0]) == k0[4:]


def test_balanced_sampler_rejects_bad_settings():
    with pytest.raises(ConfigError, match="per_class"):
        ClassBalancedSampler(LABELS, batch_size=8, per_class=3)
    with pytest.raises(ConfigError, match="2 classes"):
        ClassBalancedSampler(["a"] * 10, batch_size=4, per_class=2)


def test_time_mask_zeroes_spans_covering_about_the_asked_fraction():
    feats = torch.ones(64, 200, 3)
    out = time_mask(feats, prob=0.2, length=2, generator=torch.Generator().manual_seed(0))
    masked = (out[..., 0] == 0)
    assert torch.equal(masked[..., None].expand_as(out), out == 0)  # whole frames
    # 20 spans of 2 frames per utterance, overlaps allowed: expected coverage
    # 1 - (1 - 2/199)^20 ~ 0.18 of the frames (edge frames a little less)
    assert 0.14 < masked.float().mean() < 0.21
    runs = []  # every masked run is at least one span long
    for row in masked:
        r = 0
        for v in row.tolist() + [False]:
            if v:
                r += 1
            elif r:
                runs.append(r)
                r = 0
    assert min(runs) >= 2
    assert torch.equal(time_mask(feats, 0.0, 2), feats)


def test_pairs_are_disjoint_same_class_pairs():
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 0, 0, 2, 1])
    a, p = pair_indices(labels)
    assert torch.equal(labels[a], labels[p])
    used = torch.cat([a, p]).tolist()
    assert len(used) == len(set(used)) == 10  # 4 zeros, 4 ones, 2 twos -> 2 + 2 + 1 pairs


def _module(contrastive="triplet", noncontrastive="barlow", **kw):
    bundle_config = {"encoder": "xvector", "encoder_settings": {"channels": 32,
                                                               "embedding_dim": 16},
                     "features": {"n_mels": 24}}
    cfg = TwoStepConfig(contrastive=contrastive, noncontrastive=noncontrastive,
                        projector_dims=[16, 8], **kw)
    method = step1_method_config(bundle_config, cfg)
    return TwoStepModule(method, cfg, steps_per_epoch=1, max_epochs=1, task="style",
                         classes=["x", "y", "z"])


def test_step1_loss_is_contrastive_plus_w_noncontrastive():
    torch.manual_seed(0)
    z = torch.randn(12, 8)
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    m = _module(weight=0.3, margin=0.5, mining="random", barlow_lambda=0.01)
    contrastive = m.triplet(z, labels, torch.Generator().manual_seed(5))
    # independently: explicit triplets (every ordered same-class pair) with the same negatives
    from paravox.objectives.triplet import mine_triplets

    zn = torch.nn.functional.normalize(z, dim=-1)
    a_, p_, n_ = mine_triplets(zn @ zn.T, labels, labels, torch.arange(12), "random",
                               torch.Generator().manual_seed(5))
    expected_c = cosine_triplet_loss(z[a_], z[p_], z[n_], margin=0.5)
    torch.testing.assert_close(contrastive, expected_c)
    a, p = pair_indices(labels)
    expected_n = barlow_twins_loss(z[a], z[p], 0.01)
    m._trainer = None
    out = m.losses(z, labels)
    torch.testing.assert_close(out["noncontrastive"], expected_n)
    assert set(out) == {"contrastive", "noncontrastive"}
    parts = {"contrastive": expected_c, "noncontrastive": expected_n}
    torch.testing.assert_close(m.total(parts), expected_c + 0.3 * expected_n)
    torch.testing.assert_close(m.total({"noncontrastive": expected_n}), expected_n)
    assert set(_module(noncontrastive="none").losses(z, labels)) == {"contrastive"}
    assert set(_module(contrastive="none").losses(z, labels)) == {"noncontrastive"}
    assert set(_module(contrastive="supcon", noncontrastive="vicreg").losses(z, labels)) == {
        "contrastive", "noncontrastive"}
    byol = _module(contrastive="none", noncontrastive="byol").losses(z, labels)
    assert torch.isfinite(byol["noncontrastive"])


def test_step1_config_is_checked():
    for bad in ({"contrastive": "infonce"}, {"noncontrastive": "simsiam"},
                {"contrastive": "none", "noncontrastive": "none"}, {"mining": "hard"}):
        with pytest.raises(ConfigError, match=next(iter(bad.values())).split()[0]):
            TwoStepConfig(**bad).check()


def test_top_layers_only_freezes_the_rest():
    enc = build_encoder("projected", base="ecapa", base_settings={"channels": 32},
                        dims=[16, 8])
    groups = enc.layer_groups()
    names = [n for n, _ in enc.named_parameters()]
    owners = [sum(n.startswith(p) for g in groups for p in g) for n in names]
    assert owners == [1] * len(names)  # every parameter in exactly one group
    set_trainable_layers(enc, 1)
    trainable = {n for n, p in enc.named_parameters() if p.requires_grad}
    top = tuple(groups[-2] + groups[-1])  # the top frame-level layer + head (+ projector)
    assert trainable == {n for n in names if n.startswith(top)}
    assert any(n.startswith("projector.") for n in trainable)
    set_trainable_layers(enc, 0)
    assert all(p.requires_grad for p in enc.parameters())


def test_adapter_learns_separable_classes_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 10)) * 4
    y = rng.integers(0, 3, 300)
    x = (centres[y] + rng.normal(size=(300, 10))).astype(np.float32)
    cfg = TwoStepConfig(adapter_epochs=30)
    net, scaler = train_adapter(x[:200], y[:200], 3, cfg)
    proba = adapter_probabilities(net, scaler, x[200:])
    assert (proba.argmax(1) == y[200:]).mean() > 0.95
    save_adapter(net, scaler, ["p", "q", "r"], cfg, tmp_path)
    net2, scaler2, classes = load_adapter(tmp_path)
    assert classes == ["p", "q", "r"]
    np.testing.assert_allclose(adapter_probabilities(net2, scaler2, x[200:]), proba, rtol=1e-6)
    with pytest.raises(ConfigError, match="adapter.json"):
        load_adapter(tmp_path / "missing")


TINY = ["epochs=1", "batch_size=8", "per_class=4", "num_workers=0", "crop_seconds=1.0",
        "adapter_epochs=5", "adapter_copies=1"]


def test_two_step_command_runs_method_baselines_and_table(dino_run, tmp_path):  # noqa: F811
    from paravox.cli.main import main
    from paravox.data.manifest import Manifest
    from paravox.inference import Embedder, export_bundle

    warnings.filterwarnings("ignore")
    run, _, root = dino_run
    bundle = export_bundle(run, tmp_path / "b")
    out = tmp_path / "two_step"
    assert main(["finetune", "two-step", str(bundle), "--task", "style", "--train",
                 str(root / "train.jsonl"), "--test", str(root / "test.jsonl"), "-o", str(out),
                 "-q", "--set", *TINY, "train_top_layers=1"]) == 0
    payload = json.loads((out / "results.json").read_text())
    n_test = len(Manifest.load(root / "test.jsonl"))
    variants = {r["variant"]: r for r in payload["results"]}
    assert set(variants) == {"two-step", "two-step, encoder space", "contrastive only",
                             "non-contrastive only", "adapter, no step 1", "linear probe",
                             "end-to-end"}
    for r in variants.values():
        assert np.sum(r["metrics"]["confusion"]) == n_test
        assert 0 <= r["metrics"]["uar"] <= 1
    for v in ("two-step", "contrastive only", "non-contrastive only", "adapter, no step 1"):
        space = variants[v]["space"]
        assert 0 <= space["nc_accuracy_5shot"] <= 1 and space["davies_bouldin"] > 0
    # the step-1 network exports as a bundle that Embedder reads, with its adapter beside it
    step1 = out / "style" / "two_step" / "bundle"
    config = json.loads((step1 / "config.json").read_text())
    assert config["encoder"] == "projected" and config["embedding_dim"] == 64
    assert config["source"]["two_step"]["train_top_layers"] == 1
    emb = Embedder.from_bundle(step1)
    test = Manifest.load(root / "test.jsonl")
    from paravox.audio.io import load_audio

    x = emb.embed([load_audio(test.audio_path(r), r.offset, r.duration) for r in test])
    stored = np.load(out / "test_embeddings.npz")["style/two-step"]
    np.testing.assert_allclose(x, stored, rtol=1e-4, atol=1e-5)
    net, scaler, classes = load_adapter(step1)
    pred = adapter_probabilities(net, scaler, x).argmax(1)
    index = {c: i for i, c in enumerate(classes)}
    truth = [index[r.labels["style"]] for r in test]
    assert np.isclose((pred == np.array(truth)).mean(), variants["two-step"]["metrics"]
                      ["accuracy"], atol=1e-9)
    # train_top_layers=1: the base encoder's lower layers did not move
    base = Embedder.from_bundle(bundle).encoder.state_dict()
    tuned = emb.encoder.state_dict()
    assert torch.equal(base["stem.0.weight"], tuned["base.stem.0.weight"])
    for key in ("stem.2.running_mean", "blocks.0.conv1.2.running_var"):  # frozen batch norm
        assert torch.equal(base[key], tuned[f"base.{key}"]), key
    assert not torch.equal(base["embed.weight"], tuned["base.embed.weight"])
    html = (out / "report.html").read_text()
    assert "two-step" in html and "end-to-end" in html and 'src="data:image/png' in html
    assert (out / "space_style.png").is_file() and (out / "confusion_style.png").is_file()
