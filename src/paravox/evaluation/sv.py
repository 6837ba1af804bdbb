"""Speaker-verification evaluation: embeddings of the trial utterances, scores from each
back-end (cosine, AS-Norm, PLDA), EER (with a bootstrap interval) and minDCF at p_target 0.01
and 0.05. :func:`cosine_sv` is the score every demo and study reports; :func:`cosine_sv_eer`
the quick check a training run makes of its own encoder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from paravox.data.manifest import Manifest
from paravox.errors import ConfigError, ManifestError
from paravox.evaluation.metrics import eer_confidence_interval, equal_error_rate, min_dcf
from paravox.evaluation.scoring import PLDA, as_norm, cosine_scores
from paravox.evaluation.trials import read_trials, trial_manifest
from paravox.inference.embedder import Embedder, embed_manifest

BACKENDS = ("cosine", "asnorm", "plda")


@dataclass
class SVResult:
    """One back-end's verification result: EER and minDCF at two operating points, with the
    raw scores and labels kept (out of the repr) for DET plots and confidence intervals."""

    backend: str
    eer: float
    min_dcf_01: float  # p_target 0.01
    min_dcf_05: float  # p_target 0.05
    scores: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    n_boot: int = 1000  # bootstrap resamples of the EER interval

    @cached_property
    def eer_ci(self) -> tuple[float, float]:
        """95 % bootstrap interval of the EER (see ``eer_confidence_interval``)."""
        return eer_confidence_interval(self.scores, self.labels, n_boot=self.n_boot)

    def row(self) -> dict:
        """The metrics as a flat dict, one row of a results table (scores left out), with the
        EER's 95 % bootstrap interval so that two results can be compared honestly."""
        return {"backend": self.backend, "eer": self.eer, "eer_ci": list(self.eer_ci),
                "min_dcf_0.01": self.min_dcf_01, "min_dcf_0.05": self.min_dcf_05,
                "n_trials": int(len(self.labels))}


def evaluate_sv(embedder, manifest_path: str | Path, trials_path: str | Path,
                train_manifest: str | Path | None = None,
                backends: Sequence[str] = ("cosine",), chunk_seconds: float | None = None,
                top_k: int = 100, lda_dim: int | None = None, progress: bool = True
                ) -> list[SVResult]:
    """Score a trial list with each back-end. ``train_manifest`` (speaker-labelled, disjoint
    from the test speakers) provides the mean for cosine, the AS-Norm cohort and PLDA's data;
    AS-Norm and PLDA need it."""
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        raise ConfigError(f"back-end(s) {sorted(unknown)} unknown; choose from {BACKENDS}")
    if train_manifest is None and set(backends) - {"cosine"}:
        raise ConfigError("AS-Norm and PLDA need --train (a speaker-labelled manifest)")
    trials = read_trials(trials_path)
    labels = np.array([t for t, _, _ in trials])
    train_m = None if train_manifest is None else _sv_training_set(train_manifest, backends)
    emb = embed_manifest(embedder, trial_manifest(manifest_path, trials), chunk_seconds,
                         progress)
    mean = train = speakers = None
    if train_m is not None:
        train_emb = embed_manifest(embedder, train_m, chunk_seconds, progress)
        train = np.stack([train_emb[r.id] for r in train_m])
        speakers = [r.speaker for r in train_m]
        mean = train.mean(0)
    results = []
    for backend in backends:
        if backend == "cosine":
            scores = cosine_scores(emb, trials, mean)
        elif backend == "asnorm":
            scores = as_norm(emb, trials, train, top_k=top_k, mean=mean)
        else:
            scores = PLDA.fit(train, speakers, lda_dim=lda_dim).score(emb, trials)
        results.append(SVResult(backend, equal_error_rate(scores, labels),
                                min_dcf(scores, labels, 0.01), min_dcf(scores, labels, 0.05),
                                scores, labels))
    return results


def _sv_training_set(path: str | Path, backends: Sequence[str]) -> Manifest:
    """The back-ends' training manifest, checked before anything is embedded: rows to take a
    mean and a cohort from, and for PLDA a speaker on every row and at least two speakers."""
    train_m = Manifest.load(path)
    if len(train_m) == 0:
        raise ManifestError(f"training manifest {path}: no rows; give a speaker-labelled "
                            f"manifest (e.g. the built-in corpus' train.jsonl)")
    if "plda" in backends:
        if any(r.speaker in (None, "") for r in train_m):
            raise ConfigError(f"{path}: PLDA needs a speaker on every row")
        speakers = sorted({r.speaker for r in train_m})
        if len(speakers) < 2:
            raise ConfigError(f"training manifest {path}: PLDA needs at least two speakers, "
                              f"it has one ({speakers[0]}); give a manifest of several "
                              f"speakers or leave plda out of the back-ends")
    return train_m


def cosine_sv(embeddings: dict[str, np.ndarray], trials: list[tuple[int, str, str]],
              n_boot: int = 1000) -> SVResult:
    """Cosine scoring of ``trials`` (:func:`~paravox.evaluation.trials.read_trials`) over
    ``embeddings`` (``{utterance id: vector}``): the EER with its bootstrap interval
    (``n_boot`` resamples) and minDCF, the verification row every demo and study reports."""
    labels = np.array([t for t, _, _ in trials])
    scores = cosine_scores(embeddings, trials)
    return SVResult("cosine", equal_error_rate(scores, labels), min_dcf(scores, labels, 0.01),
                    min_dcf(scores, labels, 0.05), scores, labels, n_boot)


def cosine_sv_eer(encoder: torch.nn.Module, fbank: torch.nn.Module,
                  manifest_path: str | Path, trials_path: str | Path,
                  device: str | torch.device = "cpu") -> float:
    """EER (a fraction) of cosine scoring over the trials, embedding only the utterances they
    use: a cheap progress check inside a training run, with no score normalisation or
    back-end."""
    trials = read_trials(trials_path)
    embedder = Embedder(encoder, fbank, device=device)
    emb = embed_manifest(embedder, trial_manifest(manifest_path, trials), progress=False)
    return equal_error_rate(cosine_scores(emb, trials), np.array([t for t, _, _ in trials]))
