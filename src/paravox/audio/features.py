"""Front ends as torch modules, batched, on the model's device: log-mel filterbanks for
paravox's own encoders, and the normalised waveform for frame-level models that read samples
(wav2vec 2.0, HuBERT, WavLM). :func:`build_frontend` picks one from ``FeatureConfig.kind``.

Frame ``k`` is centred on sample ``k * hop`` (``center=True``), so a wave of ``n`` samples gives
``n // hop + 1`` frames: the same convention as the corpus' frame-level phone labels.
The mel filters follow the HTK mel scale with triangles defined in Hz (as librosa's
``htk=True, norm=None``), which lets the golden test compare against librosa directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from paravox.errors import ConfigError
from paravox.utils.checks import above, at_least, between, finite, integer, one_of

PAD_MODES = ("reflect", "constant", "replicate", "circular")
# bounds that keep a bad setting (a typo, a hostile bundle config) from asking for gigabytes
# of STFT window and filters before anything runs: far beyond any speech front end
MAX_SAMPLE_RATE = 384_000
MAX_N_FFT = 65_536
MAX_N_MELS = 1_024


@dataclass
class FeatureConfig:
    """Settings of the front end: which one (``kind``) and, for log-mel, the STFT framing
    (``win_ms``, ``hop_ms``, ``n_fft``, ``pad_mode``), the mel filterbank (``n_mels``,
    ``f_min``, ``f_max``), the log floor and per-utterance mean normalisation. The defaults
    are the usual speaker-verification features: 80 mels, 25 ms windows every 10 ms."""

    kind: str = "logmel"  # logmel | waveform (samples for wav2vec2-style encoders)
    sample_rate: int = 16000
    n_mels: int = 80
    win_ms: float = 25.0
    hop_ms: float = 10.0
    n_fft: int = 512
    f_min: float = 20.0
    f_max: float = 7600.0
    log_floor: float = 1e-6
    mean_norm: bool = True  # per-utterance mean normalisation over time (CMN)
    pad_mode: str = "reflect"

    def __post_init__(self):
        one_of("features.kind", self.kind, tuple(FRONT_ENDS))
        integer("features.sample_rate", self.sample_rate, "Hz")
        between("features.sample_rate", self.sample_rate, 1, MAX_SAMPLE_RATE, "Hz")
        if self.kind != "logmel":
            return  # the waveform front end reads nothing else
        for key, high in (("n_mels", MAX_N_MELS), ("n_fft", MAX_N_FFT)):
            integer(f"features.{key}", getattr(self, key))
            between(f"features.{key}", getattr(self, key), 2 if key == "n_fft" else 1, high)
        for key in ("win_ms", "hop_ms", "log_floor"):
            finite(f"features.{key}", getattr(self, key))
            above(f"features.{key}", getattr(self, key), 0.0)
        if self.sample_rate * self.win_ms / 1000 > self.n_fft:
            raise ConfigError(f"features.win_ms={self.win_ms}: a window of "
                              f"{self.sample_rate * self.win_ms / 1000:g} samples needs "
                              f"features.n_fft >= that (n_fft={self.n_fft})")
        if round(self.sample_rate * self.hop_ms / 1000) < 1:
            raise ConfigError(f"features.hop_ms={self.hop_ms}: less than one sample at "
                              f"{self.sample_rate} Hz")
        finite("features.f_min", self.f_min)
        finite("features.f_max", self.f_max)
        at_least("features.f_min", self.f_min, 0.0)
        if not self.f_min < self.f_max <= self.sample_rate / 2:
            raise ConfigError(f"features.f_max={self.f_max}: need f_min < f_max <= "
                              f"sample_rate / 2 (f_min={self.f_min}, sample_rate="
                              f"{self.sample_rate})")
        one_of("features.pad_mode", self.pad_mode, PAD_MODES)


def hz_to_mel(f: torch.Tensor | float) -> torch.Tensor:
    """HTK mel scale, ``2595 log10(1 + f / 700)``, in float64 so filter edges are exact."""
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(f, dtype=torch.float64) / 700.0)


def mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`hz_to_mel`: places the filter edges, equally spaced in mel, in Hz."""
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, f_min: float, f_max: float
                   ) -> torch.Tensor:
    """[n_fft//2+1, n_mels] triangular filters, peak 1, on the HTK mel scale."""
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"need 0 <= f_min < f_max <= sample_rate/2, got {f_min}, {f_max}")
    fft_hz = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    mel_pts = torch.linspace(float(hz_to_mel(f_min)), float(hz_to_mel(f_max)), n_mels + 2,
                             dtype=torch.float64)
    hz_pts = mel_to_hz(mel_pts)
    lower, centre, upper = hz_pts[:-2, None], hz_pts[1:-1, None], hz_pts[2:, None]
    rising = (fft_hz[None] - lower) / (centre - lower)
    falling = (upper - fft_hz[None]) / (upper - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0).T.contiguous().float()


class LogMelFilterbank(nn.Module):
    """Waves ``[B, N]`` (16 kHz float) -> log-mel features ``[B, T, n_mels]``.

    ``lengths`` (samples, optional) marks the valid part of each padded wave; the returned
    frame lengths follow ``n // hop + 1`` and mean normalisation uses only valid frames.
    """

    def __init__(self, cfg: FeatureConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or FeatureConfig()
        self.win_length = int(round(cfg.sample_rate * cfg.win_ms / 1000))
        self.hop_length = int(round(cfg.sample_rate * cfg.hop_ms / 1000))
        if self.win_length > cfg.n_fft:
            raise ValueError(f"win_ms={cfg.win_ms} needs n_fft >= {self.win_length}")
        self.register_buffer("window", torch.hann_window(self.win_length, periodic=True),
                             persistent=False)
        fb = mel_filterbank(cfg.n_mels, cfg.n_fft, cfg.sample_rate, cfg.f_min, cfg.f_max)
        self.register_buffer("filters", fb, persistent=False)

    def num_frames(self, num_samples: torch.Tensor | int) -> torch.Tensor | int:
        """Frames for a wave of ``num_samples`` (``n // hop + 1``): lets callers size masks and
        frame-level labels without computing features."""
        return num_samples // self.hop_length + 1

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        if wave.ndim == 1:
            wave = wave[None]
        wave = wave.float()
        if wave.shape[-1] <= self.cfg.n_fft // 2 and self.cfg.pad_mode == "reflect":
            raise ValueError(
                f"wave of {wave.shape[-1]} samples is too short for reflect padding; "
                f"need more than {self.cfg.n_fft // 2} samples"
            )
        # autocast off: the power spectrum of loud audio overflows fp16.
        with torch.autocast(device_type=wave.device.type, enabled=False):
            spec = torch.stft(
                wave, n_fft=self.cfg.n_fft, hop_length=self.hop_length,
                win_length=self.win_length, window=self.window, center=True,
                pad_mode=self.cfg.pad_mode, return_complex=True,
            )
            power = spec.real.square() + spec.imag.square()  # [B, F, T]
            mel = torch.matmul(power.transpose(1, 2), self.filters)  # [B, T, M]
            feats = torch.log(mel + self.cfg.log_floor)
        n_frames = feats.shape[1]
        if lengths is None:
            frame_lengths = torch.full((feats.shape[0],), n_frames, device=feats.device,
                                       dtype=torch.long)
        else:
            frame_lengths = torch.clamp(self.num_frames(lengths.to(feats.device)), max=n_frames)
        if self.cfg.mean_norm:
            feats = mean_normalise(feats, frame_lengths)
        return feats, frame_lengths


def mean_normalise(feats: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
    """Subtract each utterance's mean over its valid frames; padded frames become 0."""
    mask = (torch.arange(feats.shape[1], device=feats.device)[None] < frame_lengths[:, None])
    mask = mask.unsqueeze(-1).to(feats.dtype)
    mean = (feats * mask).sum(1, keepdim=True) / frame_lengths.clamp(min=1)[:, None, None]
    return (feats - mean) * mask



class WaveformFrontEnd(nn.Module):
    """Waves ``[B, N]`` -> ``[B, N, 1]``, each utterance scaled to zero mean and unit variance
    over its valid samples (what wav2vec 2.0 / HuBERT / WavLM feature extractors do); padded
    samples become 0. "Frames" are samples here, so frame lengths are sample lengths."""

    def __init__(self, cfg: FeatureConfig | None = None):
        super().__init__()
        self.cfg = cfg or FeatureConfig(kind="waveform")

    def num_frames(self, num_samples: torch.Tensor | int) -> torch.Tensor | int:
        """``num_samples`` itself: the same interface as :class:`LogMelFilterbank`, so callers
        need not know which front end they hold."""
        return num_samples

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        if wave.ndim == 1:
            wave = wave[None]
        wave = wave.float()
        n = wave.shape[-1]
        if lengths is None:
            lengths = torch.full((wave.shape[0],), n, device=wave.device, dtype=torch.long)
        lengths = torch.clamp(lengths.to(wave.device), max=n)
        mask = (torch.arange(n, device=wave.device)[None] < lengths[:, None]).to(wave.dtype)
        count = lengths.clamp(min=1)[:, None].to(wave.dtype)
        mean = (wave * mask).sum(1, keepdim=True) / count
        var = ((wave - mean).square() * mask).sum(1, keepdim=True) / count
        out = (wave - mean) / torch.sqrt(var + 1e-7) * mask
        return out.unsqueeze(-1), lengths


FRONT_ENDS = {"logmel": LogMelFilterbank, "waveform": WaveformFrontEnd}


def build_frontend(cfg: FeatureConfig) -> nn.Module:
    """The front end named by ``cfg.kind``."""
    if cfg.kind not in FRONT_ENDS:
        raise ConfigError(f"features.kind='{cfg.kind}': choose one of {sorted(FRONT_ENDS)}")
    return FRONT_ENDS[cfg.kind](cfg)
