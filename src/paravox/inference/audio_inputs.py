"""What the Embedder accepts as audio, and the errors that name what it refuses: arrays of
float samples in [-1, 1] or int16/int32 PCM (scaled by their full range, as soundfile reads
such files), a sample rate that is a positive whole number of Hz, and the policy for audio
shorter than a bundle's minimum input."""

from __future__ import annotations

import math

import numpy as np
import torch

from paravox.errors import AudioError, ConfigError, ParavoxError

SHORT_POLICIES = ("pad", "error")


class TooShortAudioError(AudioError):
    """Audio shorter than the bundle's minimum input, under ``short="error"``: names the item,
    its length and the minimum (``kind`` ``"too_short"``)."""

    def __init__(self, name: str, length: int, minimum: int, sample_rate: int):
        self.length, self.minimum = int(length), int(minimum)
        super().__init__(
            name, f"{length} samples ({length / sample_rate:.3f} s) is shorter than this "
            f"bundle's minimum input of {minimum} samples ({minimum / sample_rate:.3f} s)",
            "use short='pad' to repeat it up to the minimum, or drop the item",
            kind="too_short")


class InputShapeError(ParavoxError, ValueError):
    """An array input whose shape is not a 1-D mono wave (a 2-D array needs
    ``channels="mean"``; several utterances are a list of 1-D arrays)."""


class InputTypeError(ParavoxError, TypeError):
    """An input that is not audio: not a path, or an array of a dtype with no one reading as
    samples (uint8, bool, complex, strings...): names the item and what to pass instead."""


# integer PCM read as audio, scaled by its full range (as soundfile reads such files)
PCM_SCALE = {np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2.0 ** 31}
MAX_SAMPLE_RATE = 384_000


def check_sample_rate(sample_rate) -> None:
    """``sample_rate=`` of array inputs: None or a positive whole number of Hz, else a
    ConfigError naming it (0, a negative rate, NaN or a fraction would resample to nonsense
    or fail deep inside the resampler)."""
    if sample_rate is None:
        return
    ok = (not isinstance(sample_rate, bool) and isinstance(sample_rate, (int, float, np.number))
          and math.isfinite(float(sample_rate)) and float(sample_rate) == int(sample_rate)
          and 1 <= int(sample_rate) <= MAX_SAMPLE_RATE)
    if not ok:
        raise ConfigError(f"sample_rate={sample_rate!r}: must be the arrays' rate in Hz, a "
                          f"whole number from 1 to {MAX_SAMPLE_RATE} (e.g. 16000); leave it "
                          f"out for arrays at the bundle's rate")


def as_samples(x, name: str) -> np.ndarray:
    """An array input as float32 samples (any shape; checked by the caller): float dtypes as
    they are, int16/int32 PCM scaled by its full range; anything else is refused naming the
    item (see this module's docstring)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except ValueError as exc:  # a ragged nested list
        raise InputShapeError(f"{name}: not an array of samples ({exc})") from None
    if arr.dtype.kind == "f":
        return arr.astype(np.float32, copy=False)
    if arr.dtype in PCM_SCALE:
        return (arr.astype(np.float64) / PCM_SCALE[arr.dtype]).astype(np.float32)
    what = {"b": "bool", "c": "complex", "U": "text", "S": "bytes", "O": "Python objects",
            "u": "unsigned integer", "i": "integer"}.get(arr.dtype.kind, arr.dtype.kind)
    raise InputTypeError(f"{name}: a {arr.dtype} array ({what}) is not audio paravox reads; "
                         f"give float samples in [-1, 1] (int16 or int32 PCM is scaled by its "
                         f"full range), or a file path")
