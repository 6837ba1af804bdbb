"""Every file paravox writes is written whole or not at all: a full disk half-way through a
write (simulated by a write that raises ``OSError(ENOSPC)`` after part of the data) leaves the
previous file intact, no partial or empty file under its name and no temporary file; the
failure is one line naming the file."""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from paravox.cli.main import main
from paravox.data.manifest import Manifest, ManifestRow, write_manifest
from paravox.errors import ParavoxError
from paravox.inference.bundle import random_bundle, read_bundle
from paravox.inference.writers import read_embeddings, write_embeddings
from paravox.report.document import Document
from paravox.utils import atomic_files
from paravox.utils.atomic_files import WriteError, atomic_open, is_temp_name, write_text
from paravox.utils.config import save_config


def _no_temp_files(folder) -> bool:
    return not [p for p in folder.rglob("*") if is_temp_name(p.name)]


def _full_disk_open(monkeypatch, after: int = 0, root=None):
    """Make every file opened for writing (under ``root``, default: anywhere but pytest's
    own files) fail like a full disk after ``after`` successful writes: the write gets half
    its data onto the disk, then raises ``OSError(ENOSPC)``."""
    real_open = open
    state = {"writes": 0}

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def write(self, data):
            state["writes"] += 1
            if state["writes"] <= after:
                return self.fh.write(data)
            self.fh.write(data[:len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    def full_open(path, mode="r", *a, **k):
        fh = real_open(path, mode, *a, **k)
        inside = root is None or str(os.path.abspath(path)).startswith(str(root))
        return Full(fh) if ("w" in mode or "x" in mode) and inside else fh

    monkeypatch.setattr("builtins.open", full_open)
    monkeypatch.setattr("io.open", full_open)  # what zipfile opens with
    return state


def test_a_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    write_text(path, '{"old": true}\n')
    _full_disk_open(monkeypatch, root=tmp_path)
    with pytest.raises(WriteError) as exc:
        write_text(path, json.dumps({"new": list(range(1000))}))
    monkeypatch.undo()
    msg = str(exc.value)
    assert len(msg.splitlines()) == 1 and str(path) in msg
    assert "No space left on device" in msg and "previous version is intact" in msg
    assert isinstance(exc.value, OSError) and isinstance(exc.value, ParavoxError)
    assert path.read_text() == '{"old": true}\n'
    assert _no_temp_files(tmp_path)


def test_a_failed_new_file_leaves_nothing(tmp_path, monkeypatch):
    _full_disk_open(monkeypatch, root=tmp_path)
    with pytest.raises(WriteError, match="no partial file was left"):
        write_text(tmp_path / "new.txt", "x" * 1000)
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_an_error_inside_the_block_leaves_the_previous_file(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("before")
    with pytest.raises(RuntimeError):
        with atomic_open(path) as fh:
            fh.write("half")
            raise RuntimeError("the writer failed")
    assert path.read_text() == "before" and _no_temp_files(tmp_path)


def test_written_files_have_the_usual_permissions_and_are_synced(tmp_path, monkeypatch):
    synced = []
    real = atomic_files.os.fsync
    monkeypatch.setattr(atomic_files.os, "fsync", lambda fd: synced.append(fd) or real(fd))
    path = write_text(tmp_path / "x.txt", "y")
    assert len(synced) == 2  # the file, then its folder
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_manifest_write_on_a_full_disk(tmp_path, monkeypatch):
    path = tmp_path / "m.jsonl"
    rows = [ManifestRow(id=f"u{i}", path=f"u{i}.wav") for i in range(50)]
    write_manifest(rows[:3], path)
    before = path.read_text()
    _full_disk_open(monkeypatch, after=10, root=tmp_path)
    with pytest.raises(WriteError):
        write_manifest(rows, path)
    with pytest.raises(WriteError):
        Manifest(rows, root=tmp_path).save(path)
    monkeypatch.undo()
    assert path.read_text() == before and _no_temp_files(tmp_path)


@pytest.mark.parametrize("fmt", ["npy", "npz", "ark"])
def test_embeddings_on_a_full_disk(tmp_path, monkeypatch, fmt):
    """The probe: ``embed --format npy`` left 0-byte files on a full disk."""
    old = {f"u{i}": np.full(8, -1.0, np.float32) for i in range(6)}
    write_embeddings(old, tmp_path, fmt)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    new = {f"u{i}": np.full(8, float(i), np.float32) for i in range(6)}
    _full_disk_open(monkeypatch, after=2 if fmt == "npy" else 0, root=tmp_path)
    with pytest.raises(WriteError):
        write_embeddings(new, tmp_path, fmt)
    monkeypatch.undo()
    assert _no_temp_files(tmp_path)
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after.keys() == before.keys() and all(after.values())  # no empty file
    got = read_embeddings(tmp_path if fmt == "npy" else
                          tmp_path / f"embeddings.{fmt}")
    for uid, vec in got.items():  # every file whole: the old or (npy) the new vector
        assert vec.shape == (8,) and (np.all(vec == -1.0) or np.all(vec == new[uid]))


def test_embed_command_on_a_full_disk_is_one_line(tmp_path, monkeypatch, write_wav, capsys):
    from conftest import tone

    bundle = random_bundle("xvector", {"channels": 16, "stats_channels": 32,
                                       "embedding_dim": 8}, {"n_mels": 24}, tmp_path / "b")
    rows = [{"id": f"u{i}", "path": str(write_wav(f"u{i}.wav", tone(200.0 + 50 * i)))}
            for i in range(4)]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    _full_disk_open(monkeypatch, after=1, root=tmp_path / "e")
    assert main(["embed", str(bundle), str(tmp_path / "m.jsonl"), "-o", str(tmp_path / "e"),
                 "--format", "npy", "-q"]) == 2
    monkeypatch.undo()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "No space left on device" in err
    assert all(p.stat().st_size > 0 for p in (tmp_path / "e").iterdir())
    assert _no_temp_files(tmp_path / "e")


def test_bundle_on_a_full_disk(tmp_path, monkeypatch):
    settings = {"channels": 16, "stats_channels": 32, "embedding_dim": 8}
    bundle = random_bundle("xvector", settings, {"n_mels": 24}, tmp_path / "b", seed=0)
    config, weights = read_bundle(bundle)
    def full(tensors, path, *a, **k):  # safetensors writes the file itself: fill the disk
        with open(path, "wb") as fh:
            fh.write(b"\0" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("paravox.models.bundle_format.save_file", full)
    with pytest.raises(WriteError):
        random_bundle("xvector", settings, {"n_mels": 24}, tmp_path / "b", seed=1)
    monkeypatch.undo()
    config2, weights2 = read_bundle(bundle)
    assert config2 == config and all(torch.equal(weights[k], weights2[k]) for k in weights)
    assert sorted(p.name for p in bundle.iterdir()) == ["config.json", "model.safetensors"]


def test_reports_and_configs_on_a_full_disk(tmp_path, monkeypatch):
    doc = Document("old")
    md, html = doc.write(tmp_path)
    old = md.read_text(), html.read_text()
    (tmp_path / "config.yaml").write_text("old: 1\n")
    _full_disk_open(monkeypatch, root=tmp_path)
    doc.parts.append("new " * 1000)
    with pytest.raises(WriteError):
        doc.write(tmp_path)
    with pytest.raises(WriteError):
        save_config(_Cfg(), tmp_path / "config.yaml")
    monkeypatch.undo()
    assert (md.read_text(), html.read_text()) == old
    assert (tmp_path / "config.yaml").read_text() == "old: 1\n"
    assert _no_temp_files(tmp_path)


@dataclass
class _Cfg:
    value: str = "new " * 1000
