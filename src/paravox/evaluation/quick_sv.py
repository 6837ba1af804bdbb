"""A quick built-in speaker-verification check: whole-utterance embeddings, cosine scoring of a
VoxCeleb-format trial list, EER. (The full evaluation suite - AS-Norm, PLDA, minDCF - builds
on the same pieces.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from paravox.audio.features import LogMelFilterbank
from paravox.audio.io import load_audio
from paravox.data.manifest import Manifest
from paravox.errors import ManifestError
from paravox.evaluation.metrics import equal_error_rate
from paravox.models.base import Encoder


def read_trials(path: str | Path) -> list[tuple[int, str, str]]:
    trials = []
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        parts = line.split()
        if len(parts) != 3 or parts[0] not in ("0", "1"):
            raise ManifestError(f"{path}:{lineno}: expected '1|0 uttA uttB', got '{line}'")
        trials.append((int(parts[0]), parts[1], parts[2]))
    return trials


@torch.no_grad()
def embed_manifest(encoder: Encoder, fbank: LogMelFilterbank, manifest: Manifest,
                   ids: set[str] | None = None, device: str | torch.device = "cpu"
                   ) -> dict[str, np.ndarray]:
    encoder.eval().to(device)
    fbank = fbank.to(device)
    out = {}
    for row in manifest:
        if ids is not None and row.id not in ids:
            continue
        wave = load_audio(manifest.audio_path(row), row.offset, row.duration)
        feats, _ = fbank(torch.from_numpy(wave).to(device))
        out[row.id] = encoder(feats).embedding[0].float().cpu().numpy()
    return out


def cosine_eer(embeddings: dict[str, np.ndarray], trials: list[tuple[int, str, str]]) -> float:
    missing = {u for _, a, b in trials for u in (a, b)} - embeddings.keys()
    if missing:
        raise ManifestError(f"{len(missing)} trial utterance(s) have no embedding, e.g. "
                            f"'{sorted(missing)[0]}': is the trial list for this manifest?")
    a = F.normalize(torch.from_numpy(np.stack([embeddings[x] for _, x, _ in trials])), dim=-1)
    b = F.normalize(torch.from_numpy(np.stack([embeddings[y] for _, _, y in trials])), dim=-1)
    scores = (a * b).sum(-1).numpy()
    return equal_error_rate(scores, np.array([t for t, _, _ in trials]))


def quick_sv_eer(encoder: Encoder, fbank: LogMelFilterbank, manifest_path: str | Path,
                 trials_path: str | Path, device: str | torch.device = "cpu") -> float:
    trials = read_trials(trials_path)
    ids = {u for _, a, b in trials for u in (a, b)}
    emb = embed_manifest(encoder, fbank, Manifest.load(manifest_path), ids, device)
    return cosine_eer(emb, trials)
