"""What a run folder holds, and what re-running a recipe on it does.

A run folder (``out_dir``) holds ``config.yaml`` (the resolved recipe), ``checkpoints/``
(``last.ckpt`` plus the latest step checkpoint), ``logs/`` (one ``version_k`` per training
segment), ``skipped_items.tsv`` and, once training finished, ``run_done.json``.

Re-running a recipe on a folder that holds a run never silently starts over:

* ``mode="auto"`` (the default): the same config resumes from ``checkpoints/last.ckpt`` (a
  finished run is skipped); another config is refused with the changed keys named, offering
  ``--resume`` and ``--restart``;
* ``mode="resume"``: continue from ``last.ckpt`` with this config (e.g. more epochs), after
  checking that the checkpoint's tensors fit the model this config builds;
* ``mode="restart"``: delete the folder's checkpoints, logs and markers, then train afresh.

``config.yaml`` is written only after these checks, so a refused resume leaves the folder as
it was (its checkpoints still export).
"""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf

from paravox.errors import ConfigError

RESUME_MODES = ("auto", "resume", "restart")
RUN_DONE = "run_done.json"
# keys that change neither the model nor the data it sees: a rerun differing only here resumes
# run.resolved_precision: what run.precision=auto gave on the machine that wrote the config
COSMETIC_KEYS = ("resume_from", "out_dir", "run.progress_bar", "run.num_workers",
                 "run.tensorboard", "run.model_summary", "run.resolved_precision")
# what --restart deletes: only the files a run writes, never anything else in the folder
RUN_FILES = ("checkpoints", "logs", "tensorboard", "stages", "config.yaml", "skipped_items.tsv",
             RUN_DONE)


@dataclass
class RunPlan:
    """What to do with a run folder: train from scratch (``resume_from`` None), resume from a
    checkpoint, or nothing (``finished``: done earlier with this config, ``steps`` trained)."""

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


def config_changes(saved_yaml: str, new_yaml: str) -> list[str]:
    """The keys whose values differ (``key: old -> new``), cosmetic keys left out."""
    old, new = flat_config(saved_yaml), flat_config(new_yaml)
    changes = []
    for key in sorted(old.keys() | new.keys()):
        if key in COSMETIC_KEYS or old.get(key) == new.get(key):
            continue
        changes.append(f"{key}: {old.get(key, '<absent>')} -> {new.get(key, '<absent>')}")
    return changes


def checkpoint_fits(path: str | Path, module: torch.nn.Module) -> int:
    """Check that the checkpoint at ``path`` holds exactly the tensors ``module`` has, with the
    same shapes, before any file of the run is touched; returns its global step.

    Raises a one-line :class:`ConfigError` naming the first differing tensors (a resume with a
    changed model size would otherwise fail deep inside Lightning with a size-mismatch trace)."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same one line
        raise ConfigError(f"{path}: not a readable paravox checkpoint ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:120] if str(exc) else ''}); resume from "
                          f"a run's checkpoints/last.ckpt") from None
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ConfigError(f"{path}: holds no state_dict: not a paravox training checkpoint")
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


def clear_run(out_dir: Path) -> list[str]:
    """Delete what a run wrote in ``out_dir`` (``RUN_FILES``); returns the names removed."""
    removed = []
    for name in RUN_FILES:
        p = out_dir / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
        else:
            continue
        removed.append(name)
    return removed


def plan_run(out_dir: str | Path, new_yaml: str, module: torch.nn.Module, mode: str = "auto",
             resume_from: str | Path | None = None) -> RunPlan:
    """Decide how a recipe runs in ``out_dir`` (see the module docstring); checks the checkpoint
    against ``module`` and deletes files only for ``mode="restart"``. Writes nothing else."""
    if mode not in RESUME_MODES:
        raise ConfigError(f"resume mode '{mode}': must be one of {', '.join(RESUME_MODES)}")
    out = Path(out_dir)
    if resume_from is not None:  # an explicit checkpoint: resume from it, whatever the folder
        checkpoint_fits(resume_from, module)
        return RunPlan(resume_from=Path(resume_from))
    if mode == "restart":
        removed = clear_run(out)
        if removed:
            print(f"--restart: removed {', '.join(removed)} from {out}", flush=True)
        return RunPlan()
    last = out / "checkpoints" / "last.ckpt"
    saved = out / "config.yaml"
    if not last.is_file():
        if mode == "resume":
            raise ConfigError(f"--resume: {out} holds no checkpoints/last.ckpt to resume from "
                              f"(run without --resume to start it)")
        return RunPlan()
    changes = config_changes(saved.read_text(), new_yaml) if saved.is_file() else []
    refuse_changed(out, changes if mode == "auto" else [])
    steps = checkpoint_fits(last, module)
    done = out / RUN_DONE
    if done.is_file() and (mode == "auto" or not changes):
        return RunPlan(finished=True, steps=int(json.loads(done.read_text())["steps"]))
    done.unlink(missing_ok=True)
    return RunPlan(resume_from=last, steps=steps)


def refuse_changed(out_dir: Path, changes: list[str]) -> None:
    """The one-line refusal to mix a run in ``out_dir`` with a changed config."""
    if changes:
        shown = "; ".join(changes[:3]) + (f" (and {len(changes) - 3} more)"
                                          if len(changes) > 3 else "")
        raise ConfigError(f"{out_dir} holds a run trained with another config ({shown}): add "
                          f"--resume to continue it with this config, --restart to delete its "
                          f"checkpoints and logs and start over, or set out_dir=<another folder>")


def mark_done(out_dir: str | Path, steps: int) -> None:
    """Record that the run in ``out_dir`` finished after ``steps`` optimiser steps."""
    (Path(out_dir) / RUN_DONE).write_text(json.dumps({"steps": int(steps)}) + "\n")


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
