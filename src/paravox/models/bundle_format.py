"""The bundle format: a folder with ``model.safetensors`` (an encoder's weights) and
``config.json`` (encoder name and settings, feature settings, where it came from). Writing,
checking and reading a bundle happen here and nowhere else: ``paravox export``
(:mod:`paravox.inference.bundle`) writes bundles from training runs, the ``Embedder`` reads
them, and a method that starts an encoder from a bundle (Learn2Diss's ``frame_init``) reads it
through :func:`read_bundle`.

Loading needs neither pickle nor the training code's classes: safetensors holds plain tensors,
JSON the settings, so a bundle is safe to share and to load anywhere paravox is installed.
Every file of a bundle is written with the usual permissions (``0666`` less the umask, e.g.
``0644``), so a bundle copied to a shared folder is readable by the group like any file.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from paravox import __version__
from paravox.audio.features import FeatureConfig, build_frontend
from paravox.errors import ConfigError
from paravox.models.base import Encoder
from paravox.models.encoder_registry import build_encoder

FORMAT = "paravox-bundle"
VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def _umask() -> int:
    """The process umask, read without changing it where Linux reports it (changing it, even
    for an instant, would affect files other threads create meanwhile)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_tensors(tensors: dict[str, torch.Tensor], path: str | Path) -> Path:
    """Write ``tensors`` as a safetensors file with the usual permissions (``0666`` less the
    umask): ``safetensors.torch.save_file`` writes a private temporary file (``0600``) and
    renames it, which would leave the weights unreadable by anyone else."""
    path = Path(path)
    save_file({k: v.contiguous() for k, v in tensors.items()}, path)
    os.chmod(path, 0o666 & ~_umask())
    return path


def check_bundle(path: str | Path, what: str = "bundle") -> Path:
    """``path`` as a bundle folder holding config.json and model.safetensors, else a
    ConfigError that names it (as ``what``, e.g. the command's argument) and what is
    missing."""
    path = Path(path)
    made_by = "a folder made by `paravox export` (model.safetensors + config.json)"
    if not path.exists():
        raise ConfigError(f"{what} {path}: no such folder; give {made_by}")
    if not path.is_dir():
        raise ConfigError(f"{what} {path}: not a folder; give {made_by}")
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (path / name).is_file():
            raise ConfigError(f"{what} {path}: no {name} in it; is it {made_by}?")
    return path


def write_bundle(state: dict, encoder: str, encoder_settings: dict, features: dict,
                 out: str | Path, source: dict) -> Path:
    """Check that ``state`` fits the named encoder, then write weights + config to ``out``."""
    config = {"format": FORMAT, "version": VERSION, "encoder": encoder,
              "encoder_settings": dict(encoder_settings), "features": dict(features),
              "source": source, "paravox_version": __version__}
    out = Path(out)
    model = build_bundle_encoder(config, out / CONFIG_FILE)
    model.load_state_dict(state)  # checks that the weights fit the architecture
    config["encoder_settings"] = model.bundle_settings(config["encoder_settings"])
    config["embedding_dim"] = model.embedding_dim
    out.mkdir(parents=True, exist_ok=True)
    save_tensors(state, out / WEIGHTS_FILE)
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return out


def build_bundle_encoder(config: dict, where: Path) -> Encoder:
    """The (untrained) encoder a bundle config describes; a config of another format or a
    newer version fails with one line naming ``where``."""
    if config.get("format") != FORMAT:
        raise ConfigError(f"{where}: not a paravox bundle (format '{config.get('format')}')")
    if config.get("version", 0) > VERSION:
        raise ConfigError(f"{where}: bundle version {config['version']} is newer than this "
                          f"paravox reads ({VERSION}); upgrade paravox")
    n_mels = config["features"].get("n_mels", 80)
    return build_encoder(config["encoder"], n_mels=n_mels, **config["encoder_settings"])


def read_bundle(path: str | Path, what: str = "bundle") -> tuple[dict, dict[str, torch.Tensor]]:
    """A bundle's config and weights (plain tensors, no pickle); a missing, unreadable or
    damaged file fails with one line naming it (and ``what``, e.g. the setting that named
    the bundle)."""
    path = check_bundle(path, what)
    cfg_file, weights = path / CONFIG_FILE, path / WEIGHTS_FILE
    try:
        config = json.loads(cfg_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{cfg_file}: not a readable bundle config ({exc}); export the "
                          f"bundle again") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{cfg_file}: not a paravox bundle (a JSON object is expected)")
    try:
        state = load_file(weights)
    except Exception as exc:  # safetensors raises its own error type for a damaged file
        raise ConfigError(f"{weights}: not a readable safetensors file "
                          f"({str(exc).splitlines()[0][:200]}); export the bundle again"
                          ) from None
    return config, state


def load_weights(encoder: torch.nn.Module, state: dict, where: str | Path, fix: str) -> None:
    """Load ``state`` into ``encoder``; weights that do not fit fail with one line naming
    ``where``, the first mismatch, and what to do (``fix``)."""
    try:
        encoder.load_state_dict(state)
    except RuntimeError as exc:
        lines = [s.strip() for s in str(exc).splitlines() if s.strip()]
        first = lines[1] if len(lines) > 1 else lines[0]
        raise ConfigError(f"{where}: the weights do not fit the encoder ({first[:200]}); "
                          f"{fix}") from None


def load_bundle_encoder(path: str | Path) -> tuple[Encoder, torch.nn.Module, dict]:
    """The encoder (eval mode) and feature extractor of a bundle, plus its config; a missing,
    unreadable or mismatched file fails with one line naming it."""
    config, state = read_bundle(path)
    path = Path(path)
    encoder = build_bundle_encoder(config, path / CONFIG_FILE)
    load_weights(encoder, state, path / WEIGHTS_FILE,
                 f"{path / CONFIG_FILE} describes another architecture: export the bundle again")
    known = {f.name for f in dataclasses.fields(FeatureConfig)}
    fbank = build_frontend(FeatureConfig(**{k: v for k, v in config["features"].items()
                                            if k in known}))
    return encoder.eval(), fbank.eval(), config
