"""CREMA-D as distributed (github.com/CheyneyComputerScience/CREMA-D): ``AudioWAV/
ACTOR_SENTENCE_EMOTION_LEVEL.wav`` (e.g. ``1001_DFA_ANG_XX.wav``; the same names as MP3 in
``AudioMP3/``) and ``VideoDemographics.csv`` (ActorID, Age, Sex, Race, Ethnicity).

Rows carry the speaker (the actor), emotion (angry, disgust, fearful, happy, neutral, sad),
intensity (low, medium, high, unspecified), sentence, gender, age, race and ethnicity.
``all.jsonl`` holds every clip; ``folds/fold{1..5}_{train,test}.jsonl`` are five
speaker-disjoint folds (:func:`~paravox.data.corpora.corpus_kit.speaker_folds`: actors
dealt round-robin within each gender, so each fold has about 18 actors with the corpus's
gender balance). When both the WAV and the MP3 copy of a clip are present, the WAV is used.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from paravox.data.corpora.corpus_kit import (
    Prepared,
    fold_manifests,
    missing,
    probe_audio,
    speaker_folds,
    walk_corpus,
)
from paravox.data.manifest import ManifestRow

URL = "https://github.com/CheyneyComputerScience/CREMA-D"
EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fearful", "HAP": "happy",
            "NEU": "neutral", "SAD": "sad"}
LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
CLIP = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")
N_FOLDS = 5
PREFERRED = {".wav": 0, ".flac": 1, ".mp3": 2}  # which copy of a clip to use


def read_demographics(path: Path) -> dict[str, dict[str, str]]:
    """Actor id -> ``gender`` (f/m), ``age``, ``race``, ``ethnicity`` from the CSV."""
    out = {}
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as fh:
        for rec in csv.DictReader(fh):
            rec = {(k or "").strip().lower(): (v or "").strip() for k, v in rec.items()}
            actor = rec.get("actorid", "")
            if actor:
                sex = rec.get("sex", "").lower()
                out[actor] = {"gender": sex[:1] if sex in ("male", "female") else sex,
                              "age": rec.get("age", ""), "race": rec.get("race", ""),
                              "ethnicity": rec.get("ethnicity", "")}
    return out


def prepare_cremad(src: Path, progress: bool = True, workers: int = 4,
                   check_audio: bool = True) -> Prepared:
    """See the module docstring."""
    files = walk_corpus(src, names=["VideoDemographics.csv"], progress=progress,
                        desc="cremad: scanning")
    demo_path = files.first("VideoDemographics.csv")
    if demo_path is None:
        raise missing(src, "VideoDemographics.csv (actor gender, age, race)",
                      URL + "/blob/master/VideoDemographics.csv")
    if not files.audio:
        raise missing(src, "CREMA-D audio (AudioWAV/*.wav)", URL, "fetch it with git lfs")
    actors = read_demographics(demo_path)
    out = Prepared()
    chosen: dict[str, Path] = {}
    for path in files.audio:
        m = CLIP.match(path.stem)
        if m is None or m.group(3) not in EMOTIONS or m.group(4) not in LEVELS:
            out.problems.append(f"{path}: not ACTOR_SENTENCE_EMOTION_LEVEL (e.g. "
                                f"1001_DFA_ANG_XX.wav); left out")
            continue
        rank = PREFERRED.get(path.suffix.lower(), 9)
        if path.stem not in chosen or rank < PREFERRED.get(chosen[path.stem].suffix.lower(), 9):
            chosen[path.stem] = path
    rows = []
    for stem, path in sorted(chosen.items()):
        actor, sentence, emotion, level = CLIP.match(stem).groups()
        if actor not in actors:
            out.problems.append(f"{path}: actor {actor} is not in {demo_path}; left out")
            continue
        labels = {"emotion": EMOTIONS[emotion], "intensity": LEVELS[level],
                  "sentence": sentence, **{k: v for k, v in actors[actor].items() if v}}
        rows.append(ManifestRow(id=stem, path=str(path.resolve()), speaker=actor,
                                labels=labels))
    if check_audio:
        rows = probe_audio(rows, out.problems, progress, workers, "cremad: reading headers")
    out.manifests["all.jsonl"] = rows
    folds = speaker_folds({r.speaker: r.labels.get("gender") for r in rows}, N_FOLDS)
    out.manifests.update(fold_manifests(rows, lambda r: folds[r.speaker], N_FOLDS))
    return out
