"""``paravox prepare cremad|ravdess|iemocap`` on fake corpora with the real file naming and
metadata: labels parsed from names and label files, and speaker-independent folds (disjoint
speakers, every row tested exactly once, both genders in each test fold)."""

import pytest

from corpus_fixtures import audio, cremad, iemocap, ravdess, text
from paravox.data.corpora import CorpusError, prepare_corpus
from paravox.data.manifest import Manifest


def check_folds(out, name, k, all_ids):
    """Folds are speaker-disjoint, and their test sets partition ``all_ids``."""
    tested = []
    for i in range(1, k + 1):
        train = Manifest.load(out / f"folds/{name}{i}_train.jsonl")
        test = Manifest.load(out / f"folds/{name}{i}_test.jsonl")
        assert not {r.speaker for r in train} & {r.speaker for r in test}
        assert {r.id for r in train} | {r.id for r in test} == set(all_ids)
        assert len({r.labels["gender"] for r in test}) == 2
        tested += [r.id for r in test]
    assert sorted(tested) == sorted(all_ids)


def test_cremad_labels_and_speaker_disjoint_folds(tmp_path):
    src = cremad(tmp_path / "CREMA-D")
    audio(src / "AudioWAV/1011_DFA_ANG_XX.wav")  # actor not in VideoDemographics.csv
    audio(src / "AudioWAV/1001_DFA_XYZ_XX.wav")  # not an emotion code
    out = tmp_path / "out"
    report = prepare_corpus("cremad", src, out, progress=False)
    rows = Manifest.load(out / "all.jsonl")
    assert len(rows) == 30
    row = rows["1001_DFA_ANG_XX"]
    assert row.path.endswith(".wav")  # the WAV copy wins over the MP3
    assert row.speaker == "1001"
    assert row.labels == {"emotion": "angry", "intensity": "unspecified", "sentence": "DFA",
                          "gender": "m", "age": "21", "race": "Caucasian",
                          "ethnicity": "Not Hispanic"}
    assert rows["1002_IEO_HAP_HI"].labels["intensity"] == "high"
    problems = "\n".join(report["problems"])
    assert "1011_DFA_ANG_XX.wav: actor 1011 is not in" in problems
    assert "1001_DFA_XYZ_XX.wav: not ACTOR_SENTENCE_EMOTION_LEVEL" in problems
    check_folds(out, "fold", 5, [r.id for r in rows])


def test_cremad_without_demographics_names_it(tmp_path):
    src = cremad(tmp_path / "CREMA-D")
    (src / "VideoDemographics.csv").unlink()
    with pytest.raises(CorpusError, match="VideoDemographics.csv .*not found; get it from "
                       "https://github.com/CheyneyComputerScience/CREMA-D"):
        prepare_corpus("cremad", src, tmp_path / "out", progress=False)


def test_ravdess_names_parsed_and_folds(tmp_path):
    src = ravdess(tmp_path / "ravdess")
    audio(src / "Actor_03/01-01-05-01-02-01-03.wav")  # a video file's modality
    out = tmp_path / "out"
    report = prepare_corpus("ravdess", src, out, progress=False)
    speech = Manifest.load(out / "speech.jsonl")
    assert len(speech) == 30 and len(Manifest.load(out / "song.jsonl")) == 2
    row = speech["03-01-05-02-02-01-04"]
    assert row.speaker == "actor04"
    assert row.labels == {"emotion": "angry", "intensity": "strong", "statement": "dogs",
                          "repetition": 1, "vocal_channel": "speech", "gender": "f"}
    assert speech["03-01-08-01-02-01-03"].labels["gender"] == "m"
    assert any("modality 01" in p for p in report["problems"])
    check_folds(out, "fold", 5, [r.id for r in speech])


def test_iemocap_labels_and_leave_one_session_out(tmp_path):
    src = iemocap(tmp_path / "iemocap")
    extra = src / "IEMOCAP_full_release/Session1/sentences/wav/Ses01F_impro01"
    audio(extra / "Ses01F_impro01_M099.wav")  # no line in the EmoEvaluation file
    out = tmp_path / "out"
    report = prepare_corpus("iemocap", src, out, progress=False)
    rows = Manifest.load(out / "all.jsonl")
    assert len(rows) == 21
    exc = rows["Ses02F_impro01_F001"]
    assert exc.speaker == "Ses02F"
    assert exc.labels == {"session": 2, "gender": "f", "dialog_type": "improvised",
                          "emotion": "excited", "emotion4": "happy", "valence": 2.5,
                          "arousal": 2.5, "dominance": 3.0}
    assert rows["Ses03F_impro01_M003"].labels["emotion"] == "frustrated"
    assert "emotion4" not in rows["Ses03F_impro01_M003"].labels
    assert rows["Ses03F_impro01_M002"].speaker == "Ses03M"
    assert any("Ses01F_impro01_M099.wav: no line" in p for p in report["problems"])
    four = [r.id for r in rows if "emotion4" in r.labels]
    assert len(four) == 15  # neu, exc, ang of each session; fru is not in the four classes
    for s in range(1, 6):
        test = Manifest.load(out / f"folds/session{s}_test.jsonl")
        train = Manifest.load(out / f"folds/session{s}_train.jsonl")
        assert {r.labels["session"] for r in test} == {s}
        assert s not in {r.labels["session"] for r in train}
        assert len(test) == 3 and len(train) == 12


def test_iemocap_without_evaluations_names_them(tmp_path):
    src = iemocap(tmp_path / "iemocap")
    for f in src.rglob("EmoEvaluation/*.txt"):
        f.unlink()
    with pytest.raises(CorpusError, match="EmoEvaluation/\\*.txt .*https://sail.usc.edu/iemocap/"):
        prepare_corpus("iemocap", src, tmp_path / "out", progress=False)


def test_a_malformed_evaluation_line_is_named(tmp_path):
    src = iemocap(tmp_path / "iemocap")
    f = src / "IEMOCAP_full_release/Session5/dialog/EmoEvaluation/Ses05F_impro01.txt"
    text(f, f.read_text().replace("[0.0000 - 2.0000]\tSes05F_impro01_F000\tneu\t[2.5000",
                                  "[0.0000 - 2.0000]\tSes05F_impro01_F000\tneu\t[two"))
    report = prepare_corpus("iemocap", src, tmp_path / "out", progress=False)
    assert any("Ses05F_impro01.txt:3: not '[START - END]" in p for p in report["problems"])


def test_cremad_mp3_only(tmp_path):
    """A CREMA-D tree holding only the MP3 copies (AudioMP3/) reads them."""
    src = tmp_path / "CREMA-D"
    for a in (1, 2):
        for emotion in ("ANG", "NEU"):
            audio(src / "AudioMP3" / f"100{a}_DFA_{emotion}_XX.mp3", a)
    text(src / "VideoDemographics.csv", "ActorID,Age,Sex,Race,Ethnicity\n"
         "1001,30,Male,Asian,Not Hispanic\n1002,40,Female,African American,Not Hispanic\n")
    out = tmp_path / "out"
    prepare_corpus("cremad", src, out, progress=False)
    rows = Manifest.load(out / "all.jsonl")
    assert len(rows) == 4 and all(r.path.endswith(".mp3") for r in rows)
    assert rows["1002_DFA_NEU_XX"].duration == pytest.approx(0.25, abs=1e-3)
    assert rows["1002_DFA_NEU_XX"].labels["race"] == "African American"


def test_fold_manifests_feed_evaluate_classify(tmp_path):
    """A prepared fold is what `evaluate classify` reads: emotion labels, unseen speakers."""
    import json
    import warnings

    from paravox.cli.main import main
    from paravox.inference.bundle import random_bundle

    warnings.filterwarnings("ignore")
    src = cremad(tmp_path / "CREMA-D")
    out = tmp_path / "data"
    prepare_corpus("cremad", src, out, progress=False)
    bundle = random_bundle("xvector", {"channels": 16, "stats_channels": 32,
                                       "embedding_dim": 8}, {"n_mels": 24}, tmp_path / "b")
    assert main(["evaluate", "classify", str(bundle), "--task", "emotion",
                 "--train", str(out / "folds/fold1_train.jsonl"), "--test",
                 str(out / "folds/fold1_test.jsonl"), "-o", str(tmp_path / "c"), "-q"]) == 0
    results = json.loads((tmp_path / "c/classify_results.json").read_text())
    assert [r["task"] for r in results] == ["emotion"]
    assert sorted(results[0]["classes"]) == ["angry", "happy", "sad"]
