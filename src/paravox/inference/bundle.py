"""Bundles from training runs: ``paravox export`` picks an encoder a run's method declares
(:meth:`~paravox.training.module.MethodConfig.exports`), cuts its weights out of the run's
checkpoint and writes it in the bundle format (:mod:`paravox.models.bundle_format`, whose
reading and writing functions are importable from here too); a random-init bundle is the floor
every trained model must beat.

Bundles are written whole or not at all: :func:`write_bundle` writes the bundle format's two
files into a hidden temporary folder inside the destination, syncs them and renames them into
place (weights, then config), so a full disk or a crash half-way leaves the previous bundle as
it was; :func:`export_bundle` also holds the destination against a second paravox process
(:func:`~paravox.utils.folder_lock.hold_folder`) and refuses the root, the home folder and the
current folder as destinations.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
from pathlib import Path

import torch
from omegaconf import OmegaConf

from paravox.errors import ConfigError
from paravox.models import build_encoder, bundle_format
from paravox.models.bundle_format import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    check_bundle,
    load_bundle_encoder,
    read_bundle,
)
from paravox.training.registry import get_method
from paravox.training.run_files import RUN_STOPPED, read_stopped
from paravox.utils.atomic_files import WriteError, atomic_path, describe_write_error, fsync_path
from paravox.utils.checks import nonfinite_tensor
from paravox.utils.folder_lock import hold_folder
from paravox.utils.output_paths import check_output_folder

__all__ = ["CONFIG_FILE", "WEIGHTS_FILE", "check_bundle", "export_bundle", "load_bundle_encoder",
           "random_bundle", "read_bundle", "save_tensors", "write_bundle"]


def save_tensors(tensors: dict, path: str | Path) -> Path:
    """:func:`paravox.models.bundle_format.save_tensors` (safetensors, usual permissions),
    written to a temporary file and renamed into place when complete."""
    path = Path(path)
    with atomic_path(path) as tmp:
        bundle_format.save_tensors(tensors, tmp)
    return path


def write_bundle(state: dict, encoder: str, encoder_settings: dict, features: dict,
                 out: str | Path, source: dict) -> Path:
    """:func:`paravox.models.bundle_format.write_bundle` (checks that ``state`` fits the
    encoder, writes weights + config), whole or not at all: the files are written in a hidden
    temporary folder inside ``out``, synced, then renamed into place."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".bundle.", suffix=".tmp", dir=out))
    except OSError as exc:
        raise WriteError(describe_write_error(out, exc, out.exists())) from exc
    try:
        bundle_format.write_bundle(state, encoder, encoder_settings, features, stage, source)
        for name in (WEIGHTS_FILE, CONFIG_FILE):
            fsync_path(stage / name)
        for name in (WEIGHTS_FILE, CONFIG_FILE):
            os.replace(stage / name, out / name)
        fsync_path(out, directory=True)
    except OSError as exc:
        raise WriteError(describe_write_error(out / WEIGHTS_FILE, exc,
                                              (out / WEIGHTS_FILE).exists())) from exc
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return out


def _final_stage(run: Path) -> Path:
    """The run folder that holds a run's final weights: the run itself, or the last stage of
    a multi-stage recipe (``<run>/stages/<k>_<name>/``)."""
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


def _refuse_stopped(run: Path, ckpt: Path, out: str | Path) -> None:
    """A run whose training stopped on a non-finite loss or on bad data
    (:func:`~paravox.training.run_files.read_stopped`) is not a trained model: its
    ``last.ckpt`` is from before the stop. Exporting the run folder is refused in one line;
    naming the checkpoint file exports it (said in one line by :func:`export_bundle`)."""
    stopped = read_stopped(run)
    if stopped is not None:
        raise ConfigError(f"run {run} stopped before it finished ({stopped.get('reason')}; see "
                          f"{run / RUN_STOPPED}), so {ckpt} holds weights from before the stop, "
                          f"not a trained model: fix the cause and train it again, or export "
                          f"that checkpoint anyway by naming it: paravox export {ckpt} -o {out}")


def method_exports(method: str, method_settings, where: Path) -> dict:
    """The exports a run's method declares (:meth:`MethodConfig.exports
    <paravox.training.module.MethodConfig.exports>`), read from its saved settings."""
    config_cls = get_method(method, where=str(where)).config
    typed = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(config_cls),
                                                method_settings))
    return typed.exports()


def choose_export(exports: dict, which: str | None, method: str, where: Path
                  ) -> tuple[str, str, str, dict]:
    """(export name, state-dict prefix, encoder, settings) of encoder ``which``: one of the
    method's exports (default: the first), or a raw prefix ending in ``.`` (e.g.
    ``student.encoder.``), rebuilt as the default export's architecture."""
    which = which or next(iter(exports))
    if which in exports:
        e = exports[which]
        return which, e.prefix, e.encoder, dict(e.settings)
    if which.endswith("."):
        e = next(iter(exports.values()))
        return which.rstrip("."), which, e.encoder, dict(e.settings)
    raise ConfigError(f"{where}: method '{method}' exports {sorted(exports)}; "
                      f"'{which}' is neither one of them nor a state-dict prefix ending in '.'")


def export_bundle(run: str | Path, out: str | Path, which: str | None = None) -> Path:
    """Write an encoder of a training run as a bundle in ``out``.

    ``which``: one of the method's exports (its config's ``exports()``; default: its
    evaluation encoder, e.g. DINO's teacher backbone) or a state-dict prefix
    (``student.encoder.``). The checkpoint is read with ``weights_only=True``: a checkpoint
    file cannot run code on export. Weights with NaN/Inf values are refused, naming the
    tensor: a diverged model never becomes a bundle. A run whose training stopped on a
    non-finite loss or on bad data is refused as a run folder (its last checkpoint is from
    before the stop); naming its checkpoint file exports that, saying so.
    """
    ckpt_path, cfg_path = _find_checkpoint(Path(run))
    if Path(run).is_dir():
        _refuse_stopped(cfg_path.parent, ckpt_path, out)
    check_output_folder(out, "bundle folder")
    _refuse_foreign_config(Path(out))
    with hold_folder(out, "bundle folder"):
        done = _export(ckpt_path, cfg_path, out, which)
    stopped = read_stopped(cfg_path.parent)
    if stopped is not None:
        step = json.loads((done / CONFIG_FILE).read_text()).get("source", {}).get("global_step")
        print(f"note: run {cfg_path.parent} stopped before it finished ({stopped.get('reason')});"
              f" exported {ckpt_path} as named (step {step}, from before the stop)", flush=True)
    return done


def _refuse_foreign_config(out: Path) -> None:
    """A destination whose ``config.json`` is not a paravox bundle's is someone else's file:
    exporting would replace it."""
    cfg = out / CONFIG_FILE
    if not cfg.exists():
        return
    try:
        ours = json.loads(cfg.read_text()).get("format") == bundle_format.FORMAT
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise ConfigError(f"bundle folder {out}: holds a {CONFIG_FILE} that is not a paravox "
                          f"bundle's, which exporting would replace; give another folder")


def _export(ckpt_path: Path, cfg_path: Path, out: str | Path, which: str | None) -> Path:
    recipe = OmegaConf.load(cfg_path)
    method = recipe.get("method", "dino")
    mcfg = recipe[method]
    exports = method_exports(method, mcfg, cfg_path)
    name, prefix, encoder, settings = choose_export(exports, which, method, cfg_path)
    ckpt = load_checkpoint(ckpt_path)
    state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items()
             if k.startswith(prefix)}
    if not state:
        raise ConfigError(f"{ckpt_path} has no weights under '{prefix}'")
    bad = nonfinite_tensor({prefix + k: v for k, v in state.items()})
    if bad:
        raise ConfigError(f"{ckpt_path}: tensor {bad}: the run diverged and this checkpoint "
                          f"cannot be exported; export an earlier one from "
                          f"{ckpt_path.parent}, or train again with a lower optim.lr")
    return write_bundle(state, encoder, settings, OmegaConf.to_container(mcfg.features), out,
                        {"checkpoint": str(ckpt_path), "method": method, "export": name,
                         "prefix": prefix,
                         "global_step": int(ckpt.get("global_step", -1))})


def load_checkpoint(path: str | Path) -> dict:
    """A Lightning checkpoint's contents, unpickled with ``weights_only=True`` (tensors and
    plain containers only), so that a crafted file cannot execute code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable paravox checkpoint "
                          f"({str(exc).splitlines()[0][:200]})") from None


def random_bundle(encoder: str, encoder_settings: dict, features: dict, out: str | Path,
                  seed: int = 0) -> Path:
    """A randomly initialised encoder as a bundle: the floor every trained model must beat."""
    n_mels = features.get("n_mels", 80)
    torch.manual_seed(seed)
    model = build_encoder(encoder, n_mels=n_mels, **encoder_settings)
    return write_bundle(model.state_dict(), encoder, encoder_settings, features, out,
                        {"method": "random", "seed": seed})


