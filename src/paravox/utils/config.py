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

T = TypeVar("T")


def build_config(
    cls: type[T],
    *,
    base: dict[str, Any] | None = None,
    yaml_path: str | Path | None = None,
    overrides: list[str] | None = None,
) -> T:
    """Merge defaults of ``cls`` <- ``base`` <- YAML file <- ``key=value`` overrides."""
    schema = OmegaConf.structured(cls)
    layers = [schema]
    where = "defaults"
    try:
        if base:
            where = "preset"
            layers.append(OmegaConf.create(base))
        if yaml_path is not None:
            where = str(yaml_path)
            if not Path(yaml_path).is_file():
                raise ConfigError(f"config file not found: {yaml_path}")
            layers.append(OmegaConf.load(yaml_path))
        if overrides:
            where = "command-line overrides"
            for item in overrides:
                if "=" not in item:
                    raise ConfigError(
                        f"override '{item}' is not of the form key=value (e.g. num_speakers=40)"
                    )
            layers.append(OmegaConf.from_dotlist(list(overrides)))
        merged = OmegaConf.merge(*layers)
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        valid = ", ".join(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
        raise ConfigError(
            f"bad config in {where}: {str(exc).splitlines()[0]} "
            f"Valid top-level keys of {cls.__name__}: {valid}"
        ) from None


def config_yaml(cfg: Any) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config beside a run, as YAML."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(config_yaml(cfg))


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]
