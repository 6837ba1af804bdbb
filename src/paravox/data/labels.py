"""Labels of manifest rows: one way to read a label by name, for training and evaluation.

A label key is a row field (``speaker``, ``language``) or a key of the row's free-form
``labels`` (``style``, ``fluency``, ``age`` ... on the built-in corpus). Supervised training,
probes and fine-tuning all read labels through these helpers, so a missing label fails the same
way everywhere, naming the utterance.
"""

from __future__ import annotations

import numpy as np
import torch

from paravox.data.manifest import Manifest, ManifestRow
from paravox.errors import ManifestError

ROW_FIELDS = ("speaker", "language")


def row_label(row: ManifestRow, key: str) -> str:
    """The value of label ``key`` of a manifest row, with the row named when it is missing."""
    value = getattr(row, key, None) if key in ROW_FIELDS else row.labels.get(key)
    if value in (None, ""):
        raise ManifestError(f"utterance '{row.id}' has no '{key}' label: supervised training "
                            f"needs it on every row (is this the unlabelled pretrain split?)")
    return str(value)


def label_classes(manifest: Manifest, key: str) -> list[str]:
    """The sorted classes of label ``key`` over a manifest (the classifier's output order)."""
    return sorted({row_label(r, key) for r in manifest})


def labels_of(manifest: Manifest, key: str) -> list[str]:
    """Label ``key`` of every row, in manifest order."""
    return [row_label(r, key) for r in manifest]


def label_indices(rows, key: str, class_index: dict[str, int], device=None) -> torch.Tensor:
    """Class indices of ``rows``' ``key`` labels; an unknown label fails with its name."""
    try:
        idx = [class_index[row_label(r, key)] for r in rows]
    except KeyError as exc:
        raise ManifestError(f"label {exc} was not among the training classes") from None
    return torch.tensor(idx, device=device)


SILENCE = "sil"


def phone_inventory(manifest: Manifest) -> list[str]:
    """The phones of a manifest's alignments, silence first then sorted: the class order of
    frame-level phone targets (the built-in corpus writes the same list to phones.txt)."""
    phones = {p for r in manifest if r.alignment is not None for p in r.alignment.phones}
    rest = sorted(phones - {SILENCE})
    return ([SILENCE] if SILENCE in phones else []) + rest


def frame_label_ids(row: ManifestRow, phone_index: dict[str, int]) -> np.ndarray:
    """The row's phone alignment as one class index per 10 ms frame; phones missing from
    ``phone_index`` become -100 (ignored by cross-entropy). A row without an alignment
    fails with its id."""
    if row.alignment is None:
        raise ManifestError(f"utterance '{row.id}' has no 'alignment': frame targets need the "
                            f"phone alignment of every row (the built-in corpus has one)")
    ids = [phone_index.get(p, -100) for p in row.alignment.phones]
    return np.repeat(np.asarray(ids, dtype=np.int64), row.alignment.counts)
