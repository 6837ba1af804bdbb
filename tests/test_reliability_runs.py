"""Reliability round 3, runs that did not finish well: a run stopped for bad data or a
non-finite loss is recorded as stopped, and `paravox export` refuses it in one line (naming
its checkpoint exports that, saying so); `--resume` with a new override on a finished run
that would train no further is refused with config.yaml, run_done.json and the checkpoint
untouched; the precision line is printed once per run, not once per process."""

from __future__ import annotations

import json

import pytest
import torch

import paravox.methods.simclr as simclr_module
from paravox.cli.main import main
from test_baselines import TINY_ECAPA, first_rows
from test_reliability_settings import nan_from_call

TINY_SIMCLR = [f"simclr.{o}" for o in TINY_ECAPA + [
    "projector_hidden=16", "projector_dim=8", "crops.long_seconds=1.0",
    "augment.reverb_prob=0.0", "augment.noise_prob=0.0"]]
RUN = ["run.num_workers=0", "run.tensorboard=false", "eval_manifest=null", "trials=null",
       "run.babble_utterances=4", "run.batch_size=4"]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def pretrain(manifest, run, *extra):
    return main(["pretrain", "simclr_demo", f"train_manifest={manifest}", f"out_dir={run}",
                 *RUN, *TINY_SIMCLR, *extra, "-q"])


@pytest.fixture(scope="module")
def eight(tiny_corpus, tmp_path_factory):
    root, _ = tiny_corpus
    return first_rows(root / "pretrain.jsonl", tmp_path_factory.mktemp("m") / "m.jsonl", 8)


@pytest.fixture(scope="module")
def bad_data(tiny_corpus, tmp_path_factory):
    """16 readable rows, then 24 whose audio is missing: the run reads 16 good items (4
    steps, each checkpointed) and stops once more than 10 % of 32 items read were bad."""
    root, _ = tiny_corpus
    tmp = tmp_path_factory.mktemp("bad")
    rows = [json.loads(line) for line in (root / "pretrain.jsonl").read_text().splitlines()]
    good = [dict(r, path=str(root / r["path"])) for r in rows[:16]]
    gone = [dict(good[0], id=f"gone{i}", path=str(tmp / f"gone{i}.wav")) for i in range(24)]
    path = tmp / "bad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in good + gone))
    return path


def check_export_refused_then_explicit(run, tmp_path, capsys, reason):
    """Export of the run folder: one line naming the stop and the way to export anyway,
    nothing written. Export of the checkpoint file: done, with a line saying what it is."""
    out = tmp_path / "bundle"
    assert main(["export", str(run), "-o", str(out)]) == 2
    err = one_line_error(capsys)
    assert f"run {run} stopped before it finished ({reason}; see {run}/run_stopped.json)" in err
    assert f"paravox export {run}/checkpoints/last.ckpt -o {out}" in err, err
    assert not out.exists()
    ckpt = run / "checkpoints" / "last.ckpt"
    step = torch.load(ckpt, weights_only=True)["global_step"]
    assert main(["export", str(ckpt), "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"note: run {run} stopped before it finished ({reason}); exported {ckpt} as named " \
           f"(step {step}, from before the stop)" in said, said
    assert (out / "model.safetensors").is_file()


def test_a_run_stopped_on_a_nonfinite_loss_is_not_exported_as_finished(
        eight, tmp_path, capsys, monkeypatch):
    """Before: `paravox export RUN` made a bundle of the step-2 checkpoint of a run that
    stopped at step 3 on a NaN loss, exit 0, without a word."""
    nan_from_call(monkeypatch, simclr_module, "nt_xent", 3)
    run = tmp_path / "run"
    assert pretrain(eight, run, "run.max_steps=6", "run.checkpoint_every_n_steps=1") == 2
    assert "the loss is not finite" in one_line_error(capsys)
    stopped = json.loads((run / "run_stopped.json").read_text())
    assert stopped["reason"] == "non-finite loss" and "step 3" in stopped["message"]
    assert "run_stopped.json" in json.loads((run / ".paravox-run.json").read_text())["files"]
    check_export_refused_then_explicit(run, tmp_path, capsys, "non-finite loss")
    # trained again (here: from scratch), the run is no longer a stopped one, and exports
    monkeypatch.undo()
    assert pretrain(eight, run, "run.max_steps=6", "run.checkpoint_every_n_steps=1",
                    "--restart") == 0
    assert not (run / "run_stopped.json").exists() and (run / "run_done.json").is_file()
    capsys.readouterr()
    assert main(["export", str(run), "-o", str(tmp_path / "b2")]) == 0


def test_a_run_stopped_for_bad_data_is_not_exported_as_finished(bad_data, tmp_path, capsys):
    """Before: export made a bundle of the run that stopped because most items were
    missing, exit 0."""
    run = tmp_path / "run"
    assert pretrain(bad_data, run, "run.checkpoint_every_n_steps=1") == 2
    assert "items read were unusable" in one_line_error(capsys)
    assert json.loads((run / "run_stopped.json").read_text())["reason"] == "bad data"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    check_export_refused_then_explicit(run, tmp_path, capsys, "bad data")


def test_resume_with_a_new_override_on_a_finished_run_keeps_its_config(eight, tmp_path,
                                                                       capsys):
    """Before: `--resume simclr.optim.lr=...` on a finished run trained nothing, yet
    rewrote config.yaml to the new learning rate (exit 0): the folder then claimed settings
    its weights were never trained with."""
    run = tmp_path / "run"
    assert pretrain(eight, run, "run.max_steps=2") == 0
    files = ("config.yaml", "run_done.json", "checkpoints/last.ckpt")
    before = {name: (run / name).read_bytes() for name in files}
    capsys.readouterr()
    for extra in (["simclr.optim.lr=0.5"], ["simclr.optim.lr=0.5", "run.max_steps=1"],
                  ["simclr.optim.lr=0.5", "run.epochs=5"]):  # max_steps=2 still binds
        assert pretrain(eight, run, "run.max_steps=2", *extra, "--resume") == 2, extra
        err = one_line_error(capsys)
        assert f"--resume: {run} holds a finished run (2 steps) that this config would not " \
               f"train further (" in err and "simclr.optim.lr: 0.002 -> 0.5" in err, err
        assert "raise run.epochs or run.max_steps" in err and "--restart" in err
        assert {name: (run / name).read_bytes() for name in files} == before
    # raising the budget trains on from the finished run, and the config says so
    assert pretrain(eight, run, "run.max_steps=4", "simclr.optim.lr=0.0005", "--resume") == 0
    assert "(step 2)" in capsys.readouterr().out
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4
    assert "max_steps: 4" in (run / "config.yaml").read_text()


def test_the_precision_line_is_printed_once_per_run(eight, tmp_path, capsys):
    """Before: only the first run of a process printed it (a second run, e.g. the next
    command of a notebook or the next stage, said nothing), so the second run's log did
    not say in which precision it trained."""
    for name in ("a", "b"):
        assert pretrain(eight, tmp_path / name, "run.max_steps=1") == 0
        out = capsys.readouterr().out
        assert out.count("precision: ") == 1, out
