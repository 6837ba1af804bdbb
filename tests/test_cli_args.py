"""Bad command-line arguments fail with one line on stderr that names the argument (and the
value or file), with a non-zero exit, before any work is done: numeric options out of range,
``--device`` this machine does not have, missing files and bundle folders; every command that
shows progress accepts ``-q``."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from paravox.cli.common import NUMERIC_OPTIONS
from paravox.cli.main import build_parser, main
from paravox.errors import ConfigError
from paravox.inference import Embedder
from paravox.inference.bundle import random_bundle

XVECTOR = {"channels": 16, "stats_channels": 32, "embedding_dim": 8}
NO = "/no/such/path"  # a path that exists nowhere


def one_line(capsys, rc: int, *names: str) -> str:
    """The single stderr line of a failed command, checked to contain every name."""
    err = capsys.readouterr().err.strip()
    assert rc != 0, err
    assert len(err.splitlines()) == 1, err
    for name in names:
        assert name in err, err
    return err


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A random x-vector bundle and a 4-utterance, 2-speaker manifest with trials:
    (bundle, manifest, trials) paths."""
    root = tmp_path_factory.mktemp("cli_args")
    bundle = random_bundle("xvector", XVECTOR, {"n_mels": 24}, root / "bundle")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(4):
        sf.write(str(root / f"u{i}.wav"), (0.1 * rng.standard_normal(16000)).astype(np.float32),
                 16000)
        rows.append({"id": f"u{i}", "path": f"u{i}.wav", "speaker": f"s{i % 2}",
                     "labels": {"style": "a" if i < 2 else "b"}})
    (root / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "trials.txt").write_text("1 u0 u2\n0 u0 u1\n1 u1 u3\n0 u2 u3\n")
    return bundle, root / "m.jsonl", root / "trials.txt"


def base_args(bundle=NO, manifest=NO, trials=NO, out=NO) -> dict[str, list[str]]:
    """A minimal command line for every command that takes numeric options or files."""
    b, m, t, o = str(bundle), str(manifest), str(trials), str(out)
    return {
        "embed": ["embed", b, m, "-o", o],
        "evaluate sv": ["evaluate", "sv", b, "--manifest", m, "--trials", t, "-o", o],
        "evaluate classify": ["evaluate", "classify", b, "--task", "style", "--train", m,
                              "--test", m, "-o", o],
        "evaluate frames": ["evaluate", "frames", b, "--train", m, "--test", m, "-o", o],
        "manifest validate": ["manifest", "validate", m],
        "prepare": ["prepare", "voxceleb1", m, "-o", o],
        "shard": ["shard", m, "-o", o],
        "preview": ["preview", m, "-o", o],
        "finetune two-step": ["finetune", "two-step", b, "--task", "style", "--train", m,
                              "--test", m, "-o", o],
    }


# (command, option, bad value): every numeric option of every command, out of range
OUT_OF_RANGE = [
    ("embed", "--chunk-seconds", "0"),
    ("embed", "--chunk-seconds", "-1"),
    ("embed", "--chunk-seconds", "nan"),
    ("embed", "--chunk-seconds", "inf"),
    ("embed", "--max-bad-fraction", "2"),
    ("embed", "--max-bad-fraction", "-0.1"),
    ("evaluate sv", "--chunk-seconds", "0"),
    ("evaluate sv", "--chunk-seconds", "-1"),
    ("evaluate sv", "--top-k", "-1"),
    ("evaluate sv", "--top-k", "0"),
    ("evaluate sv", "--lda-dim", "0"),
    ("evaluate classify", "--chunk-seconds", "0"),
    ("evaluate classify", "--seed", "-1"),
    ("evaluate classify", "--seed", str(2**40)),
    ("evaluate frames", "--epochs", "0"),
    ("evaluate frames", "--max-utterances", "0"),
    ("evaluate frames", "--max-train-frames", "0"),
    ("evaluate frames", "--per-smoothing", "0"),
    ("evaluate frames", "--seed", "-1"),
    ("manifest validate", "--max-listed", "-1"),
    ("manifest validate", "--min-seconds", "-0.5"),
    ("prepare", "--workers", "0"),
    ("shard", "--shard-mb", "0"),
    ("shard", "--shard-mb", "nan"),
    ("shard", "--shard-items", "0"),
    ("shard", "--seed", "-1"),
    ("preview", "--seed", "-1"),
    ("finetune two-step", "--seed", "-1"),
]


@pytest.mark.parametrize("command,option,value", OUT_OF_RANGE,
                         ids=[f"{c}{o}={v}" for c, o, v in OUT_OF_RANGE])
def test_out_of_range_number_is_one_line(capsys, command, option, value):
    """Checked before any file is read: the paths here do not exist, yet the option is
    what the line names."""
    rc = main([*base_args()[command], option, value])
    one_line(capsys, rc, option, value if value not in ("nan", "inf") else option)


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command path, parser) of every leaf command of the argparse tree."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield " ".join(path), parser
    for action in subs:
        for name, child in action.choices.items():
            yield from _leaves(child, (*path, name))


def test_every_numeric_option_is_checked_and_tested():
    """Each int/float option of every command has a range check (NUMERIC_OPTIONS) and a
    case above: a new numeric option cannot slip in unchecked."""
    tested = {(c, o) for c, o, _ in OUT_OF_RANGE}
    found = set()
    for command, parser in _leaves(build_parser()):
        for action in parser._actions:
            if action.type in (int, float) and action.option_strings:
                assert action.dest in NUMERIC_OPTIONS, (command, action.dest)
                found.add((command, action.option_strings[-1]))
    assert found == tested, found ^ tested


@pytest.mark.parametrize("command", ["embed", "evaluate sv", "evaluate classify",
                                     "evaluate frames"])
def test_device_cuda_without_a_gpu_is_one_line(capsys, monkeypatch, command):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rc = main([*base_args()[command], "--device", "cuda"])
    err = one_line(capsys, rc, "--device cuda", "no CUDA GPU is visible", "--device cpu")
    assert err.startswith("paravox: error:")


@pytest.mark.parametrize("device", ["gpu0", "cuda:x", "tpu", ""])
def test_unknown_device_is_one_line(capsys, device):
    rc = main([*base_args()["embed"], "--device", device])
    one_line(capsys, rc, f"--device {device}", "not a device")


def test_cuda_index_beyond_the_visible_gpus_is_one_line(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    rc = main([*base_args()["evaluate sv"], "--device", "cuda:3"])
    one_line(capsys, rc, "--device cuda:3", "1 visible CUDA GPU")


def test_missing_trials_fails_before_any_embedding(small, tmp_path, capsys, monkeypatch):
    bundle, manifest, _ = small

    def no_embedding(*args, **kwargs):
        raise AssertionError("embedded before the trials file was checked")

    monkeypatch.setattr("paravox.evaluation.sv.embed_manifest", no_embedding)
    rc = main(["evaluate", "sv", str(bundle), "--manifest", str(manifest), "--trials",
               "/no/such/file", "--train", str(manifest), "-o", str(tmp_path / "sv"), "-q"])
    one_line(capsys, rc, "--trials /no/such/file", "no such file")
    assert not (tmp_path / "sv").exists()


# (command, the argument's name in the line, base_args key it replaces, name in base_args)
MISSING_FILES = [
    ("embed", "manifest", "manifest"),
    ("evaluate sv", "--manifest", "manifest"),
    ("evaluate sv", "--trials", "trials"),
    ("evaluate classify", "--train", "manifest"),
    ("evaluate frames", "--train", "manifest"),
    ("finetune two-step", "--train", "manifest"),
]


@pytest.mark.parametrize("command,name,key", MISSING_FILES,
                         ids=[f"{c} {n}" for c, n, _ in MISSING_FILES])
def test_missing_file_is_one_line(small, tmp_path, capsys, command, name, key):
    bundle, manifest, trials = small
    paths = {"bundle": bundle, "manifest": manifest, "trials": trials, "out": tmp_path / "o"}
    paths[key] = NO
    if command == "evaluate frames":
        paths["bundle"] = "logmel"
    rc = main([*base_args(**paths)[command], "-q"])
    one_line(capsys, rc, f"{name} {NO}", "no such file")


def test_a_folder_given_as_a_file_is_one_line(small, tmp_path, capsys):
    bundle, manifest, _ = small
    rc = main([*base_args(bundle, manifest, tmp_path, tmp_path / "o")["evaluate sv"], "-q"])
    one_line(capsys, rc, f"--trials {tmp_path}", "is a folder")


@pytest.mark.parametrize("command", ["embed", "evaluate sv", "evaluate classify",
                                     "evaluate frames", "finetune two-step"])
def test_missing_bundle_is_one_line(small, tmp_path, capsys, command):
    _, manifest, trials = small
    rc = main([*base_args(NO, manifest, trials, tmp_path / "o")[command], "-q"])
    one_line(capsys, rc, f"bundle {NO}", "no such folder", "paravox export")
    # a folder that is not a bundle
    rc = main([*base_args(tmp_path, manifest, trials, tmp_path / "o")[command], "-q"])
    one_line(capsys, rc, f"bundle {tmp_path}", "no config.json")


def test_bundle_loading_errors_are_config_errors(small, tmp_path):
    """The library says the same as the command line: Embedder.from_bundle raises a
    ConfigError (one line) for a missing folder, a damaged config or damaged weights."""
    bundle, _, _ = small
    with pytest.raises(ConfigError, match="no such folder"):
        Embedder.from_bundle(tmp_path / "nothing")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    (broken / "model.safetensors").write_bytes((bundle / "model.safetensors").read_bytes())
    with pytest.raises(ConfigError, match="config.json: not a readable bundle config"):
        Embedder.from_bundle(broken)
    (broken / "config.json").write_text((bundle / "config.json").read_text())
    (broken / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="model.safetensors: not a readable safetensors"):
        Embedder.from_bundle(broken)
    other = random_bundle("xvector", {**XVECTOR, "embedding_dim": 4}, {"n_mels": 24},
                          tmp_path / "other")
    (broken / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    with pytest.raises(ConfigError, match="do not fit the encoder"):
        Embedder.from_bundle(broken)


def test_lda_dim_needs_plda_and_fits_the_embedding(small, tmp_path, capsys):
    bundle, manifest, trials = small
    args = [*base_args(bundle, manifest, trials, tmp_path / "o")["evaluate sv"], "-q"]
    one_line(capsys, main([*args, "--lda-dim", "4"]), "--lda-dim", "--backend plda")
    one_line(capsys, main([*args, "--train", str(manifest), "--backend", "plda",
                           "--lda-dim", "9"]), "--lda-dim 9", "8 dimensions")


# leaf commands that show no progress bar, so need no -q (each with the reason)
NO_PROGRESS = {
    "version": "prints one line",
    "encoders": "a table of parameter counts",
    "export": "writes a bundle; no per-item loop",
    "preview": "one utterance, one plot",
    "manifest import": "converts a description; reads no audio samples",
    "manifest export": "writes rows",
    "manifest stats": "reads file headers only; prints the summary",
}


def test_every_command_with_progress_accepts_quiet():
    leaves = dict(_leaves(build_parser()))
    assert set(NO_PROGRESS) <= set(leaves), set(NO_PROGRESS) - set(leaves)
    for command, parser in leaves.items():
        if command in NO_PROGRESS:
            continue
        quiet = [a for a in parser._actions if "-q" in a.option_strings]
        assert quiet and "--quiet" in quiet[0].option_strings, f"{command} lacks -q/--quiet"
        assert quiet[0].help, f"{command}: -q has no help"


def test_quiet_embed_prints_no_progress_bar(small, tmp_path, capsys):
    bundle, manifest, _ = small
    assert main(["embed", str(bundle), str(manifest), "-o", str(tmp_path / "a")]) == 0
    assert "embedding" in capsys.readouterr().err  # the progress bar, on stderr
    assert main(["embed", str(bundle), str(manifest), "-o", str(tmp_path / "b"), "-q"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and out.splitlines() == [
        f"wrote 4 embeddings of dimension 8 to {tmp_path / 'b' / 'embeddings.npz'}"]


def test_good_arguments_still_work(small, tmp_path, capsys):
    """The checks let a correct command through: chunked SV with AS-Norm and PLDA + LDA."""
    bundle, manifest, trials = small
    rc = main(["evaluate", "sv", str(bundle), "--manifest", str(manifest), "--trials",
               str(trials), "--train", str(manifest), "--backend", "cosine", "asnorm", "plda",
               "--top-k", "2", "--lda-dim", "1", "--chunk-seconds", "0.5", "--device", "cpu",
               "-o", str(tmp_path / "sv"), "-q"])
    assert rc == 0, capsys.readouterr().err
    assert (tmp_path / "sv/sv_results.json").is_file()
