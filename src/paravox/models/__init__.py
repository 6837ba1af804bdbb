"""Encoders (x-vector TDNN, ECAPA-TDNN, thin ResNet34, transformers wav2vec2/HuBERT/WavLM),
pooling, and a registry."""

from __future__ import annotations

from paravox.models.base import Encoder, EncoderOutput, count_parameters
from paravox.models.dual import DualConfig, DualEncoder
from paravox.models.ecapa import ECAPATDNN, ECAPAConfig
from paravox.models.hf import HFEncoder, HFEncoderConfig
from paravox.models.projected import ProjectedConfig, ProjectedEncoder
from paravox.models.resnet import ResNetConfig, ResNetEncoder
from paravox.models.tdnn import TDNNConfig, XVector
from paravox.models.transformer import FrameTransformer, TransformerConfig

ENCODERS = {
    "xvector": (XVector, TDNNConfig),
    "ecapa": (ECAPATDNN, ECAPAConfig),
    "resnet34": (ResNetEncoder, ResNetConfig),
    "projected": (ProjectedEncoder, ProjectedConfig),  # an encoder + projector MLP
    "transformer": (FrameTransformer, TransformerConfig),  # masked-prediction frame encoder
    "dual": (DualEncoder, DualConfig),  # frame encoder + utterance encoder (Learn2Diss)
}

# Encoders that need an optional package and settings of their own (no default model), so
# they are not in ENCODERS (which `paravox encoders` builds with defaults). "hf" (wav2vec2,
# HuBERT, WavLM) imports transformers only when built: pip install "paravox[hf]".
OPTIONAL_ENCODERS = {
    "hf": (HFEncoder, HFEncoderConfig),
}


def build_encoder(name: str, **settings) -> Encoder:
    """``build_encoder('ecapa', channels=256)``; unknown names/settings fail with the name."""
    from paravox.errors import ConfigError

    if name not in ENCODERS and name not in OPTIONAL_ENCODERS:
        raise ConfigError(f"encoder '{name}' is unknown; choose one of "
                          f"{sorted(ENCODERS) + sorted(OPTIONAL_ENCODERS)}")
    cls, cfg_cls = ENCODERS[name] if name in ENCODERS else OPTIONAL_ENCODERS[name]
    try:
        return cls(cfg_cls(**settings))
    except TypeError as exc:
        raise ConfigError(f"encoder '{name}': {exc}") from None


__all__ = ["ENCODERS", "OPTIONAL_ENCODERS", "Encoder", "EncoderOutput", "build_encoder",
           "count_parameters"]
