"""Evaluation hooks for the training engine: checks that run inside a training run.

:class:`QuickEERCheck` is the quick speaker-verification check at the end of pretraining:
the module's evaluation encoder embeds the trial utterances and a cosine EER is logged and
kept. It is a Lightning callback handed to the engine (``run_recipe(recipe, callbacks=[...])``),
so the training layers need not know about evaluation.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L


class QuickEERCheck(L.Callback):
    """Cosine EER of the module's ``embedding_encoder()`` on a trial list, at the end of
    training (on the first process only); the value is in ``self.eer`` and in the logs as
    ``eval/eer``."""

    def __init__(self, manifest: str | Path, trials: str | Path):
        self.manifest, self.trials = Path(manifest), Path(trials)
        self.eer: float | None = None

    def on_train_end(self, trainer: L.Trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        from paravox.evaluation.quick_sv import quick_sv_eer

        self.eer = quick_sv_eer(pl_module.embedding_encoder(), pl_module.fbank,
                                self.manifest, self.trials, device=pl_module.device)
        for logger in trainer.loggers:
            logger.log_metrics({"eval/eer": self.eer}, step=trainer.global_step)
