"""What makes a checkpoint safe to resume from: written whole or not at all, and holding the
random-number state, so a resumed run continues exactly.

- :class:`AtomicCheckpointIO`: Lightning's checkpoint writer, but each checkpoint is written
  to a temporary file beside its name, synced and renamed (:mod:`paravox.utils.atomic_files`):
  a full disk or a crash mid-write leaves the previous ``last.ckpt`` intact and no truncated
  file (the run stops with one line naming the file).
- :class:`RngState`: every checkpoint holds the generators' states (torch CPU, CUDA when
  present, numpy, Python ``random``) as they were when it was saved, and a resumed run puts
  them back just before its first training batch. Data, augmentation and masks are keyed
  (they need no state), but dropout and a method's own draws (CLUB's permutation in
  Learn2Diss) use the global generators: without their state a resumed Learn2Diss or MGF run
  drifts from the uninterrupted one. Restoring just before the first batch (not when the
  checkpoint is read) keeps whatever the set-up draws between loading and training (building
  loaders, iterators) from shifting the sequence. Under DDP the state of rank 0 is saved, and
  every rank restores it (the ranks are seeded alike).
"""

from __future__ import annotations

import random
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from paravox.utils.atomic_files import atomic_path

RNG_KEY = "paravox_rng"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``torch.save`` checkpoint IO, writing each file atomically."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        """Save ``checkpoint`` to ``path`` through a synced temporary file and a rename."""
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        with atomic_path(Path(path)) as tmp, open(tmp, "wb") as fh:
            torch.save(checkpoint, fh)


def rng_state() -> dict:
    """The global generators' states as plain tensors and numbers (loadable with
    ``weights_only=True``, like the rest of a checkpoint)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss_next = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)),
                       "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
             "python": {"version": int(version), "state": torch.tensor(py_state,
                                                                        dtype=torch.int64),
                        "gauss_next": gauss_next}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Put back the generators' states saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(x) for x in p["state"].tolist()),
                     p["gauss_next"]))
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[:torch.cuda.device_count()])


class RngState(L.Callback):
    """Saves the generators' states in every checkpoint and restores them when a run resumes,
    just before its first training batch (see the module docstring)."""

    def __init__(self):
        self._pending: dict | None = None

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint[RNG_KEY] = rng_state()

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        self._pending = checkpoint.get(RNG_KEY)  # a checkpoint from before: nothing to put back

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if self._pending is not None:
            set_rng_state(self._pending)
            self._pending = None
