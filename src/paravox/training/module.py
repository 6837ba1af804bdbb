"""What every training method shares: the front end (log-mel + SpecAugment), step-based
learning-rate and weight-decay schedules, optimiser construction, skipped-item logging.

A method subclasses :class:`TrainingModule`, builds its networks in ``__init__`` and lists the
trainable ones in ``trainable()``. Schedules are plain functions of the step, so a resumed run
continues them exactly.

Several optimisers: a method whose parts learn by different objectives (e.g. a critic network
trained to estimate mutual information while the encoders minimise it) returns one entry per
part from :meth:`TrainingModule.parameter_sets`, each with its own :class:`OptimConfig` and so
its own learning-rate and weight-decay schedule, sets ``automatic_optimization = False`` and
calls :meth:`TrainingModule.optimizer_step_on` for each part in ``training_step``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn

from paravox.audio.features import FeatureConfig, build_frontend
from paravox.data.augment import AugmentConfig
from paravox.data.crops import CropConfig
from paravox.data.dataset import CropBatch
from paravox.data.specaugment import SpecAugment, SpecAugmentConfig
from paravox.errors import ConfigError, ParavoxError
from paravox.objectives.collapse_monitor import effective_rank
from paravox.utils.checks import (
    at_least,
    between,
    finite,
    nonfinite_tensor,
    one_of,
    positive_finite,
)
from paravox.utils.schedules import cosine_schedule

MAX_LR = 10.0  # no optimiser paravox uses trains at a larger learning rate


class NonFiniteError(ParavoxError):
    """Training stopped at a NaN/Inf loss or weight (named), keeping the last finite
    checkpoint."""


@dataclass
class OptimConfig:
    """Optimiser and schedules: linear lr warm-up then cosine decay; cosine weight decay.

    The warm-up is ``warmup_epochs`` long, or, when ``warmup_fraction`` is set, that share of
    the run's steps: a warm-up that cannot outgrow a short run (DINO's recipes use it)."""

    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.2
    min_lr: float = 1e-5
    warmup_epochs: int = 10
    warmup_fraction: float | None = None  # share of the run's steps; overrides warmup_epochs
    weight_decay: float = 5e-5
    weight_decay_end: float = 5e-5
    clip_grad: float = 3.0  # max gradient norm (0 = no clipping)
    # layer-wise lr decay: the encoder's layer group i of G (Encoder.layer_groups) learns at
    # lr * layer_decay ** (G - 1 - i); 1 = off (everything at lr)
    layer_decay: float = 1.0

    def __post_init__(self):
        one_of("optim.optimizer", self.optimizer, ("sgd", "adamw"))
        positive_finite("optim.lr", self.lr, MAX_LR, "a learning rate above it diverges at "
                        "once")
        between("optim.min_lr", self.min_lr, 0.0, MAX_LR)
        at_least("optim.warmup_epochs", self.warmup_epochs, 0)
        if self.warmup_fraction is not None and not 0.0 <= self.warmup_fraction < 1.0:
            raise ConfigError(f"optim.warmup_fraction={self.warmup_fraction}: must be in "
                              f"[0, 1) (a share of the run's steps)")
        for key in ("weight_decay", "weight_decay_end", "clip_grad"):
            finite(f"optim.{key}", getattr(self, key))
        at_least("optim.weight_decay", self.weight_decay, 0.0)
        at_least("optim.weight_decay_end", self.weight_decay_end, 0.0)
        at_least("optim.clip_grad", self.clip_grad, 0.0, "0 = no clipping")
        positive_finite("optim.layer_decay", self.layer_decay, 1.0,
                        "1 = every layer at optim.lr; 0.75 is BEiT / data2vec's usual choice")


@dataclass(frozen=True)
class EncoderExport:
    """One encoder a method exports as a bundle: where its weights sit in the trained module's
    state dict (``prefix``) and the registry encoder (``encoder`` + ``settings``) that rebuilds
    it, so that ``paravox export`` needs nothing but the run's config and checkpoint."""

    prefix: str
    encoder: str
    settings: dict[str, Any]


@dataclass
class MethodConfig:
    """Settings common to all methods (features, crops, augmentation, SpecAugment, optimiser)
    and the export contract: :meth:`exports` names the encoders a trained module holds.

    A method that trains one encoder subclasses :class:`EncoderMethodConfig`; one with several
    names each in its own settings and overrides :meth:`exports`."""

    features: FeatureConfig = field(default_factory=FeatureConfig)
    crops: CropConfig = field(default_factory=CropConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    specaugment: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self):
        """Nothing to check here (each part checks itself); methods check their own settings
        in their ``__post_init__`` and call this."""

    def exports(self) -> dict[str, EncoderExport]:
        """Bundle name -> :class:`EncoderExport`, the default (what ``paravox export RUN``
        writes; the evaluation encoder) first; the others are ``--which NAME``."""
        raise NotImplementedError(f"{type(self).__name__} must declare its exports()")

    def min_batch_size(self) -> tuple[int, str]:
        """The fewest utterances per batch and process this method can learn from, and why
        (the engine refuses a smaller ``run.batch_size`` before training). Default 1; a
        contrastive loss needs other utterances in the batch as negatives (with one, NT-Xent
        is exactly 0 and nothing is learnt)."""
        return 1, ""


@dataclass
class EncoderMethodConfig(MethodConfig):
    """A method that trains one encoder (``encoder`` + ``encoder_settings``, registry names),
    kept as the module's ``encoder`` attribute and exported as ``encoder``."""

    encoder: str = "ecapa"
    encoder_settings: dict[str, Any] = field(default_factory=lambda: {"channels": 512})

    def exports(self) -> dict[str, EncoderExport]:
        """One export, ``encoder``: the module's ``encoder`` attribute."""
        return {"encoder": EncoderExport("encoder.", self.encoder, dict(self.encoder_settings))}


class TrainingModule(L.LightningModule):
    """Base LightningModule: front end, schedules and optimiser; see the module docstring."""

    def __init__(self, cfg: MethodConfig, steps_per_epoch: int, max_epochs: int):
        super().__init__()
        if cfg.optim.optimizer not in ("sgd", "adamw"):
            raise ConfigError(f"optim.optimizer='{cfg.optim.optimizer}': choose 'sgd' or "
                              f"'adamw'")
        self.cfg = cfg
        self.steps_per_epoch, self.max_epochs = steps_per_epoch, max_epochs
        self.fbank = build_frontend(cfg.features)
        self.specaugment = SpecAugment(cfg.specaugment)

    augment_seed: int = 0  # the engine sets the run seed; SpecAugment masks are keyed by it

    @classmethod
    def from_recipe(cls, cfg: MethodConfig, manifest, steps_per_epoch: int, max_epochs: int
                    ) -> TrainingModule:
        """Build the module for a recipe's training manifest. Methods whose networks depend
        on the data (e.g. the number of classes) override this."""
        return cls(cfg, steps_per_epoch, max_epochs)

    def trainable(self) -> nn.Module:
        """The networks the optimiser updates."""
        raise NotImplementedError

    def parameter_sets(self) -> dict[str, tuple[nn.Module, OptimConfig]]:
        """Named parts that each get an optimiser with its own settings and schedules.
        Default: one, ``main``: :meth:`trainable` with ``cfg.optim``. More than one needs
        ``automatic_optimization = False`` (see the module docstring)."""
        return {"main": (self.trainable(), self.cfg.optim)}

    def load_stage_state(self, state: dict, previous_stage: str) -> None:
        """Start a stage of a multi-stage recipe from the previous stage's weights. Default:
        every tensor whose name and shape match (new parts keep their initialisation)."""
        own = self.state_dict()
        fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        if not fitting:
            raise ConfigError(f"stage after '{previous_stage}': none of its weights fit this "
                              f"module")
        self.load_state_dict(fitting, strict=False)

    def embedding_encoder(self) -> nn.Module:
        """The encoder whose embeddings are evaluated and exported."""
        raise NotImplementedError

    # -- schedules ---------------------------------------------------------------------------
    @property
    def total_steps(self) -> int:
        """Training steps (batches) of the whole run: the length of the schedules."""
        return self.steps_per_epoch * self.max_epochs

    def steps_of(self, fraction: float) -> int:
        """``fraction`` of the run's steps, rounded: how settings given as a share of the
        run (warm-ups, freezes) become steps."""
        return int(round(fraction * self.total_steps))

    def warmup_steps(self, optim: OptimConfig | None = None) -> int:
        """The learning-rate warm-up in steps (``warmup_fraction`` of the run when set,
        else ``warmup_epochs``)."""
        o = optim or self.cfg.optim
        if o.warmup_fraction is not None:
            return self.steps_of(o.warmup_fraction)
        return o.warmup_epochs * self.steps_per_epoch

    def lr_at(self, step: int, optim: OptimConfig | None = None) -> float:
        """Learning rate at ``step``: linear warm-up, then cosine decay to ``min_lr``."""
        o = optim or self.cfg.optim
        return cosine_schedule(step, self.total_steps, o.lr, o.min_lr, self.warmup_steps(o),
                               0.0)

    def weight_decay_at(self, step: int, optim: OptimConfig | None = None) -> float:
        """Weight decay at ``step``: cosine from ``weight_decay`` to ``weight_decay_end``."""
        o = optim or self.cfg.optim
        return cosine_schedule(step, self.total_steps, o.weight_decay, o.weight_decay_end)

    @property
    def schedule_step(self) -> int:
        """The step the schedules read: Lightning's ``global_step`` under automatic
        optimisation; the number of training batches seen under manual optimisation (where
        ``global_step`` counts every optimiser's steps)."""
        if self.automatic_optimization:
            return self.global_step
        return getattr(self, "_batches_seen", 0)

    # -- front end ---------------------------------------------------------------------------
    def features(self, waves: torch.Tensor, augment: bool) -> torch.Tensor:
        """``[N, samples]`` crops of one length -> log-mel ``[N, T, F]`` (+ SpecAugment).

        SpecAugment masks spectrograms: a waveform front end gets only the waveform
        augmentation of the data pipeline."""
        return self.frame_features(waves, None, augment)[0]

    def frame_features(self, waves: torch.Tensor, lengths: torch.Tensor | None, augment: bool
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded ``[N, samples]`` waves with valid ``lengths`` (samples; None = all) ->
        features ``[N, T, F]`` and their valid frame lengths ``[N]`` (+ SpecAugment)."""
        feats, frame_lengths = self.fbank(waves, lengths)
        if augment and self.cfg.features.kind == "logmel":
            feats = self.specaugment(feats, generator=self._next_mask_generator())
        return feats, frame_lengths

    def _next_mask_generator(self) -> torch.Generator | None:
        """Masks keyed by (seed, step, rank, call): a resumed run draws the same masks."""
        if self._trainer is None:
            return None  # outside a Trainer: the global RNG
        self._mask_calls = getattr(self, "_mask_calls", 0) + 1
        key = [self.augment_seed, self.global_step, self.global_rank, self._mask_calls]
        seed = int(np.random.SeedSequence(key).generate_state(1)[0])
        return torch.Generator().manual_seed(seed)

    def log_embedding_rank(self, embeddings: torch.Tensor, batch_size: int) -> None:
        """Log ``collapse/effective_rank``: how many directions the batch's embeddings
        (before the encoder's final normalisation, ``EncoderOutput.unnormalised``) really use;
        every method logs it, so dimensional collapse shows in any run."""
        if embeddings.shape[0] > 1:
            self.log("collapse/effective_rank", effective_rank(embeddings),
                     batch_size=batch_size)

    def log_skipped(self, batch: CropBatch) -> bool:
        """Count and log skipped items (kept in ``self.skipped_items`` for the run's report,
        :class:`~paravox.training.engine.SkippedItems`); False when nothing in the batch is
        usable."""
        if not hasattr(self, "skipped_items"):
            self.skipped_items, self.items_read = [], 0
        self.items_read += batch.batch_size
        if batch.skipped:
            self.skipped_items += batch.skipped
            self.log("data/skipped", float(len(batch.skipped)), reduce_fx="sum",
                     batch_size=max(batch.batch_size, 1))
        return batch.batch_size > 0

    # -- loss terms: what the engine's non-finite guard names -------------------------------
    def log(self, name: str, value, *args, **kwargs) -> None:
        """Lightning's ``log``; a value logged under ``train/`` is also kept for the current
        step, so that a non-finite loss is traced to its first non-finite term
        (:meth:`nonfinite_terms`). Log each loss term before it is back-propagated."""
        if name.startswith("train/"):
            self.note_terms({name: value})
        super().log(name, value, *args, **kwargs)

    def note_terms(self, terms: dict[str, Any]) -> None:
        """Keep loss terms of the current step that are not logged (e.g. a loss stepped
        several times per batch) for :meth:`nonfinite_terms`, in the order they come."""
        if not isinstance(self.__dict__.get("_step_terms"), dict):
            self.__dict__["_step_terms"] = {}
        self.__dict__["_step_terms"].update(terms)

    def nonfinite_terms(self) -> list[tuple[str, str]]:
        """``(name, value)`` of each term logged (or noted) this step that is NaN or Inf, in
        the order they were logged; the total ``train/loss`` last, after its parts."""
        bad = []
        for name, value in self.__dict__.get("_step_terms", {}).items():
            t = torch.as_tensor(value.detach() if isinstance(value, torch.Tensor) else value)
            if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
                shown = f"{float(t):g}" if t.numel() == 1 else "NaN/Inf values"
                bad.append((name, shown))
        return sorted(bad, key=lambda nv: nv[0] == "train/loss")

    # -- hooks -------------------------------------------------------------------------------
    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        self._mask_calls = 0
        self._in_batch = True
        self.__dict__["_step_terms"] = {}
        step = self.schedule_step
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        for opt, (_, optim) in zip(optimizers, self.parameter_sets().values()):
            lr, wd = self.lr_at(step, optim), self.weight_decay_at(step, optim)
            for group in opt.optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
                if group.get("regularised", True):
                    group["weight_decay"] = wd

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self._batches_seen = getattr(self, "_batches_seen", 0) + 1
        self._in_batch = False

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Refuse to save NaN/Inf weights (the last finite checkpoint stays the one to resume
        or export from); record the batches trained."""
        bad = nonfinite_tensor(checkpoint.get("state_dict", {}))
        if bad:
            raise NonFiniteError(f"step {self.batches_completed}: tensor {bad} of the model "
                                 f"is not finite, so no checkpoint was saved; the last "
                                 f"checkpoint saved is finite. Lower optim.lr (or the "
                                 f"method's weights and temperatures) and start again")
        checkpoint["paravox_batches_seen"] = self.batches_completed

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._batches_seen = int(checkpoint.get("paravox_batches_seen", 0))
        self._in_batch = False

    @property
    def batches_completed(self) -> int:
        """Training batches done, the one in progress counted once its step is taken:
        callbacks run at a batch's end before this module's ``on_train_batch_end`` counts it
        (a checkpoint saved there, a stop after ``run.max_steps`` batches)."""
        return getattr(self, "_batches_seen", 0) + int(getattr(self, "_in_batch", False))

    @property
    def batches_trained(self) -> int:
        """Training batches done: what a run reports as its steps (under manual optimisation
        Lightning's ``global_step`` counts every optimiser's steps instead)."""
        if self.automatic_optimization:
            return int(self.global_step)
        return int(getattr(self, "_batches_seen", 0))

    def optimizer_step_on(self, name: str, loss: torch.Tensor) -> None:
        """Manual optimisation: back-propagate ``loss`` into part ``name`` of
        :meth:`parameter_sets` and step its optimiser (gradients clipped per its
        ``clip_grad``). The part's gradients are zeroed before the backward pass, so what
        another part's loss left on it never leaks into its step."""
        names = list(self.parameter_sets())
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        opt, optim = optimizers[names.index(name)], self.parameter_sets()[name][1]
        opt.zero_grad()
        self.manual_backward(loss)
        if optim.clip_grad:
            self.clip_gradients(opt, gradient_clip_val=optim.clip_grad,
                                gradient_clip_algorithm="norm")
        opt.step()

    def configure_optimizers(self):
        sets = self.parameter_sets()
        if len(sets) > 1 and self.automatic_optimization:
            raise ConfigError(f"{type(self).__name__}: {len(sets)} parameter sets "
                              f"({', '.join(sets)}) need automatic_optimization = False")
        optimizers = [make_optimizer(module, optim, layer_lr_scales(
            self.embedding_encoder(), optim.layer_decay) if optim.layer_decay != 1.0 else None)
            for module, optim in sets.values()]
        return optimizers[0] if len(optimizers) == 1 else optimizers


def layer_lr_scales(encoder: nn.Module, decay: float) -> dict[int, float]:
    """Layer-wise learning-rate decay (BEiT, data2vec; what fine-tuning a pretrained speech
    Transformer usually needs): ``id(parameter) -> decay ** (G - 1 - i)`` for the parameters
    of ``encoder``'s layer group ``i`` of ``G`` (:meth:`Encoder.layer_groups`, input side
    first, its head last at scale 1). Parameters outside the groups (a method's heads, CLUB)
    are not listed: scale 1. Empty when ``decay`` is 1 or the encoder has no groups."""
    groups_of = getattr(encoder, "layer_groups", None)
    if decay == 1.0 or groups_of is None:
        return {}
    groups = groups_of()
    scales = {}
    for name, p in encoder.named_parameters():
        for i, prefixes in enumerate(groups):
            if any(name.startswith(pre) for pre in prefixes):
                scales[id(p)] = float(decay) ** (len(groups) - 1 - i)
                break
    return scales


def make_optimizer(module: nn.Module, o: OptimConfig,
                   lr_scales: dict[int, float] | None = None) -> torch.optim.Optimizer:
    """SGD (momentum 0.9) or AdamW over ``module``'s trainable parameters; biases and norm
    weights (1-D) in groups without weight decay; with ``lr_scales`` (:func:`layer_lr_scales`)
    one pair of groups per learning-rate scale (``lr_scale``, applied by the schedule)."""
    if o.optimizer not in ("sgd", "adamw"):
        raise ConfigError(f"optim.optimizer='{o.optimizer}': choose 'sgd' or 'adamw'")
    lr_scales = lr_scales or {}
    by_scale: dict[float, tuple[list, list]] = {}
    for name, p in module.named_parameters():
        if p.requires_grad:
            decay, no_decay = by_scale.setdefault(lr_scales.get(id(p), 1.0), ([], []))
            (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    groups = []
    for scale, (decay, no_decay) in sorted(by_scale.items(), key=lambda kv: -kv[0]) or [
            (1.0, ([], []))]:
        extra = {"lr_scale": scale} if lr_scales else {}
        groups += [{"params": decay, "regularised": True, **extra},
                   {"params": no_decay, "weight_decay": 0.0, "regularised": False, **extra}]
    if o.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=0.9)
    return torch.optim.AdamW(groups, lr=o.lr)
