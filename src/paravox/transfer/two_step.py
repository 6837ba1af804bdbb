"""Two-step fine-tuning (Lux, Chen, Vu, SLT 2022; code: DigitalPhonetics/BetterFinetuning).

Paralinguistic classes vary a lot within a class, so the labels are first used to *reshape* the
pretrained embedding space, then a small adapter reads the classes off the frozen space:

- **Step 1** (:class:`TwoStepModule`): a projector over the encoder's pooled embedding, trained
  with ``L = L_contrastive(anchor, positive, negative) + w * L_noncontrastive(anchor, positive)``
  on class-balanced batches; anchors and positives are utterances of one class, negatives of
  another. The encoder trains too (or only its top ``train_top_layers`` layers). Input features
  are time-masked (log-mel frames; a wav2vec2-style model masks its own CNN frames).
- **Step 2** (:func:`train_adapter`): the step-1 network is frozen; a bottleneck MLP + classifier
  is trained on its embeddings of the training utterances (clean, plus ``adapter_copies``
  augmented copies each, so that the adapter sees the channel conditions step 1 saw).

Defaults marked *BF* are BetterFinetuning's (its combined pipeline, emotion task): triplet on
cosine distance with margin 1.0 and random negatives, Barlow Twins with off-diagonal weight
5.1e-4 on batch-normalised 64-d projections, ``w = 0.05``, projector 3 x 64 without biases
after dropout 0.5, Adam lr 1e-4 / weight decay 5e-4, batch 32, time masks ``p = 0.2`` of length
2. BetterFinetuning publishes no step-2 code, so the adapter's settings are paravox's.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from paravox.audio.features import FeatureConfig
from paravox.data.augment import AugmentConfig
from paravox.data.balanced import ClassBalancedSampler
from paravox.data.crops import CropConfig
from paravox.data.dataset import CropBatch, ResumableLoader
from paravox.data.labels import label_classes, label_indices, row_label
from paravox.data.manifest import Manifest
from paravox.data.specaugment import time_mask
from paravox.errors import ConfigError
from paravox.inference.bundle import load_bundle_encoder, save_tensors, write_bundle
from paravox.models import build_encoder
from paravox.objectives.redundancy import barlow_twins_loss, byol_regression_loss, vicreg_loss
from paravox.objectives.supcon import supcon_loss
from paravox.objectives.triplet import MinedTripletLoss
from paravox.training.engine import RunConfig, crop_loader, fit, seed_everything
from paravox.training.module import EncoderMethodConfig, OptimConfig, TrainingModule
from paravox.transfer.finetune import FreezeBackbone
from paravox.utils.atomic_files import make_folder, write_text

CONTRASTIVE = ("triplet", "supcon", "none")
NONCONTRASTIVE = ("barlow", "vicreg", "byol", "none")


@dataclass
class TwoStepConfig:
    """Step 1 and step 2 settings (``--set key=value`` on the command line)."""

    # step 1: the losses
    contrastive: str = "triplet"  # triplet | supcon | none
    noncontrastive: str = "barlow"  # barlow | vicreg | byol | none
    weight: float = 0.05  # w on the non-contrastive term (BF)
    margin: float = 1.0  # triplet margin on cosine distance (BF)
    mining: str = "random"  # negatives: random | semihard (BF: random)
    barlow_lambda: float = 5.1e-4  # Barlow Twins off-diagonal weight (BF)
    supcon_temperature: float = 0.1
    # step 1: network and data
    projector_dims: list[int] = field(default_factory=lambda: [64, 64, 64])  # (BF)
    projector_dropout: float = 0.5  # (BF)
    train_top_layers: int = 0  # 0: the whole encoder; k: its top k layers (+ pooling head)
    time_mask_prob: float = 0.2  # (BF)
    time_mask_length: int = 2  # frames (BF)
    augment: bool = True  # paravox's noise/reverb/gain augmentation of the crops (not BF)
    crop_seconds: float = 2.0
    batch_size: int = 32  # (BF)
    per_class: int = 4  # utterances per class in a batch
    epochs: int = 4
    lr: float = 1e-4  # Adam (BF)
    weight_decay: float = 5e-4  # (BF, emotion)
    # step 2: the adapter on the frozen step-1 space (paravox's; BF publishes none)
    adapter_bottleneck: int = 32
    adapter_dropout: float = 0.2
    adapter_epochs: int = 60
    adapter_lr: float = 2e-3
    adapter_copies: int = 2  # augmented copies of each training utterance for step 2
    num_workers: int = 1
    seed: int = 0

    def check(self) -> None:
        """Raise :class:`~paravox.errors.ConfigError` for an unknown loss or mining choice, or
        for no step-1 loss at all; the entry points call it first, so that a typo fails before
        any audio is read or trained on."""
        if self.contrastive not in CONTRASTIVE:
            raise ConfigError(f"two-step contrastive='{self.contrastive}': choose one of "
                              f"{CONTRASTIVE}")
        if self.noncontrastive not in NONCONTRASTIVE:
            raise ConfigError(f"two-step noncontrastive='{self.noncontrastive}': choose one "
                              f"of {NONCONTRASTIVE}")
        if self.contrastive == "none" and self.noncontrastive == "none":
            raise ConfigError("two-step: contrastive and noncontrastive are both 'none'; "
                              "step 1 needs at least one loss")
        if self.mining not in ("random", "semihard"):
            raise ConfigError(f"two-step mining='{self.mining}': choose 'random' or 'semihard'")


def pair_indices(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint (anchor, positive) pairs: consecutive utterances of the same class, in batch
    order (an odd one out per class is left unpaired)."""
    anchors, positives = [], []
    for c in torch.unique(labels):
        idx = torch.nonzero(labels == c).flatten()
        n = len(idx) // 2 * 2
        anchors.append(idx[0:n:2])
        positives.append(idx[1:n:2])
    return torch.cat(anchors), torch.cat(positives)


class TwoStepModule(TrainingModule):
    """Step 1. ``encoder`` is a ``projected`` encoder (base encoder + projector): its output
    is the space the losses shape and the adapter later reads."""

    def __init__(self, cfg: EncoderMethodConfig, two_step: TwoStepConfig, steps_per_epoch: int,
                 max_epochs: int, task: str, classes: list[str]):
        super().__init__(cfg, steps_per_epoch, max_epochs)
        two_step.check()
        self.two_step, self.task = two_step, task
        self.classes = list(classes)
        self.class_index = {c: i for i, c in enumerate(self.classes)}
        self.encoder = build_encoder(cfg.encoder, n_mels=cfg.features.n_mels,
                                     **cfg.encoder_settings)
        self.triplet = MinedTripletLoss(two_step.margin, two_step.mining)
        set_trainable_layers(self.encoder, two_step.train_top_layers)

    def trainable(self) -> nn.Module:
        """The projected encoder (frozen layers per ``train_top_layers`` get no updates)."""
        return self.encoder

    def embedding_encoder(self) -> nn.Module:
        """The projected encoder: its output, the reshaped space, is what step 2 reads."""
        return self.encoder

    def labels(self, batch: CropBatch) -> torch.Tensor:
        """Class indices ``[B]`` of the batch's ``task`` labels, on the module's device."""
        return label_indices(batch.rows, self.task, self.class_index, self.device)

    def losses(self, z: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """The contrastive and non-contrastive terms on projections ``z`` of one batch."""
        t = self.two_step
        out = {}
        if t.contrastive == "triplet":
            out["contrastive"] = self.triplet(z, labels, self._next_mask_generator())
        elif t.contrastive == "supcon":
            out["contrastive"] = supcon_loss(z, labels, t.supcon_temperature)
        if t.noncontrastive != "none":
            a, p = pair_indices(labels)
            za, zp = z[a], z[p]
            if t.noncontrastive == "barlow":
                out["noncontrastive"] = barlow_twins_loss(za, zp, t.barlow_lambda)
            elif t.noncontrastive == "vicreg":
                out["noncontrastive"] = vicreg_loss(za, zp)
            else:  # symmetric regression of each view onto the other (stop-gradient target)
                out["noncontrastive"] = 0.5 * (byol_regression_loss(za, zp)
                                               + byol_regression_loss(zp, za))
        return out

    def total(self, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        """``contrastive + w * noncontrastive``; a non-contrastive loss alone is not weighted."""
        if "contrastive" not in parts:
            return parts["noncontrastive"]
        return parts["contrastive"] + self.two_step.weight * parts.get("noncontrastive", 0.0)

    def training_step(self, batch: CropBatch, batch_idx: int):
        if not self.log_skipped(batch):
            return None
        waves = batch.groups[0][0]  # one crop per utterance: [B, samples]
        feats, _ = self.fbank(waves)
        t = self.two_step
        if self.cfg.features.kind == "logmel":  # waveform models mask their own CNN frames
            feats = time_mask(feats, t.time_mask_prob, t.time_mask_length,
                              self._next_mask_generator())
        z = self.encoder(feats).embedding
        parts = self.losses(z, self.labels(batch))
        loss = self.total(parts)
        b = len(waves)
        for name, value in parts.items():
            self.log(f"train/{name}", value, batch_size=b)
        self.log("train/loss", loss, prog_bar=True, batch_size=b)
        self.log("sched/lr", self.lr_at(self.global_step), batch_size=b)
        return loss

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["classes"] = self.classes


def set_trainable_layers(encoder, top_layers: int) -> None:
    """``0``: everything trains; ``k``: the top ``k`` layer groups of ``encoder.layer_groups()``
    plus its head (the last group), the rest frozen."""
    if top_layers < 0:
        raise ConfigError(f"train_top_layers={top_layers} must be >= 0")
    groups = encoder.layer_groups()
    if top_layers == 0 or top_layers >= len(groups) - 1:
        prefixes = None
    else:
        prefixes = tuple(p for g in groups[-(top_layers + 1):] for p in g)
    for name, p in encoder.named_parameters():
        p.requires_grad_(prefixes is None or name.startswith(prefixes))


def balanced_loader(manifest: Manifest, task: str, cfg: EncoderMethodConfig,
                    two_step: TwoStepConfig, run: RunConfig) -> ResumableLoader:
    """Class-balanced batches of single augmented crops."""
    labels = [row_label(r, task) for r in manifest]
    sampler = ClassBalancedSampler(labels, run.batch_size, two_step.per_class, run.seed)
    return crop_loader(manifest, cfg, run, sampler=sampler)


def step1_method_config(bundle_config: dict, cfg: TwoStepConfig) -> EncoderMethodConfig:
    """Front end and encoder from the bundle (+ the projector), crops, augmentation, Adam."""
    known = {f.name for f in dataclasses.fields(FeatureConfig)}
    features = FeatureConfig(**{k: v for k, v in bundle_config["features"].items()
                                if k in known})
    augment = AugmentConfig() if cfg.augment else AugmentConfig(
        noise_prob=0.0, reverb_prob=0.0, speed_prob=0.0, gain_prob=0.0)
    base_settings = dict(bundle_config["encoder_settings"])
    if bundle_config["encoder"] == "hf":  # time masks on the model's CNN frames, as in BF
        base_settings.update(mask_time_prob=cfg.time_mask_prob,
                             mask_time_length=cfg.time_mask_length)
    return EncoderMethodConfig(
        encoder="projected",
        encoder_settings={"base": bundle_config["encoder"], "base_settings": base_settings,
                          "dims": [int(d) for d in cfg.projector_dims],
                          "dropout": cfg.projector_dropout},
        features=features, crops=CropConfig(n_long=1, long_seconds=cfg.crop_seconds,
                                            n_short=0),
        augment=augment,
        optim=OptimConfig(optimizer="adamw", lr=cfg.lr, min_lr=cfg.lr, warmup_epochs=0,
                          weight_decay=cfg.weight_decay, weight_decay_end=cfg.weight_decay))


def train_step1(bundle: str | Path, train_manifest: str | Path, task: str,
                cfg: TwoStepConfig, out_dir: str | Path, progress: bool = False
                ) -> TwoStepModule:
    """Step 1 from a bundle's encoder; logs and checkpoints in ``out_dir``."""
    cfg.check()
    encoder, _, bundle_config = load_bundle_encoder(bundle)
    manifest = Manifest.load(train_manifest)
    method = step1_method_config(bundle_config, cfg)
    run = RunConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                    seed=cfg.seed, tensorboard=False, progress_bar=progress,
                    checkpoint_every_n_steps=10**9)
    seed_everything(cfg.seed)
    loader = balanced_loader(manifest, task, method, cfg, run)
    if len(loader) == 0:
        raise ConfigError(f"{train_manifest}: {len(manifest)} utterances give no full batch of "
                          f"batch_size={cfg.batch_size}; lower it")
    module = TwoStepModule(method, cfg, len(loader), cfg.epochs, task,
                           label_classes(manifest, task))
    module.encoder.base.load_state_dict(encoder.state_dict())  # (trainable layers are set)
    fit(module, loader, out_dir, run,
        callbacks=[FreezeBackbone()] if cfg.train_top_layers else [])
    return module.eval()


def export_step1(module: TwoStepModule, bundle_config: dict, out: str | Path,
                 source: dict) -> Path:
    """The step-1 network (encoder + projector) as a bundle: its embeddings are the
    reshaped space that the adapter reads."""
    state = {k: v.detach().cpu() for k, v in module.encoder.state_dict().items()}
    return write_bundle(state, "projected", dict(module.cfg.encoder_settings),
                        dataclasses.asdict(module.cfg.features), out,
                        {"method": "two-step", "task": module.task,
                         "classes": module.classes, **source})


# -- step 2 ---------------------------------------------------------------------------------

class Adapter(nn.Module):
    """Bottleneck MLP + linear classifier over frozen embeddings."""

    def __init__(self, dim: int, n_classes: int, bottleneck: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, bottleneck), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(bottleneck, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def train_adapter(x: np.ndarray, y: np.ndarray, n_classes: int, cfg: TwoStepConfig
                  ) -> tuple[Adapter, dict]:
    """Fit the adapter on embeddings ``x`` (standardised with the training statistics, kept in
    the returned ``scaler``) with cross-entropy, minibatches of ``cfg.batch_size``."""
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    mean, std = x.mean(0), x.std(0) + 1e-6
    xt = torch.from_numpy(((x - mean) / std).astype(np.float32))
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    net = Adapter(x.shape[1], n_classes, cfg.adapter_bottleneck, cfg.adapter_dropout)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.adapter_lr, weight_decay=1e-4)
    net.train()
    for _ in range(cfg.adapter_epochs):
        order = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            loss = F.cross_entropy(net(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval(), {"mean": mean, "std": std}


def adapter_probabilities(net: Adapter, scaler: dict, x: np.ndarray) -> np.ndarray:
    """Class posteriors ``[N, classes]`` of embeddings ``x``, standardised with the training
    ``scaler`` as :func:`train_adapter` did."""
    with torch.no_grad():
        xt = torch.from_numpy(((x - scaler["mean"]) / scaler["std"]).astype(np.float32))
        return torch.softmax(net(xt), -1).numpy()


def save_adapter(net: Adapter, scaler: dict, classes: list[str], cfg: TwoStepConfig,
                 out: str | Path) -> Path:
    """``adapter.safetensors`` (weights + standardisation) and ``adapter.json`` (classes)."""
    out = Path(out)
    make_folder(out)
    state = {f"net.{k}": v.contiguous() for k, v in net.state_dict().items()}
    state["scaler.mean"] = torch.from_numpy(np.asarray(scaler["mean"], dtype=np.float32))
    state["scaler.std"] = torch.from_numpy(np.asarray(scaler["std"], dtype=np.float32))
    save_tensors(state, out / "adapter.safetensors")  # group-readable like the bundle
    write_text(out / "adapter.json", json.dumps({
        "classes": classes, "bottleneck": cfg.adapter_bottleneck,
        "dropout": cfg.adapter_dropout}, indent=2) + "\n")
    return out


def load_adapter(folder: str | Path) -> tuple[Adapter, dict, list[str]]:
    """The adapter, its scaler and its classes as :func:`save_adapter` wrote them in
    ``folder`` (in eval mode, ready for :func:`adapter_probabilities`)."""
    folder = Path(folder)
    for f in ("adapter.json", "adapter.safetensors"):
        if not (folder / f).is_file():
            raise ConfigError(f"{folder / f} not found: is {folder} the output of `paravox "
                              f"finetune two-step`?")
    meta = json.loads((folder / "adapter.json").read_text())
    state = load_file(folder / "adapter.safetensors")
    dim = state["scaler.mean"].shape[0]
    net = Adapter(dim, len(meta["classes"]), meta["bottleneck"], meta["dropout"])
    net.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")})
    scaler = {"mean": state["scaler.mean"].numpy(), "std": state["scaler.std"].numpy()}
    return net.eval(), scaler, meta["classes"]
