"""Manifests: one JSON object per line, one utterance per row.

A row says where the audio is (``path``, optional ``offset``/``duration`` in seconds inside a
longer file) and what is known about it (``speaker``, ``language``, free-form ``labels``,
``text``, a frame-level ``alignment``). Relative paths resolve against the manifest's folder,
so a corpus folder can be moved as a whole.

Fields paravox does not know (``source``, ``lang``, ...) are kept in ``row.extra`` and written
back unchanged, so a manifest other tools also read survives a load/save; loading one logs a
single warning naming the fields and the file. A file in another toolkit's format (NeMo,
Lhotse, SpeechBrain, a Hugging Face audio folder, a Kaldi data dir, a CSV) is refused with the
``paravox manifest import`` command that converts it.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from paravox.errors import ManifestError
from paravox.utils.atomic_files import atomic_open

log = logging.getLogger(__name__)

REQUIRED = ("id", "path")
# a row's numbers are checked once, on reading: an utterance lasts at most a day, starts
# within a month of its recording, and has a sample rate a sound file can have
MAX_DURATION_SECONDS = 24 * 3600.0
MAX_OFFSET_SECONDS = 31 * 24 * 3600.0
MAX_SAMPLE_RATE = 384_000
KNOWN = {"id", "path", "offset", "duration", "sample_rate", "speaker", "language", "labels",
         "text", "alignment"}


@dataclass
class Alignment:
    """Frame-level phone labels, run-length encoded.

    Frame ``k`` is centred on ``k * frame_shift`` seconds (the features' convention), and
    ``sum(counts) == n_samples // hop + 1`` frames cover the utterance exactly.
    """

    phones: list[str]
    counts: list[int]
    frame_shift: float = 0.01

    def frame_labels(self) -> list[str]:
        """The run-length encoding expanded: one phone per frame, for frame-level targets."""
        out: list[str] = []
        for p, c in zip(self.phones, self.counts):
            out.extend([p] * c)
        return out

    @property
    def num_frames(self) -> int:
        """Frames covered, checked against the audio length by manifest validation."""
        return int(sum(self.counts))


@dataclass
class ManifestRow:
    """One utterance of a manifest: where its audio is (``path``, ``offset`` and ``duration``
    in seconds inside that file; ``sample_rate`` if the row asserts one) and what is known
    about it (``speaker``, ``language``, free-form ``labels``, ``text``, ``alignment``).
    Fields paravox does not know are kept in ``extra`` and written back by :meth:`to_json`.
    Build rows from untrusted input with :func:`row_from_dict`, which checks them."""

    id: str
    path: str
    offset: float = 0.0
    duration: float | None = None
    sample_rate: int | None = None
    speaker: str | None = None
    language: str | None = None
    labels: dict[str, Any] = field(default_factory=dict)
    text: str | None = None
    alignment: Alignment | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """The row as one JSON line: empty fields and a zero offset are left out, keys sorted,
        so manifests stay small and diff cleanly. ``extra`` fields go back to the top level
        exactly as they were read (other tools' fields survive a load/save); a known field
        wins over an ``extra`` key of the same name."""
        d = asdict(self)
        d.pop("extra")
        d = {k: v for k, v in d.items() if v not in (None, {}) and not (k == "offset" and v == 0)}
        d = {**{k: v for k, v in self.extra.items() if k not in KNOWN}, **d}
        return json.dumps(d, ensure_ascii=False, sort_keys=True)

    def resolve(self, root: Path | None) -> Path:
        """The audio file: ``path`` as is if absolute (or no ``root``), else under ``root``."""
        p = Path(self.path)
        return p if p.is_absolute() or root is None else root / p


# names other tools use for paravox's fields: named in the unknown-field warning
ALIASES = {"lang": "language", "locale": "language", "spk": "speaker", "spk_id": "speaker",
           "speaker_id": "speaker", "audio_filepath": "path", "wav": "path", "file": "path",
           "file_name": "path", "audio": "path", "transcript": "text", "sentence": "text",
           "wrd": "text", "start": "offset", "sr": "sample_rate", "sampling_rate": "sample_rate",
           "utt_id": "id", "ID": "id", "label": "labels"}


def _opt_str(d: dict[str, Any], key: str, where: str, numbers: bool = False) -> str | None:
    """``d[key]`` as a string (None if absent); numbers are accepted where ``numbers``."""
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if numbers and isinstance(v, (int, float)) and not isinstance(v, bool):
        return str(v)
    kind = "a string or number" if numbers else "a string"
    raise ManifestError(f"{where}: '{key}' must be {kind}, got {type(v).__name__} {v!r:.60}")


def row_from_dict(d: dict[str, Any], where: str) -> ManifestRow:
    """Build and check a row; ``where`` ('file:line') goes into every error.

    Unknown top-level fields are kept in ``row.extra`` (callers decide whether to warn); a
    known field of the wrong type is an error, and a row that looks like another toolkit's
    (NeMo's ``audio_filepath``, Lhotse's ``sources``...) says which command imports it."""
    if not isinstance(d, dict):
        raise ManifestError(f"{where}: row is not a JSON object")
    missing = [k for k in REQUIRED if d.get(k) in (None, "")]
    if missing:
        foreign = detect_foreign_row(d)
        if foreign is not None:
            raise ManifestError(f"{where}: {_foreign_message(foreign, where)}")
        raise ManifestError(f"{where}: row lacks required field(s) {missing}; "
                            f"every row needs 'id' and 'path'")
    rid = _opt_str(d, "id", where, numbers=True)
    path = _opt_str(d, "path", where)
    extra = {k: v for k, v in d.items() if k not in KNOWN}
    offset, duration = check_times(d.get("offset"), d.get("duration"), where)
    sr = None if d.get("sample_rate") is None else _number(d, "sample_rate", where, integer=True)
    if sr is not None and not 1 <= sr <= MAX_SAMPLE_RATE:
        raise ManifestError(f"{where}: 'sample_rate' must be a rate in Hz from 1 to "
                            f"{MAX_SAMPLE_RATE} (got {sr}); fix or drop the field")
    labels = d.get("labels") or {}
    if not isinstance(labels, dict):
        raise ManifestError(f"{where}: 'labels' must be an object of name -> value")
    ali = d.get("alignment")
    alignment = None
    if ali is not None:
        try:
            alignment = Alignment(list(ali["phones"]), [int(c) for c in ali["counts"]],
                                  float(ali.get("frame_shift", 0.01)))
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise ManifestError(f"{where}: bad 'alignment' ({exc}); expected "
                                f"{{'phones': [...], 'counts': [...]}}") from None
        if len(alignment.phones) != len(alignment.counts):
            raise ManifestError(f"{where}: alignment phones and counts differ in length")
        if any(c < 0 for c in alignment.counts) or not (
                math.isfinite(alignment.frame_shift) and 0 < alignment.frame_shift <= 1):
            raise ManifestError(f"{where}: bad 'alignment': counts must be >= 0 and "
                                f"frame_shift a finite number of seconds in (0, 1]")
    return ManifestRow(
        id=rid, path=path, offset=offset, duration=duration, sample_rate=sr,
        speaker=_opt_str(d, "speaker", where, numbers=True),
        language=_opt_str(d, "language", where), labels=labels,
        text=_opt_str(d, "text", where), alignment=alignment, extra=extra,
    )


def _number(d: dict[str, Any], key: str, where: str, integer: bool = False) -> float | int:
    """``d[key]`` as a finite number (a numeric string from a CSV too); NaN, Inf, a bool,
    a number too large for a float, or a fraction where a whole number is needed fail naming
    ``where`` and the field."""
    v = d.get(key)
    try:
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise ValueError
        x = float(v)
    except (TypeError, ValueError, OverflowError):
        raise ManifestError(f"{where}: '{key}' must be a number, got {v!r:.60}") from None
    if not math.isfinite(x):
        raise ManifestError(f"{where}: '{key}' must be a finite number, got {v!r:.60}")
    if integer:
        if x != int(x):
            raise ManifestError(f"{where}: '{key}' must be a whole number, got {v!r:.60}")
        return int(x)
    return x


def check_times(offset: Any, duration: Any, where: str) -> tuple[float, float | None]:
    """A row's ``offset`` and ``duration`` (seconds; None/absent: 0 and "to the end") as
    checked floats: finite, ``0 <= offset <= MAX_OFFSET_SECONDS`` and ``0 < duration <=
    MAX_DURATION_SECONDS``, else a ManifestError naming ``where`` and the field. Every reader
    of rows (manifests, importers) checks them here, once, so a NaN or 1e308 never reaches
    the audio reader as a traceback."""
    d = {"offset": offset, "duration": duration}
    off = 0.0 if offset in (None, "") else _number(d, "offset", where)
    if not 0 <= off <= MAX_OFFSET_SECONDS:
        raise ManifestError(f"{where}: offset={off:g}: need 0 <= offset <= "
                            f"{MAX_OFFSET_SECONDS:g} seconds; fix the row")
    if duration is None:
        return off, None
    dur = _number(d, "duration", where)
    if not 0 < dur <= MAX_DURATION_SECONDS:
        raise ManifestError(f"{where}: duration={dur:g}: need duration > 0 and <= "
                            f"{MAX_DURATION_SECONDS:g} seconds (24 h); fix the row")
    return off, dur


# (format name, what gives it away, the import command with FILE for the file)
FOREIGN = {
    "nemo": ("a NeMo manifest (audio_filepath, duration, text)",
             "paravox manifest import nemo FILE -o out.jsonl"),
    "lhotse-cuts": ("a Lhotse cuts manifest",
                    "paravox manifest import lhotse FILE -o out.jsonl"),
    "lhotse-recordings": ("a Lhotse recordings manifest",
                          "paravox manifest import lhotse FILE --supervisions "
                          "SUPERVISIONS.jsonl.gz -o out.jsonl"),
    "lhotse-supervisions": ("a Lhotse supervisions manifest",
                            "paravox manifest import lhotse RECORDINGS.jsonl.gz "
                            "--supervisions FILE -o out.jsonl"),
    "hf-audiofolder": ("the metadata file of a Hugging Face audio folder",
                       "paravox manifest import hf-audiofolder FOLDER -o out.jsonl"),
    "speechbrain": ("a SpeechBrain CSV (ID, duration, wav, spk_id)",
                    "paravox manifest import speechbrain FILE [--data-root DIR] -o out.jsonl"),
    "speechbrain-json": ("a SpeechBrain JSON manifest (one object of id -> {wav, ...})",
                         "paravox manifest import speechbrain FILE [--data-root DIR] "
                         "-o out.jsonl"),
    "csv": ("a CSV/TSV file", "paravox manifest import csv FILE [--delimiter '\\t'] "
            "[--map COLUMN=FIELD ...] -o out.jsonl"),
    "kaldi": ("a Kaldi data directory", "paravox manifest import kaldi FILE -o out.jsonl"),
}


def detect_foreign_row(d: dict[str, Any]) -> str | None:
    """Which other toolkit's manifest a JSON row comes from (a key of :data:`FOREIGN`), or
    None: the error for a row paravox cannot read can then name the import command."""
    if not isinstance(d, dict):
        return None
    keys = set(d)
    if "audio_filepath" in keys:
        return "nemo"
    if d.get("type") in ("MonoCut", "MultiCut", "MixedCut", "PaddingCut", "DataCut") or (
            {"recording", "start", "duration"} <= keys):
        return "lhotse-cuts"
    if {"sources", "sampling_rate"} <= keys:
        return "lhotse-recordings"
    if {"recording_id", "start", "duration"} <= keys:
        return "lhotse-supervisions"
    if "file_name" in keys:
        return "hf-audiofolder"
    if {"wav", "spk_id"} & keys or ("ID" in keys and "wav" in keys):
        return "speechbrain"
    return None


def detect_foreign_text(first_line: str) -> str | None:
    """Which format a manifest's first line (one that is not a JSON object) comes from: a
    SpeechBrain or other CSV header, or a SpeechBrain JSON document; None if unknown."""
    line = first_line.strip()
    if line in ("{", "[") or re.match(r'^\{\s*"[^"]+"\s*:\s*\{\s*$', line):
        return "speechbrain-json"
    for sep in (",", "\t", ";", "|"):
        cols = [c.strip().strip('"') for c in line.split(sep)]
        if len(cols) < 2:
            continue
        if "ID" in cols and ("wav" in cols or "spk_id" in cols):
            return "speechbrain"
        if all(c and len(c) < 64 and not c.startswith("{") for c in cols):
            return "csv"
    return None


def _foreign_message(kind: str, where: str) -> str:
    what, command = FOREIGN[kind]
    file = where.rsplit(":", 1)[0] if re.search(r":\d+$", where) else where
    folder = file if Path(file).is_dir() else str(Path(file).parent)
    command = command.replace("FILE", file).replace("FOLDER", folder)
    return f"this looks like {what}, not a paravox manifest; convert it with `{command}`"


def open_text(path: str | Path):
    """The file opened as UTF-8 text (a byte-order mark skipped); gzip-compressed files
    (Lhotse's ``.jsonl.gz``) are read transparently, whatever their name."""
    path = Path(path)
    with path.open("rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8-sig")
    return path.open(encoding="utf-8-sig")


def json_lines(path: Path, bad_json_hint=lambda line: "") -> Iterator[tuple[int, Any]]:
    """(line number, decoded value) for every non-blank line of a JSON-lines file (gzip read
    too): the one reader of paravox manifests and of other toolkits' JSONL files. A line that
    is not JSON fails naming ``file:line`` (plus ``bad_json_hint(line)``); an unreadable file
    fails with one line."""
    try:
        with open_text(path) as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ManifestError(f"{path}:{lineno}: not valid JSON ({exc.msg})"
                                        f"{bad_json_hint(line)}") from None
                yield lineno, value
    except (UnicodeDecodeError, OSError, EOFError) as exc:
        raise ManifestError(f"{path}: cannot be read as UTF-8 JSON lines ({exc})") from None


def iter_manifest(path: str | Path) -> Iterator[ManifestRow]:
    """Rows of a JSON-lines manifest (optionally gzip-compressed), one at a time (blank lines
    skipped), each checked by :func:`row_from_dict`; errors name ``file:line``. Paths are left
    as written. Once the file is read, fields paravox does not know (kept in ``row.extra``)
    are named in one warning for the whole file, never one per row."""
    path = Path(path)
    if path.is_dir():
        kind, what = (("kaldi", "a Kaldi data directory") if (path / "wav.scp").is_file()
                      else ("hf-audiofolder", "a folder of audio files"))
        command = FOREIGN[kind][1].replace("FILE", str(path)).replace("FOLDER", str(path))
        raise ManifestError(f"{path} is a folder, not a manifest file; if it is {what}, "
                            f"convert it with `{command}`")
    if not path.is_file():
        if path.exists():  # a FIFO or device: reading it could wait forever
            raise ManifestError(f"{path}: not a regular file (a FIFO, socket or device); give "
                                f"a manifest file")
        raise ManifestError(f"manifest not found: {path}")
    unknown: dict[str, int] = {}
    n_rows = 0

    def foreign_hint(line: str) -> str:  # a first line in another toolkit's format
        kind = detect_foreign_text(line) if n_rows == 0 else None
        return f"; {_foreign_message(kind, str(path))}" if kind else ""

    for lineno, d in json_lines(path, foreign_hint):
        row = row_from_dict(d, f"{path}:{lineno}")
        n_rows += 1
        for k in row.extra:
            unknown[k] = unknown.get(k, 0) + 1
        yield row
    if unknown:
        log.warning(_unknown_fields_message(path, unknown, n_rows))


def _unknown_fields_message(path: Path, unknown: dict[str, int], n_rows: int) -> str:
    names = sorted(unknown)
    alias = [f"'{k}' is paravox's '{ALIASES[k]}'?" for k in names if k in ALIASES]
    counts = ", ".join(f"{k} ({unknown[k]}/{n_rows} rows)" for k in names)
    return (f"{path}: field(s) paravox does not use: {counts}; kept as-is in row.extra and "
            f"written back on save" + (f" ({' '.join(alias)})" if alias else ""))


class Manifest:
    """Rows of one manifest file plus the folder their relative paths resolve against."""

    def __init__(self, rows: list[ManifestRow], root: Path | None = None,
                 source: str = "<memory>"):
        self.rows = rows
        self.root = root
        self.source = source
        seen: dict[str, int] = {}
        for i, r in enumerate(rows):
            if r.id in seen:
                raise ManifestError(f"{source}: duplicate id '{r.id}' (rows {seen[r.id] + 1} and "
                                    f"{i + 1}); ids must be unique")
            seen[r.id] = i
        self._index = seen

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        """Read a manifest file; its folder becomes the root for relative paths."""
        path = Path(path)
        return cls(list(iter_manifest(path)), root=path.parent.resolve(), source=str(path))

    def save(self, path: str | Path) -> None:
        """Write the rows; relative paths are rewritten to stay valid from the new folder
        (kept as written when it is this manifest's folder). A path through a symbolic link
        keeps the link's name rather than its target, unless only the target is reachable
        from the new folder by a plain relative path (a ``..`` after a linked folder)."""
        dest = Path(path).parent.resolve()
        same_folder = self.root is not None and Path(self.root).resolve() == dest
        rows = []
        for r in self.rows:
            if not Path(r.path).is_absolute() and not same_folder:
                audio = self.audio_path(r)
                target = audio.resolve()
                lexical = Path(os.path.normpath(os.path.abspath(audio)))
                keep = lexical if lexical.resolve() == target else target
                r = replace(r, path=os.path.relpath(keep, dest))
            rows.append(r)
        write_manifest(rows, path)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[ManifestRow]:
        return iter(self.rows)

    def __getitem__(self, key: int | str) -> ManifestRow:
        return self.rows[self._index[key]] if isinstance(key, str) else self.rows[key]

    def audio_path(self, row: ManifestRow) -> Path:
        """Where ``row``'s audio is, relative paths resolved against this manifest's folder."""
        return row.resolve(self.root)


def write_manifest(rows: Iterable[ManifestRow], path: str | Path) -> None:
    """Write rows as JSON lines (creating the folder), paths exactly as they are in the rows;
    :meth:`Manifest.save` rewrites relative paths for a new folder instead. The file is
    written whole or not at all (:mod:`paravox.utils.atomic_files`): a full disk or an error
    half-way leaves the previous manifest as it was."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(r.to_json() + "\n")
