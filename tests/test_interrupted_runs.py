"""Runs survive interruption: Ctrl-C saves a checkpoint and names the resume command, a run
killed with SIGKILL resumes from its last checkpoint when the same command is run again, and
both give the weights of the uninterrupted run; a changed config is refused (or resumed /
restarted on request) without touching the folder's config or checkpoints."""

from __future__ import annotations

import errno
import io
import signal
import subprocess
import sys
import warnings

import lightning as L
import pytest
import torch

import paravox.training.recipes as recipes
from paravox.cli.main import main
from paravox.data.manifest import Manifest
from paravox.training.run_files import mark_run_folder

TINY = ["simclr.encoder_settings.channels=16", "simclr.encoder_settings.mfa_channels=48",
        "simclr.encoder_settings.attention_channels=8", "simclr.encoder_settings.se_channels=8",
        "simclr.projector_hidden=32", "simclr.projector_dim=16", "simclr.crops.long_seconds=1.0",
        "simclr.augment.reverb_prob=0.0", "simclr.augment.n_babble=2", "run.epochs=2",
        "run.batch_size=8", "run.num_workers=0", "run.tensorboard=false",
        "run.babble_utterances=16", "run.checkpoint_every_n_steps=2", "eval_manifest=null",
        "trials=null"]


@pytest.fixture(scope="module")
def manifest(tiny_corpus, tmp_path_factory):
    root, _ = tiny_corpus
    m = Manifest.load(root / "pretrain.jsonl")
    m.rows = m.rows[:32]  # 4 steps per epoch
    path = tmp_path_factory.mktemp("interrupt") / "m.jsonl"
    m.save(path)
    return path


def _args(manifest, out, *extra):
    return ["pretrain", "simclr_demo", f"train_manifest={manifest}", f"out_dir={out}", *TINY,
            *extra, "-q"]


def _weights(run):
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    return {k: v for k, v in state.items() if "num_batches_tracked" not in k}


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


@pytest.fixture(scope="module")
def straight(manifest, tmp_path_factory):
    """The uninterrupted run every interrupted one must reproduce."""
    warnings.filterwarnings("ignore")
    out = tmp_path_factory.mktemp("straight") / "run"
    assert main(_args(manifest, out)) == 0
    return out


class SigintAt(L.Callback):
    """Presses Ctrl-C (a real SIGINT to this process) after optimiser step ``step``."""

    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.step:
            signal.raise_signal(signal.SIGINT)


def test_ctrl_c_saves_a_checkpoint_and_the_same_command_resumes_exactly(
        manifest, straight, tmp_path, monkeypatch, capsys):
    warnings.filterwarnings("ignore")
    fit = recipes.fit
    monkeypatch.setattr(recipes, "fit", lambda *a, callbacks=None, **k: fit(
        *a, callbacks=[*(callbacks or []), SigintAt(3)], **k))
    out = tmp_path / "run"
    capsys.readouterr()
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the suite runs as a background job
    assert main(_args(manifest, out)) == 130
    err = capsys.readouterr().err
    # the step in flight when Ctrl-C came is finished, then saved
    last = [line for line in err.splitlines() if line.startswith("paravox: error")]
    assert len(last) == 1 and "interrupted at step 4" in last[0] and "resume with" in last[0]
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4
    assert not (out / "run_done.json").exists()
    assert signal.getsignal(signal.SIGINT) is before  # handler restored

    monkeypatch.undo()
    assert main(_args(manifest, out)) == 0
    assert "resuming from" in capsys.readouterr().out
    _assert_same_weights(_weights(straight), _weights(out))
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert "last.ckpt" in names and not any("-v" in n for n in names), names


def test_a_killed_run_resumes_from_its_last_checkpoint(manifest, straight, tmp_path, capsys):
    """SIGKILL after step 5 (checkpoints every 2 steps): the re-run resumes from step 4."""
    warnings.filterwarnings("ignore")
    out = tmp_path / "run"
    driver = (
        "import os, signal, sys\n"
        "import lightning as L\n"
        "import paravox.training.recipes as r\n"
        "class Kill(L.Callback):\n"
        "    def on_train_batch_end(self, trainer, *a):\n"
        "        if trainer.global_step == 5:\n"
        "            os.kill(os.getpid(), signal.SIGKILL)\n"
        "fit = r.fit\n"
        "r.fit = lambda *a, callbacks=None, **k: fit(*a, callbacks=[*(callbacks or []), Kill()],"
        " **k)\n"
        "from paravox.cli.main import main\n"
        "sys.exit(main(sys.argv[1:]))\n")
    proc = subprocess.run([sys.executable, "-c", driver, *_args(manifest, out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert (out / "checkpoints" / "last.ckpt").is_file()
    capsys.readouterr()
    assert main(_args(manifest, out)) == 0
    assert "(step 4)" in capsys.readouterr().out
    _assert_same_weights(_weights(straight), _weights(out))
    # the resumed log continues the first one: each step once, in order
    from paravox.training.run_folder import run_metrics

    steps = [int(r["step"]) for r in run_metrics(out) if r.get("train/loss")]
    assert steps == sorted(set(steps)) and len(steps) == 8


def test_changed_config_is_refused_then_resumed_or_restarted_on_request(
        manifest, straight, tmp_path, capsys):
    import shutil

    warnings.filterwarnings("ignore")
    run = tmp_path / "run"
    shutil.copytree(straight, run)
    config = (run / "config.yaml").read_text()
    before = _weights(run)

    # the same command on a finished run: nothing to do
    assert (run / ".paravox-run.json").is_file()  # the marker that makes the folder a run
    assert main(_args(manifest, run)) == 0
    assert "done earlier (8 steps), skipped" in capsys.readouterr().out
    # a run made before the marker existed (config.yaml, no marker) is still a run
    (run / ".paravox-run.json").unlink()
    assert main(_args(manifest, run)) == 0
    assert "done earlier (8 steps), skipped" in capsys.readouterr().out

    # another config: refused with the changed key named, nothing written
    assert main(_args(manifest, run, "run.epochs=3")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "run.epochs: 2 -> 3" in err and "--resume" in err and "--restart" in err
    assert (run / "config.yaml").read_text() == config

    # --resume with a model the checkpoint does not fit: one line; folder unchanged, exports
    assert main(_args(manifest, run, "simclr.projector_dim=8", "--resume")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not fit" in err and "projector" in err
    assert (run / "config.yaml").read_text() == config
    _assert_same_weights(before, _weights(run))
    assert main(["export", str(run), "-o", str(tmp_path / "bundle")]) == 0

    # --resume with more epochs continues from step 8
    assert main(_args(manifest, run, "run.epochs=3", "--resume")) == 0
    assert "(step 8)" in capsys.readouterr().out
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 12
    assert "epochs: 3" in (run / "config.yaml").read_text()

    # --restart starts over, leaving other files in the folder alone, also inside the folders
    # paravox writes to
    mine = {"notes.txt": "mine", "logs/important_notes.txt": "do not lose",
            "checkpoints/other_model.ckpt": "another model"}
    for name, text in mine.items():
        (run / name).write_text(text)
    assert main(_args(manifest, run, "--restart")) == 0
    out = capsys.readouterr().out
    assert "--restart: removed" in out and "trained 8 steps" in out
    assert "kept 2 file(s) paravox did not write" in out
    assert all((run / name).read_text() == text for name, text in mine.items())
    assert sorted(p.name for p in (run / "logs").iterdir()) == ["important_notes.txt",
                                                                 "version_0"]
    assert (run / ".paravox-run.json").is_file()
    _assert_same_weights(_weights(straight), _weights(run))


def test_a_full_disk_keeps_the_last_good_checkpoint_and_the_rerun_resumes(
        manifest, straight, tmp_path, monkeypatch, capsys):
    """The probe: a full disk while saving left a truncated last.ckpt, and the re-run refused
    the folder although a good epoch=0-step=4.ckpt was beside it. Now every checkpoint goes
    to a temporary file and is renamed when complete: the disk filling up half-way through
    the step-6 checkpoint stops the run with one line, last.ckpt (step 4) is intact, no partial
    file is left, and the same command resumes. A last.ckpt truncated by other means (an
    older paravox, a copy) makes the re-run fall back to the newest readable checkpoint."""
    warnings.filterwarnings("ignore")
    save, calls = torch.save, []

    def disk_fills_up(obj, f, *a, **k):
        calls.append(1)
        if len(calls) < 5:  # steps 2 and 4: a step checkpoint and last.ckpt each
            return save(obj, f, *a, **k)
        buf = io.BytesIO()
        save(obj, buf, *a, **k)
        f.write(buf.getvalue()[:len(buf.getvalue()) // 2])  # half of it reaches the disk
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_fills_up)
    out = tmp_path / "run"
    capsys.readouterr()
    assert main(_args(manifest, out)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "No space left on device" in err and "free some space" in err
    monkeypatch.undo()
    ckpts = out / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["epoch=0-step=4.ckpt", "last.ckpt"]
    assert torch.load(ckpts / "last.ckpt", weights_only=True)["global_step"] == 4

    # an unreadable last.ckpt (truncated) beside a good step checkpoint: fall back, say so
    data = (ckpts / "last.ckpt").read_bytes()
    (ckpts / "last.ckpt").write_bytes(data[:len(data) // 3])
    assert main(_args(manifest, out)) == 0
    printed = capsys.readouterr().out
    assert "last.ckpt is unreadable" in printed
    assert "resuming from" in printed and "epoch=0-step=4.ckpt, the newest readable" in printed
    _assert_same_weights(_weights(straight), _weights(out))


def test_no_readable_checkpoint_is_one_line(manifest, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"\x80\x02 truncated")
    mark_run_folder(run)
    assert main(_args(manifest, run)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "last.ckpt is unreadable" in err
    assert "--restart" in err


def test_unreadable_resume_checkpoint_is_one_line(manifest, tmp_path, capsys):
    bad = tmp_path / "garbage.ckpt"
    bad.write_bytes(b"not a checkpoint at all")
    assert main(_args(manifest, tmp_path / "run", f"resume_from={bad}")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a readable paravox checkpoint" in err
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_the_printed_resume_command_cannot_undo_the_run():
    from paravox.training.run_guards import resume_command

    assert resume_command(["/x/bin/paravox", "pretrain", "r.yaml", "--restart",
                           "resume_from=a.ckpt", "run.epochs=3"]) == \
        "paravox pretrain r.yaml run.epochs=3"
    assert resume_command(["/x/bin/paravox", "study", "learn2diss", "-q"]) == \
        "paravox study learn2diss -q --reuse"
    assert resume_command(["pytest"]) == "the same command"


# -- exact resume of methods that draw from the global generators (dropout, CLUB) ------------

TINY_MGF = ["mgf.crops.long_seconds=1.0", "mgf.augment.reverb_prob=0.0",
            "mgf.augment.n_babble=2", "mgf.encoder_settings={dim: 32, layers: 2, heads: 2, "
            "ff_dim: 64, embedding_dim: 32, attention_channels: 16}",
            "mgf.projector_hidden=32", "mgf.projector_dim=16", "mgf.phone_dim=16"]
TINY_L2D = ["learn2diss.frame_encoder_settings={dim: 32, layers: 2, heads: 2, ff_dim: 64, "
            "embedding_dim: 32, attention_channels: 16, subsample: 2}",
            "learn2diss.utterance_encoder_settings={channels: 16, mfa_channels: 48, "
            "attention_channels: 8, se_channels: 8, embedding_dim: 16}",
            "learn2diss.projector_hidden=32", "learn2diss.projector_dim=16",
            "learn2diss.club_hidden=32", "learn2diss.n_clusters=8", "learn2diss.mask_span=3",
            "learn2diss.cluster_utterances=16", "learn2diss.q_steps=2",
            "learn2diss.crops.long_seconds=1.0", "learn2diss.augment.reverb_prob=0.0",
            "learn2diss.augment.n_babble=2",
            # stage 1: one epoch; stage 2 (interrupted): two, with the MI penalty on
            "stages=[{name: independent, set: [learn2diss.mi_weight=0.0, run.epochs=1]}, "
            "{name: joint, set: [learn2diss.mi_weight=0.1, run.epochs=2, "
            "learn2diss.optim.warmup_epochs=0]}]"]
RUN = ["run.batch_size=8", "run.num_workers=0", "run.tensorboard=false",
       "run.babble_utterances=16", "run.checkpoint_every_n_steps=2", "eval_manifest=null",
       "trials=null", "-q"]


def _method_args(method, manifest, out):
    if method == "mgf":
        return ["pretrain", "mgf_demo", f"train_manifest={manifest}", f"out_dir={out}",
                *TINY_MGF, "run.epochs=2", *RUN]
    return ["pretrain", "learn2diss_demo", f"train_manifest={manifest}", f"out_dir={out}",
            *TINY_L2D, *RUN]


def _final_run(method, out):
    """The folder holding the final weights: the run, or the last stage's folder."""
    return out if method == "mgf" else out / "stages" / "2_joint"


class SigintAfterBatch(L.Callback):
    """Ctrl-C after the ``n``-th training batch of the run it is attached to (batches, not
    Lightning steps: under manual optimisation a batch is several optimiser steps)."""

    def __init__(self, n):
        self.n, self.seen = n, 0

    def on_train_batch_end(self, trainer, *args):
        self.seen += 1
        if self.seen == self.n:
            signal.raise_signal(signal.SIGINT)


@pytest.fixture(scope="module", params=["mgf", "learn2diss"])
def method_straight(request, manifest, tmp_path_factory):
    """(method, the uninterrupted run of that method)."""
    warnings.filterwarnings("ignore")
    out = tmp_path_factory.mktemp(f"straight_{request.param}") / "run"
    assert main(_method_args(request.param, manifest, out)) == 0
    return request.param, out


def test_mgf_and_learn2diss_resume_exactly_after_ctrl_c(method_straight, manifest, tmp_path,
                                                        monkeypatch, capsys):
    """MGF (dropout in its Transformer) and Learn2Diss (dropout, CLUB's random pairing),
    interrupted mid-epoch (Learn2Diss in its second stage), resume to the uninterrupted run's
    weights: every checkpoint holds the generators' states and the resumed run restores them."""
    warnings.filterwarnings("ignore")
    method, straight_run = method_straight
    fit = recipes.fit

    def interrupting_fit(module, loader, out_dir, *a, callbacks=None, **k):
        if "1_independent" not in str(out_dir):  # MGF's run, or Learn2Diss's stage 2
            callbacks = [*(callbacks or []), SigintAfterBatch(3 if method == "mgf" else 5)]
        return fit(module, loader, out_dir, *a, callbacks=callbacks, **k)

    monkeypatch.setattr(recipes, "fit", interrupting_fit)
    out = tmp_path / "run"
    assert main(_method_args(method, manifest, out)) == 130
    assert "interrupted at step" in capsys.readouterr().err
    ckpt = torch.load(_final_run(method, out) / "checkpoints" / "last.ckpt", weights_only=True)
    assert "paravox_rng" in ckpt and ckpt["paravox_batches_seen"] in (4, 6)
    monkeypatch.undo()
    assert main(_method_args(method, manifest, out)) == 0
    assert "resuming from" in capsys.readouterr().out
    _assert_same_weights(_weights(_final_run(method, straight_run)),
                         _weights(_final_run(method, out)))
