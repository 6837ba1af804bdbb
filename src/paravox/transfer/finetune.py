"""Fine-tuning a pretrained encoder (from a bundle) for utterance classification.

Protocols (Cho et al. 2022 find the staged one best): ``full`` trains the whole network at
once; ``staged`` first trains only the last affine layers (the encoder's embedding layer
``embed``/``embed_norm`` + a new classifier) with the backbone frozen - its batch-norm
statistics included - then the whole network at a lower learning rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch import nn

from paravox.audio.io import load_audio
from paravox.data.labels import label_classes, labels_of, require_rows
from paravox.data.manifest import Manifest
from paravox.errors import ConfigError
from paravox.evaluation.classify import (
    ClassificationResult,
    report_with_interval,
    speaker_level,
)
from paravox.inference.batching import WINDOW_ROWS, padded_features, wave_batches
from paravox.inference.bundle import load_bundle_encoder
from paravox.methods.supervised import SupervisedConfig, SupervisedModule
from paravox.training.engine import (
    RunConfig,
    crop_loader,
    fit,
    new_run_notices,
    seed_everything,
    steps_per_epoch,
)
from paravox.utils.config import build_config

EMBEDDING_LAYERS = ("embed.", "embed_norm.")


@dataclass
class FineTuneConfig:
    """Settings of :func:`finetune`: the training crop, whether waveform and SpecAugment
    augmentation are on, epochs and learning rate of each stage (``full`` runs stage 2
    only), batch size, loader workers, the seed and where it trains (``accelerator``, set
    from ``paravox evaluate classify --device``)."""

    crop_seconds: float = 2.0  # training crop length
    augment: bool = True
    stage1_epochs: int = 2  # staged: embedding layer + classifier only
    stage1_lr: float = 2e-3
    stage2_epochs: int = 2  # staged: everything, lower lr; full: the only stage
    stage2_lr: float = 2e-4
    batch_size: int = 32
    num_workers: int = 1
    seed: int = 0
    accelerator: str = "auto"  # cpu | gpu | auto (a visible GPU if any)


class FreezeBackbone(L.Callback):
    """Keeps frozen encoder layers in eval mode (no batch-norm statistics updates)."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        for mod in pl_module.encoder.modules():
            params = list(mod.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                mod.eval()


def set_stage(module: SupervisedModule, stage: str) -> None:
    """``embedding``: only the embedding layer (+ head, classifier) trains; ``all``: everything."""
    for name, p in module.encoder.named_parameters():
        p.requires_grad_(stage == "all" or name.startswith(EMBEDDING_LAYERS))


def finetune(bundle: str | Path, train_manifest: str | Path, task: str, protocol: str,
             cfg: FineTuneConfig, out_dir: str | Path, progress: bool = False
             ) -> SupervisedModule:
    """Fine-tune the bundle's encoder with a new softmax classifier over ``task``'s
    training classes, under ``protocol`` (``full`` or ``staged``; see the module docstring).
    Each stage's run (logs, checkpoints) goes under ``out_dir``; returns the module, fully
    unfrozen, in eval mode."""
    if protocol not in ("full", "staged"):
        raise ConfigError(f"fine-tuning protocol '{protocol}': choose 'full' or 'staged'")
    encoder, _, config = load_bundle_encoder(bundle)
    manifest = Manifest.load(train_manifest)
    no_augment = [] if cfg.augment else [
        "augment.speed_prob=0.0", "augment.reverb_prob=0.0", "augment.noise_prob=0.0",
        "augment.gain_prob=0.0", "specaugment.prob=0.0"]
    sup = build_config(SupervisedConfig, overrides=[
        f"encoder={config['encoder']}", "loss=softmax", "head_layers=0", f"label={task}",
        f"crops.long_seconds={cfg.crop_seconds}", "optim.optimizer=adamw",
        "optim.warmup_epochs=0", "optim.weight_decay=1e-4", "optim.weight_decay_end=1e-4",
        *no_augment])
    sup.encoder_settings = dict(config["encoder_settings"])
    stages = ([("embedding", cfg.stage1_epochs, cfg.stage1_lr)] if protocol == "staged" else [])
    stages.append(("all", cfg.stage2_epochs, cfg.stage2_lr))
    if not any(epochs > 0 for _, epochs, _ in stages):
        raise ConfigError(f"fine-tuning '{protocol}': every stage has 0 epochs; set "
                          f"stage1_epochs / stage2_epochs >= 1")
    seed_everything(cfg.seed)
    new_run_notices()  # each fine-tuning says its precision once, for all its stages
    module = None
    for i, (stage, epochs, lr) in enumerate(stages):
        if epochs <= 0:  # a stage switched off (e.g. staged with stage2_epochs=0)
            continue
        sup.optim.lr = lr
        run = RunConfig(epochs=epochs, batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                        seed=cfg.seed + i, tensorboard=False, progress_bar=progress,
                        checkpoint_every_n_steps=10**9, accelerator=cfg.accelerator)
        steps = steps_per_epoch(len(manifest), run)
        if module is None:
            module = SupervisedModule(sup, steps, epochs, label_classes(manifest, task))
            module.encoder.load_state_dict(encoder.state_dict())
        module.steps_per_epoch, module.max_epochs = steps, epochs
        set_stage(module, stage)
        callbacks = [FreezeBackbone()] if stage == "embedding" else []
        fit(module, crop_loader(manifest, sup, run), Path(out_dir) / f"stage{i + 1}_{stage}",
            run, callbacks=callbacks)
    set_stage(module, "all")
    return module.eval()


def classifier_network(module: SupervisedModule) -> nn.Module:
    """Features -> class scores, for prediction."""

    class _Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder, self.head, self.classifier = (module.encoder, module.head,
                                                        module.classifier)

        def forward(self, feats, lengths=None):
            return self.classifier.linear(self.head(self.encoder(feats, lengths).embedding))

    return _Net().eval()


@torch.no_grad()
def predict_proba(net: nn.Module, fbank: nn.Module, waves: list[np.ndarray],
                  chunk_seconds: float | None = None, batch: bool = True) -> np.ndarray:
    """``[N, K]`` class posteriors of ``net`` (features -> class scores): per whole wave, or
    averaged over each wave's ``chunk_seconds`` chunks. Whole waves go through in padded
    batches of similar length when ``batch`` and the encoder pads exactly (``pads_exactly``:
    the same posteriors as one forward each, to float rounding), else one at a time."""
    device = next(net.parameters()).device
    if chunk_seconds is None and batch and getattr(net.encoder, "pads_exactly", False):
        proba = np.zeros((len(waves), net.classifier.linear.out_features), dtype=np.float32)
        for idx in wave_batches(fbank, waves):
            feats, lengths = padded_features(fbank, [waves[i] for i in idx], device)
            proba[idx] = torch.softmax(net(feats, lengths).float(), -1).cpu().numpy()
        return proba
    out = []
    for wave in waves:
        n = int(chunk_seconds * fbank.cfg.sample_rate) if chunk_seconds else len(wave)
        chunks = [wave[i:i + n] for i in range(0, max(len(wave) - n, 0) + 1, n)]
        logits = net(fbank(torch.from_numpy(np.stack(chunks)).to(device))[0])
        out.append(torch.softmax(logits.float(), -1).mean(0).cpu().numpy())
    return np.stack(out)


def evaluate_finetuned(bundle: str | Path, train_manifest: str | Path,
                       test_manifest: str | Path, task: str, protocol: str, cfg=None,
                       out_dir: str | Path = "runs/finetune", chunk_seconds: float | None = None,
                       progress: bool = False) -> ClassificationResult:
    """Fine-tune (``full`` or ``staged``) on the training split; score whole test utterances
    (or chunks, averaged posteriors)."""
    cfg = cfg or FineTuneConfig()
    test_m = require_rows(Manifest.load(test_manifest), "test")
    labels = labels_of(test_m, task)  # fail before training
    unseen = set(labels) - set(label_classes(Manifest.load(train_manifest), task))
    if unseen:
        raise ConfigError(f"task '{task}': test labels {sorted(unseen)} never occur in training")
    module = finetune(bundle, train_manifest, task, protocol, cfg,
                      Path(out_dir) / f"{task}_{protocol}", progress)
    net, fbank, rows = classifier_network(module), module.fbank.eval(), list(test_m)
    proba = np.concatenate([  # a window of rows in memory at a time
        predict_proba(net, fbank, [load_audio(test_m.audio_path(r), r.offset, r.duration)
                                   for r in rows[i:i + WINDOW_ROWS]], chunk_seconds)
        for i in range(0, len(rows), WINDOW_ROWS)])
    index = {c: i for i, c in enumerate(module.classes)}
    y = np.array([index[c] for c in labels])
    k = len(module.classes)
    n_train = len(Manifest.load(train_manifest))
    return ClassificationResult(task, protocol, module.classes,
                                report_with_interval(y, proba.argmax(1), k, test_m.rows),
                                speaker_level(test_m.rows, proba, y, k), n_train, len(y))
