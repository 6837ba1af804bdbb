"""Callbacks that stop a run cleanly: Ctrl-C saves a resumable checkpoint and prints the
command that resumes (:class:`GracefulInterrupt`), and a NaN/Inf loss stops the run before
it changes a weight (:class:`NonFiniteLoss`). :func:`~paravox.training.engine.fit` installs
both on every run."""

from __future__ import annotations

import shlex
import signal
import sys
import threading
from pathlib import Path

import lightning as L
import torch

from paravox.errors import ParavoxError
from paravox.training.module import NonFiniteError


class RunInterrupted(ParavoxError):
    """Training stopped on Ctrl-C after saving a resumable checkpoint (exit status 130)."""

    exit_code = 130


def resume_command(argv: list[str]) -> str:
    """The command that resumes an interrupted ``paravox`` run: the same arguments without
    ``--restart`` (which would delete the checkpoint just saved) and without ``resume_from=``
    (the run's own ``last.ckpt`` is newer); ``paravox study`` commands get ``--reuse``."""
    if Path(argv[0]).name != "paravox":
        return "the same command"
    args = [a for a in argv[1:] if a != "--restart" and not a.startswith("resume_from=")]
    if args[:1] == ["study"] and "--reuse" not in args:
        args.append("--reuse")
    return shlex.join(["paravox", *args])


class GracefulInterrupt(L.Callback):
    """Ctrl-C (SIGINT) finishes the current optimiser step, saves ``checkpoints/last.ckpt``
    (the same state a step checkpoint holds, so the resumed run continues exactly) and stops
    with the command that resumes; a second Ctrl-C stops at once without saving. Under DDP
    the ranks agree on the step to stop at (one all-reduce of a flag per step)."""

    def __init__(self, path: Path, accumulate: int = 1):
        self.path, self.accumulate = path, accumulate
        self.requested = False
        self._previous = None

    def _on_sigint(self, signum, frame) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a 2nd Ctrl-C: stop now
        print("\nCtrl-C: saving a checkpoint after this step (Ctrl-C again to stop at once, "
              "without one)", file=sys.stderr, flush=True)

    def on_train_start(self, trainer, pl_module) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)

    def _restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if (batch_idx + 1) % self.accumulate:
            return  # mid-accumulation: not a step boundary
        if not trainer.strategy.reduce_boolean_decision(self.requested, all=False):
            return
        trainer.save_checkpoint(self.path, weights_only=False)
        self._restore()
        command = resume_command(sys.argv)
        raise RunInterrupted(f"interrupted at step {trainer.global_step}: checkpoint saved in "
                             f"{self.path}; resume with: {command}")

    def on_train_end(self, trainer, pl_module) -> None:
        self._restore()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._restore()


class NonFiniteLoss(L.Callback):
    """A NaN or Inf loss stops the run before it is back-propagated, so no weight of that
    step changes and no checkpoint after it is written (``TrainingModule`` also refuses to
    save non-finite weights): one line names the step and the first non-finite loss term the
    method logged, and where the last (finite) checkpoint is. Under DDP the ranks agree
    (one all-reduce of a flag per backward pass), so none waits for a rank that stopped."""

    def __init__(self, checkpoints: Path):
        self.checkpoints = checkpoints

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        bad = not bool(torch.isfinite(loss.detach()).all())
        if not trainer.strategy.reduce_boolean_decision(bad, all=False):
            return
        terms = getattr(pl_module, "nonfinite_terms", list)()
        if terms:
            what = ", ".join(f"{name} = {value}" for name, value in terms[:3])
        else:
            what = (f"the loss back-propagated = {float(loss.detach().float()):g}"
                    if loss.numel() == 1 else "the loss back-propagated holds NaN/Inf")
            what += " (on another process)" if not bad else ""
        last = self.checkpoints / "last.ckpt"
        kept = (f"the last checkpoint, {last}, is kept (its weights are finite)" if last.is_file()
                else "no checkpoint was saved before it")
        step = getattr(pl_module, "batches_trained", trainer.global_step) + 1
        raise NonFiniteError(f"step {step}: the loss is not finite ({what}); training stopped "
                             f"before this step changed any weight, {kept}. Lower optim.lr, "
                             f"check the method's temperatures and loss weights and the data "
                             f"(`paravox manifest validate`)")
