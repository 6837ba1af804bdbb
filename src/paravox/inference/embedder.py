"""Utterance embeddings from a bundle: whole utterances, or fixed-length chunks averaged; and
frame-level outputs of every encoder layer with their frame times (:meth:`Embedder.frames`).

Inputs are checked before they reach the model: audio shorter than the bundle's minimum
(:attr:`Embedder.min_samples`) is repeat-tiled up to it (or refused, ``short="error"``),
NaN/Inf samples and 2-D arrays whose layout is not stated are refused with an error naming the
item, and :func:`embed_manifest` can skip bad rows, listing them, instead of failing on the
first one.

Arrays: float samples in [-1, 1] (float16/32/64); int16 and int32 PCM are accepted and scaled
by their full range (``x / 32768``, ``x / 2**31``), as soundfile reads such files. Other
dtypes (uint8, int8, int64, bool, complex, strings, objects) are refused: there is no one
reading of them as audio. An array carries no sample rate: without ``sample_rate=`` it is
taken to be at the bundle's rate, and each Embedder warns once that it assumed so (a 48 kHz
array would otherwise be embedded as 16 kHz audio without a word). A file knows its rate."""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from paravox.audio.io import load_audio, resample
from paravox.data.crops import fit_length
from paravox.errors import AudioError, ConfigError, ParavoxError
from paravox.inference.audio_inputs import (
    SHORT_POLICIES,
    InputShapeError,
    InputTypeError,
    TooShortAudioError,
    as_samples,
    check_sample_rate,
)
from paravox.inference.batching import WINDOW_ROWS, padded_features, wave_batches
from paravox.inference.bundle import load_bundle_encoder
from paravox.inference.frame_features import FrameFeatures, frontend_frame_shift, select_layers
from paravox.utils.checks import torch_device

ON_ERROR = ("raise", "skip")


@dataclass
class BadEmbedItem:
    """A manifest row that could not be embedded: its id, audio path and the reason
    (``"<kind>: <message>"``, kind one of missing/corrupt/empty/nan/segment/too_short)."""

    id: str
    path: str
    reason: str

    @property
    def kind(self) -> str:
        """The reason's prefix, e.g. ``"missing"``."""
        return self.reason.split(":", 1)[0]


def describe_bad(bad: Sequence[BadEmbedItem], limit: int = 5) -> str:
    """``"a (missing), b (nan) and 3 more"``: the first ``limit`` bad items by id and kind."""
    shown = ", ".join(f"{b.id} ({b.kind})" for b in bad[:limit])
    return shown + (f" and {len(bad) - limit} more" if len(bad) > limit else "")


class TooManyBadItemsError(ParavoxError):
    """More of a manifest's rows failed than ``max_bad_fraction`` allows, or none worked.
    ``bad``: the failed rows; ``embeddings``: the good ones; ``total``: rows in all."""

    def __init__(self, bad: list[BadEmbedItem], embeddings: dict[str, np.ndarray],
                 total: int, max_bad_fraction: float):
        self.bad, self.embeddings, self.total = bad, embeddings, total
        if not embeddings:
            head = f"none of the {total} utterances could be embedded"
        else:
            head = (f"{len(bad)} of {total} utterances could not be embedded, more than "
                    f"max_bad_fraction={max_bad_fraction:g} allows")
        super().__init__(f"{head}: {describe_bad(bad)}; fix or drop them (first: "
                         f"{bad[0].reason if bad else '-'}), or raise max_bad_fraction")


class Embedder:
    """``Embedder.from_bundle(path).embed(x)`` with ``x`` a file path, a mono array at the
    bundle's rate (16 kHz; ``sample_rate=`` resamples another), or a list of them.
    ``chunk_seconds``: split each utterance into chunks of that length (the last, shorter one
    kept when at least half a chunk), embed them in batches and average; ``None`` embeds whole
    utterances: a list of them in zero-padded batches of similar length when the encoder
    masks its padding exactly (``pads_exactly``: ECAPA, x-vector), else one at a time; either
    way an utterance's embedding does not depend on what it is batched with.

    ``short``: what to do with audio shorter than :attr:`min_samples` (which the front end and
    encoder need to run at all). ``"pad"`` (default) repeat-tiles it up to the minimum, the
    same ``'repeat'`` policy as the training crops' default (Kaldi/WeSpeaker practice): the
    tiled copy keeps the utterance's spectrum and level, where zeros would add silence the
    model never saw in training. ``"error"`` raises :class:`TooShortAudioError`.
    NaN/Inf samples always raise an :class:`~paravox.errors.AudioError` (kind ``"nan"``) naming
    the item: no input gives a NaN embedding.
    """

    def __init__(self, encoder, fbank, config: dict | None = None,
                 device: str | torch.device = "cpu", short: str = "pad"):
        if short not in SHORT_POLICIES:
            raise ConfigError(f"short='{short}': choose one of {SHORT_POLICIES}")
        torch_device("device", str(device))  # a device this machine has, else one line
        self.device = torch.device(device)
        self.encoder = encoder.eval().to(self.device)
        self.fbank = fbank.eval().to(self.device)
        self.config = config or {}
        self.short = short
        self.sample_rate = fbank.cfg.sample_rate
        # layer frame times are counted in the front end's frames
        self.encoder.input_frame_shift = frontend_frame_shift(self.fbank)
        self._layer_names: list[str] | None = None
        self._rate_assumed = False  # warned that an array was taken at the bundle's rate

    @classmethod
    def from_bundle(cls, path: str | Path, device: str | torch.device = "cpu",
                    short: str = "pad") -> Embedder:
        """The embedder of a bundle folder (:func:`~paravox.inference.bundle.export_bundle`)."""
        return cls(*load_bundle_encoder(path), device=device, short=short)

    @property
    def dim(self) -> int:
        """Embedding size."""
        return self.encoder.embedding_dim

    @cached_property
    def min_samples(self) -> int:
        """The shortest wave (samples at :attr:`sample_rate`) this bundle embeds: enough for
        the encoder's :meth:`~paravox.models.base.Encoder.min_frames` (log-mel: ``n // hop + 1``
        frames; a waveform front end: one frame per sample) and, with reflect padding, more
        than ``n_fft // 2`` samples (257 for the default 512-point FFT). Computed once: the
        architecture does not change."""
        min_frames = getattr(self.encoder, "min_frames", None)
        frames = int(min_frames()) if callable(min_frames) else 1
        hop = getattr(self.fbank, "hop_length", None)
        if hop is None:  # waveform front end: its frames are samples
            return max(1, frames)
        need = max(1, (frames - 1) * int(hop))
        cfg = self.fbank.cfg
        if getattr(cfg, "pad_mode", "reflect") == "reflect":
            need = max(need, cfg.n_fft // 2 + 1)
        return need

    def _wave(self, x, name: str = "input", sample_rate: int | None = None,
              channels: str | None = None) -> np.ndarray:
        """One input as a finite 1-D float32 wave at :attr:`sample_rate` (not yet fitted to
        :attr:`min_samples`); errors name the item (``name``, or the file)."""
        if channels not in (None, "mean"):
            raise ConfigError(f"channels='{channels}': choose None (mono input) or 'mean'")
        check_sample_rate(sample_rate)
        if isinstance(x, (str, Path)):  # the file says its rate; load_audio checks the rest
            return load_audio(x, target_sr=self.sample_rate)
        wave = as_samples(x, name)
        if wave.ndim == 0:
            raise InputShapeError(f"{name}: a single number is not a waveform; pass a 1-D "
                                  f"array of samples (a list of numbers is a list of inputs: "
                                  f"wrap it in np.asarray for one waveform)")
        if wave.ndim == 2:
            if channels != "mean":
                raise InputShapeError(
                    f"{name}: a 2-D array {tuple(wave.shape)} is not taken as several "
                    f"utterances; pass channels='mean' to average its channels (the shorter "
                    f"axis, as load_audio does), or a list of 1-D arrays for several "
                    f"utterances")
            if wave.shape[0] == wave.shape[1]:
                raise InputShapeError(f"{name}: cannot tell channels from samples in a "
                                      f"{tuple(wave.shape)} array; average it yourself")
            wave = wave.mean(axis=int(np.argmin(wave.shape)))
        elif wave.ndim != 1:
            raise InputShapeError(f"{name}: expected a 1-D mono waveform (or 2-D with "
                                  f"channels='mean'), got shape {tuple(wave.shape)}")
        if wave.size == 0:
            raise AudioError(name, "holds no samples", "drop the item", kind="empty")
        if not np.isfinite(wave).all():
            raise AudioError(name, "audio contains NaN or Inf samples", "clean or drop it",
                             kind="nan")
        if sample_rate is None:
            self._assume_rate()
        elif int(sample_rate) != self.sample_rate:
            wave = resample(wave, int(sample_rate), self.sample_rate)
        return np.ascontiguousarray(wave, dtype=np.float32)

    def _assume_rate(self) -> None:
        """Warn once per Embedder that array inputs are taken at the bundle's rate."""
        if not self._rate_assumed:
            self._rate_assumed = True
            frame, level = sys._getframe(0), 1  # the warning points at the caller's line
            while frame is not None and (frame.f_globals.get("__name__") == __name__ or str(
                    frame.f_globals.get("__name__")).startswith("torch.")):  # @no_grad
                frame, level = frame.f_back, level + 1
            warnings.warn(f"an array input has no sample rate: it is taken to be at the "
                          f"bundle's {self.sample_rate} Hz; pass sample_rate=<its rate> to "
                          f"embed()/frames() to have it resampled (this Embedder warns once)",
                          UserWarning, stacklevel=level)

    def _fit(self, wave: np.ndarray, name: str) -> np.ndarray:
        """``wave`` brought up to :attr:`min_samples` by the ``short`` policy."""
        need = self.min_samples
        if wave.size >= need:
            return wave
        if self.short == "error":
            raise TooShortAudioError(name, wave.size, need, self.sample_rate)
        return fit_length(wave, need, "repeat")

    def _check_chunk(self, chunk_seconds: float | None) -> None:
        if chunk_seconds is None:
            return
        n = int(round(chunk_seconds * self.sample_rate))
        if n < self.min_samples:
            shortest = math.ceil(1000 * self.min_samples / self.sample_rate) / 1000
            raise ConfigError(f"chunk length {chunk_seconds} s (--chunk-seconds / "
                              f"chunk_seconds): chunks of {n} samples are shorter than this "
                              f"bundle's minimum input of {self.min_samples} samples; give at "
                              f"least {shortest:.3f} s")

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

    def _embed_wave(self, wave: np.ndarray, chunk_seconds: float | None, batch_size: int,
                    name: str) -> np.ndarray:
        """One checked wave's embedding (fitted to the minimum, chunked if asked)."""
        wave = self._fit(wave, name)
        if chunk_seconds is None:
            emb = self._forward(wave[None])[0]
        else:
            chunks = self._chunks(wave, chunk_seconds)
            # chunks of one utterance share a length except a short single chunk: batch them
            embs = [self._forward(np.stack(chunks[i:i + batch_size]))
                    for i in range(0, len(chunks), batch_size)]
            emb = np.concatenate(embs).mean(0)
        return _finite(emb, name)

    @property
    def batches_whole(self) -> bool:
        """Whether whole utterances go through the encoder in padded batches
        (its ``pads_exactly``)."""
        return bool(getattr(self.encoder, "pads_exactly", False))

    @torch.no_grad()
    def _embed_waves(self, waves: Sequence[np.ndarray], names: Sequence[str]
                     ) -> list[np.ndarray]:
        """Whole-utterance embeddings of checked waves, in their order: padded batches of
        similar length (:mod:`~paravox.inference.batching`) when :attr:`batches_whole`, else
        one forward each. Equals :meth:`_embed_wave` per wave to float rounding."""
        if not self.batches_whole:
            return [self._embed_wave(w, None, 1, n) for w, n in zip(waves, names)]
        fitted = [self._fit(w, n) for w, n in zip(waves, names)]
        out: list[np.ndarray | None] = [None] * len(fitted)
        for batch in wave_batches(self.fbank, fitted):
            feats, lengths = padded_features(self.fbank, [fitted[i] for i in batch],
                                             self.device)
            embs = self.encoder(feats, lengths).embedding.float().cpu().numpy()
            for i, emb in zip(batch, embs):
                out[i] = _finite(emb, names[i])
        return out

    @property
    def layer_names(self) -> list[str]:
        """The encoder's frame-level layers, input side first (from one short forward)."""
        if self._layer_names is None:
            n = max(self.sample_rate, self.min_samples)
            dummy = np.random.default_rng(0).standard_normal(n)
            with torch.no_grad():
                feats, _ = self.fbank(torch.from_numpy(dummy.astype(np.float32)[None])
                                      .to(self.device))
                out = self.encoder(feats, return_layers=True)
            self._layer_names = [layer.name for layer in out.layers]
        return list(self._layer_names)

    @torch.no_grad()
    def frames(self, x, layers: str | int | Sequence[int | str] = "all", *,
               sample_rate: int | None = None, channels: str | None = None) -> FrameFeatures:
        """Frame-level outputs of one utterance (a path or an array), whole-utterance
        forward: the embedding and the chosen layers (``"all"``, an index, a name or a list
        of them; see :attr:`layer_names`) with their frame shift and offset in seconds.
        ``sample_rate``/``channels`` as in :meth:`embed`; short audio follows ``short`` (a
        padded wave's frames cover the tiled copy too)."""
        name = str(x) if isinstance(x, (str, Path)) else "input"
        wave = self._fit(self._wave(x, name, sample_rate, channels), name)
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

    @torch.no_grad()
    def frames_many(self, waves: Sequence[np.ndarray],
                    layers: str | int | Sequence[int | str] = "all") -> list[FrameFeatures]:
        """:meth:`frames` of several checked waves (at :attr:`sample_rate`), in their order:
        padded batches of similar length when :attr:`batches_whole` (each layer cut to the
        utterance's valid frames: to float rounding what :meth:`frames` gives it alone),
        else one forward each."""
        if not self.batches_whole:
            return [self.frames(w, layers, sample_rate=self.sample_rate) for w in waves]
        fitted = [self._fit(w, f"input {i}") for i, w in enumerate(waves)]
        out: list[FrameFeatures | None] = [None] * len(fitted)
        for batch in wave_batches(self.fbank, fitted):
            feats, lengths = padded_features(self.fbank, [fitted[i] for i in batch],
                                             self.device)
            res = self.encoder(feats, lengths, return_layers=True)
            by_name = {layer.name: layer for layer in res.layers}
            self._layer_names = list(by_name)
            chosen = select_layers(self._layer_names, layers)
            for j, i in enumerate(batch):
                kept = {}
                for n in chosen:
                    layer = by_name[n]
                    valid = (layer.frames.shape[1] if layer.lengths is None
                             else int(layer.lengths[j]))
                    kept[n] = layer.frames[j, :valid].float().cpu().numpy()
                out[i] = FrameFeatures(
                    embedding=res.embedding[j].float().cpu().numpy(), layers=kept,
                    shift={n: float(by_name[n].shift) for n in chosen},
                    offset={n: float(by_name[n].offset) for n in chosen})
        return out

    def embed(self, x, chunk_seconds: float | None = None, batch_size: int = 32, *,
              sample_rate: int | None = None, channels: str | None = None) -> np.ndarray:
        """``[D]`` for one input (a path or an array), ``[N, D]`` for a list of them.

        ``sample_rate``: the rate of array inputs, resampled (soxr, as
        :func:`~paravox.audio.io.load_audio` does) when it differs from the bundle's; left
        out, arrays are taken at the bundle's rate (warned once per Embedder); files carry
        their own rate. An array is always one utterance: a 2-D one (``[channels,
        samples]`` or ``[samples, channels]``) raises :class:`InputShapeError` unless
        ``channels="mean"`` averages its shorter axis; several utterances are a list (an
        empty list gives a ``[0, D]`` array). Array dtypes: see the module docstring."""
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        single = isinstance(x, (str, Path, np.ndarray, np.generic))
        if not single and not isinstance(x, Iterable):
            raise InputTypeError(f"input: a {type(x).__name__} is not audio; give a file path, "
                                 f"a 1-D array of samples or a list of them")
        items = [x] if single else list(x)
        if not items:  # nothing to embed: an empty [0, D] batch, as for any list
            check_sample_rate(sample_rate)
            return np.zeros((0, self.dim), dtype=np.float32)
        if chunk_seconds is None and self.batches_whole and len(items) > 1:
            names = [str(x) if isinstance(x, (str, Path)) else f"input {i}"
                     for i, x in enumerate(items)]
            waves = [self._wave(x, n, sample_rate, channels) for x, n in zip(items, names)]
            return np.stack(self._embed_waves(waves, names))
        out = np.stack(list(self.iter_embed(items, chunk_seconds, batch_size,
                                            sample_rate=sample_rate, channels=channels)))
        return out[0] if single else out

    def iter_embed(self, items: Sequence | Iterable, chunk_seconds: float | None = None,
                   batch_size: int = 32, *, sample_rate: int | None = None,
                   channels: str | None = None) -> Iterable[np.ndarray]:
        """Embeddings one by one, in input order (for progress bars over long lists);
        inputs as in :meth:`embed` (a single path or array counts as a list of one)."""
        self._check_chunk(chunk_seconds)
        if isinstance(items, (str, Path, np.ndarray, torch.Tensor)):
            items = [items]
        for i, x in enumerate(items):
            name = str(x) if isinstance(x, (str, Path)) else f"input {i}"
            wave = self._wave(x, name, sample_rate, channels)
            yield self._embed_wave(wave, chunk_seconds, batch_size, name)


def _finite(emb: np.ndarray, name: str) -> np.ndarray:
    """``emb``, or an :class:`AudioError` naming the item when the model gave NaN/Inf."""
    if not np.isfinite(emb).all():
        raise AudioError(name, "the model gave a non-finite embedding",
                         "check the audio's level and the bundle", kind="nan")
    return emb


def embed_loaded(embedder: Embedder, loaded: list, failed) -> dict[str, np.ndarray]:
    """Embeddings of loaded ``(row, path, wave)`` in padded batches; a row whose audio is too
    short (``short="error"``) or gives a non-finite embedding goes to ``failed(row, path,
    error)`` and the rest of its batch is embedded without it."""
    names = [f"{path} (id {r.id})" for r, path, _ in loaded]
    try:
        embs = embedder._embed_waves([w for _, _, w in loaded], names)
    except AudioError:  # find the item(s) at fault: embed one at a time
        embs = []
        for (r, path, wave), name in zip(loaded, names):
            try:
                embs.append(embedder._embed_wave(wave, None, 1, name))
            except AudioError as exc:
                failed(r, path, exc)
                embs.append(None)
    return {r.id: e for (r, _, _), e in zip(loaded, embs) if e is not None}


def embed_manifest(embedder: Embedder, manifest, chunk_seconds: float | None = None,
                   progress: bool = True, *, on_error: str = "raise",
                   max_bad_fraction: float = 0.1):
    """``{utterance id: embedding}`` for every row of a manifest, with a progress bar.

    ``on_error="raise"`` (default): the first row that cannot be embedded (missing, corrupt,
    empty, NaN audio, a segment outside its file, too short under ``short="error"``) raises
    its :class:`~paravox.errors.AudioError`. ``on_error="skip"``: returns ``(embeddings,
    bad)``, the good rows' embeddings and a :class:`BadEmbedItem` (id, path, reason) per
    failed row; more than ``max_bad_fraction`` of the rows failed, or none worked, raises
    :class:`TooManyBadItemsError` (naming how many and the first few; it carries both)."""
    if on_error not in ON_ERROR:
        raise ConfigError(f"on_error='{on_error}': choose one of {ON_ERROR}")
    if not 0.0 <= max_bad_fraction <= 1.0:
        raise ConfigError(f"max_bad_fraction={max_bad_fraction}: give a fraction in [0, 1]")
    embedder._check_chunk(chunk_seconds)
    rows = list(manifest)
    if not rows and on_error == "skip":
        raise ParavoxError(f"manifest {getattr(manifest, 'source', '')} has no rows: nothing "
                           f"to embed")
    good: dict[str, np.ndarray] = {}
    bad: list[BadEmbedItem] = []

    def failed(r, path, exc: AudioError) -> None:
        if on_error == "raise":
            raise exc
        bad.append(BadEmbedItem(r.id, str(path), f"{exc.kind}: {exc}"))

    # whole utterances of an exactly padding encoder: read a window of rows, embed it in
    # padded batches; otherwise (chunks, other encoders) one row at a time
    window = WINDOW_ROWS if chunk_seconds is None and embedder.batches_whole else 1
    with tqdm(total=len(rows), desc="embedding", unit="utt", disable=not progress) as bar:
        for start in range(0, len(rows), window):
            loaded = []
            for r in rows[start:start + window]:
                path = manifest.audio_path(r)
                try:
                    wave = load_audio(path, r.offset, r.duration,
                                      target_sr=embedder.sample_rate)
                    if window == 1:
                        good[r.id] = embedder._embed_wave(wave, chunk_seconds, 32,
                                                          f"{path} (id {r.id})")
                    else:
                        loaded.append((r, path, wave))
                except AudioError as exc:
                    failed(r, path, exc)
            if loaded:
                good.update(embed_loaded(embedder, loaded, failed))
            bar.update(min(window, len(rows) - start))
    good = {r.id: good[r.id] for r in rows if r.id in good}  # in manifest order
    if on_error == "raise":
        return good
    if not good or len(bad) > max_bad_fraction * len(rows):
        raise TooManyBadItemsError(bad, good, len(rows), max_bad_fraction)
    return good, bad
