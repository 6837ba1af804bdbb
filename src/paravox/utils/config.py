"""One config mechanism: typed dataclasses, YAML files and ``key=value`` overrides.

OmegaConf structured configs check every key and type against the dataclass, so a typo in a
recipe or on the command line fails with the key named instead of being silently ignored.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from paravox.errors import ConfigError
from paravox.utils.atomic_files import write_text

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
                conf = OmegaConf.load(where)
            merged = OmegaConf.merge(merged, conf)
        except OmegaConfBaseException as exc:
            raise _config_error(cls, where, exc) from None
    try:
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        raise _config_error(cls, "config", exc) from None


def _config_error(cls: type, where: str, exc: OmegaConfBaseException) -> ConfigError:
    key = getattr(exc, "full_key", None)
    valid = ", ".join(f.name for f in dataclasses.fields(cls))
    return ConfigError(f"bad config in {where}" + (f", key '{key}'" if key else "") +
                       f": {str(exc).splitlines()[0]} Valid top-level keys of {cls.__name__}: "
                       f"{valid}")


def config_yaml(cfg: Any) -> str:
    """A config dataclass instance as YAML that :func:`build_config` reads back, for saving
    beside a run and for comparing two configs."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config beside a run, as YAML (whole or not at all)."""
    write_text(path, config_yaml(cfg))

