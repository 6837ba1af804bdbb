"""Bundles: export from a training run, load without pickle, embeddings equal the checkpoint's."""

import json
import warnings

import numpy as np
import pytest
import torch

from paravox.audio.io import load_audio
from paravox.data.manifest import Manifest
from paravox.errors import ConfigError
from paravox.inference import Embedder, export_bundle
from paravox.training.recipes import load_recipe, run_recipe
from test_baselines import TINY_XVECTOR
from test_dino_method import SMALL


@pytest.fixture(scope="module")
def dino_run(tiny_corpus, tmp_path_factory):
    root, _ = tiny_corpus
    warnings.filterwarnings("ignore")
    out = tmp_path_factory.mktemp("dino_run")
    recipe = load_recipe("recipes/dino_demo.yaml", [
        f"train_manifest={root}/pretrain.jsonl", f"out_dir={out}", "run.epochs=1",
        "run.max_steps=2", "run.batch_size=4", "run.num_workers=0", "run.tensorboard=false",
        "run.progress_bar=false", "eval_manifest=null", "trials=null",
        *[f"dino.{o}" for o in SMALL]])
    return out, run_recipe(recipe)["module"], root


def test_bundle_round_trip_equals_the_checkpoint(dino_run, tmp_path):
    run, module, root = dino_run
    bundle = export_bundle(run, tmp_path / "bundle")
    config = json.loads((bundle / "config.json").read_text())
    assert config["source"]["method"] == "dino" and config["encoder"] == "ecapa"
    assert config["embedding_dim"] == 192
    emb = Embedder.from_bundle(bundle)
    row = Manifest.load(root / "test.jsonl").rows[0]
    path = Manifest.load(root / "test.jsonl").audio_path(row)
    wave = load_audio(path)
    teacher = module.teacher["encoder"].eval()
    with torch.no_grad():
        expected = teacher(module.fbank(torch.from_numpy(wave))[0]).embedding[0].numpy()
    np.testing.assert_allclose(emb.embed(path), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(emb.embed(wave), expected, rtol=1e-5, atol=1e-6)
    both = emb.embed([path, wave])
    assert both.shape == (2, 192)
    # the DINO student can be exported too, and differs from the teacher
    student = export_bundle(run, tmp_path / "student", which="student.encoder.")
    assert not np.allclose(Embedder.from_bundle(student).embed(wave), expected)


def test_chunked_embedding_averages_chunks(dino_run, tmp_path):
    run, _, _ = dino_run
    emb = Embedder.from_bundle(export_bundle(run, tmp_path / "b"))
    rng = np.random.default_rng(0)
    wave = rng.standard_normal(16000 * 5).astype(np.float32) * 0.1
    chunks = [wave[i * 16000:(i + 2) * 16000] for i in (0, 2)] + [wave[-32000:]]
    expected = np.mean([emb.embed(c) for c in chunks], axis=0)
    np.testing.assert_allclose(emb.embed(wave, chunk_seconds=2.0), expected, rtol=1e-4,
                               atol=1e-5)
    short = wave[:8000]
    np.testing.assert_allclose(emb.embed(short, chunk_seconds=2.0), emb.embed(short),
                               rtol=1e-5, atol=1e-6)


def test_bundle_errors_name_the_problem(dino_run, tmp_path):
    run, _, _ = dino_run
    with pytest.raises(ConfigError, match="no checkpoint"):
        export_bundle(tmp_path, tmp_path / "x")
    with pytest.raises(ConfigError, match="paravox export"):
        Embedder.from_bundle(tmp_path)
    bundle = export_bundle(run, tmp_path / "b")
    cfg = json.loads((bundle / "config.json").read_text())
    cfg["version"] = 99
    (bundle / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="upgrade paravox"):
        Embedder.from_bundle(bundle)


def tiny_xvector_run(root, out):
    """One training step of a tiny supervised x-vector on the tiny corpus; returns the module."""
    warnings.filterwarnings("ignore")
    recipe = load_recipe("recipes/xvector_demo.yaml", [
        f"train_manifest={root}/train.jsonl", f"out_dir={out}", "run.epochs=1",
        "run.max_steps=1", "run.batch_size=4", "run.num_workers=0", "run.tensorboard=false",
        "run.progress_bar=false", "eval_manifest=null", "trials=null",
        *[f"supervised.{o}" for o in TINY_XVECTOR]])
    return run_recipe(recipe)["module"]


def test_supervised_bundle(tiny_corpus, tmp_path):
    root, _ = tiny_corpus
    module = tiny_xvector_run(root, tmp_path / "run")
    emb = Embedder.from_bundle(export_bundle(tmp_path / "run", tmp_path / "bundle"))
    wave = np.random.default_rng(1).standard_normal(24000).astype(np.float32) * 0.1
    with torch.no_grad():
        expected = module.encoder.eval()(module.fbank(torch.from_numpy(wave))[0]).embedding[0]
    np.testing.assert_allclose(emb.embed(wave), expected.numpy(), rtol=1e-5, atol=1e-6)
    assert emb.dim == 32


def test_export_and_embed_commands(dino_run, tmp_path, capsys):
    from paravox.cli.main import main
    from paravox.inference.writers import read_kaldi_ark

    run, _, root = dino_run
    assert main(["export", str(run), "-o", str(tmp_path / "b")]) == 0
    m = Manifest.load(root / "test.jsonl")
    m.rows = m.rows[:3]
    m.save(tmp_path / "three.jsonl")
    for fmt in ("npz", "ark", "npy"):
        assert main(["embed", str(tmp_path / "b"), str(tmp_path / "three.jsonl"), "-o",
                     str(tmp_path / fmt), "--format", fmt, "-q"]) == 0
    npz = np.load(tmp_path / "npz/embeddings.npz")
    ark = read_kaldi_ark(tmp_path / "ark/embeddings.ark")
    assert sorted(npz.files) == sorted(ark) == sorted(r.id for r in m.rows)
    for uid in ark:
        np.testing.assert_array_equal(npz[uid], ark[uid])
        np.testing.assert_array_equal(npz[uid], np.load(tmp_path / f"npy/{uid}.npy"))
    scp = (tmp_path / "ark/embeddings.scp").read_text().split()
    assert scp[0] == m.rows[0].id
    assert main(["embed", str(tmp_path), str(tmp_path / "three.jsonl"), "-o", "x"]) == 2
    assert "paravox export" in capsys.readouterr().err


def test_evaluate_sv_command(dino_run, tmp_path, capsys):
    from paravox.cli.main import main

    run, _, root = dino_run
    bundle = export_bundle(run, tmp_path / "b")
    args = ["evaluate", "sv", str(bundle), "--manifest", str(root / "test.jsonl"), "--trials",
            str(root / "trials.txt"), "--train", str(root / "train.jsonl"), "--backend",
            "cosine", "asnorm", "plda", "--top-k", "20", "--lda-dim", "4", "-o",
            str(tmp_path / "sv"), "-q"]
    assert main(args) == 0
    results = json.loads((tmp_path / "sv/sv_results.json").read_text())
    assert [r["backend"] for r in results] == ["cosine", "asnorm", "plda"]
    assert all(0 <= r["eer"] <= 1 and r["min_dcf_0.01"] >= 0 for r in results)
    assert all(r["eer_ci"][0] <= r["eer"] <= r["eer_ci"][1] for r in results)
    assert (tmp_path / "sv/det.png").stat().st_size > 10_000
    assert "EER" in capsys.readouterr().out
    assert main(args[:7] + ["--backend", "plda", "-o", str(tmp_path / "x"), "-q"]) == 2
    assert "need --train" in capsys.readouterr().err


def test_bundle_files_are_readable_by_the_group(dino_run, tmp_path):
    """Under umask 022 every file of a bundle is 0644 (safetensors alone would write 0600),
    from export_bundle and random_bundle alike; the umask is respected (077: 0600)."""
    import os

    from paravox.inference.bundle import random_bundle

    run, _, _ = dino_run
    old = os.umask(0o022)
    try:
        bundles = [export_bundle(run, tmp_path / "exported"),
                   random_bundle("xvector", {"channels": 16, "stats_channels": 32,
                                             "embedding_dim": 8}, {"n_mels": 24},
                                 tmp_path / "random")]
        os.umask(0o077)
        private = random_bundle("xvector", {"channels": 16, "stats_channels": 32,
                                            "embedding_dim": 8}, {"n_mels": 24},
                                tmp_path / "private")
    finally:
        os.umask(old)
    for bundle in bundles:
        files = sorted(p for p in bundle.iterdir())
        assert [p.name for p in files] == ["config.json", "model.safetensors"]
        for f in files:
            mode = os.stat(f).st_mode
            assert mode & 0o040, f"{f}: mode {oct(mode)} is not group-readable"
            assert mode & 0o777 == 0o644, f"{f}: mode {oct(mode)}"
    for f in private.iterdir():
        assert os.stat(f).st_mode & 0o777 == 0o600, f
