"""ONNX export: waveform -> embedding through ONNX Runtime equals the PyTorch bundle, for batch
sizes and lengths other than the ones used at export (dynamic axes)."""

import json
import warnings

import numpy as np
import pytest

from paravox.inference import Embedder, export_bundle
from paravox.inference.onnx_export import OnnxEmbedder, export_onnx
from test_inference import dino_run  # noqa: F401  (module fixture)


def _check_parity(bundle, lengths=(8000, 16000 * 7 + 123)):
    torch_emb, onnx_emb = Embedder.from_bundle(bundle), OnnxEmbedder(bundle)
    rng = np.random.default_rng(0)
    for batch, n in [(1, lengths[0]), (3, lengths[1])]:
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
    from paravox.methods.recipes import load_recipe, run_recipe
    from test_baselines import TINY_XVECTOR

    root, _ = tiny_corpus
    warnings.filterwarnings("ignore")
    recipe = load_recipe("recipes/xvector_demo.yaml", [
        f"train_manifest={root}/train.jsonl", f"out_dir={tmp_path}/run", "run.epochs=1",
        "run.max_steps=1", "run.batch_size=4", "run.num_workers=0", "run.tensorboard=false",
        "run.progress_bar=false", "eval_manifest=null", "trials=null",
        *[f"supervised.{o}" for o in TINY_XVECTOR]])
    run_recipe(recipe)
    bundle = export_bundle(tmp_path / "run", tmp_path / "bundle")
    out = export_onnx(bundle, tmp_path / "elsewhere.onnx")
    assert out.is_file() and "onnx" not in json.loads((bundle / "config.json").read_text())
    _check_parity_file(bundle, out)


def _check_parity_file(bundle, onnx_file):
    torch_emb, onnx_emb = Embedder.from_bundle(bundle), OnnxEmbedder(onnx_file)
    wave = (np.random.default_rng(3).standard_normal((2, 30000)) * 0.1).astype(np.float32)
    np.testing.assert_allclose(onnx_emb.embed(wave), torch_emb.embed(list(wave)), rtol=1e-4,
                               atol=1e-4)


def test_onnx_embedder_names_missing_file(tmp_path):
    from paravox.errors import ConfigError

    with pytest.raises(ConfigError, match="--onnx"):
        OnnxEmbedder(tmp_path)
