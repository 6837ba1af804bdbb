"""Reliability round 3, writing: a read-only output folder is one line naming it in every
command that writes (pretrain, export, embed, manifest import / export / validate --fix,
evaluate, preview, synth, finetune two-step, demo, study), checked before the work and with
nothing written; `manifest export` (Kaldi, CSV) and the synthetic corpus writer write whole
files or none.

How "read-only" is made: as a normal user, ``chmod 555`` on the output folder (the kernel's
own refusal). As root, chmod does not bind, so two other ways are used: in-process, every
creation of a file or folder inside the read-only folder is made to raise
``PermissionError(EACCES)`` by patching ``open``/``os.open``/``os.mkdir``/``os.replace`` (a
simulation of what the kernel does, not the kernel); and, where ``setpriv`` exists, the same
commands in a child process that runs without CAP_DAC_OVERRIDE, for which ``chmod 555`` binds
as it does for a user (the real thing)."""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import paravox.data.synth.corpus as corpus
from paravox.cli.main import main
from paravox.data.importers import export_csv, export_kaldi
from paravox.data.manifest import Manifest
from paravox.inference.bundle import random_bundle
from paravox.utils.atomic_files import WriteError, is_temp_name

SMALL_ECAPA = {"channels": 16, "mfa_channels": 48, "se_channels": 8, "attention_channels": 8,
               "scale": 4, "embedding_dim": 8}
ROOT = os.geteuid() == 0


@pytest.fixture(scope="module")
def inputs(tiny_corpus, tmp_path_factory):
    """What the commands read: the tiny corpus, a manifest of 8 of its rows with absolute
    paths, a CSV of it, a bundle and a (stub) run folder export finds its files in."""
    root, _ = tiny_corpus
    tmp = tmp_path_factory.mktemp("inputs")
    m = Manifest.load(root / "train.jsonl")
    m.rows = m.rows[:8]
    m.save(tmp / "m.jsonl")
    export_csv(m.rows, tmp / "m.csv", root=m.root)
    bundle = random_bundle("ecapa", SMALL_ECAPA, {"n_mels": 24}, tmp / "bundle")
    (tmp / "run" / "checkpoints").mkdir(parents=True)
    (tmp / "run" / "checkpoints" / "last.ckpt").write_bytes(b"")  # not read: refused before
    (tmp / "run" / "config.yaml").write_text("method: simclr\nout_dir: x\nrun: {}\n")
    return {"root": root, "m": tmp / "m.jsonl", "csv": tmp / "m.csv", "bundle": bundle,
            "run": tmp / "run"}


def commands(i: dict, ro: Path) -> dict[str, list[str]]:
    """Each writing command with its output inside (or being) the read-only folder ``ro``."""
    return {
        "pretrain": ["pretrain", "simclr_demo", f"train_manifest={i['m']}", f"out_dir={ro}/run",
                     "eval_manifest=null", "trials=null", "run.batch_size=4", "-q"],
        "export": ["export", str(i["run"]), "-o", str(ro / "bundle")],
        "embed": ["embed", str(i["bundle"]), str(i["m"]), "-o", str(ro), "-q"],
        "manifest import": ["manifest", "import", "csv", str(i["csv"]), "-o", str(ro / "m.jsonl")],
        "manifest validate --fix": ["manifest", "validate", str(i["m"]), "--fix",
                                    str(ro / "fixed.jsonl"), "-q"],
        "manifest export kaldi": ["manifest", "export", "kaldi", str(i["m"]), "-o",
                                  str(ro / "kaldi")],
        "manifest export csv": ["manifest", "export", "csv", str(i["m"]), "-o",
                                str(ro / "m.csv")],
        "evaluate sv": ["evaluate", "sv", str(i["bundle"]), "--manifest",
                        str(i["root"] / "test.jsonl"), "--trials", str(i["root"] / "trials.txt"),
                        "-o", str(ro), "-q"],
        "evaluate classify": ["evaluate", "classify", str(i["bundle"]), "--task", "gender",
                              "--train", str(i["root"] / "train.jsonl"), "--test",
                              str(i["root"] / "test.jsonl"), "-o", str(ro / "classify"), "-q"],
        "preview": ["preview", str(i["m"]), "-o", str(ro / "preview.png")],
        "synth": ["synth", "--preset", "tiny", "-o", str(ro / "corpus"), "-q"],
        "finetune two-step": ["finetune", "two-step", str(i["bundle"]), "--task", "gender",
                              "--train", str(i["root"] / "train.jsonl"), "--test",
                              str(i["root"] / "test.jsonl"), "-o", str(ro / "two_step"), "-q"],
        "demo": ["demo", "-o", str(ro / "demo"), "-q"],
        "study": ["study", "dino", "-o", str(ro / "study"), "-q"],
    }


def check_refusal(name: str, code: int, err: str, ro: Path) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, (name, err)
    assert str(ro) in lines[0] and ("Permission denied" in lines[0]), (name, err)
    assert any(w in lines[0] for w in ("give a folder you can write to",
                                       "make its folder writable")), (name, err)
    assert sorted(os.listdir(ro)) == [], (name, os.listdir(ro))


def deny_writes_under(monkeypatch, folder: Path) -> None:
    """Simulate a read-only ``folder`` for root (whom chmod does not stop): creating a file
    or folder in it, opening a file in it for writing, or renaming into it raises
    ``PermissionError(EACCES)``, as the kernel does for a user. Reads are untouched."""
    folder = str(folder.resolve())

    def inside(path) -> bool:
        try:
            p = os.path.abspath(os.fspath(path))
        except TypeError:  # a file descriptor
            return False
        return p == folder or p.startswith(folder + os.sep)

    def denied(path):
        return PermissionError(errno.EACCES, "Permission denied", os.fspath(path))

    real_open, real_os_open = builtins.open, os.open
    real_mkdir, real_replace = os.mkdir, os.replace

    def fake_open(path, mode="r", *args, **kwargs):
        if inside(path) and any(c in mode for c in "wxa+"):
            raise denied(path)
        return real_open(path, mode, *args, **kwargs)

    def fake_os_open(path, flags, *args, **kwargs):
        if inside(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise denied(path)
        return real_os_open(path, flags, *args, **kwargs)

    def fake_mkdir(path, *args, **kwargs):
        if inside(path) and os.path.abspath(os.fspath(path)) != folder:
            raise denied(path)
        return real_mkdir(path, *args, **kwargs)

    def fake_replace(src, dst, *args, **kwargs):
        if inside(dst):
            raise denied(dst)
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)
    monkeypatch.setattr(os, "open", fake_os_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)
    monkeypatch.setattr(os, "replace", fake_replace)


@pytest.fixture
def read_only(tmp_path, monkeypatch):
    """An empty folder this process cannot write into: chmod 555, or (as root) the
    simulation of :func:`deny_writes_under`."""
    ro = tmp_path / "ro"
    ro.mkdir()
    if ROOT:
        deny_writes_under(monkeypatch, ro)
    else:
        ro.chmod(0o555)
    yield ro
    ro.chmod(0o755)


COMMANDS = list(commands({"root": Path("r"), "m": "m", "csv": "c", "bundle": "b", "run": "r"},
                         Path("ro")))


@pytest.mark.parametrize("name", COMMANDS)
def test_a_read_only_output_folder_is_one_line(inputs, read_only, capsys, name):
    """Before: `embed`, `evaluate sv|classify`, `manifest export kaldi` and `synth` were a
    PermissionError traceback from mkdir; `validate --fix` (after reading all the audio),
    `manifest import`, `manifest export csv` and `preview` failed in one line only after
    all their work; pretrain, export, finetune two-step, demo and study already refused in
    one line (their folder lock)."""
    code = main(commands(inputs, read_only)[name])
    check_refusal(name, code, capsys.readouterr().err, read_only)


SETPRIV = shutil.which("setpriv")
NO_OVERRIDE = "-dac_override,-dac_read_search,-fowner"


@pytest.mark.skipif(not (ROOT and SETPRIV), reason="needs root and setpriv (as a user, the "
                    "chmod test above is already the real thing)")
def test_a_really_read_only_folder_for_root_without_dac_override(inputs, tmp_path):
    """The same commands in a child process without CAP_DAC_OVERRIDE, on a folder chmod'ed
    555: the kernel itself refuses (no simulation)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    script = (
        "import contextlib, io, json, sys\n"
        "from paravox.cli.main import main\n"
        "out = {}\n"
        "for name, argv in json.loads(sys.argv[1]).items():\n"
        "    err = io.StringIO()\n"
        "    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):\n"
        "        code = main(argv)\n"
        "    out[name] = [code, err.getvalue()]\n"
        "print(json.dumps(out))\n")
    cases = commands(inputs, ro)
    try:
        result = subprocess.run(
            [SETPRIV, f"--bounding-set={NO_OVERRIDE}", f"--inh-caps={NO_OVERRIDE}",
             sys.executable, "-c", script, json.dumps({k: list(map(str, v))
                                                       for k, v in cases.items()})],
            capture_output=True, text=True, timeout=240, env={**os.environ, "PYTHONPATH":
                                                              os.pathsep.join(sys.path)})
    finally:
        ro.chmod(0o755)
    if result.returncode != 0 and "setpriv" in result.stderr:
        pytest.skip(f"setpriv could not drop capabilities here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(found) == set(cases)
    for name, (code, err) in found.items():
        check_refusal(name, code, err, ro)


# -- atomic writes of manifest export and the synthetic corpus --------------------------------
def full_disk(monkeypatch, root: Path, only: str | None = None):
    """Files opened for writing under ``root`` (the temporary files of those named ``only``,
    when given) take half of a write and then fail like a full disk (``OSError(ENOSPC)``)."""
    real_open = builtins.open

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def write(self, data):
            self.fh.write(data[:len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    def full_open(path, mode="r", *args, **kwargs):
        fh = real_open(path, mode, *args, **kwargs)
        if isinstance(path, int):  # a file descriptor (multiprocessing opens some)
            return fh
        inside = str(os.path.abspath(path)).startswith(str(root)) and (
            only is None or is_temp_name(Path(path).name, only))
        return Full(fh) if ("w" in mode or "x" in mode) and inside else fh

    monkeypatch.setattr(builtins, "open", full_open)
    monkeypatch.setattr(io, "open", full_open)


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if is_temp_name(p.name)]


def test_manifest_export_on_a_full_disk_keeps_the_previous_files(inputs, tmp_path,
                                                                 monkeypatch, capsys):
    """Before: `export_kaldi` and `export_csv` opened their files directly: a full disk left
    a truncated wav.scp / CSV under the real name."""
    m = Manifest.load(inputs["m"])
    kaldi, csv = tmp_path / "kaldi", tmp_path / "m.csv"
    export_kaldi(m.rows, kaldi, root=m.root)
    export_csv(m.rows, csv, root=m.root)
    before = {p.name: p.read_bytes() for p in [*kaldi.iterdir(), csv]}
    m.rows = m.rows[:3]  # a new export would differ
    full_disk(monkeypatch, tmp_path)
    with pytest.raises(WriteError, match=r"could not write .*wav.scp \(No space left on device\)"
                                         r": its previous version is intact"):
        export_kaldi(m.rows, kaldi, root=m.root)
    with pytest.raises(WriteError, match=r"m.csv \(No space left on device\)"):
        export_csv(m.rows, csv, root=m.root)
    assert main(["manifest", "export", "csv", str(inputs["m"]), "-o", str(csv)]) == 2
    monkeypatch.undo()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "previous version is intact" in err, err
    assert {p.name: p.read_bytes() for p in [*kaldi.iterdir(), csv]} == before
    assert temp_files(tmp_path) == []


def test_corpus_wavs_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """Before: `sf.write` wrote each WAV under its own name, so a failure half-way left a
    truncated WAV there. Now a failed write (here libsndfile's own error after half the
    file, as on a full disk) keeps the previous WAV and leaves no temporary file."""
    path = tmp_path / "wav" / "spk0000" / "u.wav"
    old = np.zeros(1600, dtype=np.float32)
    corpus.write_wav(path, old)
    before = path.read_bytes()
    real_write = sf.write

    def half_then_fail(file, data, *args, **kwargs):
        real_write(file, data[:len(data) // 2], *args, **kwargs)
        raise RuntimeError("Error : write failed (No space left on device)")

    monkeypatch.setattr(corpus.sf, "write", half_then_fail)
    with pytest.raises(WriteError, match=r"u.wav \(Error : write failed \(No space left on "
                                         r"device\)\): its previous version is intact"):
        corpus.write_wav(path, np.ones(16000, dtype=np.float32) * 0.1)
    monkeypatch.undo()
    assert path.read_bytes() == before and temp_files(tmp_path) == []
    assert sf.info(str(path)).frames == 1600


def test_corpus_index_files_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """The corpus writer's text files (manifests, trials.txt, phones.txt, speakers.tsv,
    summary.json, config.yaml, README.md) go through the atomic writer. Before: trials.txt
    was written directly; a full disk while writing it (after the manifests) left half of
    it. Now: no trials.txt, no temporary file, the manifests written before are whole, and
    no README.md (which marks a complete corpus)."""
    from paravox.data.synth import PRESETS, SynthConfig, generate_corpus
    from paravox.utils.config import build_config

    cfg = build_config(SynthConfig, base=PRESETS["tiny"], overrides=[
        "workers=1", "num_speakers=6", "utts_per_speaker=2"])
    out = tmp_path / "corpus"
    full_disk(monkeypatch, out, only="trials.txt")
    with pytest.raises(WriteError, match=r"trials.txt \(No space left on device\)"):
        generate_corpus(cfg, out, progress=False)
    monkeypatch.undo()
    names = {p.name for p in out.iterdir()}
    assert "trials.txt" not in names and "README.md" not in names and temp_files(out) == []
    for split in ("pretrain", "train", "test"):  # written before the disk filled: whole
        assert len(Manifest.load(out / f"{split}.jsonl")) > 0
