"""One config mechanism: typed dataclasses, YAML files and ``key=value`` overrides.

OmegaConf structured configs check every key and type against the dataclass, so a typo in a
recipe or on the command line fails with the key named (and the keys of the section it is in)
instead of being silently ignored. YAML files are read by :func:`load_yaml`, the one place a
settings file is parsed: a syntax error, a duplicate key, a ``!!python/...`` tag (paravox
reads plain YAML only), a top-level list or a file that is not YAML at all is one line naming
the file (and the line), never echoing its contents.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from paravox.errors import ConfigError
from paravox.utils.atomic_files import write_text

# what a setting's name looks like; anything else (a line of /etc/passwd parsed as a key) is
# not echoed in errors
SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,63}")

T = TypeVar("T")


def build_config(
    cls: type[T],
    *,
    base: dict[str, Any] | None = None,
    yaml_path: str | Path | None = None,
    overrides: list[str] | None = None,
) -> T:
    """Merge defaults of ``cls`` <- ``base`` <- YAML file <- ``key=value`` overrides."""
    layers: list[tuple[str, Any]] = []
    if base:
        layers.append(("preset", base))
    if yaml_path is not None:
        if not Path(yaml_path).is_file():
            raise ConfigError(f"config file not found: {yaml_path}")
        layers.append((str(yaml_path), None))
    if overrides:
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override '{item}' is not of the form key=value "
                                  f"(e.g. num_speakers=40)")
        layers.append(("command-line overrides", list(overrides)))
    merged = OmegaConf.structured(cls)
    for where, layer in layers:  # one layer at a time, so an error names its source
        try:
            if where == "preset":
                conf = OmegaConf.create(layer)
            elif isinstance(layer, list):
                conf = OmegaConf.from_dotlist(layer)
            else:
                conf = load_yaml(where)
            merged = OmegaConf.merge(merged, conf)
        except OmegaConfBaseException as exc:
            raise _config_error(cls, where, exc) from None
    try:
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        raise _config_error(cls, "config", exc) from None


def load_yaml(path: str | Path) -> DictConfig:
    """A YAML settings file as a DictConfig, checked (see the module docstring): every
    problem is one ConfigError naming the file and, for a YAML error, the line and column."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}" if not path.exists() else
                          f"{path}: not a regular file; give a YAML settings file")
    try:
        conf = OmegaConf.load(path)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = (exc.problem or exc.context or "not valid YAML").strip()
        hint = ("; paravox reads plain YAML: tags such as !!python/object are refused"
                if "tag" in problem else "; fix that line")
        raise ConfigError(f"{path}{at}: not valid YAML settings ({problem}){hint}") from None
    except (yaml.YAMLError, UnicodeDecodeError, OmegaConfBaseException, OSError) as exc:
        raise ConfigError(f"{path}: not a YAML text file ({type(exc).__name__}); give a YAML "
                          f"settings file (key: value lines)") from None
    if not isinstance(conf, DictConfig):
        raise ConfigError(f"{path}: the top level is a list, not a mapping of settings "
                          f"(key: value lines)")
    for key in conf.keys():
        if not isinstance(key, str) or not SETTING_NAME.fullmatch(key):
            raise ConfigError(f"{path}: not a settings file: a top-level key is not a setting "
                              f"name (key: value lines are expected); is it a YAML recipe?")
    return conf


def _section_class(cls: type, path: list[str]) -> type | None:
    """The dataclass that holds the settings at ``path`` (keys below ``cls``), or None."""
    t: Any = cls
    for part in path:
        try:
            hints = typing.get_type_hints(t)
        except Exception:  # noqa: BLE001 - an annotation that cannot be resolved
            return None
        t = hints.get(part)
        for arg in (typing.get_args(t) or (t,)):  # Optional[X], list[X]
            if dataclasses.is_dataclass(arg):
                t = arg
                break
        if not dataclasses.is_dataclass(t):
            return None
    return t


def _config_error(cls: type, where: str, exc: OmegaConfBaseException) -> ConfigError:
    key = getattr(exc, "full_key", None)
    if key and not all(SETTING_NAME.fullmatch(p) for p in re.sub(r"\[\d+\]", "",
                                                                  str(key)).split(".")):
        return ConfigError(f"bad config in {where}: a key that is not a setting name (is it a "
                           f"settings file?); valid top-level keys of {cls.__name__}: "
                           f"{', '.join(f.name for f in dataclasses.fields(cls))}")
    parts = re.sub(r"\[\d+\]", "", str(key)).split(".")[:-1] if key else []
    section = _section_class(cls, parts) or cls
    name = ".".join(parts) if section is not cls else ""
    valid = ", ".join(f.name for f in dataclasses.fields(section))
    where_keys = f"Valid keys of {name} ({section.__name__})" if name else \
        f"Valid top-level keys of {cls.__name__}"
    return ConfigError(f"bad config in {where}" + (f", key '{key}'" if key else "") +
                       f": {str(exc).splitlines()[0]} {where_keys}: {valid}")


def config_yaml(cfg: Any) -> str:
    """A config dataclass instance as YAML that :func:`build_config` reads back, for saving
    beside a run and for comparing two configs."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config beside a run, as YAML (whole or not at all)."""
    write_text(path, config_yaml(cfg))

