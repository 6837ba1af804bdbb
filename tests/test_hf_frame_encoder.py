"""The transformers backbones (wav2vec 2.0, HuBERT, WavLM) as the frame encoder of MGF and
Learn2Diss: span masks through the model's own mask embedding, the timing of every hidden
layer (golden: perturb one sample with the frame mixing switched off), log-mel targets
averaged onto the 20 ms frames (golden against a loop), each loss term falling on a fixed
batch, a frozen CNN left bit-identical, layer-wise lr decay, gradient checkpointing, and the
tiny end-to-end runs (recipe -> pretrain -> export -> Embedder.frames -> ONNX parity).

Tiny random models written with ``save_pretrained`` into tmp folders and loaded from disk:
nothing is downloaded."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from paravox.cli.main import main  # noqa: E402
from paravox.errors import ConfigError  # noqa: E402
from paravox.inference import Embedder  # noqa: E402
from paravox.methods.learn2diss import Learn2DissConfig, Learn2DissModule  # noqa: E402
from paravox.methods.mgf import MGFConfig, MGFModule  # noqa: E402
from paravox.models import build_encoder  # noqa: E402
from paravox.models.base import pool_onto  # noqa: E402
from paravox.training.module import layer_lr_scales, make_optimizer  # noqa: E402
from paravox.training.recipes import load_recipe  # noqa: E402
from paravox.utils.config import build_config  # noqa: E402

MODEL_TYPES = ["wav2vec2", "hubert", "wavlm"]
# a 3-layer CNN with wav2vec 2.0's 20 ms frame shift (5 * 8 * 8 = 320 samples); receptive
# field 1 + 9 + 7 * 5 + 7 * 40 = 325 samples, so frame 0 is centred at 162 samples
TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 64, "conv_dim": [32, 32, 32], "conv_kernel": [10, 8, 8],
        "conv_stride": [5, 8, 8], "num_conv_pos_embeddings": 16,
        "num_conv_pos_embedding_groups": 2, "feat_extract_norm": "layer"}
SHIFT, OFFSET = 320 / 16000, 162 / 16000
NO_DROPOUT = {k: 0.0 for k in ("hidden_dropout", "attention_dropout", "activation_dropout",
                               "feat_proj_dropout")}

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # WavLM's mask-type notice


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """model type -> a save_pretrained folder of a tiny random model."""
    out = {}
    for i, mt in enumerate(MODEL_TYPES):
        torch.manual_seed(i)
        model = transformers.AutoModel.from_config(transformers.AutoConfig.for_model(mt, **TINY))
        out[mt] = tmp_path_factory.mktemp(mt)
        model.save_pretrained(out[mt])
    return out


def hf(model_type: str, **settings):
    return build_encoder("hf", hf_config={"model_type": model_type, **TINY,
                                          **settings.pop("hf", {})}, embedding_dim=16,
                         **settings)


def two_views(n: int, seed: int = 0) -> torch.Tensor:
    """A training batch as the methods see it: two views (the same wave in fresh noise) of
    each of ``n`` utterances, first views first."""
    waves = speechlike(n, seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    return torch.cat([waves + 0.01 * torch.randn(waves.shape, generator=g) for _ in range(2)])


def speechlike(n: int, samples: int = 16000, seed: int = 0) -> torch.Tensor:
    """Waves with structure to learn: a few harmonic tones switching every 100 ms, in noise."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(samples) / 16000
    out = torch.zeros(n, samples)
    for i in range(n):
        f0 = 100 + 200 * torch.rand(samples // 1600 + 1, generator=g)
        f = f0.repeat_interleave(1600)[:samples]
        out[i] = sum(torch.sin(2 * torch.pi * k * f * t) / k for k in (1, 2, 3))
    return 0.1 * out + 0.01 * torch.randn(n, samples, generator=g)


# -- the encoder -------------------------------------------------------------------------------
@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_frame_count_and_masks_replace_the_models_own(model_type):
    torch.manual_seed(0)
    enc = hf(model_type, hf={**NO_DROPOUT, "mask_time_prob": 0.5, "mask_time_length": 2})
    wave = torch.randn(2, 8000)
    t = enc.frame_count(8000)
    assert t == 24  # (8000 - 10) // 5 + 1 = 1599 -> (1599 - 8) // 8 + 1 = 199 -> 24
    assert enc.frame_count(torch.tensor([8000, 4000])).tolist() == [24, 12]
    with torch.no_grad():
        ref = enc.eval()(wave[..., None]).frames
        enc.train()
        empty = enc(wave[..., None], mask=torch.zeros(2, t, dtype=torch.bool)).frames
        own = enc(wave[..., None]).frames  # no mask given: the model masks on its own
        mask = torch.zeros(2, t, dtype=torch.bool)
        mask[0, 5:9] = True
        ours = enc(wave[..., None], mask=mask, return_layers=True)
        direct = enc.model(wave, mask_time_indices=mask, output_hidden_states=True)
    assert ours.frames.shape == (2, t, 32)
    torch.testing.assert_close(empty, ref)  # an empty mask: no masking at all
    assert not torch.allclose(own, ref)
    torch.testing.assert_close(ours.layers[-1].frames, direct.hidden_states[-1])
    assert not torch.allclose(ours.frames[0], ref[0]) and torch.allclose(ours.frames[1], ref[1])
    with pytest.raises(ValueError, match="frame_count"):
        enc(wave[..., None], mask=torch.zeros(2, t + 1, dtype=torch.bool))
    with pytest.raises(ConfigError, match="mask_time_prob"):
        hf(model_type, hf={"mask_time_prob": 0.0}).probe(80)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_every_hidden_layer_is_centred_where_it_says(model_type):
    """Golden timing of every hf layer: with the mixing across frames switched off (each
    layer's attention output and the positional convolution zeroed), perturbing sample j
    changes, in every layer, the frames centred on j (to within one frame)."""
    torch.manual_seed(0)
    enc = hf(model_type).eval()

    class Zero(torch.nn.Module):
        def forward(self, x):
            return torch.zeros_like(x)

    with torch.no_grad():
        enc.model.encoder.pos_conv_embed = Zero()
        for layer in enc.model.encoder.layers:
            layer.attention.out_proj.weight.zero_()
            layer.attention.out_proj.bias.zero_()
    wave = torch.randn(1, 16000, generator=torch.Generator().manual_seed(1))
    for j in (8000, 8160, 8321):
        w2 = wave.clone()
        w2[0, j] += 1.0
        with torch.no_grad():
            a = enc(wave[..., None], return_layers=True).layers
            b = enc(w2[..., None], return_layers=True).layers
        assert [la.name for la in a] == ["hidden0", "hidden1", "hidden2"]
        for la, lb in zip(a, b):
            assert la.shift == pytest.approx(SHIFT) and la.offset == pytest.approx(OFFSET)
            change = (la.frames - lb.frames).abs().amax(-1)[0]
            changed = torch.nonzero(change > 1e-6 * change.max()).flatten()
            centre = (changed[0] + changed[-1]).item() / 2
            predicted = (j / 16000 - la.offset) / la.shift
            assert abs(centre - predicted) <= 1.0, (la.name, centre, predicted)


def test_pool_onto_averages_each_frame_into_the_nearest():
    feats = torch.randn(2, 101, 3)
    pooled = pool_onto(feats, 0.01, 0.0, SHIFT, OFFSET, 49)
    ref = torch.zeros(2, 49, 3)
    for j in range(49):  # an independent loop: the log-mel frames nearest to frame j
        near = [k for k in range(101) if abs(k * 0.01 - (OFFSET + j * SHIFT)) < SHIFT / 2]
        ref[:, j] = feats[:, near].mean(1)
        assert near == [2 * j + 1, 2 * j + 2]
    torch.testing.assert_close(pooled, ref)
    assert torch.equal(pool_onto(feats, 0.01, 0.0, SHIFT, OFFSET, 60)[:, 50:], torch.zeros(
        2, 10, 3))


def test_layer_decay_scales_and_gradient_checkpointing():
    torch.manual_seed(0)
    enc = hf("hubert", hf=NO_DROPOUT)
    groups = enc.layer_groups()
    scales = layer_lr_scales(enc, 0.5)
    by_name = {n: scales[id(p)] for n, p in enc.named_parameters()}
    assert by_name["model.encoder.layers.0.attention.k_proj.weight"] == 0.5 ** (len(groups) - 2)
    assert by_name["model.feature_projection.projection.weight"] == 0.5 ** (len(groups) - 1)
    assert by_name["embed.weight"] == 1.0
    opt = make_optimizer(torch.nn.ModuleList([enc, torch.nn.Linear(2, 2)]),
                         build_config(MGFConfig).optim, scales)
    assert sorted({g["lr_scale"] for g in opt.param_groups}) == [0.125, 0.25, 0.5, 1.0]
    assert layer_lr_scales(enc, 1.0) == {}
    with pytest.raises(ConfigError, match="layer_decay"):
        build_config(MGFConfig, overrides=["optim.layer_decay=0"])
    ckpt = copy.deepcopy(enc)
    ckpt.model.gradient_checkpointing_enable({"use_reentrant": False})
    wave = torch.randn(2, 6000)
    grads = []
    for m in (enc.train(), ckpt.train()):
        m.zero_grad()
        m(wave[..., None], mask=torch.zeros(2, m.frame_count(6000), dtype=torch.bool)
          ).frames.square().mean().backward()
        grads.append(m.model.encoder.layers[0].feed_forward.output_dense.weight.grad)
    torch.testing.assert_close(grads[0], grads[1])
    assert build_encoder("hf", hf_config={"model_type": "wavlm", **TINY},
                         gradient_checkpointing=True).model.is_gradient_checkpointing


def test_settings_errors_name_the_key(checkpoints):
    with pytest.raises(ConfigError, match=r"mgf.encoder_settings.path is not set"):
        MGFModule(build_config(MGFConfig, overrides=["encoder=hf", "encoder_settings={}",
                                                     "features.kind=waveform"]), 1, 1)
    hf_mgf = ["mgf.encoder=hf", f"mgf.encoder_settings.path={checkpoints['hubert']}",
              "mgf.features.kind=waveform", "out_dir=unused"]
    with pytest.raises(ConfigError, match=r"encoder 'hf' has no setting \['dim', 'ff_dim'"):
        rec = load_recipe("mgf_demo", hf_mgf)  # merged into the recipe's transformer sizes
        MGFModule(rec.method_config, 1, 1)
    # the method's defaults leave the settings empty: nothing to merge into
    assert MGFModule(load_recipe(None, ["method=mgf", *hf_mgf]).method_config, 1, 1).grid == (
        pytest.approx(SHIFT), pytest.approx(OFFSET))
    settings = {"path": str(checkpoints["hubert"])}
    for extra, match in ((["utterance_input=frames"], r"learn2diss.features.kind='logmel'"),
                         (["features.kind=waveform"], "utterance_input='frames'")):
        cfg = build_config(Learn2DissConfig, overrides=["frame_encoder=hf", *extra])
        cfg.frame_encoder_settings = settings
        with pytest.raises(ConfigError, match=match):
            Learn2DissModule(cfg, 1, 1)
    with pytest.raises(ConfigError, match="mgf.features.kind='waveform'"):
        MGFModule(build_config(MGFConfig, overrides=["features.kind=waveform"]), 1, 1)


# -- the methods on a fixed batch ----------------------------------------------------------
def fixed_batch_terms(module, feats, steps: int, lr: float = 3e-3) -> dict[str, list[float]]:
    """Each loss term over ``steps`` AdamW steps on one batch (the masks drawn afresh each
    step from one seeded stream, as in training)."""
    opt = make_optimizer(module.trainable(), build_config(MGFConfig, overrides=[
        f"optim.lr={lr}", "optim.optimizer=adamw"]).optim)
    gen = torch.Generator().manual_seed(0)
    seen: dict[str, list[float]] = {}
    for _ in range(steps):
        parts = module.losses(feats, gen)
        for k, v in parts.items():
            if not k.startswith("_") and "accuracy" not in k:
                seen.setdefault(k, []).append(float(v))
        opt.zero_grad()
        module.total(parts).backward()
        opt.step()
    return seen


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_mgf_terms_fall_and_the_frozen_cnn_stays(checkpoints, model_type):
    torch.manual_seed(0)
    cfg = build_config(MGFConfig, overrides=[
        "encoder=hf", "features.kind=waveform", "projector_hidden=32", "projector_dim=16",
        "phone_dim=16", "frame_span=1", "phone_span=4", "frame_mask_prob=0.3",
        "phone_mask_prob=0.3"])
    cfg.encoder_settings = {"path": str(checkpoints[model_type]), "embedding_dim": 16}
    m = MGFModule(cfg, 1, 1)
    assert m.grid == (pytest.approx(SHIFT), pytest.approx(OFFSET))
    feats = m.features(two_views(4), augment=False)
    targets = m.stacked_targets(feats, m.encoder.frame_count(16000))
    assert targets.shape == (8, 49, 80)  # 80 log-mel bins averaged onto 49 frames of 20 ms
    cnn = {k: v.clone() for k, v in m.encoder.model.feature_extractor.state_dict().items()}
    terms = fixed_batch_terms(m, feats, 20)
    assert set(terms) == {"frame", "phone", "utterance"}
    for name, values in terms.items():
        assert np.mean(values[-5:]) < np.mean(values[:5]), (name, values)
    for k, v in m.encoder.model.feature_extractor.state_dict().items():
        assert torch.equal(v, cnn[k]), k  # bit-identical: frozen
    cfg.encoder_settings = {**cfg.encoder_settings, "freeze_feature_encoder": False}
    m = MGFModule(cfg, 1, 1)
    fixed_batch_terms(m, feats, 1)
    conv = m.encoder.model.feature_extractor.conv_layers[0].conv.weight
    assert not torch.equal(conv, cnn["conv_layers.0.conv.weight"])  # the setting works


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_learn2diss_terms_fall_with_units_of_the_starting_checkpoint(checkpoints, model_type):
    torch.manual_seed(0)
    cfg = build_config(Learn2DissConfig, overrides=[
        "frame_encoder=hf", "features.kind=waveform", "utterance_input=frames",
        "utterance_encoder_settings={channels: 16, mfa_channels: 48, attention_channels: 8, "
        "se_channels: 8, embedding_dim: 16}", "projector_hidden=32", "projector_dim=16",
        "club_hidden=32", "n_clusters=8", "mask_span=3", "mask_prob=0.2", "cluster_iters=10",
        "cluster_source=start_layer", "cluster_layer=1"])
    cfg.frame_encoder_settings = {"path": str(checkpoints[model_type]), "embedding_dim": 16}
    m = Learn2DissModule(cfg, 1, 1)
    waves = two_views(4, seed=1)
    m.fit_codebook(list(waves))
    start = copy.deepcopy(m.unit_encoder.state_dict())
    feats = m.features(waves, augment=False)
    units = m.codebook.assign(m.unit_features(feats))
    assert units.shape == (8, 49)
    cnn = {k: v.clone() for k, v in m.dual.frame.model.feature_extractor.state_dict().items()}
    terms = fixed_batch_terms(m, feats, 20)
    assert set(terms) == {"frame", "utterance"}
    for name, values in terms.items():
        assert np.mean(values[-5:]) < np.mean(values[:5]), (name, values)
    # the units come from the checkpoint as the run started, not from the encoder training
    assert torch.equal(m.codebook.assign(m.unit_features(feats)), units)
    assert all(torch.equal(v, start[k]) for k, v in m.unit_encoder.state_dict().items())
    fresh = build_encoder("hf", path=str(checkpoints[model_type]), embedding_dim=16).eval()
    with torch.no_grad():
        ref = fresh(feats, return_layers=True).layers[1].frames
    torch.testing.assert_close(m.unit_features(feats), ref)
    for k, v in m.dual.frame.model.feature_extractor.state_dict().items():
        assert torch.equal(v, cnn[k]), k
    with pytest.raises(ConfigError, match="cluster_source"):
        build_config(Learn2DissConfig, overrides=["cluster_source=nope"])


# -- end to end --------------------------------------------------------------------------------
RUN = ["run.epochs=1", "run.max_steps=2", "run.batch_size=4", "run.num_workers=0",
       "run.tensorboard=false", "run.progress_bar=false", "run.babble_utterances=8",
       "run.precision=32-true", "run.accelerator=cpu", "run.devices=1", "eval_manifest=null",
       "trials=null"]


def onnx_parity(bundle, tmp_path, n_layers: int):
    """ONNX Runtime == PyTorch (1e-4) for the embedding and every frame layer."""
    pytest.importorskip("onnxruntime")
    from paravox.inference.onnx_export import OnnxEmbedder, export_onnx

    export_onnx(bundle, tmp_path / "model.onnx", frames="all")
    ort, pt = OnnxEmbedder(tmp_path / "model.onnx"), Embedder.from_bundle(bundle)
    wave = speechlike(1, 16000 + 77, seed=5)[0].numpy()
    a, b = ort.frames(wave), pt.frames(wave)
    assert list(a.layers) == list(b.layers) and len(a.layers) == n_layers
    np.testing.assert_allclose(a.embedding, b.embedding, rtol=1e-4, atol=1e-4)
    for k in b.layers:
        np.testing.assert_allclose(a.layers[k], b.layers[k], rtol=1e-4, atol=1e-4)


def check_bundle(bundle, tmp_path):
    emb = Embedder.from_bundle(bundle)
    wave = speechlike(1, seed=4)[0].numpy()
    ff = emb.frames(wave)
    assert list(ff.layers) == ["hidden0", "hidden1", "hidden2"]
    for k, a in ff.layers.items():  # 1 s: 49 frames of 20 ms, the first centred at 10.1 ms
        assert a.shape == (49, 32)
        assert ff.shift[k] == pytest.approx(SHIFT) and ff.offset[k] == pytest.approx(OFFSET)
    np.testing.assert_allclose(emb.embed(wave), ff.embedding, rtol=1e-4, atol=1e-5)
    onnx_parity(bundle, tmp_path, 3)


@pytest.mark.slow  # 15-25 s each (the ONNX export takes most of it)
@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_mgf_recipe_pretrain_export_frames_onnx(tiny_corpus, tmp_path, checkpoints, model_type):
    warnings.filterwarnings("ignore")
    root, _ = tiny_corpus
    run = tmp_path / "run"
    args = ["pretrain", "mgf_librispeech_wavlm", f"train_manifest={root}/pretrain.jsonl",
            f"out_dir={run}", *RUN, f"mgf.encoder_settings.path={checkpoints[model_type]}",
            "mgf.encoder_settings.gradient_checkpointing=false", "mgf.crops.long_seconds=1.0",
            "mgf.phone_negatives=0", "mgf.projector_hidden=32", "mgf.projector_dim=16",
            "mgf.phone_dim=16", "mgf.augment.noise_prob=0.0", "mgf.augment.reverb_prob=0.0"]
    assert main(args) == 0
    assert main(["export", str(run), "-o", str(tmp_path / "bundle")]) == 0
    check_bundle(tmp_path / "bundle", tmp_path)


@pytest.mark.slow  # 20-50 s each: two stages, the codebook, the ONNX export
@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_learn2diss_recipe_pretrain_export_frames_onnx(tiny_corpus, tmp_path, checkpoints,
                                                       model_type, capsys):
    warnings.filterwarnings("ignore")
    root, _ = tiny_corpus
    run = tmp_path / "run"
    args = ["pretrain", "learn2diss_librispeech_hubert", f"train_manifest={root}/pretrain.jsonl",
            f"out_dir={run}", *RUN,
            f"learn2diss.frame_encoder_settings.path={checkpoints[model_type]}",
            "learn2diss.frame_encoder_settings.gradient_checkpointing=false",
            "learn2diss.utterance_encoder_settings={channels: 16, embedding_dim: 16}",
            "learn2diss.n_clusters=8", "learn2diss.cluster_layer=1",
            "learn2diss.cluster_utterances=8", "learn2diss.crops.long_seconds=1.0",
            "learn2diss.projector_hidden=32", "learn2diss.projector_dim=16",
            "learn2diss.club_hidden=32", "learn2diss.mask_span=3",
            "learn2diss.augment.noise_prob=0.0", "learn2diss.augment.reverb_prob=0.0",
            "stages=[{name: independent, set: [learn2diss.mi_weight=0.0]}, {name: joint, "
            "set: [learn2diss.mi_weight=0.1]}]"]
    assert main(args) == 0
    assert main(["export", str(run), "-o", str(tmp_path / "bundle")]) == 0
    check_bundle(tmp_path / "bundle", tmp_path)
    # no standalone utterance bundle: the utterance encoder reads the frame encoder's layers
    assert main(["export", str(run), "--which", "utterance", "-o", str(tmp_path / "u")]) == 2
    assert "exports ['both', 'frame']" in capsys.readouterr().err


# -- the studies' frame-encoder setting ---------------------------------------------------
@pytest.mark.parametrize("section,recipe", [("mgf", "mgf_demo"),
                                            ("learn2diss", "learn2diss_demo")])
def test_study_frame_encoder_choice_builds(tmp_path, checkpoints, section, recipe):
    """``--frame-encoder``: a random transformers model of the study's size, or a checkpoint
    folder (fine-tuning lr, Learn2Diss units from its layer at three quarters of the depth);
    the recipe written for it trains that encoder on the waveform."""
    from paravox.pipelines.frame_encoder_choice import keep_overrides, swap_frame_encoder
    from paravox.pipelines.learn2diss_study import PRESETS as L2D_PRESETS
    from paravox.pipelines.mgf_study import PRESETS as MGF_PRESETS
    from paravox.training.recipes import build_module, load_recipe

    assert swap_frame_encoder(recipe, section, None, "tiny", tmp_path) == recipe
    tiny = (MGF_PRESETS if section == "mgf" else L2D_PRESETS)["tiny"]
    overrides = tiny.mgf if section == "mgf" else tiny.overrides
    kept = keep_overrides(overrides, section, "wavlm")
    assert len(kept) == len(overrides) - 1 and keep_overrides(overrides, section, None) == \
        overrides
    for choice in ("wavlm", str(checkpoints["hubert"])):
        path = swap_frame_encoder(recipe, section, choice, "tiny", tmp_path)
        rec = load_recipe(path, [f"out_dir={tmp_path / 'run'}", *kept])
        cfg = rec.method_config
        assert cfg.features.kind == "waveform"
        if section == "learn2diss":
            assert cfg.utterance_input == "frames"
            assert cfg.cluster_source == ("logmel" if choice == "wavlm" else "start_layer")
        module = build_module(rec, type("M", (), {"__len__": lambda self: 8})())
        enc = module.encoder if section == "mgf" else module.dual.frame
        assert enc.model.config.model_type == ("wavlm" if choice == "wavlm" else "hubert")
        assert enc.frame_count(16000) == 49
        assert (cfg.optim.layer_decay == 0.75) is (choice != "wavlm")
    with pytest.raises(ConfigError, match="--frame-encoder nope"):
        swap_frame_encoder(recipe, section, "nope", "tiny", tmp_path)
