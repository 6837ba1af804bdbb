"""RAVDESS as distributed (Zenodo record 1188976): ``Audio_Speech_Actors_01-24.zip`` and
``Audio_Song_Actors_01-24.zip`` unpack to ``Actor_NN/MM-VV-EE-II-SS-RR-AA.wav``. All labels
are in the seven two-digit fields of the name: modality (03 = audio only), vocal channel
(01 speech, 02 song), emotion (01 neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful,
07 disgust, 08 surprised), intensity (01 normal, 02 strong), statement (01 "Kids are talking
by the door", 02 "Dogs are sitting by the door"), repetition (01, 02) and actor (01-24; odd
numbers are male, even female).

``speech.jsonl`` and ``song.jsonl`` hold the clips of each vocal channel (a missing zip is a
note); ``folds/fold{1..5}_{train,test}.jsonl`` are five speaker-disjoint folds of the speech
clips (actors dealt round-robin within each gender: 4 or 5 actors per fold, both genders).
"""

from __future__ import annotations

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

URL = "https://zenodo.org/records/1188976"
EMOTIONS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry",
            "06": "fearful", "07": "disgust", "08": "surprised"}
INTENSITY = {"01": "normal", "02": "strong"}
CHANNELS = {"01": "speech", "02": "song"}
STATEMENTS = {"01": "kids", "02": "dogs"}
CLIP = re.compile(r"^(0[1-3])-(0[12])-(0[1-8])-(0[12])-(0[12])-(0[12])-(\d{2})$")
N_FOLDS = 5


def prepare_ravdess(src: Path, progress: bool = True, workers: int = 4,
                    check_audio: bool = True) -> Prepared:
    """See the module docstring."""
    files = walk_corpus(src, progress=progress, desc="ravdess: scanning")
    if not files.audio:
        raise missing(src, "RAVDESS audio (Actor_NN/03-01-...wav)", URL,
                      "unpack Audio_Speech_Actors_01-24.zip")
    out = Prepared()
    by_channel: dict[str, list[ManifestRow]] = {}
    for path in files.audio:
        m = CLIP.match(path.stem)
        if m is None:
            out.problems.append(f"{path}: not a RAVDESS name (7 two-digit fields, e.g. "
                                f"03-01-05-01-02-01-12.wav); left out")
            continue
        modality, channel, emotion, intensity, statement, repetition, actor = m.groups()
        if modality != "03":
            out.problems.append(f"{path}: modality {modality} is a video file's code, not "
                                f"audio-only (03); left out")
            continue
        labels = {"emotion": EMOTIONS[emotion], "intensity": INTENSITY[intensity],
                  "statement": STATEMENTS[statement], "repetition": int(repetition),
                  "vocal_channel": CHANNELS[channel],
                  "gender": "m" if int(actor) % 2 else "f"}
        by_channel.setdefault(CHANNELS[channel], []).append(ManifestRow(
            id=path.stem, path=str(path.resolve()), speaker=f"actor{actor}", labels=labels))
    for channel, zip_name in (("speech", "Audio_Speech_Actors_01-24.zip"),
                              ("song", "Audio_Song_Actors_01-24.zip")):
        rows = by_channel.get(channel, [])
        if not rows:
            out.notes.append(f"no RAVDESS {channel} clips in {src} ({zip_name} from {URL})")
            continue
        if check_audio:
            rows = probe_audio(rows, out.problems, progress, workers,
                               f"ravdess {channel}: reading headers")
        out.manifests[f"{channel}.jsonl"] = rows
    speech = out.manifests.get("speech.jsonl", [])
    if speech:
        folds = speaker_folds({r.speaker: r.labels["gender"] for r in speech}, N_FOLDS)
        out.manifests.update(fold_manifests(speech, lambda r: folds[r.speaker], N_FOLDS))
    return out
