"""Training from a recipe as the commands run it: check that the recipe's method belongs to
the command, train (every stage), and the quick EER check when the recipe names trials."""

from __future__ import annotations

from pathlib import Path

from paravox.errors import ConfigError
from paravox.evaluation.callbacks import QuickEERCheck
from paravox.training.recipes import find_recipe, load_recipe, recipe_method, run_recipe
from paravox.training.registry import get_method


def train_recipe(recipe_path: str | Path, overrides: list[str] | None, command: str,
                 mode: str = "auto") -> dict:
    """Load, check and run a recipe for ``command`` (``pretrain`` / ``train-supervised``);
    ``mode`` (auto / resume / restart) is what a non-empty ``out_dir`` means
    (:func:`~paravox.training.recipes.run_recipe`).

    Returns :func:`~paravox.training.recipes.run_recipe`'s result plus ``method``, the
    ``recipe`` and ``eer`` (when ``eval_manifest`` and ``trials`` are set)."""
    path = find_recipe(recipe_path)
    method = recipe_method(path, overrides)
    spec = get_method(method, where=str(path))
    if spec.command != command:
        raise ConfigError(f"{path} is a '{method}' recipe: run it with "
                          f"`paravox {spec.command}`, not `paravox {command}`")
    recipe = load_recipe(path, overrides)
    check = None
    if recipe.eval_manifest and recipe.trials:
        check = QuickEERCheck(recipe.eval_manifest, recipe.trials)
    result = run_recipe(recipe, callbacks=[check] if check else None, mode=mode)
    result.update(method=method, recipe=recipe)
    if check is not None and check.eer is not None:
        result["eer"] = check.eer
    return result
