"""The layer order of the package, checked on every import statement.

This list is the one place the order is written down (docs/architecture.md explains it): a
module may import from its own layer and the layers before it in LAYERS, and from the shared
bottom (``utils``, ``errors``, the package root). An import of a later layer fails the test,
naming the file, the line and both layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import paravox

LAYERS = ["audio", "data", "models", "objectives", "training", "methods", "inference",
          "evaluation", "transfer", "report", "pipelines", "cli"]
MAX_LINES = 500  # a module longer than this is split by what its parts do
SHARED = {"utils", "errors", ""}  # importable from every layer ("" = paravox itself)
PACKAGE = Path(paravox.__file__).parent


def layer_of(module: str) -> str:
    """``paravox.data.crops`` -> ``data``; ``paravox`` -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imported_modules(source: str) -> list[tuple[int, str]]:
    """(line, module) of every ``paravox`` import in ``source``, at any depth (imports inside
    functions count: a lazy import is still a dependency)."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "paravox"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == "paravox":
                out.append((node.lineno, node.module))
    return out


def violations(module: str, source: str, where: str = "") -> list[str]:
    """Upward imports of ``module`` (dotted name) whose text is ``source``."""
    own = layer_of(module)
    if own in SHARED:
        allowed = SHARED
    else:
        allowed = SHARED | set(LAYERS[: LAYERS.index(own) + 1])
    return [f"{where or module}:{line}: layer '{own}' imports {target} (layer "
            f"'{layer_of(target)}'); allowed: {', '.join(sorted(allowed - {''}))}"
            for line, target in imported_modules(source) if layer_of(target) not in allowed]


def package_modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def test_every_subpackage_has_a_layer():
    subpackages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert subpackages - SHARED - set(LAYERS) == set(), "add new subpackages to LAYERS"


def test_layers_only_import_downwards():
    found = []
    for module, path in package_modules():
        found += violations(module, path.read_text(), str(path.relative_to(PACKAGE.parent)))
    assert not found, "upward imports:\n" + "\n".join(found)


def test_an_upward_import_is_caught():
    """The check fails on a forbidden import (here: training code reaching evaluation, and
    evaluation reaching transfer) and accepts downward and shared ones."""
    bad = "from paravox.evaluation.sv import cosine_sv_eer\n"
    assert violations("paravox.training.recipes", bad)
    lazy = "def f():\n    from paravox.transfer.finetune import finetune\n"
    assert violations("paravox.evaluation.classify", lazy)
    ok = ("import paravox.data.crops\nfrom paravox.errors import ConfigError\n"
          "from paravox import x\n")
    assert not violations("paravox.methods.dino", ok)
    assert violations("paravox.models.base", "import paravox.training.module\n")
    assert violations("paravox.training.engine", "from paravox.methods.dino import DINOModule\n")


def private_imports(module: str, source: str) -> list[tuple[int, str]]:
    """(line, "module.name") of every ``from paravox.x import _name`` in ``source`` where
    ``paravox.x`` is another module than ``module``: a leading underscore says "not for use
    outside this module"."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.ImportFrom) and node.module and node.level == 0
                and node.module.split(".")[0] == "paravox" and node.module != module):
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")]
    return out


def test_no_private_names_cross_modules():
    found = [f"{path.relative_to(PACKAGE.parent)}:{line}: imports private {name}"
             for module, path in package_modules()
             for line, name in private_imports(module, path.read_text())]
    assert not found, "private cross-module imports:\n" + "\n".join(found)


def test_a_private_import_is_caught():
    bad = "from paravox.pipelines.mgf_study import _TINY_MGF\n"
    assert private_imports("paravox.pipelines.learn2diss_study", bad)
    assert not private_imports("paravox.pipelines.mgf_study",
                               "from paravox.pipelines.demo import PRESETS\n")


def test_every_file_name_is_used_once():
    """Two modules with one name (two ``engine.py``) make a reader open the wrong one."""
    by_name: dict[str, list[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        if path.name != "__init__.py":
            by_name.setdefault(path.name, []).append(str(path.relative_to(PACKAGE.parent)))
    twice = {n: p for n, p in by_name.items() if len(p) > 1}
    assert not twice, f"file names used more than once: {twice}"


def test_no_module_is_too_long():
    long = {str(p.relative_to(PACKAGE.parent)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by what the parts do): {long}"
