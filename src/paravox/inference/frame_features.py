"""One utterance's frame-level outputs (every encoder layer with its frame times) and the
helpers that name and time them: what frame-level probes and the ONNX frame export read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from paravox.errors import ConfigError


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
