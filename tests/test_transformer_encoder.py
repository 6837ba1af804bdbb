"""The frame-level Transformer encoder ("transformer"): shapes and subsampled lengths, padding
invariance, the mask embedding, per-layer frame outputs (also through the shared frame-output
tests), layer groups, the registry, a bundle round trip and ONNX export with dynamic length."""

import warnings

import numpy as np
import pytest
import torch

import test_frame_outputs as shared
from paravox.errors import ConfigError
from paravox.models import ENCODERS, build_encoder
from paravox.models.transformer import FrameTransformer, TransformerConfig

SMALL = {"dim": 32, "layers": 2, "heads": 4, "ff_dim": 64, "embedding_dim": 8,
         "attention_channels": 8}
N_MELS = 24


def tiny(seed=0, **settings):
    torch.manual_seed(seed)
    return build_encoder("transformer", n_mels=N_MELS, **{**SMALL, **settings}).eval()


def names(layers=SMALL["layers"]):
    return ["input"] + [f"layer{i}" for i in range(1, layers + 1)]


@pytest.mark.parametrize("subsample", [1, 2, 3])
def test_shapes_and_subsampled_lengths(subsample):
    enc = tiny(subsample=subsample)
    x, lengths = torch.randn(3, 101, N_MELS), torch.tensor([101, 80, 7])
    with torch.no_grad():
        out = enc(x, lengths)
    t2 = -(-101 // subsample)
    assert enc.frame_count(101) == t2 and enc.frame_count(100) == -(-100 // subsample)
    assert out.embedding.shape == (3, 8) == (3, enc.embedding_dim)
    assert out.frames.shape == (3, t2, 32)
    expected = [-(-n // subsample) for n in (101, 80, 7)]
    assert out.frame_lengths.tolist() == expected == enc.frame_lengths(lengths).tolist()
    assert enc.frame_lengths(None) is None
    with torch.no_grad():
        assert enc(x).frame_lengths is None


@pytest.mark.parametrize("settings", [
    {}, {"subsample": 2}, {"subsample": 3, "conv_pos_kernel": 0},
    {"norm_first": False, "pooling": "mean", "conv_pos_kernel": 8}])
def test_padding_never_reaches_valid_frames(settings):
    """A padded batch (junk in the padding) gives each utterance's valid frames, every layer
    and the embedding exactly as the utterance alone (eval mode)."""
    enc = tiny(**settings)
    lengths = torch.tensor([90, 61, 33])
    x = torch.randn(3, 90, N_MELS)
    for i, n in enumerate(lengths.tolist()):
        x[i, n:] = 50 * torch.randn(90 - n, N_MELS)  # junk: must not matter
    with torch.no_grad():
        out = enc(x, lengths, return_layers=True)
        for i, n in enumerate(lengths.tolist()):
            alone = enc(x[i:i + 1, :n], return_layers=True)
            n2 = enc.frame_count(n)
            assert alone.frames.shape[1] == n2 == out.frame_lengths[i]
            torch.testing.assert_close(out.frames[i, :n2], alone.frames[0], atol=1e-5,
                                       rtol=1e-5)
            torch.testing.assert_close(out.embedding[i], alone.embedding[0], atol=1e-5,
                                       rtol=1e-5)
            for la, lb in zip(out.layers, alone.layers):
                torch.testing.assert_close(la.frames[i, :n2], lb.frames[0], atol=1e-5,
                                           rtol=1e-5)


def test_mask_replaces_only_the_masked_input_frames():
    enc = tiny(subsample=2)
    x = torch.randn(2, 60, N_MELS)
    mask = torch.zeros(2, enc.frame_count(60), dtype=torch.bool)
    mask[0, 5:10] = True
    mask[1, 20:22] = True
    with torch.no_grad():
        plain = enc(x, return_layers=True)
        masked = enc(x, return_layers=True, mask=mask)
    inp, ref = masked.layers[0].frames, plain.layers[0].frames
    assert masked.layers[0].name == "input"
    torch.testing.assert_close(inp[mask], enc.mask_emb.detach().expand(int(mask.sum()), -1))
    assert torch.equal(inp[~mask], ref[~mask])  # unmasked inputs untouched before attention
    assert (masked.frames[mask] - plain.frames[mask]).abs().amax(-1).min() > 1e-3
    # the mask embedding is learned: masked prediction's loss reaches it
    enc.train()
    enc(x, mask=mask).frames[mask].square().sum().backward()
    assert enc.mask_emb.grad is not None and enc.mask_emb.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="frame_count"):
        enc(x, mask=torch.zeros(2, 60, dtype=torch.bool))  # the 10 ms grid, not T'


@pytest.mark.parametrize("subsample, shift, offset", [(1, 0.01, 0.0), (2, 0.02, 0.005)])
def test_return_layers_names_and_timing(subsample, shift, offset):
    enc = tiny(subsample=subsample, layers=3)
    x, lengths = torch.randn(2, 80, N_MELS), torch.tensor([80, 51])
    with torch.no_grad():
        plain = enc(x, lengths)
        out = enc(x, lengths, return_layers=True)
    assert plain.layers is None
    assert [la.name for la in out.layers] == names(3)
    for la in out.layers:
        assert la.shift == pytest.approx(shift) and la.offset == pytest.approx(offset)
        assert torch.equal(la.lengths, out.frame_lengths) and la.frames.shape == out.frames.shape
    assert torch.equal(out.layers[-1].frames, out.frames)
    assert torch.equal(plain.frames, out.frames) and torch.equal(plain.embedding, out.embedding)
    # golden: perturbing input frame j changes only the input-layer frame centred there
    j = 41
    x2 = x.clone()
    x2[0, j] += 3.0
    with torch.no_grad():
        a, b = enc(x[:1], return_layers=True), enc(x2[:1], return_layers=True)
    changed = torch.nonzero((a.layers[0].frames - b.layers[0].frames).abs().amax(-1)[0] > 0)
    assert changed.flatten().tolist() == [j // subsample]
    assert abs(a.layers[0].times()[j // subsample] - j * 0.01) <= shift / 2 + 1e-12


@pytest.fixture
def shared_tests(monkeypatch):
    """The frame-output tests every encoder passes, with the transformer added to them."""
    def register(settings):
        monkeypatch.setitem(shared.ENCODERS, "transformer", ({**SMALL, **settings}, N_MELS))
        monkeypatch.setitem(shared.NAMES, "transformer", names())
        return shared
    return register


@pytest.mark.parametrize("subsample", [1, 2])
def test_shared_shapes_lengths_and_padding(shared_tests, subsample):
    shared_tests({"subsample": subsample}).test_shapes_lengths_and_padding("transformer")


def test_shared_return_layers_false_leaves_outputs_unchanged(shared_tests):
    shared_tests({}).test_return_layers_false_leaves_outputs_unchanged("transformer")


def test_registry_config_and_errors():
    assert ENCODERS["transformer"] == (FrameTransformer, TransformerConfig)
    enc = build_encoder("transformer")
    assert isinstance(enc, FrameTransformer) and enc.embedding_dim == 192
    assert enc.pos_conv.conv.groups == 16 and enc.pos_conv.conv.kernel_size == (31,)
    assert len(enc.blocks) == 4
    assert TransformerConfig(dim=24, heads=4).pos_groups() == 12  # largest divisor <= 16
    assert TransformerConfig(dim=20, heads=4).pos_groups() == 10
    assert tiny(conv_pos_kernel=0).pos_conv is None
    from paravox.utils.config import build_config

    cfg = build_config(TransformerConfig, overrides=["conv_pos_groups=4", "subsample=2"])
    assert cfg.conv_pos_groups == 4 and cfg.subsample == 2
    with pytest.raises(ConfigError, match="encoder 'transformer'.*dims"):
        build_encoder("transformer", dims=4)
    for bad, match in [({"dim": 30, "heads": 4}, "heads"), ({"conv_pos_groups": 5}, "divide"),
                       ({"pooling": "max"}, "pooling"), ({"subsample": 0}, "subsample")]:
        with pytest.raises(ConfigError, match=match):
            build_encoder("transformer", **bad)


@pytest.mark.parametrize("norm_first", [True, False])
def test_layer_groups_and_gradients(norm_first):
    from paravox.transfer.two_step import set_trainable_layers

    enc = tiny(norm_first=norm_first, layers=3).train()
    groups = enc.layer_groups()
    assert len(groups) == 3 + 2  # input side, three blocks, head
    assert groups[0][:3] == ["proj.", "proj_norm.", "mask_emb"] and groups[1] == ["blocks.0."]
    assert ("final_norm." in groups[-2]) == norm_first
    assert groups[-1] == ["pool.", "embed.", "embed_norm."]
    param_names = [n for n, _ in enc.named_parameters()]
    owners = [sum(n.startswith(p) for g in groups for p in g) for n in param_names]
    assert owners == [1] * len(param_names)  # every parameter in exactly one group
    x, lengths = torch.randn(3, 40, N_MELS), torch.tensor([40, 30, 12])
    mask = torch.zeros(3, 40, dtype=torch.bool)
    mask[:, 3:6] = True
    out = enc(x, lengths, mask=mask)
    (out.embedding.square().sum() + out.frames.square().mean()).backward()
    assert [n for n, p in enc.named_parameters() if p.grad is None] == []
    set_trainable_layers(enc, 1)
    top = tuple(groups[-2] + groups[-1])
    assert {n for n, p in enc.named_parameters() if p.requires_grad} == {
        n for n in param_names if n.startswith(top)}


def test_bundle_round_trip_and_embedder_frames(tmp_path):
    from paravox.inference import Embedder
    from paravox.inference.bundle import random_bundle

    bundle = random_bundle("transformer", {**SMALL, "subsample": 2}, {"n_mels": N_MELS},
                           tmp_path / "b")
    emb = Embedder.from_bundle(bundle)
    assert emb.dim == 8 and emb.layer_names == names()
    wave = (np.random.default_rng(0).standard_normal(16000) * 0.1).astype(np.float32)
    ff = emb.frames(wave)
    assert list(ff.layers) == names()
    assert all(f.shape == (51, 32) for f in ff.layers.values())  # 101 log-mel frames / 2
    assert ff.shift["layer2"] == pytest.approx(0.02)
    assert ff.offset["input"] == pytest.approx(0.005)
    np.testing.assert_allclose(ff.embedding, emb.embed(wave), rtol=1e-5, atol=1e-6)


def test_onnx_export_dynamic_length_matches_pytorch(tmp_path):
    """Embedding-only and ``frames="all"`` graphs: ONNX Runtime == PyTorch at batch sizes and
    lengths not used at export (the exporter's example is 2 s), odd frame counts included."""
    pytest.importorskip("onnxruntime")
    from paravox.inference import Embedder
    from paravox.inference.bundle import random_bundle
    from paravox.inference.onnx_export import OnnxEmbedder, export_onnx

    warnings.filterwarnings("ignore")
    rng = np.random.default_rng(3)
    plain = random_bundle("transformer", {**SMALL, "conv_pos_kernel": 0}, {"n_mels": N_MELS},
                          tmp_path / "plain")
    onnx_plain = OnnxEmbedder(export_onnx(plain, tmp_path / "plain.onnx"))
    torch_plain = Embedder.from_bundle(plain)
    waves = (rng.standard_normal((3, 16000 * 3 + 77)) * 0.1).astype(np.float32)
    np.testing.assert_allclose(onnx_plain.embed(waves), torch_plain.embed(list(waves)),
                               rtol=1e-4, atol=1e-4)

    bundle = random_bundle("transformer", {**SMALL, "subsample": 2}, {"n_mels": N_MELS},
                           tmp_path / "b")
    export_onnx(bundle, frames="all")
    torch_emb, onnx_emb = Embedder.from_bundle(bundle), OnnxEmbedder(bundle)
    assert onnx_emb.layer_names == torch_emb.layer_names == names()
    for batch, n in ((2, 16000 * 3 + 77), (1, 9000)):  # 301 and 57 log-mel frames: odd
        got = onnx_emb.frames(waves[:batch, :n])
        got = got if isinstance(got, list) else [got]
        for wave, g in zip(waves[:batch, :n], got):
            ref = torch_emb.frames(wave)
            np.testing.assert_allclose(g.embedding, ref.embedding, rtol=1e-4, atol=1e-4)
            for name in names():
                assert g.layers[name].shape == ref.layers[name].shape == ((n // 160 + 2) // 2,
                                                                          32)
                np.testing.assert_allclose(g.layers[name], ref.layers[name], rtol=1e-4,
                                           atol=1e-4)
                assert (g.shift[name], g.offset[name]) == (ref.shift[name], ref.offset[name])
