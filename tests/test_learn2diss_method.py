"""Learn2Diss: the contract (the MI penalty reaches the encoders and only them, q learns by its
own objective and optimiser, weight 0 leaves q out of the encoders' gradients entirely, bad
settings name the key) and the tiny end-to-end run (two stages -> one bundle with the
utterance embedding and the frame layers, through the Embedder and ONNX)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from paravox.errors import ConfigError
from paravox.inference import Embedder, export_bundle
from paravox.methods.learn2diss import Learn2DissConfig, Learn2DissModule
from paravox.training.recipes import load_recipe, run_recipe
from paravox.training.run_folder import run_metrics
from paravox.utils.config import build_config

TINY = ["frame_encoder_settings={dim: 32, layers: 2, heads: 2, ff_dim: 64, embedding_dim: 32, "
        "attention_channels: 16, subsample: 2}",
        "utterance_encoder_settings={channels: 16, mfa_channels: 48, attention_channels: 8, "
        "se_channels: 8, embedding_dim: 16}",
        "projector_hidden=32", "projector_dim=16", "club_hidden=32", "n_clusters=8",
        "mask_span=3", "mask_prob=0.2", "cluster_iters=10"]


def _module(*extra, seed=0):
    torch.manual_seed(seed)
    m = Learn2DissModule(build_config(Learn2DissConfig, overrides=TINY + list(extra)), 1, 1)
    g = torch.Generator().manual_seed(1)
    m.fit_codebook([torch.randn(16000, generator=g) * 0.1 for _ in range(4)])
    return m


def _feats(m, n=4):
    g = torch.Generator().manual_seed(2)
    return m.features(torch.randn(n, 16000, generator=g) * 0.1, augment=False)


def _grads(m, loss):
    m.zero_grad(set_to_none=True)
    loss.backward()
    return {k: None if p.grad is None else p.grad.clone() for k, p in m.named_parameters()}


def test_bad_settings_name_the_key():
    for bad, key in ((["mi_input=nope"], "mi_input"), (["mi_to=nope"], "mi_to"),
                     (["cluster_source=nope"], "cluster_source"), (["mi_weight=-1"], "mi_weight"),
                     (["crops.n_long=1"], "crops"), (["q_steps=0"], "q_steps"),
                     (["frame_weight=0", "utterance_weight=0"], "both 0"),
                     (["utterance_input=nope"], "utterance_input")):
        with pytest.raises(ConfigError, match=key):
            Learn2DissModule(build_config(Learn2DissConfig, overrides=TINY + bad), 1, 1)


def test_parameter_sets_split_q_from_the_encoders():
    m = _module()
    sets = m.parameter_sets()
    enc = {id(p) for p in sets["encoders"][0].parameters()}
    q = {id(p) for p in sets["club"][0].parameters()}
    assert not enc & q
    assert enc | q == {id(p) for p in m.parameters()}  # every parameter has one optimiser


def test_mi_penalty_reaches_the_encoders_and_not_q():
    w = 0.7
    m = _module("mi_weight=0.7", "mi_clamp=false")
    feats = _feats(m)
    torch.manual_seed(3)
    parts = m.losses(feats, torch.Generator().manual_seed(0))
    with_mi = _grads(m, m.total(parts))
    # q gets no gradient from the encoders' loss
    assert all(with_mi[k] is None for k in with_mi if k.startswith("club."))
    torch.manual_seed(3)
    parts = m.losses(feats, torch.Generator().manual_seed(0))
    no_mi = _grads(m, parts["frame"] + parts["utterance"])
    torch.manual_seed(3)
    parts = m.losses(feats, torch.Generator().manual_seed(0))
    mi_only = _grads(m, parts["mi"])
    # total gradient = task gradients + w * MI gradient, and the MI term reaches both encoders
    for k, g in with_mi.items():
        if g is None:
            continue
        expect = (no_mi[k] if no_mi[k] is not None else 0) + w * (
            mi_only[k] if mi_only[k] is not None else 0)
        torch.testing.assert_close(g, expect, rtol=1e-4, atol=1e-5, msg=lambda s, k=k: f"{k}: {s}")
    for prefix in ("dual.frame.", "dual.utterance."):
        assert any(mi_only[k] is not None and mi_only[k].abs().sum() > 0 for k in mi_only
                   if k.startswith(prefix)), prefix
    # mi_to=frame: the penalty leaves the utterance encoder alone
    f = _module("mi_weight=0.7", "mi_to=frame", "mi_clamp=false")
    parts = f.losses(_feats(f), torch.Generator().manual_seed(0))
    g = _grads(f, parts["mi"])
    assert all(v is None or v.abs().sum() == 0 for k, v in g.items()
               if k.startswith("dual.utterance."))


def test_a_negative_estimate_is_no_reward(monkeypatch):
    """With mi_clamp the penalty is max(estimate, 0): an estimate below zero (q lagging
    behind the encoders) adds nothing and pushes nothing."""
    m = _module("mi_weight=1.0")
    parts = m.losses(_feats(m), torch.Generator().manual_seed(0), with_mi=False)
    monkeypatch.setattr(m.club, "mi_for_encoders", lambda x, y: -(x.sum() * 0 + 1.0 + y.mean()
                                                                  * 0) * 3.0)
    m.add_mi(parts)
    assert float(parts["mi"]) == 0.0 and float(parts["_mi_estimate"]) == -3.0
    g = _grads(m, parts["mi"] + 0 * parts["utterance"])
    assert all(v is None or v.abs().sum() == 0 for v in g.values())
    unclamped = _module("mi_weight=1.0", "mi_clamp=false")
    parts = unclamped.losses(_feats(unclamped), torch.Generator().manual_seed(0),
                             with_mi=False)
    monkeypatch.setattr(unclamped.club, "mi_for_encoders", lambda x, y: x.sum() * 0 - 3.0)
    unclamped.add_mi(parts)
    assert float(parts["mi"]) == -3.0


def test_weight_zero_leaves_q_out_of_the_encoder_gradients():
    m = _module("mi_weight=0")
    feats = _feats(m)
    torch.manual_seed(3)
    parts = m.losses(feats, torch.Generator().manual_seed(0))
    assert "mi" not in parts
    base = _grads(m, m.total(parts))
    # scramble q: with weight 0 the encoders' gradients cannot change
    with torch.no_grad():
        for p in m.club.parameters():
            p.add_(torch.randn_like(p))
    torch.manual_seed(3)
    parts = m.losses(feats, torch.Generator().manual_seed(0))
    again = _grads(m, m.total(parts))
    for k, g in base.items():
        if g is not None:
            torch.testing.assert_close(g, again[k], msg=k)
    assert all(base[k] is None for k in base if k.startswith("club."))


def test_q_learns_by_its_own_log_likelihood():
    m = _module()
    feats = _feats(m, 8)
    parts = m.losses(feats, torch.Generator().manual_seed(0))
    x, y = parts["_x"].detach(), parts["_y"].detach()
    opt = torch.optim.Adam(m.club.parameters(), lr=1e-2)
    before = float(m.club.log_likelihood(x, y))
    for _ in range(50):
        opt.zero_grad()
        m.club.learning_loss(x, y).backward()
        opt.step()
    assert float(m.club.log_likelihood(x, y)) > before + 1.0


def test_codebook_must_be_fitted_and_round_trips():
    m = Learn2DissModule(build_config(Learn2DissConfig, overrides=TINY), 1, 1)
    with pytest.raises(ConfigError, match="fit"):
        m.losses(_feats(m))
    with pytest.raises(ConfigError, match="manifest"):
        m.fit_codebook()
    fitted = _module()
    fresh = Learn2DissModule(build_config(Learn2DissConfig, overrides=TINY), 1, 1)
    fresh.load_state_dict(fitted.state_dict())
    feats = _feats(fitted)
    assert torch.equal(fresh.codebook.assign(fresh.unit_features(feats)),
                       fitted.codebook.assign(fitted.unit_features(feats)))


def test_two_stages_export_one_bundle_with_both_outputs(tiny_corpus, tmp_path):
    warnings.filterwarnings("ignore")
    from test_baselines import first_rows

    root, _ = tiny_corpus
    first_rows(root / "pretrain.jsonl", tmp_path / "p.jsonl", 16)
    recipe = load_recipe("learn2diss_demo", [
        *[f"learn2diss.{o}" for o in TINY], f"train_manifest={tmp_path / 'p.jsonl'}",
        f"out_dir={tmp_path / 'run'}", "eval_manifest=null", "trials=null",
        "learn2diss.crops.long_seconds=1.0", "learn2diss.cluster_utterances=8",
        "learn2diss.augment.reverb_prob=0.0", "learn2diss.augment.noise_prob=0.0",
        "run.batch_size=8", "run.num_workers=0", "run.tensorboard=false",
        "run.progress_bar=false", "run.babble_utterances=4",
        "stages=[{name: independent, set: [learn2diss.mi_weight=0.0, run.epochs=2]}, "
        "{name: joint, set: [learn2diss.mi_weight=0.5, run.epochs=2]}]"])
    result = run_recipe(recipe)
    assert [r["stage"] for r in result["stages"]] == ["independent", "joint"]
    for stage in ("1_independent", "2_joint"):
        rows = run_metrics(tmp_path / "run" / "stages" / stage)
        logged = {k for r in rows for k, v in r.items() if v}
        assert {"train/frame", "train/utterance", "train/mi", "train/q_loglik"} <= logged
    # stage 2 starts from stage 1's codebook (log-mel units are kept)
    s1 = torch.load(tmp_path / "run/stages/1_independent/checkpoints/last.ckpt",
                    weights_only=True)["state_dict"]
    s2 = torch.load(tmp_path / "run/stages/2_joint/checkpoints/last.ckpt",
                    weights_only=True)["state_dict"]
    assert torch.equal(s1["codebook.centroids"], s2["codebook.centroids"])

    both = export_bundle(tmp_path / "run", tmp_path / "both")
    frame = export_bundle(tmp_path / "run", tmp_path / "frame", which="frame")
    utt = export_bundle(tmp_path / "run", tmp_path / "utt", which="utterance")
    wave = np.random.default_rng(0).standard_normal(24000).astype(np.float32) * 0.1
    e_both, e_frame, e_utt = (Embedder.from_bundle(b) for b in (both, frame, utt))
    emb = e_both.embed(wave)
    assert emb.shape == (16,)
    np.testing.assert_allclose(emb, e_utt.embed(wave), atol=1e-5)  # the utterance encoder's
    fb, ff = e_both.frames(wave), e_frame.frames(wave)  # the frame encoder's layers
    assert list(fb.layers) == list(ff.layers) == ["input", "layer1", "layer2"]
    for name in fb.layers:
        np.testing.assert_allclose(fb.layers[name], ff.layers[name], atol=1e-5)
        assert fb.shift[name] == pytest.approx(0.02)

    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    from paravox.inference.onnx_export import FRAMES_PREFIX, OUTPUT_NAME, export_onnx

    path = export_onnx(both, frames="all")
    sess = ort.InferenceSession(str(path))
    outs = {o.name: v for o, v in zip(sess.get_outputs(),
                                      sess.run(None, {"wave": wave[None]}))}
    np.testing.assert_allclose(outs[OUTPUT_NAME][0], emb, atol=1e-4)
    for name in fb.layers:
        np.testing.assert_allclose(outs[FRAMES_PREFIX + name][0], fb.layers[name], atol=1e-4)


def test_encoders_start_from_bundles(tmp_path):
    from paravox.inference.bundle import random_bundle

    cfg = build_config(Learn2DissConfig, overrides=TINY)
    frame = random_bundle("transformer", cfg.frame_encoder_settings, {"n_mels": 80},
                          tmp_path / "frame", seed=3)
    utt = random_bundle("ecapa", cfg.utterance_encoder_settings, {"n_mels": 80},
                        tmp_path / "utt", seed=4)
    m = Learn2DissModule(build_config(Learn2DissConfig, overrides=TINY + [
        f"frame_init={frame}", f"utterance_init={utt}"]), 1, 1)
    from safetensors.torch import load_file

    for part, bundle in (("frame", frame), ("utterance", utt)):
        want = load_file(bundle / "model.safetensors")
        got = getattr(m.dual, part).state_dict()
        assert all(torch.equal(got[k], v) for k, v in want.items()), part
    with pytest.raises(ConfigError, match="holds a 'ecapa' encoder"):
        Learn2DissModule(build_config(Learn2DissConfig, overrides=TINY + [
            f"frame_init={utt}"]), 1, 1)
    with pytest.raises(ConfigError, match="do not fit"):
        Learn2DissModule(build_config(Learn2DissConfig, overrides=TINY + [
            f"frame_init={frame}", "frame_encoder_settings={dim: 16, layers: 1, heads: 2, "
            "ff_dim: 32, embedding_dim: 32, attention_channels: 16, subsample: 2}"]), 1, 1)
    with pytest.raises(ConfigError, match="no config.json in it"):
        Learn2DissModule(build_config(Learn2DissConfig, overrides=TINY + [
            f"utterance_init={tmp_path}"]), 1, 1)
