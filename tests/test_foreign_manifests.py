"""Manifests users already have: unknown fields kept, other toolkits' formats named and
imported (NeMo, Lhotse, SpeechBrain, Hugging Face audio folders, CSVs with other columns)."""

import gzip
import json
import logging

import numpy as np
import pytest

from paravox.cli.main import main
from paravox.data.importers import (
    import_csv,
    import_hf_audiofolder,
    import_lhotse,
    import_nemo,
    import_speechbrain,
    parse_delimiter,
)
from paravox.data.manifest import Manifest, iter_manifest
from paravox.errors import ManifestError


def jsonl(path, records, gz=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in records)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def wavs(write_wav, tmp_path):
    """Two mono files (2 s, 1 s) and the second channel of a two-file stereo recording."""
    return {"a": write_wav("audio/a.wav", np.zeros(32000, np.float32)),
            "b": write_wav("audio/b.wav", np.zeros(16000, np.float32)),
            "ch1": write_wav("audio/a_ch1.wav", np.zeros(32000, np.float32))}


# --- unknown fields -------------------------------------------------------------------------

def test_unknown_fields_kept_round_trip_and_warn_once(tmp_path, caplog):
    records = [{"id": f"u{i}", "path": "x.wav", "source": "cv", "lang": "fi",
                "meta": {"snr": i, "tags": [1, None]}} for i in range(5)]
    records[2]["score"] = None
    path = jsonl(tmp_path / "m.jsonl", records)
    with caplog.at_level(logging.WARNING, logger="paravox.data.manifest"):
        m = Manifest.load(path)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    msg = warnings[0].getMessage()
    assert str(path) in msg and "\n" not in msg
    for name in ("lang", "meta", "score", "source"):
        assert name in msg
    assert "'lang' is paravox's 'language'" in msg
    assert m["u0"].extra == {"source": "cv", "lang": "fi", "meta": {"snr": 0, "tags": [1, None]}}
    assert m["u2"].extra["score"] is None
    for row, rec in zip(m, records):
        assert json.loads(row.to_json()) == rec  # exact, nulls and nesting included
    m.save(tmp_path / "copy" / "m.jsonl")
    back = Manifest.load(tmp_path / "copy" / "m.jsonl")
    assert [r.extra for r in back] == [r.extra for r in m]


def test_no_warning_without_unknown_fields(tmp_path, caplog):
    path = jsonl(tmp_path / "m.jsonl", [{"id": "a", "path": "x.wav", "speaker": 7}])
    with caplog.at_level(logging.WARNING):
        [row] = iter_manifest(path)
    assert row.speaker == "7" and row.extra == {}
    assert not caplog.records


def test_known_field_of_wrong_type_still_names_the_line(tmp_path):
    path = jsonl(tmp_path / "m.jsonl", [{"id": "a", "path": "x.wav", "source": "cv"},
                                        {"id": "b", "path": "y.wav", "language": ["fi"]}])
    with pytest.raises(ManifestError, match=rf"{path}:2: 'language' must be a string"):
        Manifest.load(path)


# --- foreign manifests passed to Manifest.load ----------------------------------------------

@pytest.mark.parametrize("name, records, gz, what, command", [
    ("train_manifest.json", [{"audio_filepath": "a.wav", "duration": 1.0, "text": "hi"}], False,
     "NeMo", "paravox manifest import nemo {path} -o out.jsonl"),
    ("cuts.jsonl.gz", [{"id": "c", "start": 0, "duration": 1, "channel": 0, "type": "MonoCut",
                        "recording": {"id": "r"}, "supervisions": []}], True,
     "Lhotse cuts", "paravox manifest import lhotse {path} -o out.jsonl"),
    ("recs.jsonl", [{"id": "r", "sources": [], "sampling_rate": 16000, "num_samples": 1,
                     "duration": 1}], False, "Lhotse recordings",
     "paravox manifest import lhotse {path}"),
    ("sups.jsonl", [{"id": "s", "recording_id": "r", "start": 0, "duration": 1}], False,
     "Lhotse supervisions", "--supervisions {path}"),
    ("metadata.jsonl", [{"file_name": "a.wav", "label": "x"}], False, "Hugging Face",
     "paravox manifest import hf-audiofolder {folder} -o out.jsonl"),
])
def test_foreign_jsonl_names_format_and_command(tmp_path, name, records, gz, what, command):
    path = jsonl(tmp_path / name, records, gz=gz)
    with pytest.raises(ManifestError) as err:
        Manifest.load(path)
    msg = str(err.value)
    assert what in msg and f"{path}:1" in msg
    assert command.format(path=path, folder=tmp_path) in msg


def test_foreign_text_files_and_folders_name_the_command(tmp_path):
    sb = tmp_path / "train.csv"
    sb.write_text("ID,duration,wav,spk_id\nu1,1.0,$data_root/a.wav,s1\n")
    with pytest.raises(ManifestError, match="SpeechBrain CSV") as err:
        Manifest.load(sb)
    assert f"paravox manifest import speechbrain {sb}" in str(err.value)
    other = tmp_path / "list.tsv"
    other.write_text("utt\tfile\nu1\ta.wav\n")
    with pytest.raises(ManifestError, match="paravox manifest import csv"):
        Manifest.load(other)
    kaldi = tmp_path / "kaldi"
    kaldi.mkdir()
    (kaldi / "wav.scp").write_text("r /a.wav\n")
    with pytest.raises(ManifestError, match=f"paravox manifest import kaldi {kaldi} -o"):
        Manifest.load(kaldi)


# --- NeMo -----------------------------------------------------------------------------------

def test_import_nemo(tmp_path, wavs):
    path = jsonl(tmp_path / "audio" / "manifest.json", [
        {"audio_filepath": "a.wav", "duration": 1.0, "offset": 0.0, "text": "hello",
         "speaker": 12, "lang": "en", "pred_text": "hallo"},
        {"audio_filepath": "a.wav", "duration": 1.0, "offset": 1.0, "text": "there",
         "speaker": 12, "lang": "en"},
        {"audio_filepath": str(wavs["b"]), "duration": 1.0, "text": "moi", "lang": "fi"},
    ])
    rows = import_nemo(path)
    assert [r.id for r in rows] == ["a_0-1000", "a_1000-2000", "b"]
    assert rows[0].path == str(wavs["a"].resolve())  # relative to the manifest's folder
    assert (rows[1].offset, rows[1].duration, rows[1].text) == (1.0, 1.0, "there")
    assert rows[0].speaker == "12" and rows[0].language == "en"
    assert rows[0].labels == {"pred_text": "hallo"} and rows[2].speaker is None
    root = tmp_path / "elsewhere"
    assert import_nemo(path, audio_root=root)[0].path == str((root / "a.wav").resolve())


def test_import_nemo_speaker_label_via_cli(tmp_path, wavs):
    path = jsonl(tmp_path / "sv.json", [
        {"audio_filepath": str(wavs["a"]), "offset": 0, "duration": 2.0, "label": "spkA"},
        {"audio_filepath": str(wavs["b"]), "offset": 0, "duration": 1.0, "label": "spkB"}])
    out = tmp_path / "m.jsonl"
    assert main(["manifest", "import", "nemo", str(path), "-o", str(out),
                 "--map", "label=speaker"]) == 0
    m = Manifest.load(out)
    assert [(r.id, r.speaker, r.labels) for r in m] == [("a", "spkA", {}), ("b", "spkB", {})]


def test_import_nemo_errors(tmp_path):
    path = jsonl(tmp_path / "m.json", [{"audio_filepath": "a.wav"}, {"text": "no file"}])
    with pytest.raises(ManifestError, match=r"m.json:2: no 'audio_filepath'"):
        import_nemo(path)
    path = jsonl(tmp_path / "m.json", [{"audio_filepath": "a.wav", "duration": "long"}])
    with pytest.raises(ManifestError, match=r"m.json:1: offset/duration must be numbers"):
        import_nemo(path)


# --- Lhotse ---------------------------------------------------------------------------------

def recording(rid, *files, duration=2.0):
    return {"id": rid, "sources": [{"type": "file", "channels": [i], "source": str(f)}
                                   for i, f in enumerate(files)],
            "sampling_rate": 16000, "num_samples": int(duration * 16000), "duration": duration,
            "channel_ids": list(range(len(files)))}


def test_import_lhotse_recordings_and_supervisions(tmp_path, wavs, caplog, monkeypatch):
    recs = jsonl(tmp_path / "lh" / "corpus_recordings_train.jsonl.gz", [
        recording("ra", "audio/a.wav", "audio/a_ch1.wav"),  # relative: to the current folder
        recording("rb", wavs["b"], duration=1.0)], gz=True)
    jsonl(tmp_path / "lh" / "corpus_supervisions_train.jsonl.gz", [
        {"id": "s1", "recording_id": "ra", "start": 0.25, "duration": 1.0, "channel": 0,
         "text": "hello", "speaker": "spk1", "language": "English", "gender": "f",
         "custom": {"emotion": "happy"}},
        {"id": "s2", "recording_id": "ra", "start": 0.5, "duration": 1.0, "channel": 1,
         "speaker": "spk2"},
        {"id": "s3", "recording_id": "rb", "start": 0.0, "duration": 1.0, "channel": [0],
         "speaker": "spk3"}], gz=True)
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING, logger="paravox.data.importers"):
        rows = import_lhotse(recs)  # the supervisions file is found by its name
    assert [r.id for r in rows] == ["s1", "s3"]  # s2 is on channel 1 only
    assert "skipped 1 Lhotse segment(s) on channels other than 0" in caplog.text
    s1 = rows[0]
    assert s1.path == str(wavs["a"].resolve())  # channel 0's file
    assert (s1.offset, s1.duration, s1.speaker, s1.language, s1.text) == (
        0.25, 1.0, "spk1", "English", "hello")
    assert s1.labels == {"gender": "f", "emotion": "happy"}
    # either order; explicit pair; supervisions alone find their recordings too
    sups = tmp_path / "lh" / "corpus_supervisions_train.jsonl.gz"
    assert import_lhotse(sups, supervisions=recs) == rows
    assert import_lhotse(sups) == rows


def test_import_lhotse_cuts(tmp_path, wavs):
    rec = recording("ra", wavs["a"])
    cuts = jsonl(tmp_path / "cuts.jsonl.gz", [
        {"id": "c1", "start": 0.5, "duration": 1.5, "channel": 0, "type": "MonoCut",
         "recording": rec, "custom": {"split": "train"},
         "supervisions": [
             {"id": "x2", "recording_id": "ra", "start": 0.8, "duration": 0.5, "channel": 0,
              "text": "world", "speaker": "spk1", "language": "en"},
             {"id": "x1", "recording_id": "ra", "start": 0.0, "duration": 0.7, "channel": 0,
              "text": "hello", "speaker": "spk1", "language": "en"}]},
        {"id": "c2", "start": 0.0, "duration": 2.0, "channel": 0, "type": "MonoCut",
         "recording": rec, "supervisions": []}], gz=True)
    c1, c2 = import_lhotse(cuts)
    assert c1.path == str(wavs["a"].resolve()) and (c1.offset, c1.duration) == (0.5, 1.5)
    assert (c1.speaker, c1.language, c1.text) == ("spk1", "en", "hello world")
    assert c1.labels == {"split": "train"}
    assert c2.speaker is None and c2.duration == 2.0


def test_import_lhotse_refusals(tmp_path, wavs):
    url = recording("r", wavs["a"])
    url["sources"][0] = {"type": "url", "channels": [0], "source": "https://x/a.wav"}
    with pytest.raises(ManifestError, match=r"r.jsonl:1: .*'url' source"):
        import_lhotse(jsonl(tmp_path / "r.jsonl", [url]))
    mixed = {"id": "m", "type": "MixedCut", "tracks": []}
    with pytest.raises(ManifestError, match=r"c.jsonl:1: a Lhotse MixedCut"):
        import_lhotse(jsonl(tmp_path / "c.jsonl", [mixed]))
    with pytest.raises(ManifestError, match="need their recordings file"):
        import_lhotse(jsonl(tmp_path / "s.jsonl", [{"id": "s", "recording_id": "r",
                                                     "start": 0, "duration": 1}]))
    recs = jsonl(tmp_path / "r2.jsonl", [recording("r", wavs["a"])])
    sups = jsonl(tmp_path / "s2.jsonl", [{"id": "s", "recording_id": "zz", "start": 0,
                                          "duration": 1}])
    with pytest.raises(ManifestError, match=r"s2.jsonl:1: recording 'zz' is not in"):
        import_lhotse(recs, supervisions=sups)
    # recordings alone: whole-recording rows
    [row] = import_lhotse(recs)
    assert (row.id, row.path, row.duration) == ("r", str(wavs["a"]), 2.0)


# --- SpeechBrain ----------------------------------------------------------------------------

def test_import_speechbrain_csv(tmp_path, wavs):
    path = tmp_path / "train.csv"
    path.write_text("ID,duration,wav,spk_id,wrd,accent\n"
                    "u1,2.0,$data_root/a.wav,s1,HELLO THERE,fi\n"
                    "u2,1.0,$data_root/b.wav,s2,MOI,\n")
    with pytest.raises(ManifestError, match=r"train.csv:2: .*'\$data_root'.*--data-root"):
        import_speechbrain(path)
    rows = import_speechbrain(path, data_root=tmp_path / "audio")
    assert [r.path for r in rows] == [str(wavs["a"].resolve()), str(wavs["b"].resolve())]
    assert (rows[0].speaker, rows[0].text, rows[0].duration) == ("s1", "HELLO THERE", 2.0)
    assert rows[0].labels == {"accent": "fi"} and rows[1].labels == {}


def test_import_speechbrain_voxceleb_samples_and_json(tmp_path, wavs, write_wav):
    write_wav("audio/c8k.wav", np.zeros(16000, np.float32), sr=8000)
    path = tmp_path / "vox.csv"
    path.write_text("ID,duration,wav,start,stop,spk_id\n"
                    f"a--0,1.0,{wavs['a']},8000,24000,id1\n"
                    f"c--0,1.0,{tmp_path / 'audio/c8k.wav'},4000,12000,id2\n")
    a, c = import_speechbrain(path)
    assert (a.offset, a.duration, a.speaker) == (0.5, 1.0, "id1")
    assert (c.offset, c.duration) == (0.5, 1.0)  # samples at the file's own 8 kHz
    js = tmp_path / "train.json"
    js.write_text(json.dumps({"u1": {"wav": "{x}", "length": 2.0, "spk_id": "s1"}}
                             ).replace("{x}", "$root/a.wav"))
    [row] = import_speechbrain(js, replacements={"root": str(tmp_path / "audio")})
    assert (row.id, row.path, row.duration, row.speaker) == (
        "u1", str(wavs["a"].resolve()), 2.0, "s1")


# --- Hugging Face audio folders -------------------------------------------------------------

def test_import_hf_audiofolder_with_metadata(tmp_path, write_wav, caplog):
    for name in ("ds/train/a.wav", "ds/train/sub/b.wav", "ds/train/stray.wav"):
        write_wav(name, np.zeros(1600, np.float32))
    (tmp_path / "ds/train/metadata.csv").write_text(
        "file_name,speaker_id,emotion,transcription\n"
        "a.wav,s1,happy,hello\nsub/b.wav,s2,sad,\n")
    with caplog.at_level(logging.WARNING, logger="paravox.data.importers"):
        rows = import_hf_audiofolder(tmp_path / "ds")
    assert "1 audio file(s) are in no metadata file" in caplog.text
    assert [r.id for r in rows] == ["train/a", "train/sub/b"]
    assert rows[1].path == str((tmp_path / "ds/train/sub/b.wav").resolve())
    assert (rows[0].speaker, rows[0].text) == ("s1", "hello")
    assert rows[0].labels == {"emotion": "happy", "split": "train"}
    assert rows[1].labels == {"emotion": "sad", "split": "train"} and rows[1].text is None


def test_import_hf_audiofolder_jsonl_and_folder_labels(tmp_path, write_wav):
    write_wav("j/x.wav", np.zeros(1600, np.float32))
    jsonl(tmp_path / "j/metadata.jsonl", [{"file_name": "x.wav", "spk": 3, "age": 41}])
    [row] = import_hf_audiofolder(tmp_path / "j")
    assert (row.id, row.speaker, row.labels) == ("x", "3", {"age": 41})
    for name in ("f/cat/1.wav", "f/cat/2.wav", "f/dog/1.wav"):
        write_wav(name, np.zeros(1600, np.float32))
    rows = import_hf_audiofolder(tmp_path / "f")
    assert [(r.id, r.labels["label"]) for r in rows] == [
        ("cat/1", "cat"), ("cat/2", "cat"), ("dog/1", "dog")]
    jsonl(tmp_path / "j/metadata.jsonl", [{"file_name": "missing.wav"}])
    with pytest.raises(ManifestError, match=r"metadata.jsonl:1: file_name 'missing.wav'"):
        import_hf_audiofolder(tmp_path / "j")


# --- CSV with other columns, delimiters -----------------------------------------------------

def test_csv_map_and_tab_delimiter_via_cli(tmp_path, wavs, capsys):
    src = tmp_path / "audio" / "list.tsv"
    src.write_text("utt\tfile\tspk\tmood\tjunk\nu1\ta.wav\ts1\tcalm\tzz\n")
    out = tmp_path / "m.jsonl"
    assert main(["manifest", "import", "csv", str(src), "-o", str(out), "--delimiter", "\\t",
                 "--map", "utt=id", "--map", "file=path", "--map", "spk=speaker",
                 "--map", "mood=labels.emotion", "--map", "junk=-"]) == 0
    [row] = Manifest.load(out)
    assert (row.id, row.path, row.speaker, row.labels) == (
        "u1", str(wavs["a"].resolve()), "s1", {"emotion": "calm"})


def test_bad_delimiter_and_map_are_one_line_errors(tmp_path, capsys):
    src = tmp_path / "l.csv"
    src.write_text("id,path\nu,a.wav\n")
    for extra in (["--delimiter", "::"], ["--map", "id"], ["--map", "id=speakerz"],
                  ["--map", "nope=id"], ["--data-root", "x"]):
        assert main(["manifest", "import", "csv", str(src), "-o", str(tmp_path / "o.jsonl"),
                     *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("paravox: error:") and "\n" not in err, err
    assert parse_delimiter("tab") == parse_delimiter("\\t") == "\t"
    tsv = tmp_path / "t.tsv"
    tsv.write_text("id\tpath\nu\ta.wav\n")
    with pytest.raises(ManifestError, match="tab-separated: add --delimiter"):
        import_csv(tsv)


def test_import_speechbrain_brace_data_root(tmp_path, wavs):
    path = tmp_path / "audio" / "train.csv"
    path.write_text("ID,duration,wav,spk_id,wrd\n"
                    "u1,2.0,{data_root}/a.wav,s1,{laughter} HI\n")
    [row] = import_speechbrain(path)  # default: the CSV's folder
    assert row.path == str(wavs["a"].resolve()) and row.text == "{laughter} HI"
    other = tmp_path / "train.csv"
    other.write_text(path.read_text())
    [row] = import_speechbrain(other, data_root=tmp_path / "audio")
    assert row.path == str(wavs["a"].resolve())
    other.write_text("ID,duration,wav,spk_id\nu1,2.0,{data_root}/a.wav,s1\n"
                     "u2,1.0,{corpus}/b.wav,s2\n")
    with pytest.raises(ManifestError, match=r"train.csv:3: column 'wav' holds '\{corpus\}'"):
        import_speechbrain(other)


def test_import_hf_audiofolder_refuses_file_name_outside_the_folder(tmp_path, write_wav):
    outside = write_wav("outside.wav", np.zeros(1600, np.float32))
    write_wav("ds/x.wav", np.zeros(1600, np.float32))
    for name in (str(outside), "../outside.wav", "sub/../../outside.wav"):
        (tmp_path / "ds/metadata.csv").write_text(f"file_name,spk\nx.wav,a\n{name},b\n")
        with pytest.raises(ManifestError, match=r"metadata.csv:3: file_name .* relative"):
            import_hf_audiofolder(tmp_path / "ds")


def test_import_lhotse_channel_message_says_what_is_read(tmp_path, write_wav, caplog):
    stereo = write_wav("st.wav", np.zeros((16000, 2), np.float32))
    recs = jsonl(tmp_path / "r.jsonl", [{
        "id": "r", "sources": [{"type": "file", "channels": [0, 1], "source": str(stereo)}],
        "sampling_rate": 16000, "num_samples": 16000, "duration": 1.0, "channel_ids": [0, 1]}])
    sups = jsonl(tmp_path / "s.jsonl", [
        {"id": "s0", "recording_id": "r", "start": 0, "duration": 1, "channel": 0},
        {"id": "s1", "recording_id": "r", "start": 0, "duration": 1, "channel": 1}])
    with caplog.at_level(logging.WARNING, logger="paravox.data.importers"):
        [row] = import_lhotse(recs, supervisions=sups)
    assert row.id == "s0"
    assert "takes channel 0" not in caplog.text
    assert "skipped 1 Lhotse segment(s) on channels other than 0 (a row reads the file " \
           "holding channel 0, as the mean of that file's channels" in caplog.text
