"""Where commands may write: never the root, the home folder or the current folder (or a
folder above it) as an output folder, never outside out_dir through a stage name, and never
over one of their own inputs (compared through ``..``, symbolic and hard links)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf

from paravox.cli.main import main
from paravox.errors import ConfigError
from paravox.utils.output_paths import check_not_input, check_output_folder, same_file

TRAIN = ["eval_manifest=null", "trials=null", "-q"]


@pytest.fixture
def manifest(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"id": "a", "path": "a.wav"}) + "\n")
    return path


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    work = home / "project" / "sub"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    return home


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("out_dir,why", [
    ("/", "the root of the file system"), ("~", "your home folder"),
    (".", "the current folder"), ("..", "a folder above the current folder"),
    ("../..", "your home folder"), ("../../..", "a folder above the current folder"),
    ("./x/..", "the current folder")])
def test_pretrain_refuses_out_dirs_that_hold_more_than_a_run(home, manifest, capsys, out_dir,
                                                              why):
    """The probe: out_dir=/ was accepted (it wrote /config.yaml, /logs ...)."""
    out_dir = str(home) if out_dir == "~" else out_dir
    before = sorted(os.listdir(home / "project"))
    assert main(["pretrain", "simclr_demo", f"train_manifest={manifest}", f"out_dir={out_dir}",
                 *TRAIN]) == 2
    err = _one_line(capsys)
    assert f"out_dir {out_dir}: is {why}" in err and "a folder of its own" in err
    assert sorted(os.listdir(home / "project")) == before
    assert not any((p / "config.yaml").exists() for p in (home, home / "project"))


def test_a_stage_name_cannot_leave_out_dir(tmp_path, manifest, capsys):
    """The probe: a stage named x/../../../../victim wrote a whole run outside out_dir."""
    stages = "stages=[{name: 'x/../../../../victim', set: []}]"
    assert main(["pretrain", "simclr_demo", f"train_manifest={manifest}",
                 f"out_dir={tmp_path / 'a' / 'b' / 'run'}", stages, *TRAIN]) == 2
    err = _one_line(capsys)
    assert "x/../../../../victim" in err and "letters, digits" in err
    assert sorted(os.listdir(tmp_path)) == ["m.jsonl"]


@pytest.mark.parametrize("command", [["demo", "--preset", "tiny"],
                                     ["study", "mgf", "--preset", "tiny"]])
@pytest.mark.parametrize("dest", ["/", "~", ".", ".."])
def test_demo_and_study_refuse_such_output_folders(home, capsys, command, dest):
    dest = str(home) if dest == "~" else dest
    assert main([*command, "-o", dest, "-q"]) == 2
    assert f"-o {dest}: is" in _one_line(capsys)


def test_export_refuses_such_destinations(home, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    (run / "config.yaml").write_text("method: dino\nout_dir: x\nrun: {}\n")
    for dest in ("/", str(home), "."):
        assert main(["export", str(run), "-o", dest]) == 2
        assert f"bundle folder {dest}: is" in _one_line(capsys)


def test_output_folder_checks():
    with pytest.raises(ConfigError, match="root"):
        check_output_folder("/", "out_dir")
    assert str(check_output_folder("runs/x", "out_dir")) == "runs/x"


# -- no command writes over its own input -------------------------------------------------------

@pytest.fixture
def corpus(tmp_path):
    """Three good WAV files and a manifest of them, plus one row of missing audio."""
    rows = []
    for i in range(3):
        path = tmp_path / f"u{i}.wav"
        sf.write(path, (0.1 * np.sin(np.arange(16000) * (0.05 + 0.01 * i))).astype(np.float32),
                 16000)
        rows.append({"id": f"u{i}", "path": str(path), "speaker": f"s{i}"})
    rows.append({"id": "gone", "path": str(tmp_path / "gone.wav")})
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def test_validate_fix_cannot_overwrite_the_manifest(corpus, tmp_path, capsys):
    """The probe: `manifest validate m.jsonl --fix m.jsonl` dropped rows from m.jsonl and
    exited 0. Now it is refused before anything is read, also through a symbolic link."""
    before = corpus.read_text()
    link = tmp_path / "link.jsonl"
    link.symlink_to(corpus)
    for fix in (corpus, link, tmp_path / "sub" / ".." / "m.jsonl"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        assert main(["manifest", "validate", str(corpus), "--fix", str(fix), "-q"]) == 2
        err = _one_line(capsys)
        assert f"--fix {fix}: is the manifest this command reads" in err
        assert "another file" in err
    assert corpus.read_text() == before
    # another file works as before
    assert main(["manifest", "validate", str(corpus), "--fix", str(tmp_path / "ok.jsonl"),
                 "-q"]) == 1
    assert len((tmp_path / "ok.jsonl").read_text().splitlines()) == 3


def test_import_cannot_overwrite_its_source(tmp_path, corpus, capsys):
    """The probe: `manifest import kaldi k1 -o k1/wav.scp` replaced the Kaldi wav.scp."""
    k1 = tmp_path / "k1"
    k1.mkdir()
    (k1 / "wav.scp").write_text("".join(f"u{i} {tmp_path / f'u{i}.wav'}\n" for i in range(3)))
    (k1 / "utt2spk").write_text("".join(f"u{i} s{i}\n" for i in range(3)))
    before = {p.name: p.read_text() for p in k1.iterdir()}
    for target in ("wav.scp", "utt2spk", "spk2utt"):
        assert main(["manifest", "import", "kaldi", str(k1), "-o", str(k1 / target)]) == 2
        assert f"is the Kaldi file {target} this command reads" in _one_line(capsys)
    # an audio file a row points to
    assert main(["manifest", "import", "kaldi", str(k1), "-o", str(tmp_path / "u1.wav")]) == 2
    assert "is one of the audio files this command reads" in _one_line(capsys)
    assert {p.name: p.read_text() for p in k1.iterdir()} == before
    # a new file inside the data directory is fine, also when run again
    for _ in range(2):
        assert main(["manifest", "import", "kaldi", str(k1), "-o", str(k1 / "m.jsonl")]) == 0
    capsys.readouterr()

    csv = tmp_path / "t.csv"
    csv.write_text("path,speaker\n" + "".join(f"{tmp_path / f'u{i}.wav'},s{i}\n"
                                              for i in range(3)))
    assert main(["manifest", "import", "csv", str(csv), "-o", str(csv)]) == 2
    assert "is the source this command reads" in _one_line(capsys)


def test_export_preview_and_embed_cannot_overwrite_their_manifest(corpus, tmp_path, capsys):
    before = corpus.read_text()
    assert main(["manifest", "export", "csv", str(corpus), "-o", str(corpus)]) == 2
    assert "is the manifest this command reads" in _one_line(capsys)
    kaldi_dir = tmp_path / "kd"
    kaldi_dir.mkdir()
    (kaldi_dir / "text").symlink_to(corpus)  # a manifest that a Kaldi export would replace
    assert main(["manifest", "export", "kaldi", str(kaldi_dir / "text"), "-o",
                 str(kaldi_dir)]) == 2
    assert "is the manifest this command reads" in _one_line(capsys)
    assert main(["preview", str(corpus), "-o", str(corpus)]) == 2
    assert "is the manifest this command reads" in _one_line(capsys)
    assert corpus.read_text() == before


def test_same_file_sees_through_links(tmp_path):
    a = tmp_path / "a.txt"
    a.write_text("x")
    (tmp_path / "hard.txt").hardlink_to(a)
    (tmp_path / "soft.txt").symlink_to(a)
    assert same_file(a, tmp_path / "hard.txt") and same_file(a, tmp_path / "soft.txt")
    assert same_file(a, tmp_path / "d" / ".." / "a.txt")
    assert not same_file(a, tmp_path / "b.txt")
    with pytest.raises(ConfigError, match="same file"):
        check_not_input(tmp_path / "hard.txt", [("manifest", a)], "--fix")


def test_export_does_not_replace_a_config_json_of_someone_else(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    (run / "config.yaml").write_text("method: dino\nout_dir: x\nrun: {}\n")
    dest = tmp_path / "project"
    dest.mkdir()
    (dest / "config.json").write_text('{"name": "my web app"}')
    assert main(["export", str(run), "-o", str(dest)]) == 2
    assert "not a paravox bundle's" in _one_line(capsys)
    assert (dest / "config.json").read_text() == '{"name": "my web app"}'
    assert sorted(p.name for p in dest.iterdir()) == ["config.json"]
