"""The supervised baseline: an encoder trained to classify speakers (or any manifest label).

x-vector style (Snyder et al. 2018): the embedding is the first segment-level affine layer
(inside the encoder); the head adds the second affine layer (``head_layers=1``) before the
classifier, which is a softmax or an additive angular margin softmax (margin warmed up).
For ECAPA-style training use ``head_layers=0`` (AAM directly on the embedding).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from paravox.data.crops import CropConfig
from paravox.data.dataset import CropBatch
from paravox.data.labels import label_classes, label_indices
from paravox.data.manifest import Manifest
from paravox.errors import ConfigError
from paravox.models import build_encoder
from paravox.objectives.margin import AAMSoftmax, SoftmaxClassifier
from paravox.training.module import EncoderMethodConfig, OptimConfig, TrainingModule
from paravox.utils.checks import at_least, between, finite, one_of, positive_finite
from paravox.utils.schedules import linear_warmup

LOSSES = ("softmax", "aam")
MAX_MARGIN = 1.0  # radians; AAM margins in use are 0.1 - 0.5


@dataclass
class SupervisedConfig(EncoderMethodConfig):
    """The supervised baseline on top of :class:`EncoderMethodConfig`: an x-vector encoder, one 2 s
    crop per utterance, AdamW, which label to classify, the classifier's loss (margin, scale
    and margin warm-up for AAM) and the affine layers between embedding and classifier."""

    encoder: str = "xvector"
    encoder_settings: dict = field(default_factory=dict)
    crops: CropConfig = field(default_factory=lambda: CropConfig(
        n_long=1, long_seconds=2.0, n_short=0))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        optimizer="adamw", lr=1e-3, warmup_epochs=1, weight_decay=1e-4, weight_decay_end=1e-4))
    label: str = "speaker"  # a manifest field (speaker, language) or a key of row.labels
    loss: str = "aam"  # softmax | aam
    margin: float = 0.2
    scale: float = 30.0
    margin_warmup_epochs: int = 1  # margin 0 -> margin over these epochs
    head_layers: int = 1  # affine layers after the embedding (x-vector: 1)

    def __post_init__(self):
        super().__post_init__()
        one_of("supervised.loss", self.loss, LOSSES)
        finite("supervised.margin", self.margin)
        between("supervised.margin", self.margin, 0.0, MAX_MARGIN, "radians added to the "
                "target angle; 0 = a plain cosine softmax")
        positive_finite("supervised.scale", self.scale, hint="the logits are cosines times it")
        at_least("supervised.margin_warmup_epochs", self.margin_warmup_epochs, 0)
        at_least("supervised.head_layers", self.head_layers, 0)
        if self.crops.n_short:
            raise ConfigError("supervised.crops: one crop per utterance (set crops.n_short=0)")

    def min_batch_size(self) -> tuple[int, str]:
        """Two crops in all: batch normalisation (encoder embedding, head) needs more than
        one row in training."""
        if self.crops.n_long < 2:
            return 2, "batch normalisation needs more than one crop per batch"
        return 1, ""


class SupervisedModule(TrainingModule):
    """An encoder + affine head + (AAM-)softmax classifier over the classes of one label."""

    @classmethod
    def from_recipe(cls, cfg: SupervisedConfig, manifest: Manifest, steps_per_epoch: int,
                    max_epochs: int) -> SupervisedModule:
        """The classes are those of ``cfg.label`` in the training manifest."""
        return cls(cfg, steps_per_epoch, max_epochs, label_classes(manifest, cfg.label))

    def __init__(self, cfg: SupervisedConfig, steps_per_epoch: int, max_epochs: int,
                 classes: list[str]):
        super().__init__(cfg, steps_per_epoch, max_epochs)
        self.classes = list(classes)
        self.class_index = {c: i for i, c in enumerate(self.classes)}
        self.encoder = build_encoder(cfg.encoder, n_mels=cfg.features.n_mels,
                                     **cfg.encoder_settings)
        d = self.encoder.embedding_dim
        layers: list[nn.Module] = []
        for _ in range(cfg.head_layers):
            layers += [nn.ReLU(), nn.BatchNorm1d(d), nn.Linear(d, d)]
        if cfg.head_layers:
            layers += [nn.ReLU(), nn.BatchNorm1d(d)]
        self.head = nn.Sequential(*layers)
        n = len(self.classes)
        self.classifier = (AAMSoftmax(d, n, cfg.margin, cfg.scale) if cfg.loss == "aam"
                           else SoftmaxClassifier(d, n))

    def trainable(self) -> nn.Module:
        """Encoder, head and classifier, all trained by the classification loss."""
        return nn.ModuleList([self.encoder, self.head, self.classifier])

    def embedding_encoder(self) -> nn.Module:
        """The encoder alone: head and classifier are tied to the training classes."""
        return self.encoder

    def margin_at(self, epoch: int) -> float:
        """AAM margin at ``epoch``: 0 rising linearly to ``margin`` over
        ``margin_warmup_epochs`` (a full margin from the start slows convergence)."""
        return linear_warmup(epoch, self.cfg.margin_warmup_epochs, 0.0, self.cfg.margin)

    def labels(self, batch: CropBatch) -> torch.Tensor:
        """Class indices ``[B]`` of the batch's ``cfg.label``, on the module's device."""
        return label_indices(batch.rows, self.cfg.label, self.class_index, self.device)

    def training_step(self, batch: CropBatch, batch_idx: int):
        if not self.log_skipped(batch):
            return None
        if isinstance(self.classifier, AAMSoftmax):
            self.classifier.margin = self.margin_at(self.current_epoch)
        crops = batch.groups[0]  # [n_long, B, samples]
        v, b, n = crops.shape
        out = self.encoder(self.features(crops.reshape(v * b, n), True))
        emb = out.embedding
        labels = self.labels(batch).repeat(v)
        loss, logits = self.classifier(self.head(emb), labels)
        accuracy = (logits.argmax(-1) == labels).float().mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=b)
        self.log("train/accuracy", accuracy, prog_bar=True, batch_size=b)
        self.log("sched/lr", self.lr_at(self.global_step), batch_size=b)
        self.log_embedding_rank(out.unnormalised, b)
        return loss

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["classes"] = self.classes
