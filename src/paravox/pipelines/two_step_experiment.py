"""The two-step fine-tuning experiment: the method and its baselines on the same splits.

For each task: two-step (contrastive + w * non-contrastive, then an adapter), each step-1 loss
alone (+ the same adapter), the adapter on the untouched encoder (step 2 without step 1), a
linear probe on the untouched encoder, and end-to-end fine-tuning with the same crops,
augmentation, optimiser and epochs. Classification metrics (UAR, accuracy, macro-F1) on the
test split, plus the quality of each embedding space the adapter reads: few-shot
nearest-centroid accuracy and the Davies-Bouldin index on test embeddings (BetterFinetuning's
evaluation of the step-1 space).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from paravox.audio.io import TARGET_SR, load_audio
from paravox.data.augment import AugmentConfig, WaveAugment
from paravox.data.labels import check_classes, labels_of, require_rows
from paravox.data.manifest import Manifest
from paravox.errors import ConfigError
from paravox.evaluation.classify import evaluate_frozen, speaker_level
from paravox.evaluation.embedding_space import davies_bouldin, nearest_centroid_accuracy
from paravox.evaluation.metrics import classification_report
from paravox.inference.bundle import load_bundle_encoder
from paravox.inference.embedder import Embedder
from paravox.report.two_step_report import write_two_step_report
from paravox.transfer.finetune import FineTuneConfig, evaluate_finetuned
from paravox.transfer.two_step import (
    TwoStepConfig,
    adapter_probabilities,
    export_step1,
    save_adapter,
    train_adapter,
    train_step1,
)
from paravox.utils.atomic_files import atomic_open, make_folder, write_text
from paravox.utils.config import build_config

# step-1 variants: name -> settings that differ from the two-step configuration
STEP1_VARIANTS = {
    "two-step": {},
    "contrastive only": {"noncontrastive": "none"},
    "non-contrastive only": {"contrastive": "none"},
}
# the adapter on the step-1 encoder's own embedding (before the projector): which space to read
ENCODER_SPACE = "two-step, encoder space"
BASELINES = (ENCODER_SPACE, "adapter, no step 1", "linear probe", "end-to-end")
FEW_SHOTS = 5


@dataclass
class VariantResult:
    """One (task, variant) outcome: test metrics, speaker-level ones where they apply, the
    quality of the embedding space the read-out used (empty for end-to-end) and the time it
    took."""

    task: str
    variant: str
    metrics: dict  # accuracy, uar, macro_f1, confusion (list)
    speaker_metrics: dict | None
    space: dict = field(default_factory=dict)  # nc_accuracy_5shot, nc_accuracy, davies_bouldin
    seconds: float = 0.0

    def row(self) -> dict:
        """A JSON-ready record for ``results.json`` and the report."""
        return dataclasses.asdict(self)


def _describe(variant: str, cfg: TwoStepConfig) -> str:
    if variant in STEP1_VARIANTS:
        c = dataclasses.replace(cfg, **STEP1_VARIANTS[variant])
        terms = [t for t in (c.contrastive, c.noncontrastive) if t != "none"]
        return " + ".join(terms)
    return variant


class SplitWaves:
    """The waves every variant embeds, read and augmented once: each training utterance clean
    plus ``copies`` augmented copies (seeded by copy and row), and the test utterances."""

    def __init__(self, train: Manifest, test: Manifest, copies: int, seed: int):
        augment = WaveAugment(AugmentConfig(), babble_sources=[
            train.audio_path(r) for r in train.rows[:200]])
        self.train, self.train_index, self.clean = [], [], []
        for i, r in enumerate(train):
            wave = load_audio(train.audio_path(r), r.offset, r.duration)
            self.clean.append(len(self.train))
            self.train.append(wave)
            self.train_index.append(i)
            for k in range(copies):
                rng = np.random.default_rng([seed, k, i])
                self.train.append(augment.crop(augment.utterance(wave, rng), rng))
                self.train_index.append(i)
        self.test = [load_audio(test.audio_path(r), r.offset, r.duration) for r in test]


class SplitEmbeddings:
    """One embedder's embeddings of :class:`SplitWaves` (``clean_train``: the clean rows)."""

    def __init__(self, embedder, waves: SplitWaves, progress: bool):
        bar = dict(disable=not progress, unit="utt", leave=False)
        self.train_index = waves.train_index
        sr = {"sample_rate": TARGET_SR}  # the waves were loaded at 16 kHz
        self.train = np.stack(list(tqdm(embedder.iter_embed(waves.train, **sr),
                                        total=len(waves.train),
                                        desc="embedding train (+copies)", **bar)))
        self.test = np.stack(list(tqdm(embedder.iter_embed(waves.test, **sr),
                                       total=len(waves.test), desc="embedding test", **bar)))
        self.clean_train = self.train[waves.clean]


def space_measures(emb: SplitEmbeddings, train_labels: list[str], test_labels: list[str],
                   seed: int) -> dict:
    """How well an embedding space separates the classes, whatever read-out follows:
    nearest-centroid accuracy on the test embeddings with :data:`FEW_SHOTS` clean training
    examples per class and with all of them, and the Davies-Bouldin index of the test
    embeddings (lower = tighter, better separated classes)."""
    return {
        f"nc_accuracy_{FEW_SHOTS}shot": nearest_centroid_accuracy(
            emb.clean_train, train_labels, emb.test, test_labels, shots=FEW_SHOTS, seed=seed),
        "nc_accuracy": nearest_centroid_accuracy(emb.clean_train, train_labels, emb.test,
                                                 test_labels),
        "davies_bouldin": davies_bouldin(emb.test, test_labels),
    }


def adapter_result(emb: SplitEmbeddings, task: str, variant: str, train_labels, test_m,
                   cfg: TwoStepConfig, save_to: Path | None = None) -> VariantResult:
    """Step 2 on one embedding space: train the adapter on the training embeddings (clean
    and augmented copies), score it on the test split, and measure the space
    (:func:`space_measures`). ``save_to``: a bundle directory to save the adapter in."""
    classes = sorted(set(train_labels))
    index = {c: i for i, c in enumerate(classes)}
    test_labels = labels_of(test_m, task)
    unseen = set(test_labels) - set(classes)
    if unseen:
        raise ConfigError(f"task '{task}': test labels {sorted(unseen)} never occur in training")
    y = np.array([index[train_labels[i]] for i in emb.train_index])
    net, scaler = train_adapter(emb.train, y, len(classes), cfg)
    if save_to is not None:
        save_adapter(net, scaler, classes, cfg, save_to)
    proba = adapter_probabilities(net, scaler, emb.test)
    y_test = np.array([index[c] for c in test_labels])
    metrics = classification_report(y_test, proba.argmax(1), len(classes))
    return VariantResult(task, variant, metrics | {"confusion": metrics["confusion"].tolist()},
                         speaker_level(test_m.rows, proba, y_test, len(classes)),
                         space_measures(emb, train_labels, test_labels, cfg.seed))


def run_two_step(bundle: str | Path, train_manifest: str | Path, test_manifest: str | Path,
                 tasks: list[str], cfg: TwoStepConfig, out_dir: str | Path,
                 baselines: bool = True, progress: bool = True, log=None) -> dict:
    """Everything for every task; writes ``results.json`` and per-task step-1 bundles (with
    the adapter beside the weights) under ``out_dir``. Returns the results dict."""
    cfg.check()
    log = log or (lambda msg: print(msg, flush=True))
    out = Path(out_dir)
    train_m = Manifest.load(train_manifest)
    test_m = require_rows(Manifest.load(test_manifest), "test")
    labels = {t: (labels_of(train_m, t), labels_of(test_m, t)) for t in tasks}  # fail early
    for t in tasks:
        check_classes(labels[t][0], t, train_m.source)
    make_folder(out)
    _, _, bundle_config = load_bundle_encoder(bundle)
    variants = list(STEP1_VARIANTS) if baselines else ["two-step"]
    results: list[VariantResult] = []
    embeddings: dict[str, dict[str, np.ndarray]] = {t: {} for t in tasks}

    def done(r: VariantResult, t0: float) -> None:
        r.seconds = round(time.time() - t0, 1)
        results.append(r)
        log(f"  {r.task:>10} | {r.variant:<22} UAR {100 * r.metrics['uar']:5.1f}  "
            f"acc {100 * r.metrics['accuracy']:5.1f}  F1 {100 * r.metrics['macro_f1']:5.1f}"
            f"  ({r.seconds:.0f} s)")

    waves = SplitWaves(train_m, test_m, cfg.adapter_copies, cfg.seed)
    if baselines:
        log("embedding with the untouched encoder")
        base = SplitEmbeddings(Embedder.from_bundle(bundle), waves, progress)
        for task in tasks:
            tr, te = labels[task]
            embeddings[task]["untouched encoder"] = base.test
            t0 = time.time()
            done(adapter_result(base, task, "adapter, no step 1", tr, test_m, cfg), t0)
            t0 = time.time()
            probe = evaluate_frozen(base.clean_train, tr, base.test, te, test_m.rows, task,
                                    "linear", cfg.seed)
            done(VariantResult(task, "linear probe",
                               probe.metrics | {"confusion": probe.metrics["confusion"].tolist()},
                               probe.speaker_metrics,
                               space_measures(base, tr, te, cfg.seed)), t0)
    for task in tasks:
        tr, _ = labels[task]
        for variant in variants:
            t0 = time.time()
            vcfg = dataclasses.replace(cfg, **STEP1_VARIANTS[variant])
            log(f"step 1 [{task}, {variant}: {_describe(variant, cfg)}]")
            slug = variant.replace(" ", "_").replace("-", "_")
            run_dir = out / task / slug
            module = train_step1(bundle, train_manifest, task, vcfg, run_dir / "step1", progress)
            step1_bundle = export_step1(module, bundle_config, run_dir / "bundle",
                                        {"base_bundle": str(bundle), "variant": variant,
                                         "two_step": dataclasses.asdict(vcfg)})
            emb = SplitEmbeddings(Embedder.from_bundle(step1_bundle), waves, progress)
            embeddings[task][variant] = emb.test
            done(adapter_result(emb, task, variant, tr, test_m, vcfg, save_to=step1_bundle),
                 t0)
            if baselines and variant == "two-step":
                t0 = time.time()
                step1 = Embedder.from_bundle(step1_bundle)
                before_projector = Embedder(step1.encoder.base, step1.fbank, step1.config)
                emb = SplitEmbeddings(before_projector, waves, progress)
                done(adapter_result(emb, task, ENCODER_SPACE, tr, test_m, vcfg), t0)
        if baselines:
            t0 = time.time()
            log(f"end-to-end fine-tuning [{task}]")
            ft = FineTuneConfig(crop_seconds=cfg.crop_seconds, augment=cfg.augment,
                                stage2_epochs=cfg.epochs, stage2_lr=cfg.lr,
                                batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                                seed=cfg.seed)
            r = evaluate_finetuned(bundle, train_manifest, test_manifest, task, "full", ft,
                                   out / task / "end_to_end", progress=progress)
            done(VariantResult(task, "end-to-end",
                               r.metrics | {"confusion": r.metrics["confusion"].tolist()},
                               r.speaker_metrics), t0)
    with atomic_open(out / "test_embeddings.npz", "wb") as fh:
        np.savez_compressed(fh, **{f"{t}/{v}": e for t, by in embeddings.items()
                                   for v, e in by.items()})
    payload = {"bundle": str(bundle), "train": str(train_manifest),
               "test": str(test_manifest), "tasks": tasks,
               "config": dataclasses.asdict(cfg),
               "variants": {v: _describe(v, cfg) for v in [*STEP1_VARIANTS, *BASELINES]},
               "results": [r.row() for r in results]}
    write_text(out / "results.json", json.dumps(payload, indent=2, default=_jsonable) + "\n")
    return payload


def _jsonable(x):
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(type(x))


def two_step_experiment(bundle: str | Path, train_manifest: str | Path,
                        test_manifest: str | Path, tasks: list[str], overrides: list[str],
                        out_dir: str | Path, seed: int = 0, baselines: bool = True,
                        progress: bool = True) -> tuple[Path, Path]:
    """``paravox finetune two-step``: the experiment with ``key=value`` settings of
    :class:`~paravox.transfer.two_step.TwoStepConfig`, then its report; returns the report's
    Markdown and HTML paths."""
    cfg = build_config(TwoStepConfig, overrides=[f"seed={seed}", *overrides])
    payload = run_two_step(bundle, train_manifest, test_manifest, tasks, cfg, out_dir,
                           baselines=baselines, progress=progress)
    return write_two_step_report(out_dir, payload)
