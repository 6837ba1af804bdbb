"""Padded batches of whole utterances for inference.

One utterance per forward leaves most of a CPU's vector units idle on a small encoder: a
batch of 16 runs 2-3x faster per utterance on 2 cores (docs/benchmarks.md). Utterances differ
in length, so a batch is zero-padded; an encoder whose ``pads_exactly`` is set masks every
padded frame (:class:`~paravox.models.base.Encoder`), so the padded batch gives each utterance
the output of its own forward. The front end runs per utterance (its edge frames and its mean
normalisation depend on where the wave ends), and batches group utterances of similar length
so that little padding is computed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

BATCH_SIZE = 16  # utterances per padded batch
MAX_BATCH_FRAMES = 24_000  # padded frames per batch (16 utterances of 15 s at a 10 ms hop)
WINDOW_ROWS = 256  # manifest rows read into memory at a time, then batched by length


def length_batches(sizes: Sequence[int], batch_size: int = BATCH_SIZE,
                   max_frames: int = MAX_BATCH_FRAMES) -> list[list[int]]:
    """Indices of ``sizes`` grouped into batches, longest first: each batch holds at most
    ``batch_size`` items and at most ``max_frames`` padded frames (its longest item times its
    count); an item longer than ``max_frames`` goes alone."""
    order = sorted(range(len(sizes)), key=lambda i: -int(sizes[i]))
    batches: list[list[int]] = []
    for i in order:
        b = batches[-1] if batches else None
        # sorted longest first: the batch's first item is its longest
        if b is not None and len(b) < batch_size and sizes[b[0]] * (len(b) + 1) <= max_frames:
            b.append(i)
        else:
            batches.append([i])
    return batches


def wave_batches(fbank: torch.nn.Module, waves: Sequence[np.ndarray]) -> list[list[int]]:
    """:func:`length_batches` of waves, sized in the front end's frames (its hop; a waveform
    front end's frames are samples)."""
    hop = int(getattr(fbank, "hop_length", 1) or 1)
    return length_batches([len(w) // hop for w in waves])


def padded_features(fbank: torch.nn.Module, waves: Sequence[np.ndarray],
                    device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(feats [B, T, F], lengths [B])``: each wave through the front end on its own (the
    features of its own forward), zero-padded to the longest."""
    feats = [fbank(torch.from_numpy(np.ascontiguousarray(w)[None]).to(device))[0][0]
             for w in waves]
    lengths = torch.tensor([len(f) for f in feats], device=device)
    return pad_sequence(feats, batch_first=True), lengths
