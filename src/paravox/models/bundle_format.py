"""The bundle format: a folder with ``model.safetensors`` (an encoder's weights) and
``config.json`` (encoder name and settings, feature settings, where it came from). Writing,
checking and reading a bundle happen here and nowhere else: ``paravox export``
(:mod:`paravox.inference.bundle`) writes bundles from training runs, the ``Embedder`` reads
them, and a method that starts an encoder from a bundle (Learn2Diss's ``frame_init``) reads it
through :func:`read_bundle`.

Loading needs neither pickle nor the training code's classes: safetensors holds plain tensors,
JSON the settings, so a bundle is safe to share and to load anywhere paravox is installed.
A bundle from elsewhere is checked before anything large is allocated: the config's format,
version and every number in it (sizes within :data:`~paravox.models.base.MAX_SIZE`, the
front end's ``n_fft`` and rate within :class:`~paravox.audio.features.FeatureConfig`'s bounds),
then the weights file's header (names, shapes, dtypes, read without loading a tensor) against
the encoder built on the meta device (shapes only, no memory), then every weight finite.
Every file of a bundle is written with the usual permissions (``0666`` less the umask, e.g.
``0644``), so a bundle copied to a shared folder is readable by the group like any file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from paravox import __version__
from paravox.audio.features import FeatureConfig, build_frontend
from paravox.errors import ConfigError
from paravox.models.base import MAX_SIZE, Encoder
from paravox.models.encoder_registry import build_encoder
from paravox.utils.checks import nonfinite_tensor

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
    """Check that ``state`` fits the named encoder and is finite, then write weights + config
    to ``out`` (a model with NaN/Inf weights is refused with the tensor named)."""
    config = {"format": FORMAT, "version": VERSION, "encoder": encoder,
              "encoder_settings": dict(encoder_settings), "features": dict(features),
              "source": source, "paravox_version": __version__}
    out = Path(out)
    bad = nonfinite_tensor(state)
    if bad:
        raise ConfigError(f"{out}: not written: tensor {bad}; the model diverged (export an "
                          f"earlier checkpoint, or train again with a lower optim.lr)")
    model = build_bundle_encoder(config, out / CONFIG_FILE)
    model.load_state_dict(state)  # checks that the weights fit the architecture
    config["encoder_settings"] = model.bundle_settings(config["encoder_settings"])
    config["embedding_dim"] = model.embedding_dim
    out.mkdir(parents=True, exist_ok=True)
    save_tensors(state, out / WEIGHTS_FILE)
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return out


def _check_numbers(value, key: str, where: Path) -> None:
    """Every number under ``value`` (nested dicts and lists too) finite, every integer within
    +-MAX_SIZE: a bundle config cannot ask for a huge model before its weights are read."""
    if isinstance(value, dict):
        for k, v in value.items():
            _check_numbers(v, f"{key}.{k}", where)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_numbers(v, f"{key}[{i}]", where)
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    elif isinstance(value, int) and abs(value) > MAX_SIZE:
        raise ConfigError(f"{where}: {key}={value} is out of range (at most {MAX_SIZE}); "
                          f"not a paravox encoder setting: export the bundle again")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: {key}={value} is not a finite number; export the "
                          f"bundle again")


def check_bundle_config(config: dict, where: Path) -> FeatureConfig:
    """Check a bundle config before anything is built from it: the format, a known integer
    version, the encoder's name and settings (numbers finite and bounded) and the front end's
    settings (:class:`FeatureConfig`'s ranges: a positive sample rate, ``n_fft`` <= 65536);
    returns the front end's config. Every problem is one ConfigError naming ``where``."""
    if config.get("format") != FORMAT:
        raise ConfigError(f"{where}: not a paravox bundle (format '{config.get('format')}')")
    version = config.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ConfigError(f"{where}: version {version!r} is not a bundle version (an integer "
                          f"from 1); export the bundle again")
    if version > VERSION:
        raise ConfigError(f"{where}: bundle version {version} is newer than this paravox "
                          f"reads ({VERSION}); upgrade paravox")
    if not isinstance(config.get("encoder"), str):
        raise ConfigError(f"{where}: 'encoder' must be an encoder name (got "
                          f"{config.get('encoder')!r})")
    for key in ("encoder_settings", "features"):
        if not isinstance(config.get(key, {}), dict):
            raise ConfigError(f"{where}: '{key}' must be an object of settings")
    _check_numbers(config.get("encoder_settings", {}), "encoder_settings", where)
    return bundle_features(config, where)


def bundle_features(config: dict, where: Path) -> FeatureConfig:
    """The front end's settings of a bundle config (keys this paravox does not know are
    ignored), range-checked by :class:`FeatureConfig`; a bad one names ``where``."""
    known = {f.name for f in dataclasses.fields(FeatureConfig)}
    try:
        return FeatureConfig(**{k: v for k, v in config.get("features", {}).items()
                                if k in known})
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}; export the bundle again") from None


def build_bundle_encoder(config: dict, where: Path) -> Encoder:
    """The (untrained) encoder a bundle config describes, on the current default device
    (under ``with torch.device("meta")``: shapes only); a config of another format or a newer
    version, or settings the encoder refuses, fail with one line naming ``where``."""
    check_bundle_config(config, where)
    n_mels = config.get("features", {}).get("n_mels", 80)
    try:
        return build_encoder(config["encoder"], n_mels=n_mels,
                             **config.get("encoder_settings", {}))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


# safetensors' names of floating-point dtypes (as its header spells them)
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2")


def _dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def check_weights_header(config: dict, weights: Path, where: Path) -> None:
    """The weights file's tensors (names, shapes and dtypes from its header: no tensor is
    read) against the encoder ``config`` describes, built on the meta device (no memory is
    allocated, however large the settings): a missing or extra tensor, another shape, or
    integer/bool weights where the encoder has floats (which would load as truncated
    integers, e.g. all zeros) fail with one line naming the first mismatches. An encoder that
    cannot be built on the meta device (a Hugging Face model read from a folder) is checked
    when its weights are loaded (:func:`load_weights`)."""
    try:
        with safe_open(str(weights), framework="pt") as f:
            header = {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype())
                      for k in f.keys()}
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ConfigError(f"{weights}: not a readable safetensors file ({first}); export the "
                          f"bundle again") from None
    try:
        with torch.device("meta"):
            model = build_bundle_encoder(config, where)
    except ConfigError:
        raise
    except Exception:  # noqa: BLE001 - see the docstring: checked when loaded instead
        return
    expected = model.state_dict()
    problems = [f"'{k}' is missing" for k in expected if k not in header]
    problems += [f"'{k}' is not a tensor of this encoder" for k in header if k not in expected]
    for k, t in expected.items():
        if k not in header:
            continue
        shape, dtype = header[k]
        if shape != tuple(t.shape):
            problems.append(f"'{k}' is {list(shape)}, the encoder's is {list(t.shape)}")
        elif t.is_floating_point() and dtype not in FLOAT_DTYPES:
            problems.append(f"'{k}' is {dtype}, not floating point as the encoder's weights "
                            f"({_dtype_name(t)})")
        elif not t.is_floating_point() and dtype in FLOAT_DTYPES:
            problems.append(f"'{k}' is {dtype}, the encoder's is {_dtype_name(t)}")
    if problems:
        more = f" (and {len(problems) - 2} more)" if len(problems) > 2 else ""
        raise ConfigError(f"{weights}: the weights do not fit the encoder {where} describes: "
                          f"{'; '.join(problems[:2])}{more}; export the bundle again")


def read_bundle(path: str | Path, what: str = "bundle") -> tuple[dict, dict[str, torch.Tensor]]:
    """A bundle's config and weights (plain tensors, no pickle), checked (see the module
    docstring) before the weights are read; a missing, unreadable, damaged or mismatched file
    fails with one line naming it (and ``what``, e.g. the setting that named the bundle)."""
    path = check_bundle(path, what)
    cfg_file, weights = path / CONFIG_FILE, path / WEIGHTS_FILE
    try:
        config = json.loads(cfg_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{cfg_file}: not a readable bundle config ({exc}); export the "
                          f"bundle again") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{cfg_file}: not a paravox bundle (a JSON object is expected)")
    check_bundle_config(config, cfg_file)
    check_weights_header(config, weights, cfg_file)
    try:
        state = load_file(weights)
    except Exception as exc:  # safetensors raises its own error type for a damaged file
        raise ConfigError(f"{weights}: not a readable safetensors file "
                          f"({str(exc).splitlines()[0][:200]}); export the bundle again"
                          ) from None
    bad = nonfinite_tensor(state)
    if bad:
        raise ConfigError(f"{weights}: tensor {bad}: the model diverged before it was "
                          f"exported; export a finite checkpoint")
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
    fbank = build_frontend(bundle_features(config, path / CONFIG_FILE))
    return encoder.eval(), fbank.eval(), config
