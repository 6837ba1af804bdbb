import numpy as np
import pytest

from paravox.data.importers import export_csv, export_kaldi, import_csv, import_kaldi
from paravox.data.manifest import ManifestRow
from paravox.errors import ManifestError


@pytest.fixture
def rows(write_wav, tmp_path):
    a = write_wav("audio/a.wav", np.zeros(32000, np.float32))
    b = write_wav("audio/b.wav", np.zeros(16000, np.float32))
    return [
        ManifestRow("u1", str(a), offset=0.0, duration=1.0, speaker="s1", language="en",
                    text="hello there"),
        ManifestRow("u2", str(a), offset=1.0, duration=1.0, speaker="s1", language="en",
                    text="bye"),
        ManifestRow("u3", str(b), offset=0.0, duration=1.0, speaker="s2", language="fi",
                    text="hei"),
    ]


def test_kaldi_round_trip_with_segments(rows, tmp_path):
    export_kaldi(rows, tmp_path / "kaldi")
    assert (tmp_path / "kaldi" / "segments").is_file()
    back = import_kaldi(tmp_path / "kaldi")
    assert back == rows


def test_kaldi_round_trip_without_segments(rows, tmp_path):
    whole = [ManifestRow(r.id, r.path, speaker=r.speaker) for r in rows[::2]]
    export_kaldi(whole, tmp_path / "k2")
    assert not (tmp_path / "k2" / "segments").exists()
    assert (tmp_path / "k2" / "spk2utt").read_text().split("\n")[0] == "s1 u1"
    assert import_kaldi(tmp_path / "k2") == whole


def test_kaldi_relative_paths_use_audio_root(tmp_path, write_wav):
    write_wav("root/x.wav", np.zeros(100, np.float32))
    d = tmp_path / "data"
    d.mkdir()
    (d / "wav.scp").write_text("x x.wav\n")
    rows = import_kaldi(d, audio_root=tmp_path / "root")
    assert rows[0].path == str((tmp_path / "root" / "x.wav").resolve())


def test_kaldi_errors_name_the_line(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    (d / "wav.scp").write_text("r1 /a.wav\nr2 sox b.wav -t wav - |\n")
    with pytest.raises(ManifestError, match=r"wav.scp:2: piped entry"):
        import_kaldi(d)
    (d / "wav.scp").write_text("r1 /a.wav\n")
    (d / "segments").write_text("u1 r1 0.0 1.0\nu2 r9 0.0 1.0\n")
    with pytest.raises(ManifestError, match=r"segments:2: recording 'r9' not in wav.scp"):
        import_kaldi(d)
    (d / "segments").write_text("u1 r1 2.0 1.0\n")
    with pytest.raises(ManifestError, match=r"segments:1: end 1.0 <= start 2.0"):
        import_kaldi(d)
    with pytest.raises(ManifestError, match="no wav.scp"):
        import_kaldi(tmp_path)


def test_csv_round_trip_with_extra_labels(rows, tmp_path):
    labelled = [ManifestRow(r.id, r.path, r.offset, r.duration, speaker=r.speaker,
                            language=r.language, text=r.text, labels={"emotion": f"e{i}"})
                for i, r in enumerate(rows)]
    export_csv(labelled, tmp_path / "m.csv")
    assert import_csv(tmp_path / "m.csv") == labelled


def test_kaldi_segment_to_end_of_file_and_channel_column(tmp_path, write_wav):
    write_wav("r.wav", np.zeros(32000, np.float32))
    d = tmp_path / "data"
    d.mkdir()
    (d / "wav.scp").write_text(f"r {tmp_path / 'r.wav'}\n")
    (d / "segments").write_text("u1 r 0.5 -1\n")
    [row] = import_kaldi(d)
    assert row.offset == 0.5 and row.duration is None
    (d / "segments").write_text("u1 r 0.5 1.0 1\n")
    with pytest.raises(ManifestError, match="segments:1: a channel column is not supported"):
        import_kaldi(d)


def test_csv_relative_paths_and_byte_order_mark(tmp_path, write_wav, monkeypatch):
    write_wav("sub/a.wav", np.zeros(100, np.float32))
    (tmp_path / "sub" / "m.csv").write_text("\ufeffid,path,emotion\nx,a.wav,sad\n",
                                           encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    [row] = import_csv("sub/m.csv")
    assert row.path == str((tmp_path / "sub" / "a.wav").resolve())
    assert row.labels == {"emotion": "sad"}


def test_csv_errors(tmp_path):
    (tmp_path / "a.csv").write_text("name,file\nx,y.wav\n")
    with pytest.raises(ManifestError, match="header must name at least 'id' and 'path'"):
        import_csv(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("id,path\nx,/y.wav,extra\n")
    with pytest.raises(ManifestError, match=r"b.csv:2: more fields"):
        import_csv(tmp_path / "b.csv")
    (tmp_path / "c.csv").write_text("id,path,duration\nx,/y.wav,-3\n")
    with pytest.raises(ManifestError, match=r"c.csv:2: .*duration > 0"):
        import_csv(tmp_path / "c.csv")


@pytest.mark.parametrize("bad", ["u 1", "u\t1", "u\n1"])
def test_kaldi_export_refuses_whitespace_in_ids(rows, tmp_path, bad):
    rows[1].id = bad
    with pytest.raises(ManifestError, match=r"row 2 .*id .*whitespace"):
        export_kaldi(rows, tmp_path / "kaldi")
    assert not (tmp_path / "kaldi").exists()
    rows[1].id = "u2"
    rows[2].speaker = "spk two"
    with pytest.raises(ManifestError, match=r"row 3 .*speaker 'spk two'"):
        export_kaldi(rows, tmp_path / "kaldi")


def test_kaldi_import_refuses_duplicate_ids(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    (d / "wav.scp").write_text("r1 /a.wav\nr2 /b.wav\nr1 /c.wav\n")
    with pytest.raises(ManifestError, match=r"wav.scp:3: id 'r1' already on line 1"):
        import_kaldi(d)
    (d / "wav.scp").write_text("r1 /a.wav\nr2 /b.wav\n")
    (d / "utt2spk").write_text("r1 s1\nr2 s2\nr2 s3\n")
    with pytest.raises(ManifestError, match=r"utt2spk:3: id 'r2' already on line 2"):
        import_kaldi(d)
    (d / "utt2spk").write_text("u1 s1\nu2 s2\n")
    (d / "segments").write_text("u1 r1 0.0 1.0\nu2 r1 1.0 2.0\nu1 r2 0.0 1.0\n")
    with pytest.raises(ManifestError, match=r"segments:3: id 'u1' already on line 1"):
        import_kaldi(d)


def test_csv_refuses_duplicate_column_names(tmp_path):
    (tmp_path / "d.csv").write_text("id,path,speaker,speaker\nx,/y.wav,s1,s2\n")
    with pytest.raises(ManifestError, match=r"d.csv: the header names column\(s\) \['speaker'\]"):
        import_csv(tmp_path / "d.csv")
