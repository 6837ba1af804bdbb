"""Frame-level outputs of every encoder (``return_layers=True``): where each layer's frames
sit in time (golden test: perturb one input frame, find what changes), shapes and lengths of
padded batches, consistency with the existing ``frames`` output, outputs unchanged without
it; ``frames_at``; and ``Embedder.frames``."""

import numpy as np
import pytest
import torch

from paravox.models import build_encoder
from paravox.models.base import FrameLayer, frames_at

ENCODERS = {  # small but complete: every layer kind of the full-size models
    "ecapa": ({"channels": 32, "mfa_channels": 96, "se_channels": 16,
               "attention_channels": 16, "scale": 4, "embedding_dim": 16}, 24),
    "xvector": ({"channels": 32, "stats_channels": 64, "embedding_dim": 16}, 24),
    "resnet34": ({"base_channels": 4, "blocks": [2, 2, 2, 2], "embedding_dim": 16}, 16),
}
NAMES = {"ecapa": ["stem", "block1", "block2", "block3", "mfa"],
         "xvector": ["tdnn1", "tdnn2", "tdnn3", "tdnn4", "tdnn5"],
         "resnet34": ["stem", "stage1", "stage2", "stage3", "stage4"]}


def encoder(name, seed=0):
    settings, n_mels = ENCODERS[name]
    torch.manual_seed(seed)
    return build_encoder(name, n_mels=n_mels, **settings).eval(), n_mels


@pytest.mark.parametrize("name", list(ENCODERS))
@pytest.mark.parametrize("shift_j", [0, 1])  # an even and an odd input frame
def test_changed_region_is_centred_where_the_layer_says(name, shift_j):
    """Perturb input frame j; in each layer, the frames that change (above 5 % of the largest
    change: ECAPA's squeeze-excitation leaks a tiny utterance-wide change) are centred at
    the time of input frame j, ``j * 10 ms``, to within one output frame."""
    enc, n_mels = encoder(name)
    t, j = 800, 400 + shift_j
    x = torch.randn(1, t, n_mels, generator=torch.Generator().manual_seed(1))
    x2 = x.clone()
    x2[0, j] += 3.0
    with torch.no_grad():
        a, b = enc(x, return_layers=True), enc(x2, return_layers=True)
    assert [la.name for la in a.layers] == NAMES[name]
    for la, lb in zip(a.layers, b.layers):
        change = (la.frames - lb.frames).abs().amax(-1)[0]
        changed = torch.nonzero(change > 0.05 * change.max()).flatten()
        centre = (changed[0] + changed[-1]).item() / 2
        predicted = (j * 0.01 - la.offset) / la.shift  # output frame index of input frame j
        assert abs(centre - predicted) <= 1.0, (la.name, centre, predicted)
        assert la.times()[int(round(predicted))] == pytest.approx(j * 0.01, abs=la.shift)


def test_layer_timing_values():
    """Offsets and shifts in seconds: x-vector frames lose half each layer's context on the
    left; ResNet stages halve the frame rate with frame 0 still on input frame 0."""
    xv, _ = encoder("xvector")
    res, _ = encoder("resnet34")
    with torch.no_grad():
        lx = xv(torch.randn(1, 100, 24), return_layers=True).layers
        lr = res(torch.randn(1, 100, 16), return_layers=True).layers
    assert [la.offset for la in lx] == pytest.approx([0.02, 0.04, 0.07, 0.07, 0.07])
    assert all(la.shift == pytest.approx(0.01) for la in lx)
    assert [la.shift for la in lr] == pytest.approx([0.01, 0.01, 0.02, 0.04, 0.08])
    assert all(la.offset == 0 for la in lr)
    xv.input_frame_shift = 0.02  # e.g. a 20 ms hop: every time scales
    with torch.no_grad():
        l2 = xv(torch.randn(1, 100, 24), return_layers=True).layers
    assert l2[2].offset == pytest.approx(0.14) and l2[2].shift == pytest.approx(0.02)


@pytest.mark.parametrize("name", list(ENCODERS))
def test_shapes_lengths_and_padding(name):
    enc, n_mels = encoder(name)
    lengths = torch.tensor([300, 211])
    x = torch.randn(2, 300, n_mels)
    x[1, 211:] = 0
    with torch.no_grad():
        out = enc(x, lengths, return_layers=True)
        alone = enc(x[1:, :211], return_layers=True)
    for la, single in zip(out.layers, alone.layers):
        assert la.frames.ndim == 3 and la.frames.shape[0] == 2
        assert la.lengths is not None and la.lengths[0] == la.frames.shape[1]
        if name == "xvector":  # no padding: lengths lose the context seen so far
            ctx = round(2 * la.offset / 0.01)
            assert la.lengths.tolist() == [300 - ctx, 211 - ctx]
        elif name == "ecapa":
            assert la.lengths.tolist() == [300, 211]
        else:
            step = round(la.shift / 0.01)
            assert la.lengths.tolist() == [-(-300 // step), -(-211 // step)]
        assert la.lengths[1] == single.frames.shape[1]
        assert single.lengths is None
        # frames well inside the valid part do not see the padding: equal to the wave alone
        inner = int(la.lengths[1]) - int(np.ceil(100 * 0.01 / la.shift))
        torch.testing.assert_close(la.frames[1, :inner], single.frames[0, :inner],
                                   atol=1e-4, rtol=1e-4)
    last = out.layers[-1]  # the last layer is the existing frame output
    torch.testing.assert_close(last.frames, out.frames)
    assert torch.equal(last.lengths, out.frame_lengths)


@pytest.mark.parametrize("name", list(ENCODERS))
def test_return_layers_false_leaves_outputs_unchanged(name):
    enc, n_mels = encoder(name)
    x, lengths = torch.randn(2, 160, n_mels), torch.tensor([160, 120])
    with torch.no_grad():
        plain, full = enc(x, lengths), enc(x, lengths, return_layers=True)
        if name == "resnet34":  # the forward as it was before frame outputs
            h = enc.layers(enc.stem(x.transpose(1, 2)[:, None]))
            frames = h.reshape(2, -1, h.shape[-1])
            ref_lengths = -(-lengths // enc.downsample)
            ref = enc.embed(enc.pool(frames, ref_lengths))
        elif name == "xvector":
            frames = enc.frame_layers(x.transpose(1, 2))
            ref_lengths = (lengths - enc.context).clamp(min=1)
            ref = enc.embed(enc.pool(frames, ref_lengths))
        else:
            frames, ref, ref_lengths = plain.frames.transpose(1, 2), plain.embedding, lengths
    assert plain.layers is None
    assert torch.equal(plain.embedding, full.embedding) and torch.equal(plain.frames,
                                                                        full.frames)
    torch.testing.assert_close(plain.embedding, ref)
    torch.testing.assert_close(plain.frames, frames.transpose(1, 2))
    assert torch.equal(plain.frame_lengths, ref_lengths)


def test_projected_encoder_returns_the_base_layers():
    torch.manual_seed(0)
    enc = build_encoder("projected", base="ecapa", base_settings=ENCODERS["ecapa"][0],
                        dims=[8, 8], n_mels=24).eval()
    x = torch.randn(1, 120, 24)
    with torch.no_grad():
        out = enc(x, return_layers=True)
        base = enc.base(x, return_layers=True)
    assert [la.name for la in out.layers] == NAMES["ecapa"]
    for la, lb in zip(out.layers, base.layers):
        torch.testing.assert_close(la.frames, lb.frames)
    enc.input_frame_shift = 0.02  # forwarded to the base encoder
    assert enc.base.input_frame_shift == 0.02
    with torch.no_grad():
        assert enc(x, return_layers=True).layers[0].shift == pytest.approx(0.02)


def test_frames_at_nearest_and_clamped():
    layer = FrameLayer("x", torch.zeros(2, 10, 3), torch.tensor([10, 4]), 0.02, 0.005)
    assert layer.times(3) == pytest.approx([0.005, 0.025, 0.045])
    t = np.array([-1.0, 0.0, 0.016, 0.014, 0.1, 5.0])
    np.testing.assert_array_equal(frames_at(layer, t, item=0), [0, 0, 1, 0, 5, 9])
    np.testing.assert_array_equal(frames_at(layer, t, item=1), [0, 0, 1, 0, 3, 3])
    both = frames_at(layer, t)
    assert both.shape == (2, 6) and both[1].tolist() == [0, 0, 1, 0, 3, 3]
    free = FrameLayer("x", torch.zeros(1, 10, 3), None, 0.02, 0.005)
    idx = frames_at(free, torch.tensor([0.1, 9.0]))
    assert isinstance(idx, torch.Tensor) and idx.tolist() == [5, 9]
    # every 10 ms label frame of a 20 ms layer goes to a frame whose centre is <= 10 ms away
    labels = np.arange(20) * 0.01  # inside the layer (its last frame is at 0.185 s)
    near = free.times()[frames_at(free, labels)]
    assert np.all(np.abs(near - labels) <= 0.01 + 1e-12)


def test_embedder_frames_and_layer_names(tmp_path):
    from paravox.inference import Embedder
    from paravox.inference.bundle import random_bundle

    settings, n_mels = ENCODERS["xvector"]
    bundle = random_bundle("xvector", settings, {"n_mels": n_mels}, tmp_path / "b")
    emb = Embedder.from_bundle(bundle)
    assert emb.layer_names == NAMES["xvector"]
    wave = (np.random.default_rng(0).standard_normal(16000) * 0.1).astype(np.float32)
    ff = emb.frames(wave)
    assert list(ff.layers) == NAMES["xvector"]
    np.testing.assert_allclose(ff.embedding, emb.embed(wave), rtol=1e-5, atol=1e-6)
    assert ff.layers["tdnn1"].shape == (101 - 4, 32) and ff.layers["tdnn5"].shape[1] == 64
    assert ff.offset["tdnn3"] == pytest.approx(0.07) and ff.shift["tdnn3"] == 0.01
    assert ff.times("tdnn3")[0] == pytest.approx(0.07)
    assert list(emb.frames(wave, layers=-1).layers) == ["tdnn5"]
    assert list(emb.frames(wave, layers=[0, "tdnn3"]).layers) == ["tdnn1", "tdnn3"]
    from paravox.errors import ConfigError

    with pytest.raises(ConfigError, match="tdnn9"):
        emb.frames(wave, layers=["tdnn9"])
    with pytest.raises(ConfigError, match="out of range"):
        emb.frames(wave, layers=7)


def test_hf_layers_timing_from_the_conv_stack():
    """All hidden states, shift = product of strides, offset = half the receptive field;
    golden: perturbing one sample changes the CNN frames centred there."""
    pytest.importorskip("transformers")
    from paravox.models.hf import conv_frame_timing

    assert conv_frame_timing([10, 3, 3, 3, 3, 2, 2], [5, 2, 2, 2, 2, 2, 2]) == (320, 199.5)
    tiny = {"model_type": "wav2vec2", "hidden_size": 16, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 32, "conv_dim": [16, 16],
            "conv_kernel": [10, 3], "conv_stride": [5, 2], "num_conv_pos_embeddings": 16,
            "num_conv_pos_embedding_groups": 2, "feat_extract_norm": "layer"}
    torch.manual_seed(0)
    enc = build_encoder("hf", hf_config=tiny, layers="last", embedding_dim=8).eval()
    wave = torch.randn(2, 4000)
    with torch.no_grad():
        out = enc(wave[..., None], torch.tensor([4000, 3000]), return_layers=True)
    assert [la.name for la in out.layers] == ["hidden0", "hidden1", "hidden2"]
    shift, offset = 10 / 16000, (1 + 9 + 2 * 5 - 1) / 2 / 16000
    for la in out.layers:
        assert la.shift == pytest.approx(shift) and la.offset == pytest.approx(offset)
        assert torch.equal(la.lengths, out.frame_lengths)
    torch.testing.assert_close(out.layers[-1].frames, out.frames)
    j = 2001
    w2 = wave[:1].clone()
    w2[0, j] += 1.0
    with torch.no_grad():
        change = (enc.model.feature_extractor(w2) - enc.model.feature_extractor(wave[:1]))
    change = change.abs().amax(1)[0]
    changed = torch.nonzero(change > 0).flatten()
    centre = (changed[0] + changed[-1]).item() / 2
    assert abs(centre - (j / 16000 - offset) / shift) <= 1.0
