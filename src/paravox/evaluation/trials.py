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
    check_trials(trials, path)
    return trials


def check_trials(trials: list[tuple[int, str, str]], path: str | Path) -> None:
    """An EER and a minDCF need target and non-target trials: an empty trial list, or one of
    a single kind, is refused naming the file (no rate can be computed from it)."""
    if not trials:
        raise ManifestError(f"{path}: no trials (an empty file); give a trial list with lines "
                            f"'1|0 enrol_id test_id' (the built-in corpus writes trials.txt)")
    kinds = {label for label, _, _ in trials}
    if len(kinds) == 1:
        kind = "target (1)" if kinds == {1} else "non-target (0)"
        other = "non-target (0)" if kinds == {1} else "target (1)"
        raise ManifestError(f"{path}: all {len(trials)} trials are {kind} trials; an EER needs "
                            f"{other} trials too: add them, or use the full trial list")


def trial_manifest(manifest_path: str | Path, trials) -> Manifest:
    """The manifest restricted to the utterances the trials use."""
    needed = {u for _, a, b in trials for u in (a, b)}
    manifest = Manifest.load(manifest_path)
    manifest.rows = [r for r in manifest.rows if r.id in needed]
    return manifest
