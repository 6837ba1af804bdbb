"""SimCLR for speech: the contrastive baseline DINO is compared against (Cho et al. 2022).

Two crops of each utterance, each augmented independently, pass the encoder in one batched
call, then a projection MLP; NT-Xent pulls the two views together and pushes the rest of the
(global, all-gathered) batch away. Embeddings for evaluation: the encoder, before the projector.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from paravox.data.crops import CropConfig
from paravox.data.dataset import CropBatch
from paravox.errors import ConfigError
from paravox.models import build_encoder
from paravox.objectives.contrastive import nt_xent
from paravox.training.module import EncoderMethodConfig, OptimConfig, TrainingModule
from paravox.utils.checks import at_least, positive_finite


@dataclass
class SimCLRConfig(EncoderMethodConfig):
    """SimCLR on top of :class:`EncoderMethodConfig`: two 2 s crops (no short ones), AdamW, the
    projection MLP's widths and the NT-Xent temperature."""

    crops: CropConfig = field(default_factory=lambda: CropConfig(
        n_long=2, long_seconds=2.0, n_short=0))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        optimizer="adamw", lr=1e-3, warmup_epochs=1, weight_decay=1e-5, weight_decay_end=1e-5))
    projector_hidden: int = 2048
    projector_dim: int = 256
    temperature: float = 0.1

    def __post_init__(self):
        super().__post_init__()
        positive_finite("simclr.temperature", self.temperature, hint="NT-Xent divides "
                        "cosines by it: 0 or less trains to NaN")
        at_least("simclr.projector_hidden", self.projector_hidden, 1)
        at_least("simclr.projector_dim", self.projector_dim, 1)
        if self.crops.n_long != 2 or self.crops.n_short != 0:
            raise ConfigError(f"simclr.crops: SimCLR contrasts two crops of one length; got "
                              f"n_long={self.crops.n_long}, n_short={self.crops.n_short} (set "
                              f"crops.n_long=2 crops.n_short=0)")

    def min_batch_size(self) -> tuple[int, str]:
        """Two utterances: NT-Xent contrasts each with the batch's other utterances."""
        return 2, "NT-Xent contrasts each utterance with the batch's other ones"


class SimCLRModule(TrainingModule):
    """An encoder + projection MLP trained with NT-Xent on two views per utterance."""

    def __init__(self, cfg: SimCLRConfig, steps_per_epoch: int, max_epochs: int):
        super().__init__(cfg, steps_per_epoch, max_epochs)
        self.encoder = build_encoder(cfg.encoder, n_mels=cfg.features.n_mels,
                                     **cfg.encoder_settings)
        d = self.encoder.embedding_dim
        self.projector = nn.Sequential(
            nn.Linear(d, cfg.projector_hidden), nn.BatchNorm1d(cfg.projector_hidden), nn.ReLU(),
            nn.Linear(cfg.projector_hidden, cfg.projector_dim))

    def trainable(self) -> nn.Module:
        """Encoder and projector, both trained by the contrastive loss."""
        return nn.ModuleList([self.encoder, self.projector])

    def embedding_encoder(self) -> nn.Module:
        """The encoder alone: the projector is discarded (its output transfers worse)."""
        return self.encoder

    def training_step(self, batch: CropBatch, batch_idx: int):
        if not self.log_skipped(batch):
            return None
        views = batch.groups[0]  # [2, B, samples]
        v, b, n = views.shape
        out = self.encoder(self.features(views.reshape(v * b, n), True))
        z = self.projector(out.embedding)
        z1, z2 = z.chunk(2)
        loss = nt_xent(z1, z2, self.cfg.temperature)
        self.log("train/loss", loss, prog_bar=True, batch_size=b)
        self.log("sched/lr", self.lr_at(self.global_step), batch_size=b)
        self.log_embedding_rank(out.unnormalised, b)
        return loss
