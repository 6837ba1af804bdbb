"""The encoder registry: names -> (encoder class, config dataclass), and :func:`build_encoder`.

The single encoders are listed here. The two encoders built from other registry encoders,
``projected`` (:mod:`paravox.models.projected`) and ``dual`` (:mod:`paravox.models.dual`),
build their parts with :func:`build_encoder`, so they import this module and add themselves
with :func:`register_encoder` when they are imported (``paravox.models`` imports both): the
imports run one way, from them to the registry, with no circle.
"""

from __future__ import annotations

import dataclasses

from paravox.errors import ConfigError
from paravox.models.base import Encoder
from paravox.models.ecapa import ECAPATDNN, ECAPAConfig
from paravox.models.hf import HFEncoder, HFEncoderConfig
from paravox.models.resnet import ResNetConfig, ResNetEncoder
from paravox.models.tdnn import TDNNConfig, XVector
from paravox.models.transformer import FrameTransformer, TransformerConfig

ENCODERS: dict[str, tuple[type[Encoder], type]] = {
    "xvector": (XVector, TDNNConfig),
    "ecapa": (ECAPATDNN, ECAPAConfig),
    "resnet34": (ResNetEncoder, ResNetConfig),
    "transformer": (FrameTransformer, TransformerConfig),  # masked-prediction frame encoder
    # "projected" (an encoder + projector MLP) and "dual" (frame encoder + utterance encoder,
    # Learn2Diss) are added by register_encoder in models/projected.py and models/dual.py
}

# Encoders that need an optional package and settings of their own (no default model), so
# they are not in ENCODERS (which `paravox encoders` builds with defaults). "hf" (wav2vec2,
# HuBERT, WavLM) imports transformers only when built: pip install "paravox[hf]".
OPTIONAL_ENCODERS: dict[str, tuple[type[Encoder], type]] = {
    "hf": (HFEncoder, HFEncoderConfig),
}


def register_encoder(name: str, cls: type[Encoder], cfg_cls: type) -> None:
    """Add ``cls`` (built as ``cls(cfg_cls(**settings))``) to :data:`ENCODERS` as ``name``.

    For an encoder built from other registry encoders, which must import this module and so
    cannot be listed in it. Registering the same pair again is a no-op; a name already taken
    by another encoder raises :class:`ConfigError`.

    Example:

    >>> from paravox.models.encoder_registry import ENCODERS, register_encoder
    >>> from paravox.models.tdnn import TDNNConfig, XVector
    >>> register_encoder("xvector", XVector, TDNNConfig)  # already there: nothing changes
    >>> ENCODERS["xvector"] == (XVector, TDNNConfig)
    True
    """
    taken = ENCODERS.get(name, OPTIONAL_ENCODERS.get(name))
    if taken is not None and taken != (cls, cfg_cls):
        raise ConfigError(f"encoder '{name}' is registered already ({taken[0].__name__})")
    ENCODERS[name] = (cls, cfg_cls)


def build_encoder(name: str, **settings) -> Encoder:
    """``build_encoder('ecapa', channels=256)``; unknown names/settings fail with the name."""
    if name not in ENCODERS and name not in OPTIONAL_ENCODERS:
        raise ConfigError(f"encoder '{name}' is unknown; choose one of "
                          f"{sorted(ENCODERS) + sorted(OPTIONAL_ENCODERS)}")
    cls, cfg_cls = ENCODERS[name] if name in ENCODERS else OPTIONAL_ENCODERS[name]
    known = {f.name for f in dataclasses.fields(cfg_cls)}
    unknown = sorted(set(settings) - known)
    if unknown:  # e.g. a recipe's transformer sizes left under another encoder's settings
        raise ConfigError(f"encoder '{name}' has no setting {unknown} (its settings: "
                          f"{sorted(known)}); settings given on the command line merge into "
                          f"the recipe's, so start from a recipe written for '{name}'")
    try:
        return cls(cfg_cls(**settings))
    except TypeError as exc:
        raise ConfigError(f"encoder '{name}': {exc}") from None
