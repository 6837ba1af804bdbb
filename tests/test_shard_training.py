"""Pretraining from shards: the same tiny SimCLR run from files and from shards takes the same
number of steps with a comparable loss, and a shard run interrupted mid-epoch (Ctrl-C) and
resumed with the same command ends with the weights of the uninterrupted shard run."""

from __future__ import annotations

import signal
import warnings

import lightning as L
import pytest
import torch

import paravox.training.recipes as recipes
from paravox.cli.main import main
from paravox.data.manifest import Manifest
from paravox.training.run_folder import run_metrics
from test_interrupted_runs import TINY, _assert_same_weights, _weights

WORKERS = ["run.num_workers=2"]  # the shard stream split over two loader workers


@pytest.fixture(scope="module")
def data(tiny_corpus, tmp_path_factory):
    """32 rows of the tiny corpus (4 steps of 8 per epoch) and their shards (5 per shard)."""
    root, _ = tiny_corpus
    tmp = tmp_path_factory.mktemp("shard_training")
    m = Manifest.load(root / "pretrain.jsonl")
    m.rows = m.rows[:32]
    m.save(tmp / "m.jsonl")
    assert main(["shard", str(tmp / "m.jsonl"), "-o", str(tmp / "shards"),
                 "--shard-items", "5", "-q"]) == 0
    return tmp / "m.jsonl", tmp / "shards" / "index.json"


def args(out, *extra):
    return ["pretrain", "simclr_demo", f"out_dir={out}", *TINY, *extra, "-q"]


def losses(run):
    return [float(r["train/loss"]) for r in run_metrics(run) if r.get("train/loss")]


def step_losses(run):
    return {int(r["step"]): float(r["train/loss"]) for r in run_metrics(run)
            if r.get("train/loss")}


@pytest.fixture(scope="module")
def shard_run(data, tmp_path_factory):
    """The uninterrupted shard run."""
    warnings.filterwarnings("ignore")
    _, index = data
    out = tmp_path_factory.mktemp("from_shards") / "run"
    assert main(args(out, f"train_shards={index}", *WORKERS)) == 0
    return out


def test_files_and_shards_train_the_same_steps_with_a_comparable_loss(data, shard_run,
                                                                       tmp_path):
    warnings.filterwarnings("ignore")
    manifest, _ = data
    files = tmp_path / "from_files"
    assert main(args(files, f"train_manifest={manifest}")) == 0
    a, b = losses(files), losses(shard_run)
    assert len(a) == len(b) == 8  # 2 epochs x (32 // 8) steps
    for run in (files, shard_run):
        assert torch.load(run / "checkpoints" / "last.ckpt",
                          weights_only=True)["global_step"] == 8
    # same items, same crops per item; only the batches' make-up differs
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    assert abs(mean_a - mean_b) < 0.15 * mean_a, (a, b)


class SigintAt(L.Callback):
    """Presses Ctrl-C after optimiser step ``step``."""

    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.step:
            signal.raise_signal(signal.SIGINT)


def test_interrupted_shard_run_resumes_exactly(data, shard_run, tmp_path, monkeypatch, capsys):
    warnings.filterwarnings("ignore")
    _, index = data
    fit = recipes.fit
    monkeypatch.setattr(recipes, "fit", lambda *a, callbacks=None, **k: fit(
        *a, callbacks=[*(callbacks or []), SigintAt(4)], **k))
    out = tmp_path / "run"
    command = args(out, f"train_shards={index}", *WORKERS)
    # stopped in epoch 2 after its first batch: the resumed pass must shift the workers' parts
    assert main(command) == 130
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 5
    monkeypatch.undo()
    capsys.readouterr()
    assert main(command) == 0
    assert "resuming from" in capsys.readouterr().out
    # the steps after the resume (the CSV log of the step in flight at Ctrl-C may be lost)
    resumed, straight = step_losses(out), step_losses(shard_run)
    assert {5, 6, 7} <= resumed.keys()
    assert resumed == pytest.approx({k: straight[k] for k in resumed}, rel=1e-5)
    _assert_same_weights(_weights(shard_run), _weights(out))


def test_a_missing_shard_index_is_one_line(tmp_path, capsys):
    assert main(args(tmp_path / "run", f"train_shards={tmp_path}/none/index.json")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "none/index.json: not found" in err[0] and "paravox shard" in err[0]


def test_supervised_and_learn2diss_train_from_shards(tiny_corpus, tmp_path):
    """The methods that read the training data beyond batches do so from the shards too: the
    supervised classes from the shard manifest's labels, Learn2Diss's k-means codebook from
    the shard members' audio."""
    from test_baselines import COMMON, TINY_XVECTOR
    from test_learn2diss_method import TINY as TINY_L2D

    warnings.filterwarnings("ignore")
    root, _ = tiny_corpus
    m = Manifest.load(root / "train.jsonl")
    m.rows = m.rows[:16]
    m.save(tmp_path / "train.jsonl")
    assert main(["shard", str(tmp_path / "train.jsonl"), "-o", str(tmp_path / "shards"),
                 "--shard-items", "6", "-q"]) == 0
    common = [f"train_shards={tmp_path}/shards/index.json", "eval_manifest=null",
              "trials=null", "run.epochs=1", "run.batch_size=8", "run.num_workers=0",
              "run.tensorboard=false", "run.babble_utterances=4", "-q"]
    assert main(["train-supervised", "xvector_demo", f"out_dir={tmp_path}/sup", *common,
                 *[f"supervised.{o}" for o in TINY_XVECTOR + COMMON]]) == 0
    state = torch.load(tmp_path / "sup/checkpoints/last.ckpt", weights_only=False)
    assert state["classes"] == sorted({r.speaker for r in m.rows})
    assert state["global_step"] == 2
    assert main(["pretrain", "learn2diss_demo", f"out_dir={tmp_path}/l2d", *common, "stages=[]",
                 *[f"learn2diss.{o}" for o in TINY_L2D], "learn2diss.cluster_utterances=8",
                 "learn2diss.crops.long_seconds=1.0", "learn2diss.augment.reverb_prob=0.0",
                 "learn2diss.augment.noise_prob=0.0"]) == 0
    l2d = torch.load(tmp_path / "l2d/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    assert bool(l2d["codebook.fitted"]) and l2d["codebook.centroids"].abs().sum() > 0
    rows = [r for r in run_metrics(tmp_path / "l2d") if r.get("train/frame")]
    assert len(rows) == 2  # 16 // 8 batches


class RecordIds(L.Callback):
    """Writes each rank's batches (utterance ids) to ``folder/rank<R>.txt``."""

    def __init__(self, folder):
        self.folder = folder

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        with open(self.folder / f"rank{trainer.global_rank}.txt", "a") as fh:
            fh.write(" ".join(batch.ids) + "\n")


def test_two_ddp_processes_split_the_shards_in_equal_parts(data, tmp_path):
    """2 gloo processes from shards: the same number of steps each, (N // 2) // B, and no
    utterance on both ranks."""
    from paravox.data.shards import ShardIndex
    from paravox.methods.simclr import SimCLRConfig, SimCLRModule
    from paravox.training.engine import RunConfig, fit, seed_everything, steps_per_epoch
    from paravox.training.streaming import shard_loader
    from paravox.utils.config import build_config
    from test_engine import SMALL_ENCODER

    warnings.filterwarnings("ignore")
    index = ShardIndex.load(data[1])
    cfg = build_config(SimCLRConfig, overrides=SMALL_ENCODER + [
        "crops.long_seconds=1.0", "projector_hidden=32", "projector_dim=16",
        "augment.n_babble=2"])
    run = RunConfig(epochs=1, batch_size=4, num_workers=0, devices=2, accelerator="cpu",
                    strategy="ddp_spawn", checkpoint_every_n_steps=100, tensorboard=False,
                    progress_bar=False, precision="32-true", babble_utterances=8)
    seed_everything(run.seed)
    module = SimCLRModule(cfg, steps_per_epoch(index.items, run), run.epochs)
    fit(module, shard_loader(index, cfg, run), tmp_path / "run", run,
        callbacks=[RecordIds(tmp_path)])
    ranks = [[b.split() for b in (tmp_path / f"rank{r}.txt").read_text().splitlines()]
             for r in (0, 1)]
    assert [len(r) for r in ranks] == [4, 4]  # (32 // 2) // 4 batches on each rank
    ids = [i for r in ranks for b in r for i in b]
    assert len(ids) == len(set(ids)) == 32
    ckpt = torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 4
