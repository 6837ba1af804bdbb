"""``paravox study mgf``: MGF and its ablations against the other methods, one command.

Every row trains at the same budget on the corpus's unlabelled ``pretrain.jsonl`` (the
``mgf_demo`` / ``dino_demo`` / ``simclr_demo`` recipes: 200 steps of batch 32 at the demo
preset): MGF with all three scales, each scale alone, each pair, and MGF with the generative
loss at the phoneme scale instead of the contrastive one; DINO and SimCLR; the MGF encoder at
random initialisation; and log-mel features as the floor. Each is scored the same way:

- the phone probe on every layer's frozen frame outputs (best layer and the weighted sum of
  layers; test split, and the clean dev split when the corpus has one);
- speaker verification (cosine EER with a bootstrap interval on the test trials);
- closed-set speaker identification (a linear probe on half of each training speaker's
  utterances, tested on the other half);
- style and language UAR (linear probes, train -> test, and train -> clean dev).

The log-mel floor's utterance embedding is the mean and standard deviation of its frames.
Results go to ``results.json``; :mod:`paravox.report.mgf_report` renders the report.
"""

from __future__ import annotations

import dataclasses
import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from paravox.errors import ConfigError
from paravox.evaluation.frames import PhoneProbeConfig
from paravox.pipelines.demo import PRESETS as DEMO_PRESETS
from paravox.pipelines.demo import StageTimer

# row -> overrides of the mgf_demo recipe
VARIANTS = {
    "MGF (all three scales)": [],
    "frame only": ["mgf.phone_weight=0", "mgf.utterance_weight=0"],
    "phoneme only": ["mgf.frame_weight=0", "mgf.utterance_weight=0"],
    "utterance only": ["mgf.frame_weight=0", "mgf.phone_weight=0"],
    "frame + phoneme": ["mgf.utterance_weight=0"],
    "frame + utterance": ["mgf.phone_weight=0"],
    "phoneme + utterance": ["mgf.frame_weight=0"],
    "generative at phoneme scale": ["mgf.phone_loss=generative"],
}
BASELINES = {"DINO": ("dino_demo", "dino"), "SimCLR": ("simclr_demo", "simclr")}
RANDOM = "random init (MGF's encoder)"
LOGMEL = "log-mel floor"
TASKS = ("style", "language")

_TINY_MGF = ["run.epochs=2", "run.batch_size=8", "run.num_workers=0", "run.tensorboard=false",
             "run.babble_utterances=20", "mgf.crops.long_seconds=1.0",
             "mgf.augment.reverb_prob=0.0", "mgf.augment.n_babble=2",
             "mgf.encoder_settings={dim: 32, layers: 2, heads: 2, ff_dim: 64, "
             "embedding_dim: 32, attention_channels: 16}",
             "mgf.projector_hidden=64", "mgf.projector_dim=32", "mgf.phone_dim=32"]


@dataclass
class MGFStudyPreset:
    """A study preset: the corpus preset, recipe overrides for MGF and for the baselines
    (per demo model key), the phone probe's settings and the EER bootstrap size."""

    corpus_preset: str
    mgf: list[str] = field(default_factory=list)
    baselines: dict[str, list[str]] = field(default_factory=dict)
    phones: PhoneProbeConfig = field(default_factory=lambda: PhoneProbeConfig(
        probes=("linear",), max_utterances=150, max_train_frames=40000, epochs=4))
    n_boot: int = 1000


PRESETS = {
    "demo": MGFStudyPreset("demo"),
    "tiny": MGFStudyPreset("tiny", _TINY_MGF, DEMO_PRESETS["tiny"].overrides,
                           PhoneProbeConfig(probes=("linear",), max_utterances=16,
                                            max_train_frames=4000, epochs=1), n_boot=100),
}


def slug(name: str) -> str:
    """A row name as a folder name."""
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")


def _train(recipe: str, overrides: list[str], run_dir: Path, bundle: Path, train: Path,
           reuse: bool, progress: bool) -> Path:
    from paravox.inference.bundle import export_bundle
    from paravox.methods.recipes import load_recipe, run_recipe

    if reuse and (bundle / "model.safetensors").is_file():
        print(f"reusing {bundle}", flush=True)
        return bundle
    rec = load_recipe(recipe, [f"train_manifest={train}", f"out_dir={run_dir}",
                               "eval_manifest=null", "trials=null",
                               f"run.progress_bar={str(progress).lower()}", *overrides])
    # reuse: an interrupted run resumes; otherwise it trains from scratch
    result = run_recipe(rec, mode="auto" if reuse else "restart")
    print(f"{result['steps']} steps", flush=True)
    return export_bundle(run_dir, bundle)


def train_rows(corpus: Path, out: Path, preset: MGFStudyPreset, timer: StageTimer,
               reuse: bool, progress: bool, variants: list[str]) -> dict[str, Path]:
    """Train (or reuse) every MGF variant and baseline; add the random-init bundle (the first
    variant's architecture)."""
    from paravox.inference.bundle import random_bundle

    train = corpus / "pretrain.jsonl"
    bundles: dict[str, Path] = {}
    for name in variants:
        with timer(f"train {name}"):
            bundles[name] = _train("mgf_demo", preset.mgf + VARIANTS[name],
                                   out / "runs" / slug(name), out / "bundles" / slug(name),
                                   train, reuse, progress)
    for name, (recipe, key) in BASELINES.items():
        with timer(f"train {name}"):
            bundles[name] = _train(recipe, preset.baselines.get(key, []),
                                   out / "runs" / slug(name), out / "bundles" / slug(name),
                                   train, reuse, progress)
    trained = json.loads((bundles[variants[0]] / "config.json").read_text())
    bundles[RANDOM] = random_bundle(trained["encoder"], trained["encoder_settings"],
                                    trained["features"], out / "bundles" / "random", seed=0)
    return bundles


def speaker_halves(manifest) -> tuple[list, list]:
    """Closed-set speaker identification split: each speaker's utterances (sorted by id)
    alternate between the probe's training half and its test half."""
    by: dict[str, list] = {}
    for r in sorted(manifest, key=lambda r: r.id):
        by.setdefault(r.speaker or "", []).append(r)
    fit, held = [], []
    for rows in by.values():
        fit += rows[0::2]
        held += rows[1::2]
    return fit, held


def logmel_embeddings(manifest, progress: bool) -> dict[str, np.ndarray]:
    """Mean and standard deviation of each utterance's log-mel frames (no mean
    normalisation): the log-mel floor's utterance embedding."""
    import torch
    from tqdm import tqdm

    from paravox.audio.features import FeatureConfig, LogMelFilterbank
    from paravox.audio.io import load_audio

    fbank = LogMelFilterbank(FeatureConfig(mean_norm=False)).eval()
    out = {}
    with torch.no_grad():
        for r in tqdm(list(manifest), desc="log-mel statistics", unit="utt",
                      disable=not progress):
            wave = load_audio(manifest.audio_path(r), r.offset, r.duration)
            f = fbank(torch.from_numpy(wave[None]))[0][0]
            out[r.id] = torch.cat([f.mean(0), f.std(0)]).numpy()
    return out


def utterance_scores(embed, corpus: Path, preset: MGFStudyPreset, progress: bool) -> dict:
    """SV, closed-set speaker ID and the style/language probes from an embedding function
    ``embed(manifest) -> {id: vector}``."""
    from paravox.data.labels import labels_of
    from paravox.data.manifest import Manifest
    from paravox.evaluation.classify import evaluate_frozen
    from paravox.evaluation.metrics import eer_confidence_interval, equal_error_rate
    from paravox.evaluation.quick_sv import read_trials
    from paravox.evaluation.scoring import cosine_scores

    train_m, test_m = Manifest.load(corpus / "train.jsonl"), Manifest.load(corpus / "test.jsonl")
    dev_path = corpus / "dev.jsonl"
    dev_m = Manifest.load(dev_path) if dev_path.is_file() else None
    dev_m = dev_m if dev_m is not None and len(dev_m) else None
    train, test = embed(train_m), embed(test_m)
    trials = read_trials(corpus / "trials.txt")
    labels = np.array([t for t, _, _ in trials])
    scores = cosine_scores(test, trials)
    lo, hi = eer_confidence_interval(scores, labels, n_boot=preset.n_boot)
    res: dict = {"sv": {"eer": equal_error_rate(scores, labels), "eer_ci": [lo, hi]}}
    fit, held = speaker_halves(train_m)
    spk = evaluate_frozen(np.stack([train[r.id] for r in fit]), [r.speaker for r in fit],
                          np.stack([train[r.id] for r in held]), [r.speaker for r in held],
                          held, "speaker", "linear")
    res["speaker_id"] = {"accuracy": spk.metrics["accuracy"], "n_speakers": len(spk.classes),
                         "n_test": spk.n_test}
    x_train = np.stack([train[r.id] for r in train_m])
    splits = {"test": (test_m, test)}
    if dev_m is not None:
        splits["dev"] = (dev_m, embed(dev_m))
    for split, (m, emb) in splits.items():
        x = np.stack([emb[r.id] for r in m])
        res[f"classify_{split}"] = {
            t: evaluate_frozen(x_train, labels_of(train_m, t), x, labels_of(m, t), m.rows, t,
                               "linear").row() for t in TASKS}
    return res


def evaluate_row(name: str, bundle: Path | None, corpus: Path, preset: MGFStudyPreset,
                 timer: StageTimer, progress: bool) -> dict:
    """Every score of one row (``bundle=None``: the log-mel floor)."""
    from paravox.data.manifest import Manifest
    from paravox.evaluation.frames import phone_probe_splits
    from paravox.inference import Embedder
    from paravox.inference.embedder import embed_manifest

    res: dict = {}
    embedder = None if bundle is None else Embedder.from_bundle(bundle)
    with timer(f"utterance-level scores, {name}"):
        if embedder is None:
            res.update(utterance_scores(lambda m: logmel_embeddings(m, progress), corpus,
                                        preset, progress))
        else:
            res.update(utterance_scores(lambda m: embed_manifest(embedder, m, progress=progress),
                                        corpus, preset, progress))
    with timer(f"phone probe, {name}"):
        train = Manifest.load(corpus / "train.jsonl")
        cfg = preset.phones if embedder is None else dataclasses.replace(
            preset.phones, include_logmel=False)
        splits = {}
        for split in ("test", "dev"):
            path = corpus / f"{split}.jsonl"
            if path.is_file() and len(m := Manifest.load(path)):
                splits[f"frames_{split}"] = m
        found = phone_probe_splits("logmel" if embedder is None else embedder, train, splits,
                                   cfg, progress)
        res.update({k: {"summary": r.summary(), "rows": r.rows()} for k, r in found.items()})
    return res


@contextmanager
def quiet_study():
    """Lightning's info lines and its loader/worker warnings held back while a study trains
    many runs (warnings that matter still show)."""
    import logging
    import warnings

    log = logging.getLogger("lightning.pytorch")
    old = log.level
    log.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module="lightning")
            warnings.filterwarnings("ignore", ".*does not have many workers.*")
            yield
    finally:
        log.setLevel(old)


def study_corpus(corpus, preset: str, corpus_preset: str, out: Path, timer: StageTimer,
                 progress: bool) -> Path:
    """A study's corpus folder (given, else data/demo for the demo preset, else
    ``<out>/corpus``), generated with ``corpus_preset`` when it is missing."""
    from paravox.data.synth import PRESETS as CORPUS_PRESETS
    from paravox.data.synth import SynthConfig, generate_corpus
    from paravox.utils.config import build_config

    corpus = Path(corpus) if corpus else (Path("data/demo") if preset == "demo"
                                          else out / "corpus")
    with timer(f"corpus ({corpus_preset} preset) in {corpus}"):
        if not (corpus / "summary.json").is_file():
            generate_corpus(build_config(SynthConfig, base=CORPUS_PRESETS[corpus_preset]),
                            corpus, progress=progress, reuse=True)
    return corpus


def run_mgf_study(preset: str = "demo", out_dir: str | Path = "runs/mgf",
                  corpus: str | Path | None = None, reuse: bool = False,
                  progress: bool = True, variants: list[str] | None = None) -> dict:
    """Train and score every row, write ``results.json`` and the report; returns the
    results (see the module docstring)."""

    if preset not in PRESETS:
        raise ConfigError(f"study preset '{preset}' unknown; choose one of {sorted(PRESETS)}")
    variants = list(variants or VARIANTS)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ConfigError(f"MGF variants {unknown} unknown; choose from {list(VARIANTS)}")
    with quiet_study():
        return _run(PRESETS[preset], preset, Path(out_dir), corpus, reuse, progress, variants)


def _run(p: MGFStudyPreset, preset: str, out: Path, corpus, reuse: bool, progress: bool,
         variants: list[str]) -> dict:
    from paravox.report.mgf_report import write_mgf_report

    out.mkdir(parents=True, exist_ok=True)
    timer = StageTimer()
    corpus = study_corpus(corpus, preset, p.corpus_preset, out, timer, progress)
    bundles = train_rows(corpus, out, p, timer, reuse, progress, variants)
    results = {name: evaluate_row(name, bundle, corpus, p, timer, progress)
               for name, bundle in bundles.items()}
    results[LOGMEL] = evaluate_row(LOGMEL, None, corpus, p, timer, progress)
    payload = {"preset": preset, "corpus": str(corpus), "variants": {v: VARIANTS[v]
                                                                     for v in variants},
               "rows": list(results), "results": results,
               "runs": {name: str(out / "runs" / slug(name)) for name in bundles
                        if name != RANDOM},
               "timing_seconds": dict(timer.stages + [("total", timer.total)])}
    (out / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
    with timer("report"):
        md, html = write_mgf_report(out, payload)
    print(f"\nreport: {md} and {html} ({timer.total / 60:.1f} min in all)", flush=True)
    return payload
