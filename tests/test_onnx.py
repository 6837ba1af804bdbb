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
    assert out.is_file() and "onnx" not in json.loads((bundle / "config.json").read_text())
    _check_parity(bundle, out, cases=((2, 30000),))


def test_onnx_embedder_names_missing_file(tmp_path):
    from paravox.errors import ConfigError

    with pytest.raises(ConfigError, match="--onnx"):
        OnnxEmbedder(tmp_path)
