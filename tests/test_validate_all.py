"""One manifest holding every kind of bad row and bad audio, validated in a single run: every
problem is reported with its line and kind, --json parses, --fix keeps exactly the usable rows."""

from __future__ import annotations

import json

import numpy as np
import soxr

from conftest import tone
from paravox.cli.main import main
from paravox.data.manifest import Manifest, ManifestRow, write_manifest
from paravox.data.validate import _resampled_length, validate_manifest


def _corpus(tmp_path, write_wav):
    """Audio files and manifest lines: (expected kinds, JSON text or raw bytes) per line."""
    good = write_wav("good.wav", tone())
    full = write_wav("full.wav", tone(seconds=2.0))
    data = full.read_bytes()
    (tmp_path / "trunc.wav").write_bytes(data[: len(data) // 2])
    full.unlink()
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF but not really audio")
    nan_wave = tone()
    nan_wave[100] = np.nan
    write_wav("nan.wav", nan_wave, subtype="FLOAT")
    write_wav("empty.wav", np.zeros(0, np.float32))
    write_wav("silent.wav", np.zeros(16000, np.float32))
    write_wav("clipped.wav", np.clip(tone(amp=3.0), -1, 1), subtype="PCM_16")
    write_wav("short.wav", tone(seconds=0.2))
    stereo = np.stack([tone(sr=44100), tone(sr=44100)], axis=1)
    write_wav("stereo44k.wav", stereo, sr=44100)

    def row(**kw):
        return json.dumps(kw)

    ali = {"phones": ["sil"], "counts": [16000 // 160 + 1]}
    lines = [
        ((), row(id="ok", path=str(good), sample_rate=16000, alignment=ali)),
        (("bad_json",), '{"id": "broken", "path": '),
        (("bad_row",), row(id="nopath")),
        (("bad_row",), row(id="badoff", path="good.wav", offset="abc")),
        (None, "   "),  # blank: skipped, not a line of the count
        ((), row(id="seg_ok", path="good.wav", offset=0.25, duration=0.5)),
        (("duplicate",), row(id="ok", path="good.wav")),
        ((), row(id="twice", path="good.wav")),
        (("duplicate",), row(id="twice", path="good.wav")),
        (("bad_json",), b'\xff\xfe{"id": "latin"}'),
        (("missing",), row(id="missing", path="missing.wav")),
        (("corrupt",), row(id="corrupt", path="corrupt.wav")),
        (("truncated",), row(id="trunc", path="trunc.wav")),
        ((), row(id="trunc_head", path="trunc.wav", duration=0.6)),  # intact part: fine
        (("empty",), row(id="empty", path="empty.wav")),
        (("nan",), row(id="nan", path="nan.wav")),
        (("silent",), row(id="silent", path="silent.wav")),
        (("clipped",), row(id="clipped", path="clipped.wav")),
        (("short",), row(id="short", path="short.wav")),
        (("resample", "downmix"), row(id="stereo44k", path="stereo44k.wav")),
        (("segment",), row(id="segment", path="good.wav", offset=0.5, duration=2.0)),
        (("bad_row",), row(id="rate", path="good.wav", sample_rate=8000)),
        (("alignment",), row(id="ali", path="good.wav",
                             alignment={"phones": ["a"], "counts": [7]})),
        (("bad_row",), row(id="labels", path="good.wav", labels=["x"])),
        (("bad_json",), "not json at all"),
    ]
    blob = b"".join((t if isinstance(t, bytes) else t.encode()) + b"\n" for _, t in lines)
    (tmp_path / "m.jsonl").write_bytes(blob)
    expected = {n: kinds for n, (kinds, _) in enumerate(lines, 1) if kinds is not None}
    return tmp_path / "m.jsonl", expected


ERRORS = {"bad_json", "bad_row", "duplicate", "missing", "corrupt", "truncated", "empty", "nan",
          "segment", "alignment"}


def test_one_run_reports_every_problem_with_its_line(tmp_path, write_wav, capsys):
    manifest, expected = _corpus(tmp_path, write_wav)
    report = validate_manifest(manifest)
    assert report.lines == len(expected)
    got: dict[int, list[str]] = {n: [] for n in expected}
    for p in report.problems:
        got[p.line].append(p.kind)
    assert {n: sorted(k) for n, k in got.items()} == {n: sorted(k) for n, k in expected.items()}
    want_counts: dict[str, int] = {}
    for kinds in expected.values():
        for k in kinds:
            want_counts[k] = want_counts.get(k, 0) + 1
    assert dict(report.counts()) == want_counts
    assert report.checked == sum(1 for k in expected.values()
                                 if "bad_json" not in k and "bad_row" not in k) + 1  # rate
    assert not report.ok
    for p in report.problems:
        assert p.severity == ("error" if p.kind in ERRORS else
                              "warning" if p.kind in {"silent", "clipped", "short"} else "note")
    dups = {p.id: p.lines for p in report.problems if p.kind == "duplicate"}
    assert dups == {"ok": (1, 7), "twice": (8, 9)}
    trunc = next(p for p in report.problems if p.kind == "truncated")
    assert trunc.id == "trunc" and trunc.path.endswith("trunc.wav")
    assert "32000 frames" in trunc.detail

    text = report.summary(max_listed=1)
    assert "PROBLEMS" in text and "m.jsonl:2: not valid JSON" in text
    assert "... and 2 more" in text  # the other bad_json lines
    assert "error duplicate: 2" in text and "warning silent: 1" in text

    # CLI: --json parses and lists the same problems; --fix writes exactly the usable rows
    fixed = tmp_path / "clean" / "fixed.jsonl"
    assert main(["manifest", "validate", str(manifest), "-q", "--json", "--fix", str(fixed)]) == 1
    out = capsys.readouterr()
    problems = json.loads(out.out)
    assert [(p["line"], p["kind"]) for p in problems] == [(p.line, p.kind)
                                                         for p in report.problems]
    assert set(problems[0]) >= {"line", "id", "path", "kind", "severity", "detail"}
    usable = [n for n, kinds in expected.items() if not set(kinds) & ERRORS]
    dropped = len(expected) - len(usable)
    assert f"dropped {dropped} line(s)" in out.err
    kept = Manifest.load(fixed)
    assert [r.id for r in kept] == ["ok", "seg_ok", "twice", "trunc_head", "silent", "clipped",
                                    "short", "stereo44k"]
    assert len(kept) == len(usable)
    again = validate_manifest(fixed)
    assert again.ok and again.checked == len(usable)
    assert dict(again.counts()) == {"silent": 1, "clipped": 1, "short": 1, "resample": 1,
                                    "downmix": 1}
    assert main(["manifest", "validate", str(fixed), "-q"]) == 0
    assert "OK: no errors" in capsys.readouterr().out


def test_empty_manifest_is_named(tmp_path, capsys):
    """A warning, not an error: a split can be empty by design (the `tiny` synthetic preset)."""
    write_manifest([], tmp_path / "empty.jsonl")  # what a header-only CSV imports to
    (tmp_path / "blank.jsonl").write_text("\n  \n")
    for name in ("empty.jsonl", "blank.jsonl"):
        report = validate_manifest(tmp_path / name)
        assert report.counts() == {"no_rows": 1} and report.problems[0].severity == "warning"
        assert main(["manifest", "validate", str(tmp_path / name), "-q"]) == 0
        out = capsys.readouterr().out
        assert "no rows" in out and "no problems" not in out
    assert validate_manifest(tmp_path / "absent.jsonl").counts() == {"manifest": 1}


def test_warnings_alone_exit_zero_and_min_seconds(tmp_path, write_wav, capsys):
    rows = [ManifestRow("quiet", str(write_wav("q.wav", tone(amp=1e-4)))),
            ManifestRow("brief", str(write_wav("b.wav", tone(seconds=0.3))))]
    write_manifest(rows, tmp_path / "w.jsonl")
    assert main(["manifest", "validate", str(tmp_path / "w.jsonl"), "-q"]) == 0
    assert "warning short: 1" in capsys.readouterr().out
    report = validate_manifest(tmp_path / "w.jsonl", min_seconds=0.2)
    assert report.counts() == {"silent": 1} and report.ok and not report.clean


def test_resampled_length_matches_soxr():
    for sr in (8000, 22050, 44100, 48000):
        for n in (1, 7, 1001, 44101):
            got = soxr.resample(np.zeros(n, np.float32), sr, 16000, quality="HQ")
            assert len(got) == _resampled_length(n, sr)


def test_the_same_bad_audio_through_validate_embed_and_pretrain(tiny_corpus, tmp_path,
                                                                write_wav, capsys):
    """Good utterances plus every kind of unreadable audio in one manifest: validate names
    each bad one, embed writes exactly the good rows and lists the bad, a tiny pretrain
    finishes naming the skipped items, and with nothing readable it fails in one line."""
    import warnings

    from paravox.inference.bundle import random_bundle

    warnings.filterwarnings("ignore")
    root, _ = tiny_corpus
    good = Manifest.load(root / "pretrain.jsonl").rows[:30]
    full = write_wav("full.wav", tone(seconds=2.0))
    data = full.read_bytes()
    (tmp_path / "trunc.wav").write_bytes(data[: len(data) // 2])
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF but not really audio")
    nan_wave = tone()
    nan_wave[100] = np.nan
    write_wav("nan.wav", nan_wave, subtype="FLOAT")
    write_wav("empty.wav", np.zeros(0, np.float32))
    bad = {"missing": ("missing.wav", {}), "corrupt": ("corrupt.wav", {}),
           "trunc": ("trunc.wav", {}), "empty": ("empty.wav", {}), "nan": ("nan.wav", {}),
           "segment": ("full.wav", {"offset": 1.5, "duration": 2.0})}
    rows = [ManifestRow(id=r.id, path=str(Manifest.load(root / "pretrain.jsonl").audio_path(r)),
                        speaker=r.speaker) for r in good]
    rows += [ManifestRow(id=k, path=str(tmp_path / p), **kw) for k, (p, kw) in bad.items()]
    manifest = tmp_path / "mixed.jsonl"
    write_manifest(rows, manifest)

    report = validate_manifest(manifest)
    assert {p.id for p in report.problems if p.severity == "error"} == set(bad)

    bundle = random_bundle("ecapa", {"channels": 16, "mfa_channels": 48, "attention_channels": 8,
                                     "se_channels": 8, "embedding_dim": 16}, {"n_mels": 80},
                           tmp_path / "bundle")
    out = tmp_path / "emb"
    assert main(["embed", str(bundle), str(manifest), "-o", str(out), "-q",
                 "--max-bad-fraction", "0.3"]) == 0
    capsys.readouterr()
    assert sorted(np.load(out / "embeddings.npz").files) == sorted(r.id for r in good)
    listed = (out / "bad_items.tsv").read_text().splitlines()[1:]
    assert {line.split("\t")[0] for line in listed} == set(bad)

    tiny = ["simclr.encoder_settings.channels=16", "simclr.encoder_settings.mfa_channels=48",
            "simclr.encoder_settings.attention_channels=8",
            "simclr.encoder_settings.se_channels=8", "simclr.projector_hidden=32",
            "simclr.projector_dim=16", "simclr.crops.long_seconds=1.0",
            "simclr.augment.reverb_prob=0.0", "simclr.augment.n_babble=2", "run.epochs=1",
            "run.batch_size=8", "run.num_workers=0", "run.tensorboard=false",
            "run.babble_utterances=36", "eval_manifest=null", "trials=null", "-q"]
    run = tmp_path / "run"
    assert main(["pretrain", "simclr_demo", f"train_manifest={manifest}", f"out_dir={run}",
                 "run.max_bad_fraction=0.3", *tiny]) == 0
    assert "unusable item(s)" in capsys.readouterr().out
    skipped = {line.split("\t")[0] for line in
               (run / "skipped_items.tsv").read_text().splitlines()[1:]}
    assert skipped and skipped <= set(bad)  # items of the batches read (the last may drop)

    only_bad = tmp_path / "bad.jsonl"
    write_manifest(
        [ManifestRow(id=f"{r.id}{i}", path=r.path, offset=r.offset, duration=r.duration)
         for i in range(3) for r in rows[len(good):]], only_bad)
    assert main(["pretrain", "simclr_demo", f"train_manifest={only_bad}",
                 f"out_dir={tmp_path / 'run_bad'}", "run.max_bad_fraction=1.0", *tiny]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no usable training item was read" in err
