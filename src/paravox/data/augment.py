"""Waveform augmentation: additive noise, reverberation, speed perturbation, gain; and the
random channel (EQ + noise + reverb) the corpus puts on test audio.

Every function takes an explicit ``numpy.random.Generator`` so that a run is reproducible
whatever the number of data-loader workers.

Room impulse responses can come from the user's folders (e.g. the RIRS_NOISES set) or be
*simulated* with Polack's statistical model: a direct path, a few sparse early reflections and
an exponentially decaying Gaussian tail whose decay sets RT60, low-pass filtered over time to
mimic air absorption. It needs no dependency, costs microseconds, and controls exactly the two
quantities speaker-verification robustness depends on most (RT60 and direct-to-reverberant
ratio); an image-source simulator (pyroomacoustics) adds room geometry we do not need here.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soxr

from paravox.audio.io import TARGET_SR, load_audio
from paravox.errors import AudioError, ConfigError

log = logging.getLogger(__name__)

AUDIO_EXTS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".m4a", ".aac")  # see paravox.audio.io


# ---------------------------------------------------------------------------------------------
# Primitive operations
# ---------------------------------------------------------------------------------------------

def fft_convolve(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Full linear convolution of ``x`` with ``h`` (length ``len(x) + len(h) - 1``), float32.

    Through the FFT, because room impulse responses are thousands of taps long.
    """
    n = x.size + h.size - 1
    nfft = 1 << (n - 1).bit_length()
    y = np.fft.irfft(np.fft.rfft(x, nfft) * np.fft.rfft(h, nfft), nfft)[:n]
    return y.astype(np.float32)


def rms(x: np.ndarray) -> float:
    """Root-mean-square level (accumulated in float64; never 0, so safe to divide by): the
    level that SNRs and level-preserving operations refer to."""
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-20))


def add_noise(wave: np.ndarray, noise: np.ndarray, snr_db: float, rng: np.random.Generator
              ) -> np.ndarray:
    """Mix a random stretch of ``noise`` into ``wave`` at ``snr_db``."""
    if noise.size < wave.size:
        noise = np.tile(noise, -(-wave.size // noise.size))
    start = int(rng.integers(0, noise.size - wave.size + 1))
    seg = noise[start:start + wave.size]
    scale = rms(wave) / (rms(seg) * 10 ** (snr_db / 20))
    return (wave + scale * seg).astype(np.float32)


def apply_rir(wave: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve with ``rir``, keep the direct path aligned and the level unchanged."""
    peak = int(np.argmax(np.abs(rir)))
    y = fft_convolve(wave, rir)[peak:peak + wave.size]
    return (y * (rms(wave) / rms(y))).astype(np.float32)


def speed_perturb(wave: np.ndarray, factor: float, sr: int = TARGET_SR) -> np.ndarray:
    """Kaldi-style speed perturbation: tempo and pitch both scale by ``factor``."""
    if factor == 1.0:
        return wave
    return soxr.resample(wave, sr * factor, sr, quality="HQ").astype(np.float32)


def random_eq(wave: np.ndarray, rng: np.random.Generator, max_db: float = 8.0,
              n_bands: int = 8, sr: int = TARGET_SR) -> np.ndarray:
    """A smooth random frequency response (a microphone/channel colouring)."""
    spec = np.fft.rfft(wave)
    freqs = np.fft.rfftfreq(wave.size, 1 / sr)
    knots_hz = np.geomspace(50, sr / 2, n_bands)
    gains_db = rng.uniform(-max_db, max_db, n_bands)
    resp_db = np.interp(np.log(np.maximum(freqs, 50)), np.log(knots_hz), gains_db)
    y = np.fft.irfft(spec * 10 ** (resp_db / 20), wave.size).astype(np.float32)
    return (y * (rms(wave) / rms(y))).astype(np.float32)


def band_limit(wave: np.ndarray, low_hz: float, high_hz: float, sr: int = TARGET_SR,
               width_octaves: float = 0.25) -> np.ndarray:
    """A band-pass channel (telephone, cheap microphone, low-rate codec): the spectrum kept
    between ``low_hz`` and ``high_hz`` with raised-cosine edges ``width_octaves`` wide."""
    spec = np.fft.rfft(wave)
    f = np.maximum(np.fft.rfftfreq(wave.size, 1 / sr), 1e-3)

    def edge(x: np.ndarray) -> np.ndarray:  # 0 below -width/2 octaves, 1 above +width/2
        t = np.clip(x / width_octaves + 0.5, 0.0, 1.0)
        return 0.5 - 0.5 * np.cos(np.pi * t)

    resp = edge(np.log2(f / low_hz)) * edge(np.log2(high_hz / f))
    return np.fft.irfft(spec * resp, wave.size).astype(np.float32)


def coloured_noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """white / pink (1/f) / brown (1/f^2) Gaussian noise, unit RMS."""
    white = rng.standard_normal(n)
    if kind == "white":
        x = white
    else:
        exponent = {"pink": 0.5, "brown": 1.0}[kind]
        spec = np.fft.rfft(white)
        f = np.arange(spec.size, dtype=np.float64)
        f[0] = 1.0
        x = np.fft.irfft(spec / f ** exponent, n)
    return (x / rms(x)).astype(np.float32)


def simulate_rir(rng: np.random.Generator, rt60: float, drr_db: float, sr: int = TARGET_SR
                 ) -> np.ndarray:
    """Statistical room impulse response (see the module docstring).

    The tail is Gaussian noise split into octave bands, each decaying with its own RT60
    (high bands faster: air and wall absorption), plus sparse early reflections.
    """
    length = int(sr * min(1.5 * rt60 + 0.05, 2.0))
    t = np.arange(length) / sr
    spec = np.fft.rfft(rng.standard_normal(length))
    freqs = np.fft.rfftfreq(length, 1 / sr)
    edges = (0, 500, 1000, 2000, 4000, sr / 2 + 1)
    band_rt60 = rt60 * np.array([1.2, 1.1, 1.0, 0.8, 0.6])
    tail = np.zeros(length)
    for (lo, hi), band_t in zip(zip(edges[:-1], edges[1:]), band_rt60):
        band = np.fft.irfft(np.where((freqs >= lo) & (freqs < hi), spec, 0), length)
        tail += band * np.exp(-6.908 * t / band_t)  # -60 dB at t = band RT60
    onset = int(0.002 * sr)
    tail[:onset] = 0.0
    for _ in range(int(rng.integers(3, 8))):  # sparse early reflections within 50 ms
        k = int(rng.integers(onset, int(0.05 * sr)))
        tail[k] += rng.uniform(-0.5, 0.5) * np.abs(tail).max()
    direct = np.sqrt(float(np.sum(tail**2)) * 10 ** (drr_db / 10))
    tail[0] = direct
    return (tail / np.max(np.abs(tail))).astype(np.float32)


def list_audio_files(folders: list[str]) -> list[Path]:
    """Audio files (``AUDIO_EXTS``) under each folder, recursively and sorted, so that a bank
    built from them, and hence a run, is reproducible; a missing folder is a ConfigError."""
    files: list[Path] = []
    for folder in folders:
        p = Path(folder)
        if not p.is_dir():
            raise ConfigError(f"augmentation folder not found: {folder} (set the right path, or "
                              f"leave the list empty to use generated noises/RIRs)")
        files += sorted(f for f in p.rglob("*") if f.suffix.lower() in AUDIO_EXTS)
    return files


# ---------------------------------------------------------------------------------------------
# Banks and the composed augmenter
# ---------------------------------------------------------------------------------------------

# Banks built in this process, by everything that determines their content (settings, seed,
# and each source file's path, size and modification time): a pipeline that trains many times
# with the same augmentation (staged fine-tuning, a study's runs) builds each bank once.
# Two kept: one augmenter's noise and RIR banks (a user's RIR folder can be gigabytes).
_BANKS: OrderedDict[tuple, object] = OrderedDict()
_BANKS_KEPT = 2


def _files_key(files: list) -> tuple:
    """Each source's path, size and modification time; a member of a shard (an
    :class:`~paravox.audio.io.AudioMember`) by its shard's and its own place in it."""
    out = []
    for f in files:
        where = getattr(f, "container", f)
        try:
            st = Path(where).stat()
            out.append((str(f), getattr(f, "offset", 0), getattr(f, "size", 0), st.st_size,
                        st.st_mtime_ns))
        except OSError:  # unreadable: named when the bank is built
            out.append((str(f), -1, -1, -1, -1))
    return tuple(out)


def _cached_bank(key: tuple, build: Callable[[], object]):
    """``build()``, or the bank an identical earlier call built (its arrays read-only, as
    every augmenter only reads them)."""
    if key in _BANKS:
        _BANKS.move_to_end(key)
        return _BANKS[key]
    bank = build()
    for arr in getattr(bank, "clips", None) or getattr(bank, "rirs", []):
        arr.setflags(write=False)
    _BANKS[key] = bank
    while len(_BANKS) > _BANKS_KEPT:
        _BANKS.popitem(last=False)
    return bank

@dataclass
class AugmentConfig:
    """Settings of the waveform augmenter: for each augmentation its probability (0 = off)
    and ranges: additive noise (``noise_prob``, ``snr_db``; the noise bank from
    ``noise_dirs``, ``generated_noises`` and corpus babble), reverberation (``reverb_prob``;
    RIRs from ``rir_dirs``, else ``n_simulated_rirs`` drawn with ``rt60`` and ``drr_db``),
    speed perturbation (``speed_prob``, ``speeds``), gain (``gain_prob``, ``gain_db``) and the
    channel: random EQ (``eq_prob``, ``eq_db``) and band-limiting (``band_prob``,
    ``band_low_hz``, ``band_high_hz``).
    ``seed`` fixes the banks; the per-crop draws come from the caller's generator."""

    noise_prob: float = 0.6
    snr_db: tuple[float, float] = (5.0, 20.0)
    noise_dirs: list[str] = field(default_factory=list)  # e.g. MUSAN noise/music folders
    generated_noises: list[str] = field(default_factory=lambda: ["white", "pink", "brown"])
    babble_speakers: tuple[int, int] = (3, 7)  # babble from the corpus itself when > 0
    n_babble: int = 16
    reverb_prob: float = 0.3
    rir_dirs: list[str] = field(default_factory=list)  # e.g. RIRS_NOISES/simulated_rirs
    n_simulated_rirs: int = 64
    rt60: tuple[float, float] = (0.2, 0.9)
    drr_db: tuple[float, float] = (-3.0, 12.0)
    speed_prob: float = 0.0
    speeds: tuple[float, ...] = (0.9, 1.1)
    gain_prob: float = 0.5
    gain_db: tuple[float, float] = (-6.0, 6.0)
    # channel colouring after reverb and noise (0 = off, the demo recipes' setting): a smooth
    # random frequency response of +-eq_db, and a band-pass with a random low edge in
    # band_low_hz and high edge in band_high_hz (telephone-like at the narrow end)
    eq_prob: float = 0.0
    eq_db: float = 8.0
    band_prob: float = 0.0
    band_low_hz: tuple[float, float] = (50.0, 400.0)
    band_high_hz: tuple[float, float] = (3000.0, 7500.0)
    seed: int = 0  # seed of the banks (generated noises, simulated RIRs, babble)

    def __post_init__(self):
        for key in ("eq_prob", "band_prob"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"augment.{key}={getattr(self, key)}: a probability in [0, 1]")
        lo, hi = self.band_low_hz, self.band_high_hz
        if not 0 < lo[0] <= lo[1] < hi[0] <= hi[1] <= TARGET_SR / 2:
            raise ConfigError(f"augment.band_low_hz={list(lo)}, band_high_hz={list(hi)}: need "
                              f"0 < low ranges < high ranges <= {TARGET_SR // 2} Hz")


class NoiseBank:
    """Noise clips at 16 kHz: user folders, generated coloured noise, corpus babble."""

    def __init__(self, clips: list[np.ndarray], names: list[str]):
        if not clips:
            raise ValueError("empty noise bank")
        self.clips, self.names = clips, names
        self.unreadable: dict[str, str] = {}  # babble source -> why it was left out

    @classmethod
    def build(cls, cfg: AugmentConfig, babble_sources: list[Path] | None = None,
              seconds: float = 8.0) -> NoiseBank:
        """Load the user's noise files, generate ``seconds``-long coloured noises and, when
        ``babble_sources`` (utterance files) are given, mix babble of ``cfg.babble_speakers``
        talkers. Deterministic for a given ``cfg.seed`` (and file list), so built once per
        process for the same settings and unchanged files."""
        files = list_audio_files(cfg.noise_dirs)
        babble = list(babble_sources or [])
        key = ("noise", cfg.seed, tuple(cfg.generated_noises), tuple(cfg.babble_speakers),
               cfg.n_babble, seconds, _files_key(files), _files_key(babble))
        bank = _cached_bank(key, lambda: cls._build(cfg, files, babble, seconds))
        if bank.unreadable:
            first = ", ".join(f"{f} ({k})" for f, k in list(bank.unreadable.items())[:3])
            log.warning("babble noise: %d unreadable corpus file(s) left out (%s)",
                        len(bank.unreadable), first)
        return bank

    @classmethod
    def _build(cls, cfg: AugmentConfig, files: list[Path], babble_sources: list[Path],
               seconds: float) -> NoiseBank:
        rng = np.random.default_rng([cfg.seed, 1])
        clips, names = [], []
        for f in files:
            clips.append(load_audio(f))
            names.append(str(f))
        n = int(seconds * TARGET_SR)
        for kind in cfg.generated_noises:
            clips.append(coloured_noise(kind, n, rng))
            names.append(f"generated:{kind}")
        lo, hi = cfg.babble_speakers
        unreadable: dict[str, str] = {}
        if babble_sources and hi > 0:
            for b in range(cfg.n_babble):
                k = int(rng.integers(lo, hi + 1))
                picks = rng.choice(len(babble_sources), size=min(k, len(babble_sources)),
                                   replace=False)
                mix = np.zeros(n, np.float32)
                for i in picks:
                    try:
                        w = load_audio(babble_sources[i])
                    except AudioError as exc:  # the training data reports it by name too
                        unreadable[str(babble_sources[i])] = exc.kind
                        continue
                    if w.size == 0 or rms(w) == 0:
                        continue
                    w = np.tile(w, -(-n // w.size))[:n]
                    mix += w / rms(w)
                if rms(mix) > 0:
                    clips.append((mix / rms(mix)).astype(np.float32))
                    names.append(f"babble:{b}")
        bank = cls(clips, names)
        bank.unreadable = unreadable
        return bank

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """One clip, uniformly at random (``add_noise`` then picks a random stretch of it)."""
        return self.clips[int(rng.integers(len(self.clips)))]


class RirBank:
    """Room impulse responses at 16 kHz to reverberate crops with: the user's (e.g.
    RIRS_NOISES) or, when none are given, simulated ones (see the module docstring)."""

    def __init__(self, rirs: list[np.ndarray]):
        if not rirs:
            raise ValueError("empty RIR bank")
        self.rirs = rirs

    @classmethod
    def build(cls, cfg: AugmentConfig) -> RirBank:
        """Load every file under ``cfg.rir_dirs``; if there are none, simulate
        ``cfg.n_simulated_rirs`` with RT60 and DRR drawn from the config's ranges. Built once
        per process for the same settings and unchanged files."""
        files = list_audio_files(cfg.rir_dirs)
        if files:
            return _cached_bank(("rir files", _files_key(files)),
                                lambda: cls([load_audio(f) for f in files]))
        key = ("rir simulated", cfg.seed, cfg.n_simulated_rirs, tuple(cfg.rt60),
               tuple(cfg.drr_db))
        return _cached_bank(key, lambda: cls._simulate(cfg))

    @classmethod
    def _simulate(cls, cfg: AugmentConfig) -> RirBank:
        rng = np.random.default_rng([cfg.seed, 2])
        return cls([simulate_rir(rng, rng.uniform(*cfg.rt60), rng.uniform(*cfg.drr_db))
                    for _ in range(cfg.n_simulated_rirs)])

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """One impulse response, uniformly at random."""
        return self.rirs[int(rng.integers(len(self.rirs)))]


class WaveAugment:
    """Speed (whole utterance) then, per crop: reverb -> noise -> channel (EQ, band-limit)
    -> gain."""

    def __init__(self, cfg: AugmentConfig, babble_sources: list[Path] | None = None):
        self.cfg = cfg
        self.noises = NoiseBank.build(cfg, babble_sources) if cfg.noise_prob > 0 else None
        self.rirs = RirBank.build(cfg) if cfg.reverb_prob > 0 else None

    def utterance(self, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Whole-utterance step (speed perturbation), applied before cropping: it changes
        the length, so crops must be cut afterwards."""
        if self.cfg.speed_prob > 0 and rng.random() < self.cfg.speed_prob:
            wave = speed_perturb(wave, float(rng.choice(self.cfg.speeds)))
        return wave

    def crop(self, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Per-crop steps, each with its probability: reverb -> noise -> EQ -> band-limit ->
        gain (a step with probability 0 draws nothing, so it leaves the others' draws as
        they were). Each crop of
        an utterance gets its own draw, so the views differ in channel as well as in time."""
        c = self.cfg
        if self.rirs is not None and rng.random() < c.reverb_prob:
            wave = apply_rir(wave, self.rirs.sample(rng))
        if self.noises is not None and rng.random() < c.noise_prob:
            wave = add_noise(wave, self.noises.sample(rng), rng.uniform(*c.snr_db), rng)
        if c.eq_prob > 0 and rng.random() < c.eq_prob:
            wave = random_eq(wave, rng, max_db=c.eq_db)
        if c.band_prob > 0 and rng.random() < c.band_prob:
            wave = band_limit(wave, rng.uniform(*c.band_low_hz), rng.uniform(*c.band_high_hz))
        if c.gain_prob > 0 and rng.random() < c.gain_prob:
            wave = wave * np.float32(10 ** (rng.uniform(*c.gain_db) / 20))
        return wave.astype(np.float32, copy=False)
