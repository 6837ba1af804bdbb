import json

import pytest

from paravox.data.manifest import Alignment, Manifest, ManifestRow, write_manifest
from paravox.errors import ManifestError


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_round_trip(tmp_path):
    rows = [ManifestRow("a", "x.wav", speaker="s1", labels={"style": "neutral"},
                        alignment=Alignment(["sil", "a"], [2, 3])),
            ManifestRow("b", "y.wav", offset=1.5, duration=2.0, language="fi", text="hei")]
    write_manifest(rows, tmp_path / "m.jsonl")
    back = Manifest.load(tmp_path / "m.jsonl")
    assert back.rows == rows
    assert back.audio_path(back["a"]) == tmp_path.resolve() / "x.wav"
    assert back["a"].alignment.frame_labels() == ["sil", "sil", "a", "a", "a"]


@pytest.mark.parametrize("line, message", [
    ('{"id": "a"}', "lacks required field"),
    ('{"id": "a", "path": "x.wav", "speaker": ["s"]}', "'speaker' must be a string or number"),
    ('{"id": "a", "path": "x.wav", "text": 5}', "'text' must be a string"),
    ('{"id": "a", "path": ["x.wav"]}', "'path' must be a string"),
    ('{"id": "a", "path": "x.wav", "offset": "soon"}', "'offset' must be a number"),
    ('{"id": "a", "path": "x.wav", "duration": -1}', "duration > 0"),
    ('{"id": "a", "path": "x.wav", "labels": [1]}', "'labels' must be an object"),
    ('{"id": "a", "path": "x.wav", "alignment": {"phones": ["a"]}}', "bad 'alignment'"),
    ('{"id": "a", "path": ', "not valid JSON"),
])
def test_bad_rows_name_file_and_line(tmp_path, line, message):
    path = write_lines(tmp_path / "m.jsonl", [json.dumps({"id": "ok", "path": "ok.wav"}), line])
    with pytest.raises(ManifestError, match=message) as err:
        Manifest.load(path)
    assert f"{path}:2" in str(err.value)


def test_duplicate_ids_are_named(tmp_path):
    row = json.dumps({"id": "dup", "path": "x.wav"})
    with pytest.raises(ManifestError, match="duplicate id 'dup'"):
        Manifest.load(write_lines(tmp_path / "m.jsonl", [row, row]))


def test_missing_manifest(tmp_path):
    with pytest.raises(ManifestError, match="manifest not found"):
        Manifest.load(tmp_path / "none.jsonl")


def test_save_elsewhere_keeps_relative_paths_valid(tmp_path):
    write_manifest([ManifestRow("a", "wav/x.wav")], tmp_path / "corpus" / "m.jsonl")
    m = Manifest.load(tmp_path / "corpus" / "m.jsonl")
    m.save(tmp_path / "other" / "sub" / "m.jsonl")
    moved = Manifest.load(tmp_path / "other" / "sub" / "m.jsonl")
    assert moved["a"].path == "../../corpus/wav/x.wav"
    assert moved.audio_path(moved["a"]).resolve() == (tmp_path / "corpus/wav/x.wav").resolve()
