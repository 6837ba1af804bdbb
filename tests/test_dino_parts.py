"""DINO building blocks against straightforward independent computations (numpy loops)."""

import math

import numpy as np
import pytest
import torch

from paravox.models.heads import DINOHead, DINOHeadConfig
from paravox.objectives.collapse_monitor import effective_rank
from paravox.objectives.dino_loss import DINOLoss, collapse_statistics
from paravox.training.momentum import ema_update, make_teacher
from paravox.utils.schedules import cosine_schedule, linear_warmup


def np_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_dino_loss_matches_explicit_pairwise_cross_entropy():
    rng = np.random.default_rng(0)
    b, k, n_teacher, n_student = 5, 7, 2, 6
    s = [rng.standard_normal((b, k)).astype(np.float32) for _ in range(n_student)]
    t = [rng.standard_normal((b, k)).astype(np.float32) for _ in range(n_teacher)]
    center = rng.standard_normal((1, k)).astype(np.float32) * 0.1
    loss_fn = DINOLoss(k, student_temp=0.1, center_momentum=0.9)
    loss_fn.center.copy_(torch.from_numpy(center))
    loss = loss_fn([torch.from_numpy(x) for x in s], [torch.from_numpy(x) for x in t], 0.04)
    # independent: loop over samples and pairs
    total, n = 0.0, 0
    for ti in range(n_teacher):
        q = np_softmax((t[ti] - center) / 0.04)
        for si in range(n_student):
            if si == ti:
                continue
            log_p = np.log(np_softmax(s[si] / 0.1))
            total += np.mean([-(q[j] * log_p[j]).sum() for j in range(b)])
            n += 1
    assert n == n_teacher * (n_student - 1)
    assert float(loss) == pytest.approx(total / n, rel=1e-5)
    # the center moved towards the teacher batch mean
    expected = 0.9 * center + 0.1 * np.concatenate(t).mean(0, keepdims=True)
    np.testing.assert_allclose(loss_fn.center.numpy(), expected, atol=1e-6)


def test_dino_loss_gradient_flows_to_student_only():
    s = [torch.randn(4, 10, requires_grad=True) for _ in range(3)]
    t = [torch.randn(4, 10, requires_grad=True) for _ in range(2)]
    DINOLoss(10)(s, t, 0.04).backward()
    assert all(x.grad is not None for x in s) and all(x.grad is None for x in t)


def test_cosine_schedule_and_warmups():
    total, warm = 100, 10
    vals = [cosine_schedule(i, total, 1.0, 0.1, warm, 0.0) for i in range(total + 1)]
    assert vals[0] == 0.0 and vals[5] == pytest.approx(0.5) and vals[warm] == pytest.approx(1.0)
    for i in (25, 55, 80):
        ref = 0.1 + 0.45 * (1 + math.cos(math.pi * (i - warm) / (total - warm)))
        assert vals[i] == pytest.approx(ref)
    assert vals[total] == pytest.approx(0.1)
    # the EMA momentum schedule of DINO: 0.996 -> 1
    assert cosine_schedule(0, 50, 0.996, 1.0) == pytest.approx(0.996)
    assert cosine_schedule(50, 50, 0.996, 1.0) == pytest.approx(1.0)
    # teacher temperature warm-up 0.04 -> 0.07
    assert linear_warmup(0, 30, 0.04, 0.07) == pytest.approx(0.04)
    assert linear_warmup(15, 30, 0.04, 0.07) == pytest.approx(0.055)
    assert linear_warmup(99, 30, 0.04, 0.07) == pytest.approx(0.07)


def test_ema_update_matches_formula():
    student = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    teacher = make_teacher(student)
    assert all(not p.requires_grad for p in teacher.parameters())
    before = [p.clone() for p in teacher.parameters()]
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p))
    ema_update(teacher, student, 0.9)
    for t, b, s in zip(teacher.parameters(), before, student.parameters()):
        torch.testing.assert_close(t, 0.9 * b + 0.1 * s)


def test_dino_head_prototypes_are_unit_norm_and_can_be_frozen():
    head = DINOHead(16, DINOHeadConfig(hidden_dim=32, bottleneck_dim=8, n_prototypes=50))
    out = head(torch.randn(6, 16))
    assert out.shape == (6, 50)
    # with normalised prototypes and a normalised bottleneck, logits are cosines
    assert out.abs().max() <= 1.0 + 1e-5
    out.square().sum().backward()
    assert head.last_layer.v.grad is not None
    head.cancel_last_layer_gradients()
    assert head.last_layer.v.grad is None
    assert all(p.grad is not None for p in head.mlp.parameters())
    assert head.last_layer.g is None  # norm_last_layer: prototype norms fixed to 1
    learnable = DINOHead(16, DINOHeadConfig(hidden_dim=32, bottleneck_dim=8, n_prototypes=5,
                                            norm_last_layer=False))
    assert learnable.last_layer.g is not None


def test_collapse_statistics_detect_both_collapse_modes():
    k = 64
    healthy = torch.randn(256, k) * 5
    one_hot = torch.zeros(256, k)
    one_hot[:, 3] = 50.0
    uniform = torch.zeros(256, k)
    zero = torch.zeros(1, k)
    h = collapse_statistics(healthy, zero, 0.04)
    c = collapse_statistics(one_hot, zero, 0.04)
    u = collapse_statistics(uniform, zero, 0.04)
    assert c["kl_to_uniform"] == pytest.approx(math.log(k), abs=1e-3)  # all on one prototype
    assert u["teacher_entropy"] == pytest.approx(math.log(k), abs=1e-4)  # uniform outputs
    assert h["kl_to_uniform"] < 1.0 and h["teacher_entropy"] < math.log(k) - 1


def test_effective_rank_matches_an_independent_computation():
    """exp(entropy of the singular values normalised to sum 1), against numpy's SVD; it
    sees dimensional collapse that a batch norm's per-dimension rescaling hides."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 16)) @ np.diag(np.linspace(0.1, 2.0, 16))
    s = np.linalg.svd(x, compute_uv=False)
    p = s / s.sum()
    assert effective_rank(torch.tensor(x)) == pytest.approx(np.exp(-(p * np.log(p)).sum()),
                                                            rel=1e-4)
    assert effective_rank(torch.tensor(rng.standard_normal((500, 16)))) > 15
    low = rng.standard_normal((500, 3)) @ rng.standard_normal((3, 16))  # 3 directions
    bn = (low - low.mean(0)) / low.std(0)  # what a final BatchNorm makes of it
    assert effective_rank(torch.tensor(bn)) < 3.5
    assert bn.std(0).mean() == pytest.approx(1.0)  # the per-dimension spread sees nothing


@pytest.mark.parametrize("learn_norm", [False, True])
def test_prototype_layer_is_weight_normalised_with_the_same_gradients(learn_norm):
    """The prototype layer divides the scores by the row norms instead of normalising the
    K x D weight: value and gradients equal ``x @ (g * v / ||v||)^T`` computed directly."""
    from paravox.models.heads import WeightNormLinear

    torch.manual_seed(0)
    layer = WeightNormLinear(16, 300, learn_norm=learn_norm)
    if learn_norm:
        layer.g.data.uniform_(0.5, 2.0)
    params = [layer.v] + ([layer.g] if learn_norm else [])
    x = torch.randn(7, 16, requires_grad=True)
    up = torch.randn(7, 300, dtype=torch.float64)  # one upstream gradient for both

    def value_and_grads(fn):
        out = fn()
        grads = torch.autograd.grad((out * up.to(out.dtype)).sum(), [x, *params])
        return [out.detach(), *grads]

    def direct():  # in float64: the reference both float32 orders of summation approach
        v = layer.v.double()
        w = v / v.norm(dim=1, keepdim=True)
        return x.double() @ (layer.g.double() * w if learn_norm else w).T

    for a, b in zip(value_and_grads(lambda: layer(x)), value_and_grads(direct)):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a.double(), b.double(), rtol=0,
                                   atol=1e-6 * float(b.abs().max()))
