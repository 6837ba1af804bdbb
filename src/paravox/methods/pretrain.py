"""Run a pretraining method on a manifest with Lightning: data loader, trainer, checkpoints."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader

from paravox.data.augment import WaveAugment
from paravox.data.dataset import EpochSampler, MultiCropDataset, collate_crops
from paravox.data.manifest import Manifest
from paravox.methods.dino import DINOConfig, DINOModule


@dataclass
class RunConfig:
    """Engine settings (Lightning Trainer + data loader)."""

    epochs: int = 10
    batch_size: int = 16
    num_workers: int = 2
    accelerator: str = "auto"
    devices: int = 1
    precision: str = "32-true"  # bf16-mixed / 16-mixed on GPUs
    accumulate_grad_batches: int = 1
    checkpoint_every_n_steps: int = 500
    max_steps: int = -1
    seed: int = 0
    babble_utterances: int = 200  # corpus utterances mixed into babble noise


def crop_loader(manifest: Manifest, cfg: DINOConfig, run: RunConfig) -> DataLoader:
    sources = [manifest.audio_path(r) for r in manifest.rows[:run.babble_utterances]]
    augment = WaveAugment(cfg.augment, babble_sources=sources)
    ds = MultiCropDataset(manifest, cfg.crops, augment, seed=run.seed)
    return DataLoader(ds, batch_size=run.batch_size, sampler=EpochSampler(len(ds), run.seed),
                      num_workers=run.num_workers, collate_fn=collate_crops, drop_last=True,
                      persistent_workers=run.num_workers > 0)


def pretrain_dino(cfg: DINOConfig, manifest_path: str | Path, out_dir: str | Path,
                  run: RunConfig | None = None, resume_from: str | Path | None = None,
                  callbacks: list | None = None) -> tuple[DINOModule, L.Trainer]:
    run = run or RunConfig()
    L.seed_everything(run.seed, workers=True, verbose=False)
    manifest = Manifest.load(manifest_path)
    loader = crop_loader(manifest, cfg, run)
    steps_per_epoch = max(len(loader) // run.accumulate_grad_batches, 1)
    module = DINOModule(cfg, steps_per_epoch, run.epochs)
    out_dir = Path(out_dir)
    trainer = L.Trainer(
        default_root_dir=out_dir, max_epochs=run.epochs, max_steps=run.max_steps,
        accelerator=run.accelerator, devices=run.devices, precision=run.precision,
        accumulate_grad_batches=run.accumulate_grad_batches, gradient_clip_val=cfg.clip_grad,
        logger=[L.pytorch.loggers.CSVLogger(out_dir, name="logs")],
        callbacks=[L.pytorch.callbacks.ModelCheckpoint(
            dirpath=out_dir / "checkpoints", every_n_train_steps=run.checkpoint_every_n_steps,
            save_last=True), *(callbacks or [])],
        use_distributed_sampler=False, log_every_n_steps=1, num_sanity_val_steps=0)
    trainer.fit(module, loader, ckpt_path=resume_from)
    return module, trainer


@dataclass
class DINORecipe:
    """A whole experiment: data, method settings, engine settings, output folder."""

    train_manifest: str = "data/demo/pretrain.jsonl"
    out_dir: str = "runs/dino"
    eval_manifest: str | None = None  # with trials: a quick cosine-EER check at the end
    trials: str | None = None
    resume_from: str | None = None  # a Lightning checkpoint (e.g. <out_dir>/checkpoints/last.ckpt)
    dino: DINOConfig = field(default_factory=DINOConfig)
    run: RunConfig = field(default_factory=RunConfig)


def run_dino_recipe(recipe: DINORecipe) -> dict:
    """Train, save the resolved config beside the run, and report the teacher's quick EER."""
    from paravox.utils.config import save_config

    out = Path(recipe.out_dir)
    save_config(recipe, out / "config.yaml")
    module, trainer = pretrain_dino(recipe.dino, recipe.train_manifest, out, recipe.run,
                                    resume_from=recipe.resume_from)
    result: dict = {"steps": trainer.global_step, "out_dir": str(out)}
    if recipe.eval_manifest and recipe.trials:
        from paravox.evaluation.quick_sv import quick_sv_eer

        result["teacher_eer"] = quick_sv_eer(module.teacher["encoder"], module.fbank,
                                             recipe.eval_manifest, recipe.trials)
    return result
