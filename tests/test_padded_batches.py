"""Padded batches of unequal utterances give each utterance its own forward's output.

Golden values are one forward per utterance (no padding); the batched paths (encoders with
``lengths``, Embedder lists, embed_manifest, fine-tuning's posteriors) must match them.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from paravox.audio.io import load_audio
from paravox.data.manifest import Manifest, write_manifest
from paravox.inference import Embedder
from paravox.inference.batching import length_batches, padded_features
from paravox.inference.bundle import random_bundle
from paravox.inference.embedder import embed_manifest
from paravox.models.ecapa import ECAPATDNN, ECAPAConfig
from paravox.models.tdnn import TDNNConfig, XVector
from paravox.models.transformer import FrameTransformer, TransformerConfig
from paravox.transfer.finetune import predict_proba

SMALL_ECAPA = {"channels": 32, "mfa_channels": 96, "se_channels": 16,
               "attention_channels": 16, "embedding_dim": 24}
SMALL_XVECTOR = {"channels": 24, "stats_channels": 48, "embedding_dim": 20}


def warmed(encoder: nn.Module, n_mels: int) -> nn.Module:
    """``encoder`` with random batch-norm statistics (two training forwards), in eval mode:
    BN's running statistics then differ from the identity, as after training."""
    torch.manual_seed(1)
    encoder.train()
    with torch.no_grad():
        for _ in range(2):
            encoder(torch.randn(4, 90, n_mels) * 3 + 1)
    return encoder.eval()


@pytest.mark.parametrize("build", [
    lambda: ECAPATDNN(ECAPAConfig(n_mels=20, **SMALL_ECAPA)),
    lambda: XVector(TDNNConfig(n_mels=20, **SMALL_XVECTOR)),
    lambda: FrameTransformer(TransformerConfig(n_mels=20, dim=32, layers=2, heads=4,
                                               ff_dim=64, embedding_dim=8)),
], ids=["ecapa", "xvector", "transformer"])
def test_a_padded_batch_gives_each_utterance_its_own_embedding(build):
    encoder = warmed(build(), 20)
    assert encoder.pads_exactly
    torch.manual_seed(2)
    lengths = [57, 123, 80, 31]
    singles = [torch.randn(1, n, 20) for n in lengths]
    # garbage, not zeros, past each end: the encoder must mask it itself
    batch = torch.randn(len(lengths), max(lengths), 20) * 5
    for i, x in enumerate(singles):
        batch[i, :lengths[i]] = x[0]
    with torch.no_grad():
        want = torch.cat([encoder(x).embedding for x in singles])
        got = encoder(batch, torch.tensor(lengths)).embedding
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_ecapa_without_its_padding_masks_would_differ():
    """The check above can fail: ECAPA's Res2 convolutions read past an utterance's end,
    so the same batch without ``lengths`` (padding read as frames) gives other
    embeddings."""
    encoder = warmed(ECAPATDNN(ECAPAConfig(n_mels=20, **SMALL_ECAPA)), 20)
    torch.manual_seed(2)
    short = torch.randn(1, 40, 20)
    padded = torch.cat([short, torch.zeros(1, 60, 20)], dim=1)
    with torch.no_grad():
        own = encoder(short).embedding
        assert torch.allclose(encoder(padded, torch.tensor([40])).embedding, own,
                              rtol=1e-4, atol=1e-5)
        assert not torch.allclose(encoder(padded).embedding, own, rtol=1e-2, atol=1e-3)


def test_length_batches_cover_every_item_once_within_their_limits():
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 3000, 200).tolist() + [50_000]
    batches = length_batches(sizes, batch_size=16, max_frames=24_000)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(sizes)))
    for b in batches:
        assert len(b) <= 16
        longest = max(sizes[i] for i in b)
        assert sizes[b[0]] == longest  # longest first
        assert len(b) == 1 or longest * len(b) <= 24_000
    assert [50_000 in [sizes[i] for i in b] for b in batches].count(True) == 1
    assert len(next(b for b in batches if sizes[b[0]] == 50_000)) == 1  # alone
    assert length_batches([]) == []


@pytest.fixture(scope="module")
def ecapa_embedder(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle")
    bundle = random_bundle("ecapa", SMALL_ECAPA, {"n_mels": 40}, out / "ecapa", seed=3)
    emb = Embedder.from_bundle(bundle)
    warmed(emb.encoder, 40)
    return emb


def test_embed_manifest_in_batches_equals_one_forward_per_utterance(tiny_corpus,
                                                                    ecapa_embedder):
    root, _ = tiny_corpus
    manifest = Manifest.load(root / "test.jsonl")
    emb = ecapa_embedder
    assert emb.batches_whole
    got = embed_manifest(emb, manifest, progress=False)
    assert list(got) == [r.id for r in manifest]  # manifest order
    for r in manifest:
        wave = load_audio(manifest.audio_path(r), r.offset, r.duration)
        want = emb._embed_wave(wave, None, 1, r.id)
        np.testing.assert_allclose(got[r.id], want, rtol=1e-4, atol=1e-5)
    # a list given to embed(): the same
    waves = [load_audio(manifest.audio_path(r), r.offset, r.duration) for r in manifest][:5]
    listed = emb.embed(waves, sample_rate=16000)
    np.testing.assert_allclose(listed, np.stack([got[r.id] for r in manifest.rows[:5]]),
                               rtol=1e-4, atol=1e-5)


def test_a_batch_with_an_unembeddable_row_names_it_and_embeds_the_rest(tiny_corpus,
                                                                       ecapa_embedder,
                                                                       tmp_path):
    """``short="error"``: a too-short row in a window fails alone (skip mode lists it)."""
    import soundfile as sf  # noqa: PLC0415

    root, _ = tiny_corpus
    manifest = Manifest.load(root / "test.jsonl")
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(100, dtype=np.float32) + 0.1, 16000)
    rows = [dataclasses.replace(r, path=str(manifest.audio_path(r)))
            for r in manifest.rows[:4]]
    rows.insert(2, dataclasses.replace(rows[0], id="too_short", path=str(short),
                                       duration=None, offset=0.0))
    write_manifest(rows, tmp_path / "m.jsonl")
    strict = Embedder(ecapa_embedder.encoder, ecapa_embedder.fbank, short="error")
    want = {r.id: strict._embed_wave(load_audio(r.path, r.offset, r.duration), None, 1, r.id)
            for r in rows if r.id != "too_short"}
    good, bad = embed_manifest(strict, Manifest.load(tmp_path / "m.jsonl"), progress=False,
                               on_error="skip", max_bad_fraction=0.5)
    assert [b.id for b in bad] == ["too_short"] and "too_short" in bad[0].reason
    assert list(good) == list(want)
    for k, v in want.items():
        np.testing.assert_allclose(good[k], v, rtol=1e-4, atol=1e-5)


def test_finetuned_posteriors_in_batches_equal_one_forward_each(ecapa_embedder):
    class Net(nn.Module):
        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder
            self.classifier = nn.Module()
            self.classifier.linear = nn.Linear(encoder.embedding_dim, 5)

        def forward(self, feats, lengths=None):
            return self.classifier.linear(self.encoder(feats, lengths).embedding)

    torch.manual_seed(4)
    net = Net(ecapa_embedder.encoder).eval()
    rng = np.random.default_rng(5)
    waves = [rng.standard_normal(n).astype(np.float32) * 0.1
             for n in (16000, 9000, 23000, 5000, 12345)]
    fbank = ecapa_embedder.fbank
    batched = predict_proba(net, fbank, waves)
    single = predict_proba(net, fbank, waves, batch=False)
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(batched.sum(1), 1.0, rtol=1e-5)
    feats, lengths = padded_features(fbank, waves, torch.device("cpu"))
    assert feats.shape[0] == 5 and lengths.tolist() == [len(w) // 160 + 1 for w in waves]


@pytest.mark.parametrize("encoder", ["ecapa", "xvector"])
def test_frames_of_many_utterances_equal_each_alone(encoder, tmp_path):
    settings = SMALL_ECAPA if encoder == "ecapa" else SMALL_XVECTOR
    emb = Embedder.from_bundle(random_bundle(encoder, settings, {"n_mels": 40},
                                             tmp_path / encoder, seed=6))
    warmed(emb.encoder, 40)
    rng = np.random.default_rng(7)
    waves = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (8000, 16000, 3000, 11111)]
    many = emb.frames_many(waves, layers="all")
    for wave, got in zip(waves, many):
        want = emb.frames(wave, "all", sample_rate=16000)
        assert list(got.layers) == list(want.layers) == emb.layer_names
        np.testing.assert_allclose(got.embedding, want.embedding, rtol=1e-4, atol=1e-5)
        for name, frames in want.layers.items():
            assert got.layers[name].shape == frames.shape, name
            np.testing.assert_allclose(got.layers[name], frames, rtol=1e-4, atol=1e-5)
            assert got.shift[name] == want.shift[name]
            assert got.offset[name] == want.offset[name]
