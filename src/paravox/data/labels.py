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
    """The sorted classes of label ``key`` over a training manifest (the classifier's output
    order); fewer than two classes is refused (:func:`check_classes`)."""
    return check_classes(labels_of(manifest, key), key, manifest.source)


def check_classes(labels: list[str], key: str, source: str, split: str = "training") -> list[str]:
    """The sorted classes of ``labels`` (label ``key`` of every row of the ``split`` manifest
    ``source``): a classifier cannot be trained on no rows or on a single class (its loss is
    zero from the start and every prediction is that class), so both fail in one line
    naming the manifest and the label."""
    if not labels:
        raise ManifestError(f"{split} manifest {source}: no rows; give a manifest of labelled "
                            f"utterances")
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise ManifestError(f"{split} manifest {source}: every one of its {len(labels)} rows has "
                            f"'{key}' = '{classes[0]}'; a classifier needs at least two classes: "
                            f"use a manifest whose rows have several '{key}' values")
    return classes


def require_rows(manifest: Manifest, split: str = "test") -> Manifest:
    """``manifest``, refused in one line when it has no rows (nothing to score)."""
    if len(manifest) == 0:
        raise ManifestError(f"{split} manifest {manifest.source}: no rows; give a manifest of "
                            f"labelled utterances")
    return manifest


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
