"""The training engine: data loader, Lightning Trainer, logs, checkpoints, exact resume.

One function, :func:`fit`, trains any :class:`~paravox.training.module.TrainingModule`; it runs
on one CPU, one GPU, or DDP over many GPUs/nodes (``torchrun`` or SLURM set the world; Lightning
picks it up), with bf16/fp16 AMP, gradient accumulation, a checkpoint every N steps, and
mid-epoch resume that continues exactly (model, teacher, centre, optimiser, step-based
schedules; data and SpecAugment randomness are keyed by epoch/item/step, not stateful; the
global generators that dropout draws from are saved in every checkpoint and put back). Every
checkpoint is written whole or not at all (:mod:`paravox.training.checkpoint_state`).
"""

from __future__ import annotations

import logging
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch

from paravox.data.augment import WaveAugment
from paravox.data.dataset import (
    EpochSampler,
    MultiCropDataset,
    ResumableLoader,
    collate_crops,
    ignore_sigint,
)
from paravox.data.manifest import Manifest
from paravox.data.shard_stream import ShardLoader
from paravox.errors import ConfigError, ParavoxError
from paravox.training.checkpoint_state import AtomicCheckpointIO, RngState
from paravox.training.module import MethodConfig, TrainingModule
from paravox.training.run_guards import GracefulInterrupt, NonFiniteLoss
from paravox.utils.atomic_files import write_text
from paravox.utils.checks import at_least, one_of

ACCELERATORS = ("auto", "cpu", "gpu", "cuda")
STRATEGIES = ("auto", "ddp", "ddp_spawn", "ddp_find_unused_parameters_true")
PRECISIONS = ("auto", "32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "64-true")


# oneDNN ISA limits (ONEDNN_MAX_CPU_ISA) under which its bf16 kernels still run natively
_BF16_ISAS = {"AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16",
              "AVX10_1_512", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "ALL", "DEFAULT"}


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 matrix products in hardware (AVX512-BF16 or AMX): only
    then is bf16 autocast faster than float32 (elsewhere oneDNN emulates it, and slower).
    ``ONEDNN_MAX_CPU_ISA`` below AVX512_CORE_BF16 (e.g. ``AVX2``) counts as no bf16: oneDNN
    would emulate it, and it is how a machine without bf16 is imitated on one that has it."""
    isa_limit = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    if isa_limit and isa_limit not in _BF16_ISAS:
        return False
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def _cuda_bf16() -> bool:
    """Native bf16 on the current GPU (compute capability 8.0+), not emulated bf16."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # older torch: no emulation argument
        return torch.cuda.is_bf16_supported()


def resolve_precision(precision: str, accelerator: str) -> tuple[str, str]:
    """The Lightning precision a run uses, and why. ``auto``: ``bf16-mixed`` on a CUDA GPU
    that supports bf16 and on a CPU with native bf16, ``32-true`` elsewhere. Mixed precision
    keeps the weights, optimiser, EMA teacher, batch-norm statistics and every loss in
    float32; only matrix products and convolutions run in bf16."""
    if precision != "auto":
        return precision, "set by run.precision"
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto"
                                                 and torch.cuda.is_available())
    if on_gpu:
        if torch.cuda.is_available() and _cuda_bf16():
            return "bf16-mixed", "auto: this GPU supports bf16"
        return "32-true", "auto: this GPU has no bf16"
    if cpu_has_native_bf16():
        return "bf16-mixed", "auto: this CPU has native bf16 (AVX512-BF16 / AMX)"
    return "32-true", "auto: this CPU has no native bf16, float32 is faster"


@dataclass
class RunConfig:
    """Engine settings (Lightning Trainer + data loader)."""

    epochs: int = 10
    batch_size: int = 16  # per process
    num_workers: int = 2
    accelerator: str = "auto"  # cpu | gpu | auto
    devices: int = 1  # processes per node (GPUs); >1 -> DDP
    num_nodes: int = 1
    strategy: str = "auto"  # auto | ddp | ddp_spawn (tests)
    sync_batchnorm: bool = True  # under DDP, batch norm over the global batch
    # auto: bf16-mixed where the hardware computes bf16 natively (GPUs, AVX512-BF16 / AMX
    # CPUs), else 32-true; resolved_precision (set when the config is built, written to
    # config.yaml, not compared when a run is resumed elsewhere) says which
    precision: str = "auto"
    resolved_precision: str = ""
    accumulate_grad_batches: int = 1
    checkpoint_every_n_steps: int = 500
    max_steps: int = -1
    seed: int = 0
    babble_utterances: int = 200  # corpus utterances mixed into babble noise
    tensorboard: bool = True  # TensorBoard event files beside the CSV log
    progress_bar: bool = True
    model_summary: bool = False  # Lightning's parameter table at the start of a run
    max_bad_fraction: float = 0.1  # stop when more of the items read so far are unreadable
    # training from shards (train_shards): items each loader worker shuffles among (holds
    # this many items' audio bytes in memory)
    shuffle_buffer: int = 256

    def __post_init__(self):
        at_least("run.epochs", self.epochs, 1, "a run that trains nothing is refused")
        at_least("run.batch_size", self.batch_size, 1)
        at_least("run.num_workers", self.num_workers, 0)
        one_of("run.accelerator", self.accelerator, ACCELERATORS)
        at_least("run.devices", self.devices, 1)
        at_least("run.num_nodes", self.num_nodes, 1)
        one_of("run.strategy", self.strategy, STRATEGIES)
        one_of("run.precision", self.precision, PRECISIONS)
        self.resolved_precision = resolve_precision(self.precision, self.accelerator)[0]
        at_least("run.accumulate_grad_batches", self.accumulate_grad_batches, 1)
        at_least("run.checkpoint_every_n_steps", self.checkpoint_every_n_steps, 1)
        if self.max_steps != -1:
            at_least("run.max_steps", self.max_steps, 1, "-1 = no limit")
        at_least("run.babble_utterances", self.babble_utterances, 0)
        at_least("run.shuffle_buffer", self.shuffle_buffer, 1, "1 = no shuffling within "
                 "shards")
        if not 0.0 <= self.max_bad_fraction <= 1.0:
            raise ConfigError(f"run.max_bad_fraction={self.max_bad_fraction}: must be in [0, 1]")

    @property
    def precision_reason(self) -> str:
        """Why :attr:`resolved_precision` was chosen (printed when a run starts)."""
        return resolve_precision(self.precision, self.accelerator)[1]

    @property
    def world_size(self) -> int:
        """Number of training processes (devices x nodes): the keys and batches per step
        are shared among them."""
        return self.devices * self.num_nodes


def check_batch_size(cfg: MethodConfig, run: RunConfig) -> None:
    """``run.batch_size`` (utterances per batch and process) at least what the method can
    learn from (:meth:`MethodConfig.min_batch_size`), else one line naming both: with one
    utterance a contrastive loss has no negatives and is exactly 0 (nothing is learnt)."""
    need, why = cfg.min_batch_size()
    if run.batch_size < need:
        method = type(cfg).__name__.removesuffix("Config")
        raise ConfigError(f"run.batch_size={run.batch_size}: {method} needs at least {need} "
                          f"utterances per batch and process ({why}); raise run.batch_size")


def crop_dataset(manifest: Manifest, cfg: MethodConfig, run: RunConfig) -> MultiCropDataset:
    """The method's multi-crop items over ``manifest`` (``cfg.crops``, ``cfg.augment`` with
    babble from the first ``run.babble_utterances`` rows), keyed by (seed, epoch, item): what
    the file-based and the shard loaders both serve."""
    sources = [manifest.audio_path(r) for r in manifest.rows[:run.babble_utterances]]
    augment = WaveAugment(cfg.augment, babble_sources=sources)
    return MultiCropDataset(manifest, cfg.crops, augment, seed=run.seed)


def crop_loader(manifest: Manifest, cfg: MethodConfig, run: RunConfig,
                num_replicas: int | None = None, rank: int | None = None,
                sampler: EpochSampler | None = None) -> ResumableLoader:
    """Multi-crop batches per ``cfg.crops`` with ``cfg.augment``, keyed by (seed, epoch, item).
    ``sampler``: another key order (e.g. class-balanced batches) instead of the shuffled one.
    A batch too small for the method is refused first (:func:`check_batch_size`)."""
    check_batch_size(cfg, run)
    ds = crop_dataset(manifest, cfg, run)
    if sampler is None:
        sampler = EpochSampler(len(ds), run.seed, num_replicas=num_replicas, rank=rank)
    return ResumableLoader(ds, batch_size=run.batch_size, sampler=sampler,
                           num_workers=run.num_workers, collate_fn=collate_crops,
                           drop_last=True, persistent_workers=run.num_workers > 0,
                           worker_init_fn=ignore_sigint if run.num_workers > 0 else None,
                           # its own generator: starting an epoch's iterator draws a seed, which
                           # must not shift the global one (dropout) that checkpoints restore
                           generator=torch.Generator().manual_seed(run.seed))


def steps_per_epoch(n_items: int, run: RunConfig) -> int:
    """Optimiser steps per epoch for ``n_items`` shared by all processes."""
    batches = (n_items // run.world_size) // run.batch_size
    if batches == 0:
        raise ConfigError(f"{n_items} utterances give no full batch of run.batch_size="
                          f"{run.batch_size} on {run.world_size} process(es): lower the batch "
                          f"size or use more data")
    return max(batches // run.accumulate_grad_batches, 1)


def is_rank_nonzero() -> bool:
    """Whether this is a DDP process other than the first (its lines would repeat rank 0's)."""
    for key in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if key in os.environ:
            return int(os.environ[key]) != 0
    return False


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch: call before building a module (initial weights)."""
    L.seed_everything(seed, workers=True, verbose=False)


class LoaderProgress(L.Callback):
    """Tells a :class:`ResumableLoader` or :class:`ShardLoader` how many batches of the epoch
    are done, so that a checkpoint taken mid-epoch resumes at the next batch (runs before
    ModelCheckpoint), and a shard loader which epoch starts (its stream has no sampler for
    Lightning to set the epoch on)."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        loader = trainer.train_dataloader
        if isinstance(loader, ShardLoader):
            loader.set_epoch(trainer.current_epoch)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        loader = trainer.train_dataloader
        if isinstance(loader, ResumableLoader | ShardLoader):
            loader.batches_done = batch_idx + 1


class TooManyBadItems(ParavoxError):
    """Training stopped because too many of the items it read were unusable (or none was
    usable); the items are listed in the run's ``skipped_items.tsv``."""


class SkippedItems(L.Callback):
    """Bad items never pass silently: each one skipped (unreadable, too short, no alignment)
    is written with its reason to ``<out_dir>/skipped_items.tsv`` and summarised at the end; the
    run stops with one line when more than ``max_bad_fraction`` of the items read so far are
    bad (checked once ``min_items`` were read) and always when it read nothing usable, so a
    run that trained on nothing never finishes as a success (nor leaves a final checkpoint)."""

    def __init__(self, out_dir: Path, max_bad_fraction: float, min_items: int = 32):
        self.path = out_dir / "skipped_items.tsv"
        self.max_bad, self.min_items = max_bad_fraction, min_items

    @staticmethod
    def _counts(pl_module) -> tuple[int, list]:
        """(usable items read, skipped items) as :meth:`TrainingModule.log_skipped` counts
        them; a module that never calls it reports (-1, []) and is not checked."""
        if not hasattr(pl_module, "items_read"):
            return -1, []
        return pl_module.items_read, pl_module.skipped_items

    def _write(self, bad: list) -> None:
        if bad:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            rows = [f"{b.id}\t{' '.join(b.reason.split())}\n" for b in bad]
            write_text(self.path, "id\treason\n" + "".join(rows))

    def _stop(self, good: int, bad: list, why: str) -> None:
        self._write(bad)
        kinds = ", ".join(sorted({b.reason.split(":")[0] for b in bad})) or "none"
        raise TooManyBadItems(f"{why}: {len(bad)} of {good + len(bad)} items read were "
                              f"unusable ({kinds}; e.g. {bad[0].id if bad else '-'}); every one "
                              f"is listed in {self.path}. Fix them (`paravox manifest validate "
                              f"--fix`) or raise run.max_bad_fraction")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        good, bad = self._counts(pl_module)
        seen = good + len(bad)
        if bad and seen >= self.min_items and len(bad) > self.max_bad * seen:
            self._stop(good, bad, f"more than run.max_bad_fraction={self.max_bad} of the "
                                  f"training items are unreadable")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        good, bad = self._counts(pl_module)
        if good == 0:
            self._stop(good, bad, "no usable training item was read")

    def on_train_end(self, trainer, pl_module) -> None:
        good, bad = self._counts(pl_module)
        if bad and trainer.is_global_zero:
            self._write(bad)
            print(f"skipped {len(bad)} unusable item(s) of {good + len(bad)} read (e.g. "
                  f"{', '.join(b.id for b in bad[:3])}): listed in {self.path}", flush=True)


class StopAfterBatches(L.Callback):
    """``run.max_steps`` for a method that steps its optimisers itself (manual
    optimisation): Lightning's ``max_steps`` counts every optimiser's steps (Learn2Diss takes
    ``q_steps + 1`` per batch), so the engine stops after ``max_steps`` training batches
    instead, the steps a run reports."""

    def __init__(self, max_batches: int):
        self.max_batches = max_batches

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if pl_module.batches_completed >= self.max_batches:
            trainer.should_stop = True


class SaveLastAtEnd(L.Callback):
    """``checkpoints/last.ckpt`` always holds the final state (step-triggered checkpoints
    alone would leave it at the last multiple of ``checkpoint_every_n_steps``)."""

    def __init__(self, path: Path):
        self.path = path

    def on_train_end(self, trainer, pl_module) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)


_PRECISION_SAID: set[tuple[str, str]] = set()


def new_run_notices() -> None:
    """Start a new run's notices: its first training segment says again which precision it
    trains in (the stages of one run, or the fine-tuning stages of one model, say it once)."""
    _PRECISION_SAID.clear()


def fit(module: TrainingModule, loader: ResumableLoader | ShardLoader, out_dir: str | Path,
        run: RunConfig, resume_from: str | Path | None = None,
        callbacks: list | None = None) -> L.Trainer:
    """Train ``module`` on ``loader``; logs and checkpoints under ``out_dir``."""
    out_dir = Path(out_dir)
    if run.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"run.accelerator={run.accelerator}: no CUDA GPU is visible on this "
                          f"machine; use run.accelerator=cpu (or auto)")
    check_batch_size(module.cfg, run)
    max_steps, extra = run.max_steps, []
    if not module.automatic_optimization:
        if run.accumulate_grad_batches > 1:
            raise ConfigError(f"run.accumulate_grad_batches={run.accumulate_grad_batches}: "
                              f"{type(module).__name__} steps its optimisers itself and cannot "
                              f"accumulate gradients; set run.accumulate_grad_batches=1 (a "
                              f"larger run.batch_size instead)")
        if max_steps != -1:  # Lightning would count every optimiser's steps
            extra.append(StopAfterBatches(max_steps))
            max_steps = -1
    module.augment_seed = run.seed
    said = (run.resolved_precision, run.precision_reason)
    if run.precision == "auto" and not is_rank_nonzero() and said not in _PRECISION_SAID:
        _PRECISION_SAID.add(said)  # once per run (new_run_notices), not once per stage
        print(f"precision: {run.resolved_precision} ({run.precision_reason}; "
              f"run.precision=32-true for float32)", flush=True)
    loggers = [L.pytorch.loggers.CSVLogger(out_dir, name="logs")]
    if run.tensorboard:
        loggers.append(L.pytorch.loggers.TensorBoardLogger(out_dir, name="tensorboard"))
    strategy = run.strategy
    if strategy == "auto" and run.world_size > 1:
        strategy = "ddp"
    if strategy == "ddp" and not module.automatic_optimization:
        # several optimisers stepped one after another: each backward reaches only its part's
        # parameters, which plain DDP's reducer refuses ("finished reduction" error)
        strategy = "ddp_find_unused_parameters_true"
    # SyncBatchNorm exists for GPUs only; CPU DDP keeps per-process batch statistics
    sync_bn = (run.sync_batchnorm and run.world_size > 1 and run.accelerator != "cpu"
               and torch.cuda.is_available())
    with warnings.catch_warnings(), quiet_lightning():
        trainer = L.Trainer(
            default_root_dir=out_dir, max_epochs=run.epochs, max_steps=max_steps,
            accelerator=run.accelerator, devices=run.devices, num_nodes=run.num_nodes,
            strategy=strategy, sync_batchnorm=sync_bn,
            precision=run.resolved_precision, accumulate_grad_batches=run.accumulate_grad_batches,
            # manual optimisation clips per optimiser
            gradient_clip_val=((module.cfg.optim.clip_grad or None)
                               if module.automatic_optimization else None),
            logger=loggers,
            # checkpoints written whole or not at all (a full disk keeps the previous one)
            plugins=[AtomicCheckpointIO()],
            callbacks=[LoaderProgress(), RngState(), SkippedItems(out_dir, run.max_bad_fraction),
                       NonFiniteLoss(out_dir / "checkpoints"), *extra,
                       GracefulInterrupt(out_dir / "checkpoints" / "last.ckpt",
                                         run.accumulate_grad_batches),
                       # one last.ckpt, overwritten (never last-v1.ckpt beside it)
                       L.pytorch.callbacks.ModelCheckpoint(
                dirpath=out_dir / "checkpoints", enable_version_counter=False,
                every_n_train_steps=run.checkpoint_every_n_steps, save_last=True),
                SaveLastAtEnd(out_dir / "checkpoints" / "last.ckpt"),
                *(callbacks or [])],
            enable_progress_bar=run.progress_bar, enable_model_summary=run.model_summary,
            use_distributed_sampler=False,
            log_every_n_steps=1, num_sanity_val_steps=0)
        # our sampler shards by rank itself; a few-batch demo epoch is expected
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*number of training batches.*smaller than.*")
        warnings.filterwarnings("ignore", ".*treespec, LeafSpec.*is deprecated.*")
        # a resumed run writes into its own folder on purpose
        warnings.filterwarnings("ignore", ".*Checkpoint directory .* exists and is not empty.*")
        trainer.fit(module, loader, ckpt_path=resume_from)
    return trainer


@contextmanager
def quiet_lightning(hide_warnings: bool = False):
    """Lightning's start-of-run lines (GPU/TPU availability, the advert tip, "fit stopped")
    are info messages that say nothing about the run: hold its loggers at WARNING while
    training (warnings and errors still show). ``hide_warnings`` (``-q``; a demo or study that
    trains and fine-tunes many small runs): also hold back every library's warnings
    (Lightning's, torch's, the few-loader-workers notice) and Lightning's logged warnings;
    paravox's own warnings and every error still show."""
    names = ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda",
             "lightning.fabric.utilities.rank_zero", "lightning.pytorch", "lightning.fabric")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:  # never lowered: an outer quiet_lightning(hide_warnings) holds
        lg.setLevel(max(logging.ERROR if hide_warnings else logging.WARNING, lg.level))
    try:
        with warnings.catch_warnings():
            if hide_warnings:  # every library's warnings; paravox's own still show
                warnings.filterwarnings("ignore")
                warnings.filterwarnings("default", module="paravox")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
