"""Utterance embeddings from a bundle: whole utterances, or fixed-length chunks averaged; and
frame-level outputs of every encoder layer with their frame times (:meth:`Embedder.frames`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from paravox.audio.io import load_audio
from paravox.errors import ConfigError
from paravox.inference.bundle import load_bundle_encoder


@dataclass
class FrameFeatures:
    """One utterance's frame-level outputs: what frame-level probes (phone classification)
    read. Frame ``k`` of layer ``name`` is centred at ``offset[name] + k * shift[name]``
    seconds from the start of the wave."""

    embedding: np.ndarray  # [D]
    layers: dict[str, np.ndarray]  # name -> [T_l, C_l]
    shift: dict[str, float]  # name -> seconds between frames
    offset: dict[str, float]  # name -> seconds: centre of frame 0

    def times(self, name: str) -> np.ndarray:
        """Centre times (seconds) of the frames of layer ``name``."""
        n = self.layers[name].shape[0]
        return self.offset[name] + self.shift[name] * np.arange(n, dtype=np.float64)


def frontend_frame_shift(fbank) -> float:
    """Seconds between the front end's frames: the log-mel hop, or one sample for a
    waveform front end (whose "frames" are samples)."""
    hop = getattr(fbank, "hop_length", 1)
    return hop / fbank.cfg.sample_rate


def select_layers(names: Sequence[str], layers: str | int | Sequence[int | str] = "all"
                  ) -> list[str]:
    """Layer names picked by ``"all"``, an index (negative from the top), a name, or a list
    of indices/names; unknown ones fail with the names there are."""
    names = list(names)
    if isinstance(layers, str) and layers == "all":
        return names
    picks = [layers] if isinstance(layers, (int, str)) else list(layers)
    out = []
    for p in picks:
        if isinstance(p, (int, np.integer)) and not isinstance(p, bool):
            if not -len(names) <= int(p) < len(names):
                raise ConfigError(f"layers: index {p} is out of range; the encoder has "
                                  f"{len(names)} layers {names}")
            out.append(names[int(p)])
        elif isinstance(p, str) and p in names:
            out.append(p)
        else:
            raise ConfigError(f"layers: '{p}' is not a layer of this encoder; choose 'all', "
                              f"an index or names from {names}")
    return out


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
        # layer frame times are counted in the front end's frames
        self.encoder.input_frame_shift = frontend_frame_shift(self.fbank)
        self._layer_names: list[str] | None = None

    @classmethod
    def from_bundle(cls, path: str | Path, device: str | torch.device = "cpu") -> Embedder:
        """The embedder of a bundle folder (:func:`~paravox.inference.bundle.export_bundle`)."""
        return cls(*load_bundle_encoder(path), device=device)

    @property
    def dim(self) -> int:
        """Embedding size."""
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

    @property
    def layer_names(self) -> list[str]:
        """The encoder's frame-level layers, input side first (from one short forward)."""
        if self._layer_names is None:
            dummy = np.random.default_rng(0).standard_normal(self.sample_rate)
            with torch.no_grad():
                feats, _ = self.fbank(torch.from_numpy(dummy.astype(np.float32)[None])
                                      .to(self.device))
                out = self.encoder(feats, return_layers=True)
            self._layer_names = [layer.name for layer in out.layers]
        return list(self._layer_names)

    @torch.no_grad()
    def frames(self, x, layers: str | int | Sequence[int | str] = "all") -> FrameFeatures:
        """Frame-level outputs of one utterance (a path or a 1-D array), whole-utterance
        forward: the embedding and the chosen layers (``"all"``, an index, a name or a list
        of them; see :attr:`layer_names`) with their frame shift and offset in seconds."""
        wave = self._wave(x)
        feats, _ = self.fbank(torch.from_numpy(wave[None]).to(self.device))
        out = self.encoder(feats, return_layers=True)
        by_name = {layer.name: layer for layer in out.layers}
        self._layer_names = list(by_name)
        chosen = select_layers(self._layer_names, layers)
        return FrameFeatures(
            embedding=out.embedding[0].float().cpu().numpy(),
            layers={n: by_name[n].frames[0].float().cpu().numpy() for n in chosen},
            shift={n: float(by_name[n].shift) for n in chosen},
            offset={n: float(by_name[n].offset) for n in chosen})

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
