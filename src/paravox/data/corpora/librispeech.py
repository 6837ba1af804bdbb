"""LibriSpeech as distributed (OpenSLR 12): ``LibriSpeech/SUBSET/SPEAKER/CHAPTER/
SPEAKER-CHAPTER-NNNN.flac`` with ``SPEAKER-CHAPTER.trans.txt`` beside the audio and
``SPEAKERS.TXT`` (``ID | SEX | SUBSET | MINUTES | NAME``) at the top.

One manifest per subset found (``train-clean-100.jsonl``, ``dev-clean.jsonl``, ...), rows
with speaker, text and the labels gender, chapter and subset; with all three training
subsets present, also ``train-960.jsonl`` (the 960 hours the self-supervised recipes use).
"""

from __future__ import annotations

import re
from pathlib import Path

from paravox.data.corpora.corpus_kit import Prepared, missing, probe_audio, read_lines, walk_corpus
from paravox.data.manifest import ManifestRow

URL = "https://www.openslr.org/12"
SUBSETS = ("train-clean-100", "train-clean-360", "train-other-500", "dev-clean", "dev-other",
           "test-clean", "test-other")
TRAIN_960 = SUBSETS[:3]
UTTERANCE = re.compile(r"^(\d+)-(\d+)-(\d+)$")


def read_speakers(path: Path) -> dict[str, str]:
    """Speaker id -> gender (``f``/``m``) from SPEAKERS.TXT (``;`` starts a comment; a name
    may itself hold ``|``, so only the first four separators split)."""
    out = {}
    for _, line in read_lines(path):
        if line.startswith(";"):
            continue
        cells = [c.strip() for c in line.split("|", 4)]
        if len(cells) >= 2 and cells[0].isdigit():
            out[cells[0]] = cells[1].lower()
    return out


def read_transcripts(paths: list[Path]) -> dict[str, str]:
    """Utterance id -> text from every ``*.trans.txt`` file (``ID TEXT`` per line)."""
    out = {}
    for path in paths:
        for _, line in read_lines(path):
            uid, _, text = line.partition(" ")
            out[uid] = text.strip()
    return out


def prepare_librispeech(src: Path, progress: bool = True, workers: int = 4,
                        check_audio: bool = True) -> Prepared:
    """See the module docstring."""
    files = walk_corpus(src, names=["SPEAKERS.TXT"], name_match=lambda n: n.endswith(
        ".trans.txt"), progress=progress, desc="librispeech: scanning")
    speakers_path = files.first("SPEAKERS.TXT")
    if speakers_path is None:
        raise missing(src, "SPEAKERS.TXT (speaker genders; at the top of every LibriSpeech "
                      "archive)", URL)
    if not files.audio:
        raise missing(src, "LibriSpeech audio (SUBSET/SPEAKER/CHAPTER/*.flac)", URL)
    genders = read_speakers(speakers_path)
    texts = read_transcripts([p for name, ps in files.named.items()
                              if name.endswith(".trans.txt") for p in ps])
    out = Prepared()
    by_subset: dict[str, list[ManifestRow]] = {}
    no_text = []
    for path in files.audio:
        m = UTTERANCE.match(path.stem)
        subset = path.parents[2].name if len(path.parents) > 2 else ""
        if m is None or subset not in SUBSETS:
            out.problems.append(f"{path}: not SUBSET/SPEAKER/CHAPTER/SPEAKER-CHAPTER-NNNN; "
                                f"left out")
            continue
        spk, chapter = m.group(1), m.group(2)
        if spk not in genders:
            out.problems.append(f"{path}: speaker {spk} is not in {speakers_path}; left out")
            continue
        if path.stem not in texts:
            no_text.append(path.stem)
        labels = {"gender": genders[spk], "chapter": chapter, "subset": subset}
        by_subset.setdefault(subset, []).append(ManifestRow(
            id=path.stem, path=str(path.resolve()), speaker=spk, labels=labels,
            text=texts.get(path.stem)))
    if no_text:
        out.problems.append(f"{src}: {len(no_text)} utterance(s) have no line in their "
                            f"*.trans.txt (first: {no_text[0]}); kept without text")
    for subset in SUBSETS:
        rows = by_subset.get(subset)
        if not rows:
            continue
        if check_audio:
            rows = probe_audio(rows, out.problems, progress, workers,
                               f"librispeech {subset}: reading headers")
        out.manifests[f"{subset}.jsonl"] = rows
    if all(f"{s}.jsonl" in out.manifests for s in TRAIN_960):
        out.manifests["train-960.jsonl"] = [r for s in TRAIN_960
                                            for r in out.manifests[f"{s}.jsonl"]]
    else:
        absent = [s for s in TRAIN_960 if f"{s}.jsonl" not in out.manifests]
        out.notes.append(f"no train-960.jsonl: {', '.join(absent)} not found in {src} "
                         f"(from {URL})")
    return out
