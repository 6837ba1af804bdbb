"""VoxCeleb1 and VoxCeleb2 as distributed: ``wav/idNNNNN/VIDEO/NNNNN.wav`` (VoxCeleb1;
``vox1_dev_wav.zip`` and ``vox1_test_wav.zip``) and ``aac/idNNNNN/VIDEO/NNNNN.m4a``
(VoxCeleb2; ``vox2_dev_aac.zip``, ``vox2_test_aac.zip``), with ``vox1_meta.csv`` /
``vox2_meta.csv`` giving each speaker's gender, nationality (VoxCeleb1) and set (dev/test).

The folders above the speaker folders do not matter (``dev/wav``, ``test/wav`` or one merged
``wav``), nor does the audio format (a ``--to-wav`` copy reads the same). Utterance ids are
``idNNNNN/VIDEO/NNNNN``, the official trial lists' names without the extension, so the
converted trial lists (:mod:`.voxceleb_trials`) use the manifest's ids.
"""

from __future__ import annotations

import re
from pathlib import Path

from paravox.data.corpora.corpus_kit import (
    CorpusFiles,
    Prepared,
    missing,
    probe_audio,
    read_lines,
    walk_corpus,
)
from paravox.data.corpora.voxceleb_trials import (
    IDEN_SPLIT,
    TRIAL_LISTS,
    convert_trial_lists,
    identification_split,
)
from paravox.data.manifest import ManifestRow

VOXCELEB_URL = "https://www.robots.ox.ac.uk/~vgg/data/voxceleb/"
META_URL = VOXCELEB_URL + "meta/"
SPEAKER = re.compile(r"^id\d{5}$")


def read_meta(path: Path) -> dict[str, dict[str, str]]:
    """Speaker id -> its metadata columns, lower-cased and stripped (``gender``,
    ``nationality``, ``set``), from ``vox1_meta.csv`` (tab-separated) or ``vox2_meta.csv``
    (commas with spaces around them): the delimiter is taken from the header line."""
    lines = read_lines(path)
    if not lines:
        raise missing(path.parent, f"content in {path.name}", META_URL + path.name,
                      "the file is empty")
    sep = "\t" if "\t" in lines[0][1] else ","
    header = [c.strip().lower() for c in lines[0][1].split(sep)]
    out: dict[str, dict[str, str]] = {}
    for _, line in lines[1:]:
        cells = [c.strip() for c in line.split(sep)]
        if not cells or not SPEAKER.match(cells[0]):
            continue
        row = dict(zip(header, cells))
        out[cells[0]] = {"gender": row.get("gender", "").lower(),
                         "nationality": row.get("nationality", ""),
                         "set": row.get("set", "").lower()}
    return out


def voxceleb_rows(files: CorpusFiles, meta: dict[str, dict[str, str]], meta_name: str,
                  problems: list[str]) -> dict[str, list[ManifestRow]]:
    """Rows per set (``dev``/``test``, from the meta file) of every ``idNNNNN/VIDEO/NNNNN``
    audio file; files outside that pattern, speakers the meta file does not know, and a
    second copy of an utterance are named in ``problems`` and left out."""
    by_set: dict[str, list[ManifestRow]] = {}
    seen: dict[str, Path] = {}
    unknown: dict[str, int] = {}
    for path in files.audio:
        spk, video = path.parent.parent.name, path.parent.name
        if not SPEAKER.match(spk):
            problems.append(f"{path}: not in an idNNNNN/VIDEO/ folder; left out")
            continue
        uid = f"{spk}/{video}/{path.stem}"
        if uid in seen:
            problems.append(f"{path}: utterance {uid} also at {seen[uid]}; the first is kept")
            continue
        seen[uid] = path
        info = meta.get(spk)
        if info is None:
            unknown[spk] = unknown.get(spk, 0) + 1
            continue
        labels = {k: v for k, v in (("gender", info["gender"]),
                                    ("nationality", info["nationality"]),
                                    ("video", video)) if v}
        by_set.setdefault(info["set"] or "dev", []).append(
            ManifestRow(id=uid, path=str(path.resolve()), speaker=spk, labels=labels))
    for spk, n in sorted(unknown.items()):
        problems.append(f"{files.root}: speaker {spk} ({n} utterance(s)) is not in {meta_name}; "
                        f"left out (use the {meta_name} from {META_URL})")
    return by_set


def prepare_voxceleb1(src: Path, progress: bool = True, workers: int = 4,
                      check_audio: bool = True) -> Prepared:
    """Manifests ``dev.jsonl``, ``test.jsonl`` and ``all.jsonl`` (VoxCeleb1-E and -H draw
    from both sets) with speaker, gender, nationality and video; every official trial list
    found in ``src`` converted under ``trials/`` (:data:`TRIAL_LISTS`); with
    ``iden_split.txt``, the identification split's ``iden_{train,val,test}.jsonl``."""
    files = walk_corpus(src, names=["vox1_meta.csv", IDEN_SPLIT, *TRIAL_LISTS],
                        progress=progress,
                        desc="voxceleb1: scanning")
    meta_path = files.first("vox1_meta.csv")
    if meta_path is None:
        raise missing(src, "vox1_meta.csv (speaker genders, nationalities and sets)",
                      META_URL + "vox1_meta.csv")
    if not files.audio:
        raise missing(src, "VoxCeleb1 audio (wav/idNNNNN/...)", VOXCELEB_URL,
                      "unpack vox1_dev_wav.zip and vox1_test_wav.zip")
    out = Prepared()
    by_set = voxceleb_rows(files, read_meta(meta_path), "vox1_meta.csv", out.problems)
    rows = [r for part in sorted(by_set) for r in by_set[part]]
    if check_audio:
        rows = probe_audio(rows, out.problems, progress, workers, "voxceleb1: reading headers")
    for part in sorted(by_set):
        ids = {r.id for r in by_set[part]}
        out.manifests[f"{part}.jsonl"] = [r for r in rows if r.id in ids]
    out.manifests["all.jsonl"] = rows
    for part in ("dev", "test"):
        if not out.manifests.get(f"{part}.jsonl"):
            out.notes.append(f"no VoxCeleb1 {part} audio found in {src} (vox1_{part}_wav.zip "
                             f"from {VOXCELEB_URL})")
    convert_trial_lists(files, {r.id for r in rows}, out, META_URL)
    identification_split(files, rows, out, META_URL)
    return out


def prepare_voxceleb2(src: Path, progress: bool = True, workers: int = 4,
                      check_audio: bool = True) -> Prepared:
    """Manifests ``dev.jsonl`` and ``test.jsonl`` with speaker, gender and video. VoxCeleb2
    is AAC (``.m4a``): reading it needs the ``audio`` extra, or a ``--to-wav`` copy."""
    files = walk_corpus(src, names=["vox2_meta.csv"], progress=progress,
                        desc="voxceleb2: scanning")
    meta_path = files.first("vox2_meta.csv")
    if meta_path is None:
        raise missing(src, "vox2_meta.csv (speaker genders and sets)",
                      META_URL + "vox2_meta.csv")
    if not files.audio:
        raise missing(src, "VoxCeleb2 audio (aac/idNNNNN/...)", VOXCELEB_URL,
                      "unpack vox2_dev_aac.zip and vox2_test_aac.zip")
    out = Prepared()
    by_set = voxceleb_rows(files, read_meta(meta_path), "vox2_meta.csv", out.problems)
    for part in sorted(by_set):
        rows = by_set[part]
        if check_audio:
            rows = probe_audio(rows, out.problems, progress, workers,
                               f"voxceleb2 {part}: reading headers")
        out.manifests[f"{part}.jsonl"] = rows
    return out
