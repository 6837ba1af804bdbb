"""The transformers backbones (wav2vec2, HuBERT, WavLM) as paravox encoders: shapes and frame
lengths, loading a save_pretrained folder, padding invariance, frozen CNN and layer-weight
gradients, layer groups, self-contained bundles, the missing-extra error, a short training run.
Tiny randomly initialised models only: nothing is downloaded."""

import csv
import json
import math
import sys
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from paravox.audio.features import WaveformFrontEnd  # noqa: E402
from paravox.errors import ConfigError  # noqa: E402
from paravox.inference.bundle import export_bundle, load_bundle_encoder, write_bundle  # noqa: E402
from paravox.inference.embedder import Embedder  # noqa: E402
from paravox.models import build_encoder  # noqa: E402
from paravox.models.hf import HFEncoder  # noqa: E402

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 64, "conv_dim": [32, 32], "conv_kernel": [10, 3],
        "conv_stride": [5, 2], "num_conv_pos_embeddings": 16,
        "num_conv_pos_embedding_groups": 2, "feat_extract_norm": "layer"}
MODEL_TYPES = ["wav2vec2", "hubert", "wavlm"]

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # WavLM's mask-type notice


def tiny(model_type="wav2vec2", seed=0, **settings) -> HFEncoder:
    torch.manual_seed(seed)
    hf_config = {"model_type": model_type, **TINY, **settings.pop("hf", {})}
    return build_encoder("hf", hf_config=hf_config, embedding_dim=16, **settings)


def n_frames(n: int) -> int:  # the tiny CNN: kernel 10 stride 5, then kernel 3 stride 2
    return ((n - 10) // 5 + 1 - 3) // 2 + 1


def waves(*lengths, seed=0):
    """A padded batch of random waves and their lengths."""
    g = torch.Generator().manual_seed(seed)
    batch = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        batch[i, :n] = torch.randn(n, generator=g)
    return batch, torch.tensor(lengths)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_shapes_frame_lengths_and_padding_invariance(model_type):
    enc = tiny(model_type).eval()
    fe = WaveformFrontEnd()
    wave, lengths = waves(8000, 5000)
    with torch.no_grad():
        out = enc(*fe(wave, lengths))
        assert out.embedding.shape == (2, 16)
        assert out.frames.shape == (2, n_frames(8000), 32)
        assert out.frame_lengths.tolist() == [n_frames(8000), n_frames(5000)]
        assert enc(fe(wave)[0]).frame_lengths is None  # no lengths: every frame valid
        # the short wave alone, unpadded, gives what it gave inside the padded batch
        alone = enc(*fe(wave[1:, :5000]))
    valid = n_frames(5000)
    # seen: differences up to ~5e-7 (float32 rounding); the tolerance leaves room for BLAS
    torch.testing.assert_close(out.frames[1, :valid], alone.frames[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.embedding[1], alone.embedding[0], atol=1e-5, rtol=1e-4)


def test_layers_last_gives_the_last_hidden_state():
    enc = tiny(layers="last").eval()
    wave, lengths = waves(6000, 6000)
    with torch.no_grad():
        out = enc(wave[..., None], lengths)
        ref = enc.model(wave, attention_mask=torch.ones_like(wave, dtype=torch.long))
    assert enc.layer_weights is None
    torch.testing.assert_close(out.frames, ref.last_hidden_state)
    with pytest.raises(ConfigError, match="layers='middle'"):
        tiny(layers="middle")


def test_loads_a_save_pretrained_folder(tmp_path):
    enc = tiny("wavlm").eval()
    enc.model.save_pretrained(tmp_path / "wavlm")
    again = build_encoder("hf", path=str(tmp_path / "wavlm"), embedding_dim=16).eval()
    assert again.model.config.model_type == "wavlm"
    wave, lengths = waves(6000, 4000)
    with torch.no_grad():
        a, b = enc(wave[..., None], lengths), again(wave[..., None], lengths)
    torch.testing.assert_close(a.frames, b.frames)  # layer weights start equal (uniform)
    missing = tmp_path / "nowhere"
    with pytest.raises(ConfigError, match="nowhere"):
        build_encoder("hf", path=str(missing))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text('{"model_type": "wav2vec2"}')
    with pytest.raises(ConfigError, match="bad"):  # a config but no weights
        build_encoder("hf", path=str(tmp_path / "bad"))
    with pytest.raises(ConfigError, match="model_type 'bert'"):
        build_encoder("hf", hf_config={"model_type": "bert"})
    with pytest.raises(ConfigError, match="hf_config"):
        build_encoder("hf")


def test_layer_weights_learn_and_the_cnn_stays_frozen():
    enc = tiny().train()
    cnn = [p for n, p in enc.named_parameters() if n.startswith("model.feature_extractor.")]
    assert cnn and not any(p.requires_grad for p in cnn)
    for p in enc.parameters():  # as fine-tuning's "train everything" stage does
        p.requires_grad_(True)
    wave, lengths = waves(6000, 5000)
    enc(wave[..., None], lengths).embedding.square().sum().backward()
    assert enc.layer_weights.grad is not None and enc.layer_weights.grad.abs().sum() > 0
    assert enc.model.encoder.layers[0].attention.q_proj.weight.grad is not None
    assert all(p.grad is None for p in cnn)  # still frozen: the CNN output is detached
    free = tiny(freeze_feature_encoder=False).train()
    free(wave[..., None], lengths).embedding.square().sum().backward()
    assert all(p.grad is not None for n, p in free.named_parameters()
               if n.startswith("model.feature_extractor."))


@pytest.mark.parametrize("settings", [{}, {"layers": "last", "hf": {"do_stable_layer_norm": True}}])
def test_layer_groups_cover_every_parameter_once(settings):
    enc = tiny(**settings)
    groups = enc.layer_groups()
    assert len(groups) == 1 + 2 + 1  # CNN + projection, two transformer layers, head
    for name, _ in enc.named_parameters():
        hits = [i for i, g in enumerate(groups) if any(name.startswith(p) for p in g)]
        assert len(hits) == 1, (name, hits)
    assert "model.feature_extractor." in groups[0] and "model.feature_projection." in groups[0]
    assert groups[1][0] == "model.encoder.layers.0." and groups[2][0] == "model.encoder.layers.1."
    assert {"embed.", "embed_norm."} <= set(groups[-1])
    if settings:  # stable layer norm: the final layer norm sits on top of the last layer
        assert "model.encoder.layer_norm." in groups[2] and "layer_weights" not in groups[-1]
    else:
        assert "model.encoder.layer_norm." in groups[0] and "layer_weights" in groups[-1]


def test_bundle_is_self_contained(tmp_path):
    enc = tiny("hubert")
    folder = tmp_path / "pretrained"
    enc.model.save_pretrained(folder)
    enc = build_encoder("hf", path=str(folder), embedding_dim=16)
    enc.train()
    enc(*waves(4000, 4000))  # batch-norm statistics move off their defaults
    enc.eval()
    out = write_bundle(enc.state_dict(), "hf", {"path": str(folder), "embedding_dim": 16},
                       {"kind": "waveform"}, tmp_path / "bundle", {"method": "test"})
    text = (out / "config.json").read_text()
    config = json.loads(text)
    assert config["encoder_settings"]["path"] == "" and str(folder) not in text
    assert config["encoder_settings"]["hf_config"]["model_type"] == "hubert"
    for f in folder.iterdir():  # loading needs no folder
        f.unlink()
    wave = waves(7000)[0][0].numpy()
    with torch.no_grad():
        ref = enc(WaveformFrontEnd()(torch.from_numpy(wave))[0]).embedding[0].numpy()
    embedder = Embedder.from_bundle(out)
    assert isinstance(embedder.fbank, WaveformFrontEnd)
    np.testing.assert_allclose(embedder.embed(wave), ref, atol=1e-5, rtol=1e-4)


def test_missing_transformers_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers fails
    with pytest.raises(ConfigError, match=r'pip install "paravox\[hf\]"'):
        tiny()


def test_short_training_run_through_the_engine(tiny_corpus, tmp_path):
    from paravox.data.manifest import Manifest
    from paravox.training.recipes import load_recipe, run_recipe

    root, _ = tiny_corpus
    manifest = Manifest.load(root / "train.jsonl")
    manifest.rows = manifest.rows[::len(manifest.rows) // 8][:8]  # several speakers (classes)
    assert len({r.speaker for r in manifest.rows}) > 1
    manifest.save(tmp_path / "eight.jsonl")
    hf = [f"supervised.encoder_settings.hf_config.{k}={json.dumps(v)}" for k, v in TINY.items()]
    warnings.filterwarnings("ignore")
    recipe = load_recipe(None, [
        "method=supervised", f"train_manifest={tmp_path}/eight.jsonl", f"out_dir={tmp_path}/run",
        "supervised.encoder=hf", "supervised.features.kind=waveform",
        "supervised.encoder_settings.hf_config.model_type=wav2vec2",
        "supervised.encoder_settings.embedding_dim=16", *hf,
        "supervised.loss=softmax", "supervised.crops.long_seconds=0.5",
        "supervised.augment.reverb_prob=0.0", "supervised.augment.n_babble=2",
        "supervised.optim.warmup_epochs=0", "run.epochs=1", "run.max_steps=3",
        "run.batch_size=4", "run.num_workers=0", "run.tensorboard=false",
        "run.progress_bar=false"])
    result = run_recipe(recipe)
    assert result["steps"] == 2  # 8 rows, batches of 4: one epoch
    with open(tmp_path / "run/logs/version_0/metrics.csv") as fh:
        losses = [float(r["train/loss"]) for r in csv.DictReader(fh) if r.get("train/loss")]
    assert losses and all(math.isfinite(x) for x in losses)
    bundle = export_bundle(tmp_path / "run", tmp_path / "bundle")
    encoder, fbank, config = load_bundle_encoder(bundle)
    assert isinstance(encoder, HFEncoder) and isinstance(fbank, WaveformFrontEnd)
    assert config["encoder_settings"]["hf_config"]["hidden_size"] == 32


def test_two_step_step1_on_a_hugging_face_bundle(tiny_corpus, tmp_path):
    """Step 1 of two-step fine-tuning runs on a wav2vec2 bundle; the model masks its own CNN
    frames with the two-step time-mask settings, and the step-1 bundle is self-contained."""
    from paravox.data.manifest import Manifest
    from paravox.inference import Embedder
    from paravox.inference.bundle import write_bundle
    from paravox.transfer.two_step import TwoStepConfig, export_step1, train_step1

    root, _ = tiny_corpus
    manifest = Manifest.load(root / "train.jsonl")
    manifest.rows = manifest.rows[:16]
    manifest.save(tmp_path / "sixteen.jsonl")
    enc = tiny("wav2vec2")
    settings = enc.bundle_settings({"embedding_dim": 16})
    bundle = write_bundle(enc.state_dict(), "hf", settings, {"kind": "waveform"},
                          tmp_path / "hf_bundle", {"method": "random"})
    warnings.filterwarnings("ignore")
    cfg = TwoStepConfig(epochs=1, batch_size=8, per_class=2, num_workers=0, crop_seconds=0.5,
                        projector_dims=[8, 8], time_mask_prob=0.3, time_mask_length=3)
    module = train_step1(bundle, tmp_path / "sixteen.jsonl", "fluency", cfg, tmp_path / "s1")
    model_cfg = module.encoder.base.model.config
    assert (model_cfg.mask_time_prob, model_cfg.mask_time_length) == (0.3, 3)
    step1 = export_step1(module, json.loads((bundle / "config.json").read_text()),
                         tmp_path / "step1", {})
    config = json.loads((step1 / "config.json").read_text())
    assert config["encoder_settings"]["base_settings"]["path"] == ""
    assert config["encoder_settings"]["base_settings"]["hf_config"]["model_type"] == "wav2vec2"
    wave = waves(8000)[0][0].numpy()
    emb = Embedder.from_bundle(step1).embed(wave)
    with torch.no_grad():
        expected = module.encoder(module.fbank(torch.from_numpy(wave))[0]).embedding[0]
    np.testing.assert_allclose(emb, expected.numpy(), rtol=1e-4, atol=1e-5)


def test_wavlm_bundle_exports_to_onnx(tmp_path):
    """WavLM names an internal value "embedding": the graph output must not clash with it."""
    pytest.importorskip("onnxruntime")
    from paravox.inference.onnx_export import OnnxEmbedder, export_onnx

    enc = tiny("wavlm")
    bundle = write_bundle(enc.state_dict(), "hf", enc.bundle_settings({"embedding_dim": 16}),
                          {"kind": "waveform"}, tmp_path / "wavlm", {"method": "random"})
    warnings.filterwarnings("ignore")
    export_onnx(bundle)
    wave = waves(6000)[0][0].numpy()
    np.testing.assert_allclose(OnnxEmbedder(bundle).embed(wave),
                               Embedder.from_bundle(bundle).embed(wave), rtol=1e-4, atol=1e-5)
