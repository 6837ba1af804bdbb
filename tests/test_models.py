"""Encoders: shapes, parameter counts against the published ones, masked pooling golden tests."""

import numpy as np
import pytest
import torch

from paravox.errors import ConfigError
from paravox.models import build_encoder, count_parameters
from paravox.models.pooling import AttentiveStatsPool, StatsPool


@pytest.mark.parametrize("name, settings, dim, params_m", [
    ("ecapa", {"channels": 512}, 192, 6.2),  # Desplanques et al. 2020, Table 1: 6.2 M
    ("ecapa", {"channels": 1024}, 192, 14.7),  # ... 14.7 M
    ("resnet34", {"base_channels": 32}, 256, 6.63),  # WeSpeaker ResNet34: 6.63 M
    ("xvector", {}, 512, 4.35),  # Snyder et al. 2018 topology with 80 log-mels
])
def test_shapes_and_parameter_counts(name, settings, dim, params_m):
    enc = build_encoder(name, **settings).eval()
    out = enc(torch.randn(3, 150, 80))
    assert out.embedding.shape == (3, dim) == (3, enc.embedding_dim)
    assert out.frames.ndim == 3 and out.frames.shape[0] == 3
    assert count_parameters(enc) / 1e6 == pytest.approx(params_m, abs=0.05)


@pytest.mark.parametrize("name", ["xvector", "ecapa", "resnet34"])
def test_gradients_reach_every_parameter(name):
    enc = build_encoder(name, **({"channels": 64, "mfa_channels": 192} if name == "ecapa" else {}))
    out = enc(torch.randn(4, 120, 80), torch.tensor([120, 100, 90, 60]))
    out.embedding.square().sum().backward()
    missing = [n for n, p in enc.named_parameters() if p.grad is None]
    assert not missing


def test_stats_pool_ignores_padding():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((2, 5, 40)).astype(np.float32))
    pooled = StatsPool()(x, torch.tensor([40, 25]))
    ref = np.concatenate([x[1, :, :25].numpy().mean(1), x[1, :, :25].numpy().std(1)])
    np.testing.assert_allclose(pooled[1].numpy(), ref, atol=1e-4)


def test_attentive_pool_gives_padding_zero_weight():
    torch.manual_seed(0)
    pool = AttentiveStatsPool(6, 8).eval()
    x = torch.randn(1, 6, 30)
    full = pool(x[:, :, :20])
    padded = torch.cat([x[:, :, :20], 100 * torch.randn(1, 6, 10)], dim=-1)
    np.testing.assert_allclose(pool(padded, torch.tensor([20])).detach().numpy(),
                               full.detach().numpy(), atol=1e-5)


def test_bad_encoder_settings_are_named():
    with pytest.raises(ConfigError, match="encoder 'tdnn' is unknown"):
        build_encoder("tdnn")
    with pytest.raises(ConfigError, match="encoder 'ecapa'.*chanels"):
        build_encoder("ecapa", chanels=5)
