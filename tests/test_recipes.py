"""Every recipe shipped with paravox loads: its method is registered and every key checks
(paper-scale recipes are not run here, so this is what keeps them valid)."""

from __future__ import annotations

import pytest

from paravox.training.recipes import PACKAGED_RECIPES, find_recipe, load_recipe
from paravox.training.registry import get_method, method_names

SHIPPED = sorted(PACKAGED_RECIPES.glob("*.yaml"))


def test_recipes_ship_inside_the_package():
    names = {p.stem for p in SHIPPED}
    assert {"dino_demo", "simclr_demo", "xvector_demo", "mgf_demo", "mgf_librispeech"} <= names
    assert find_recipe("dino_demo") == PACKAGED_RECIPES / "dino_demo.yaml"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_recipe_loads(path):
    recipe = load_recipe(path)
    assert recipe.method in method_names()
    module_cfg = recipe.method_config
    assert type(module_cfg) is get_method(recipe.method).config
