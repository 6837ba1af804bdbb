"""Read every file of a manifest and report what is wrong with it, by name, with counts."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from paravox.audio.io import audio_info, load_audio
from paravox.data.manifest import Manifest
from paravox.errors import AudioError, ManifestError

# dBFS below which a whole file counts as silent (digital silence or a dead channel).
SILENT_DBFS = -60.0


@dataclass
class Problem:
    """One thing wrong with a manifest: its ``kind`` (for counting and filtering), ``where``
    (utterance id and file, or manifest line) and a ``detail`` message for the user."""

    kind: str  # missing | corrupt | empty | nan | silent | segment | bad_row | alignment
    where: str  # utterance id (and file) or manifest line
    detail: str


@dataclass
class ValidationReport:
    """The outcome of :func:`validate_manifest`: how many rows and hours were checked and
    every problem found, so a user can fix them all in one pass rather than one per run."""

    source: str
    checked: int = 0
    total_seconds: float = 0.0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def counts(self) -> Counter:
        """Number of problems of each kind."""
        return Counter(p.kind for p in self.problems)

    def bad_ids(self) -> set[str]:
        """Utterance ids with at least one problem, e.g. to drop them from the manifest
        (the first word of each ``where``: the manifest path if it could not be parsed)."""
        return {p.where.split(" ")[0] for p in self.problems}

    def summary(self, max_listed: int = 20) -> str:
        """Printable report: totals, counts per kind and the first ``max_listed`` problems."""
        lines = [f"{self.source}: checked {self.checked} utterance(s), "
                 f"{self.total_seconds / 3600:.2f} h of readable audio"]
        if self.ok:
            lines.append("OK: no problems found")
            return "\n".join(lines)
        c = self.counts()
        lines.append("PROBLEMS: " + ", ".join(f"{k}={v}" for k, v in sorted(c.items())))
        for p in self.problems[:max_listed]:
            lines.append(f"  [{p.kind}] {p.where}: {p.detail}")
        if len(self.problems) > max_listed:
            lines.append(f"  ... and {len(self.problems) - max_listed} more")
        return "\n".join(lines)


def validate_manifest(path: str | Path, progress: bool = False) -> ValidationReport:
    """Check rows (syntax, fields, unique ids) and then every audio file they point to."""
    path = Path(path)
    report = ValidationReport(source=str(path))
    try:
        manifest = Manifest.load(path)
    except ManifestError as exc:
        report.problems.append(Problem("bad_row", str(path), str(exc)))
        return report
    rows = manifest.rows
    if progress:
        from tqdm import tqdm

        rows = tqdm(rows, desc="validate", unit="utt")
    for row in rows:
        report.checked += 1
        file = manifest.audio_path(row)
        where = f"{row.id} ({file})"
        try:
            wave = load_audio(file, row.offset, row.duration)
        except AudioError as exc:
            report.problems.append(Problem(exc.kind, where, exc.problem))
            continue
        report.total_seconds += wave.size / 16000
        peak = float(np.abs(wave).max())
        if peak == 0 or 20 * np.log10(peak) < SILENT_DBFS:
            report.problems.append(Problem("silent", where, f"peak level below {SILENT_DBFS} dBFS"))
        if row.sample_rate is not None:
            sr = audio_info(file).sample_rate
            if sr != row.sample_rate:
                report.problems.append(Problem("bad_row", where, f"row says sample_rate="
                                               f"{row.sample_rate} but the file is {sr} Hz"))
        if row.alignment is not None:
            need = wave.size // int(round(16000 * row.alignment.frame_shift)) + 1
            if row.alignment.num_frames != need:
                report.problems.append(Problem(
                    "alignment", where,
                    f"alignment covers {row.alignment.num_frames} frames, audio has {need}"))
    return report
