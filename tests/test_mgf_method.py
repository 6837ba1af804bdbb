"""MGF: the contract (each active loss term falls on a fixed batch; a term switched off is
neither computed nor logged; bad settings name the key) and the tiny end-to-end run
(recipe -> pretrain -> export -> Embedder frames + embedding)."""

from __future__ import annotations

import csv
import warnings

import numpy as np
import pytest
import torch

from paravox.cli.main import main
from paravox.data.dataset import EpochSampler
from paravox.errors import ConfigError
from paravox.inference import Embedder
from paravox.methods.mgf import MGFConfig, MGFModule
from paravox.training.recipes import load_recipe, run_recipe
from paravox.utils.config import build_config

TINY = ["encoder_settings={dim: 32, layers: 2, heads: 2, ff_dim: 64, embedding_dim: 32, "
        "attention_channels: 16}", "projector_hidden=32", "projector_dim=16", "phone_dim=16"]
RUN = ["run.epochs=20", "run.batch_size=8", "run.num_workers=0", "run.tensorboard=false",
       "run.progress_bar=false", "run.babble_utterances=8", "mgf.augment.noise_prob=0.0",
       "mgf.augment.reverb_prob=0.0", "mgf.augment.gain_prob=0.0",
       "mgf.crops.long_seconds=1.0", "mgf.optim.warmup_epochs=0", "mgf.optim.lr=0.003",
       "mgf.frame_mask_prob=0.3", "mgf.phone_mask_prob=0.3"]


def terms(run_dir):
    with open(run_dir / "logs" / "version_0" / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    keys = {k for r in rows for k, v in r.items() if v and k.startswith("train/")}
    return {k: [float(r[k]) for r in rows if r.get(k)] for k in keys}


def test_bad_settings_name_the_key():
    for bad, match in ((["phone_loss=nope"], "phone_loss"),
                       (["frame_weight=0", "phone_weight=0", "utterance_weight=0"], "weight"),
                       (["crops.n_long=1"], "crops")):
        with pytest.raises(ConfigError, match=match):
            MGFModule(build_config(MGFConfig, overrides=TINY + bad), 1, 1)
    cfg = build_config(MGFConfig, overrides=["encoder=ecapa"])
    cfg.encoder_settings = {"channels": 16}
    with pytest.raises(ConfigError, match="transformer"):
        MGFModule(cfg, 1, 1)


def test_losses_shapes_and_switches():
    torch.manual_seed(0)
    feats = torch.randn(4, 120, 80)
    full = MGFModule(build_config(MGFConfig, overrides=TINY), 1, 1)
    parts = full.losses(feats, torch.Generator().manual_seed(0))
    assert set(parts) == {"frame", "phone", "phone_accuracy", "utterance"}
    assert all(torch.isfinite(v) for v in parts.values())
    frame_only = MGFModule(build_config(MGFConfig, overrides=TINY + [
        "phone_weight=0", "utterance_weight=0"]), 1, 1)
    assert set(frame_only.losses(feats)) == {"frame"}
    assert frame_only.phone_head is None and frame_only.projector is None
    gen = MGFModule(build_config(MGFConfig, overrides=TINY + ["phone_loss=generative"]), 1, 1)
    assert gen.phone_target is None and "phone_accuracy" not in gen.losses(feats)
    # the weighted total is exactly the sum of the active terms
    assert torch.allclose(full.total(parts), parts["frame"] + parts["phone"]
                          + parts["utterance"])


@pytest.mark.parametrize("variant,expected", [
    ([], {"frame", "phone", "utterance"}),
    (["mgf.utterance_weight=0", "mgf.crops.n_long=1"], {"frame", "phone"}),
    (["mgf.frame_weight=0", "mgf.phone_loss=generative"], {"phone", "utterance"}),
])
def test_each_active_term_falls_on_a_fixed_batch(tiny_corpus, tmp_path, monkeypatch, variant,
                                                 expected):
    warnings.filterwarnings("ignore")
    monkeypatch.setattr(EpochSampler, "set_epoch", lambda self, epoch: None)
    root, _ = tiny_corpus
    from test_baselines import first_rows

    first_rows(root / "pretrain.jsonl", tmp_path / "p.jsonl", 8)
    recipe = load_recipe("mgf_demo", [f"train_manifest={tmp_path / 'p.jsonl'}",
                                      f"out_dir={tmp_path / 'run'}", "eval_manifest=null",
                                      "trials=null", *RUN, *[f"mgf.{o}" for o in TINY],
                                      *variant])
    run_recipe(recipe)
    logged = terms(tmp_path / "run")
    assert {k.split("/")[1] for k in logged} - {"loss", "phone_accuracy"} == expected
    for name in expected:
        values = logged[f"train/{name}"]
        assert np.mean(values[-5:]) < np.mean(values[:5]), (name, values)


def test_tiny_pretrain_export_embed(tiny_corpus, tmp_path):
    warnings.filterwarnings("ignore")
    root, _ = tiny_corpus
    run = tmp_path / "mgf"
    args = ["pretrain", "mgf_demo", f"train_manifest={root}/pretrain.jsonl",
            f"eval_manifest={root}/test.jsonl", f"trials={root}/trials.txt",
            f"out_dir={run}", "run.epochs=1", *RUN[1:], *[f"mgf.{o}" for o in TINY]]
    assert main(args) == 0
    assert main(["export", str(run), "-o", str(tmp_path / "bundle")]) == 0
    emb = Embedder.from_bundle(tmp_path / "bundle")
    wave = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    ff = emb.frames(wave)
    assert ff.embedding.shape == (32,) and list(ff.layers) == emb.layer_names
    # the demo recipe stacks 2 log-mel frames: 101 frames of 10 ms -> 51 of 20 ms
    assert all(a.shape[0] == 51 and ff.shift[k] == pytest.approx(0.02)
               for k, a in ff.layers.items())
    np.testing.assert_allclose(emb.embed(wave), ff.embedding, atol=1e-5)
