"""``paravox study dino``: the findings of the DINO-for-speech paper, at this machine's scale.

Cho et al. (IEEE JSTSP 2022) report four things; each becomes a table:

1. **DINO vs the supervised x-vector vs SimCLR vs random init** on speaker verification
   (EER with a bootstrap interval, minDCF) and the transfer tasks (style as the emotion proxy,
   fluency as the pathological-speech proxy, language), by linear probe and staged
   fine-tuning. DINO is tuned first: every setting of :data:`SWEEP` (one change each from the
   ``dino_demo`` recipe: prototypes, teacher temperature schedule, teacher momentum, crop
   lengths, learning rate, RDINO's regulariser) trains at the recipe's budget and is scored on
   *dev* trials (speaker-disjoint, made here from the dev split, or from the labelled train
   split of a corpus without one, so the choice never sees the test trials; on a generated
   corpus whose test audio went through a random channel, the dev audio goes through the same
   kind of channel first, so the choice is made for the conditions it is measured in). The
   recipe stays unless a row is *clearly* better on dev (its whole dev interval below the
   recipe's dev EER; :func:`choose_setting`); the chosen setting is then
   trained ``long_epochs`` long, with SimCLR at the same length, and an EER-against-steps
   curve is taken for both (and the x-vector) on the test trials.
2. **Staged vs all-at-once fine-tuning vs a linear probe**, per task, on the tuned DINO.
3. **Chunk length**: staged fine-tuning on crops of ``chunks`` seconds and testing on chunks of
   the same length (posteriors averaged over an utterance's chunks), and "whole": training
   crops of ``whole_train_seconds`` (shorter utterances tiled) and whole test utterances.
4. **Augmentation**: staged fine-tuning with and without waveform + SpecAugment augmentation.

Classification results carry a 95 % interval of the UAR from a bootstrap over test speakers.
Results go to ``results.json``; :mod:`paravox.report.dino_study_report` writes the report.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from paravox.data.manifest import Manifest
from paravox.data.synth.channel_copy import channel_copy, corpus_channel
from paravox.data.synth.corpus import make_trials
from paravox.errors import ConfigError
from paravox.evaluation.callbacks import EERCurve
from paravox.evaluation.sv import cosine_sv
from paravox.evaluation.trials import read_trials, trial_manifest
from paravox.inference import Embedder
from paravox.inference.bundle import export_bundle
from paravox.inference.embedder import embed_manifest
from paravox.pipelines.demo import PRESETS as DEMO_PRESETS
from paravox.pipelines.demo import DemoPreset, evaluate_model
from paravox.pipelines.study_kit import (
    StageTimer,
    finish,
    prepare_corpus,
    quiet_study,
    random_like,
    slug,
    train_and_export,
)
from paravox.pipelines.study_registry import StudySpec, check_preset, register_study
from paravox.report.dino_study_report import write_dino_study_report
from paravox.training.run_folder import run_metrics, training_seconds
from paravox.transfer.finetune import FineTuneConfig, evaluate_finetuned
from paravox.utils.atomic_files import make_folder, write_text

# DINO settings tried, each one change from the dino_demo recipe (K=1024 prototypes with a
# batch-normalised head, teacher temperature 0.04 throughout, budget-proof momentum ending at
# 0.99, crops 2 x 3 s + 4 x 2 s, AdamW lr 0.002, RDINO regulariser 0.2): what
# facebookresearch/dino, sslsv, wespeaker's and 3D-Speaker's DINO recipes tune
END_AT_1 = ["dino.momentum_end=1.0"]
OLD_SCHEDULES = ["dino.max_teacher_init_share=1.0", "dino.freeze_prototypes_fraction=0.25",
                 "dino.optim.warmup_fraction=0.25", *END_AT_1]
SHORT_CROPS = ["dino.crops.long_seconds=2.0", "dino.crops.short_seconds=1.0"]
NO_RDINO = ["dino.regulariser.weight=0.0"]
# the speech toolkits' optimiser (WeSpeaker, sslsv)
SGD = ["dino.optim.optimizer=sgd", "dino.optim.lr=0.2", "dino.optim.min_lr=5e-5",
       "dino.optim.weight_decay=5e-5", "dino.optim.weight_decay_end=5e-5"]
SWEEP = {
    "recipe (dino_demo)": [],
    # calibration rows: the recipe as it was (schedules before they were budget-proof --
    # momentum 0.996 -> 1 whatever the length, prototypes frozen and lr warmed up for the
    # first quarter -- no head batch norm, 2 x 2 s + 4 x 1 s crops), each of its parts, the
    # references' momentum end, and the speech toolkits' optimiser (WeSpeaker, sslsv)
    "old recipe (old schedules, no head BN, 2 x 2 s + 4 x 1 s crops, no RDINO)": [
        *OLD_SCHEDULES, "dino.head.use_bn=false", *SHORT_CROPS, *NO_RDINO],
    "old schedules": OLD_SCHEDULES,
    "momentum ending at 1 (facebookresearch/dino, WeSpeaker)": END_AT_1,
    "no head batch norm": ["dino.head.use_bn=false"],
    "crops 2 x 2 s + 4 x 1 s": SHORT_CROPS,
    "no RDINO regulariser": NO_RDINO,
    "SGD 0.2, wd 5e-5": SGD,
    # what facebookresearch/dino and the speech recipes tune
    "256 prototypes": ["dino.head.n_prototypes=256"],
    "4096 prototypes": ["dino.head.n_prototypes=4096"],
    "teacher temp 0.02": ["dino.teacher_temp=0.02"],
    "teacher temp 0.04 -> 0.07 over half the run": [
        "dino.warmup_teacher_temp=0.04", "dino.teacher_temp=0.07",
        "dino.warmup_teacher_temp_fraction=0.5"],
    "lr 0.005": ["dino.optim.lr=0.005"],
}
MODELS = ("random", "xvector", "simclr", "dino_recipe", "dino")
NAMES = {"random": "random init (DINO's encoder)", "xvector": "x-vector (supervised)",
         "simclr": "SimCLR (long)", "dino_recipe": "DINO (recipe budget)",
         "dino": "DINO (tuned, long)"}
TASKS = ("style", "fluency", "language")


@dataclass
class DINOStudyPreset:
    """What a study preset sets: the corpus preset, recipe overrides per model (``dino``,
    ``simclr``, ``xvector``), the sweep rows, the long runs' epochs and curve interval, the
    fine-tuning, the chunk lengths, the tasks and the bootstrap size."""

    corpus_preset: str
    overrides: dict[str, list[str]] = field(default_factory=dict)
    sweep: tuple[str, ...] = tuple(SWEEP)
    long_epochs: int = 16  # 4x the recipe's 4 epochs (800 steps of 32 at the demo preset)
    curve_every: int = 100  # steps between EER checks of the long runs
    finetune: FineTuneConfig = field(default_factory=lambda: FineTuneConfig(
        stage1_epochs=2, stage2_epochs=2))
    chunks: tuple[float, ...] = (1.0, 2.0, 4.0)
    whole_train_seconds: float = 6.0  # "whole": training crops this long (demo median 5.1 s)
    tasks: tuple[str, ...] = TASKS
    n_boot: int = 1000
    dev_trials_per_utt: int = 4
    # dev audio through the corpus's test channel (generated corpora with ``test_channel``)
    dev_channel: bool = True
    # "clearly better": the recipe stays unless a row's whole dev interval is below the
    # recipe's dev EER; "lowest": the lowest dev EER, however small the margin
    selection: str = "clearly better"


PRESETS = {
    # about 2.5 h on 2 CPU cores with bf16 (13 sweep rows of ~7 min, 800-step DINO ~28 min)
    "demo": DINOStudyPreset("demo"),
    # CI: tiny corpus, tiny models, two sweep rows, one task
    "tiny": DINOStudyPreset(
        "tiny", DEMO_PRESETS["tiny"].overrides, sweep=("recipe (dino_demo)",
                                                        "old schedules"),
        long_epochs=3, curve_every=2,
        finetune=dataclasses.replace(DEMO_PRESETS["tiny"].finetune, stage1_epochs=1,
                                     stage2_epochs=1),
        chunks=(1.0,), whole_train_seconds=2.0, tasks=("style",), n_boot=100,
        dev_trials_per_utt=3),
}


SELECTIONS = ("clearly better", "lowest")


def dev_trials(corpus: Path, out: Path, per_utt: int, channel: bool = True
               ) -> tuple[Path, Path]:
    """Speaker-verification trials for choosing DINO's settings without the test trials:
    over the dev split (speaker-disjoint from train and test), or, for a corpus without one
    (the tiny preset), over the labelled train split, which DINO never trains on. With
    ``channel`` and a generated corpus whose test audio is channel-degraded, the split is
    first copied through the same kind of channel (:func:`channel_copy`, own random draws):
    on clean trials a barely trained encoder verifies about as well as a trained one, so a
    choice made there can be the worst on the test trials. Returns (manifest, trials)."""
    synth = corpus_channel(corpus) if channel else None
    for split in ("dev", "train"):
        manifest = corpus / f"{split}.jsonl"
        if manifest.is_file() and len(rows := Manifest.load(manifest).rows):
            if synth is not None:  # same ids and speakers, so the same trials
                manifest = channel_copy(manifest, out / f"{split}_channel", synth)
            path = out / f"{split}_trials.txt"
            make_folder(out)
            write_text(path, "".join(f"{t} {a} {b}\n" for t, a, b in
                                     make_trials(rows, per_utt, 0)))
            return manifest, path
    raise ConfigError(f"{corpus}: the study chooses DINO's settings on dev (or train) trials "
                      f"and needs a non-empty dev.jsonl or train.jsonl")


def check_selection(rule: str) -> None:
    """Refuse an unknown selection rule before hours of sweep, not after them."""
    if rule not in SELECTIONS:
        raise ConfigError(f"study preset: selection must be one of "
                          f"{', '.join(map(repr, SELECTIONS))}, got {rule!r}")


def choose_setting(sweep: dict, recipe: str, rule: str = "clearly better") -> str:
    """The sweep row the long runs train. ``"lowest"``: the lowest dev EER. ``"clearly
    better"``: the recipe, unless rows have their whole dev EER interval below the recipe's
    dev EER (then the lowest of those). Thirteen rows scored on a few thousand trials differ
    by noise of about a point; taking the lowest would pick a row for its luck on dev as
    often as for its merit, so the calibrated default is kept where dev cannot tell them
    apart."""
    check_selection(rule)
    if rule == "lowest":
        return min(sweep, key=lambda n: sweep[n]["dev"]["eer"])
    bar = sweep[recipe]["dev"]["eer"]
    clear = [n for n in sweep if n != recipe and sweep[n]["dev"]["eer_ci"][1] < bar]
    return min(clear, key=lambda n: sweep[n]["dev"]["eer"]) if clear else recipe


def sv_scores(bundle: Path, manifest: Path, trials: Path, n_boot: int) -> dict:
    """Cosine EER (with its bootstrap interval) and minDCF of a bundle on a trial list,
    embedding only the utterances the trials use."""
    pairs = read_trials(trials)
    emb = embed_manifest(Embedder.from_bundle(bundle), trial_manifest(manifest, pairs),
                         progress=False)
    return {k: v for k, v in cosine_sv(emb, pairs, n_boot).row().items() if k != "backend"}


def logged(run_dir: Path, key: str) -> list[tuple[int, float]]:
    """``(step, value)`` of every logged ``key`` in a run's CSV log (resumed segments
    merged), in step order: EER curves (``eval/eer``), teacher entropy, final values."""
    pts = {int(r["step"]): float(r[key]) for r in run_metrics(run_dir) if r.get(key)}
    return sorted(pts.items())


def last_logged(run_dir: Path, key: str) -> float | None:
    """The last logged value of ``key`` (``None`` when never logged)."""
    pts = logged(run_dir, key)
    return pts[-1][1] if pts else None


def run_sweep(corpus: Path, out: Path, p: DINOStudyPreset, selection: tuple[Path, Path],
              timer: StageTimer, reuse: bool, progress: bool) -> dict:
    """Every sweep row at the recipe's budget, scored on dev and test trials."""
    rows = {}
    for name in p.sweep:
        folder = f"sweep_{slug(name)}"
        run_dir, bundle = out / "runs" / folder, out / "bundles" / folder
        with timer(f"DINO sweep: {name}"):
            bundle, steps = train_and_export(
                "dino_demo", p.overrides.get("dino", []) + SWEEP[name], run_dir, bundle,
                corpus / "pretrain.jsonl", reuse, progress)
            rows[name] = {
                "overrides": SWEEP[name], "steps": steps, "bundle": str(bundle),
                "run": str(run_dir),
                "teacher_entropy": last_logged(run_dir, "collapse/teacher_entropy"),
                "log_prototypes": last_logged(run_dir, "collapse/log_prototypes"),
                "effective_rank": last_logged(run_dir, "collapse/effective_rank"),
                "train_seconds": training_seconds(run_dir),
                "dev": sv_scores(bundle, *selection, p.n_boot),
                "test": sv_scores(bundle, corpus / "test.jsonl", corpus / "trials.txt",
                                  p.n_boot)}
            # a student clearly ahead of its teacher says the averaging is too slow
            student = export_bundle(run_dir, out / "bundles" / f"{folder}_student",
                                    which="student")
            rows[name]["student_test"] = sv_scores(student, corpus / "test.jsonl",
                                                   corpus / "trials.txt", p.n_boot)
        rows[name]["seconds"] = timer.stages[-1][1]
    return rows


def train_models(corpus: Path, out: Path, p: DINOStudyPreset, best: str, sweep: dict,
                 timer: StageTimer, reuse: bool, progress: bool) -> tuple[dict, dict]:
    """The finding-1 rows: the tuned DINO and SimCLR trained long and the x-vector, each
    with an EER curve on the test trials; the recipe-budget DINO (from the sweep) and a
    random encoder. Returns (bundles, steps) per model key."""
    long = [f"run.epochs={p.long_epochs}"]
    jobs = {"dino": ("dino_demo", p.overrides.get("dino", []) + SWEEP[best] + long,
                     "pretrain"),
            "simclr": ("simclr_demo", p.overrides.get("simclr", []) + long, "pretrain"),
            "xvector": ("xvector_demo", p.overrides.get("xvector", []), "train")}
    bundles, steps = {}, {}
    for key, (recipe, overrides, split) in jobs.items():
        curve = EERCurve(corpus / "test.jsonl", corpus / "trials.txt", p.curve_every)
        with timer(f"train {NAMES[key]}"):
            bundles[key], steps[key] = train_and_export(
                recipe, overrides, out / "runs" / key, out / "bundles" / key,
                corpus / f"{split}.jsonl", reuse, progress, callbacks=[curve])
    first = sweep[p.sweep[0]]
    bundles["dino_recipe"], steps["dino_recipe"] = Path(first["bundle"]), first["steps"]
    bundles["random"] = random_like(bundles["dino"], out / "bundles" / "random", seed=0)
    steps["random"] = 0
    return bundles, steps


def finetune_variants(p: DINOStudyPreset) -> dict[str, tuple[FineTuneConfig, float | None]]:
    """Findings 2-4's fine-tuning runs beyond the staged default: name -> (config, test
    chunk seconds or None for whole utterances); protocol ``full`` for "all at once"."""
    base = p.finetune
    variants = {"all at once": (base, None),
                "staged, no augmentation": (dataclasses.replace(base, augment=False), None)}
    for c in p.chunks:
        variants[f"chunks {c:g} s"] = (dataclasses.replace(base, crop_seconds=c), c)
    variants["chunks whole"] = (dataclasses.replace(base, crop_seconds=p.whole_train_seconds),
                                None)
    return variants


def run_finetuning(bundle: Path, corpus: Path, out: Path, p: DINOStudyPreset, frozen: dict,
                   timer: StageTimer, progress: bool) -> dict:
    """Per task: the linear probe and staged fine-tuning (from finding 1's evaluation) and
    every :func:`finetune_variants` run, on one bundle."""
    results = {}
    for task in p.tasks:
        rows = {"linear probe": frozen["classify"][task]["linear"],
                "staged": frozen["classify"][task]["staged"]}
        for name, (cfg, chunk) in finetune_variants(p).items():
            protocol = "full" if name == "all at once" else "staged"
            with timer(f"fine-tuning, {task}, {name}"):
                rows[name] = evaluate_finetuned(
                    bundle, corpus / "train.jsonl", corpus / "test.jsonl", task, protocol, cfg,
                    out / "finetune_variants" / slug(name), chunk_seconds=chunk,
                    progress=progress).row()
        results[task] = rows
    return results


def run_dino_study(preset: str = "demo", out_dir: str | Path = "runs/study",
                   corpus: str | Path | None = None, reuse: bool = False,
                   progress: bool = True) -> dict:
    """Run every part (see the module docstring), write ``results.json`` and the report;
    returns the results."""
    check_preset(PRESETS, preset, "study")
    with quiet_study():
        return _run(PRESETS[preset], preset, Path(out_dir), corpus, reuse, progress)


def _run(p: DINOStudyPreset, preset: str, out: Path, corpus, reuse: bool,
         progress: bool) -> dict:
    check_selection(p.selection)
    make_folder(out)
    timer = StageTimer()
    corpus = prepare_corpus(corpus, preset, p.corpus_preset, out, timer, progress)
    selection = dev_trials(corpus, out, p.dev_trials_per_utt, p.dev_channel)
    sweep = run_sweep(corpus, out, p, selection, timer, reuse, progress)
    best = choose_setting(sweep, p.sweep[0], p.selection)
    print(f"DINO setting chosen on the dev trials ({p.selection}): {best}", flush=True)
    bundles, steps = train_models(corpus, out, p, best, sweep, timer, reuse, progress)
    eval_preset = DemoPreset(p.corpus_preset, finetune=p.finetune, n_boot=p.n_boot)
    models = {}
    for key in MODELS:
        res, _ = evaluate_model(bundles[key], corpus, out, eval_preset, timer, NAMES[key],
                                     progress, tasks=p.tasks)
        res.pop("_sv_scores", None)
        models[key] = res | {"steps": steps[key]}
    finetuning = run_finetuning(bundles["dino"], corpus, out, p, models["dino"], timer,
                                progress)
    payload = {
        "preset": preset, "corpus": str(corpus), "selection_split": selection[0].stem,
        "selection_channel": selection[0].parent != corpus, "selection_rule": p.selection,
        "tasks": list(p.tasks), "names": NAMES,
        "sweep": sweep, "best": best, "models": models, "finetuning": finetuning,
        "chunks": list(p.chunks), "whole_train_seconds": p.whole_train_seconds,
        "finetune_config": dataclasses.asdict(p.finetune), "long_epochs": p.long_epochs,
        "curves": {key: logged(out / "runs" / key, "eval/eer")
                   for key in ("dino", "simclr", "xvector")},
        "entropy": {key: logged(run, "collapse/teacher_entropy") for key, run in
                    (("dino", out / "runs" / "dino"),
                     ("dino_recipe", Path(sweep[p.sweep[0]]["run"])))}}
    return finish(out, payload, write_dino_study_report, timer)


register_study(StudySpec(
    "dino", run_dino_study, output="runs/study",
    help="the DINO paper's findings: DINO (tuned, every setting reported) vs x-vector vs "
    "SimCLR vs random init; staged vs all-at-once vs linear probe; chunk length; "
    "augmentation -> tables, curves, verdicts (about 2.5 h on 2 cores)",
    description="Sweep DINO's settings at the recipe budget (chosen on dev trials), train the "
    "best and SimCLR longer with EER-vs-steps curves, train the x-vector, score every model on "
    "SV and the style / fluency / language tasks, then fine-tune the tuned DINO per task under "
    "each protocol, chunk length and with / without augmentation; writes results.json and "
    "report.md/html."))
