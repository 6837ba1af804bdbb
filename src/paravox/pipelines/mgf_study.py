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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from paravox.audio.features import FeatureConfig, LogMelFilterbank
from paravox.audio.io import load_audio
from paravox.data.manifest import Manifest
from paravox.errors import ConfigError
from paravox.evaluation.classify import evaluate_frozen
from paravox.evaluation.phone_probe import PhoneProbeConfig, phone_probe_splits
from paravox.inference import Embedder
from paravox.pipelines.demo import PRESETS as DEMO_PRESETS
from paravox.pipelines.frame_encoder_choice import HELP as FRAME_ENCODER_HELP
from paravox.pipelines.frame_encoder_choice import describe, keep_overrides, swap_frame_encoder
from paravox.pipelines.study_kit import (
    FrozenFeatures,
    StageTimer,
    finish,
    prepare_corpus,
    probe_rows,
    quiet_study,
    random_like,
    slug,
    speaker_halves,
    splits_of,
    sv_row,
    train_and_export,
)
from paravox.pipelines.study_registry import (
    StudyOption,
    StudySpec,
    check_preset,
    register_study,
)
from paravox.report.mgf_report import write_mgf_report
from paravox.utils.atomic_files import make_folder

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

TINY_MGF = ["run.epochs=2", "run.batch_size=8", "run.num_workers=0", "run.tensorboard=false",
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
    "tiny": MGFStudyPreset("tiny", TINY_MGF, DEMO_PRESETS["tiny"].overrides,
                           PhoneProbeConfig(probes=("linear",), max_utterances=16,
                                            max_train_frames=4000, epochs=1), n_boot=100),
}


def train_rows(corpus: Path, out: Path, preset: MGFStudyPreset, timer: StageTimer,
               reuse: bool, progress: bool, variants: list[str],
               frame_encoder: str | None = None) -> dict[str, Path]:
    """Train (or reuse) every MGF variant and baseline; add the random-init bundle (the first
    variant's architecture). ``frame_encoder``: MGF's encoder
    (:mod:`~paravox.pipelines.frame_encoder_choice`; None: the recipe's transformer)."""
    train = corpus / "pretrain.jsonl"
    bundles: dict[str, Path] = {}
    recipe = swap_frame_encoder("mgf_demo", "mgf", frame_encoder, preset.corpus_preset, out)
    mgf = keep_overrides(preset.mgf, "mgf", frame_encoder)
    jobs = {name: (recipe, mgf + VARIANTS[name]) for name in variants}
    jobs.update({name: (recipe, preset.baselines.get(key, []))
                 for name, (recipe, key) in BASELINES.items()})
    for name, (recipe, overrides) in jobs.items():
        with timer(f"train {name}"):
            bundles[name], _ = train_and_export(recipe, overrides, out / "runs" / slug(name),
                                                out / "bundles" / slug(name), train, reuse,
                                                progress)
    bundles[RANDOM] = random_like(bundles[variants[0]], out / "bundles" / "random", seed=0)
    return bundles


def logmel_embeddings(manifest, progress: bool) -> dict[str, np.ndarray]:
    """Mean and standard deviation of each utterance's log-mel frames (no mean
    normalisation): the log-mel floor's utterance embedding."""
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
    train_m, test_m = Manifest.load(corpus / "train.jsonl"), Manifest.load(corpus / "test.jsonl")
    train, test = embed(train_m), embed(test_m)
    sv, _ = sv_row(test, corpus / "trials.txt", preset.n_boot)
    res: dict = {"sv": {"eer": sv["eer"], "eer_ci": sv["eer_ci"]}}
    fit, held = speaker_halves(train_m)
    spk = evaluate_frozen(np.stack([train[r.id] for r in fit]), [r.speaker for r in fit],
                          np.stack([train[r.id] for r in held]), [r.speaker for r in held],
                          held, "speaker", "linear")
    res["speaker_id"] = {"accuracy": spk.metrics["accuracy"], "n_speakers": len(spk.classes),
                         "n_test": spk.n_test}
    for split, m in splits_of(corpus).items():
        emb = test if split == "test" else embed(m)
        res[f"classify_{split}"] = probe_rows(train_m, train, m, emb, TASKS)
    return res


def evaluate_row(name: str, bundle: Path | None, corpus: Path, preset: MGFStudyPreset,
                 timer: StageTimer, progress: bool, features: FrozenFeatures | None = None
                 ) -> dict:
    """Every score of one row (``bundle=None``: the log-mel floor); ``features``: the
    bundle's embeddings shared with the caller's other scores."""
    res: dict = {}
    if bundle is not None and features is None:
        features = FrozenFeatures(Embedder.from_bundle(bundle), progress=progress)
    embedder = None if bundle is None else features.embedder
    with timer(f"utterance-level scores, {name}"):
        if embedder is None:
            res.update(utterance_scores(lambda m: logmel_embeddings(m, progress), corpus,
                                        preset, progress))
        else:
            res.update(utterance_scores(features.embeddings, corpus, preset, progress))
    with timer(f"phone probe, {name}"):
        train = Manifest.load(corpus / "train.jsonl")
        cfg = preset.phones if embedder is None else dataclasses.replace(
            preset.phones, include_logmel=False)
        splits = {f"frames_{split}": m for split, m in splits_of(corpus).items()}
        found = phone_probe_splits("logmel" if embedder is None else embedder, train, splits,
                                   cfg, progress)
        res.update({k: {"summary": r.summary(), "rows": r.rows()} for k, r in found.items()})
    return res


def run_mgf_study(preset: str = "demo", out_dir: str | Path = "runs/mgf",
                  corpus: str | Path | None = None, reuse: bool = False,
                  progress: bool = True, variants: list[str] | None = None,
                  frame_encoder: str | None = None) -> dict:
    """Train and score every row, write ``results.json`` and the report; returns the
    results (see the module docstring). ``frame_encoder``: MGF's frame encoder
    (:mod:`~paravox.pipelines.frame_encoder_choice`: ``transformer``, ``wav2vec2``,
    ``hubert``, ``wavlm`` or a checkpoint folder; default the recipe's transformer)."""
    check_preset(PRESETS, preset, "study")
    variants = list(variants or VARIANTS)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ConfigError(f"MGF variants {unknown} unknown; choose from {list(VARIANTS)}")
    with quiet_study():
        return _run(PRESETS[preset], preset, Path(out_dir), corpus, reuse, progress, variants,
                    frame_encoder)


def _run(p: MGFStudyPreset, preset: str, out: Path, corpus, reuse: bool, progress: bool,
         variants: list[str], frame_encoder: str | None = None) -> dict:
    make_folder(out)
    timer = StageTimer()
    corpus = prepare_corpus(corpus, preset, p.corpus_preset, out, timer, progress)
    bundles = train_rows(corpus, out, p, timer, reuse, progress, variants, frame_encoder)
    results = {name: evaluate_row(name, bundle, corpus, p, timer, progress)
               for name, bundle in bundles.items()}
    results[LOGMEL] = evaluate_row(LOGMEL, None, corpus, p, timer, progress)
    payload = {"preset": preset, "corpus": str(corpus),
               "frame_encoder": describe(frame_encoder), "variants": {v: VARIANTS[v]
                                                                     for v in variants},
               "rows": list(results), "results": results,
               "runs": {name: str(out / "runs" / slug(name)) for name in bundles
                        if name != RANDOM}}
    return finish(out, payload, write_mgf_report, timer)


register_study(StudySpec(
    "mgf", run_mgf_study, output="runs/mgf",
    help="MGF (multi-granular SSL) with each scale alone, each pair, the generative loss at "
    "the phoneme scale, DINO, SimCLR, random init and log-mel -> table, plots",
    description="Train every row at the same budget on the corpus's pretrain split, then score "
    "each: phone probe per layer, SV EER, closed-set speaker ID, style and language UAR; "
    "writes results.json and report.md/html.",
    options=(StudyOption("--variant", "variants", "only these MGF rows (default: all)",
                         nargs="+"),
             StudyOption("--frame-encoder", "frame_encoder", FRAME_ENCODER_HELP))))
