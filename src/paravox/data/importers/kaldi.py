"""Kaldi data directories in and out: ``wav.scp`` (id -> file), ``utt2spk``, optional
``segments`` (utt rec start end), ``text`` and ``utt2lang``. Piped ``wav.scp`` entries
(``sox ... |``) are refused with the line named: convert those recordings to files first.
Relative paths resolve, as in Kaldi, against the current folder unless ``audio_root`` says
otherwise.
"""

from __future__ import annotations

import math
from pathlib import Path

from paravox.audio.io import audio_info
from paravox.data.manifest import ManifestRow, row_from_dict
from paravox.errors import ManifestError
from paravox.utils.atomic_files import atomic_open, make_folder


def _read_kv(path: Path, min_fields: int = 2) -> list[tuple[int, list[str]]]:
    out = []
    with path.open(encoding="utf-8-sig") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            # key-value files keep the value whole (paths may hold spaces); others split fully
            parts = line.rstrip("\n").split(maxsplit=1 if min_fields == 2 else -1)
            if len(parts) < min_fields:
                raise ManifestError(f"{path}:{lineno}: expected at least {min_fields} fields, "
                                    f"got '{line.strip()}'")
            out.append((lineno, parts))
    return out


def _check_unique(path: Path, seen: dict[str, int], key: str, lineno: int) -> None:
    if key in seen:
        raise ManifestError(f"{path}:{lineno}: id '{key}' already on line {seen[key]}; "
                            f"each id may appear once, remove or rename the duplicate")
    seen[key] = lineno


def _as_map(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    out: dict[str, str] = {}
    seen: dict[str, int] = {}
    for lineno, p in _read_kv(path):
        _check_unique(path, seen, p[0], lineno)
        out[p[0]] = p[1].strip()
    return out


def import_kaldi(data_dir: str | Path, audio_root: str | Path | None = None) -> list[ManifestRow]:
    """Manifest rows from a Kaldi data directory (see the module docstring for the files).

    Relative paths in wav.scp resolve against ``audio_root`` (default: the current folder,
    as in Kaldi, where they are relative to the recipe directory)."""
    d = Path(data_dir)
    root = Path(audio_root) if audio_root is not None else Path.cwd()
    scp = d / "wav.scp"
    if not scp.is_file():
        raise ManifestError(f"{d}: no wav.scp; is this a Kaldi data directory?")
    recordings: dict[str, str] = {}
    seen: dict[str, int] = {}
    for lineno, (key, value) in _read_kv(scp):
        _check_unique(scp, seen, key, lineno)
        value = value.strip()
        if value.endswith("|"):
            raise ManifestError(f"{scp}:{lineno}: piped entry '{value}' is not supported; "
                                f"write the audio to a file and list its path")
        path = Path(value)
        recordings[key] = str(path if path.is_absolute() else (root / path).resolve())
    utt2spk = _as_map(d / "utt2spk")
    text = _as_map(d / "text")
    utt2lang = _as_map(d / "utt2lang")
    rows: list[ManifestRow] = []
    segfile = d / "segments"
    if segfile.is_file():
        seen_utts: dict[str, int] = {}
        for lineno, parts in _read_kv(segfile, min_fields=4):
            if len(parts) > 4:
                raise ManifestError(f"{segfile}:{lineno}: a channel column is not supported; "
                                    f"split multi-channel recordings into mono files first")
            utt, rec, start, end = parts
            _check_unique(segfile, seen_utts, utt, lineno)
            if rec not in recordings:
                raise ManifestError(f"{segfile}:{lineno}: recording '{rec}' not in wav.scp")
            try:
                t0, t1 = float(start), float(end)
            except ValueError:
                raise ManifestError(f"{segfile}:{lineno}: start/end must be seconds") from None
            if not (math.isfinite(t0) and math.isfinite(t1)) or t0 < 0:
                raise ManifestError(f"{segfile}:{lineno}: start '{start}' / end '{end}' must "
                                    f"be finite seconds, start >= 0 (end -1: to the end of "
                                    f"the recording)")
            if t1 == -1:  # Kaldi: -1 means "to the end of the recording"
                duration = None
            elif t1 <= t0:
                raise ManifestError(f"{segfile}:{lineno}: end {t1} <= start {t0}")
            else:
                duration = t1 - t0
            rows.append(_kaldi_row(utt, recordings[rec], t0, duration, utt2spk, text, utt2lang,
                                   f"{segfile}:{lineno}"))
    else:
        for utt, path in recordings.items():
            rows.append(_kaldi_row(utt, path, 0.0, None, utt2spk, text, utt2lang, str(scp)))
    if utt2spk:
        missing = [r.id for r in rows if r.speaker is None]
        if missing:
            raise ManifestError(f"{d / 'utt2spk'}: no speaker for {len(missing)} utterance(s), "
                                f"e.g. '{missing[0]}'")
    return rows


def _kaldi_row(utt, path, offset, duration, utt2spk, text, utt2lang, where) -> ManifestRow:
    return row_from_dict({"id": utt, "path": path, "offset": offset, "duration": duration,
                          "speaker": utt2spk.get(utt), "text": text.get(utt),
                          "language": utt2lang.get(utt)}, where)


def export_kaldi(rows: list[ManifestRow], data_dir: str | Path, root: Path | None = None) -> None:
    """Write ``rows`` as a Kaldi data directory (wav.scp/utt2spk/spk2utt, plus segments, text
    and utt2lang where present) for the recipes and tools that read Kaldi directories;
    :func:`import_kaldi` reads it back."""
    d = Path(data_dir)
    for n, r in enumerate(rows, 1):
        for what, value in (("id", r.id), ("speaker", r.speaker)):
            if value is not None and (not value or any(c.isspace() for c in value)):
                raise ManifestError(f"row {n} (id {r.id!r}): {what} {value!r} is empty or holds "
                                    f"whitespace, which Kaldi files cannot hold; rename it "
                                    f"(e.g. spaces to '_') before exporting")
    rows = sorted(rows, key=lambda r: r.id)
    # a segments file only when some row is a part of its file; -1 ends "at the file's end"
    use_segments = any(r.offset or (r.duration is not None and abs(
        r.duration - audio_info(r.resolve(root)).duration) > 1e-3) for r in rows)
    make_folder(d, "Kaldi data folder")
    rec_ids: dict[str, str] = {}
    with atomic_open(d / "wav.scp", "w") as scp:
        for r in rows:
            path = str(r.resolve(root))
            if use_segments:
                if path not in rec_ids:
                    rec_ids[path] = f"rec{len(rec_ids):06d}"
                    scp.write(f"{rec_ids[path]} {path}\n")
            else:
                scp.write(f"{r.id} {path}\n")
    if use_segments:
        with atomic_open(d / "segments", "w") as seg:
            for r in rows:
                end = "-1" if r.duration is None else f"{r.offset + r.duration:.3f}"
                seg.write(f"{r.id} {rec_ids[str(r.resolve(root))]} {r.offset:.3f} {end}\n")
    spk2utt: dict[str, list[str]] = {}
    with atomic_open(d / "utt2spk", "w") as u2s:
        for r in rows:
            spk = r.speaker if r.speaker is not None else r.id
            u2s.write(f"{r.id} {spk}\n")
            spk2utt.setdefault(spk, []).append(r.id)
    with atomic_open(d / "spk2utt", "w") as s2u:
        for spk in sorted(spk2utt):
            s2u.write(f"{spk} {' '.join(spk2utt[spk])}\n")
    if any(r.text for r in rows):
        with atomic_open(d / "text", "w") as t:
            for r in rows:
                t.write(f"{r.id} {r.text or ''}\n")
    if any(r.language for r in rows):
        with atomic_open(d / "utt2lang", "w") as t:
            for r in rows:
                t.write(f"{r.id} {r.language or 'unk'}\n")
