"""Evaluation hooks for the training engine: checks that run inside a training run.

:class:`QuickEERCheck` is the quick speaker-verification check at the end of pretraining:
the module's evaluation encoder embeds the trial utterances and a cosine EER is logged and
kept. It is a Lightning callback handed to the engine (``run_recipe(recipe, callbacks=[...])``),
so the training layers need not know about evaluation.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L

from paravox.evaluation.sv import cosine_sv_eer
from paravox.evaluation.trials import read_trials
from paravox.utils.checks import at_least


class QuickEERCheck(L.Callback):
    """Cosine EER of the module's ``embedding_encoder()`` on a trial list, at the end of
    training (on the first process only); the value is in ``self.eer`` and in the logs as
    ``eval/eer``."""

    def __init__(self, manifest: str | Path, trials: str | Path):
        self.manifest, self.trials = Path(manifest), Path(trials)
        if self.trials.is_file():  # a missing one is named by the recipe's own file check
            read_trials(self.trials)  # an unusable trial list fails before training, not after
        self.eer: float | None = None

    def on_train_end(self, trainer: L.Trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        self.eer = cosine_sv_eer(pl_module.embedding_encoder(), pl_module.fbank,
                                self.manifest, self.trials, device=pl_module.device)
        for logger in trainer.loggers:
            logger.log_metrics({"eval/eer": self.eer}, step=trainer.global_step)


class EERCurve(L.Callback):
    """Cosine EER of the module's ``embedding_encoder()`` every ``every_n_steps`` optimiser
    steps and at the end: the training curve of a verification metric, for comparing how
    fast methods learn and where their curves cross. Points are ``(step, eer)`` in
    ``self.points`` and ``eval/eer`` in the logs. The encoder's train/eval mode is restored
    after each check, so batch-norm layers keep training on batch statistics."""

    def __init__(self, manifest: str | Path, trials: str | Path, every_n_steps: int):
        at_least("every_n_steps", every_n_steps, 1)
        self.manifest, self.trials, self.every = Path(manifest), Path(trials), every_n_steps
        self.points: list[tuple[int, float]] = []

    def _check(self, trainer: L.Trainer, pl_module) -> None:
        step = trainer.global_step
        if not trainer.is_global_zero or any(s == step for s, _ in self.points):
            return
        modules = [pl_module.embedding_encoder(), pl_module.fbank]
        modes = [[m.training for m in mod.modules()] for mod in modules]
        eer = cosine_sv_eer(modules[0], modules[1], self.manifest, self.trials,
                           device=pl_module.device)
        for mod, mode in zip(modules, modes):
            for m, training in zip(mod.modules(), mode):
                m.train(training)
        self.points.append((step, eer))
        for logger in trainer.loggers:
            logger.log_metrics({"eval/eer": eer}, step=step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if trainer.global_step > 0 and trainer.global_step % self.every == 0:
            self._check(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module) -> None:
        self._check(trainer, pl_module)
