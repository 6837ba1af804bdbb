"""NeMo manifests in: JSON lines with ``audio_filepath``, ``duration``, optional ``offset``
and ``text``. Relative paths resolve, as in NeMo, against the manifest's folder unless
``audio_root`` says otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from paravox.data.importers.foreign_rows import (
    LANGUAGE_KEYS,
    SPEAKER_KEYS,
    cell_value,
    first_present,
    parse_map,
    read_jsonl_objects,
    resolve_audio_path,
)
from paravox.data.manifest import ManifestRow, check_times, row_from_dict
from paravox.errors import ManifestError

# NeMo record keys -> paravox fields
NEMO_FIELDS = {"audio_filepath": "path", "offset": "offset", "duration": "duration",
               "text": "text", "id": "id", "utt_id": "id", "utterance_id": "id"}


def _unique_ids(rows: list[dict[str, Any]], lines: list[int]) -> None:
    """Give rows without an ``id`` one from the audio file's name: the stem where it is
    unique, else stem + segment start/end in ms, else that + the manifest line number."""
    def seg(d):
        off = float(d.get("offset") or 0)
        end = "end" if d.get("duration") is None else f"{round(1000 * (off + d['duration'])):d}"
        return f"{Path(d['path']).stem}_{round(1000 * off):d}-{end}"

    todo = [(d, n) for d, n in zip(rows, lines) if d.get("id") is None]
    stems: dict[str, int] = {}
    for d, _ in todo:
        stems[Path(d["path"]).stem] = stems.get(Path(d["path"]).stem, 0) + 1
    segs: dict[str, int] = {}
    for d, _ in todo:
        if stems[Path(d["path"]).stem] > 1:
            segs[seg(d)] = segs.get(seg(d), 0) + 1
    for d, lineno in todo:
        if stems[Path(d["path"]).stem] == 1:
            d["id"] = Path(d["path"]).stem
        elif segs[seg(d)] == 1:
            d["id"] = seg(d)
        else:
            d["id"] = f"{seg(d)}-L{lineno}"


def import_nemo(path: str | Path, audio_root: str | Path | None = None,
                mapping: list[str] | dict[str, str] | None = None) -> list[ManifestRow]:
    """Manifest rows from a NeMo manifest (JSON lines: ``audio_filepath``, ``duration``,
    optional ``offset`` and ``text``), so NeMo corpora need no conversion script.

    ``speaker``/``speaker_id``/``spk`` become the speaker, ``lang``/``language``/``locale`` the
    language, every other field a label (NeMo's speaker-recognition manifests keep the speaker
    in ``label``: pass ``mapping={"label": "speaker"}``, i.e. ``--map label=speaker``). Ids come
    from an ``id`` field, else the audio file's name (plus the segment when a file holds
    several). Relative paths resolve, as in NeMo, against the manifest's folder unless
    ``audio_root`` is given.
    """
    path = Path(path)
    root = Path(audio_root) if audio_root is not None else path.parent
    mapping = parse_map(mapping)
    pending: list[tuple[str, dict[str, Any]]] = []
    for lineno, rec in read_jsonl_objects(path, "NeMo manifest"):
        where = f"{path}:{lineno}"
        if "audio_filepath" not in rec and "audio_filepath" not in mapping and \
                "path" not in mapping.values():
            raise ManifestError(f"{where}: no 'audio_filepath'; is this a NeMo manifest?")
        d: dict[str, Any] = {}
        labels: dict[str, Any] = {}
        rest = {}
        for k, v in rec.items():
            target = mapping.get(k) or NEMO_FIELDS.get(k)
            if target == "-" or cell_value(v) is None:
                continue
            if target is None:
                rest[k] = v
            elif target.startswith("labels."):
                labels[target[7:]] = v
            else:
                d[target] = v
        if "speaker" not in d:
            key, value = first_present(rest, SPEAKER_KEYS)
            if key:
                d["speaker"] = rest.pop(key)
        if "language" not in d:
            key, value = first_present(rest, LANGUAGE_KEYS)
            if key:
                d["language"] = rest.pop(key)
        labels.update(rest)
        if labels:
            d["labels"] = labels
        if not isinstance(d.get("path"), str) or not d["path"]:
            raise ManifestError(f"{where}: 'audio_filepath' must be a file path")
        d["path"] = resolve_audio_path(d["path"], root)
        try:
            if d.get("duration") is not None:
                d["duration"] = float(d["duration"])
            d["offset"] = float(d.get("offset") or 0.0)
        except (TypeError, ValueError, OverflowError):
            raise ManifestError(f"{where}: offset/duration must be numbers of seconds") from None
        # finite and in range before they make ids (NaN or 1e308 would fail to round there)
        d["offset"], d["duration"] = check_times(d["offset"], d.get("duration"), where)
        pending.append((where, d))
    _unique_ids([d for _, d in pending], [int(w.rsplit(":", 1)[1]) for w, _ in pending])
    return [row_from_dict(d, where) for where, d in pending]
