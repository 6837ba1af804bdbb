"""``paravox demo``: the whole pipeline on the built-in synthetic corpus in one command.

corpus -> pretrain DINO and SimCLR, train the supervised x-vector, draw a random encoder ->
export bundles -> speaker verification (cosine scoring: EER with a bootstrap interval, minDCF)
and the style / fluency / language tasks (linear probe on frozen embeddings; staged
fine-tuning) -> a Markdown report and a self-contained HTML page with tables and figures.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from paravox.data.manifest import Manifest
from paravox.evaluation.phone_probe import PhoneProbeConfig, phone_probe_splits
from paravox.inference import Embedder
from paravox.inference.embedder import embed_manifest
from paravox.pipelines.study_kit import (
    StageTimer,
    finish,
    prepare_corpus,
    probe_rows,
    quiet_study,
    random_like,
    splits_of,
    sv_row,
    train_and_export,
)
from paravox.pipelines.study_registry import check_preset
from paravox.report.demo_report import write_report
from paravox.transfer.finetune import FineTuneConfig, evaluate_finetuned
from paravox.utils.atomic_files import make_folder
from paravox.utils.config import config_yaml

TASKS = ("style", "fluency", "language")
PROTOCOLS = ("linear", "staged")
# key -> (name in the report, recipe file, training split)
TRAINED = {"dino": ("DINO", "dino_demo.yaml", "pretrain"),
           "simclr": ("SimCLR", "simclr_demo.yaml", "pretrain"),
           "xvector": ("x-vector (supervised)", "xvector_demo.yaml", "train")}
RANDOM = ("random", "random init (DINO's encoder)")
PROXIES = {"style": "emotion proxy", "fluency": "pathological-speech proxy",
           "language": "espeak-ng language rules"}

TINY_RUN = ["run.epochs=2", "run.batch_size=8", "run.num_workers=0", "run.tensorboard=false",
             "run.babble_utterances=20"]
TINY_ECAPA = ["encoder_settings.channels=32", "encoder_settings.mfa_channels=96",
               "encoder_settings.attention_channels=16", "encoder_settings.se_channels=16",
               "augment.reverb_prob=0.0", "augment.n_babble=2"]


@dataclass
class DemoPreset:
    """What a demo preset sets: the corpus preset, recipe overrides per trained model, the
    staged fine-tuning, the bootstrap size of the EER interval and the phone probe."""

    corpus_preset: str
    overrides: dict[str, list[str]] = field(default_factory=dict)  # per trained-model key
    finetune: FineTuneConfig = field(default_factory=FineTuneConfig)
    n_boot: int = 1000
    phones: PhoneProbeConfig = field(default_factory=lambda: PhoneProbeConfig(
        max_utterances=150, max_train_frames=40000, epochs=4))


PRESETS = {
    # ~15 min on 2 CPU cores: the recipes as they are, fine-tuning 1 + 1 epochs
    "demo": DemoPreset("demo", finetune=FineTuneConfig(stage1_epochs=1, stage2_epochs=1)),
    # a minute or two: the same pipeline on the tiny corpus with tiny models (CI)
    "tiny": DemoPreset(
        "tiny",
        {"dino": TINY_RUN + [f"dino.{o}" for o in TINY_ECAPA + [
            "head.hidden_dim=64", "head.bottleneck_dim=16", "head.n_prototypes=128",
            "crops.long_seconds=1.0", "crops.short_seconds=0.5"]],
         "simclr": TINY_RUN + [f"simclr.{o}" for o in TINY_ECAPA + [
             "projector_hidden=64", "projector_dim=32", "crops.long_seconds=1.0"]],
         "xvector": TINY_RUN + [f"supervised.{o}" for o in [
             "encoder_settings.channels=32", "encoder_settings.stats_channels=64",
             "encoder_settings.embedding_dim=32", "crops.long_seconds=1.0",
             "augment.reverb_prob=0.0", "augment.n_babble=2"]]},
        FineTuneConfig(crop_seconds=1.0, stage1_epochs=1, stage2_epochs=1, batch_size=8,
                       num_workers=0),
        n_boot=200,
        phones=PhoneProbeConfig(probes=("linear",), max_utterances=24, max_train_frames=8000,
                                epochs=2)),
}


def train_models(corpus: Path, out: Path, preset: DemoPreset, timer: StageTimer,
                 reuse: bool, progress: bool) -> dict[str, Path]:
    """Train (or reuse) each model, export its bundle; add the random-init bundle."""
    bundles: dict[str, Path] = {}
    for key, (name, recipe_file, split) in TRAINED.items():
        with timer(f"train {name}"):
            bundles[key], _ = train_and_export(
                recipe_file, preset.overrides.get(key, []), out / "runs" / key,
                out / "bundles" / key, corpus / f"{split}.jsonl", reuse, progress)
    bundles[RANDOM[0]] = random_like(bundles["dino"], out / "bundles" / RANDOM[0], seed=0)
    return bundles


def evaluate_model(bundle: Path, corpus: Path, out: Path, preset: DemoPreset,
                   timer: StageTimer, name: str, progress: bool,
                   tasks: tuple[str, ...] = TASKS) -> tuple[dict, np.ndarray]:
    """SV + every task (of ``tasks``) x protocol for one bundle; returns the results and
    test embeddings."""
    train_m, test_m = Manifest.load(corpus / "train.jsonl"), Manifest.load(corpus / "test.jsonl")
    with timer(f"embed train + test, {name}"):
        embedder = Embedder.from_bundle(bundle)
        train = embed_manifest(embedder, train_m, progress=progress)
        test = embed_manifest(embedder, test_m, progress=progress)
    res: dict = {"classify": {t: {} for t in tasks}}
    with timer(f"speaker verification + linear probes, {name}"):
        res["sv"], res["_sv_scores"] = sv_row(test, corpus / "trials.txt", preset.n_boot)
        for task, row in probe_rows(train_m, train, test_m, test, tasks).items():
            res["classify"][task]["linear"] = row
    if "dev" in (splits := splits_of(corpus, ("dev",))):
        # the dev split is clean like train: probes on it show what the embedding holds,
        # apart from the channel mismatch of the test split
        with timer(f"linear probes on the clean dev split, {name}"):
            dev = embed_manifest(embedder, splits["dev"], progress=progress)
            res["classify_dev"] = probe_rows(train_m, train, splits["dev"], dev, tasks)
    for task in tasks:
        with timer(f"staged fine-tuning, {name}, {task}"):
            r = evaluate_finetuned(bundle, corpus / "train.jsonl", corpus / "test.jsonl", task,
                                   "staged", preset.finetune, out / "finetune" / bundle.name,
                                   progress=progress)
            res["classify"][task]["staged"] = r.row()
    return res, np.stack([test[r.id] for r in test_m])


def phone_probes(bundles: dict[str, Path], corpus: Path, preset: DemoPreset,
                 timer: StageTimer, names: dict, results: dict, progress: bool) -> dict:
    """The phone probe on the frame outputs of every model's layers and on log-mel frames
    (the floor), trained on the train split and scored on the channel-degraded test split
    (``results[key]["frames"]``) and, when the corpus has one, the clean dev split
    (``results[key]["frames_dev"]``). Returns the floor's results per split."""
    train = Manifest.load(corpus / "train.jsonl")
    splits = {"frames": Manifest.load(corpus / "test.jsonl")}
    if "dev" in (found := splits_of(corpus, ("dev",))):
        splits["frames_dev"] = found["dev"]
    with timer("phone probe, log-mel floor"):
        floor = {k: {"summary": r.summary(), "rows": r.rows()} for k, r in
                 phone_probe_splits("logmel", train, splits, preset.phones, progress).items()}
    layers_only = dataclasses.replace(preset.phones, include_logmel=False)
    for key, bundle in bundles.items():
        with timer(f"phone probe, {names[key]}"):
            found = phone_probe_splits(Embedder.from_bundle(bundle), train, splits,
                                       layers_only, progress)
            results[key].update({k: {"summary": r.summary(), "rows": r.rows()}
                                 for k, r in found.items()})
    return floor


def run_demo(preset: str = "demo", out_dir: str | Path = "runs/demo",
             corpus: str | Path | None = None, reuse: bool = False, progress: bool = True
             ) -> dict:
    """Everything, in order; returns the results (also in ``<out>/results.json``)."""
    check_preset(PRESETS, preset, "demo")
    with quiet_study():
        return _run(preset, Path(out_dir), corpus, reuse, progress)


def _run(preset: str, out: Path, corpus, reuse: bool, progress: bool) -> dict:
    p = PRESETS[preset]
    make_folder(out)
    timer = StageTimer()
    corpus = prepare_corpus(corpus, preset, p.corpus_preset, out, timer, progress)
    summary = json.loads((corpus / "summary.json").read_text())
    bundles = train_models(corpus, out, p, timer, reuse, progress)
    names = {k: v[0] for k, v in TRAINED.items()} | {RANDOM[0]: RANDOM[1]}
    results, test_emb = {}, {}
    for key, bundle in bundles.items():
        results[key], test_emb[key] = evaluate_model(bundle, corpus, out, p, timer, names[key],
                                                     progress)
    frames_floor = phone_probes(bundles, corpus, p, timer, names, results, progress)
    machine = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
               "torch": torch.__version__, "python": platform.python_version(),
               "processor": platform.machine()}
    clean = {k: {kk: vv for kk, vv in v.items() if not kk.startswith("_")}
             for k, v in results.items()}
    payload = {"preset": preset, "corpus": str(corpus), "models": names, "results": clean,
               "phone_probe_log_mel": frames_floor, "machine": machine}

    def report(out: Path, payload: dict) -> tuple[Path, Path]:
        return write_report(out, corpus, summary, names, results, test_emb, timer.stages,
                            machine, preset, config_yaml(p.finetune), frames_floor)

    payload = finish(out, payload, report, timer)
    return {"results": results, "report_md": payload["report_md"],
            "report_html": payload["report_html"], "timing": list(timer.timing().items())}
