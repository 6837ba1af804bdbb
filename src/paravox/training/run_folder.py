"""What a run folder holds, and what re-running a recipe on it does.

A run folder (``out_dir``) holds the marker ``.paravox-run.json`` (what makes it a paravox run:
:mod:`paravox.training.run_files`), ``config.yaml`` (the resolved recipe), ``checkpoints/``
(``last.ckpt`` plus the latest step checkpoint), ``logs/`` (one ``version_k`` per training
segment), ``skipped_items.tsv`` and, once training finished, ``run_done.json`` (or, when it
stopped on a non-finite loss or bad data, ``run_stopped.json``). A folder that holds other
files but no run is refused, whatever the mode.

Re-running a recipe on a folder that holds a run never silently starts over:

* ``mode="auto"`` (the default): the same config resumes from the newest readable checkpoint
  (``checkpoints/last.ckpt``; when that is unreadable, e.g. truncated by a full disk, the
  newest readable step checkpoint, said in one line); a finished run is skipped; another
  config is refused with the changed keys named, offering ``--resume`` and ``--restart``;
* ``mode="resume"``: continue from that checkpoint with this config (e.g. more epochs), after
  checking that the checkpoint's tensors fit the model this config builds; on a finished run
  a changed config must train further (:func:`trains_further`), or it is refused;
* ``mode="restart"``: delete the files the run wrote (only those: :func:`clear_run`), then
  train afresh.

``config.yaml`` is written only after these checks, so a refused resume leaves the folder as
it was (its checkpoints still export).
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf

from paravox.errors import ConfigError
from paravox.training.run_files import RUN_DONE, RUN_FILES, check_run_folder, clear_run
from paravox.utils.atomic_files import write_text

__all__ = ["RUN_DONE", "RUN_FILES", "RESUME_MODES", "RunPlan", "checkpoint_fits", "clear_run",
           "config_changes", "mark_done", "newest_checkpoint", "plan_run", "read_checkpoint",
           "refuse_changed", "refuse_finished", "run_metrics", "trains_further",
           "training_seconds"]

RESUME_MODES = ("auto", "resume", "restart")
# keys that change neither the model nor the data it sees: a rerun differing only here resumes
# run.resolved_precision: what run.precision=auto gave on the machine that wrote the config
COSMETIC_KEYS = ("resume_from", "out_dir", "run.progress_bar", "run.num_workers",
                 "run.tensorboard", "run.model_summary", "run.resolved_precision")
STEP_CHECKPOINT = re.compile(r"^epoch=\d+-step=(\d+)\.ckpt$")


class UnreadableCheckpoint(ConfigError):
    """A checkpoint file that cannot be read (truncated, not a checkpoint)."""


@dataclass
class RunPlan:
    """What to do with a run folder: train from scratch (``resume_from`` None), resume from a
    checkpoint, or nothing (``finished``: done earlier with this config, ``steps`` trained;
    ``resume_from`` is then the checkpoint holding its final weights)."""

    resume_from: Path | None = None
    finished: bool = False
    steps: int = 0


def flat_config(yaml_text: str) -> dict[str, object]:
    """A saved or resolved config as ``{"a.b.c": value}`` (lists kept whole)."""
    out: dict[str, object] = {}

    def walk(node, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            out[prefix[:-1]] = node

    walk(OmegaConf.to_container(OmegaConf.create(yaml_text)) or {}, "")
    return out


def config_changes(saved_yaml: str, new_yaml: str, defaults_yaml: str | None = None
                   ) -> list[str]:
    """The keys whose values differ (``key: old -> new``), cosmetic keys left out.

    With ``defaults_yaml`` (the recipe's defaults), a key that the saved config does not
    have (a setting added after the run was made) and that keeps its default is no change:
    an older run still resumes."""
    old, new = flat_config(saved_yaml), flat_config(new_yaml)
    defaults = flat_config(defaults_yaml) if defaults_yaml is not None else {}
    changes = []
    for key in sorted(old.keys() | new.keys()):
        if key in COSMETIC_KEYS or old.get(key) == new.get(key):
            continue
        if key not in old and key in defaults and new.get(key) == defaults[key]:
            continue
        changes.append(f"{key}: {old.get(key, '<absent>')} -> {new.get(key, '<absent>')}")
    return changes


def read_checkpoint(path: str | Path) -> dict:
    """A training checkpoint's contents, read with ``weights_only=True``; an unreadable or
    truncated file raises :class:`UnreadableCheckpoint` (one line)."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same one line
        raise UnreadableCheckpoint(
            f"{path}: not a readable paravox checkpoint ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:120] if str(exc) else ''}); resume from a run's "
            f"checkpoints/last.ckpt") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise UnreadableCheckpoint(f"{path}: holds no state_dict: not a paravox training "
                                   f"checkpoint")
    return ckpt


def check_fits(ckpt: dict, path: str | Path, module: torch.nn.Module) -> int:
    """Check that checkpoint ``ckpt`` (read from ``path``) holds exactly the tensors ``module``
    has, with the same shapes; returns its global step. Raises a one-line
    :class:`ConfigError` naming the first differing tensors (a resume with a changed model
    size would otherwise fail deep inside Lightning with a size-mismatch trace)."""
    state = ckpt["state_dict"]
    own = module.state_dict()
    problems = [f"{k} missing from the checkpoint" for k in own if k not in state]
    problems += [f"{k} is not in this model" for k in state if k not in own]
    problems += [f"{k} is {list(state[k].shape)} in the checkpoint, {list(v.shape)} here"
                 for k, v in own.items() if k in state and state[k].shape != v.shape]
    if problems:
        more = f" (and {len(problems) - 2} more)" if len(problems) > 2 else ""
        raise ConfigError(f"{path} does not fit the model this config builds: "
                          f"{'; '.join(problems[:2])}{more}. Resume with the settings it was "
                          f"trained with, or start over with --restart (or another out_dir)")
    return int(ckpt.get("global_step", 0))


def checkpoint_fits(path: str | Path, module: torch.nn.Module) -> int:
    """Read the checkpoint at ``path`` and check it against ``module`` (:func:`check_fits`)
    before any file of the run is touched; returns its global step."""
    return check_fits(read_checkpoint(path), path, module)


def step_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """The step checkpoints (``epoch=E-step=S.ckpt``) in ``folder``, newest step first."""
    found = [(int(m.group(1)), p) for p in folder.glob("epoch=*-step=*.ckpt")
             if (m := STEP_CHECKPOINT.match(p.name)) and p.is_file()]
    return sorted(found, key=lambda sp: -sp[0])


def newest_checkpoint(out_dir: str | Path) -> tuple[Path, dict] | None:
    """(path, contents) of the checkpoint a re-run resumes from: ``checkpoints/last.ckpt``,
    unless a step checkpoint beside it holds a later step (a write of last.ckpt failed) or
    last.ckpt is unreadable (truncated by a full disk or a crash): then the newest readable
    step checkpoint, said in one line. None when the run has no checkpoint; a one-line
    :class:`ConfigError` when none of them is readable."""
    folder = Path(out_dir) / "checkpoints"
    last = folder / "last.ckpt"
    steps = step_checkpoints(folder) if folder.is_dir() else []
    problem, last_ckpt = None, None
    if last.is_file():
        try:
            last_ckpt = read_checkpoint(last)
        except UnreadableCheckpoint as exc:
            problem = str(exc).split(": ", 1)[-1].split("; resume from")[0]
    last_step = int(last_ckpt.get("global_step", 0)) if last_ckpt is not None else -1
    for step, path in steps:
        if step <= last_step:
            break
        try:
            ckpt = read_checkpoint(path)
        except UnreadableCheckpoint:
            continue
        why = (f"{last} is unreadable ({problem})" if problem else
               f"{path.name} is newer than {last}" if last_ckpt is not None else
               f"{folder} holds no last.ckpt")
        print(f"{why}: resuming from {path}, the newest readable checkpoint (step {step})",
              flush=True)
        return path, ckpt
    if last_ckpt is not None:
        return last, last_ckpt
    if problem is not None:
        raise ConfigError(f"{last} is unreadable ({problem}) and no readable step checkpoint "
                          f"is beside it: --restart trains the run from scratch")
    return None


def plan_run(out_dir: str | Path, new_yaml: str, module: torch.nn.Module, mode: str = "auto",
             resume_from: str | Path | None = None, defaults_yaml: str | None = None
             ) -> RunPlan:
    """Decide how a recipe runs in ``out_dir`` (see the module docstring); refuses a folder
    that holds files but no run, checks the checkpoint against ``module`` and deletes files
    only for ``mode="restart"`` (only those the run wrote). Writes nothing else.
    ``defaults_yaml``: the recipe's defaults, for :func:`config_changes`."""
    if mode not in RESUME_MODES:
        raise ConfigError(f"resume mode '{mode}': must be one of {', '.join(RESUME_MODES)}")
    out = Path(out_dir)
    check_run_folder(out)
    if resume_from is not None:  # an explicit checkpoint: resume from it, whatever the folder
        checkpoint_fits(resume_from, module)
        return RunPlan(resume_from=Path(resume_from))
    if mode == "restart":
        removed, kept = clear_run(out)
        if removed:
            extra = (f" (kept {len(kept)} file(s) paravox did not write: "
                     f"{', '.join(kept[:3])}{' ...' if len(kept) > 3 else ''})" if kept else "")
            print(f"--restart: removed {', '.join(removed)} from {out}{extra}", flush=True)
        return RunPlan()
    saved = out / "config.yaml"
    found = newest_checkpoint(out)
    if found is None:
        if mode == "resume":
            raise ConfigError(f"--resume: {out} holds no checkpoints/last.ckpt to resume from "
                              f"(run without --resume to start it)")
        return RunPlan()
    changes = (config_changes(saved.read_text(), new_yaml, defaults_yaml) if saved.is_file()
               else [])
    refuse_changed(out, changes if mode == "auto" else [])
    path, ckpt = found
    steps = check_fits(ckpt, path, module)
    done = out / RUN_DONE
    if done.is_file():
        trained = int(json.loads(done.read_text())["steps"])
        if mode == "auto" or not changes:
            return RunPlan(resume_from=path, finished=True, steps=trained)
        if saved.is_file() and not trains_further(saved.read_text(), new_yaml, trained):
            refuse_finished(out, changes, trained)
    done.unlink(missing_ok=True)
    return RunPlan(resume_from=path, steps=steps)


def trains_further(saved_yaml: str, new_yaml: str, steps_done: int) -> bool:
    """Whether a run that finished after ``steps_done`` steps under ``saved_yaml`` would train
    more under ``new_yaml``: ``run.max_steps`` above the steps done (or unlimited) and, when
    the run ended on its epochs rather than on ``run.max_steps``, more ``run.epochs``."""
    old, new = flat_config(saved_yaml), flat_config(new_yaml)
    new_steps = int(new.get("run.max_steps", -1))
    if new_steps != -1 and new_steps <= steps_done:
        return False
    old_steps = int(old.get("run.max_steps", -1))
    if old_steps != -1 and steps_done >= old_steps:  # it ended on max_steps, mid-epochs
        return True
    return int(new.get("run.epochs", 0)) > int(old.get("run.epochs", 0))


def refuse_finished(out_dir: Path, changes: list[str], steps: int) -> None:
    """The one-line refusal of ``--resume`` with a changed config on a finished run that the
    new config would not train any further: resuming would only rewrite its config.yaml to
    settings its weights were never trained with."""
    shown = "; ".join(changes[:3]) + (f" (and {len(changes) - 3} more)"
                                      if len(changes) > 3 else "")
    raise ConfigError(f"--resume: {out_dir} holds a finished run ({steps} steps) that this "
                      f"config would not train further ({shown}), so its config.yaml would no "
                      f"longer describe its weights; raise run.epochs or run.max_steps to train "
                      f"on, or use --restart or another out_dir to train with these settings")


def refuse_changed(out_dir: Path, changes: list[str]) -> None:
    """The one-line refusal to mix a run in ``out_dir`` with a changed config."""
    if changes:
        shown = "; ".join(changes[:3]) + (f" (and {len(changes) - 3} more)"
                                          if len(changes) > 3 else "")
        raise ConfigError(f"{out_dir} holds a run trained with another config ({shown}): add "
                          f"--resume to continue it with this config, --restart to delete its "
                          f"checkpoints and logs and start over, or set out_dir=<another folder>")


def mark_done(out_dir: str | Path, steps: int, seconds: float | None = None) -> None:
    """Record that the run in ``out_dir`` finished after ``steps`` optimiser steps, and the
    wall seconds of the training that finished it (a study that reuses the run reports its
    training time from here, not the seconds it took to skip it)."""
    done = {"steps": int(steps)} | ({} if seconds is None else {"seconds": round(seconds, 1)})
    write_text(Path(out_dir) / RUN_DONE, json.dumps(done) + "\n")


def training_seconds(out_dir: str | Path) -> float | None:
    """The wall seconds :func:`mark_done` recorded for a finished run (``None``: not
    finished, or finished before the time was recorded)."""
    done = Path(out_dir) / RUN_DONE
    return json.loads(done.read_text()).get("seconds") if done.is_file() else None


def run_metrics(run_dir: str | Path) -> list[dict[str, str]]:
    """Every row of a run's CSV log, across the ``logs/version_k`` a resumed run has (one per
    training segment): a later segment's rows replace the earlier rows from its first step on
    (steps logged after the checkpoint a run resumed from were trained again)."""
    logs = sorted(Path(run_dir).glob("logs/version_*/metrics.csv"),
                  key=lambda p: int(p.parent.name.split("_")[1]))
    rows: list[dict[str, str]] = []
    for path in logs:
        with open(path, newline="") as f:
            part = list(csv.DictReader(f))
        steps = [int(r["step"]) for r in part if r.get("step")]
        if steps:
            first = min(steps)
            rows = [r for r in rows if not r.get("step") or int(r["step"]) < first]
        rows += part
    return rows
