"""Recipes: a whole experiment in one YAML file (data, method, engine, output folder).

``method:`` names a registered method (:mod:`paravox.training.registry`); its settings live
under the key of the same name. :func:`run_recipe` trains and saves the resolved config beside
the run; end-of-training checks (e.g. the quick EER of :mod:`paravox.evaluation.callbacks`)
are callbacks the caller passes in.

A recipe may have **stages** (``stages: [{name: separate, set: [...]}, {name: joint}]``):
each stage is the recipe with its ``set`` overrides applied, trained in
``<out_dir>/stages/<k>_<name>/`` (a normal run folder) and started from the previous stage's
final weights. Re-running a multi-stage recipe skips finished stages and resumes an
interrupted one from its last checkpoint, so a long recipe is resumable per stage; what a
re-run does with a folder that holds a run is :mod:`paravox.training.run_folder`'s rule.
"""

from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import OmegaConf

from paravox.data.manifest import Manifest
from paravox.data.shards import ShardIndex
from paravox.errors import ConfigError, ManifestError
from paravox.training.engine import (
    RunConfig,
    TooManyBadItems,
    crop_loader,
    fit,
    new_run_notices,
    seed_everything,
    steps_per_epoch,
)
from paravox.training.module import NonFiniteError, TrainingModule
from paravox.training.registry import get_method
from paravox.training.run_files import (
    RUN_DONE,
    RUN_STOPPED,
    SINGLE_RUN_FILES,
    STAGED_RUN_FILES,
    check_run_folder,
    mark_run_folder,
    mark_stopped,
)
from paravox.training.run_folder import config_changes, mark_done, plan_run, refuse_changed
from paravox.training.streaming import shard_loader
from paravox.utils.config import build_config, config_yaml, load_yaml, save_config
from paravox.utils.folder_lock import hold_folder
from paravox.utils.output_paths import check_output_folder

PACKAGED_RECIPES = Path(__file__).resolve().parents[1] / "recipes"
STAGE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")  # a stage's folder name: nothing that leaves out_dir


@dataclass
class StageConfig:
    """One stage of a multi-stage recipe: a name, ``key=value`` overrides of the recipe for
    this stage, and whether it starts from the previous stage's weights."""

    name: str = "stage"
    set: list[str] = field(default_factory=list)
    init_from_previous: bool = True

    def __post_init__(self):
        check_stage_name(self.name)


def check_stage_name(name: str) -> None:
    """A stage name becomes a folder name under ``<out_dir>/stages/``: letters, digits, ``_``
    and ``-`` only, so that no name (``x/../../victim``) reaches outside ``out_dir``."""
    if not isinstance(name, str) or not STAGE_NAME.match(name):
        raise ConfigError(f"stage name {name!r}: use only letters, digits, '_' and '-' (it "
                          f"names the stage's folder under <out_dir>/stages/)")


@dataclass
class Recipe:
    """Fields every recipe has; :func:`recipe_class` adds the method's own section."""

    method: str = "dino"
    train_manifest: str = "data/demo/pretrain.jsonl"
    # SHARDS/index.json from `paravox shard`: train on the shards as a stream instead of
    # reading train_manifest's files (train_manifest is then not read)
    train_shards: str | None = None
    out_dir: str = "runs/run"
    eval_manifest: str | None = None  # with trials: the quick cosine-EER check at the end
    trials: str | None = None
    resume_from: str | None = None  # a Lightning checkpoint (e.g. <out_dir>/checkpoints/last.ckpt)
    run: RunConfig = field(default_factory=RunConfig)
    stages: list[StageConfig] = field(default_factory=list)

    @property
    def method_config(self):
        """The method's own settings (the section named after the method)."""
        return getattr(self, self.method)


_RECIPE_CLASSES: dict[str, type[Recipe]] = {}


def recipe_class(method: str) -> type[Recipe]:
    """The typed recipe dataclass of a registered method (built once from its entry)."""
    spec = get_method(method)
    cls = _RECIPE_CLASSES.get(method)
    if cls is None or getattr(cls, "_spec", None) is not spec:
        cls = dataclasses.make_dataclass(
            f"{method.title().replace('_', '')}Recipe",
            [("method", str, field(default=method)),
             ("train_manifest", str, field(default=spec.train_manifest)),
             ("out_dir", str, field(default=f"runs/{method}")),
             (method, spec.config, field(default_factory=spec.config))],
            bases=(Recipe,))
        cls._spec = spec
        _RECIPE_CLASSES[method] = cls
    return cls


def find_recipe(name: str | Path) -> Path:
    """A recipe file: a path, or the name of a recipe shipped with paravox (``dino_demo``)."""
    path = Path(name)
    if path.is_file():
        return path
    packaged = PACKAGED_RECIPES / (path.name if path.suffix else f"{path.name}.yaml")
    if packaged.is_file():
        return packaged
    shipped = sorted(p.stem for p in PACKAGED_RECIPES.glob("*.yaml"))
    raise ConfigError(f"recipe '{name}' not found: give a YAML file or one of the recipes "
                      f"shipped with paravox: {', '.join(shipped)}")


def recipe_method(yaml_path: str | Path | None, overrides: list[str] | None) -> str:
    """The ``method:`` of a recipe (command-line override first, then the file; default dino)."""
    method = None
    if yaml_path is not None and Path(yaml_path).is_file():
        method = load_yaml(yaml_path).get("method")  # a bad file: one line, not echoed
    for item in overrides or []:
        if item.startswith("method="):
            method = item.split("=", 1)[1]
    method = method or "dino"
    get_method(method, where=str(yaml_path or "overrides"))
    return method


def load_recipe(yaml_path: str | Path | None, overrides: list[str] | None = None) -> Recipe:
    """Defaults <- YAML file <- ``key=value`` overrides, every key checked."""
    if yaml_path is not None:
        yaml_path = find_recipe(yaml_path)
    return build_config(recipe_class(recipe_method(yaml_path, overrides)), yaml_path=yaml_path,
                        overrides=overrides)


def defaults_yaml(recipe: Recipe) -> str:
    """The resolved defaults of ``recipe``'s method: what a setting absent from an older run's
    config.yaml (added to paravox since) is compared with, so that the run still resumes."""
    return config_yaml(type(recipe)())


def build_module(recipe: Recipe, manifest: Manifest) -> TrainingModule:
    """The method's module for this recipe and training manifest (via its registry entry)."""
    spec = get_method(recipe.method)
    steps = steps_per_epoch(len(manifest), recipe.run)
    return spec.module.from_recipe(recipe.method_config, manifest, steps, recipe.run.epochs)


def _check_files(recipe: Recipe) -> None:
    check_output_folder(recipe.out_dir, "out_dir")
    if recipe.train_shards is not None:
        ShardIndex.load(recipe.train_shards)  # a missing or broken index: one line, now
    keys = ("eval_manifest", "trials") + (("train_manifest",) if recipe.train_shards is None
                                          else ())
    for key in keys:  # fail before training, not after
        value = getattr(recipe, key)
        if value is not None and not Path(value).is_file():
            raise ConfigError(f"{key}={value}: file not found (set {key}=<path>"
                              + (f", or {key}=null to skip the check" if key != "train_manifest"
                                 else "") + "; `make demo` generates data/demo)")
    if recipe.resume_from is not None and not Path(recipe.resume_from).is_file():
        raise ConfigError(f"resume_from={recipe.resume_from}: checkpoint not found (runs keep "
                          f"them in <out_dir>/checkpoints/last.ckpt)")
    if (recipe.eval_manifest is None) != (recipe.trials is None):
        raise ConfigError("set both eval_manifest and trials for the EER check, or neither")


def run_recipe(recipe: Recipe, callbacks: list | None = None, mode: str = "auto") -> dict:
    """Train (every stage, in order); save the resolved config beside the run.

    ``mode`` says what a folder that already holds a run means (:mod:`.run_folder`): ``auto``
    resumes it when the config is unchanged (and skips it when finished) and refuses another
    config; ``resume`` continues it with this config; ``restart`` deletes it first.
    Returns ``steps``, ``out_dir``, the trained ``module`` and, for multi-stage recipes,
    ``stages`` (one result per stage). ``callbacks`` go to the engine (of the last stage)."""
    _check_files(recipe)
    new_run_notices()  # this run says its precision, whatever runs came before in the process
    if recipe.stages:
        return _run_stages(recipe, callbacks, mode)
    return _run_one(recipe, callbacks, mode, label=str(recipe.out_dir))


def _run_one(recipe: Recipe, callbacks: list | None, mode: str, label: str,
             init=None, on_start=None) -> dict:
    """One run folder, held by this process (:func:`~paravox.utils.folder_lock.hold_folder`)
    while it trains: plan (resume / skip / fresh, checkpoint checked against the model), then
    mark it as a paravox run, write the config, train and mark it done. ``init(module)`` sets
    a fresh run's starting weights; ``on_start()`` runs once the plan is accepted and the run
    will train (not for a finished run that is skipped), before anything is written."""
    out = Path(recipe.out_dir)
    check_run_folder(out)  # a folder of someone else's files: refused before anything else
    shards = None if recipe.train_shards is None else ShardIndex.load(recipe.train_shards)
    manifest = Manifest.load(recipe.train_manifest) if shards is None else shards.manifest()
    if len(manifest) == 0:
        where = (f"train_manifest={recipe.train_manifest}" if shards is None
                 else f"train_shards={recipe.train_shards}")
        raise ManifestError(f"{where}: no rows, nothing to train on; give a manifest of "
                            f"utterances (`paravox manifest import`)")
    with hold_folder(out, "out_dir"):
        seed_everything(recipe.run.seed)
        module = build_module(recipe, manifest)
        plan = plan_run(out, config_yaml(recipe), module, mode, recipe.resume_from,
                        defaults_yaml(recipe))
        if plan.finished:
            print(f"{label}: done earlier ({plan.steps} steps), skipped (--restart trains it "
                  f"again)", flush=True)
            state = torch.load(plan.resume_from, map_location="cpu",
                               weights_only=True)["state_dict"]
            module.load_state_dict(state)
            return {"steps": plan.steps, "out_dir": str(out), "module": module, "skipped": True}
        if on_start is not None:  # this stage trains: the staged run's config is written
            on_start()
        if plan.resume_from is not None:
            print(f"{label}: resuming from {plan.resume_from} (step {plan.steps}); --restart "
                  f"starts it over", flush=True)
        elif init is not None:
            init(module)
        mark_run_folder(out, SINGLE_RUN_FILES)
        save_config(recipe, out / "config.yaml")
        (out / RUN_DONE).unlink(missing_ok=True)  # only a run that finishes now is done
        (out / RUN_STOPPED).unlink(missing_ok=True)  # nor stopped, until it stops again
        loader = (crop_loader(manifest, recipe.method_config, recipe.run) if shards is None
                  else shard_loader(shards, recipe.method_config, recipe.run, manifest))
        start = time.perf_counter()
        try:
            trainer = fit(module, loader, out, recipe.run, resume_from=plan.resume_from,
                          callbacks=callbacks)
        except (NonFiniteError, TooManyBadItems) as exc:  # export must not take it as done
            mark_stopped(out, "non-finite loss" if isinstance(exc, NonFiniteError)
                         else "bad data", str(exc))
            raise
        if plan.resume_from is not None and trainer.global_step == plan.steps:
            print(f"{label}: nothing left to train with this config (its epochs / max_steps "
                  f"were reached); --restart trains it again", flush=True)
        mark_done(out, module.batches_trained, time.perf_counter() - start)
    return {"steps": module.batches_trained, "out_dir": str(out), "module": module}


def stage_dir(recipe: Recipe, index: int) -> Path:
    """The run folder of stage ``index`` of a multi-stage recipe."""
    check_stage_name(recipe.stages[index].name)
    return Path(recipe.out_dir) / "stages" / f"{index + 1}_{recipe.stages[index].name}"


def stage_recipe(recipe: Recipe, index: int) -> Recipe:
    """Stage ``index`` as a single-stage recipe: the stage's overrides applied, its folder."""
    base = OmegaConf.to_container(OmegaConf.structured(recipe))
    base["stages"], base["resume_from"] = [], None
    base["out_dir"] = str(stage_dir(recipe, index))
    stage = recipe.stages[index]
    for item in stage.set:
        if item.split("=", 1)[0].strip() in ("method", "stages", "out_dir"):
            raise ConfigError(f"stage '{stage.name}': '{item}' cannot change per stage")
    return build_config(type(recipe), base=base, overrides=list(stage.set))


def _run_stages(recipe: Recipe, callbacks: list | None, mode: str) -> dict:
    names = [s.name for s in recipe.stages]
    if len(set(names)) != len(names):
        raise ConfigError(f"stage names must differ: {names}")
    for name in names:
        check_stage_name(name)
    out = Path(recipe.out_dir)
    check_run_folder(out)
    with hold_folder(out, "out_dir"):
        return _run_stages_held(recipe, callbacks, mode, names, out)


def _run_stages_held(recipe: Recipe, callbacks: list | None, mode: str, names: list[str],
                     out: Path) -> dict:
    if mode == "restart":
        plan_run(out, config_yaml(recipe), None, "restart")
        mode = "auto"
    elif mode == "auto" and (out / "config.yaml").is_file():
        refuse_changed(out, config_changes((out / "config.yaml").read_text(),
                                           config_yaml(recipe), defaults_yaml(recipe)))

    def on_start():
        mark_run_folder(out, STAGED_RUN_FILES)
        save_config(recipe, out / "config.yaml")

    results, previous, trained = [], None, False
    for i in range(len(recipe.stages)):
        sub = stage_recipe(recipe, i)
        folder = Path(sub.out_dir)
        if trained:  # an earlier stage trained just now: later ones start from its result
            stage_mode = "restart"
        elif mode == "resume" and not (folder / "checkpoints" / "last.ckpt").is_file():
            stage_mode = "auto"  # --resume: a stage that never started simply starts
        else:
            stage_mode = mode
        init = None
        if previous is not None and recipe.stages[i].init_from_previous:
            def init(module, previous=previous, name=names[i - 1]):
                state = torch.load(previous, map_location="cpu", weights_only=True)
                module.load_stage_state(state["state_dict"], name)
        result = _run_one(sub, callbacks if i == len(names) - 1 else None, stage_mode,
                          label=f"stage {i + 1}/{len(names)} '{names[i]}'", init=init,
                          on_start=on_start)
        results.append({"stage": names[i], **result})
        trained = trained or not result.get("skipped")
        previous = Path(sub.out_dir) / "checkpoints" / "last.ckpt"
    final = results[-1]
    return {"steps": sum(r["steps"] for r in results), "out_dir": str(out),
            "module": final.get("module"), "stages": results}
