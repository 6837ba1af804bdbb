"""Manifests: one JSON object per line, one utterance per row.

A row says where the audio is (``path``, optional ``offset``/``duration`` in seconds inside a
longer file) and what is known about it (``speaker``, ``language``, free-form ``labels``,
``text``, a frame-level ``alignment``). Relative paths resolve against the manifest's folder,
so a corpus folder can be moved as a whole.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from paravox.errors import ManifestError

REQUIRED = ("id", "path")
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

    def to_json(self) -> str:
        """The row as one JSON line: empty fields and a zero offset are left out, keys sorted,
        so manifests stay small and diff cleanly."""
        d = asdict(self)
        d = {k: v for k, v in d.items() if v not in (None, {}) and not (k == "offset" and v == 0)}
        return json.dumps(d, ensure_ascii=False, sort_keys=True)

    def resolve(self, root: Path | None) -> Path:
        """The audio file: ``path`` as is if absolute (or no ``root``), else under ``root``."""
        p = Path(self.path)
        return p if p.is_absolute() or root is None else root / p


def row_from_dict(d: dict[str, Any], where: str) -> ManifestRow:
    """Build and check a row; ``where`` ('file:line') goes into every error."""
    if not isinstance(d, dict):
        raise ManifestError(f"{where}: row is not a JSON object")
    missing = [k for k in REQUIRED if not d.get(k)]
    if missing:
        raise ManifestError(f"{where}: row lacks required field(s) {missing}; "
                            f"every row needs 'id' and 'path'")
    unknown = sorted(set(d) - KNOWN)
    if unknown:
        raise ManifestError(f"{where}: unknown field(s) {unknown}; put extra labels under "
                            f"'labels' (known fields: {sorted(KNOWN)})")
    try:
        offset = float(d.get("offset", 0.0) or 0.0)
        duration = None if d.get("duration") is None else float(d["duration"])
        sr = None if d.get("sample_rate") is None else int(d["sample_rate"])
    except (TypeError, ValueError) as exc:
        raise ManifestError(f"{where}: offset/duration/sample_rate must be numbers ({exc})"
                            ) from None
    if offset < 0 or (duration is not None and duration <= 0):
        raise ManifestError(f"{where}: offset must be >= 0 and duration > 0 "
                            f"(got offset={offset}, duration={duration})")
    labels = d.get("labels") or {}
    if not isinstance(labels, dict):
        raise ManifestError(f"{where}: 'labels' must be an object of name -> value")
    ali = d.get("alignment")
    alignment = None
    if ali is not None:
        try:
            alignment = Alignment(list(ali["phones"]), [int(c) for c in ali["counts"]],
                                  float(ali.get("frame_shift", 0.01)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"{where}: bad 'alignment' ({exc}); expected "
                                f"{{'phones': [...], 'counts': [...]}}") from None
        if len(alignment.phones) != len(alignment.counts):
            raise ManifestError(f"{where}: alignment phones and counts differ in length")
    return ManifestRow(
        id=str(d["id"]), path=str(d["path"]), offset=offset, duration=duration, sample_rate=sr,
        speaker=None if d.get("speaker") is None else str(d["speaker"]),
        language=d.get("language"), labels=labels, text=d.get("text"), alignment=alignment,
    )


def iter_manifest(path: str | Path) -> Iterator[ManifestRow]:
    """Rows of a JSON-lines manifest, one at a time (blank lines skipped), each checked by
    :func:`row_from_dict`; errors name ``file:line``. Paths are left as written."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    with path.open(encoding="utf-8-sig") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ManifestError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            yield row_from_dict(d, f"{path}:{lineno}")


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
        """Write the rows; relative paths are rewritten to stay valid from the new folder."""
        dest = Path(path).parent.resolve()
        rows = []
        for r in self.rows:
            audio = self.audio_path(r)
            if not Path(r.path).is_absolute():
                r = replace(r, path=os.path.relpath(audio.resolve(), dest))
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
    :meth:`Manifest.save` rewrites relative paths for a new folder instead."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(r.to_json() + "\n")
