"""ONNX export: waveform -> embedding through ONNX Runtime equals the PyTorch bundle, for batch
sizes and lengths other than the ones used at export (dynamic axes)."""

import json
import warnings

import numpy as np
import pytest

from paravox.inference import Embedder, export_bundle
from paravox.inference.onnx_export import OnnxEmbedder, export_onnx
from test_inference import dino_run, tiny_xvector_run  # noqa: F401  (dino_run: a fixture)


def _check_parity(bundle, onnx_file=None, cases=((1, 8000), (3, 16000 * 7 + 123))):
    """ONNX Runtime embeddings of (batch, length) random waves == PyTorch, one by one."""
    torch_emb = Embedder.from_bundle(bundle)
    onnx_emb = OnnxEmbedder(onnx_file or bundle)
    rng = np.random.default_rng(0)
    for batch, n in cases:
        waves = (rng.standard_normal((batch, n)) * 0.1).astype(np.float32)
        expected = np.stack([torch_emb.embed(w) for w in waves])
        got = onnx_emb.embed(waves)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    return onnx_emb


def test_onnx_export_command_matches_pytorch(dino_run, tmp_path, capsys):  # noqa: F811
    from paravox.cli.main import main

    run, _, _ = dino_run
    warnings.filterwarnings("ignore")
    assert main(["export", str(run), "-o", str(tmp_path / "b"), "--onnx"]) == 0
    assert (tmp_path / "b/model.onnx").is_file()
    # self-contained: the weights are inside model.onnx, no external data beside it
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        "config.json", "model.onnx", "model.safetensors"]
    config = json.loads((tmp_path / "b/config.json").read_text())
    assert config["onnx"]["file"] == "model.onnx"
    onnx_emb = _check_parity(tmp_path / "b")
    wave = np.random.default_rng(2).standard_normal(12345).astype(np.float32)
    assert onnx_emb.embed(wave).shape == (192,)  # one utterance, any length


def test_onnx_export_of_an_xvector(tiny_corpus, tmp_path):
    root, _ = tiny_corpus
    tiny_xvector_run(root, tmp_path / "run")
    bundle = export_bundle(tmp_path / "run", tmp_path / "bundle")
    out = export_onnx(bundle, tmp_path / "elsewhere.onnx")
    assert not list(tmp_path.glob("*.data")) and not list(bundle.glob("*.data"))
    assert out.is_file() and "onnx" not in json.loads((bundle / "config.json").read_text())
    onnx_emb = _check_parity(bundle, out, cases=((2, 30000),))
    # the default graph is unchanged: the embedding only, no frame outputs
    assert [o.name for o in onnx_emb.session.get_outputs()] == ["utterance_embedding"]
    assert onnx_emb.layer_names == []
    from paravox.errors import ConfigError

    with pytest.raises(ConfigError, match="frames='all'"):
        onnx_emb.frames(np.zeros(16000, dtype=np.float32))


def test_onnx_embedder_names_missing_file(tmp_path):
    from paravox.errors import ConfigError

    with pytest.raises(ConfigError, match="--onnx"):
        OnnxEmbedder(tmp_path)


ECAPA_SMALL = {"channels": 32, "mfa_channels": 96, "se_channels": 16, "attention_channels": 16,
               "scale": 4, "embedding_dim": 16}


def test_onnx_frame_outputs_match_pytorch(tmp_path):
    """``frames="all"``: one ``frames_<layer>`` output per layer, dynamic batch and time,
    recorded in config.json; ONNX Runtime == PyTorch at a length not used at export."""
    from paravox.inference.bundle import random_bundle

    bundle = random_bundle("ecapa", ECAPA_SMALL, {"n_mels": 24}, tmp_path / "b")
    warnings.filterwarnings("ignore")
    export_onnx(bundle, frames="all")
    torch_emb, onnx_emb = Embedder.from_bundle(bundle), OnnxEmbedder(bundle)
    names = torch_emb.layer_names
    assert onnx_emb.layer_names == names == ["stem", "block1", "block2", "block3", "mfa"]
    outputs = [o.name for o in onnx_emb.session.get_outputs()]
    assert outputs == ["utterance_embedding"] + [f"frames_{n}" for n in names]
    recorded = json.loads((bundle / "config.json").read_text())["onnx"]["frames"]
    assert [(r["output"], r["layer"], r["shift"], r["offset"]) for r in recorded] == [
        (f"frames_{n}", n, 0.01, 0.0) for n in names]
    rng = np.random.default_rng(3)
    waves = (rng.standard_normal((2, 16000 * 3 + 77)) * 0.1).astype(np.float32)
    got = onnx_emb.frames(waves)
    assert len(got) == 2
    for wave, g in zip(waves, got):
        ref = torch_emb.frames(wave)
        np.testing.assert_allclose(g.embedding, ref.embedding, rtol=1e-4, atol=1e-4)
        for n in names:
            assert g.layers[n].shape == ref.layers[n].shape == (
                (16000 * 3 + 77) // 160 + 1, 96 if n == "mfa" else 32)
            np.testing.assert_allclose(g.layers[n], ref.layers[n], rtol=1e-4, atol=1e-4)
            assert (g.shift[n], g.offset[n]) == (ref.shift[n], ref.offset[n])
    one = onnx_emb.frames(waves[0, :9000])  # one utterance, another length
    assert one.layers["mfa"].shape == (9000 // 160 + 1, 96)
    np.testing.assert_allclose(onnx_emb.embed(waves[0]), got[0].embedding, rtol=1e-5,
                               atol=1e-6)


def test_onnx_frame_selection(tmp_path):
    from paravox.inference.bundle import load_bundle_encoder, random_bundle
    from paravox.inference.onnx_export import frame_outputs

    bundle = random_bundle("xvector", {"channels": 16, "stats_channels": 32,
                                       "embedding_dim": 8}, {"n_mels": 24}, tmp_path / "x")
    encoder, fbank, _ = load_bundle_encoder(bundle)
    assert [o["layer"] for o in frame_outputs(encoder, fbank, -1)] == ["tdnn5"]
    picked = frame_outputs(encoder, fbank, "tdnn3")
    assert picked[0]["output"] == "frames_tdnn3"
    assert picked[0]["offset"] == pytest.approx(0.07)


def test_onnx_model_is_self_contained_and_group_readable(tmp_path):
    """model.onnx holds its weights (no model.onnx.data, though the exporter writes one), is
    0644 under umask 022, loads alone from another folder and matches PyTorch."""
    import os
    import shutil

    import onnx

    from paravox.inference.bundle import random_bundle

    old = os.umask(0o022)
    try:
        bundle = random_bundle("ecapa", ECAPA_SMALL, {"n_mels": 24}, tmp_path / "b")
        warnings.filterwarnings("ignore")
        out = export_onnx(bundle, frames="all")
    finally:
        os.umask(old)
    assert not list(tmp_path.rglob("*.data"))
    assert sorted(p.name for p in bundle.iterdir()) == [
        "config.json", "model.onnx", "model.safetensors"]
    for f in bundle.iterdir():
        assert os.stat(f).st_mode & 0o777 == 0o644, f
    model = onnx.load(str(out), load_external_data=False)
    assert not [t.name for t in model.graph.initializer
                if t.data_location == onnx.TensorProto.EXTERNAL]
    meta = {p.key: p.value for p in model.metadata_props}
    assert "paravox_frames" in meta  # the metadata survived the rewrite
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(out, alone / "model.onnx")  # the file by itself is the whole model
    _check_parity(bundle, alone / "model.onnx", cases=((2, 20000),))
    assert OnnxEmbedder(alone).layer_names == Embedder.from_bundle(bundle).layer_names


def test_onnx_over_the_limit_keeps_external_data(tmp_path, monkeypatch):
    """Above MAX_INLINE_BYTES (2 GB; lowered here) the weights stay in model.onnx.data."""
    from paravox.inference import onnx_export
    from paravox.inference.bundle import random_bundle

    bundle = random_bundle("xvector", {"channels": 16, "stats_channels": 32,
                                       "embedding_dim": 8}, {"n_mels": 24}, tmp_path / "x")
    monkeypatch.setattr(onnx_export, "MAX_INLINE_BYTES", 1000)
    warnings.filterwarnings("ignore")
    out = export_onnx(bundle, frames=-1)
    assert (bundle / "model.onnx.data").is_file()
    onnx_emb = _check_parity(bundle, out, cases=((1, 16000),))
    assert onnx_emb.layer_names == ["tdnn5"]


def test_export_declares_the_first_length_where_every_layer_has_two_frames(tmp_path):
    """torch.export specialises sizes 0 and 1: the exported length range starts where every
    layer has two frames, or the exporter falls back to a second export. For the x-vector's
    TDNN (14 frames of context) that is 16 log-mel frames: 15 hops of 160 samples."""
    import torch

    from paravox.inference.bundle import load_bundle_encoder, random_bundle
    from paravox.inference.onnx_export import export_min_samples

    settings = {"channels": 16, "stats_channels": 32, "embedding_dim": 8}
    bundle = random_bundle("xvector", settings, {"n_mels": 24}, tmp_path / "b", seed=0)
    encoder, fbank, _ = load_bundle_encoder(bundle)
    encoder.eval()

    def fewest_frames(n: int) -> int:
        with torch.no_grad():
            out = encoder(fbank(torch.randn(1, n))[0], return_layers=True)
        return min(layer.frames.shape[1] for layer in out.layers)

    n = export_min_samples(encoder, fbank)
    assert n == 15 * 160
    assert fewest_frames(n) == 2 and fewest_frames(n - 1) == 1
