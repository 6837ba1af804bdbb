import gzip
import json

import numpy as np

from conftest import tone
from paravox.cli.main import main
from paravox.data.manifest import Alignment, ManifestRow, write_manifest
from paravox.data.validate import validate_manifest


def test_every_bad_case_is_reported_by_name(tmp_path, write_wav):
    good = write_wav("good.wav", tone())
    nan_wave = tone()
    nan_wave[5] = np.inf
    (tmp_path / "corrupt.wav").write_bytes(b"not audio at all")
    rows = [
        ManifestRow("ok", str(good), sample_rate=16000,
                    alignment=Alignment(["sil"], [16000 // 160 + 1])),
        ManifestRow("missing", str(tmp_path / "missing.wav")),
        ManifestRow("empty", str(write_wav("empty.wav", np.zeros(0, np.float32)))),
        ManifestRow("corrupt", str(tmp_path / "corrupt.wav")),
        ManifestRow("silent", str(write_wav("silent.wav", np.zeros(16000, np.float32)))),
        ManifestRow("nan", str(write_wav("nan.wav", nan_wave, subtype="FLOAT"))),
        ManifestRow("segment", str(good), offset=5.0, duration=1.0),
        ManifestRow("rate", str(good), sample_rate=8000),
        ManifestRow("ali", str(good), alignment=Alignment(["a"], [7])),
    ]
    write_manifest(rows, tmp_path / "m.jsonl")
    report = validate_manifest(tmp_path / "m.jsonl")
    assert report.checked == len(rows)
    assert dict(report.counts()) == {"missing": 1, "empty": 1, "corrupt": 1, "silent": 1,
                                     "nan": 1, "segment": 1, "bad_row": 1, "alignment": 1}
    assert report.bad_ids() == {r.id for r in rows} - {"ok"}
    text = report.summary()
    assert "missing.wav" in text and "corrupt.wav" in text and "PROBLEMS" in text


def test_bad_row_is_a_problem_not_a_crash(tmp_path):
    (tmp_path / "m.jsonl").write_text('{"id": "x"}\n')
    report = validate_manifest(tmp_path / "m.jsonl")
    assert report.counts() == {"bad_row": 1} and "m.jsonl:1" in report.summary()


def test_cli_exit_codes(tmp_path, write_wav, capsys):
    write_manifest([ManifestRow("ok", str(write_wav("g.wav", tone())))], tmp_path / "ok.jsonl")
    assert main(["manifest", "validate", str(tmp_path / "ok.jsonl"), "-q"]) == 0
    write_manifest([ManifestRow("gone", str(tmp_path / "gone.wav"))], tmp_path / "bad.jsonl")
    assert main(["manifest", "validate", str(tmp_path / "bad.jsonl"), "-q"]) == 1
    assert "gone.wav" in capsys.readouterr().out



def test_fix_keeps_symlinked_paths_as_written(tmp_path, write_wav):
    write_wav("real/a.wav", tone())
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "a.wav").symlink_to(tmp_path / "real" / "a.wav")
    (tmp_path / "data").symlink_to(tmp_path / "real", target_is_directory=True)
    m = tmp_path / "m.jsonl"
    write_manifest([ManifestRow("u1", "audio/a.wav"), ManifestRow("u2", "data/a.wav"),
                    ManifestRow("bad", "missing.wav")], m)
    assert main(["manifest", "validate", str(m), "-q", "--fix", str(tmp_path / "ok.jsonl")]) == 1
    assert [json.loads(line)["path"] for line in (tmp_path / "ok.jsonl").read_text().splitlines()
            ] == ["audio/a.wav", "data/a.wav"]
    main(["manifest", "validate", str(m), "-q", "--fix", str(tmp_path / "sub" / "ok.jsonl")])
    assert [json.loads(line)["path"] for line in
            (tmp_path / "sub" / "ok.jsonl").read_text().splitlines()] == [
        "../audio/a.wav", "../data/a.wav"]
    assert validate_manifest(tmp_path / "sub" / "ok.jsonl").ok


def test_fix_exits_1_when_errors_remain_it_cannot_fix(tmp_path, write_wav, capsys):
    write_wav("a.wav", tone())
    rows = "".join(ManifestRow(f"u{i}", "a.wav").to_json() + "\n" for i in range(200))
    data = gzip.compress(rows.encode())
    (tmp_path / "m.jsonl.gz").write_bytes(data[: len(data) // 2])  # cut off mid-stream
    fixed = tmp_path / "fixed.jsonl"
    assert main(["manifest", "validate", str(tmp_path / "m.jsonl.gz"), "-q", "--fix",
                 str(fixed)]) == 1
    out = capsys.readouterr().out
    assert f"--fix {fixed}: error(s) remain that --fix cannot fix (cannot read the manifest" \
        in out
    (tmp_path / "empty.jsonl").write_text("{not json\n")
    assert main(["manifest", "validate", str(tmp_path / "empty.jsonl"), "-q", "--fix",
                 str(fixed)]) == 1
    assert "(no usable row is left)" in capsys.readouterr().out
