"""Utterance-classification transfer (emotion/style, language, fluency as a pathology proxy, age,
gender): protocols on frozen embeddings (a linear probe, an MLP adapter), metrics of the field
(accuracy, UAR, macro-F1, confusion) and, for labels that are speaker traits, speaker-level
decisions (mean class posterior over each test speaker's utterances).

Probes are light read-outs fitted on frozen embeddings; nothing here trains or changes an
encoder (fine-tuning is :mod:`paravox.transfer`)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from paravox.data.labels import check_classes, labels_of, require_rows
from paravox.data.manifest import Manifest
from paravox.errors import ConfigError
from paravox.evaluation.metrics import classification_report, uar_confidence_interval
from paravox.inference.embedder import embed_manifest

FROZEN_PROTOCOLS = ("linear", "mlp")


@dataclass
class ClassificationResult:
    """The outcome of one (task, protocol) pair: the classes in training order, the
    utterance-level metrics, the speaker-level ones where they apply, and the split sizes."""

    task: str
    protocol: str
    classes: list[str]
    metrics: dict  # accuracy, uar, macro_f1, confusion
    speaker_metrics: dict | None  # the same over speakers, when the label is a speaker trait
    n_train: int
    n_test: int

    def row(self) -> dict:
        """A JSON-ready record for reports (confusion as nested lists; the speaker-level
        confusion left out)."""
        out = {"task": self.task, "protocol": self.protocol, "classes": self.classes,
               "n_train": self.n_train, "n_test": self.n_test,
               **{k: v for k, v in self.metrics.items() if k != "confusion"},
               "confusion": self.metrics["confusion"].tolist()}
        if self.speaker_metrics:
            out["speaker_level"] = {k: v for k, v in self.speaker_metrics.items()
                                    if k != "confusion"}
        return out


def make_probe(protocol: str, seed: int = 0):
    """A scikit-learn classifier on standardised embeddings."""
    if protocol == "linear":
        clf = LogisticRegression(max_iter=3000, C=1.0)
    elif protocol == "mlp":
        clf = MLPClassifier(hidden_layer_sizes=(256,), alpha=1e-3, early_stopping=True,
                            max_iter=500, random_state=seed)
    else:
        raise ConfigError(f"protocol '{protocol}' is not a frozen-embedding protocol "
                          f"({FROZEN_PROTOCOLS})")
    return make_pipeline(StandardScaler(), clf)


def report_with_interval(y_true, y_pred, n_classes: int, test_rows) -> dict:
    """:func:`classification_report` plus ``uar_ci``, the 95 % interval of the UAR from a
    bootstrap over test speakers (:func:`uar_confidence_interval`; rows without a speaker
    count as one speaker each)."""
    groups = [row.speaker or f"_row{i}" for i, row in enumerate(test_rows)]
    report = classification_report(y_true, y_pred, n_classes)
    report["uar_ci"] = list(uar_confidence_interval(y_true, y_pred, groups))
    return report


def speaker_level(test_rows, probabilities: np.ndarray, y_true: np.ndarray,
                  n_classes: int) -> dict | None:
    """Decisions per speaker (mean posterior), when every test speaker has one label."""
    by_speaker: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(test_rows):
        by_speaker[row.speaker or ""].append(i)
    if "" in by_speaker or any(len(set(y_true[ix])) > 1 for ix in by_speaker.values()):
        return None
    truth = [y_true[ix[0]] for ix in by_speaker.values()]
    pred = [int(probabilities[ix].mean(0).argmax()) for ix in by_speaker.values()]
    return classification_report(truth, pred, n_classes) | {"n_speakers": len(truth)}


def evaluate_frozen(train_emb: np.ndarray, train_labels: list[str], test_emb: np.ndarray,
                    test_labels: list[str], test_rows, task: str, protocol: str,
                    seed: int = 0) -> ClassificationResult:
    """Fit a ``protocol`` probe (:func:`make_probe`) on the training embeddings and score it
    on the test ones, with speaker-level decisions where :func:`speaker_level` applies.

    Classes are the sorted training labels; a test label never seen in training raises
    :class:`~paravox.errors.ConfigError` rather than being silently counted as an error."""
    classes = sorted(set(train_labels))
    unseen = set(test_labels) - set(classes)
    if unseen:
        raise ConfigError(f"task '{task}': test labels {sorted(unseen)} never occur in training")
    index = {c: i for i, c in enumerate(classes)}
    y_train = np.array([index[c] for c in train_labels])
    y_test = np.array([index[c] for c in test_labels])
    probe = make_probe(protocol, seed).fit(train_emb, y_train)
    proba = np.zeros((len(test_emb), len(classes)))
    proba[:, probe.classes_] = probe.predict_proba(test_emb)
    pred = proba.argmax(1)
    return ClassificationResult(task, protocol, classes,
                                report_with_interval(y_test, pred, len(classes), test_rows),
                                speaker_level(test_rows, proba, y_test, len(classes)),
                                len(y_train), len(y_test))


def evaluate_classification(embedder, train_manifest: str | Path, test_manifest: str | Path,
                            tasks: list[str], protocols: list[str] = ("linear",),
                            chunk_seconds: float | None = None, progress: bool = True,
                            seed: int = 0) -> list[ClassificationResult]:
    """Embed both splits once; run every (task, frozen protocol) pair."""
    train_m = Manifest.load(train_manifest)
    test_m = require_rows(Manifest.load(test_manifest), "test")
    train_labels = {t: labels_of(train_m, t) for t in tasks}  # fail before embedding
    for t in tasks:
        check_classes(train_labels[t], t, train_m.source)
    test_labels = {t: labels_of(test_m, t) for t in tasks}
    tr = embed_manifest(embedder, train_m, chunk_seconds, progress)
    te = embed_manifest(embedder, test_m, chunk_seconds, progress)
    x_train = np.stack([tr[r.id] for r in train_m])
    x_test = np.stack([te[r.id] for r in test_m])
    return [evaluate_frozen(x_train, train_labels[t], x_test, test_labels[t], test_m.rows, t,
                            p, seed) for t in tasks for p in protocols]


def probe_tasks(train_manifest, train_emb: dict[str, np.ndarray], test_manifest,
                test_emb: dict[str, np.ndarray], tasks, protocol: str = "linear",
                seed: int = 0) -> dict[str, dict]:
    """One ``protocol`` probe per task on frozen embeddings (``{id: vector}`` of each
    manifest's rows), trained on ``train_manifest``'s labels and scored on
    ``test_manifest``'s: ``{task: result row}``, the probe table of every demo and study."""
    for task in tasks:
        check_classes(labels_of(train_manifest, task), task, train_manifest.source)
    require_rows(test_manifest, "test")
    x_train = np.stack([train_emb[r.id] for r in train_manifest])
    x_test = np.stack([test_emb[r.id] for r in test_manifest])
    return {task: evaluate_frozen(x_train, labels_of(train_manifest, task), x_test,
                                  labels_of(test_manifest, task), test_manifest.rows, task,
                                  protocol, seed).row()
            for task in tasks}
