"""Reliability round 3, evaluation and training data: an alignment that does not cover its
audio, empty trial lists and trial lists of one kind, and empty or single-class training sets
are one line naming the file and what to do, in every command that reads them (`evaluate
frames|sv|classify`, `finetune two-step`, `train-supervised`, `pretrain`), before anything is
embedded or trained and with nothing written."""

from __future__ import annotations

import json

import pytest

from paravox.cli.main import main
from paravox.data.labels import label_classes
from paravox.data.manifest import Manifest
from paravox.errors import ManifestError
from paravox.evaluation.trials import read_trials
from paravox.inference.bundle import random_bundle

SMALL_ECAPA = {"channels": 16, "mfa_channels": 48, "se_channels": 8, "attention_channels": 8,
               "scale": 4, "embedding_dim": 8}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return random_bundle("ecapa", SMALL_ECAPA, {"n_mels": 24},
                         tmp_path_factory.mktemp("bundle"))


@pytest.fixture(scope="module")
def files(tiny_corpus, tmp_path_factory):
    """Manifests and trial lists of the tiny corpus with absolute audio paths: the corpus'
    own, an empty one, one whose 8 rows are all one speaker and gender, a row whose alignment
    covers 3 frames of a 3 s file, and trial lists that are empty or only targets."""
    root, _ = tiny_corpus
    tmp = tmp_path_factory.mktemp("data")
    rows = [json.loads(line) for line in (root / "train.jsonl").read_text().splitlines()]
    for r in rows:
        r["path"] = str(root / r["path"])

    def write(name, items):
        (tmp / name).write_text("".join(json.dumps(r) + "\n" for r in items))
        return tmp / name

    short = dict(rows[0], alignment={"counts": [1, 1, 1], "frame_shift": 0.01,
                                     "phones": ["sil", "a", "sil"]})
    one = [dict(r, speaker="spk0002", labels=dict(r["labels"], gender="male"))
           for r in rows[:8]]
    trials = (root / "trials.txt").read_text().splitlines(keepends=True)
    (tmp / "empty_trials.txt").write_text("")
    (tmp / "targets.txt").write_text("".join(t for t in trials if t.startswith("1")))
    (tmp / "nontargets.txt").write_text("".join(t for t in trials if t.startswith("0")))
    return {"root": root, "tmp": tmp, "train": root / "train.jsonl",
            "test": root / "test.jsonl", "trials": root / "trials.txt",
            "short": write("short_alignment.jsonl", [short]), "empty": write("empty.jsonl", []),
            "one": write("one_class.jsonl", one), "empty_trials": tmp / "empty_trials.txt",
            "targets": tmp / "targets.txt", "nontargets": tmp / "nontargets.txt"}


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


# -- evaluate frames: an alignment that covers 3 frames of a 3 s file -------------------------
def test_an_alignment_that_does_not_cover_its_audio_is_refused(files, tmp_path, capsys):
    """Before: the probe trained and scored on the 3 labelled frames (66.7 % frame accuracy,
    exit 0). Now: one line naming the split, the manifest, the row and both lengths, and the
    results folder is not written."""
    out = tmp_path / "frames"
    code = main(["evaluate", "frames", "logmel", "--train", str(files["train"]), "--test",
                 str(files["short"]), "-o", str(out), "-q", "--epochs", "1"])
    err = one_line_error(capsys)
    assert code == 2
    assert f"test manifest {files['short']}: row 'spk0002-u000'" in err, err
    assert "alignment covers 3 frames (0.03 s) but its audio has 323 (3.22 s)" in err, err
    assert "manifest validate" in err and "--fix" in err
    assert not (out / "frames_results.json").exists()
    # the same row in the training split is named as training data
    code = main(["evaluate", "frames", "logmel", "--train", str(files["short"]), "--test",
                 str(files["test"]), "-o", str(out), "-q", "--epochs", "1"])
    assert code == 2 and "train manifest" in one_line_error(capsys)


# -- trial lists ------------------------------------------------------------------------------
@pytest.mark.parametrize("name, message", [
    ("empty_trials", "no trials (an empty file)"),
    ("targets", "all 158 trials are target (1) trials; an EER needs non-target (0) trials"),
    ("nontargets", "all 188 trials are non-target (0) trials; an EER needs target (1)"),
])
def test_trial_lists_without_both_kinds_are_one_line(files, bundle, tmp_path, capsys, name,
                                                     message):
    """Before: `ValueError: need at least one array to stack` (empty) and `need both target
    (1) and non-target (0) trials` (one kind), both tracebacks after embedding."""
    with pytest.raises(ManifestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_trials(files[name])
    out = tmp_path / "sv"
    code = main(["evaluate", "sv", str(bundle), "--manifest", str(files["test"]), "--trials",
                 str(files[name]), "-o", str(out), "-q"])
    err = one_line_error(capsys)
    assert code == 2 and str(files[name]) in err and message in err, err
    assert not out.exists()


@pytest.mark.parametrize("train, backend, message", [
    ("one", "plda", "PLDA needs at least two speakers, it has one (spk0002)"),
    ("empty", "asnorm", "no rows; give a speaker-labelled manifest"),
])
def test_sv_back_end_training_sets_are_checked_before_embedding(files, bundle, tmp_path, capsys,
                                                                train, backend, message):
    """Before: PLDA on one speaker was `ValueError: PLDA needs at least two speakers` and an
    empty --train a numpy traceback."""
    code = main(["evaluate", "sv", str(bundle), "--manifest", str(files["test"]), "--trials",
                 str(files["trials"]), "--train", str(files[train]), "--backend", backend,
                 "-o", str(tmp_path / "sv"), "-q"])
    err = one_line_error(capsys)
    assert code == 2 and f"training manifest {files[train]}: {message}" in err, err


# -- classification training sets -------------------------------------------------------------
ONE_CLASS = "every one of its 8 rows has 'gender' = 'male'; a classifier needs at least two"


@pytest.mark.parametrize("train, test, protocol, message", [
    ("empty", "test", "linear", "training manifest {empty}: no rows"),
    ("one", "test", "linear", "training manifest {one}: " + ONE_CLASS),
    ("one", "one", "linear", "training manifest {one}: " + ONE_CLASS),
    ("train", "empty", "linear", "test manifest {empty}: no rows"),
    ("one", "one", "full", "training manifest {one}: " + ONE_CLASS),
])
def test_classification_needs_rows_and_two_classes(files, bundle, tmp_path, capsys, train, test,
                                                   protocol, message):
    """Before: an empty manifest was a numpy traceback, and a training set of one class with a
    test set of the same class scored 100 % (exit 0)."""
    out = tmp_path / "classify"
    code = main(["evaluate", "classify", str(bundle), "--task", "gender", "--protocol", protocol,
                 "--train", str(files[train]), "--test", str(files[test]), "-o", str(out), "-q"])
    err = one_line_error(capsys)
    assert code == 2 and message.format(**files) in err, err
    assert not out.exists()


def test_two_step_and_supervised_training_need_two_classes(files, bundle, tmp_path, capsys):
    code = main(["finetune", "two-step", str(bundle), "--task", "gender", "--train",
                 str(files["one"]), "--test", str(files["one"]), "-o", str(tmp_path / "ts"),
                 "-q"])
    err = one_line_error(capsys)
    assert code == 2 and f"training manifest {files['one']}: {ONE_CLASS}" in err, err
    assert not (tmp_path / "ts").exists()
    code = main(["train-supervised", "xvector_demo", f"train_manifest={files['one']}",
                 f"out_dir={tmp_path}/sup", "eval_manifest=null", "trials=null",
                 "run.batch_size=4", "-q"])
    err = one_line_error(capsys)
    assert code == 2 and "has 'speaker' = 'spk0002'; a classifier needs at least two" in err
    assert not (tmp_path / "sup").exists()
    with pytest.raises(ManifestError, match="no rows"):
        label_classes(Manifest.load(files["empty"]), "speaker")


@pytest.mark.parametrize("command", ["pretrain simclr_demo", "train-supervised xvector_demo"])
def test_an_empty_training_manifest_is_one_line(files, tmp_path, capsys, command):
    """Before: `0 utterances give no full batch of run.batch_size=4 ...: lower the batch
    size`, which sends the user after the wrong setting."""
    code = main([*command.split(), f"train_manifest={files['empty']}", f"out_dir={tmp_path}/r",
                 "eval_manifest=null", "trials=null", "run.batch_size=4", "-q"])
    err = one_line_error(capsys)
    assert code == 2 and f"train_manifest={files['empty']}: no rows, nothing to train" in err
    assert not (tmp_path / "r").exists()


def test_a_pretraining_trial_list_is_checked_before_training(files, tmp_path, capsys):
    code = main(["pretrain", "simclr_demo", f"train_manifest={files['train']}",
                 f"out_dir={tmp_path}/r", f"eval_manifest={files['test']}",
                 f"trials={files['targets']}", "run.batch_size=4", "-q"])
    err = one_line_error(capsys)
    assert code == 2 and "all 158 trials are target (1) trials" in err, err
    assert not (tmp_path / "r" / "checkpoints").exists()
