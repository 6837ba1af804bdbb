"""``paravox study learn2diss``: does disentangling help, and is it the MI penalty that does it?

Rows, all on the corpus's unlabelled ``pretrain.jsonl`` with the ``learn2diss_demo`` recipe
(stage 1: both encoders trained independently; stage 2: trained on, with the CLUB penalty):

- **stage 1 only**: the independent encoders;
- **Learn2Diss**: stage 2 with the recipe's MI weight;
- **joint, no MI penalty**: stage 2 with weight 0, the same extra steps (separates "more
  training" from "disentangling");
- **other MI weights**;
- **MGF** and **DINO** at their demo budgets (reused from ``paravox study mgf`` when its
  bundles are there), and both Learn2Diss encoders at **random init**.

Every stage-2 row starts from the one stage-1 run (copied into its folder, so the stage is
skipped as done). Scores per row:

- the phone probe on the frame encoder's layers (best layer, test and clean dev splits);
- speaker identification from the frame encoder (its last layer mean-pooled, a linear probe
  on half of each training speaker's utterances): lower = less speaker information in the
  content encoder;
- SV EER, style and language UAR on the utterance embedding (as ``study mgf``);
- the phone probe on the utterance encoder's layers (Learn2Diss rows);
- a held-out MI estimate: a fresh CLUB fitted on the training split's (pooled frame
  features, utterance embedding) pairs and evaluated on the test split's, so every row is
  measured by the same estimator, not by the q it was trained against.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from paravox.data.manifest import Manifest
from paravox.evaluation.classify import evaluate_frozen
from paravox.evaluation.phone_probe import PhoneProbeConfig, phone_probe_splits
from paravox.inference import Embedder
from paravox.inference.bundle import export_bundle, random_bundle
from paravox.objectives.club import CLUB
from paravox.pipelines.demo import PRESETS as DEMO_PRESETS
from paravox.pipelines.frame_encoder_choice import HELP as FRAME_ENCODER_HELP
from paravox.pipelines.frame_encoder_choice import describe, keep_overrides, swap_frame_encoder
from paravox.pipelines.mgf_study import TINY_MGF, evaluate_row
from paravox.pipelines.study_kit import (
    FrozenFeatures,
    StageTimer,
    finish,
    prepare_corpus,
    quiet_study,
    slug,
    speaker_halves,
    train_and_export,
)
from paravox.pipelines.study_registry import (
    StudyOption,
    StudySpec,
    check_preset,
    register_study,
)
from paravox.report.learn2diss_report import write_learn2diss_report
from paravox.training.recipes import load_recipe, run_recipe, stage_dir
from paravox.training.run_files import STAGED_RUN_FILES, mark_run_folder
from paravox.training.run_folder import run_metrics
from paravox.utils.atomic_files import make_folder

STAGE1 = "stage 1 only (independent)"
MAIN = "Learn2Diss (joint + MI penalty)"
NO_MI = "joint, no MI penalty"
RANDOM = "random init (Learn2Diss encoders)"
BASELINES = {"MGF": ("mgf_demo", "mgf"), "DINO": ("dino_demo", "dino")}

_TINY = ["learn2diss.frame_encoder_settings={dim: 32, layers: 2, heads: 2, ff_dim: 64, "
         "embedding_dim: 32, attention_channels: 16, subsample: 2}",
         "learn2diss.utterance_encoder_settings={channels: 16, mfa_channels: 48, "
         "attention_channels: 8, se_channels: 8, embedding_dim: 16}",
         "learn2diss.projector_hidden=32", "learn2diss.projector_dim=16",
         "learn2diss.club_hidden=32", "learn2diss.n_clusters=16", "learn2diss.mask_span=3",
         "learn2diss.cluster_utterances=32", "learn2diss.crops.long_seconds=1.0",
         "learn2diss.augment.reverb_prob=0.0", "learn2diss.augment.n_babble=2",
         "run.batch_size=8", "run.num_workers=0", "run.tensorboard=false",
         "run.babble_utterances=20"]


@dataclass
class Learn2DissStudyPreset:
    """A study preset: corpus preset, recipe overrides (both stages), each stage's epochs,
    the main MI weight and the other weights tried, overrides for the baselines, the phone
    probe's settings, the EER bootstrap size and the held-out CLUB's training steps."""

    corpus_preset: str
    overrides: list[str] = field(default_factory=list)
    stage1_epochs: int = 3
    stage2_epochs: int = 2
    mi_weight: float = 0.1
    other_weights: tuple[float, ...] = (1.0,)
    baselines: dict[str, list[str]] = field(default_factory=dict)
    phones: PhoneProbeConfig = field(default_factory=lambda: PhoneProbeConfig(
        probes=("linear",), max_utterances=150, max_train_frames=40000, epochs=4))
    n_boot: int = 1000
    club_steps: int = 500


PRESETS = {
    "demo": Learn2DissStudyPreset("demo"),
    "tiny": Learn2DissStudyPreset(
        "tiny", _TINY, 1, 1, 0.5, (2.0,),
        {"mgf": TINY_MGF + ["run.epochs=1"], "dino": DEMO_PRESETS["tiny"].overrides["dino"]},
        PhoneProbeConfig(probes=("linear",), max_utterances=16, max_train_frames=4000,
                         epochs=1), n_boot=100, club_steps=100),
}


def variants(p: Learn2DissStudyPreset) -> dict[str, float]:
    """Stage-2 rows -> MI weight."""
    rows = {MAIN: p.mi_weight, NO_MI: 0.0}
    rows.update({f"joint, MI weight {w:g}": w for w in p.other_weights})
    return rows


def _stages(p: Learn2DissStudyPreset, weight: float) -> str:
    return (f"stages=[{{name: independent, set: [learn2diss.mi_weight=0.0, "
            f"run.epochs={p.stage1_epochs}]}}, {{name: joint, set: [learn2diss.mi_weight="
            f"{weight}, run.epochs={p.stage2_epochs}, learn2diss.optim.warmup_epochs=0]}}]")


def _recipe(p: Learn2DissStudyPreset, train: Path, out: Path, weight: float, progress: bool,
            recipe: str = "learn2diss_demo", frame_encoder: str | None = None):
    return load_recipe(recipe, [
        f"train_manifest={train}", f"out_dir={out}", "eval_manifest=null", "trials=null",
        f"run.progress_bar={str(progress).lower()}",
        *keep_overrides(p.overrides, "learn2diss", frame_encoder), _stages(p, weight)])


def train_learn2diss(corpus: Path, out: Path, p: Learn2DissStudyPreset, timer: StageTimer,
                     reuse: bool, progress: bool, frame_encoder: str | None = None
                     ) -> tuple[dict[str, Path], dict[str, Path]]:
    """Stage 1 once, then each stage-2 variant from it; every row exported as a ``both``
    bundle (and ``frame`` / ``utterance`` bundles beside it; no ``utterance`` bundle when
    the utterance encoder reads the frame encoder's layers, as with an ``hf`` frame encoder).
    Returns (row -> bundle folder, row -> run folder)."""
    train = corpus / "pretrain.jsonl"
    base = swap_frame_encoder("learn2diss_demo", "learn2diss", frame_encoder, p.corpus_preset,
                              out)

    def make(folder: Path, weight: float, show: bool):  # this study's recipe, encoder swapped
        return _recipe(p, train, folder, weight, show, base, frame_encoder)

    mode = "auto" if reuse else "restart"
    runs, bundles = {}, {}
    first = True
    for name, weight in variants(p).items():
        folder = out / "runs" / slug(name)
        recipe = make(folder, weight, progress)
        if not first:  # every variant starts from the one stage 1
            s1 = stage_dir(recipe, 0)
            if mode == "restart" and folder.exists():
                shutil.rmtree(folder)
            if not (s1 / "run_done.json").is_file():
                if s1.exists():  # a partial copy: replace it whole
                    shutil.rmtree(s1)
                folder.mkdir(parents=True, exist_ok=True)
                mark_run_folder(folder, STAGED_RUN_FILES)  # a staged run, stage 1 copied in
                shutil.copytree(runs[MAIN] / "stages" / s1.name, s1)
        with timer(f"train {name}" if not first else f"train stage 1 + {name}"):
            run_recipe(recipe, mode=mode if first else "auto")
        runs[name] = folder
        first = False
    runs[STAGE1] = runs[MAIN] / "stages" / stage_dir(make(runs[MAIN], 0, False), 0).name
    exports = make(runs[MAIN], 0, False).method_config.exports()
    for name, folder in runs.items():
        for which in ("both", "frame", "utterance"):
            if which in exports:
                export_bundle(folder, out / "bundles" / slug(name) / which, which=which)
        bundles[name] = out / "bundles" / slug(name)
    return bundles, runs


def train_baselines(corpus: Path, out: Path, p: Learn2DissStudyPreset, timer: StageTimer,
                    reuse: bool, progress: bool, mgf_dir: Path | None) -> dict[str, Path]:
    """MGF and DINO bundles: ``mgf_dir``'s (``paravox study mgf``) when they are there and
    ``reuse`` is on, else trained here."""
    found = {}
    for name, (recipe, key) in BASELINES.items():
        theirs = None
        if mgf_dir is not None:
            theirs = mgf_dir / "bundles" / ("mgf__all_three_scales" if key == "mgf" else key)
        with timer(f"train {name}"):
            if reuse and theirs is not None and (theirs / "model.safetensors").is_file():
                print(f"reusing {theirs}", flush=True)
                found[name] = theirs
            else:
                found[name], _ = train_and_export(
                    recipe, p.baselines.get(key, []), out / "runs" / slug(name),
                    out / "bundles" / slug(name), corpus / "pretrain.jsonl", reuse, progress)
    return found


def pooled_frames(embedder, manifest, layer: str | int = -1, progress: bool = False
                  ) -> dict[str, np.ndarray]:
    """Each utterance's frames of one layer (default: the last) averaged over time: what an
    utterance-level probe can read from a frame encoder."""
    return FrozenFeatures(embedder, layer, progress).pooled(manifest)


def frame_speaker_id(embedder, corpus: Path, progress: bool,
                     pooled: dict[str, np.ndarray] | None = None) -> dict:
    """Closed-set speaker ID accuracy from the mean-pooled last frame layer (the split of
    :func:`~paravox.pipelines.study_kit.speaker_halves`); ``pooled``: the training split's
    pooled frames when already computed."""
    train_m = Manifest.load(corpus / "train.jsonl")
    if pooled is None:
        pooled = pooled_frames(embedder, train_m, progress=progress)
    fit, held = speaker_halves(train_m)
    res = evaluate_frozen(np.stack([pooled[r.id] for r in fit]), [r.speaker for r in fit],
                          np.stack([pooled[r.id] for r in held]), [r.speaker for r in held],
                          held, "speaker", "linear")
    return {"accuracy": res.metrics["accuracy"], "n_speakers": len(res.classes),
            "layer": embedder.layer_names[-1]}


def heldout_mi(embedder, corpus: Path, steps: int, progress: bool, seed: int = 0,
               features: FrozenFeatures | None = None) -> dict:
    """A fresh CLUB (full estimate) fitted by log-likelihood on the training split's (pooled
    last frame layer, utterance embedding) pairs, both standardised per vector as in
    training, and evaluated on the test split's pairs (nats). ``features``: the embedder's
    pooled frames and embeddings when the caller already has them."""
    features = features if features is not None else FrozenFeatures(embedder,
                                                                    progress=progress)

    def pairs(m):
        x, y = features.pooled(m), features.embeddings(m)
        ids = [r.id for r in m]
        xs = torch.tensor(np.stack([x[i] for i in ids]), dtype=torch.float32)
        ys = torch.tensor(np.stack([y[i] for i in ids]), dtype=torch.float32)
        return F.layer_norm(xs, xs.shape[-1:]), F.layer_norm(ys, ys.shape[-1:])

    x_tr, y_tr = pairs(Manifest.load(corpus / "train.jsonl"))
    x_te, y_te = pairs(Manifest.load(corpus / "test.jsonl"))
    torch.manual_seed(seed)
    club = CLUB(x_tr.shape[1], y_tr.shape[1], hidden=256, sampled=False)
    opt = torch.optim.Adam(club.parameters(), lr=1e-3)
    for _ in range(steps):
        opt.zero_grad()
        club.learning_loss(x_tr, y_tr).backward()
        opt.step()
    with torch.no_grad():
        return {"mi_test": float(club(x_te, y_te)), "mi_train": float(club(x_tr, y_tr)),
                "loglik_test": float(club.log_likelihood(x_te, y_te))}


def training_curves(runs: dict[str, Path]) -> dict[str, dict[str, list]]:
    """Per stage-2 row: the logged MI estimate and loss terms over both stages (stage 2's
    steps continue stage 1's), and the step where stage 2 starts."""
    out = {}
    for name, folder in runs.items():
        if name == STAGE1:
            continue
        series: dict[str, list] = {}
        offset, boundary = 0, None
        for stage in sorted((folder / "stages").iterdir()):
            rows = run_metrics(stage)
            steps = [int(r["step"]) for r in rows if r.get("step")]
            for key in ("train/mi", "train/frame", "train/utterance", "train/frame_accuracy"):
                pts = [(offset + int(r["step"]), float(r[key])) for r in rows if r.get(key)]
                series.setdefault(key, []).extend(pts)
            if boundary is None and offset == 0:
                boundary = max(steps) if steps else 0
            offset += max(steps) + 1 if steps else 0
        out[name] = {"series": series, "stage2_start": boundary}
    return out


def run_learn2diss_study(preset: str = "demo", out_dir: str | Path = "runs/learn2diss",
                         corpus: str | Path | None = None, reuse: bool = False,
                         progress: bool = True, mgf_dir: str | Path | None = "runs/mgf",
                         frame_encoder: str | None = None) -> dict:
    """Train and score every row, write ``results.json`` and the report; returns the results
    (see the module docstring). ``frame_encoder``: the Learn2Diss frame encoder
    (:mod:`~paravox.pipelines.frame_encoder_choice`: ``transformer``, ``wav2vec2``,
    ``hubert``, ``wavlm`` or a checkpoint folder; default the recipe's transformer); the MGF
    and DINO baselines stay as they are."""
    check_preset(PRESETS, preset, "study")
    with quiet_study():
        return _run(PRESETS[preset], preset, Path(out_dir), corpus, reuse, progress,
                    Path(mgf_dir) if mgf_dir else None, frame_encoder)


def _run(p: Learn2DissStudyPreset, preset: str, out: Path, corpus, reuse: bool,
         progress: bool, mgf_dir: Path | None, frame_encoder: str | None = None) -> dict:
    make_folder(out)
    timer = StageTimer()
    corpus = prepare_corpus(corpus, preset, p.corpus_preset, out, timer, progress)
    l2d, runs = train_learn2diss(corpus, out, p, timer, reuse, progress, frame_encoder)
    trained = json.loads((l2d[MAIN] / "both" / "config.json").read_text())
    rand = out / "bundles" / "random"
    random_bundle(trained["encoder"], trained["encoder_settings"], trained["features"],
                  rand / "both", seed=0)
    utt = trained["encoder_settings"]
    if utt.get("utterance_input", "logmel") == "logmel":  # else it needs the frame encoder
        random_bundle(utt["utterance"], utt["utterance_settings"], trained["features"],
                      rand / "utterance", seed=0)
    l2d[RANDOM] = rand
    baselines = train_baselines(corpus, out, p, timer, reuse, progress, mgf_dir)

    results: dict[str, dict] = {}
    train_m = Manifest.load(corpus / "train.jsonl")
    for name, folder in l2d.items():
        both = folder / "both"
        # each split through the encoder once, for every score below
        feats = FrozenFeatures(Embedder.from_bundle(both), progress=progress)
        res = evaluate_row(name, both, corpus, p, timer, progress, features=feats)
        with timer(f"frame-encoder speaker ID and held-out MI, {name}"):
            res["frame_speaker_id"] = frame_speaker_id(feats.embedder, corpus, progress,
                                                       feats.pooled(train_m))
            res["mi"] = heldout_mi(feats.embedder, corpus, p.club_steps, progress,
                                   features=feats)
        if not (folder / "utterance").is_dir():  # the utterance encoder reads the frames
            results[name] = res
            continue
        with timer(f"phone probe on the utterance encoder, {name}"):
            found = phone_probe_splits(
                Embedder.from_bundle(folder / "utterance"), Manifest.load(
                    corpus / "train.jsonl"), {"test": Manifest.load(corpus / "test.jsonl")},
                dataclasses.replace(p.phones, include_logmel=False), progress)
            res["utterance_frames_test"] = {"summary": found["test"].summary(),
                                            "rows": found["test"].rows()}
        results[name] = res
    for name, bundle in baselines.items():
        feats = FrozenFeatures(Embedder.from_bundle(bundle), progress=progress)
        res = evaluate_row(name, bundle, corpus, p, timer, progress, features=feats)
        with timer(f"frame-encoder speaker ID, {name}"):
            res["frame_speaker_id"] = frame_speaker_id(feats.embedder, corpus, progress,
                                                       feats.pooled(train_m))
        results[name] = res
    payload = {"preset": preset, "corpus": str(corpus), "rows": list(results),
               "frame_encoder": describe(frame_encoder),
               "mi_weights": dict(variants(p)),
               "stage_epochs": [p.stage1_epochs, p.stage2_epochs],
               "results": results, "curves": training_curves(runs),
               "runs": {n: str(f) for n, f in runs.items()}}
    return finish(out, payload, write_learn2diss_report, timer)


register_study(StudySpec(
    "learn2diss", run_learn2diss_study, output="runs/learn2diss",
    help="Learn2Diss: stage 1 alone, the joint stage with and without the MI penalty and at "
    "other weights, MGF, DINO and random init -> table, plots",
    description="Train the two-stage learn2diss_demo recipe once per stage-2 variant (stage 1 "
    "shared), then score each row: phone probe on the frame encoder, speaker ID from it, SV / "
    "style / language on the utterance embedding, the phone probe on the utterance encoder and "
    "a held-out CLUB MI estimate; writes results.json and report.md/html.",
    options=(StudyOption("--mgf-dir", "mgf_dir", "with --reuse: take the MGF and DINO bundles "
                         "of this `paravox study mgf` output when they are there",
                         default="runs/mgf"),
             StudyOption("--frame-encoder", "frame_encoder", FRAME_ENCODER_HELP))))
