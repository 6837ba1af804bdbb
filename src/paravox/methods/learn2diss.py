"""Learn2Diss: disentangled frame-level and utterance-level SSL (Krishna and Ganapathy 2024,
"Towards the next frontier in speech representation learning using disentanglement",
arXiv:2407.02543).

Two encoders, one :class:`~paravox.models.dual.DualEncoder`:

- the **frame encoder** (default the ``transformer`` over log-mel frames) learns by masked
  prediction of discrete hidden units, as HuBERT does: k-means over frame features gives each
  frame a cluster id; spans of frames are hidden and a linear head predicts the hidden frames'
  ids (cross-entropy on masked frames only). The codebook is fitted on the first step of a run
  on ``cluster_utterances`` training utterances, over log-mel frames (``cluster_source:
  logmel``, HuBERT's first iteration) or over a layer of the frame encoder as the run starts
  (``cluster_source: frame_layer``, HuBERT's later iterations: a stage that starts from the
  previous stage's encoder re-clusters its features);
- the **utterance encoder** (default ECAPA-TDNN) learns by contrasting the pooled embeddings
  of two crops of one utterance against the batch's other utterances (NT-Xent, as SimCLR);
- a **mutual-information penalty** couples them: CLUB (:mod:`paravox.objectives.club`)
  estimates an upper bound on the MI between the frame encoder's representation and the
  utterance embedding; its variational network ``q`` is trained by its own optimiser to fit
  ``q(utterance | frame)`` (``q_steps`` updates per batch), and the encoders minimise
  ``mi_weight`` times the estimate, so that what one encodes the other does not.

With the ``hf`` frame encoder (wav2vec 2.0 / HuBERT / WavLM from a local checkpoint,
``features.kind: waveform``) the spans are drawn on the model's 20 ms CNN frames and hidden by
its own mask embedding; ``cluster_source: logmel`` clusters log-mel frames of the same waves
averaged onto those frames, and ``cluster_source: start_layer`` clusters layer
``cluster_layer`` of a frozen copy of the frame encoder as the stage starts (HuBERT's second
iteration: the targets come from the starting checkpoint and stay fixed while the encoder
learns), where ``frame_layer`` reads the encoder as it trains. The utterance encoder then
reads the frame encoder's weighted layers (``utterance_input: frames``).

Stage 1 (``mi_weight: 0``) trains the two independently (``q`` is still fitted, to monitor
the MI); stage 2 continues both with the penalty on.

Two guards keep the penalty an upper bound the encoders cannot game: ``q`` takes ``q_steps``
(default 5) updates per encoder step, and the penalty is ``max(estimate, 0)``
(``mi_clamp``). Without them, measured on the demo corpus (weight 0.1, one q step), the
encoders outran ``q`` within 15 steps of stage 2: the estimate went from +80 to -110 nats (a
mutual information cannot be negative: ``q`` no longer fitted), ``q``'s log-likelihood fell
from -235 to -560, and the penalty, not the two tasks, drove the encoders. Only the abstract
could be read; the
choices here (the MI between the frame encoder's mean-pooled layer and the utterance
embedding, both standardised; HuBERT-style k-means targets; the weights) are paravox's, each a
setting (docs/training.md, "Learn2Diss").
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from paravox.audio.features import LogMelFilterbank
from paravox.audio.io import load_audio
from paravox.data.crops import CropConfig
from paravox.data.dataset import CropBatch
from paravox.data.specaugment import draw_span_mask
from paravox.errors import AudioError, ConfigError
from paravox.models.base import check_front_end, pool_onto
from paravox.models.bundle_format import load_weights, read_bundle
from paravox.models.codebook import KMeansCodebook
from paravox.models.dual import DualConfig, DualEncoder
from paravox.models.hf import check_hf_source
from paravox.objectives.club import CLUB
from paravox.objectives.contrastive import nt_xent
from paravox.objectives.unit_prediction import masked_cluster_loss
from paravox.training.module import EncoderExport, MethodConfig, OptimConfig, TrainingModule
from paravox.utils.checks import at_least, finite, positive_finite

CLUSTER_SOURCES = ("logmel", "frame_layer", "start_layer")
MI_INPUTS = ("pooled", "frames")
MI_TARGETS = ("both", "frame", "utterance")


@dataclass
class Learn2DissConfig(MethodConfig):
    """Learn2Diss on top of :class:`MethodConfig`: its two encoders (``frame_encoder``,
    ``utterance_encoder``, each with its settings and an optional starting bundle) and each
    loss term's settings."""

    frame_encoder: str = "transformer"
    # empty: the encoder's own defaults (the transformer's: width 192, 4 layers); not filled
    # in here, or they would merge into the settings of a recipe with another encoder
    frame_encoder_settings: dict = field(default_factory=dict)
    utterance_encoder: str = "ecapa"
    utterance_encoder_settings: dict = field(default_factory=lambda: {"channels": 256})
    utterance_input: str = "logmel"  # logmel | frames (the frame encoder's layers, detached)
    # start an encoder from a paravox bundle (`paravox export`) of the same architecture
    frame_init: str | None = None
    utterance_init: str | None = None
    crops: CropConfig = field(default_factory=lambda: CropConfig(
        n_long=2, long_seconds=2.0, n_short=0))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        optimizer="adamw", lr=1e-3, min_lr=1e-5, warmup_epochs=1, weight_decay=1e-2,
        weight_decay_end=1e-2, clip_grad=3.0))
    # frame level: HuBERT-style masked prediction of k-means units
    frame_weight: float = 1.0
    n_clusters: int = 50
    # logmel | frame_layer (the encoder as it trains) | start_layer (a frozen copy of the
    # encoder as the stage starts: fixed targets from the starting checkpoint)
    cluster_source: str = "logmel"
    cluster_layer: int = -1  # the frame encoder layer clustered (frame_layer, start_layer)
    cluster_utterances: int = 200
    cluster_iters: int = 30
    mask_prob: float = 0.08  # HuBERT: p = 0.08, spans of 10 frames (~50 % of frames hidden)
    mask_span: int = 10
    predict_layer: int = -1  # the frame encoder layer the unit classifier reads
    # utterance level: NT-Xent on pooled embeddings of two crops
    utterance_weight: float = 1.0
    projector_hidden: int = 512
    projector_dim: int = 128
    utterance_temperature: float = 0.1
    # disentanglement: CLUB between the frame representation and the utterance embedding
    mi_weight: float = 0.0  # 0: independent training (q still fitted, the MI still logged)
    mi_input: str = "pooled"  # pooled (mean over frames) | frames (every frame vs utterance)
    mi_layer: int = -1  # the frame encoder layer compared
    mi_to: str = "both"  # which encoder(s) the penalty's gradient reaches
    club_hidden: int = 256
    club_sampled: bool = True
    q_steps: int = 5  # q updates per encoder step: q must keep up with the moving encoders
    mi_clamp: bool = True  # penalise max(estimate, 0) (see the module docstring)
    club_optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        optimizer="adamw", lr=1e-3, min_lr=1e-3, warmup_epochs=0, weight_decay=0.0,
        weight_decay_end=0.0))

    def __post_init__(self):
        super().__post_init__()
        _check(self)

    def min_batch_size(self) -> tuple[int, str]:
        """Two utterances when the utterance encoder trains (NT-Xent across the batch)."""
        if self.utterance_weight:
            return 2, "the utterance encoder's NT-Xent contrasts each utterance with the others"
        return 1, ""

    def dual_settings(self) -> dict:
        """The :class:`DualConfig` settings of the exported two-output encoder."""
        return {"frame": self.frame_encoder, "frame_settings": dict(self.frame_encoder_settings),
                "utterance": self.utterance_encoder,
                "utterance_settings": dict(self.utterance_encoder_settings),
                "utterance_input": self.utterance_input}

    def exports(self) -> dict[str, EncoderExport]:
        """``both`` (the dual encoder: utterance embedding + frame layers), ``frame`` and,
        when the utterance encoder reads log-mel on its own, ``utterance``."""
        out = {"both": EncoderExport("dual.", "dual", self.dual_settings()),
               "frame": EncoderExport("dual.frame.", self.frame_encoder,
                                      dict(self.frame_encoder_settings))}
        if self.utterance_input == "logmel":  # with 'frames' it needs the frame encoder
            out["utterance"] = EncoderExport("dual.utterance.", self.utterance_encoder,
                                             dict(self.utterance_encoder_settings))
        return out


def _check(cfg: Learn2DissConfig) -> None:
    """Every setting in range, each error naming its key (called when the config is built)."""
    for key, allowed in (("cluster_source", CLUSTER_SOURCES), ("mi_input", MI_INPUTS),
                         ("mi_to", MI_TARGETS)):
        if getattr(cfg, key) not in allowed:
            raise ConfigError(f"learn2diss.{key}='{getattr(cfg, key)}': choose one of "
                              f"{allowed}")
    for key in ("frame_weight", "utterance_weight", "mi_weight"):
        finite(f"learn2diss.{key}", getattr(cfg, key))
        at_least(f"learn2diss.{key}", getattr(cfg, key), 0.0)
    if not (cfg.frame_weight or cfg.utterance_weight):
        raise ConfigError("learn2diss: frame_weight and utterance_weight are both 0")
    for key in ("n_clusters", "cluster_utterances", "cluster_iters", "mask_span", "q_steps",
                "club_hidden", "projector_hidden", "projector_dim"):
        at_least(f"learn2diss.{key}", getattr(cfg, key), 1)
    positive_finite("learn2diss.mask_prob", cfg.mask_prob, 1.0)
    positive_finite("learn2diss.utterance_temperature", cfg.utterance_temperature,
                    hint="NT-Xent divides cosines by it: 0 or less trains to NaN")
    if cfg.crops.n_long != 2 or cfg.crops.n_short != 0:
        raise ConfigError("learn2diss.crops: the utterance encoder contrasts two crops of one "
                          "length (set crops.n_long=2 crops.n_short=0)")


def init_from_bundle(encoder: nn.Module, bundle: str, key: str, name: str) -> None:
    """Load a bundle's weights (``paravox export``) into ``encoder``: a pretrained frame
    encoder (e.g. an MGF bundle) or utterance encoder (a DINO bundle) to start stage 1 from.
    The bundle's encoder must be the same architecture; a mismatch is one line naming
    ``key``."""
    config, state = read_bundle(bundle, what=key)
    theirs = config.get("encoder")
    if theirs != name:
        raise ConfigError(f"{key}={bundle}: holds a '{theirs}' encoder, this recipe's is "
                          f"'{name}'")
    load_weights(encoder, state, f"{key}={bundle}",
                 "use the encoder settings it was trained with")


class Learn2DissModule(TrainingModule):
    """The dual encoder, the unit classifier and codebook, the utterance projector, and CLUB
    with its own optimiser (manual optimisation: ``q_steps`` CLUB steps, then one encoder
    step per batch)."""

    def __init__(self, cfg: Learn2DissConfig, steps_per_epoch: int, max_epochs: int):
        super().__init__(cfg, steps_per_epoch, max_epochs)
        self.automatic_optimization = False
        check_hf_source(cfg.frame_encoder, cfg.frame_encoder_settings,
                        "learn2diss.frame_encoder_settings")
        self.dual = DualEncoder(DualConfig(n_mels=cfg.features.n_mels, **cfg.dual_settings()))
        for part, bundle in (("frame", cfg.frame_init), ("utterance", cfg.utterance_init)):
            if bundle:
                init_from_bundle(getattr(self.dual, part), bundle, f"learn2diss.{part}_init",
                                 getattr(cfg, f"{part}_encoder"))
        frame = self.dual.frame
        if not hasattr(frame, "frame_count"):
            raise ConfigError(f"learn2diss.frame_encoder='{cfg.frame_encoder}' cannot take "
                              f"frame masks; use 'transformer' (log-mel) or 'hf' (waveform)")
        check_front_end("learn2diss", cfg.frame_encoder, frame, cfg.features.kind)
        # a waveform frame encoder: log-mel units from the same waves, averaged onto its frames
        self.unit_fbank = (LogMelFilterbank(replace(cfg.features, kind="logmel"))
                           if cfg.features.kind == "waveform" else None)
        self.subsample = int(getattr(getattr(frame, "cfg", None), "subsample", 1))
        widths = self._layer_widths()
        # start_layer: the frame encoder as the stage starts, frozen (refreshed when the
        # codebook is fitted; kept in checkpoints so a resumed run keeps its targets)
        self.unit_encoder = None
        if cfg.cluster_source == "start_layer":
            self.unit_encoder = copy.deepcopy(frame).eval().requires_grad_(False)
        if cfg.cluster_source == "logmel":
            unit_dim = cfg.features.n_mels * (1 if self.unit_fbank else self.subsample)
        else:
            unit_dim = widths[cfg.cluster_layer]
        self.codebook = KMeansCodebook(cfg.n_clusters, unit_dim)
        self.unit_head = nn.Linear(widths[cfg.predict_layer], cfg.n_clusters)
        d = self.dual.embedding_dim
        self.projector = nn.Sequential(
            nn.Linear(d, cfg.projector_hidden), nn.BatchNorm1d(cfg.projector_hidden),
            nn.ReLU(), nn.Linear(cfg.projector_hidden, cfg.projector_dim))
        self.club = CLUB(widths[cfg.mi_layer], d, hidden=cfg.club_hidden,
                         sampled=cfg.club_sampled)
        self.cluster_manifest = None

    @classmethod
    def from_recipe(cls, cfg, manifest, steps_per_epoch: int, max_epochs: int):
        """The module, with the training manifest kept for fitting the codebook."""
        module = cls(cfg, steps_per_epoch, max_epochs)
        module.cluster_manifest = manifest
        return module

    def _layer_widths(self) -> list[int]:
        out = self.dual.frame.probe(self.cfg.features.n_mels, 4 * self.subsample)
        self.grid = (out.layers[0].shift, out.layers[0].offset)  # the frames' timing, seconds
        return [layer.frames.shape[-1] for layer in out.layers]

    # -- parts -------------------------------------------------------------------------------
    def trainable(self) -> nn.Module:
        """Both encoders, the unit classifier and the projector (CLUB's ``q`` has its own
        optimiser)."""
        return nn.ModuleList([self.dual, self.unit_head, self.projector])

    def parameter_sets(self):
        """``encoders`` (everything but ``q``) and ``club`` (``q``), each with its schedule."""
        return {"encoders": (self.trainable(), self.cfg.optim),
                "club": (self.club, self.cfg.club_optim)}

    def embedding_encoder(self) -> nn.Module:
        """The dual encoder: utterance embedding + frame layers in one bundle."""
        return self.dual

    def load_stage_state(self, state: dict, previous_stage: str) -> None:
        """The previous stage's weights; with ``cluster_source`` ``frame_layer`` or
        ``start_layer`` its codebook (and frozen copy) is left out, so this stage re-clusters
        the (now trained) frame encoder's features, as each HuBERT iteration does."""
        if self.cfg.cluster_source != "logmel":
            state = {k: v for k, v in state.items()
                     if not k.startswith(("codebook.", "unit_encoder."))}
        super().load_stage_state(state, previous_stage)

    # -- targets -----------------------------------------------------------------------------
    def stacked(self, feats: torch.Tensor, n_frames: int) -> torch.Tensor:
        """Log-mel ``[N, T, F]`` stacked ``subsample`` frames at a time onto the frame
        encoder's grid of ``n_frames`` (zero-padded at the end): the frames that are
        clustered when ``cluster_source='logmel'``. For a waveform frame encoder ``feats``
        are samples ``[N, samples, 1]``: their log-mel frames are averaged onto its frames."""
        if self.unit_fbank is not None:
            mel = self.unit_fbank(feats[..., 0])[0]
            hop = self.unit_fbank.hop_length / self.cfg.features.sample_rate
            return pool_onto(mel, hop, 0.0, *self.grid, n_frames)
        s = self.subsample
        n, t, f = feats.shape
        if n_frames * s > t:
            feats = torch.cat([feats, feats.new_zeros(n, n_frames * s - t, f)], 1)
        return feats[:, :n_frames * s].reshape(n, n_frames, s * f)

    @torch.no_grad()
    def unit_features(self, feats: torch.Tensor) -> torch.Tensor:
        """The frame features the codebook clusters (and assigns), ``[N, T', D]``."""
        n_frames = int(self.dual.frame.frame_count(feats.shape[1]))
        if self.cfg.cluster_source == "logmel":
            return self.stacked(feats, n_frames)
        if self.unit_encoder is not None:
            return self.unit_encoder.eval()(feats, return_layers=True).layers[
                self.cfg.cluster_layer].frames
        was = self.dual.frame.training
        self.dual.frame.eval()
        out = self.dual.frame(feats, return_layers=True)
        self.dual.frame.train(was)
        return out.layers[self.cfg.cluster_layer].frames

    @torch.no_grad()
    def fit_codebook(self, waves: list[torch.Tensor] | None = None) -> float:
        """Fit the k-means codebook on ``waves`` (default: the first ``cluster_utterances``
        usable utterances of the training manifest); returns the inertia."""
        if waves is None:
            if self.cluster_manifest is None:
                raise ConfigError("learn2diss: no training manifest to fit the k-means "
                                  "codebook on (build the module with from_recipe)")
            m, waves = self.cluster_manifest, []
            for row in m.rows:
                if len(waves) == self.cfg.cluster_utterances:
                    break
                try:
                    waves.append(torch.from_numpy(load_audio(m.audio_path(row))))
                except AudioError:
                    continue  # the training loop names unreadable items
        if self.unit_encoder is not None:  # the frame encoder as this stage starts
            self.unit_encoder.load_state_dict(self.dual.frame.state_dict())
        blocks = [self.unit_features(self.features(w[None].to(self.device), augment=False))[0]
                  for w in waves if len(w) >= max(400, self.dual.frame.min_frames())]
        if not blocks:
            raise ConfigError("learn2diss: no readable utterance to fit the k-means codebook")
        return self.codebook.fit(torch.cat(blocks).float().cpu(),
                                 iters=self.cfg.cluster_iters, seed=0)

    # -- losses ------------------------------------------------------------------------------
    def mi_pair(self, frames: torch.Tensor, embedding: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """The two sides CLUB compares, each standardised per vector (layer norm without
        parameters, so their scale cannot shrink the estimate): the frame representation
        (mean over frames, or every frame) and the utterance embedding (repeated per frame)."""
        y = F.layer_norm(embedding, embedding.shape[-1:])
        if self.cfg.mi_input == "pooled":
            x = frames.mean(1)
        else:
            x, y = frames, y[:, None].expand(-1, frames.shape[1], -1)
        return F.layer_norm(x, x.shape[-1:]), y

    def losses(self, feats: torch.Tensor, generator: torch.Generator | None = None,
               with_mi: bool = True) -> dict[str, torch.Tensor]:
        """Frame, utterance and (``with_mi``) MI terms on features ``[2B, T, F]`` (first
        crops first), plus the unit accuracy and the CLUB inputs (``_x``, ``_y``)."""
        c = self.cfg
        n_frames = int(self.dual.frame.frame_count(feats.shape[1]))
        mask = draw_span_mask(len(feats), n_frames, c.mask_prob, c.mask_span,
                              generator=generator).to(self.device)
        # no frame loss: an empty mask (a transformers model must not mask on its own)
        out = self.dual.frame(feats, mask=mask if c.frame_weight else torch.zeros_like(mask),
                              return_layers=True)
        parts: dict[str, torch.Tensor] = {}
        if c.frame_weight:
            targets = self.codebook.assign(self.unit_features(feats))
            logits = self.unit_head(out.layers[c.predict_layer].frames)
            parts["frame"], parts["frame_accuracy"] = masked_cluster_loss(
                logits, targets, mask, global_mean=True)
        read = out
        if self.dual.layer_weights is not None and c.frame_weight:
            with torch.no_grad():  # the utterance encoder reads unmasked layers, as at inference
                # (an empty mask: a transformers model must not mask on its own here)
                read = self.dual.frame(feats, mask=torch.zeros_like(mask), return_layers=True)
        utt = self.dual.utterance(*self.dual.utterance_input(feats, None, read))
        emb = utt.embedding
        self.last_embeddings = utt.unnormalised  # for the collapse monitor
        if c.utterance_weight:
            z1, z2 = self.projector(emb).chunk(2)
            parts["utterance"] = nt_xent(z1, z2, c.utterance_temperature)
        x, y = self.mi_pair(out.layers[c.mi_layer].frames, emb)
        parts["_x"], parts["_y"] = x, y
        if with_mi:
            self.add_mi(parts)
        return parts

    def add_mi(self, parts: dict[str, torch.Tensor]) -> None:
        """The penalty term ``mi`` (CLUB with ``q``'s parameters detached, reaching the
        encoders named by ``mi_to``) from the CLUB inputs of :meth:`losses`; nothing when
        ``mi_weight`` is 0. Call it after ``q``'s update: ``q``'s in-place step would
        invalidate a graph built before it."""
        c = self.cfg
        if c.mi_weight:
            x, y = parts["_x"], parts["_y"]
            mi = self.club.mi_for_encoders(x if c.mi_to != "utterance" else x.detach(),
                                           y if c.mi_to != "frame" else y.detach())
            parts["mi"] = mi.clamp(min=0.0) if c.mi_clamp else mi
            parts["_mi_estimate"] = mi.detach()

    def total(self, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        """``frame_weight * L_frame + utterance_weight * L_utt + mi_weight * CLUB``."""
        c = self.cfg
        weights = {"frame": c.frame_weight, "utterance": c.utterance_weight, "mi": c.mi_weight}
        return sum(w * parts[k] for k, w in weights.items() if w)

    def training_step(self, batch: CropBatch, batch_idx: int):
        if not self.log_skipped(batch):
            return None
        if self.cfg.frame_weight and not bool(self.codebook.fitted):
            self.fit_codebook()
        views = batch.groups[0]
        v, b, n = views.shape
        feats = self.features(views.reshape(v * b, n), augment=False)  # masking is its own
        parts = self.losses(feats, self._next_mask_generator(), with_mi=False)
        # each term is logged before it is back-propagated: a non-finite one is then named
        # by the engine's guard, which stops the run before any weight changes
        for name, value in parts.items():
            if not name.startswith("_"):
                self.log(f"train/{name}", value.detach(), batch_size=b)
        x, y = parts["_x"].detach(), parts["_y"].detach()
        for _ in range(self.cfg.q_steps):  # q first, then the encoders against the new q
            q_loss = self.club.learning_loss(x, y)
            self.note_terms({"train/q_loss": q_loss.detach()})
            self.optimizer_step_on("club", q_loss)
        self.add_mi(parts)
        mi = parts.pop("_mi_estimate", None)
        del parts["_x"], parts["_y"]
        if "mi" in parts:
            self.log("train/mi_penalty", parts["mi"].detach(), batch_size=b)
        loss = self.total(parts)
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=b)
        self.optimizer_step_on("encoders", loss)
        if mi is None:
            with torch.no_grad():
                mi = self.club(x, y)
        self.log_dict({"train/mi": mi, "train/q_loglik": -q_loss.detach(),
                       "sched/lr": self.lr_at(self.schedule_step)}, batch_size=b)
        self.log_embedding_rank(self.last_embeddings, b)
        return None
