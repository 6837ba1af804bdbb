"""A folder is a paravox run only when it says so (the marker, or a paravox config.yaml from
before the marker): paravox refuses to train into any other folder that holds files, and
``--restart`` deletes only what paravox wrote, never a file it did not create."""

from __future__ import annotations

import json
import os

import pytest

from paravox.cli.main import main
from paravox.training.run_files import (
    MARKER,
    SINGLE_RUN_FILES,
    clear_run,
    folder_kind,
    mark_run_folder,
    read_marker,
)

PARAVOX_CONFIG = "method: simclr\nout_dir: x\nrun:\n  epochs: 2\nsimclr: {}\n"


def _tree(root, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _contents(root) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink()}


USER_FILES = {"checkpoints/other_model.ckpt": "someone else's model",
              "logs/important_notes.txt": "do not lose",
              "tensorboard/mine/events.out.tfevents.1": "their events",
              "notes.txt": "mine"}
RUN_WRITES = {"config.yaml": PARAVOX_CONFIG, "checkpoints/last.ckpt": "ckpt",
              "checkpoints/epoch=0-step=4.ckpt": "ckpt",
              "checkpoints/.last.ckpt.123.0123abcd.tmp": "half a checkpoint",
              "logs/version_0/metrics.csv": "step\n", "logs/version_0/hparams.yaml": "{}",
              "logs/version_1/metrics.csv": "step\n",
              "tensorboard/version_0/events.out.tfevents.9.host": "ev",
              "skipped_items.tsv": "id\treason\n", "run_done.json": "{}"}


@pytest.fixture
def manifest(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"id": "a", "path": "a.wav"}) + "\n")
    return path


@pytest.mark.parametrize("flag", ["--restart", "--resume", None])
def test_a_folder_that_is_not_a_run_is_refused_and_untouched(tmp_path, manifest, capsys, flag):
    """The probe: --restart on a folder of the user's own checkpoints/, logs/ and tensorboard/
    (no marker, no paravox config.yaml) deleted them. Now: one line, nothing touched."""
    folder = tmp_path / "work"
    _tree(folder, {**USER_FILES, "config.yaml": "lr: 0.1\n"})  # someone else's config
    before = _contents(folder)
    args = ["pretrain", "simclr_demo", f"train_manifest={manifest}", f"out_dir={folder}",
            "eval_manifest=null", "trials=null", "-q"]
    assert main(args + ([flag] if flag else [])) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(folder) in err and "no paravox run" in err and "new or empty folder" in err
    assert _contents(folder) == before
    assert not (folder / MARKER).exists() and not (folder / ".paravox-lock").exists()


def test_restart_deletes_only_what_paravox_wrote(tmp_path):
    run = tmp_path / "run"
    _tree(run, {**RUN_WRITES, **USER_FILES, "logs/version_0/my_plot.png": "theirs"})
    mark_run_folder(run, SINGLE_RUN_FILES)
    os.symlink(tmp_path, run / "checkpoints" / "linked")  # a link: never followed or removed
    assert folder_kind(run) == "run"
    removed, kept = clear_run(run)
    assert sorted(removed) == sorted(["checkpoints", "logs", "tensorboard", "config.yaml",
                                      "skipped_items.tsv", "run_done.json"])
    left = _contents(run)
    assert {k: v for k, v in left.items() if k != MARKER} == {
        **USER_FILES, "logs/version_0/my_plot.png": "theirs"}
    assert sorted(kept) == sorted(["checkpoints/linked", "checkpoints/other_model.ckpt",
                                   "logs/important_notes.txt", "logs/version_0/my_plot.png",
                                   "tensorboard/mine"])
    assert (run / "checkpoints" / "linked").is_symlink() and (tmp_path / "run").is_dir()
    assert not (run / "logs" / "version_1").exists()  # emptied: removed
    assert read_marker(run) is not None  # still a run


def test_the_marker_limits_what_restart_deletes(tmp_path):
    """Only names the marker lists are touched (a multi-stage top folder lists config.yaml
    and stages/, so a checkpoints/ folder there is not its to delete)."""
    run = tmp_path / "run"
    _tree(run, {"config.yaml": PARAVOX_CONFIG, "checkpoints/last.ckpt": "not the run's"})
    mark_run_folder(run, ("config.yaml", "stages"))
    removed, _ = clear_run(run)
    assert removed == ["config.yaml"] and (run / "checkpoints" / "last.ckpt").is_file()


def test_a_run_from_before_the_marker_is_still_a_run(tmp_path):
    """A folder with a paravox config.yaml and no marker: a run; --restart deletes the known
    run files only, as before the marker existed."""
    run = tmp_path / "old_run"
    _tree(run, {**RUN_WRITES, **USER_FILES})
    assert folder_kind(run) == "legacy"
    clear_run(run)
    assert _contents(run) == USER_FILES


def test_stages_are_cleared_stage_by_stage(tmp_path):
    run = tmp_path / "run"
    _tree(run, {"config.yaml": PARAVOX_CONFIG, "stages/1_a/config.yaml": PARAVOX_CONFIG,
                "stages/1_a/checkpoints/last.ckpt": "x", "stages/2_b/config.yaml": PARAVOX_CONFIG,
                "stages/2_b/logs/version_0/metrics.csv": "x", "stages/2_b/mine.txt": "keep",
                "stages/readme.txt": "keep too"})
    mark_run_folder(run, ("config.yaml", "stages"))
    mark_run_folder(run / "stages" / "1_a")
    removed, kept = clear_run(run)
    assert removed == ["stages", "config.yaml"] or sorted(removed) == ["config.yaml", "stages"]
    assert not (run / "stages" / "1_a").exists()
    assert _contents(run) == {MARKER: (run / MARKER).read_text(), "stages/2_b/mine.txt": "keep",
                              "stages/readme.txt": "keep too"}
    assert sorted(kept) == ["stages/2_b/mine.txt", "stages/readme.txt"]


def test_folder_kinds(tmp_path):
    assert folder_kind(tmp_path / "missing") == "new"
    (tmp_path / "empty").mkdir()
    assert folder_kind(tmp_path / "empty") == "new"
    _tree(tmp_path / "lock_only", {".paravox-lock": '{"pid": 1}'})  # left by a dead process
    assert folder_kind(tmp_path / "lock_only") == "new"
    _tree(tmp_path / "foreign", {"config.yaml": "- a list\n"})
    assert folder_kind(tmp_path / "foreign") == "foreign"
    _tree(tmp_path / "bad_marker", {MARKER: "{not json", "x": ""})
    assert folder_kind(tmp_path / "bad_marker") == "foreign"


def test_a_setting_added_since_a_run_was_made_does_not_block_its_resume():
    """An older config.yaml lacks a setting paravox added later (e.g. run.shuffle_buffer):
    at its default it is no change; set to anything else it is, and so is a removed key."""
    from paravox.training.recipes import defaults_yaml, load_recipe
    from paravox.training.run_folder import config_changes
    from paravox.utils.config import config_yaml

    recipe = load_recipe("simclr_demo")
    new = config_yaml(recipe)
    old = new.replace("  shuffle_buffer: 256\n", "")
    assert old != new
    assert config_changes(old, new, defaults_yaml(recipe)) == []
    assert config_changes(old, new) == ["run.shuffle_buffer: <absent> -> 256"]
    changed = new.replace("shuffle_buffer: 256", "shuffle_buffer: 64")
    assert config_changes(old, changed, defaults_yaml(recipe)) == [
        "run.shuffle_buffer: <absent> -> 64"]
    assert config_changes(new, old, defaults_yaml(recipe)) == [
        "run.shuffle_buffer: 256 -> <absent>"]
