"""CSV (or TSV) tables in and out: a header row; ``id`` and ``path`` required; ``offset``,
``duration``, ``speaker``, ``language``, ``text`` recognised; every other column becomes a
label. Other column names are renamed with a map (``--map utt=id --map file=path --map
spk=speaker``). Relative paths resolve against the CSV's folder.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

from paravox.data.importers.foreign_rows import (
    CSV_FIELDS,
    cell_value,
    parse_map,
    resolve_audio_path,
)
from paravox.data.manifest import ManifestRow, row_from_dict
from paravox.errors import ManifestError
from paravox.utils.atomic_files import atomic_open


def parse_delimiter(text: str) -> str:
    """The one-character CSV delimiter that ``text`` names: a literal backslash-t typed in a
    shell (``--delimiter '\t'``) or ``tab`` means a tab; ``comma``, ``semicolon``, ``pipe`` and
    ``space`` their characters. Anything else that is not one character is a ManifestError
    (one line for the command line, not a traceback from the csv module)."""
    names = {"\\t": "\t", "tab": "\t", "comma": ",", "semicolon": ";", "pipe": "|",
             "space": " "}
    d = names.get(text.lower(), text) if isinstance(text, str) else text
    if not isinstance(d, str) or len(d) != 1 or d in "\"\r\n" or d.isalnum():
        raise ManifestError(f"bad CSV delimiter {text!r}: give one character such as ',' or "
                            f"';', or '\\t' (or 'tab') for a tab")
    return d


def _renamed(header: list[str], mapping: dict[str, str], where: str) -> dict[str, str]:
    """Column -> field for every column of ``header`` (unmapped columns keep their name);
    a mapped column that is not in the header, a column named twice, or two columns landing
    on one field, fail."""
    twice = sorted({c for c in header if header.count(c) > 1})
    if twice:
        raise ManifestError(f"{where}: the header names column(s) {twice} more than once; "
                            f"rename or remove the duplicates")
    absent = [c for c in mapping if c not in header]
    if absent:
        raise ManifestError(f"{where}: --map names column(s) {absent} that are not in the "
                            f"header {header}")
    names = {c: mapping.get(c, c) for c in header}
    seen: dict[str, str] = {}
    for c, f in names.items():
        if f == "-":
            continue
        if f in seen:
            raise ManifestError(f"{where}: columns '{seen[f]}' and '{c}' both give '{f}'; drop "
                                f"one with --map {c}=-")
        seen[f] = c
    return names


def import_csv(path: str | Path, delimiter: str = ",",
               mapping: list[str] | dict[str, str] | None = None) -> list[ManifestRow]:
    """Manifest rows from a CSV (or, with ``delimiter="\\t"``, TSV) file with a header row.

    Columns as in the module docstring; ``mapping`` (``{"utt": "id"}`` or ``["utt=id"]``, see
    :func:`parse_map`) renames other files' columns. Relative paths resolve against the CSV's
    folder and empty cells count as absent. A bad row raises ManifestError naming
    ``file:line``.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"CSV file not found: {path}")
    delimiter = parse_delimiter(delimiter)
    mapping = parse_map(mapping)
    rows = []
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        header = list(reader.fieldnames or [])
        names = _renamed(header, mapping, str(path))
        if not {"id", "path"} <= set(names.values()):
            cells = set(re.split(r"[,;\t|]", delimiter.join(header)))
            hint = ("; it looks like a SpeechBrain CSV: use `paravox manifest import "
                    "speechbrain`" if {"ID", "wav"} <= cells else
                    "; name them with --map COLUMN=id --map COLUMN=path")
            if len(header) == 1 and delimiter != "\t" and "\t" in header[0]:
                hint = "; the file is tab-separated: add --delimiter '\\t'"
            raise ManifestError(f"{path}: header must name at least 'id' and 'path' columns "
                                f"(found {header}){hint}")
        for lineno, rec in enumerate(reader, 2):
            if None in rec:
                raise ManifestError(f"{path}:{lineno}: more fields than header columns")
            d: dict[str, Any] = {}
            labels: dict[str, Any] = {}
            for column, value in rec.items():
                field, value = names[column], cell_value(value)
                if field == "-" or value is None:
                    continue
                if field in CSV_FIELDS:
                    d[field] = value
                else:
                    labels[field.removeprefix("labels.")] = value
            if labels:
                d["labels"] = labels
            if d.get("path"):
                d["path"] = resolve_audio_path(d["path"], path.parent)
            rows.append(row_from_dict(d, f"{path}:{lineno}"))
    return rows


def export_csv(rows: list[ManifestRow], path: str | Path, root: Path | None = None) -> None:
    """Write ``rows`` as a CSV that :func:`import_csv` reads back, for spreadsheets and tools
    that take tables: the standard columns, then one column per label key. Paths are resolved
    against ``root`` (the manifest's folder)."""
    label_keys = sorted({k for r in rows for k in r.labels})
    with atomic_open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow([*CSV_FIELDS, *label_keys])
        for r in rows:
            w.writerow([r.id, str(r.resolve(root)), r.offset if r.offset else "",
                        "" if r.duration is None else r.duration, r.speaker or "",
                        r.language or "", r.text or "",
                        *[r.labels.get(k, "") for k in label_keys]])
