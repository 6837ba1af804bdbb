"""Utterance embeddings from a bundle: whole utterances, or fixed-length chunks averaged."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from paravox.audio.io import load_audio
from paravox.inference.bundle import load_bundle_encoder


class Embedder:
    """``Embedder.from_bundle(path).embed(x)`` with ``x`` a file path, a 16 kHz mono array, or a
    list of them. ``chunk_seconds``: split each utterance into chunks of that length (the last,
    shorter one kept when at least half a chunk), embed them in batches and average; ``None``
    embeds whole utterances one at a time (no padding, so results do not depend on the batch).
    """

    def __init__(self, encoder, fbank, config: dict | None = None,
                 device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.encoder = encoder.eval().to(self.device)
        self.fbank = fbank.eval().to(self.device)
        self.config = config or {}
        self.sample_rate = fbank.cfg.sample_rate

    @classmethod
    def from_bundle(cls, path: str | Path, device: str | torch.device = "cpu") -> Embedder:
        return cls(*load_bundle_encoder(path), device=device)

    @property
    def dim(self) -> int:
        return self.encoder.embedding_dim

    def _wave(self, x) -> np.ndarray:
        if isinstance(x, (str, Path)):
            return load_audio(x)
        wave = np.asarray(x, dtype=np.float32)
        if wave.ndim != 1:
            raise ValueError(f"expected a 1-D 16 kHz mono waveform, got shape {wave.shape}")
        return wave

    def _chunks(self, wave: np.ndarray, chunk_seconds: float) -> list[np.ndarray]:
        n = int(round(chunk_seconds * self.sample_rate))
        if len(wave) <= n:
            return [wave]
        starts = list(range(0, len(wave) - n + 1, n))
        chunks = [wave[s:s + n] for s in starts]
        rest = len(wave) - (starts[-1] + n)
        if rest >= n // 2:
            chunks.append(wave[-n:])  # the tail, as a full chunk ending at the end
        return chunks

    @torch.no_grad()
    def _forward(self, waves: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(waves).to(self.device)
        feats, _ = self.fbank(batch)
        return self.encoder(feats).embedding.float().cpu().numpy()

    def embed(self, x, chunk_seconds: float | None = None, batch_size: int = 32) -> np.ndarray:
        """``[D]`` for one input, ``[N, D]`` for a list."""
        single = isinstance(x, (str, Path)) or (isinstance(x, np.ndarray) and x.ndim == 1)
        items = [x] if single else list(x)
        out = np.stack(list(self.iter_embed(items, chunk_seconds, batch_size)))
        return out[0] if single else out

    def iter_embed(self, items: Sequence | Iterable, chunk_seconds: float | None = None,
                   batch_size: int = 32) -> Iterable[np.ndarray]:
        """Embeddings one by one, in input order (for progress bars over long lists)."""
        for x in items:
            wave = self._wave(x)
            if chunk_seconds is None:
                yield self._forward(wave[None])[0]
                continue
            chunks = self._chunks(wave, chunk_seconds)
            # chunks of one utterance share a length except a short single chunk: batch them
            embs = [self._forward(np.stack(chunks[i:i + batch_size]))
                    for i in range(0, len(chunks), batch_size)]
            yield np.concatenate(embs).mean(0)


def embed_manifest(embedder: Embedder, manifest, chunk_seconds: float | None = None,
                   progress: bool = True) -> dict[str, np.ndarray]:
    """``{utterance id: embedding}`` for every row of a manifest, with a progress bar."""
    from tqdm import tqdm

    rows = list(manifest)
    waves = (load_audio(manifest.audio_path(r), r.offset, r.duration) for r in rows)
    it = embedder.iter_embed(waves, chunk_seconds)
    it = tqdm(it, total=len(rows), desc="embedding", unit="utt", disable=not progress)
    return {r.id: e for r, e in zip(rows, it)}
