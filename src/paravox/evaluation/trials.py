"""Trial lists: reading a VoxCeleb-format list (``1|0 uttA uttB`` per line) and the manifest
rows it uses, for every verification scorer (:mod:`paravox.evaluation.sv`)."""

from __future__ import annotations

from pathlib import Path

from paravox.data.manifest import Manifest
from paravox.errors import ManifestError


def read_trials(path: str | Path) -> list[tuple[int, str, str]]:
    """``(label, utt_a, utt_b)`` per line of a VoxCeleb-format trial list (``1`` = same
    speaker, ``0`` = different); a malformed line raises with its file and line number."""
    trials = []
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        parts = line.split()
        if len(parts) != 3 or parts[0] not in ("0", "1"):
            raise ManifestError(f"{path}:{lineno}: expected '1|0 uttA uttB', got '{line}'")
        trials.append((int(parts[0]), parts[1], parts[2]))
    return trials


def trial_manifest(manifest_path: str | Path, trials) -> Manifest:
    """The manifest restricted to the utterances the trials use."""
    needed = {u for _, a, b in trials for u in (a, b)}
    manifest = Manifest.load(manifest_path)
    manifest.rows = [r for r in manifest.rows if r.id in needed]
    return manifest
