"""MUSAN as distributed (OpenSLR 17, ``musan.tar.gz``): ``musan/{music,noise,speech}/SUBSET/
NAME.wav``, an ``ANNOTATIONS`` file in each subset folder. The music annotations
(``NAME GENRES VOCALS ARTIST ...``) give each piece's genres and whether it has vocals; the
speech and noise files are labelled by their folders.

``music.jsonl``, ``noise.jsonl`` and ``speech.jsonl`` hold each part, rows labelled with
``category``, ``subset`` and, for music, ``genres`` and ``vocals``. For augmentation, point
``augment.noise_dirs`` at ``musan/noise`` and ``musan/music`` (MUSAN speech is what the
babble recipes mix; paravox makes babble from the training corpus itself).
"""

from __future__ import annotations

from pathlib import Path

from paravox.data.corpora.corpus_kit import Prepared, missing, probe_audio, read_lines, walk_corpus
from paravox.data.manifest import ManifestRow

URL = "https://www.openslr.org/17"
PARTS = ("music", "noise", "speech")


def read_music_annotations(paths: list[Path]) -> dict[str, dict]:
    """Piece name -> ``genres`` (a list) and ``vocals`` (bool) from the music ANNOTATIONS."""
    out = {}
    for path in paths:
        for _, line in read_lines(path):
            fields = line.split()
            if len(fields) >= 3:
                out[fields[0]] = {"genres": [g for g in fields[1].split(",") if g],
                                  "vocals": fields[2].upper() == "Y"}
    return out


def prepare_musan(src: Path, progress: bool = True, workers: int = 4,
                  check_audio: bool = True) -> Prepared:
    """See the module docstring."""
    files = walk_corpus(src, names=["ANNOTATIONS"], progress=progress, desc="musan: scanning")
    by_part: dict[str, list[Path]] = {}
    out = Prepared()
    for path in files.audio:
        part = next((p for p in reversed(path.parts[:-1]) if p in PARTS), None)
        if part is None:
            out.problems.append(f"{path}: not under music/, noise/ or speech/; left out")
            continue
        by_part.setdefault(part, []).append(path)
    if not by_part:
        raise missing(src, "MUSAN audio (music/, noise/, speech/)", URL,
                      "unpack musan.tar.gz")
    annotations = [p for p in files.named.get("ANNOTATIONS", []) if "music" in p.parts]
    if "music" in by_part and not annotations:
        raise missing(src, "music/*/ANNOTATIONS (genres and vocals of the music)", URL)
    music = read_music_annotations(annotations)
    for part in PARTS:
        paths = by_part.get(part)
        if not paths:
            out.notes.append(f"no MUSAN {part}/ audio in {src} (musan.tar.gz from {URL})")
            continue
        rows = []
        for path in paths:
            labels: dict = {"category": part, "subset": path.parent.name}
            if part == "music":
                if path.stem not in music:
                    out.problems.append(f"{path}: not in its folder's ANNOTATIONS; kept "
                                        f"without genres")
                labels.update(music.get(path.stem, {}))
            rows.append(ManifestRow(id=path.stem, path=str(path.resolve()), labels=labels))
        if check_audio:
            rows = probe_audio(rows, out.problems, progress, workers,
                               f"musan {part}: reading headers")
        out.manifests[f"{part}.jsonl"] = rows
    return out
