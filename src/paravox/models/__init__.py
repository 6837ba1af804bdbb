"""Encoders (x-vector TDNN, ECAPA-TDNN, thin ResNet34, transformers wav2vec2/HuBERT/WavLM),
pooling, the encoder registry and the k-means codebook of masked unit prediction.

The registry (``ENCODERS``, ``OPTIONAL_ENCODERS``, ``build_encoder``) lives in
:mod:`paravox.models.encoder_registry`; importing this package imports the composite encoders
(``projected``, ``dual``) too, which register themselves there.
"""

from __future__ import annotations

from paravox.models.base import Encoder, EncoderOutput, count_parameters
from paravox.models.codebook import KMeansCodebook, fit_codebook_on
from paravox.models.dual import DualConfig, DualEncoder
from paravox.models.ecapa import ECAPATDNN, ECAPAConfig
from paravox.models.encoder_registry import (
    ENCODERS,
    OPTIONAL_ENCODERS,
    build_encoder,
    register_encoder,
)
from paravox.models.hf import HFEncoder, HFEncoderConfig
from paravox.models.projected import ProjectedConfig, ProjectedEncoder
from paravox.models.resnet import ResNetConfig, ResNetEncoder
from paravox.models.tdnn import TDNNConfig, XVector
from paravox.models.transformer import FrameTransformer, TransformerConfig

__all__ = [
    "ECAPATDNN", "ENCODERS", "OPTIONAL_ENCODERS", "DualConfig", "DualEncoder", "ECAPAConfig",
    "Encoder", "EncoderOutput", "FrameTransformer", "HFEncoder", "HFEncoderConfig",
    "KMeansCodebook", "ProjectedConfig", "ProjectedEncoder", "ResNetConfig", "ResNetEncoder",
    "TDNNConfig", "TransformerConfig", "XVector", "build_encoder", "count_parameters",
    "fit_codebook_on", "register_encoder",
]
