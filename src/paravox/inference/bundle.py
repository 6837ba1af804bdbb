"""Model bundles: a folder with ``model.safetensors`` (the evaluation encoder's weights) and
``config.json`` (encoder name and settings, feature settings, where it came from).

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

from paravox.audio.features import FeatureConfig, build_frontend
from paravox.errors import ConfigError
from paravox.models import build_encoder
from paravox.models.base import Encoder

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


def _final_stage(run: Path) -> Path:
    """The run folder that holds a run's final weights: the run itself, or the last stage of
    a multi-stage recipe (``<run>/stages/<k>_<name>/``)."""
    from omegaconf import OmegaConf

    cfg = run / "config.yaml"
    if (run / "checkpoints").is_dir() or not cfg.is_file():
        return run
    stages = OmegaConf.load(cfg).get("stages") or []
    if not stages:
        return run
    last = run / "stages" / f"{len(stages)}_{stages[-1]['name']}"
    return last if last.is_dir() else run


def _find_checkpoint(run: Path) -> tuple[Path, Path]:
    """``run`` is a run folder (single- or multi-stage) or a checkpoint inside
    ``<run>/checkpoints/``."""
    if run.is_dir():
        run = _final_stage(run)
        ckpt, cfg = run / "checkpoints" / "last.ckpt", run / "config.yaml"
    else:
        ckpt, cfg = run, run.parent.parent / "config.yaml"
    if not ckpt.is_file():
        raise ConfigError(f"no checkpoint at {ckpt}: pass a run folder made by `paravox "
                          f"pretrain`/`train-supervised` or a .ckpt file in its checkpoints/")
    if not cfg.is_file():
        raise ConfigError(f"no {cfg} beside the checkpoint: the run's resolved config is "
                          f"needed to rebuild the encoder")
    return ckpt, cfg


def export_prefix(method: str, which: str | None, where: Path) -> tuple[str, str]:
    """(export name, state-dict prefix) of encoder ``which`` of a registered method: a name
    from its registry entry's ``exports`` (default: the first), or a raw prefix ending in
    ``.`` (e.g. ``student.encoder.``)."""
    from paravox.methods.registry import get_method

    spec = get_method(method, where=str(where))
    which = which or spec.default_export
    if which in spec.exports:
        return which, spec.exports[which]
    if which.endswith("."):
        return which.rstrip("."), which
    raise ConfigError(f"{where}: method '{method}' exports {sorted(spec.exports)}; "
                      f"'{which}' is neither one of them nor a state-dict prefix ending in '.'")


def _export_encoder(method: str, mcfg, name: str) -> tuple[str, dict]:
    """Registry encoder name and settings of export ``name``: the method config's
    ``export_encoder(name)`` where it has one (methods with several encoders), else its
    ``encoder`` and ``encoder_settings``."""
    from omegaconf import OmegaConf

    from paravox.methods.registry import get_method

    config_cls = get_method(method).config
    if hasattr(config_cls, "export_encoder"):
        typed = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(config_cls), mcfg))
        return typed.export_encoder(name)
    return mcfg.encoder, OmegaConf.to_container(mcfg.encoder_settings)


def export_bundle(run: str | Path, out: str | Path, which: str | None = None) -> Path:
    """Write an encoder of a training run as a bundle in ``out``.

    ``which``: one of the method's exports (registry; default: its evaluation encoder, e.g.
    DINO's teacher backbone) or a state-dict prefix (``student.encoder.``). The checkpoint is
    read with ``weights_only=True``: a checkpoint file cannot run code on export.
    """
    from omegaconf import OmegaConf

    ckpt_path, cfg_path = _find_checkpoint(Path(run))
    recipe = OmegaConf.load(cfg_path)
    method = recipe.get("method", "dino")
    mcfg = recipe[method]
    name, prefix = export_prefix(method, which, cfg_path)
    ckpt = load_checkpoint(ckpt_path)
    state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items()
             if k.startswith(prefix)}
    if not state:
        raise ConfigError(f"{ckpt_path} has no weights under '{prefix}'")
    encoder, settings = _export_encoder(method, mcfg, name)
    return write_bundle(state, encoder, settings, OmegaConf.to_container(mcfg.features), out,
                        {"checkpoint": str(ckpt_path), "method": method, "export": name,
                         "prefix": prefix,
                         "global_step": int(ckpt.get("global_step", -1))})


def load_checkpoint(path: str | Path) -> dict:
    """A Lightning checkpoint's contents, unpickled with ``weights_only=True`` (tensors and
    plain containers only), so that a crafted file cannot execute code."""
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable paravox checkpoint "
                          f"({str(exc).splitlines()[0][:200]})") from None


def write_bundle(state: dict, encoder: str, encoder_settings: dict, features: dict,
                 out: str | Path, source: dict) -> Path:
    """Check that ``state`` fits the named encoder, then write weights + config to ``out``."""
    from paravox import __version__

    config = {"format": FORMAT, "version": VERSION, "encoder": encoder,
              "encoder_settings": dict(encoder_settings), "features": dict(features),
              "source": source, "paravox_version": __version__}
    out = Path(out)
    model = _build(config, out / CONFIG_FILE)
    model.load_state_dict(state)  # checks that the weights fit the architecture
    config["encoder_settings"] = model.bundle_settings(config["encoder_settings"])
    config["embedding_dim"] = model.embedding_dim
    out.mkdir(parents=True, exist_ok=True)
    save_tensors(state, out / WEIGHTS_FILE)
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return out


def random_bundle(encoder: str, encoder_settings: dict, features: dict, out: str | Path,
                  seed: int = 0) -> Path:
    """A randomly initialised encoder as a bundle: the floor every trained model must beat."""
    n_mels = features.get("n_mels", 80)
    torch.manual_seed(seed)
    model = build_encoder(encoder, n_mels=n_mels, **encoder_settings)
    return write_bundle(model.state_dict(), encoder, encoder_settings, features, out,
                        {"method": "random", "seed": seed})


def _build(config: dict, where: Path) -> Encoder:
    if config.get("format") != FORMAT:
        raise ConfigError(f"{where}: not a paravox bundle (format '{config.get('format')}')")
    if config.get("version", 0) > VERSION:
        raise ConfigError(f"{where}: bundle version {config['version']} is newer than this "
                          f"paravox reads ({VERSION}); upgrade paravox")
    n_mels = config["features"].get("n_mels", 80)
    return build_encoder(config["encoder"], n_mels=n_mels, **config["encoder_settings"])


def load_bundle_encoder(path: str | Path) -> tuple[Encoder, torch.nn.Module, dict]:
    """The encoder (eval mode) and feature extractor of a bundle, plus its config; a missing,
    unreadable or mismatched file fails with one line naming it."""
    path = check_bundle(path)
    cfg_file, weights = path / CONFIG_FILE, path / WEIGHTS_FILE
    try:
        config = json.loads(cfg_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{cfg_file}: not a readable bundle config ({exc}); export the "
                          f"bundle again") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{cfg_file}: not a paravox bundle (a JSON object is expected)")
    encoder = _build(config, cfg_file)
    try:
        state = load_file(weights)
    except Exception as exc:  # safetensors raises its own error type for a damaged file
        raise ConfigError(f"{weights}: not a readable safetensors file "
                          f"({str(exc).splitlines()[0][:200]}); export the bundle again"
                          ) from None
    try:
        encoder.load_state_dict(state)
    except RuntimeError as exc:
        raise ConfigError(f"{weights}: the weights do not fit the encoder {cfg_file} "
                          f"describes ({str(exc).splitlines()[0][:200]})") from None
    known = {f.name for f in dataclasses.fields(FeatureConfig)}
    fbank = build_frontend(FeatureConfig(**{k: v for k, v in config["features"].items()
                                            if k in known}))
    return encoder.eval(), fbank.eval(), config
