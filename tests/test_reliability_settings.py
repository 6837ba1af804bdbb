"""Reliability round 3, training side: settings that cannot train are refused when the config
is built (temperatures, dimensions, crops, learning rates, batch sizes), a non-finite loss
stops the run naming the step and the term (keeping the last finite checkpoint, exit 2),
`paravox export` refuses non-finite weights, Learn2Diss reports the batches it trained, and
`-q` runs print no library warnings."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import paravox.methods.mgf as mgf_module
import paravox.methods.simclr as simclr_module
from paravox.cli.main import main
from paravox.errors import ConfigError
from paravox.methods.learn2diss import Learn2DissConfig, Learn2DissModule
from paravox.methods.mgf import MGFConfig
from paravox.methods.simclr import SimCLRConfig, SimCLRModule
from paravox.methods.supervised import SupervisedConfig
from paravox.models import build_encoder
from paravox.training.engine import RunConfig, check_batch_size
from paravox.training.module import NonFiniteError
from paravox.utils.config import build_config
from paravox.utils.wording import plural
from test_baselines import TINY_ECAPA, first_rows

TINY_SIMCLR = [f"simclr.{o}" for o in TINY_ECAPA + [
    "projector_hidden=16", "projector_dim=8", "crops.long_seconds=1.0",
    "augment.reverb_prob=0.0", "augment.noise_prob=0.0"]]
TINY_L2D = ["learn2diss.frame_encoder_settings={dim: 32, layers: 2, heads: 2, ff_dim: 64, "
            "embedding_dim: 32, attention_channels: 16, subsample: 2}",
            "learn2diss.utterance_encoder_settings={channels: 16, mfa_channels: 48, "
            "attention_channels: 8, se_channels: 8, embedding_dim: 16}",
            "learn2diss.projector_hidden=32", "learn2diss.projector_dim=16",
            "learn2diss.club_hidden=32", "learn2diss.n_clusters=8",
            "learn2diss.cluster_utterances=8", "learn2diss.cluster_iters=5",
            "learn2diss.crops.long_seconds=1.0", "learn2diss.augment.reverb_prob=0.0",
            "learn2diss.augment.noise_prob=0.0", "stages=[]"]
RUN = ["run.num_workers=0", "run.tensorboard=false", "eval_manifest=null", "trials=null",
       "run.babble_utterances=4"]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("recipe, override, message", [
    ("simclr_demo", "simclr.temperature=0", "simclr.temperature=0.0: must be > 0"),
    ("simclr_demo", "simclr.temperature=-0.5", "simclr.temperature=-0.5: must be > 0"),
    ("simclr_demo", "simclr.temperature=nan", "simclr.temperature=nan: must be a finite"),
    ("simclr_demo", "simclr.projector_dim=0", "simclr.projector_dim=0: must be >= 1"),
    ("simclr_demo", "simclr.projector_hidden=-3", "simclr.projector_hidden=-3: must be >= 1"),
    ("simclr_demo", "simclr.crops.n_long=1", "set crops.n_long=2"),
    ("dino_demo", "dino.crops.n_long=0", "crops.n_long=0: must be >= 1"),
    ("dino_demo", "dino.optim.lr=1e30", "optim.lr=1e+30: must be <= 10"),
    ("dino_demo", "dino.optim.lr=inf", "optim.lr=inf: must be a finite number"),
    ("dino_demo", "dino.optim.lr=nan", "optim.lr=nan: must be a finite number"),
    ("dino_demo", "dino.optim.weight_decay=inf", "optim.weight_decay=inf: must be a finite"),
    ("dino_demo", "dino.crops.long_seconds=inf", "crops.long_seconds=inf: must be a finite"),
    ("dino_demo", "dino.features.n_fft=0", "features.n_fft=0: must be in [2, 65536]"),
    ("dino_demo", "dino.features.sample_rate=-16000", "features.sample_rate=-16000"),
    ("mgf_demo", "mgf.phone_temperature=0", "mgf.phone_temperature=0.0: must be > 0"),
    ("mgf_demo", "mgf.utterance_temperature=-1", "mgf.utterance_temperature=-1.0"),
    ("mgf_demo", "mgf.phone_dim=0", "mgf.phone_dim=0: must be >= 1"),
    ("mgf_demo", "mgf.projector_dim=0", "mgf.projector_dim=0: must be >= 1"),
    ("learn2diss_demo", "learn2diss.utterance_temperature=0",
     "learn2diss.utterance_temperature=0.0: must be > 0"),
    ("learn2diss_demo", "learn2diss.projector_dim=0", "learn2diss.projector_dim=0"),
    ("xvector_demo", "supervised.scale=0", "supervised.scale=0.0: must be > 0"),
    ("xvector_demo", "supervised.margin=-0.1", "supervised.margin=-0.1: must be in"),
    ("xvector_demo", "supervised.margin=nan", "supervised.margin=nan: must be a finite"),
])
def test_settings_that_cannot_train_are_refused_when_built(tmp_path, capsys, recipe,
                                                           override, message):
    command = "train-supervised" if recipe == "xvector_demo" else "pretrain"
    code = main([command, recipe, f"out_dir={tmp_path}/run", override])
    err = one_line_error(capsys)
    assert code == 2 and message in err, err
    assert not (tmp_path / "run").exists()  # refused before anything was written


@pytest.mark.parametrize("name, settings, message", [
    ("ecapa", {"channels": 0}, "ecapa.channels=0"),
    ("ecapa", {"embedding_dim": -1}, "ecapa.embedding_dim=-1"),
    ("xvector", {"stats_channels": 0}, "xvector.stats_channels=0"),
    ("resnet34", {"blocks": [3, 0, 6, 3]}, "resnet34.blocks[1]=0"),
    ("transformer", {"dim": 0}, "transformer.dim=0"),
    ("ecapa", {"channels": 10_000_000}, "must be in [1, 100000]"),
])
def test_encoder_dimensions_must_be_positive_and_bounded(name, settings, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build_encoder(name, **settings)


def test_each_method_states_the_smallest_batch_it_learns_from():
    run1 = RunConfig(batch_size=1)
    for cfg in (build_config(SimCLRConfig), build_config(MGFConfig),
                build_config(Learn2DissConfig), build_config(SupervisedConfig)):
        with pytest.raises(ConfigError, match=r"run.batch_size=1: \w+ needs at least 2"):
            check_batch_size(cfg, run1)
        check_batch_size(cfg, RunConfig(batch_size=2))
    # without the contrastive scale, MGF learns from single utterances
    check_batch_size(build_config(MGFConfig, overrides=["utterance_weight=0",
                                                        "crops.n_long=1"]), run1)


def test_contrastive_batch_of_one_is_refused_before_training(tiny_corpus, tmp_path, capsys):
    root, _ = tiny_corpus
    code = main(["pretrain", "simclr_demo", f"train_manifest={root}/pretrain.jsonl",
                 f"out_dir={tmp_path}/run", "run.batch_size=1", *RUN, *TINY_SIMCLR])
    err = one_line_error(capsys)
    assert code == 2 and "run.batch_size=1: SimCLR needs at least 2 utterances" in err
    assert not (tmp_path / "run" / "checkpoints").exists()


def nan_from_call(monkeypatch, module, name, first_bad):
    """Make ``module.name`` (a loss function) return NaN from its ``first_bad``-th call."""
    real = getattr(module, name)
    calls = {"n": 0}

    def patched(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] >= first_bad else loss

    monkeypatch.setattr(module, name, patched)


def test_nan_loss_stops_the_run_and_keeps_the_last_finite_checkpoint(tiny_corpus, tmp_path,
                                                                     capsys, monkeypatch):
    root, _ = tiny_corpus
    nan_from_call(monkeypatch, simclr_module, "nt_xent", 3)
    run = tmp_path / "run"
    code = main(["pretrain", "simclr_demo", f"train_manifest={root}/pretrain.jsonl",
                 f"out_dir={run}", "run.batch_size=4", "run.max_steps=6",
                 "run.checkpoint_every_n_steps=1", *RUN, *TINY_SIMCLR, "-q"])
    err = one_line_error(capsys)
    assert code == 2 and "step 3: the loss is not finite (train/loss = nan)" in err, err
    assert "last.ckpt" in err and "is kept" in err
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values()
               if v.is_floating_point())
    assert not (run / "run_done.json").exists()
    # the stopped run is not exported as if finished (tests/test_reliability_runs.py); its
    # finite checkpoint exports when named; a diverged one is refused naming the tensor
    assert main(["export", str(run), "-o", str(tmp_path / "bundle")]) == 2
    assert "stopped before it finished (non-finite loss" in one_line_error(capsys)
    assert main(["export", str(run / "checkpoints" / "last.ckpt"), "-o",
                 str(tmp_path / "bundle")]) == 0
    capsys.readouterr()
    bad = tmp_path / "bad"
    shutil.copytree(run, bad)
    ckpt["state_dict"]["encoder.embed.weight"][0, 0] = float("inf")
    torch.save(ckpt, bad / "checkpoints" / "last.ckpt")
    assert main(["export", str(bad / "checkpoints" / "last.ckpt"), "-o",
                 str(tmp_path / "bad_bundle")]) == 2
    err = one_line_error(capsys)
    assert "'encoder.embed.weight'" in err and "NaN/Inf" in err
    assert not (tmp_path / "bad_bundle").exists()


def test_nan_loss_names_the_first_nonfinite_part(tiny_corpus, tmp_path, capsys, monkeypatch):
    root, _ = tiny_corpus
    first_rows(root / "pretrain.jsonl", tmp_path / "p.jsonl", 8)
    nan_from_call(monkeypatch, mgf_module, "nt_xent", 2)
    tiny = ["mgf.encoder_settings={dim: 32, layers: 1, heads: 2, ff_dim: 64, "
            "embedding_dim: 16, attention_channels: 8}", "mgf.projector_hidden=16",
            "mgf.projector_dim=8", "mgf.phone_dim=8", "mgf.crops.long_seconds=1.0"]
    code = main(["pretrain", "mgf_demo", f"train_manifest={tmp_path}/p.jsonl",
                 f"out_dir={tmp_path}/run", "run.batch_size=4", "run.max_steps=4", *RUN,
                 *tiny, "-q"])
    err = one_line_error(capsys)
    assert code == 2 and "step 2: the loss is not finite (train/utterance = nan" in err, err


def test_nonfinite_weights_are_never_saved():
    module = SimCLRModule(build_config(SimCLRConfig, overrides=TINY_ECAPA + [
        "projector_hidden=8", "projector_dim=4"]), 1, 1)
    state = {"encoder.w": torch.ones(3), "projector.b": torch.tensor([0.0, float("nan")])}
    with pytest.raises(NonFiniteError, match=r"'projector.b' \(1 of 2 values are NaN/Inf\)"):
        module.on_save_checkpoint({"state_dict": state})
    module.on_save_checkpoint({"state_dict": {"encoder.w": torch.ones(3)}})


def test_nonfinite_terms_name_parts_before_the_total():
    module = SimCLRModule(build_config(SimCLRConfig, overrides=TINY_ECAPA + [
        "projector_hidden=8", "projector_dim=4"]), 1, 1)
    module.note_terms({"train/loss": torch.tensor(float("nan")),
                       "train/frame": torch.tensor(1.0),
                       "train/utterance": torch.tensor(float("inf"))})
    assert module.nonfinite_terms() == [("train/utterance", "inf"), ("train/loss", "nan")]


def test_learn2diss_trains_max_steps_batches_quietly(tiny_corpus, tmp_path, capfd,
                                                     monkeypatch):
    """Manual optimisation (q_steps + 1 optimiser steps per batch) still trains
    run.max_steps batches; under -q even a Lightning warning (a module left in eval mode)
    stays out of the output."""
    root, _ = tiny_corpus
    first_rows(root / "pretrain.jsonl", tmp_path / "p.jsonl", 16)
    init = Learn2DissModule.__init__

    def init_with_eval_module(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.club.eval()  # Lightning warns: "Found 1 module(s) in eval mode ..."

    monkeypatch.setattr(Learn2DissModule, "__init__", init_with_eval_module)
    args = ["pretrain", "learn2diss_demo", f"train_manifest={tmp_path}/p.jsonl",
            f"out_dir={tmp_path}/run", "run.batch_size=4", "run.max_steps=3",
            "learn2diss.q_steps=2", *RUN, *TINY_L2D]
    assert main([*args, "-q"]) == 0
    out, err = capfd.readouterr()
    assert "trained 3 steps" in out, out
    assert "eval mode" not in out + err and "Warning" not in out + err, out + err
    steps = json.loads((tmp_path / "run" / "run_done.json").read_text())["steps"]
    assert steps == 3
    # manual optimisation cannot accumulate: one line, not Lightning's traceback
    assert main([*args, "run.accumulate_grad_batches=2", "--restart"]) == 2
    err = capfd.readouterr().err.strip()
    assert "run.accumulate_grad_batches=2" in err and len(err.splitlines()) == 1, err


def test_counts_agree_with_their_nouns(tmp_path, capsys):
    assert plural(1, "step") == "1 step" and plural(2, "step") == "2 steps"
    assert plural(0, "row") == "0 rows"
    (tmp_path / "one.csv").write_text("id,path\na,/x.wav\n")
    assert main(["manifest", "import", "csv", str(tmp_path / "one.csv"), "-o",
                 str(tmp_path / "m.jsonl")]) == 0
    assert "wrote 1 row to" in capsys.readouterr().out
