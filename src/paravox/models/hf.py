"""Hugging Face ``transformers`` audio backbones (wav2vec 2.0, HuBERT, WavLM) as encoders.

The model reads the normalised waveform (``features.kind=waveform``: ``[B, N, 1]`` samples),
its hidden states are combined (``layers="weighted"``: a learnable softmax-weighted sum of all
hidden states, the CNN/projection output included, as in SUPERB; ``"last"``: the last one),
pooled by mean and standard deviation over the valid frames, and projected by ``embed``
(Linear) + ``embed_norm`` (BatchNorm1d): the names paravox's staged fine-tuning relies on.

The model comes from ``path`` (a local folder written by ``save_pretrained``: config.json +
weights; nothing is downloaded) or from ``hf_config`` (a transformers config dict: a randomly
initialised model). A bundle stores the config dict and the weights, so it needs no folder.

As the frame encoder of a masked-prediction method (MGF, Learn2Diss) it takes a span mask
on its CNN frames (``forward(..., mask=...)``, sized by :meth:`HFEncoder.frame_count`): the
masked frames become the model's own mask embedding (``masked_spec_embed``, through
``mask_time_indices``), and the model's own random time masking is off for that pass.
``gradient_checkpointing`` recomputes each transformer layer in the backward pass (long
inputs in less memory).

``transformers`` is optional: ``pip install "paravox[hf]"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from paravox.errors import ConfigError
from paravox.models.base import Encoder, EncoderOutput, check_sizes
from paravox.models.pooling import StatsPool

MODEL_TYPES = ("wav2vec2", "hubert", "wavlm")
# keys of a config dict that describe where it came from, not the architecture
_PROVENANCE_KEYS = ("_name_or_path", "_commit_hash")


@dataclass
class HFEncoderConfig:
    """Settings of :class:`HFEncoder` (where the model comes from, how layers combine)."""

    path: str = ""  # local folder from save_pretrained (config.json + weights)
    hf_config: dict | None = None  # a transformers config dict: a randomly initialised model
    layers: str = "weighted"  # weighted (SUPERB softmax-weighted sum of hidden states) | last
    embedding_dim: int = 256
    freeze_feature_encoder: bool = True  # the CNN waveform encoder stays frozen
    n_mels: int = 80  # ignored: the model reads samples (the registry passes it)
    # the model's own time masking of its CNN frames in training (None: the model config's)
    mask_time_prob: float | None = None
    mask_time_length: int | None = None
    gradient_checkpointing: bool = False  # recompute each layer in the backward pass

    def __post_init__(self):
        check_sizes("hf", self, ("embedding_dim",))
        if self.mask_time_prob is not None and not 0.0 <= self.mask_time_prob <= 1.0:
            raise ConfigError(f"hf.mask_time_prob={self.mask_time_prob}: must be in [0, 1]")
        if self.mask_time_length is not None:
            check_sizes("hf", self, ("mask_time_length",))


def _transformers():
    """The ``transformers`` module, imported on first use: it is an optional dependency (the
    ``hf`` extra), so importing paravox must not need it."""
    try:
        import transformers  # here, not at the top: an optional dependency
    except ImportError as err:
        raise ConfigError('encoder "hf" needs the optional package transformers '
                          f'({err.name} is missing): pip install "paravox[hf]"') from err
    return transformers


def _plain(x: Any) -> Any:
    """Config containers (OmegaConf, tuples) as plain JSON-like dicts and lists."""
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, Sequence) and not isinstance(x, (str, bytes)):
        return [_plain(v) for v in x]
    return x


def _check_model_type(model_type: str | None, where: str) -> None:
    if model_type not in MODEL_TYPES:
        raise ConfigError(f"{where}: model_type '{model_type}' is not supported by encoder "
                          f"'hf'; choose one of {list(MODEL_TYPES)}")


def load_hf_model(cfg: HFEncoderConfig) -> nn.Module:
    """The bare transformers model (no task head) named by ``cfg``; never downloads."""
    tf = _transformers()
    overrides = {"layerdrop": 0.0}  # LayerDrop would change the number of hidden states
    for key in ("mask_time_prob", "mask_time_length"):
        if getattr(cfg, key) is not None:
            overrides[key] = getattr(cfg, key)
    if cfg.path:
        path = Path(cfg.path)
        if not (path / "config.json").is_file():
            raise ConfigError(f"encoder_settings.path='{cfg.path}': no config.json there; "
                              f"pass a local folder written by save_pretrained (models are "
                              f"never downloaded)")
        try:
            hf_cfg = tf.AutoConfig.from_pretrained(str(path), local_files_only=True)
            _check_model_type(hf_cfg.model_type, f"encoder_settings.path='{cfg.path}'")
            for k, v in overrides.items():
                setattr(hf_cfg, k, v)
            return tf.AutoModel.from_pretrained(str(path), config=hf_cfg, local_files_only=True)
        except ConfigError:
            raise
        except Exception as exc:  # OSError, ValueError, safetensors errors, ...
            raise ConfigError(f"encoder_settings.path='{cfg.path}': cannot load a transformers "
                              f"model from it ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not cfg.hf_config:
        raise ConfigError("encoder 'hf' needs encoder_settings.path (a local save_pretrained "
                          "folder) or encoder_settings.hf_config (a transformers config dict)")
    settings = _plain(cfg.hf_config)
    model_type = settings.pop("model_type", None)
    _check_model_type(model_type, "encoder_settings.hf_config")
    for k in _PROVENANCE_KEYS:
        settings.pop(k, None)
    try:
        hf_cfg = tf.AutoConfig.for_model(model_type, **{**settings, **overrides})
        return tf.AutoModel.from_config(hf_cfg)
    except Exception as exc:
        raise ConfigError(f"encoder_settings.hf_config: transformers cannot build a "
                          f"'{model_type}' model from it ({type(exc).__name__}: {exc})") from None


def check_hf_source(name: str, settings: dict, key: str) -> None:
    """Before building encoder ``name`` from ``settings`` (recipe key ``key``): an ``hf``
    encoder needs a checkpoint folder or a config, and the error names the recipe's own key
    (e.g. ``mgf.encoder_settings.path``): the one setting a recipe that starts from a
    pretrained model leaves to the user."""
    if name == "hf" and not settings.get("path") and not settings.get("hf_config"):
        raise ConfigError(f"{key}.path is not set: give the local folder of a pretrained "
                          f"wav2vec 2.0 / HuBERT / WavLM checkpoint written by "
                          f"save_pretrained (config.json + weights), e.g. {key}.path="
                          f"/data/models/wavlm-base-plus; nothing is downloaded")


def _detach_output(module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
    return output.detach()


def conv_frame_timing(conv_kernel: Sequence[int], conv_stride: Sequence[int]
                      ) -> tuple[int, float]:
    """(shift, offset) in input samples of the CNN waveform encoder's frames: shift = the
    product of the strides; frame 0 covers samples ``0 .. r-1`` with the receptive field
    ``r = 1 + sum_i (k_i - 1) * prod_{j<i} s_j``, so it is centred at ``(r - 1) / 2``."""
    shift, field = 1, 1
    for k, s in zip(conv_kernel, conv_stride):
        field += (int(k) - 1) * shift
        shift *= int(s)
    return shift, (field - 1) / 2


class HFEncoder(Encoder):
    """A transformers wav2vec2/HuBERT/WavLM backbone + statistics pooling + embedding layer."""

    head_modules = ("layer_weights", "pool", "embed", "embed_norm")
    input_frame_shift = 1 / 16000  # the waveform front end gives samples
    input_kind = "waveform"

    def __init__(self, cfg: HFEncoderConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or HFEncoderConfig()
        if cfg.layers not in ("weighted", "last"):
            raise ConfigError(f"encoder_settings.layers='{cfg.layers}': choose 'weighted' or "
                              f"'last'")
        self.model = load_hf_model(cfg)
        conf = self.model.config
        if cfg.gradient_checkpointing:
            self.model.gradient_checkpointing_enable({"use_reentrant": False})
        if cfg.freeze_feature_encoder:
            cnn = self.model.feature_extractor
            cnn.requires_grad_(False)
            if hasattr(cnn, "_requires_grad"):  # transformers' own flag for a frozen CNN
                cnn._requires_grad = False
            # detached output: the CNN stays frozen even if a caller sets requires_grad on it
            # again (e.g. fine-tuning that unfreezes "everything")
            cnn.register_forward_hook(_detach_output)
        self.layer_weights = (nn.Parameter(torch.zeros(conf.num_hidden_layers + 1))
                              if cfg.layers == "weighted" else None)
        # models whose CNN uses group norm (e.g. wav2vec2-base) were trained without a mask
        self.use_attention_mask = getattr(conf, "feat_extract_norm", "layer") == "layer"
        self.pool = StatsPool()
        self.embed = nn.Linear(2 * conf.hidden_size, cfg.embedding_dim)
        self.embed_norm = nn.BatchNorm1d(cfg.embedding_dim)
        self.embedding_dim = cfg.embedding_dim

    def frame_count(self, num_samples):
        """CNN frames of a wave of ``num_samples`` samples (``floor((n - k) / s) + 1`` per
        convolution; int in, int out; a tensor works too): the time size of a ``mask``."""
        conf = self.model.config
        n = num_samples
        for k, s in zip(conf.conv_kernel, conf.conv_stride):
            n = torch.div(n - int(k), int(s), rounding_mode="floor") + 1 if isinstance(
                n, torch.Tensor) else (n - int(k)) // int(s) + 1
        return n

    def frame_lengths(self, lengths: torch.Tensor | None) -> torch.Tensor | None:
        """Valid frames of waves of ``lengths`` samples (None: all valid), at least 1."""
        if lengths is None:
            return None
        return self.model._get_feat_extract_output_lengths(lengths).long().clamp(min=1)

    def check_maskable(self, where: str) -> None:
        """Raise a ConfigError naming ``where`` unless the model can take span masks: it
        needs its mask embedding, which transformers creates only when the config's
        ``mask_time_prob`` (or ``mask_feature_prob``) is above 0, and ``apply_spec_augment``
        (without it the model ignores ``mask_time_indices``)."""
        conf = self.model.config
        if not getattr(conf, "apply_spec_augment", True):
            raise ConfigError(f"{where}: the model's config has apply_spec_augment=false, so "
                              f"it ignores masks; set {where}.hf_config.apply_spec_augment=true "
                              f"(or use a checkpoint trained with masking)")
        if getattr(self.model, "masked_spec_embed", None) is None:
            raise ConfigError(f"{where}: the model has no mask embedding (its config's "
                              f"mask_time_prob is 0); set {where}.mask_time_prob=0.05 (any "
                              f"value above 0: paravox's span masks replace the model's own)")

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None, *,
                return_layers: bool = False, mask: torch.Tensor | None = None
                ) -> EncoderOutput:
        """``return_layers``: every hidden state (``hidden0``, the projected CNN output
        through the input layer norm/positional convolution, to ``hidden{L}``), all at the
        CNN's frame rate (:func:`conv_frame_timing`). ``mask`` [B, T'] bool (True: masked),
        ``T' = frame_count(N)``: those CNN frames become the model's mask embedding, in place
        of the model's own random time masking."""
        wave = feats[..., 0] if feats.ndim == 3 else feats  # [B, N]
        attention = None
        if lengths is not None and self.use_attention_mask:
            attention = (torch.arange(wave.shape[1], device=wave.device)[None]
                         < lengths.to(wave.device)[:, None]).long()
        extra = {}
        if mask is not None:
            t = self.frame_count(wave.shape[1])
            if tuple(mask.shape) != (wave.shape[0], t):
                raise ValueError(f"mask has shape {tuple(mask.shape)}; expected "
                                 f"({wave.shape[0]}, {t}): [batch, frame_count(samples)]")
            self.check_maskable("encoder_settings")
            extra["mask_time_indices"] = mask.to(wave.device, torch.bool)
        out = self.model(wave, attention_mask=attention, **extra,
                         output_hidden_states=self.layer_weights is not None or return_layers)
        if self.layer_weights is None:
            frames = out.last_hidden_state
        else:
            hidden = torch.stack(out.hidden_states, dim=0)  # [L+1, B, T', C]
            w = torch.softmax(self.layer_weights.float(), dim=0).to(hidden.dtype)
            frames = (w[:, None, None, None] * hidden).sum(0)
        frame_lengths = None
        if lengths is not None:
            frame_lengths = self.frame_lengths(lengths.to(frames.device)).clamp(
                max=frames.shape[1])
        pooled = self.pool(frames.transpose(1, 2), frame_lengths)
        raw = self.embed(pooled)
        emb = self.embed_norm(raw)
        layers = None
        if return_layers:
            conf = self.model.config
            shift, offset = conv_frame_timing(conf.conv_kernel, conf.conv_stride)
            layers = [self.frame_layer(f"hidden{i}", h, frame_lengths, shift, offset)
                      for i, h in enumerate(out.hidden_states)]
        return EncoderOutput(emb, frames, frame_lengths, layers, raw)

    def layer_groups(self) -> list[list[str]]:
        """CNN feature encoder + projection (+ positional convolution, the input layer norm,
        the masking vector) first, then each transformer layer, then the head (layer weights,
        pooling, embedding). A stable-layer-norm model's final layer norm (and an adapter)
        go with the top transformer layer."""
        m, enc = self.model, self.model.encoder
        top = []
        if getattr(m.config, "do_stable_layer_norm", False):
            top.append("model.encoder.layer_norm.")
        if getattr(m, "adapter", None) is not None:
            top.append("model.adapter.")
        first = [f"model.{n}" for n, _ in m.named_parameters(recurse=False)]
        first += [f"model.{n}." for n, c in m.named_children()
                  if n not in ("encoder", "adapter") and any(True for _ in c.parameters())]
        first += [f"model.encoder.{n}." for n, c in enc.named_children()
                  if n != "layers" and f"model.encoder.{n}." not in top
                  and any(True for _ in c.parameters())]
        layers = [[f"model.encoder.layers.{i}."] for i in range(len(enc.layers))]
        if layers:
            layers[-1] += top
        head = ["layer_weights"] if self.layer_weights is not None else []
        head += [f"{n}." for n in ("pool", "embed", "embed_norm")
                 if any(True for _ in getattr(self, n).parameters())]
        return [first, *layers, head]

    def bundle_settings(self, settings: dict) -> dict:
        """No folder needed to load a bundle: the architecture as a config dict instead."""
        conf = self.model.config.to_dict()
        for k in _PROVENANCE_KEYS:
            conf.pop(k, None)
        return {**settings, "path": "", "hf_config": _plain(conf)}
