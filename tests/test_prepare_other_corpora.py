"""``paravox prepare librispeech|musan|rirs_noises`` on fake corpora with the real layouts
and list formats: subsets, labels, and the parts each corpus's metadata tells apart."""

import pytest

from corpus_fixtures import librispeech, musan, rirs_noises
from paravox.data.corpora import CorpusError, prepare_corpus
from paravox.data.manifest import Manifest


def test_librispeech_subsets_text_and_gender(tmp_path):
    src = librispeech(tmp_path / "libri")
    out = tmp_path / "out"
    report = prepare_corpus("librispeech", src, out, progress=False)
    train = Manifest.load(out / "train-clean-100.jsonl")
    assert [r.id for r in train] == ["19-198-0000", "19-198-0001", "60-121082-0000",
                                     "60-121082-0001"]
    row = train["60-121082-0001"]
    assert (row.speaker, row.text) == ("60", "HELLO WORLD NUMBER 1")
    assert row.labels == {"gender": "m", "chapter": "121082", "subset": "train-clean-100"}
    assert Manifest.load(out / "dev-clean.jsonl")["84-121123-0000"].labels["gender"] == "f"
    assert not (out / "train-960.jsonl").exists()
    assert any("no train-960.jsonl: train-clean-360, train-other-500" in n
               for n in report["notes"])


def test_librispeech_without_speakers_txt(tmp_path):
    src = librispeech(tmp_path / "libri")
    (src / "LibriSpeech/SPEAKERS.TXT").unlink()
    with pytest.raises(CorpusError, match="SPEAKERS.TXT .*https://www.openslr.org/12"):
        prepare_corpus("librispeech", src, tmp_path / "out", progress=False)


def test_musan_parts_and_music_annotations(tmp_path):
    src = musan(tmp_path / "m")
    out = tmp_path / "out"
    prepare_corpus("musan", src, out, progress=False)
    music = Manifest.load(out / "music.jsonl")
    assert music["music-fma-0000"].labels == {"category": "music", "subset": "fma",
                                              "genres": ["rock", "pop"], "vocals": True}
    assert music["music-fma-0001"].labels["vocals"] is False
    noise = Manifest.load(out / "noise.jsonl")
    assert {r.labels["subset"] for r in noise} == {"free-sound", "sound-bible"}
    assert len(Manifest.load(out / "speech.jsonl")) == 1
    (src / "musan/music/fma/ANNOTATIONS").unlink()
    with pytest.raises(CorpusError, match="music/\\*/ANNOTATIONS"):
        prepare_corpus("musan", src, out, progress=False)


def test_rirs_noises_lists_tell_rirs_from_noises(tmp_path):
    src = rirs_noises(tmp_path / "r")
    out = tmp_path / "out"
    report = prepare_corpus("rirs_noises", src, out, progress=False)
    assert report["problems"] == []
    sim = Manifest.load(out / "simulated_rirs.jsonl")
    assert [r.id for r in sim] == ["mediumroom-Room001-00001", "mediumroom-Room001-00002",
                                   "smallroom-Room001-00001", "smallroom-Room001-00002"]
    assert sim["smallroom-Room001-00002"].labels == {"kind": "rir", "room_type": "smallroom",
                                                     "room": "smallroom-Room001"}
    real = Manifest.load(out / "real_rirs.jsonl")
    # an AIR response has no "rir" in its name: only the list says what it is
    assert {r.id for r in real} == {"air_type1_air_binaural_aula_carolina_1_1_3_0_1",
                                    "RVB2014_type1_rir_largeroom1_near_angla"}
    (iso,) = Manifest.load(out / "isotropic_noises.jsonl").rows
    assert iso.labels == {"kind": "noise", "room": "RVB2014_type1_largeroom1",
                          "bg_fg": "background"}
    (point,) = Manifest.load(out / "pointsource_noises.jsonl").rows
    assert point.labels == {"kind": "noise", "bg_fg": "foreground"}
    (src / "RIRS_NOISES/real_rirs_isotropic_noises/rir_list").unlink()
    with pytest.raises(CorpusError, match="real_rirs_isotropic_noises/rir_list"):
        prepare_corpus("rirs_noises", src, out, progress=False)
