"""ONNX export of a bundle: waveform in, embedding out, features included.

The graph holds the log-mel front end (STFT, mel filters, mean normalisation) and the encoder,
so ONNX Runtime users need nothing but the file: input ``wave`` float32 ``[batch, samples]`` at
the bundle's sample rate, output ``embedding`` ``[batch, dim]``. Batch and time axes are dynamic
(any number of utterances of any common length above one FFT frame). Waves in one batch must
share a length: there is no padding mask in the graph, so embed utterances of different lengths
one at a time (as :class:`~paravox.inference.Embedder` does for whole utterances).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from paravox.errors import ConfigError
from paravox.inference.bundle import load_bundle_encoder

ONNX_FILE = "model.onnx"
# graph output; not "embedding", which WavLM already uses for an internal value
OUTPUT_NAME = "utterance_embedding"
OPSET = 18
MAX_SECONDS = 3600  # the exporter needs an upper bound for the time axis


class WaveToEmbedding(nn.Module):
    """Features + encoder as one module (what is exported)."""

    def __init__(self, encoder: nn.Module, fbank: nn.Module):
        super().__init__()
        self.fbank, self.encoder = fbank.eval(), encoder.eval()

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.fbank(wave)[0]).embedding


def _require_onnx():
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ConfigError(f"ONNX export needs the optional packages onnx and onnxscript "
                          f"({err.name} is missing): pip install 'paravox[onnx]'") from err


def export_onnx(bundle: str | Path, out: str | Path | None = None) -> Path:
    """Write ``model.onnx`` (default: inside the bundle folder) and record it in config.json."""
    _require_onnx()
    bundle = Path(bundle)
    encoder, fbank, config = load_bundle_encoder(bundle)
    net = WaveToEmbedding(encoder, fbank).eval()
    sr = fbank.cfg.sample_rate
    out = Path(out) if out is not None else bundle / ONNX_FILE
    example = torch.randn(2, 2 * sr) * 0.1
    batch = torch.export.Dim("batch", min=1)
    samples = torch.export.Dim("samples", min=fbank.cfg.n_fft // 2 + 1, max=MAX_SECONDS * sr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (example,), out, dynamo=True, input_names=["wave"],
                          output_names=[OUTPUT_NAME], opset_version=OPSET, verbose=False,
                          dynamic_shapes={"wave": {0: batch, 1: samples}})
    if out.parent.resolve() == bundle.resolve():
        config["onnx"] = {"file": out.name, "opset": OPSET, "input": "wave [batch, samples] "
                          f"float32 at {sr} Hz", "output": f"{OUTPUT_NAME} [batch, dim]"}
        (bundle / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return out


class OnnxEmbedder:
    """Whole-utterance embeddings through ONNX Runtime (for deployment and speed comparisons)."""

    def __init__(self, onnx_path: str | Path, threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise ConfigError("ONNX Runtime is not installed: pip install 'paravox[onnx]'"
                              ) from err
        path = Path(onnx_path)
        if path.is_dir():
            path = path / ONNX_FILE
        if not path.is_file():
            raise ConfigError(f"{path} not found: export it with `paravox export <run> -o "
                              f"<bundle> --onnx`")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), opts,
                                            providers=["CPUExecutionProvider"])

    def embed(self, waves: np.ndarray) -> np.ndarray:
        """``[N]`` -> ``[D]``; ``[B, N]`` (equal lengths) -> ``[B, D]``."""
        waves = np.asarray(waves, dtype=np.float32)
        single = waves.ndim == 1
        out = self.session.run(None, {"wave": waves[None] if single else waves})[0]
        return out[0] if single else out
