"""Every public class, function and method of the installed ``paravox`` package has a docstring.

The walk imports each module of the package and inspects only what that module defines
(``obj.__module__ == module name``), so re-exports are checked once, where they live. Dunder
methods, ``forward`` (documented on its class) and Lightning/torch hooks (documented by the
framework) are left out.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil
import types

import paravox

# methods whose contract is the framework's, not ours
HOOKS = {"forward", "training_step", "validation_step", "configure_optimizers"}
# skipped only if importing it fails for lack of espeak-ng (it loads the library lazily)
ESPEAK_MODULE = "paravox.data.synth.espeak"


def _modules() -> tuple[list[types.ModuleType], list[str]]:
    """Every module of the package, imported, plus a line for each one that failed."""
    modules, failures = [paravox], []
    for info in pkgutil.walk_packages(paravox.__path__, prefix="paravox."):
        try:
            modules.append(importlib.import_module(info.name))
        except Exception as exc:  # reported as a failure below, not hidden
            if info.name == ESPEAK_MODULE and "espeak" in str(exc).lower():
                continue
            failures.append(f"{info.name}: import failed: {exc!r}")
    return modules, failures


def _has_doc(obj) -> bool:
    """A non-empty docstring of the object's own (never one inherited from a base class)."""
    doc = getattr(obj, "__doc__", None)
    if not isinstance(doc, str) or not doc.strip():
        return False
    if inspect.isclass(obj) and doc.startswith(f"{obj.__name__}("):
        # the signature that @dataclass / namedtuple write when the class has no docstring
        return False
    return True


def _is_hook(name: str) -> bool:
    return name in HOOKS or name.startswith("on_")


def _method_target(member):
    """The function (or property) whose docstring documents a class attribute, else None."""
    if isinstance(member, (staticmethod, classmethod)):
        return member.__func__
    if isinstance(member, property):
        return member
    if inspect.isfunction(member):
        return member
    return None


def missing_docstrings() -> list[str]:
    """``module:qualname`` of every public class, function and method without a docstring."""
    modules, missing = _modules()
    for module in modules:
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            if not _has_doc(obj):
                missing.append(f"{module.__name__}:{obj.__qualname__}")
            if not inspect.isclass(obj):
                continue
            for attr, member in vars(obj).items():
                if attr.startswith("_") or _is_hook(attr):
                    continue
                target = _method_target(member)
                if target is not None and not _has_doc(target):
                    missing.append(f"{module.__name__}:{obj.__qualname__}.{attr}")
    return sorted(set(missing))


def test_public_api_has_docstrings():
    missing = missing_docstrings()
    assert not missing, (f"{len(missing)} public objects lack a docstring:\n"
                         + "\n".join(missing))


def test_objective_examples_run():
    """The ``>>>`` usage examples in the losses' docstrings are correct code."""
    import paravox.objectives

    failed, attempted = 0, 0
    for info in pkgutil.iter_modules(paravox.objectives.__path__, "paravox.objectives."):
        result = doctest.testmod(importlib.import_module(info.name), report=True)
        failed, attempted = failed + result.failed, attempted + result.attempted
    assert attempted > 0
    assert failed == 0, f"{failed} of {attempted} docstring examples failed (see output above)"
