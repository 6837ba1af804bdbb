"""Recipes: a whole experiment in one YAML file (data, method, engine, output folder).

``method:`` picks the recipe type (``dino``, ``simclr``, ``supervised``); its settings live
under the key of the same name. :func:`run_recipe` trains, saves the resolved config beside
the run, and reports a quick cosine EER of the evaluation embeddings when a trial list is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from paravox.data.manifest import Manifest
from paravox.errors import ConfigError
from paravox.methods.base import TrainingModule
from paravox.methods.dino import DINOConfig, DINOModule
from paravox.methods.engine import (
    RunConfig,
    crop_loader,
    fit,
    seed_everything,
    steps_per_epoch,
)
from paravox.methods.simclr import SimCLRConfig, SimCLRModule
from paravox.methods.supervised import SupervisedConfig, SupervisedModule, label_classes


@dataclass
class Recipe:
    train_manifest: str = "data/demo/pretrain.jsonl"
    out_dir: str = "runs/run"
    eval_manifest: str | None = None  # with trials: a quick cosine-EER check at the end
    trials: str | None = None
    resume_from: str | None = None  # a Lightning checkpoint (e.g. <out_dir>/checkpoints/last.ckpt)
    run: RunConfig = field(default_factory=RunConfig)

    @property
    def method_config(self):
        return getattr(self, self.method)


@dataclass
class DINORecipe(Recipe):
    method: str = "dino"
    out_dir: str = "runs/dino"
    dino: DINOConfig = field(default_factory=DINOConfig)


@dataclass
class SimCLRRecipe(Recipe):
    method: str = "simclr"
    out_dir: str = "runs/simclr"
    simclr: SimCLRConfig = field(default_factory=SimCLRConfig)


@dataclass
class SupervisedRecipe(Recipe):
    method: str = "supervised"
    train_manifest: str = "data/demo/train.jsonl"
    out_dir: str = "runs/supervised"
    supervised: SupervisedConfig = field(default_factory=SupervisedConfig)


RECIPES: dict[str, type[Recipe]] = {"dino": DINORecipe, "simclr": SimCLRRecipe,
                                    "supervised": SupervisedRecipe}


def recipe_method(yaml_path: str | Path | None, overrides: list[str] | None) -> str:
    """The ``method:`` of a recipe (command-line override first, then the file; default dino)."""
    method = None
    if yaml_path is not None and Path(yaml_path).is_file():
        method = OmegaConf.load(yaml_path).get("method")
    for item in overrides or []:
        if item.startswith("method="):
            method = item.split("=", 1)[1]
    method = method or "dino"
    if method not in RECIPES:
        raise ConfigError(f"method '{method}' (in {yaml_path or 'overrides'}) is unknown; "
                          f"choose one of {sorted(RECIPES)}")
    return method


def load_recipe(yaml_path: str | Path | None, overrides: list[str] | None = None) -> Recipe:
    from paravox.utils.config import build_config

    return build_config(RECIPES[recipe_method(yaml_path, overrides)], yaml_path=yaml_path,
                        overrides=overrides)


def build_module(recipe: Recipe, manifest: Manifest) -> TrainingModule:
    cfg, run = recipe.method_config, recipe.run
    steps = steps_per_epoch(len(manifest), run)
    if isinstance(recipe, SupervisedRecipe):
        return SupervisedModule(cfg, steps, run.epochs, label_classes(manifest, cfg.label))
    module_cls = {"dino": DINOModule, "simclr": SimCLRModule}[recipe.method]
    return module_cls(cfg, steps, run.epochs)


def run_recipe(recipe: Recipe, callbacks: list | None = None) -> dict:
    """Train; save the resolved config beside the run; quick EER when trials are given."""
    from paravox.utils.config import save_config

    for key in ("train_manifest", "eval_manifest", "trials"):  # fail before training, not after
        value = getattr(recipe, key)
        if value is not None and not Path(value).is_file():
            raise ConfigError(f"{key}={value}: file not found (set {key}=<path>"
                              + (f", or {key}=null to skip the check" if key != "train_manifest"
                                 else "") + "; `make demo` generates data/demo)")
    if (recipe.eval_manifest is None) != (recipe.trials is None):
        raise ConfigError("set both eval_manifest and trials for the EER check, or neither")
    out = Path(recipe.out_dir)
    save_config(recipe, out / "config.yaml")
    manifest = Manifest.load(recipe.train_manifest)
    seed_everything(recipe.run.seed)
    module = build_module(recipe, manifest)
    loader = crop_loader(manifest, recipe.method_config, recipe.run)
    trainer = fit(module, loader, out, recipe.run, resume_from=recipe.resume_from,
                  callbacks=callbacks)
    result: dict = {"steps": trainer.global_step, "out_dir": str(out), "module": module}
    if recipe.eval_manifest and recipe.trials and trainer.is_global_zero:
        from paravox.evaluation.quick_sv import quick_sv_eer

        result["eer"] = quick_sv_eer(module.embedding_encoder(), module.fbank,
                                     recipe.eval_manifest, recipe.trials)
    return result
