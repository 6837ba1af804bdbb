"""Encoders (x-vector TDNN, ECAPA-TDNN, thin ResNet34), pooling, and a registry."""

from __future__ import annotations

from paravox.models.base import Encoder, EncoderOutput, count_parameters
from paravox.models.ecapa import ECAPATDNN, ECAPAConfig
from paravox.models.resnet import ResNetConfig, ResNetEncoder
from paravox.models.tdnn import TDNNConfig, XVector

ENCODERS = {
    "xvector": (XVector, TDNNConfig),
    "ecapa": (ECAPATDNN, ECAPAConfig),
    "resnet34": (ResNetEncoder, ResNetConfig),
}


def build_encoder(name: str, **settings) -> Encoder:
    """``build_encoder('ecapa', channels=256)``; unknown names/settings fail with the name."""
    from paravox.errors import ConfigError

    if name not in ENCODERS:
        raise ConfigError(f"encoder '{name}' is unknown; choose one of {sorted(ENCODERS)}")
    cls, cfg_cls = ENCODERS[name]
    try:
        return cls(cfg_cls(**settings))
    except TypeError as exc:
        raise ConfigError(f"encoder '{name}': {exc}") from None


__all__ = ["ENCODERS", "Encoder", "EncoderOutput", "build_encoder", "count_parameters"]
