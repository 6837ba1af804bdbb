"""Hugging Face ``audiofolder`` datasets in: audio files under a folder, with optional
``metadata.csv`` or ``metadata.jsonl`` files (their ``file_name`` relative to the metadata
file's folder), read as ``datasets`` reads them but without it.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

from paravox.data.importers.foreign_rows import (
    cell_value,
    first_present,
    read_jsonl_objects,
)
from paravox.data.manifest import ManifestRow, row_from_dict
from paravox.errors import ManifestError

log = logging.getLogger(__name__)

# audio files a Hugging Face audio folder may hold (what `datasets` recognises, commonly)
AUDIO_EXTENSIONS = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".aif", ".aiff",
                    ".au", ".sph", ".wma", ".webm"}
# folder names that the Hugging Face loader reads as splits
SPLITS = {"train", "training", "test", "testing", "eval", "evaluation", "validation", "valid",
          "dev"}
# metadata columns read as the speaker / the text
SPEAKER_COLUMNS = ("speaker", "speaker_id", "spk")
TEXT_COLUMNS = ("text", "transcription", "sentence")


def import_hf_audiofolder(folder: str | Path) -> list[ManifestRow]:
    """Manifest rows from a Hugging Face ``audiofolder`` dataset on disk, laid out as
    ``datasets.load_dataset("audiofolder", data_dir=...)`` reads it, without ``datasets``.

    With ``metadata.csv`` or ``metadata.jsonl`` files (anywhere under ``folder``), each of
    their rows is a row: ``file_name`` (relative to the metadata file) is the path, a
    ``speaker``/``speaker_id``/``spk`` column the speaker, ``text``/``transcription``/
    ``sentence`` the text, ``language`` the language, every other column a label; audio files
    that no metadata row names are left out (one warning counts them). Without metadata every
    audio file is a row, and, as in ``datasets``, the folder name is ``labels["label"]`` when
    all files sit one folder deep in two or more folders. A top-level split folder (``train``,
    ``test``, ``validation``...) is recorded as ``labels["split"]``. Ids are an ``id`` column,
    else the file's path under ``folder`` without its extension.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ManifestError(f"{folder}: not a folder; an audio folder is a directory of audio "
                            f"files (with an optional metadata.csv or metadata.jsonl)")
    audio = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS
                   and p.is_file() and not any(part.startswith(".") for part in
                                               p.relative_to(folder).parts))
    metas = sorted(p for p in folder.rglob("metadata.*")
                   if p.name in ("metadata.csv", "metadata.jsonl") and p.is_file())
    dirs = [m.parent for m in metas]
    dup = sorted({str(d) for d in dirs if dirs.count(d) > 1})
    if dup:
        raise ManifestError(f"{dup[0]}: both metadata.csv and metadata.jsonl; keep one")
    if not metas:
        if not audio:
            raise ManifestError(f"{folder}: no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))})"
                                f" and no metadata.csv/metadata.jsonl")
        return _hf_plain(folder, audio)
    rows: list[ManifestRow] = []
    listed: set[Path] = set()
    for meta in metas:
        for where, rec in _hf_metadata(meta):
            rows.append(_hf_row(folder, meta, rec, where, listed))
    unlisted = [p for p in audio if p.resolve() not in listed]
    if unlisted:
        log.warning(f"{folder}: {len(unlisted)} audio file(s) are in no metadata file and are "
                    f"left out, e.g. {unlisted[0]}")
    return rows


def _split_of(rel: Path) -> str | None:
    return rel.parts[0] if len(rel.parts) > 1 and rel.parts[0].lower() in SPLITS else None


def _hf_plain(folder: Path, audio: list[Path]) -> list[ManifestRow]:
    rels = [p.relative_to(folder) for p in audio]
    inner = [r.parts[1:] if _split_of(r) else r.parts for r in rels]
    classes = {parts[-2] for parts in inner if len(parts) > 1}
    add_label = len(classes) > 1 and len({len(parts) for parts in inner}) == 1
    rows = []
    for p, rel, parts in zip(audio, rels, inner):
        labels = {}
        if _split_of(rel):
            labels["split"] = _split_of(rel)
        if add_label:
            labels["label"] = parts[-2]
        rows.append(row_from_dict({"id": rel.with_suffix("").as_posix(),
                                   "path": str(p.resolve()), "labels": labels}, str(p)))
    return rows


def _hf_metadata(meta: Path) -> list[tuple[str, dict[str, Any]]]:
    if meta.suffix == ".jsonl":
        return [(f"{meta}:{n}", rec) for n, rec in read_jsonl_objects(meta, "metadata file")]
    out = []
    with meta.open(newline="", encoding="utf-8-sig") as fh:
        for lineno, rec in enumerate(csv.DictReader(fh), 2):
            if None in rec:
                raise ManifestError(f"{meta}:{lineno}: more fields than header columns")
            out.append((f"{meta}:{lineno}", {k: cell_value(v) for k, v in rec.items()}))
    return out


def _hf_row(folder: Path, meta: Path, rec: dict[str, Any], where: str,
            listed: set[Path]) -> ManifestRow:
    name_cols = [k for k in rec if k == "file_name" or k.endswith("_file_name")]
    if len(name_cols) != 1 or cell_value(rec[name_cols[0]]) is None:
        raise ManifestError(f"{where}: a metadata row needs one 'file_name' naming its audio "
                            f"file (found columns {sorted(rec)})")
    name = Path(str(rec[name_cols[0]]))
    if name.is_absolute() or ".." in name.parts:
        raise ManifestError(f"{where}: file_name '{name}' must be a path relative to "
                            f"{meta.parent} without '..'; move the audio into the folder "
                            f"and name it from there")
    audio = (meta.parent / name).resolve()
    if not audio.is_file():
        raise ManifestError(f"{where}: file_name '{rec[name_cols[0]]}' is not a file under "
                            f"{meta.parent}")
    listed.add(audio)
    try:
        rel = audio.relative_to(folder.resolve())
    except ValueError:
        rel = Path(audio.name)
    d: dict[str, Any] = {"id": rec.get("id") or rel.with_suffix("").as_posix(),
                         "path": str(audio)}
    used = {name_cols[0], "id"}
    for target, keys in (("speaker", SPEAKER_COLUMNS), ("text", TEXT_COLUMNS),
                         ("language", ("language",))):
        key, value = first_present(rec, keys)
        if key is not None:
            d[target] = value
            used.add(key)
    labels = {k: v for k, v in rec.items() if k not in used and cell_value(v) is not None}
    split = _split_of(meta.parent.resolve().relative_to(folder.resolve()) / "x")
    if split and "split" not in labels:
        labels["split"] = split
    if labels:
        d["labels"] = labels
    return row_from_dict(d, where)
