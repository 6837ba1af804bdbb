"""One paravox process per output folder: a second run, study, demo or export on a folder that
another process holds fails with one line naming the holder (pid, host, start time); a lock
left by a process that died is taken over."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from paravox.cli.main import main
from paravox.utils.folder_lock import LOCK_FILE, FolderBusyError, hold_folder, lock_holder

HOLDER = ("import sys, time, pathlib\n"
          "from paravox.utils.folder_lock import hold_folder\n"
          "with hold_folder(sys.argv[1]):\n"
          "    pathlib.Path(sys.argv[2]).write_text('held')\n"
          "    time.sleep(120)\n")


@pytest.fixture
def held(tmp_path):
    """Hold a folder from another process: yields (folder, that process)."""
    procs = []

    def hold(folder):
        ready = tmp_path / f"ready_{len(procs)}"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), str(ready)], env=env)
        procs.append(proc)
        for _ in range(600):
            if ready.exists():
                return proc
            if proc.poll() is not None:
                raise AssertionError("the holder process ended early")
            time.sleep(0.05)
        raise AssertionError("the holder process did not take the lock")

    yield hold
    for proc in procs:
        proc.kill()
        proc.wait()


def test_a_second_process_is_refused_naming_the_holder(tmp_path, held):
    folder = tmp_path / "run"
    proc = held(folder)
    info = lock_holder(folder)
    assert info["pid"] == proc.pid and info["host"] == socket.gethostname()
    with pytest.raises(FolderBusyError) as exc:
        with hold_folder(folder, "out_dir"):
            pass
    msg = str(exc.value)
    assert len(msg.splitlines()) == 1
    assert f"process {proc.pid} on {socket.gethostname()}, started {info['started']}" in msg
    assert str(folder) in msg and "another out_dir" in msg


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path, held):
    folder = tmp_path / "run"
    proc = held(folder)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (folder / LOCK_FILE).is_file()  # left behind by the dead process
    with hold_folder(folder):
        assert lock_holder(folder)["pid"] == os.getpid()
    assert not (folder / LOCK_FILE).exists()


def test_a_leftover_lock_file_alone_does_not_block(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / LOCK_FILE).write_text(json.dumps({"pid": 999999, "host": "elsewhere",
                                                "started": "yesterday"}))
    with hold_folder(folder):
        assert lock_holder(folder)["pid"] == os.getpid()


def test_reentrant_and_leaves_nothing_behind(tmp_path):
    folder = tmp_path / "new" / "run"
    with hold_folder(folder):
        with hold_folder(folder):  # the same process again: fine
            assert (folder / LOCK_FILE).is_file()
        assert (folder / LOCK_FILE).is_file()  # still held by the outer block
    assert not folder.exists()  # created for the lock, nothing written: removed
    folder.mkdir(parents=True)
    (folder / "kept.txt").write_text("x")
    with hold_folder(folder):
        pass
    assert sorted(p.name for p in folder.iterdir()) == ["kept.txt"]


def _one_line_busy(capsys, proc) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"process {proc.pid}" in err and "in use by another paravox run" in err
    return err


def test_two_runs_on_one_out_dir(tmp_path, held, capsys):
    """The probe: two runs on one out_dir both exited 0. The second now fails at once."""
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "a", "path": "a.wav"}) + "\n")
    out = tmp_path / "run"
    proc = held(out)
    assert main(["pretrain", "simclr_demo", f"train_manifest={manifest}", f"out_dir={out}",
                 "eval_manifest=null", "trials=null", "-q"]) == 2
    _one_line_busy(capsys, proc)
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # nothing else written


@pytest.mark.parametrize("command", [["demo", "--preset", "tiny"], ["study", "dino", "--preset",
                                                                     "tiny"]])
def test_demo_and_study_folders_are_held(tmp_path, held, capsys, command):
    out = tmp_path / "study"
    proc = held(out)
    assert main([*command, "-o", str(out), "-q"]) == 2
    _one_line_busy(capsys, proc)


def test_export_destination_is_held(tmp_path, held, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    (run / "config.yaml").write_text("method: dino\nout_dir: x\nrun: {}\n")
    bundle = tmp_path / "bundle"
    proc = held(bundle)
    assert main(["export", str(run), "-o", str(bundle)]) == 2
    _one_line_busy(capsys, proc)
