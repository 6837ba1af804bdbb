"""``paravox prepare voxceleb1|voxceleb2`` on fake corpora with the real layouts: manifests
and labels per set, the official trial lists converted with the manifest's ids, and every
bad item named (a missing meta file, an unreadable file, an unknown speaker in a list)."""

import json

import numpy as np
import pytest

from corpus_fixtures import audio, text, voxceleb1, voxceleb2
from paravox.audio.io import load_audio
from paravox.cli.main import main
from paravox.data.corpora import CorpusError, prepare_corpus
from paravox.data.manifest import Manifest
from paravox.errors import ConfigError
from paravox.evaluation.trials import read_trials


def test_voxceleb1_manifests_labels_and_trials(tmp_path):
    src = voxceleb1(tmp_path / "vox1")
    out = tmp_path / "out"
    report = prepare_corpus("voxceleb1", src, out, progress=False)
    dev, test, every = (Manifest.load(out / f"{n}.jsonl") for n in ("dev", "test", "all"))
    assert [r.id for r in dev] == ["id10001/1zcIwhmdeo4/00001", "id10001/1zcIwhmdeo4/00002",
                                   "id10002/6WO410QOeuo/00001"]
    assert {r.speaker for r in test} == {"id10270", "id10271"}
    assert len(every) == 6
    row = test["id10270/x6uYqmx31kE/00001"]
    assert row.labels == {"gender": "f", "nationality": "USA", "video": "x6uYqmx31kE"}
    assert row.duration == pytest.approx(0.25) and row.sample_rate == 16000
    # O (cleaned) and E (cleaned) converted, ids those of the manifest
    o = read_trials(out / "trials/vox1_o_cleaned.txt")
    assert o == [(1, "id10270/x6uYqmx31kE/00001", "id10270/8jEAjG6SegY/00008"),
                 (0, "id10270/x6uYqmx31kE/00001", "id10271/1gtz-CUIygI/00001")]
    e = read_trials(out / "trials/vox1_e_cleaned.txt")
    assert {u for _, a, b in e for u in (a, b)} <= {r.id for r in every}
    # H names a speaker the corpus does not hold: not written, named
    assert not (out / "trials/vox1_h_cleaned.txt").exists()
    (problem,) = report["problems"]
    assert "list_test_hard2.txt" in problem and "id10999" in problem and "not converted" in problem
    # the lists that are not there are named with where to get them
    note = " ".join(report["notes"])
    assert "veri_test.txt" in note
    assert "https://www.robots.ox.ac.uk/~vgg/data/voxceleb/meta/" in note
    # the identification split: 1/2/3 -> train/val/test over both sets
    assert [r.id for r in Manifest.load(out / "iden_val.jsonl")] == [
        "id10001/1zcIwhmdeo4/00002", "id10270/8jEAjG6SegY/00008"]
    assert len(Manifest.load(out / "iden_train.jsonl")) == 2
    assert json.loads((out / "prepare_report.json").read_text())["trials"] == {
        "trials/vox1_o_cleaned.txt": 2, "trials/vox1_e_cleaned.txt": 2}


def test_voxceleb1_missing_meta_is_one_line_with_url(tmp_path):
    src = voxceleb1(tmp_path / "vox1")
    (src / "vox1_meta.csv").unlink()
    with pytest.raises(CorpusError, match=r"vox1_meta.csv .* not found; get it from "
                       r"https://www.robots.ox.ac.uk/~vgg/data/voxceleb/meta/vox1_meta.csv"):
        prepare_corpus("voxceleb1", src, tmp_path / "out", progress=False)


def test_bad_items_are_named_and_the_good_ones_kept(tmp_path):
    src = voxceleb1(tmp_path / "vox1")
    bad = src / "test/wav/id10271/1gtz-CUIygI/00002.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    audio(src / "dev/wav/id10555/abcdefghijk/00001.wav")  # a speaker not in the meta file
    audio(src / "dev/wav/stray.wav")  # outside idNNNNN/VIDEO/
    text(src / "veri_test.txt", "1 id10270/x6uYqmx31kE/00001.wav\n")  # malformed
    report = prepare_corpus("voxceleb1", src, tmp_path / "out", progress=False)
    problems = "\n".join(report["problems"])
    assert "00002.wav: unreadable or corrupt" in problems
    assert "speaker id10555 (1 utterance(s)) is not in vox1_meta.csv" in problems
    assert "stray.wav: not in an idNNNNN/VIDEO/ folder" in problems
    assert "veri_test.txt:1: expected" in problems
    assert report["manifests"]["all.jsonl"]["rows"] == 6  # the six good files


def test_cli_prepare_prints_and_exits_1_on_problems(tmp_path, capsys):
    src = voxceleb1(tmp_path / "vox1")
    out = tmp_path / "data/vox1"
    assert main(["prepare", "voxceleb1", str(src), "-o", str(out), "-q"]) == 1
    captured = capsys.readouterr()
    assert f"wrote {out / 'test.jsonl'}: 3 rows" in captured.out
    assert f"wrote {out / 'trials/vox1_o_cleaned.txt'}: 2 trials" in captured.out
    assert "problem: " in captured.err and "list_test_hard2.txt" in captured.err
    (src / "list_test_hard2.txt").unlink()
    assert main(["prepare", "voxceleb1", str(src), "-o", str(out), "-q"]) == 0


def test_a_rerun_removes_what_it_no_longer_writes(tmp_path):
    src = voxceleb1(tmp_path / "vox1")
    out = tmp_path / "out"
    prepare_corpus("voxceleb1", src, out, progress=False)
    assert (out / "trials/vox1_e_cleaned.txt").is_file()
    # the dev set is gone: the -E list names utterances no longer there
    for f in (src / "dev").rglob("*.wav"):
        f.unlink()
    report = prepare_corpus("voxceleb1", src, out, progress=False)
    assert not (out / "trials/vox1_e_cleaned.txt").exists()
    assert not (out / "dev.jsonl").exists()
    assert any("removed" in n and "vox1_e_cleaned.txt" in n for n in report["notes"])
    assert (out / "trials/vox1_o_cleaned.txt").is_file()
    with pytest.raises(ConfigError, match="holds the output of `paravox prepare voxceleb1`"):
        prepare_corpus("cremad", src, out, progress=False)


def test_output_inside_the_corpus_is_refused(tmp_path, capsys):
    src = voxceleb1(tmp_path / "vox1")
    with pytest.raises(ConfigError, match="is inside the corpus folder"):
        prepare_corpus("voxceleb1", src, src / "manifests", progress=False)
    assert main(["prepare", "voxceleb1", str(src), "-o", str(src), "-q"]) == 2
    assert "is the corpus folder" in capsys.readouterr().err


def test_voxceleb2_m4a_and_to_wav(tmp_path):
    pytest.importorskip("av")
    src = voxceleb2(tmp_path / "vox2")
    out = tmp_path / "out"
    prepare_corpus("voxceleb2", src, out, progress=False)
    dev = Manifest.load(out / "dev.jsonl")
    assert [(r.id, r.speaker, r.labels["gender"]) for r in dev] == [
        ("id00012/21Uxsk56VDQ/00001", "id00012", "m"),
        ("id00012/21Uxsk56VDQ/00002", "id00012", "m"),
        ("id00015/0fijmz4vTVU/00001", "id00015", "f")]
    assert all(r.path.endswith(".m4a") and r.duration == pytest.approx(0.5) for r in dev)
    assert len(Manifest.load(out / "test.jsonl")) == 1
    # --to-wav: the same rows, WAV copies with the decoded samples
    wav_out = tmp_path / "out_wav"
    prepare_corpus("voxceleb2", src, wav_out, progress=False, to_wav=True)
    copies = Manifest.load(wav_out / "dev.jsonl")
    assert [r.id for r in copies] == [r.id for r in dev]
    first = copies.rows[0]
    assert first.path == str((wav_out / "wav/id00012/21Uxsk56VDQ/00001.wav").resolve())
    decoded, copied = load_audio(dev.rows[0].path), load_audio(first.path)
    assert copied.size == decoded.size
    assert np.abs(copied - decoded).max() < 1e-3  # 16-bit rounding only
    # a second run keeps the copies (an interrupted conversion resumes)
    stamp = (wav_out / "wav/id00012/21Uxsk56VDQ/00001.wav").stat().st_mtime_ns
    broken = wav_out / "wav/id00015/0fijmz4vTVU/00001.wav"
    broken.write_bytes(broken.read_bytes()[:2000])  # a copy cut short (e.g. a power loss)
    prepare_corpus("voxceleb2", src, wav_out, progress=False, to_wav=True)
    assert (wav_out / "wav/id00012/21Uxsk56VDQ/00001.wav").stat().st_mtime_ns == stamp
    assert load_audio(broken).size == 8000  # written again, whole


@pytest.mark.slow
def test_end_to_end_prepare_shard_pretrain_export_evaluate(tmp_path, capsys):
    """VoxCeleb2-shaped AAC corpus -> prepare -> shard -> a tiny SimCLR pretrain streamed from
    the shards -> export -> prepare voxceleb1 -> evaluate sv on the converted Vox1-O list."""
    pytest.importorskip("av")
    import warnings

    warnings.filterwarnings("ignore")
    vox2 = tmp_path / "vox2"
    for i in range(8):
        audio(vox2 / f"dev/aac/id0001{i % 4}/vid{i:08d}/00001.m4a", seed=i, seconds=1.5)
    text(vox2 / "vox2_meta.csv", "VoxCeleb2 ID ,VGGFace2 ID ,Gender ,Set \n" + "".join(
        f"id0001{s} ,n00001{s} ,{'mf'[s % 2]} ,dev \n" for s in range(4)))
    data = tmp_path / "data"
    assert main(["prepare", "voxceleb2", str(vox2), "-o", str(data / "vox2"), "-q"]) == 0
    tiny = ["simclr.encoder_settings.channels=16", "simclr.encoder_settings.mfa_channels=48",
            "simclr.encoder_settings.attention_channels=8", "simclr.encoder_settings.se_channels=8",
            "simclr.projector_hidden=32", "simclr.projector_dim=16",
            "simclr.crops.long_seconds=1.0", "simclr.augment.reverb_prob=0.0",
            "simclr.augment.n_babble=2", "run.epochs=1", "run.max_steps=2", "run.batch_size=4",
            "run.num_workers=0", "run.tensorboard=false", "-q"]
    shards = data / "vox2/shards"
    assert main(["shard", str(data / "vox2/dev.jsonl"), "-o", str(shards), "--shard-items",
                 "3", "-q"]) == 0
    index = json.loads((shards / "index.json").read_text())
    assert index["items"] == 8 and len(index["shards"]) == 3  # every m4a row, none skipped
    run = tmp_path / "run"
    assert main(["pretrain", "simclr_demo", f"train_shards={shards / 'index.json'}",
                 "eval_manifest=null", "trials=null", f"out_dir={run}",
                 "run.babble_utterances=4", *tiny]) == 0
    assert json.loads((run / "run_done.json").read_text())["steps"] == 2
    assert main(["export", str(run), "-o", str(tmp_path / "bundle")]) == 0
    vox1 = voxceleb1(tmp_path / "vox1")
    (vox1 / "list_test_hard2.txt").unlink()
    assert main(["prepare", "voxceleb1", str(vox1), "-o", str(data / "vox1"), "-q"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "sv", str(tmp_path / "bundle"), "--manifest",
                 str(data / "vox1/test.jsonl"), "--trials",
                 str(data / "vox1/trials/vox1_o_cleaned.txt"), "-o", str(tmp_path / "sv")]) == 0
    results = json.loads((tmp_path / "sv/sv_results.json").read_text())
    rows = results if isinstance(results, list) else results.get("rows", [results])
    assert [r["n_trials"] for r in rows] == [2]  # both converted trials were scored


def test_voxceleb2_missing_meta_and_missing_source_are_one_line(tmp_path, capsys):
    pytest.importorskip("av")
    src = voxceleb2(tmp_path / "vox2")
    (src / "vox2_meta.csv").unlink()
    assert main(["prepare", "voxceleb2", str(src), "-o", str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "vox2_meta.csv" in err and "https://www.robots.ox.ac.uk/~vgg/data/voxceleb/meta/" in err
    assert main(["prepare", "voxceleb2", str(tmp_path / "nowhere"), "-o",
                 str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "nowhere: not a folder" in err
