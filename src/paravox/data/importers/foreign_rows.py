"""What the importers of other toolkits' manifests share: paravox's row fields and the
``--map`` renaming of foreign columns onto them, the keys that name a speaker or language in
foreign records, and the reading of foreign rows (JSON lines, empty cells, relative audio
paths). One place for these keeps every format's importer reading cells, maps and paths
alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from paravox.data.manifest import json_lines
from paravox.errors import ManifestError

# paravox's own row fields, in the column order of an exported CSV
CSV_FIELDS = ("id", "path", "offset", "duration", "speaker", "language", "text")
# record keys that name a speaker / a language in NeMo and SpeechBrain manifests
SPEAKER_KEYS = ("speaker", "speaker_id", "spk", "spk_id")
LANGUAGE_KEYS = ("language", "lang", "locale")


def parse_map(items: list[str] | dict[str, str] | None) -> dict[str, str]:
    """``["utt=id", "spk=speaker"]`` (the ``--map`` options) as ``{column: field}``.

    A field is one of paravox's (``id, path, offset, duration, speaker, language, text``),
    ``labels.NAME`` (a label of another name) or ``-`` (drop the column); anything else is a
    ManifestError listing the choices, so a typo never silently loses a column."""
    if not items:
        return {}
    pairs = items.items() if isinstance(items, dict) else [_split_map(i) for i in items]
    out: dict[str, str] = {}
    for column, target in pairs:
        if target not in CSV_FIELDS and target != "-" and not (
                target.startswith("labels.") and len(target) > 7):
            raise ManifestError(f"--map {column}={target}: '{target}' is not a field; use one "
                                f"of {list(CSV_FIELDS)}, labels.NAME or - (drop the column)")
        out[column] = target
    return out


def _split_map(item: str) -> tuple[str, str]:
    column, sep, target = item.partition("=")
    if not sep or not column.strip() or not target.strip():
        raise ManifestError(f"--map '{item}': expected COLUMN=FIELD, e.g. --map utt=id")
    return column.strip(), target.strip()


def resolve_audio_path(path: str, root: Path) -> str:
    """``path`` made absolute (``~`` expanded, a relative path read against ``root``), so
    that every imported row names its audio wherever the manifest is later read from; each
    importer passes the ``root`` its source toolkit resolves against."""
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else (root / p).resolve())


def cell_value(v: Any) -> Any:
    """An empty CSV cell (or JSON null) is an absent value: ``None`` for both, so that an
    empty column never becomes an empty speaker, text or label."""
    return None if v in ("", None) else v


def read_jsonl_objects(path: Path, what: str) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line of a JSONL(.gz) file; a missing file or
    a line that is not a JSON object is a ManifestError naming ``what`` and the line, so a
    wrong file given to an importer says so at once."""
    if not path.is_file():
        raise ManifestError(f"{what} not found: {path}")
    out = []
    for lineno, d in json_lines(path, lambda line: f"; a {what} is one JSON object per line"):
        if not isinstance(d, dict):
            raise ManifestError(f"{path}:{lineno}: row is not a JSON object")
        out.append((lineno, d))
    return out


def first_present(d: dict[str, Any], keys: tuple[str, ...]) -> tuple[str | None, Any]:
    """The first of ``keys`` that ``d`` holds a value for, and that value (``(None, None)``
    when none does): foreign formats spell one field several ways (``spk_id``, ``speaker``)."""
    for k in keys:
        if cell_value(d.get(k)) is not None:
            return k, d[k]
    return None, None
