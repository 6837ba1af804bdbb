"""CLUB (Cheng et al. 2020, arXiv:2006.12013) against independent computations: the
log-likelihood against torch.distributions.Normal, the full estimate against a python double
loop over (i, j), the sampled estimate against the same permutation drawn by hand and, averaged
over many permutations, against the full one; on jointly Gaussian data with a fitted q, the
estimate against the analytic MI and the closed-form value of CLUB for the best q of this net;
minimising the encoders' penalty removes the dependence without touching q; shape errors."""

import math

import pytest
import torch

from paravox.errors import ConfigError
from paravox.objectives.club import CLUB


def _gaussian_pairs(n, d, rho, gen):
    """x ~ N(0, I), y = rho x + sqrt(1 - rho^2) noise: unit-variance marginals, per-dimension
    correlation rho, independent dimensions, so I(x; y) = -d/2 log(1 - rho^2)."""
    x = torch.randn(n, d, generator=gen)
    y = rho * x + math.sqrt(1.0 - rho ** 2) * torch.randn(n, d, generator=gen)
    return x, y


def _dependent_batch(n, x_dim, y_dim, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, x_dim, generator=gen)
    y = 0.7 * x[:, :1].expand(n, y_dim) + 0.5 * torch.randn(n, y_dim, generator=gen)
    return x, y


# ---------------------------------------------------------------- exact formulas

def test_log_likelihood_is_the_normal_log_density_with_constants():
    torch.manual_seed(0)
    club = CLUB(x_dim=3, y_dim=4, hidden=16).double()
    x, y = (t.double() for t in _dependent_batch(10, 3, 4, seed=1))
    mu, logvar = club.mu_logvar(x)
    assert logvar.abs().max().item() <= 1.0  # the tanh head
    assert logvar.std().item() > 0.01 and mu.std().item() > 0.01  # a non-trivial q
    expected = torch.distributions.Normal(mu, torch.exp(0.5 * logvar)).log_prob(y).sum(-1).mean()
    torch.testing.assert_close(club.log_likelihood(x, y), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(club.learning_loss(x, y), -expected, rtol=1e-12, atol=1e-12)
    # float32 modules give the same value to float32 precision
    club32 = club.float()
    torch.testing.assert_close(club32.log_likelihood(x.float(), y.float()), expected.float(),
                               rtol=1e-5, atol=1e-5)


def _log_q(mu_i, logvar_i, y_j):
    """log q(y_j | x_i) in nats, by hand, constants included."""
    return sum(-0.5 * (math.log(2 * math.pi) + s + (v - m) ** 2 / math.exp(s))
               for m, s, v in zip(mu_i, logvar_i, y_j))


def test_full_estimate_equals_a_double_loop_over_pairs():
    torch.manual_seed(2)
    club = CLUB(x_dim=3, y_dim=2, hidden=12, sampled=False).double()
    x, y = (t.double() for t in _dependent_batch(7, 3, 2, seed=3))
    y = y + 5.0  # far from q's means: the moment form must stay exact
    mu, logvar = (t.tolist() for t in club.mu_logvar(x))
    ys, n = y.tolist(), len(y)
    expected = sum(_log_q(mu[i], logvar[i], ys[i])
                   - sum(_log_q(mu[i], logvar[i], ys[j]) for j in range(n)) / n
                   for i in range(n)) / n
    assert club(x, y).item() == pytest.approx(expected, rel=1e-10, abs=1e-10)
    assert club.mi_for_encoders(x, y).item() == pytest.approx(expected, rel=1e-10, abs=1e-10)


def test_sampled_estimate_uses_one_random_permutation():
    torch.manual_seed(4)
    club = CLUB(x_dim=3, y_dim=2, hidden=12, sampled=True).double()
    x, y = (t.double() for t in _dependent_batch(9, 3, 2, seed=5))
    mu, logvar = (t.tolist() for t in club.mu_logvar(x))
    ys = y.tolist()
    for seed in (10, 11, 12):
        torch.manual_seed(seed)
        perm = torch.randperm(len(ys)).tolist()  # the draw forward makes under this seed
        expected = sum(_log_q(mu[i], logvar[i], ys[i]) - _log_q(mu[i], logvar[i], ys[perm[i]])
                       for i in range(len(ys))) / len(ys)
        torch.manual_seed(seed)
        assert club(x, y).item() == pytest.approx(expected, rel=1e-10, abs=1e-10)


def test_sampled_estimate_is_unbiased_for_the_full_one():
    torch.manual_seed(6)
    full = CLUB(x_dim=3, y_dim=2, hidden=12, sampled=False)
    sampled = CLUB(x_dim=3, y_dim=2, hidden=12, sampled=True)
    sampled.load_state_dict(full.state_dict())  # the same (fixed) q
    x, y = _dependent_batch(16, 3, 2, seed=7)
    with torch.no_grad():
        target = full(x, y).item()
        draws = torch.tensor([sampled(x, y).item() for _ in range(4000)], dtype=torch.float64)
    stderr = draws.std().item() / math.sqrt(len(draws))
    assert draws.std().item() > 0.01  # the draws do vary: the test has power
    assert abs(draws.mean().item() - target) < 4 * stderr + 1e-4, (draws.mean().item(), target)


def test_constant_y_and_single_pair_give_zero():
    torch.manual_seed(8)
    x, y = _dependent_batch(12, 3, 2, seed=9)
    for sampled in (False, True):
        club = CLUB(3, 2, hidden=8, sampled=sampled)
        assert abs(club(x, y[:1].expand(12, 2)).item()) < 1e-5
        assert club(x[:1], y[:1]).item() == 0.0


# ---------------------------------------------------------------- Gaussian ground truth

@pytest.mark.parametrize("d", [2, 4])
def test_fitted_estimate_bounds_and_tracks_gaussian_mi(d):
    """Train q by maximum likelihood on jointly Gaussian data, then estimate (full) on a large
    fresh batch. With q the best Gaussian of this net, mu = rho x and variance
    max(1 - rho^2, 1/e) (the tanh floor on the log-variance), CLUB has the closed form

        d * rho^2 / max(1 - rho^2, 1/e)

    (matched pairs: E (y - mu)^2 = 1 - rho^2; all pairs: E (y_j - mu_i)^2 = 1 + rho^2), which is
    well above the true MI -d/2 log(1 - rho^2) for large rho: 0.33 vs 0.14 nats per dimension
    at rho = 0.5, 1.74 vs 0.51 at 0.8, 2.20 vs 0.83 at 0.9. So a band "MI + 0.5 d" is too tight
    for this estimator; the band checked is the closed form. Observed with these seeds,
    estimate (closed form): d = 2: 0.650 (0.667), 3.320 (3.479), 4.392 (4.404); d = 4: 1.282
    (1.333), 6.832 (6.959), 8.668 (8.807); |est| <= 1e-3 at rho = 0. Over three more seed
    shifts every estimate stayed within 6 % of the closed form, so 12 % plus 0.05 nats leaves a
    margin while a wrong factor (the authors' loglikeli scale, a 1/2 missing or doubled) fails
    it."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(100 + d)
    estimates = {}
    for rho in (0.0, 0.5, 0.8, 0.9):
        club = CLUB(d, d, hidden=32, sampled=False)
        opt = torch.optim.Adam(club.parameters(), lr=5e-3)
        for _ in range(300):
            x, y = _gaussian_pairs(256, d, rho, gen)
            opt.zero_grad()
            club.learning_loss(x, y).backward()
            opt.step()
        x, y = _gaussian_pairs(20000, d, rho, gen)
        with torch.no_grad():
            est = club(x, y).item()
        mi = -0.5 * d * math.log(1.0 - rho ** 2)
        best_q = d * rho ** 2 / max(1.0 - rho ** 2, math.exp(-1.0))
        estimates[rho] = est
        assert est >= mi - 0.05 * d, (rho, est, mi)  # an upper bound, up to estimation noise
        assert abs(est - best_q) <= 0.12 * best_q + 0.05, (rho, est, best_q, mi)
        if rho == 0.0:
            assert abs(est) < 0.05 * d, est
    values = [estimates[r] for r in (0.0, 0.5, 0.8, 0.9)]
    assert values == sorted(values) and len(set(values)) == 4, estimates  # monotone in rho


# ---------------------------------------------------------------- gradients

def _abs_corr(a, b):
    a, b = a - a.mean(0), b - b.mean(0)
    return ((a * b).mean(0) / (a.std(0, unbiased=False) * b.std(0, unbiased=False))).abs()


@pytest.mark.parametrize("sampled", [False, True])
def test_minimising_the_encoder_penalty_removes_the_dependence(sampled):
    """y = x W + noise with a learnable W (W = I: correlation 0.71 per dimension); alternating
    q steps (likelihood, on detached data) and encoder steps (mi_for_encoders) drive the
    correlation to ~0.01 (observed <= 0.03 over seeds 0-2, both variants); q never gets a
    gradient from the penalty."""
    torch.manual_seed(0)
    d = 2
    weight = torch.nn.Parameter(torch.eye(d))
    club = CLUB(d, d, hidden=32, sampled=sampled)
    opt_q = torch.optim.Adam(club.parameters(), lr=5e-3)
    opt_enc = torch.optim.Adam([weight], lr=1e-2)
    x_eval, noise_eval = torch.randn(5000, d), torch.randn(5000, d)
    before = _abs_corr(x_eval, x_eval @ weight.detach() + noise_eval)
    assert float(before.min()) > 0.65
    for _ in range(150):
        x = torch.randn(256, d)
        y = x @ weight + torch.randn(256, d)
        for _ in range(2):
            opt_q.zero_grad()
            club.learning_loss(x, y.detach()).backward()
            opt_q.step()
        opt_q.zero_grad()  # grads back to None
        opt_enc.zero_grad()
        club.mi_for_encoders(x, y).backward()
        assert all(p.grad is None for p in club.parameters())
        assert weight.grad is not None and bool(weight.grad.abs().sum() > 0)
        opt_enc.step()
    after = _abs_corr(x_eval, x_eval @ weight.detach() + noise_eval)
    assert float(after.max()) < 0.15, (before, after)


def test_forward_reaches_q_and_mi_for_encoders_reaches_both_inputs():
    torch.manual_seed(10)
    club = CLUB(3, 2, hidden=8, sampled=False)
    x, y = _dependent_batch(8, 3, 2, seed=11)
    x.requires_grad_()
    y.requires_grad_()
    club.mi_for_encoders(x, y).backward()
    assert x.grad is not None and y.grad is not None
    assert all(p.grad is None for p in club.parameters())
    grad_x, grad_y = x.grad.clone(), y.grad.clone()
    x.grad = y.grad = None
    club(x, y).backward()  # same value and same input gradients; q gets gradients too
    torch.testing.assert_close(x.grad, grad_x)
    torch.testing.assert_close(y.grad, grad_y)
    assert all(p.grad is not None for p in club.parameters())


# ---------------------------------------------------------------- shapes

def test_frames_are_flattened_into_pairs():
    torch.manual_seed(12)
    club = CLUB(3, 2, hidden=8, sampled=False)
    x, y = _dependent_batch(12, 3, 2, seed=13)
    x3, y3 = x.reshape(3, 4, 3), y.reshape(3, 4, 2)
    torch.testing.assert_close(club(x3, y3), club(x, y))
    torch.testing.assert_close(club.log_likelihood(x3, y3), club.log_likelihood(x, y))


@pytest.mark.parametrize("x_shape, y_shape, message", [
    ((8, 4), (8, 2), "x_dim=3"),          # wrong x dim
    ((8, 3), (8, 5), "y_dim=2"),          # wrong y dim
    ((8, 3), (7, 2), "leading dims"),     # different number of pairs
    ((2, 4, 3), (8, 2), "leading dims"),  # [B, T, D] against [N, D]
    ((3,), (3, 2), "[N, dim]"),           # no feature axis
    ((0, 3), (0, 2), "no pairs"),
])
def test_shape_errors_raise_config_error(x_shape, y_shape, message):
    club = CLUB(3, 2, hidden=8)
    x, y = torch.zeros(x_shape), torch.zeros(y_shape)
    for call in (club, club.mi_for_encoders, club.log_likelihood, club.learning_loss):
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            call(x, y)


@pytest.mark.parametrize("kwargs", [dict(x_dim=0, y_dim=2), dict(x_dim=3, y_dim=2.0),
                                    dict(x_dim=3, y_dim=2, hidden=1),
                                    dict(x_dim=True, y_dim=2)])
def test_bad_constructor_arguments_raise_config_error(kwargs):
    with pytest.raises(ConfigError, match="CLUB"):
        CLUB(**kwargs)
