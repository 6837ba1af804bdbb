"""``paravox demo``: the whole pipeline on the built-in synthetic corpus in one command.

corpus -> pretrain DINO and SimCLR, train the supervised x-vector, draw a random encoder ->
export bundles -> speaker verification (cosine scoring: EER with a bootstrap interval, minDCF)
and the style / fluency / language tasks (linear probe on frozen embeddings; staged
fine-tuning) -> a Markdown report and a self-contained HTML page with tables and figures.
"""

from __future__ import annotations

import json
import os
import platform
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from paravox.errors import ConfigError
from paravox.evaluation.frames import PhoneProbeConfig
from paravox.transfer.finetune import FineTuneConfig

DEFAULT_CORPUS = Path("data/demo")
TASKS = ("style", "fluency", "language")
PROTOCOLS = ("linear", "staged")
# key -> (name in the report, recipe file, training split)
TRAINED = {"dino": ("DINO", "dino_demo.yaml", "pretrain"),
           "simclr": ("SimCLR", "simclr_demo.yaml", "pretrain"),
           "xvector": ("x-vector (supervised)", "xvector_demo.yaml", "train")}
RANDOM = ("random", "random init (DINO's encoder)")
PROXIES = {"style": "emotion proxy", "fluency": "pathological-speech proxy",
           "language": "espeak-ng language rules"}

_TINY_RUN = ["run.epochs=2", "run.batch_size=8", "run.num_workers=0", "run.tensorboard=false",
             "run.babble_utterances=20"]
_TINY_ECAPA = ["encoder_settings.channels=32", "encoder_settings.mfa_channels=96",
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
        {"dino": _TINY_RUN + [f"dino.{o}" for o in _TINY_ECAPA + [
            "head.hidden_dim=64", "head.bottleneck_dim=16", "head.n_prototypes=128",
            "crops.long_seconds=1.0", "crops.short_seconds=0.5"]],
         "simclr": _TINY_RUN + [f"simclr.{o}" for o in _TINY_ECAPA + [
             "projector_hidden=64", "projector_dim=32", "crops.long_seconds=1.0"]],
         "xvector": _TINY_RUN + [f"supervised.{o}" for o in [
             "encoder_settings.channels=32", "encoder_settings.stats_channels=64",
             "encoder_settings.embedding_dim=32", "crops.long_seconds=1.0",
             "augment.reverb_prob=0.0", "augment.n_babble=2"]]},
        FineTuneConfig(crop_seconds=1.0, stage1_epochs=1, stage2_epochs=1, batch_size=8,
                       num_workers=0),
        n_boot=200,
        phones=PhoneProbeConfig(probes=("linear",), max_utterances=24, max_train_frames=8000,
                                epochs=2)),
}


class StageTimer:
    """Wall time per stage, printed as the demo goes."""

    def __init__(self):
        self.stages: list[tuple[str, float]] = []
        self.start = time.perf_counter()

    @contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        print(f"\n== {name} (at {self._clock(t0 - self.start)})", flush=True)
        yield
        dt = time.perf_counter() - t0
        self.stages.append((name, dt))
        print(f"== {name}: done in {dt:.1f} s", flush=True)

    @staticmethod
    def _clock(seconds: float) -> str:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"

    @property
    def total(self) -> float:
        """Seconds since the demo started."""
        return time.perf_counter() - self.start


def _recipe_overrides(key: str, split: str, corpus: Path, out: Path, preset: DemoPreset,
                      progress: bool) -> list[str]:
    return [f"train_manifest={corpus / f'{split}.jsonl'}", f"out_dir={out / 'runs' / key}",
            "eval_manifest=null", "trials=null", f"run.progress_bar={str(progress).lower()}",
            *preset.overrides.get(key, [])]


def train_models(corpus: Path, out: Path, preset: DemoPreset, timer: StageTimer,
                 reuse: bool, progress: bool) -> dict[str, Path]:
    """Train (or reuse) each model, export its bundle; add the random-init bundle."""
    from omegaconf import OmegaConf

    from paravox.inference.bundle import export_bundle, random_bundle
    from paravox.methods.recipes import load_recipe, run_recipe

    bundles: dict[str, Path] = {}
    for key, (name, recipe_file, split) in TRAINED.items():
        bundle = out / "bundles" / key
        with timer(f"train {name}"):
            if reuse and (bundle / "model.safetensors").is_file():
                print(f"reusing {bundle}")
            else:
                recipe = load_recipe(recipe_file, _recipe_overrides(key, split, corpus, out,
                                                                    preset, progress))
                # reuse: an interrupted run resumes; otherwise it trains from scratch
                result = run_recipe(recipe, mode="auto" if reuse else "restart")
                print(f"{name}: {result['steps']} steps")
                export_bundle(out / "runs" / key, bundle)
        bundles[key] = bundle
    dino = OmegaConf.load(out / "runs" / "dino" / "config.yaml").dino
    bundles[RANDOM[0]] = random_bundle(dino.encoder, OmegaConf.to_container(dino.encoder_settings),
                                       OmegaConf.to_container(dino.features),
                                       out / "bundles" / RANDOM[0], seed=0)
    return bundles


def evaluate_model(bundle: Path, corpus: Path, out: Path, preset: DemoPreset,
                   timer: StageTimer, name: str, progress: bool,
                   tasks: tuple[str, ...] = TASKS) -> tuple[dict, np.ndarray]:
    """SV + every task (of ``tasks``) x protocol for one bundle; returns the results and
    test embeddings."""
    from paravox.data.labels import labels_of
    from paravox.data.manifest import Manifest
    from paravox.evaluation.classify import evaluate_frozen
    from paravox.evaluation.metrics import eer_confidence_interval, equal_error_rate, min_dcf
    from paravox.evaluation.quick_sv import read_trials
    from paravox.evaluation.scoring import cosine_scores
    from paravox.inference import Embedder
    from paravox.inference.embedder import embed_manifest
    from paravox.transfer.finetune import evaluate_finetuned

    train_m, test_m = Manifest.load(corpus / "train.jsonl"), Manifest.load(corpus / "test.jsonl")
    with timer(f"embed train + test, {name}"):
        embedder = Embedder.from_bundle(bundle)
        train = embed_manifest(embedder, train_m, progress=progress)
        test = embed_manifest(embedder, test_m, progress=progress)
    res: dict = {"classify": {t: {} for t in tasks}}
    with timer(f"speaker verification + linear probes, {name}"):
        trials = read_trials(corpus / "trials.txt")
        labels = np.array([t for t, _, _ in trials])
        scores = cosine_scores(test, trials)
        lo, hi = eer_confidence_interval(scores, labels, n_boot=preset.n_boot)
        res["sv"] = {"eer": equal_error_rate(scores, labels), "eer_ci": [lo, hi],
                     "min_dcf_0.01": min_dcf(scores, labels, 0.01),
                     "min_dcf_0.05": min_dcf(scores, labels, 0.05), "n_trials": len(trials)}
        res["_sv_scores"] = (scores, labels)
        x_train = np.stack([train[r.id] for r in train_m])
        x_test = np.stack([test[r.id] for r in test_m])
        for task in tasks:
            r = evaluate_frozen(x_train, labels_of(train_m, task), x_test, labels_of(test_m, task),
                                test_m.rows, task, "linear")
            res["classify"][task]["linear"] = r.row()
    dev_path = corpus / "dev.jsonl"
    if dev_path.is_file() and len(dev_m := Manifest.load(dev_path)):
        # the dev split is clean like train: probes on it show what the embedding holds,
        # apart from the channel mismatch of the test split
        with timer(f"linear probes on the clean dev split, {name}"):
            dev = embed_manifest(embedder, dev_m, progress=progress)
            x_dev = np.stack([dev[r.id] for r in dev_m])
            res["classify_dev"] = {
                task: evaluate_frozen(x_train, labels_of(train_m, task), x_dev,
                                      labels_of(dev_m, task), dev_m.rows, task, "linear").row()
                for task in tasks}
    for task in tasks:
        with timer(f"staged fine-tuning, {name}, {task}"):
            r = evaluate_finetuned(bundle, corpus / "train.jsonl", corpus / "test.jsonl", task,
                                   "staged", preset.finetune, out / "finetune" / bundle.name,
                                   progress=progress)
            res["classify"][task]["staged"] = r.row()
    return res, x_test


def phone_probes(bundles: dict[str, Path], corpus: Path, preset: DemoPreset,
                 timer: StageTimer, names: dict, results: dict, progress: bool) -> dict:
    """The phone probe on the frame outputs of every model's layers and on log-mel frames
    (the floor), trained on the train split and scored on the channel-degraded test split
    (``results[key]["frames"]``) and, when the corpus has one, the clean dev split
    (``results[key]["frames_dev"]``). Returns the floor's results per split."""
    import dataclasses

    from paravox.data.manifest import Manifest
    from paravox.evaluation.frames import phone_probe_splits
    from paravox.inference import Embedder

    train = Manifest.load(corpus / "train.jsonl")
    splits = {"frames": Manifest.load(corpus / "test.jsonl")}
    if (corpus / "dev.jsonl").is_file() and len(dev := Manifest.load(corpus / "dev.jsonl")):
        splits["frames_dev"] = dev
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
    import logging
    import warnings

    if preset not in PRESETS:
        raise ConfigError(f"demo preset '{preset}' unknown; choose one of {sorted(PRESETS)}")
    lightning_log = logging.getLogger("lightning.pytorch")
    old_level = lightning_log.level
    lightning_log.setLevel(logging.WARNING)  # no per-run banners (GPU available, summary)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module="lightning")
            warnings.filterwarnings("ignore", ".*does not have many workers.*")
            return _run(preset, Path(out_dir), corpus, reuse, progress)
    finally:
        lightning_log.setLevel(old_level)


def _run(preset: str, out: Path, corpus, reuse: bool, progress: bool) -> dict:
    import torch

    from paravox.data.synth import PRESETS as CORPUS_PRESETS
    from paravox.data.synth import SynthConfig, generate_corpus
    from paravox.utils.config import build_config

    p = PRESETS[preset]
    out.mkdir(parents=True, exist_ok=True)
    corpus = Path(corpus) if corpus else (DEFAULT_CORPUS if preset == "demo" else out / "corpus")
    timer = StageTimer()
    with timer(f"corpus ({p.corpus_preset} preset) in {corpus}"):
        if (corpus / "summary.json").is_file():
            print(f"using the corpus in {corpus}")
        else:
            cfg = build_config(SynthConfig, base=CORPUS_PRESETS[p.corpus_preset])
            generate_corpus(cfg, corpus, progress=progress, reuse=True)
        summary = json.loads((corpus / "summary.json").read_text())
    bundles = train_models(corpus, out, p, timer, reuse, progress)
    names = {k: v[0] for k, v in TRAINED.items()} | {RANDOM[0]: RANDOM[1]}
    results, test_emb = {}, {}
    for key, bundle in bundles.items():
        results[key], test_emb[key] = evaluate_model(bundle, corpus, out, p, timer, names[key],
                                                     progress)
    frames_floor = phone_probes(bundles, corpus, p, timer, names, results, progress)
    with timer("report"):
        from paravox.report.demo_report import write_report

        machine = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                   "torch": torch.__version__, "python": platform.python_version(),
                   "processor": platform.machine()}
        from paravox.utils.config import config_yaml

        md, html = write_report(out, corpus, summary, names, results, test_emb, timer.stages,
                                machine, preset, config_yaml(p.finetune), frames_floor)
    timing = timer.stages + [("total", timer.total)]
    clean = {k: {kk: vv for kk, vv in v.items() if not kk.startswith("_")}
             for k, v in results.items()}
    (out / "results.json").write_text(json.dumps(
        {"preset": preset, "corpus": str(corpus), "models": names, "results": clean,
         "phone_probe_log_mel": frames_floor,
         "timing_seconds": dict(timing), "machine": machine}, indent=2) + "\n")
    print(f"\nreport: {md} and {html} ({timer.total / 60:.1f} min in all)")
    return {"results": results, "report_md": md, "report_html": html, "timing": timing}
