"""SpeechBrain data manifests in: its CSV (``ID, duration, wav, spk_id, ...``) or JSON, with
``$data_root`` filled in. Relative paths resolve, as in SpeechBrain, against the current
folder unless ``audio_root`` says otherwise.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

from paravox.audio.io import audio_info
from paravox.data.importers.foreign_rows import (
    LANGUAGE_KEYS,
    SPEAKER_KEYS,
    cell_value,
    first_present,
    resolve_audio_path,
)
from paravox.data.manifest import ManifestRow, row_from_dict
from paravox.errors import ManifestError, ParavoxError

# a ``$name`` placeholder in a value; the columns that may hold the audio path / the text
SB_PLACEHOLDER = re.compile(r"\$([\w.]+)")
# a ``{name}`` placeholder (``{data_root}``) in an audio path
SB_BRACE = re.compile(r"\{([^{}]*)\}")
SB_AUDIO = ("wav", "file_path", "path", "audio", "flac")
SB_TEXT = ("wrd", "words", "text", "transcript", "trn")


def import_speechbrain(path: str | Path, data_root: str | Path | None = None,
                       audio_root: str | Path | None = None,
                       replacements: dict[str, str] | None = None) -> list[ManifestRow]:
    """Manifest rows from a SpeechBrain data manifest, so recipes' CSVs are usable as they are.

    CSV (``ID, duration, wav, spk_id`` and optional columns) or JSON (``{id: {"wav": ...,
    "length"|"duration": ..., ...}}``). ``$data_root`` (and any ``$name`` in ``replacements``)
    is substituted in every value as SpeechBrain does; a placeholder with no value is an error
    naming the line. ``spk_id`` is the speaker, ``wrd`` (or ``words``/``text``) the text,
    ``language``/``lang`` the language; ``start``/``stop`` columns (VoxCeleb recipes: sample
    indices) become offset/duration, read against the file's sample rate; every other column
    is a label. Relative paths resolve, as in SpeechBrain, against the current folder unless
    ``audio_root`` is given. A ``{data_root}`` in an audio path is ``data_root`` (default: the
    manifest's folder), ``{name}`` a name of ``replacements``; any other ``{...}`` left in an
    audio path is an error naming the line.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"SpeechBrain manifest not found: {path}")
    root = Path(audio_root) if audio_root is not None else Path.cwd()
    subs = {k: str(v) for k, v in (replacements or {}).items()}
    if data_root is not None:
        subs["data_root"] = str(data_root)
    with path.open(encoding="utf-8-sig") as fh:
        head = fh.read(1024).lstrip()
    entries = _sb_json(path) if head.startswith("{") else _sb_csv(path)
    rates: dict[str, int] = {}
    rows = []
    brace_subs = {"data_root": str(path.parent), **subs}
    for where, rec in entries:
        rec = {k: _sb_substitute(v, subs, where, k) for k, v in rec.items()}
        rec = {k: _sb_brace(v, brace_subs, where, k) if k in SB_AUDIO else v
               for k, v in rec.items()}
        rows.append(_sb_row(rec, where, root, rates))
    return rows


def _sb_csv(path: Path) -> list[tuple[str, dict[str, Any]]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh, skipinitialspace=True)
        header = list(reader.fieldnames or [])
        if "ID" not in header or not set(SB_AUDIO) & set(header):
            raise ManifestError(f"{path}: a SpeechBrain CSV needs an 'ID' and a 'wav' column "
                                f"(found {header})")
        out = []
        for lineno, rec in enumerate(reader, 2):
            if None in rec:
                raise ManifestError(f"{path}:{lineno}: more fields than header columns")
            out.append((f"{path}:{lineno}", {k: cell_value(v) for k, v in rec.items()}))
    return out


def _sb_json(path: Path) -> list[tuple[str, dict[str, Any]]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ManifestError(f"{path}: a SpeechBrain JSON manifest is one object of "
                            f"id -> {{'wav': ..., ...}}")
    return [(f"{path}: entry '{k}'", {"ID": k, **v}) for k, v in data.items()]


def _sb_substitute(value: Any, subs: dict[str, str], where: str, column: str) -> Any:
    if not isinstance(value, str) or "$" not in value:
        return value

    def sub(m):
        if m.group(1) not in subs:
            flag = "--data-root DIR" if m.group(1) == "data_root" else "a value for it"
            raise ManifestError(f"{where}: column '{column}' holds '${m.group(1)}' and no "
                                f"value was given for it; pass {flag}")
        return subs[m.group(1)]

    return SB_PLACEHOLDER.sub(sub, value)


def _sb_brace(value: Any, subs: dict[str, str], where: str, column: str) -> Any:
    if not isinstance(value, str) or "{" not in value:
        return value

    def sub(m):
        if m.group(1) not in subs:
            raise ManifestError(f"{where}: column '{column}' holds '{m.group(0)}', which is not "
                                f"a known placeholder ({{data_root}} or a replacement); write "
                                f"the path out or give a value for it")
        return subs[m.group(1)]

    return SB_BRACE.sub(sub, value)


def _sb_row(rec: dict[str, Any], where: str, root: Path, rates: dict[str, int]) -> ManifestRow:
    audio_key, audio = first_present(rec, SB_AUDIO)
    if audio_key is None:
        raise ManifestError(f"{where}: no audio path ('wav' column is empty)")
    d: dict[str, Any] = {"id": rec.get("ID"), "path": resolve_audio_path(str(audio), root)}
    used = {"ID", audio_key, "duration", "length", "start", "stop"}
    dur = cell_value(rec.get("duration", rec.get("length")))
    if rec.get("start") is not None or rec.get("stop") is not None:
        try:
            start = int(float(rec.get("start") or 0))
            stop = None if rec.get("stop") is None else int(float(rec["stop"]))
        except (TypeError, ValueError, OverflowError):  # NaN, Inf: not an index either
            raise ManifestError(f"{where}: start/stop must be sample indices (whole numbers)"
                                ) from None
        if d["path"] not in rates:
            try:
                rates[d["path"]] = audio_info(d["path"]).sample_rate
            except ParavoxError as exc:
                raise ManifestError(f"{where}: start/stop are in samples, so the audio's rate "
                                    f"is needed, but: {exc}") from None
        sr = rates[d["path"]]
        d["offset"] = start / sr
        dur = None if stop is None else (stop - start) / sr
    d["duration"] = dur
    for target, keys in (("speaker", ("spk_id", *SPEAKER_KEYS)), ("text", SB_TEXT),
                         ("language", LANGUAGE_KEYS)):
        key, value = first_present(rec, keys)
        if key is not None:
            d[target] = value
            used.add(key)
    labels = {k: v for k, v in rec.items() if k not in used and cell_value(v) is not None}
    if labels:
        d["labels"] = labels
    return row_from_dict(d, where)
