"""Inference: exported model bundles and the embedder that reads them."""

from paravox.inference.bundle import export_bundle, load_bundle_encoder
from paravox.inference.embedder import Embedder

__all__ = ["Embedder", "export_bundle", "load_bundle_encoder"]
