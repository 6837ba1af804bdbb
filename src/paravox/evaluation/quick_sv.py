"""A quick built-in speaker-verification check: whole-utterance embeddings, cosine scoring of a
VoxCeleb-format trial list, EER (used at the end of a training run). The full suite with
AS-Norm, PLDA and minDCF is :mod:`paravox.evaluation.sv`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from paravox.audio.features import LogMelFilterbank
from paravox.data.manifest import Manifest
from paravox.errors import ManifestError
from paravox.evaluation.metrics import equal_error_rate
from paravox.evaluation.scoring import cosine_scores
from paravox.models.base import Encoder


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


def quick_sv_eer(encoder: Encoder, fbank: LogMelFilterbank, manifest_path: str | Path,
                 trials_path: str | Path, device: str | torch.device = "cpu") -> float:
    """EER (a fraction) of cosine scoring over the trials, embedding only the utterances they
    use: a cheap progress check, with no score normalisation or back-end."""
    from paravox.inference.embedder import Embedder, embed_manifest

    trials = read_trials(trials_path)
    embedder = Embedder(encoder, fbank, device=device)
    emb = embed_manifest(embedder, trial_manifest(manifest_path, trials), progress=False)
    return equal_error_rate(cosine_scores(emb, trials), np.array([t for t, _, _ in trials]))
