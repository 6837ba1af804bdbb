"""ONNX export of a bundle: waveform in, embedding out, features included.

The graph holds the log-mel front end (STFT, mel filters, mean normalisation) and the encoder,
so ONNX Runtime users need nothing but the file: input ``wave`` float32 ``[batch, samples]`` at
the bundle's sample rate, output ``embedding`` ``[batch, dim]``. Batch and time axes are dynamic
(any number of utterances of any common length above one FFT frame). Waves in one batch must
share a length: there is no padding mask in the graph, so embed utterances of different lengths
one at a time (as :class:`~paravox.inference.Embedder` does for whole utterances).

``export_onnx(..., frames="all" | index | name)`` adds frame-level outputs
``frames_<layer>`` ``[batch, T_l, C_l]`` (dynamic batch and time), one per chosen encoder
layer; their names, frame shift and offset (seconds: frame ``k`` is centred at
``offset + k * shift``) go into config.json (``onnx.frames``) and into the model's metadata
(``paravox_frames``), which :meth:`OnnxEmbedder.frames` reads.

``model.onnx`` is one self-contained file: the exporter may write the weights beside it
(``model.onnx.data``); they are folded back in and that file removed. Only a model whose
protobuf would exceed 2 GB (:data:`MAX_INLINE_BYTES`, protobuf's limit) keeps its weights in
``model.onnx.data``, which must then travel with ``model.onnx``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from paravox.errors import ConfigError
from paravox.inference.audio_inputs import InputShapeError, as_samples
from paravox.inference.bundle import load_bundle_encoder
from paravox.inference.frame_features import FrameFeatures, frontend_frame_shift, select_layers
from paravox.utils.atomic_files import (
    WriteError,
    describe_write_error,
    fsync_path,
    make_folder,
    write_text,
)

ONNX_FILE = "model.onnx"
# graph output; not "embedding", which WavLM already uses for an internal value
OUTPUT_NAME = "utterance_embedding"
OPSET = 18
MAX_SECONDS = 3600  # the exporter needs an upper bound for the time axis
FRAMES_PREFIX = "frames_"  # frame-level graph outputs: frames_<layer name>
FRAMES_METADATA = "paravox_frames"  # model metadata key: JSON list of frame outputs
MAX_INLINE_BYTES = 2**31  # protobuf's 2 GB limit: larger models keep external weights


class WaveToEmbedding(nn.Module):
    """Features + encoder as one module (what is exported); with ``frame_layers`` (layer
    names) it returns ``(embedding, frames of each named layer...)``."""

    def __init__(self, encoder: nn.Module, fbank: nn.Module,
                 frame_layers: list[str] | None = None):
        super().__init__()
        self.fbank, self.encoder = fbank.eval(), encoder.eval()
        self.frame_layers = list(frame_layers or [])

    def forward(self, wave: torch.Tensor):
        feats = self.fbank(wave)[0]
        if not self.frame_layers:
            return self.encoder(feats).embedding
        out = self.encoder(feats, return_layers=True)
        by_name = {layer.name: layer.frames for layer in out.layers}
        return (out.embedding, *[by_name[n] for n in self.frame_layers])


def frame_outputs(encoder: nn.Module, fbank: nn.Module, frames: str | int
                  ) -> list[dict]:
    """The frame outputs ``frames`` ("all", a layer index or name) selects: graph output
    name, layer name, shift and offset in seconds (from one short forward)."""
    encoder.input_frame_shift = frontend_frame_shift(fbank)
    wave = torch.from_numpy(np.random.default_rng(0).standard_normal(
        fbank.cfg.sample_rate).astype(np.float32))[None]
    with torch.no_grad():
        layers = encoder(fbank(wave)[0], return_layers=True).layers
    info = {layer.name: layer for layer in layers}
    return [{"output": f"{FRAMES_PREFIX}{n}", "layer": n, "shift": float(info[n].shift),
             "offset": float(info[n].offset), "shape": "[batch, frames, channels]"}
            for n in select_layers(list(info), frames)]


def export_min_samples(encoder: nn.Module, fbank: nn.Module) -> int:
    """The shortest wave the exported graph is declared for: the first length at which the
    front end and every layer of the encoder give at least two frames. ``torch.export``
    specialises sizes 0 and 1, so a dynamic length declared from lower down fails its guards,
    and the ONNX exporter then exports a second time by another route (twice the time)."""
    rng = np.random.default_rng(0)

    def two_frames(n: int) -> bool:
        wave = torch.from_numpy(rng.standard_normal(n).astype(np.float32))[None]
        modes = [(m, m.training) for m in (fbank, encoder)]
        try:
            with torch.no_grad():
                fbank.eval()  # no batch-norm statistics updates
                encoder.eval()
                feats = fbank(wave)[0]
                out = encoder(feats, return_layers=True)
        except (RuntimeError, ValueError):  # too short for a padding or a kernel
            return False
        finally:
            for m, training in modes:
                m.train(training)
        counts = [feats.shape[1], out.frames.shape[1], *[x.frames.shape[1] for x in out.layers]]
        return min(counts) >= 2

    floor = max(1, getattr(fbank.cfg, "n_fft", 0) // 2 + 1)
    lo = hi = floor
    limit = MAX_SECONDS * fbank.cfg.sample_rate
    while not two_frames(hi):
        if hi >= limit:
            return floor  # no length works here: leave it to the exporter to say why
        lo, hi = hi + 1, min(2 * hi, limit)
    while lo < hi:  # the shortest length that works, in [lo, hi]
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if two_frames(mid) else (mid + 1, hi)
    return hi


def _require_onnx():
    try:
        import onnx  # noqa: F401  # optional: onnx (pip install "paravox[onnx]")
        import onnxscript  # noqa: F401  # optional: onnxscript (pip install "paravox[onnx]")
    except ImportError as err:
        raise ConfigError(f"ONNX export needs the optional packages onnx and onnxscript "
                          f"({err.name} is missing): pip install 'paravox[onnx]'") from err


def export_onnx(bundle: str | Path, out: str | Path | None = None,
                frames: str | int | None = None) -> Path:
    """Write ``model.onnx`` (default: inside the bundle folder) and record it in config.json.

    ``frames``: also output the frame-level features of ``"all"`` encoder layers or of one
    (index or name) as ``frames_<layer>`` ``[batch, T_l, C_l]``; ``None``: the embedding
    only. The file is self-contained (weights inside, no ``.data`` file beside it) unless
    the model is over 2 GB, which keeps its weights in ``<out>.data``."""
    _require_onnx()
    bundle = Path(bundle)
    encoder, fbank, config = load_bundle_encoder(bundle)
    outputs = [] if frames is None else frame_outputs(encoder, fbank, frames)
    net = WaveToEmbedding(encoder, fbank, [o["layer"] for o in outputs]).eval()
    sr = fbank.cfg.sample_rate
    out = Path(out) if out is not None else bundle / ONNX_FILE
    example = torch.randn(2, 2 * sr) * 0.1
    batch = torch.export.Dim("batch", min=1)
    samples = torch.export.Dim("samples", min=export_min_samples(encoder, fbank),
                               max=MAX_SECONDS * sr)
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)  # e.g. "torchvision is not installed. Skipping ..."
    # exported and finished in a hidden temporary folder beside ``out``, then renamed into
    # place (its external data first, the model last): a failure leaves no partial model
    make_folder(out.parent)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        staged = stage / out.name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (example,), staged, dynamo=True, input_names=["wave"],
                              output_names=[OUTPUT_NAME, *[o["output"] for o in outputs]],
                              opset_version=OPSET, verbose=False,
                              dynamic_shapes={"wave": {0: batch, 1: samples}})
        _finish(staged, {FRAMES_METADATA: json.dumps(outputs)} if outputs else {})
        files = sorted(stage.iterdir(), key=lambda f: f.name == out.name)
        for f in files:
            fsync_path(f)
        for f in files:
            os.replace(f, out.parent / f.name)
        fsync_path(out.parent, directory=True)
    except OSError as exc:
        raise WriteError(describe_write_error(out, exc, out.exists())) from exc
    finally:
        onnx_log.setLevel(level)
        shutil.rmtree(stage, ignore_errors=True)
    if out.parent.resolve() == bundle.resolve():
        config["onnx"] = {"file": out.name, "opset": OPSET, "input": "wave [batch, samples] "
                          f"float32 at {sr} Hz", "output": f"{OUTPUT_NAME} [batch, dim]"}
        if outputs:
            config["onnx"]["frames"] = outputs
        write_text(bundle / "config.json", json.dumps(config, indent=2) + "\n")
    return out


def _external_files(model, folder: Path) -> list[Path]:
    """The files beside the model that its tensors' external data point to."""
    import onnx  # optional: onnx (pip install "paravox[onnx]")

    def tensors(graph):
        yield from graph.initializer
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR:
                    yield attr.t
                for g in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else attr.graphs:
                    yield from tensors(g)

    files = {entry.value for t in tensors(model.graph)
             if t.data_location == onnx.TensorProto.EXTERNAL
             for entry in t.external_data if entry.key == "location"}
    return [folder / f for f in sorted(files)]


def _finish(path: Path, props: dict[str, str]) -> None:
    """Add metadata ``props`` to a saved ONNX model and fold weights the exporter wrote
    beside it (external data) back into the file, deleting that file; a model over
    :data:`MAX_INLINE_BYTES` keeps its external data (protobuf cannot hold it)."""
    import onnx  # optional: onnx (pip install "paravox[onnx]")

    model = onnx.load(str(path), load_external_data=False)
    if props:
        entries = {p.key: p.value for p in model.metadata_props}
        onnx.helper.set_model_props(model, {**entries, **props})
    external = [f for f in _external_files(model, path.parent)
                if f.resolve() != path.resolve()]
    size = model.ByteSize() + sum(f.stat().st_size for f in external if f.is_file())
    if external and size < MAX_INLINE_BYTES:
        onnx.load_external_data_for_model(model, str(path.parent))
        onnx.save_model(model, str(path), save_as_external_data=False)
        for f in external:
            f.unlink(missing_ok=True)
    elif props:  # external data (if any) stays where it is; only the graph file changes
        onnx.save_model(model, str(path))


def _waves(waves) -> np.ndarray:
    """``[N]`` or ``[B, N]`` float32 samples, else one line (see :func:`as_samples`)."""
    waves = as_samples(waves, "input")
    if waves.ndim not in (1, 2) or waves.shape[-1] == 0:
        raise InputShapeError(f"input: expected samples [N] or a batch [B, N] of equal "
                              f"lengths, got shape {tuple(waves.shape)}")
    return np.ascontiguousarray(waves)


class OnnxEmbedder:
    """Whole-utterance embeddings through ONNX Runtime (for deployment and speed comparisons)."""

    def __init__(self, onnx_path: str | Path, threads: int | None = None):
        try:
            import onnxruntime as ort  # optional: onnxruntime (pip install "paravox[onnx]")
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
        try:
            self.session = ort.InferenceSession(str(path), opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own error types
            first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise ConfigError(f"{path}: not a readable ONNX model ({first}); export it again "
                              f"with `paravox export <run> -o <bundle> --onnx`") from None
        self.path = path
        names = [o.name for o in self.session.get_outputs()]
        inputs = [i.name for i in self.session.get_inputs()]
        if inputs != ["wave"] or not names:
            raise ConfigError(f"{path}: not a paravox ONNX model (inputs {inputs}, outputs "
                              f"{names}; expected input 'wave'); export it again with "
                              f"`paravox export <run> -o <bundle> --onnx`")
        self.output_name = names[0]
        meta = self.session.get_modelmeta().custom_metadata_map
        try:
            self.frame_outputs: list[dict] = json.loads(meta.get(FRAMES_METADATA, "[]"))
        except json.JSONDecodeError:
            raise ConfigError(f"{path}: its '{FRAMES_METADATA}' metadata is not JSON; export "
                              f"it again") from None

    @property
    def layer_names(self) -> list[str]:
        """The layers whose frames the graph outputs (empty: exported without frames)."""
        return [o["layer"] for o in self.frame_outputs]

    def embed(self, waves: np.ndarray) -> np.ndarray:
        """``[N]`` -> ``[D]``; ``[B, N]`` (equal lengths) -> ``[B, D]``, samples at the
        bundle's rate (dtypes as :class:`~paravox.inference.Embedder` takes them)."""
        waves = _waves(waves)
        single = waves.ndim == 1
        out = self.session.run([self.output_name],
                               {"wave": waves[None] if single else waves})[0]
        return out[0] if single else out

    def frames(self, waves: np.ndarray) -> FrameFeatures | list[FrameFeatures]:
        """Frame-level outputs (a graph exported with ``frames=``), as
        :meth:`Embedder.frames` gives them: ``[N]`` -> one :class:`FrameFeatures`,
        ``[B, N]`` (equal lengths) -> a list."""
        if not self.frame_outputs:
            raise ConfigError(f"{self.path} has no frame outputs: export it with "
                              f"export_onnx(bundle, frames='all')")
        waves = _waves(waves)
        single = waves.ndim == 1
        names = [self.output_name, *[o["output"] for o in self.frame_outputs]]
        emb, *frames = self.session.run(names, {"wave": waves[None] if single else waves})
        result = [FrameFeatures(
            embedding=emb[i],
            layers={o["layer"]: f[i] for o, f in zip(self.frame_outputs, frames)},
            shift={o["layer"]: float(o["shift"]) for o in self.frame_outputs},
            offset={o["layer"]: float(o["offset"]) for o in self.frame_outputs})
            for i in range(emb.shape[0])]
        return result[0] if single else result
