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

LAYERS = ["audio", "data", "models", "objectives", "methods", "inference", "evaluation",
          "transfer", "report", "pipelines", "cli"]
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
    bad = "from paravox.evaluation.quick_sv import quick_sv_eer\n"
    assert violations("paravox.methods.recipes", bad)
    lazy = "def f():\n    from paravox.transfer.finetune import finetune\n"
    assert violations("paravox.evaluation.classify", lazy)
    ok = ("import paravox.data.crops\nfrom paravox.errors import ConfigError\n"
          "from paravox import x\n")
    assert not violations("paravox.methods.dino", ok)
    assert violations("paravox.models.base", "import paravox.methods.base\n")
