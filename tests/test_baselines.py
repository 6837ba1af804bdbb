"""Contract tests for the baselines: SimCLR and the supervised x-vector (shapes, the loss
falls over a few steps on a fixed batch, labels, the train-supervised command)."""

import csv
import warnings

import pytest
import torch

from paravox.data.dataset import EpochSampler
from paravox.data.labels import label_classes
from paravox.data.manifest import Manifest
from paravox.errors import ConfigError, ManifestError
from paravox.methods.simclr import SimCLRConfig, SimCLRModule
from paravox.methods.supervised import SupervisedConfig, SupervisedModule
from paravox.training.recipes import load_recipe, run_recipe
from paravox.utils.config import build_config

TINY_ECAPA = ["encoder_settings.channels=32", "encoder_settings.mfa_channels=96",
              "encoder_settings.attention_channels=16", "encoder_settings.se_channels=16"]
TINY_XVECTOR = ["encoder_settings.channels=32", "encoder_settings.stats_channels=64",
                "encoder_settings.embedding_dim=32"]
COMMON = ["crops.long_seconds=1.0", "augment.reverb_prob=0.0", "augment.n_babble=2",
          "optim.warmup_epochs=0", "optim.lr=0.003"]


def losses(run_dir):
    with open(run_dir / "logs/version_0/metrics.csv") as fh:
        return [float(r["train/loss"]) for r in csv.DictReader(fh) if r.get("train/loss")]


def first_rows(src, dst, n, per_speaker=None):
    m = Manifest.load(src)
    if per_speaker:  # a few utterances of each of several speakers
        seen: dict = {}
        m.rows = [r for r in m.rows if seen.setdefault(r.speaker, []).append(r) or
                  len(seen[r.speaker]) <= per_speaker][:n]
    else:
        m.rows = m.rows[:n]
    m.save(dst)
    return dst


def fixed_batch_run(monkeypatch, recipe_overrides, tmp_path):
    """Every step sees the same batch (sampler kept at epoch 0): the loss must fall."""
    warnings.filterwarnings("ignore")
    monkeypatch.setattr(EpochSampler, "set_epoch", lambda self, epoch: None)
    recipe = load_recipe(None, recipe_overrides + [
        f"out_dir={tmp_path}/run", "run.epochs=6", "run.batch_size=8", "run.num_workers=0",
        "run.tensorboard=false", "run.progress_bar=false"])
    result = run_recipe(recipe)
    return result, losses(tmp_path / "run")


def test_simclr_shapes_and_loss_falls(tiny_corpus, tmp_path, monkeypatch):
    root, _ = tiny_corpus
    cfg = build_config(SimCLRConfig, overrides=TINY_ECAPA + ["projector_dim=16"])
    module = SimCLRModule(cfg, 1, 1)
    z = module.projector(module.encoder(torch.randn(6, 120, 80)).embedding)
    assert z.shape == (6, 16)
    with pytest.raises(ConfigError, match="n_long=2"):
        SimCLRModule(build_config(SimCLRConfig, overrides=["crops.n_short=2"]), 1, 1)
    manifest = first_rows(root / "pretrain.jsonl", tmp_path / "eight.jsonl", 8)
    overrides = [f"simclr.{o}" for o in TINY_ECAPA + COMMON + ["projector_hidden=64",
                                                               "projector_dim=16"]]
    result, ls = fixed_batch_run(monkeypatch, ["method=simclr", f"train_manifest={manifest}",
                                               *overrides], tmp_path)
    assert result["steps"] == 6 and len(ls) == 6 and ls[-1] < ls[0]


def test_supervised_xvector_learns_speakers(tiny_corpus, tmp_path, monkeypatch):
    root, _ = tiny_corpus
    manifest = first_rows(root / "train.jsonl", tmp_path / "eight.jsonl", 8, per_speaker=2)
    classes = label_classes(Manifest.load(manifest), "speaker")
    assert len(classes) == 4
    overrides = [f"supervised.{o}" for o in TINY_XVECTOR + COMMON + ["margin_warmup_epochs=0"]]
    result, ls = fixed_batch_run(monkeypatch, ["method=supervised", f"train_manifest={manifest}",
                                               *overrides], tmp_path)
    assert result["steps"] == 6 and ls[-1] < ls[0]
    module = result["module"]
    assert module.classes == classes
    ckpt = torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=False)
    assert ckpt["classes"] == classes


def test_supervised_head_and_margin_schedule():
    cfg = build_config(SupervisedConfig, overrides=TINY_XVECTOR + ["margin=0.3",
                                                                  "margin_warmup_epochs=2"])
    module = SupervisedModule(cfg, 10, 4, classes=["a", "b", "c"])
    # x-vector: the second affine layer lives in the head, the embedding is the first
    assert sum(isinstance(m, torch.nn.Linear) for m in module.head) == 1
    assert module.margin_at(0) == 0.0 and module.margin_at(1) == pytest.approx(0.15)
    assert module.margin_at(2) == pytest.approx(0.3)
    emb = module.encoder(torch.randn(3, 100, 80)).embedding
    loss, scores = module.classifier(module.head(emb), torch.tensor([0, 1, 2]))
    assert scores.shape == (3, 3) and loss.ndim == 0
    with pytest.raises(ConfigError, match="softmax"):
        SupervisedModule(build_config(SupervisedConfig, overrides=["loss=arc"]), 1, 1, ["a"])


def test_supervised_refuses_unlabelled_rows(tiny_corpus):
    root, _ = tiny_corpus
    with pytest.raises(ManifestError, match="no 'speaker' label"):
        label_classes(Manifest.load(root / "pretrain.jsonl"), "speaker")


def test_train_supervised_command(tiny_corpus, tmp_path, capsys):
    from paravox.cli.main import main

    root, _ = tiny_corpus
    warnings.filterwarnings("ignore")
    args = ["train-supervised", "recipes/xvector_demo.yaml", f"train_manifest={root}/train.jsonl",
            f"eval_manifest={root}/test.jsonl", f"trials={root}/trials.txt",
            f"out_dir={tmp_path}/run", "run.epochs=1", "run.max_steps=2", "run.batch_size=4",
            "run.num_workers=0", "supervised.loss=softmax",
            *[f"supervised.{o}" for o in TINY_XVECTOR]]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "trained 2 steps" in out and "supervised cosine EER" in out
    assert (tmp_path / "run/config.yaml").is_file()
    assert (tmp_path / "run/tensorboard").is_dir()
    assert main(["train-supervised", "recipes/dino_demo.yaml"]) == 2
    assert "paravox pretrain" in capsys.readouterr().err
