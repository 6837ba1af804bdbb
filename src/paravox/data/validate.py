"""Read every row and every file of a manifest and report everything wrong with it in one run.

The manifest is read line by line (not with :meth:`Manifest.load`, which stops at the first bad
row), so one broken line never hides the rest: every parsable row is checked, every problem is
named with its line, utterance id and file, and each has a severity:

* ``error``: the row is unusable (bad JSON or fields, duplicate id, missing/corrupt/truncated
  file, no samples, NaN/Inf, segment past the end, wrong ``sample_rate``, alignment mismatch);
* ``warning``: usable but suspicious (silent, clipped, shorter than a crop/encoder minimum,
  a manifest with no rows at all);
* ``note``: needs conversion when loaded (resampling to 16 kHz, downmixing to mono).

:meth:`ValidationReport.write_usable` writes a manifest of the rows without errors.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from paravox.audio.io import (
    TARGET_SR,
    AudioInfo,
    WavHeader,
    audio_info,
    iter_blocks,
    wav_header,
)
from paravox.data.manifest import Manifest, ManifestRow, row_from_dict
from paravox.errors import AudioError, ManifestError

# dBFS below which a whole file counts as silent (digital silence or a dead channel).
SILENT_DBFS = -60.0
# a sample at or above this magnitude counts as clipped ...
CLIP_LEVEL = 0.999
# ... and a row is flagged when more than this fraction of its samples are clipped
CLIP_FRACTION = 0.001
# rows shorter than this (seconds) are flagged: the typical crop / encoder minimum
MIN_SECONDS = 0.5
# segment ends rounded in a segments file may overshoot the end by a few milliseconds
SEGMENT_TOLERANCE_S = 0.02
# frames read per block while scanning a file (memory stays bounded for hour-long files)
BLOCK_FRAMES = 1 << 18

ERROR, WARNING, NOTE = "error", "warning", "note"
SEVERITY = {
    "manifest": ERROR, "bad_json": ERROR, "bad_row": ERROR,
    "duplicate": ERROR, "missing": ERROR, "corrupt": ERROR, "truncated": ERROR, "empty": ERROR,
    "nan": ERROR, "segment": ERROR, "alignment": ERROR,
    # no_rows: a warning, not an error, since a split may be empty by design (the synthetic
    # corpus's `tiny` preset has no dev speakers); the report still names it
    "silent": WARNING, "clipped": WARNING, "short": WARNING, "no_rows": WARNING,
    "resample": NOTE, "downmix": NOTE,
}
_RANK = {ERROR: 0, WARNING: 1, NOTE: 2}


@dataclass
class Problem:
    """One thing wrong with a manifest, located precisely enough to fix it: its ``kind`` (for
    counting and filtering), ``severity`` (error = unusable row, warning = suspicious, note =
    conversion needed), manifest ``line`` (1-based; None for the manifest as a whole),
    utterance ``id`` and audio ``path`` where known, and a ``detail`` message for the user.
    ``lines`` lists every line involved when there are several (duplicate ids)."""

    kind: str
    detail: str
    line: int | None = None
    id: str | None = None
    path: str | None = None
    severity: str = ""
    lines: tuple[int, ...] = ()

    def __post_init__(self):
        if not self.severity:
            self.severity = SEVERITY.get(self.kind, ERROR)

    @property
    def where(self) -> str:
        """Line, id and file in one short string, for printed reports."""
        parts = [f"line {self.line}" if self.line is not None else "manifest"]
        if self.id is not None:
            parts.append(self.id)
        if self.path is not None:
            parts.append(f"({self.path})")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """The problem as a JSON-ready dict (``--json`` output), so tools can filter by kind."""
        d: dict[str, Any] = {"line": self.line, "id": self.id, "path": self.path,
                             "kind": self.kind, "severity": self.severity, "detail": self.detail}
        if self.lines:
            d["lines"] = list(self.lines)
        return d


@dataclass
class ValidationReport:
    """The outcome of :func:`validate_manifest`: lines read, rows and hours checked and every
    problem found, so a user can fix them all in one pass rather than one per run. It keeps the
    parsed rows so that :meth:`write_usable` can write a manifest of the usable ones."""

    source: str
    checked: int = 0
    total_seconds: float = 0.0
    lines: int = 0
    problems: list[Problem] = field(default_factory=list)
    rows: list[tuple[int, ManifestRow]] = field(default_factory=list)
    root: Path | None = None

    @property
    def ok(self) -> bool:
        """True when nothing is an error (warnings and notes alone leave a manifest usable)."""
        return not any(p.severity == ERROR for p in self.problems)

    @property
    def clean(self) -> bool:
        """True when no problem of any severity was found."""
        return not self.problems

    def counts(self, severity: str | None = None) -> Counter:
        """Number of problems of each kind (of one ``severity`` if given)."""
        return Counter(p.kind for p in self.problems
                       if severity is None or p.severity == severity)

    def severity_counts(self) -> Counter:
        """Number of errors, warnings and notes."""
        return Counter(p.severity for p in self.problems)

    def bad_ids(self) -> set[str]:
        """Utterance ids with at least one problem of any severity, e.g. to inspect them
        (lines that could not be parsed into a row have no id and are not included)."""
        return {p.id for p in self.problems if p.id is not None}

    def error_lines(self) -> set[int]:
        """Manifest lines that are unusable: every line with an error (for a duplicate id, every
        occurrence after the first, which is the one kept)."""
        out: set[int] = set()
        for p in self.problems:
            if p.severity != ERROR or p.line is None:
                continue
            out.update(p.lines[1:] if p.kind == "duplicate" else (p.line,))
        return out

    def usable_rows(self) -> list[ManifestRow]:
        """Rows without errors, in manifest order (paths as written in the manifest)."""
        bad = self.error_lines()
        return [row for line, row in self.rows if line not in bad]

    def write_usable(self, out: str | Path) -> tuple[int, int]:
        """Write the usable rows to ``out`` (relative paths rewritten to stay valid from its
        folder) so training can start on a clean manifest; returns ``(kept, dropped)``, where
        dropped counts every non-blank line left out, unparsable ones included."""
        rows = self.usable_rows()
        Manifest(rows, root=self.root, source=self.source).save(out)
        return len(rows), self.lines - len(rows)

    def to_json(self) -> list[dict[str, Any]]:
        """Every problem as a JSON-ready dict, in manifest order."""
        return [p.to_dict() for p in self.problems]

    def summary(self, max_listed: int = 20) -> str:
        """Printable report: totals, then the problems grouped by severity and kind, with a
        count and up to ``max_listed`` examples (line, id, file, detail) per kind."""
        name = Path(self.source).name
        lines = [f"{self.source}: {self.lines} line(s), checked {self.checked} row(s), "
                 f"{self.total_seconds / 3600:.2f} h of readable audio"]
        if self.clean:
            lines.append("OK: no problems found")
            return "\n".join(lines)
        sev = self.severity_counts()
        tally = ", ".join(f"{sev[s]} {s}(s)" for s in (ERROR, WARNING, NOTE) if sev[s])
        if self.ok:
            lines.append(f"OK: no errors; {tally}")
        else:
            lines.append(f"PROBLEMS: {tally}; {len(self.error_lines())} of "
                         f"{self.lines} line(s) unusable")
        groups: dict[tuple[str, str], list[Problem]] = {}
        for p in self.problems:
            groups.setdefault((p.severity, p.kind), []).append(p)
        for (severity, kind), probs in sorted(groups.items(),
                                              key=lambda kv: (_RANK[kv[0][0]], kv[0][1])):
            lines.append(f"{severity} {kind}: {len(probs)}")
            for p in probs[:max_listed]:
                at = f"{name}:{p.line}" if p.line is not None else name
                who = "".join(f" {x}" for x in (p.id, p.path and f"({p.path})") if x)
                lines.append(f"  {at}{who}: {p.detail}")
            if len(probs) > max_listed:
                lines.append(f"  ... and {len(probs) - max_listed} more")
        return "\n".join(lines)


@dataclass
class _Scan:
    """Sample statistics of one segment, gathered block by block."""

    frames: int = 0
    finite: bool = True
    peak: float = 0.0  # of the mono mix (what the model sees), finite samples only
    clipped: int = 0  # samples of any channel at |x| >= CLIP_LEVEL
    values: int = 0  # frames * channels


def _scan(path: Path, start: int, stop: int) -> _Scan:
    """Read frames ``[start, stop)`` in blocks; raises AudioError on bad audio."""
    s = _Scan()
    for block in iter_blocks(path, start, stop, BLOCK_FRAMES):
        s.frames += block.shape[0]
        s.values += block.size
        mag = np.abs(block)
        fin = np.isfinite(mag)
        if not fin.all():
            s.finite = False
            mag = np.where(fin, mag, 0.0)
        s.clipped += int((mag >= CLIP_LEVEL).sum())
        mono = np.abs(np.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0).mean(axis=1))
        s.peak = max(s.peak, float(mono.max()))
    return s


def _resampled_length(n: int, sr: int) -> int:
    """Samples after soxr resampling ``n`` samples from ``sr`` to 16 kHz: round(n * 16k / sr),
    as :func:`paravox.audio.io.load_audio` would return (checked against soxr in the tests)."""
    return n if sr == TARGET_SR else (2 * n * TARGET_SR + sr) // (2 * sr)


def _parse_lines(path: Path, report: ValidationReport) -> None:
    """Read the manifest (optionally gzip-compressed) line by line into ``report.rows``; every
    bad line becomes a problem and reading goes on."""
    with path.open("rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    with (gzip.open(path, "rb") if gz else path.open("rb")) as fh:
        for lineno, raw in enumerate(fh, 1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                report.lines += 1
                report.problems.append(Problem("bad_json", f"not UTF-8 text ({exc.reason} at "
                                               f"byte {exc.start})", line=lineno))
                continue
            if not text.strip():
                continue
            report.lines += 1
            try:
                d = json.loads(text.rstrip("\r\n"))
            except json.JSONDecodeError as exc:
                report.problems.append(Problem("bad_json", f"not valid JSON ({exc.msg} at "
                                               f"column {exc.colno})", line=lineno))
                continue
            where = f"{path}:{lineno}"
            try:
                row = row_from_dict(d, where)
            except ManifestError as exc:
                msg = str(exc).removeprefix(f"{where}: ")
                rid = d.get("id") if isinstance(d, dict) else None
                rpath = d.get("path") if isinstance(d, dict) else None
                report.problems.append(Problem(
                    "bad_row", msg, line=lineno,
                    id=None if rid in (None, "") else str(rid),
                    path=None if rpath in (None, "") else str(rpath)))
                continue
            report.rows.append((lineno, row))


def _duplicates(report: ValidationReport) -> None:
    """One problem per id used on several lines, naming all of them (the first is kept)."""
    seen: dict[str, list[int]] = {}
    for line, row in report.rows:
        seen.setdefault(row.id, []).append(line)
    for line, row in report.rows:
        lines = seen[row.id]
        if len(lines) > 1 and line == lines[1]:
            listed = ", ".join(map(str, lines))
            report.problems.append(Problem(
                "duplicate", f"id '{row.id}' is on lines {listed}; ids must be unique "
                f"(--fix keeps line {lines[0]})", line=line, id=row.id, path=row.path,
                lines=tuple(lines)))


class _FileCache:
    """Header facts of each audio file, read once however many rows (segments) point at it."""

    def __init__(self):
        self._info: dict[str, AudioInfo | AudioError] = {}
        self._wav: dict[str, WavHeader | None] = {}

    def info(self, file: Path) -> AudioInfo:
        """:func:`audio_info`, cached; raises the cached AudioError again."""
        key = str(file)
        if key not in self._info:
            try:
                self._info[key] = audio_info(file)
            except AudioError as exc:
                self._info[key] = exc
        got = self._info[key]
        if isinstance(got, AudioError):
            raise got
        return got

    def wav(self, file: Path) -> WavHeader | None:
        """:func:`wav_header`, cached."""
        key = str(file)
        if key not in self._wav:
            self._wav[key] = wav_header(file)
        return self._wav[key]


def _check_row(report: ValidationReport, line: int, row: ManifestRow, file: Path,
               cache: _FileCache, min_seconds: float) -> None:
    """Every audio check of one row; problems are appended to ``report``."""

    def add(kind: str, detail: str) -> None:
        report.problems.append(Problem(kind, detail, line=line, id=row.id, path=str(file)))

    try:
        info = cache.info(file)
    except AudioError as exc:
        add(exc.kind, exc.problem)
        return
    sr = info.sample_rate
    if info.frames == 0 or sr <= 0:
        add("empty", "file holds no samples")
        return
    if row.sample_rate is not None and row.sample_rate != sr:
        add("bad_row", f"row says sample_rate={row.sample_rate} but the file is {sr} Hz")
    if sr != TARGET_SR:
        add("resample", f"{sr} Hz, resampled to {TARGET_SR} Hz when loaded")
    if info.channels > 1:
        add("downmix", f"{info.channels} channels, averaged to mono when loaded")

    start = int(round(row.offset * sr))
    whole = row.duration is None
    stop = info.frames if whole else start + int(round(row.duration * sr))
    tol = int(SEGMENT_TOLERANCE_S * sr)
    wav = cache.wav(file)
    if wav is not None and wav.declared_frames > wav.present_frames:
        missing_part = whole or stop > wav.present_frames + tol
        if missing_part:
            add("truncated", f"header promises {wav.declared_frames} frames "
                f"({wav.declared_frames / sr:.3f} s) but only {wav.present_frames} "
                f"({wav.present_frames / sr:.3f} s) are in the file: it was cut short "
                f"(re-copy or re-encode it)")
            if whole or stop <= wav.declared_frames + tol:
                stop = min(stop, info.frames)
    if start >= info.frames or stop > info.frames + tol:
        seg = f"{row.offset:.3f}s+{row.duration}s" if not whole else f"offset {row.offset:.3f}s"
        add("segment", f"segment {seg} lies outside the file ({info.duration:.3f} s long); "
            f"fix the row's offset/duration (Kaldi: the segments file)")
        return
    stop = min(stop, info.frames)
    try:
        s = _scan(file, start, stop)
    except AudioError as exc:
        add("corrupt", exc.problem)
        return
    if s.frames < stop - start:
        add("truncated", f"decoding stopped after {s.frames} of {stop - start} frames")
    if s.frames == 0:
        add("empty", "segment holds no samples")
        return
    report.total_seconds += s.frames / sr
    if not s.finite:
        add("nan", "audio contains NaN or Inf samples (re-encode or drop the file)")
        return
    if s.peak == 0 or 20 * np.log10(s.peak) < SILENT_DBFS:
        level = "digital silence" if s.peak == 0 else f"{20 * np.log10(s.peak):.1f} dBFS"
        add("silent", f"peak level {level}, below {SILENT_DBFS:g} dBFS")
    if s.values and s.clipped / s.values > CLIP_FRACTION:
        add("clipped", f"{100 * s.clipped / s.values:.2f}% of samples at |x| >= {CLIP_LEVEL} "
            f"(more than {100 * CLIP_FRACTION:g}%)")
    seconds = s.frames / sr
    if seconds < min_seconds:
        add("short", f"{seconds:.3f} s, shorter than the {min_seconds:g} s minimum")
    if row.alignment is not None:
        n16 = _resampled_length(s.frames, sr)
        need = n16 // int(round(TARGET_SR * row.alignment.frame_shift)) + 1
        if row.alignment.num_frames != need:
            add("alignment", f"alignment covers {row.alignment.num_frames} frames, "
                f"audio has {need}")


def validate_manifest(path: str | Path, progress: bool = False,
                      min_seconds: float = MIN_SECONDS) -> ValidationReport:
    """Check every line (JSON syntax, fields, unique ids) and then the audio of every parsable
    row (readable, complete, finite, not silent or clipped, long enough, segment inside the
    file, alignment matching), reporting all problems rather than stopping at the first, so a
    corpus can be fixed in one pass. Rows shorter than ``min_seconds`` get a warning."""
    path = Path(path)
    report = ValidationReport(source=str(path))
    if not path.is_file():
        problem = (f"{path}: not a regular file (a FIFO, socket or device)" if path.exists()
                   else f"manifest not found: {path}")
        report.problems.append(Problem("manifest", problem))
        return report
    report.root = path.parent.resolve()
    try:
        _parse_lines(path, report)
    except (OSError, EOFError) as exc:  # e.g. a cut-off .gz: keep the rows read so far
        report.problems.append(Problem("manifest", f"cannot read the manifest to the end after "
                                       f"{report.lines} line(s): {exc}"))
    if report.lines == 0 and not report.problems:
        report.problems.append(Problem("no_rows", "the manifest has no rows (an import from a "
                                       "header-only CSV or an empty Kaldi dir?)"))
        return report
    _duplicates(report)
    rows: Any = report.rows
    if progress:
        rows = tqdm(rows, desc="validate", unit="utt")
    cache = _FileCache()
    for line, row in rows:
        report.checked += 1
        _check_row(report, line, row, row.resolve(report.root), cache, min_seconds)
    report.problems.sort(key=lambda p: (p.line is not None, p.line or 0))
    return report
