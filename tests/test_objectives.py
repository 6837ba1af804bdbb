"""Golden tests: NT-Xent, AAM-softmax and the RDINO regularisers against straightforward
element-by-element computations (numpy / Python loops); every loss module against its
functional form."""

import math

import numpy as np
import torch
import torch.nn.functional as F

from paravox.objectives.contrastive import nt_xent
from paravox.objectives.margin import AAMSoftmax, SoftmaxClassifier
from paravox.objectives.regularisers import covariance_penalty, variance_penalty


def test_nt_xent_matches_a_loop_over_anchors():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    tau = 0.2
    z = [v / np.linalg.norm(v) for v in torch.cat([z1, z2]).numpy().astype(np.float64)]
    b, total = 5, 0.0
    for i in range(2 * b):
        pos = (i + b) % (2 * b)
        sims = {j: float(z[i] @ z[j]) / tau for j in range(2 * b) if j != i}
        total += -sims[pos] + math.log(sum(math.exp(s) for s in sims.values()))
    assert abs(nt_xent(z1, z2, tau).item() - total / (2 * b)) < 1e-5


def test_nt_xent_prefers_aligned_views():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(16, 32, generator=g)
    aligned = nt_xent(z, z + 0.01 * torch.randn(16, 32, generator=g))
    shuffled = nt_xent(z, z[torch.randperm(16, generator=g)])
    assert aligned < shuffled


def test_aam_softmax_matches_the_formula():
    torch.manual_seed(0)
    aam = AAMSoftmax(6, 4, margin=0.3, scale=20.0)
    x, y = torch.randn(7, 6), torch.tensor([0, 1, 2, 3, 0, 1, 2])
    loss, scores = aam(x, y)
    w = aam.weight.detach().numpy().astype(np.float64)
    xs = x.numpy().astype(np.float64)
    expected = []
    for i in range(7):
        cos = [xs[i] @ w[k] / np.linalg.norm(xs[i]) / np.linalg.norm(w[k]) for k in range(4)]
        logits = [20.0 * (math.cos(math.acos(c) + 0.3) if k == y[i] else c)
                  for k, c in enumerate(cos)]
        expected.append(-logits[y[i]] + math.log(sum(math.exp(v) for v in logits)))
    assert abs(loss.item() - np.mean(expected)) < 1e-4
    assert scores.shape == (7, 4)


def test_aam_with_zero_margin_is_normalised_softmax_and_margin_raises_the_loss():
    torch.manual_seed(1)
    aam = AAMSoftmax(6, 4, margin=0.0, scale=10.0)
    x, y = torch.randn(9, 6), torch.randint(0, 4, (9,))
    loss0, scores = aam(x, y)
    assert torch.allclose(loss0, F.cross_entropy(scores, y), atol=1e-6)
    aam.margin = 0.3
    assert aam(x, y)[0] > loss0


def test_softmax_classifier_is_cross_entropy():
    torch.manual_seed(2)
    clf = SoftmaxClassifier(5, 3)
    x, y = torch.randn(4, 5), torch.tensor([0, 2, 1, 2])
    loss, logits = clf(x, y)
    assert torch.allclose(loss, F.cross_entropy(clf.linear(x), y))


def test_variance_and_covariance_penalties_match_loops():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(10, 4, generator=g) * torch.tensor([0.1, 0.5, 2.0, 1.0])
    a = z.numpy().astype(np.float64)
    n, d = a.shape
    std = [math.sqrt(np.var(a[:, j], ddof=1) + 1e-4) for j in range(d)]
    assert abs(variance_penalty(z).item() - np.mean([max(0.0, 1 - s) for s in std])) < 1e-6
    mean = a.mean(0)
    off = 0.0
    for i in range(d):
        for j in range(d):
            if i != j:
                c = sum((a[k, i] - mean[i]) * (a[k, j] - mean[j]) for k in range(n)) / (n - 1)
                off += c * c
    assert abs(covariance_penalty(z).item() - off / d) < 1e-5
    # decorrelated unit-variance data is barely penalised
    white = torch.randn(4096, 4, generator=g)
    assert variance_penalty(white) < 0.02 and covariance_penalty(white) < 0.01


def _pair_cases():
    """(module, function, inputs, function settings) for every loss with both forms."""
    import paravox.objectives as o

    g = torch.Generator().manual_seed(4)
    z1, z2, z3 = (torch.randn(8, 6, generator=g) for _ in range(3))
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    frames, mask = torch.randn(2, 5, 3, generator=g), torch.rand(2, 5, generator=g) < 0.5
    logits, units = torch.randn(2, 5, 4, generator=g), torch.randint(4, (2, 5), generator=g)
    utt = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    teacher = [torch.randn(4, 6, generator=g) for _ in range(2)]
    student = teacher + [torch.randn(4, 6, generator=g)]
    return [
        (o.NTXentLoss(0.3), o.nt_xent, (z1, z2), {"temperature": 0.3}),
        (o.SupConLoss(0.3), o.supcon_loss, (z1, labels), {"temperature": 0.3}),
        (o.CosineTripletLoss(0.4), o.cosine_triplet_loss, (z1, z2, z3), {"margin": 0.4}),
        (o.MinedTripletLoss(0.4, "semihard"), o.mined_triplet_loss, (z1, labels),
         {"margin": 0.4, "strategy": "semihard"}),
        (o.BarlowTwinsLoss(0.1), o.barlow_twins_loss, (z1, z2), {"lambd": 0.1}),
        (o.VICRegLoss(2.0, 3.0, 4.0), o.vicreg_loss, (z1, z2),
         {"sim_weight": 2.0, "var_weight": 3.0, "cov_weight": 4.0}),
        (o.BYOLRegressionLoss(), o.byol_regression_loss, (z1, z2), {}),
        (o.VariancePenalty(0.5, 1e-3), o.variance_penalty, (z1,),
         {"target_std": 0.5, "eps": 1e-3}),
        (o.CovariancePenalty(), o.covariance_penalty, (z1,), {}),
        (o.MaskedReconstructionLoss("l2"), o.masked_reconstruction_loss,
         (frames, frames.flip(1), mask), {"kind": "l2"}),
        (o.SpanContrastiveLoss(0.2), o.span_info_nce, (z1, z2, utt), {"temperature": 0.2}),
        (o.MaskedClusterLoss(), o.masked_cluster_loss, (logits, units, mask), {}),
        (o.DINOLoss(6, student_temp=0.2), o.dino_distillation_loss, (student, teacher),
         {"center": torch.zeros(1, 6), "teacher_temp": 0.05, "student_temp": 0.2}),
    ]


def test_every_loss_module_gives_its_function_value():
    import paravox.objectives as o

    cases = _pair_cases()
    for module, function, inputs, settings in cases:
        extra = {"teacher_temp": 0.05} if isinstance(module, o.DINOLoss) else {}
        torch.testing.assert_close(module(*inputs, **extra), function(*inputs, **settings),
                                   msg=type(module).__name__)
    torch.manual_seed(5)
    x, y = torch.randn(8, 6), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    aam = o.AAMSoftmax(6, 4, margin=0.3, scale=20.0)
    for a, b in zip(aam(x, y), o.aam_softmax_loss(x, y, aam.weight, margin=0.3, scale=20.0)):
        torch.testing.assert_close(a, b)
    clf = o.SoftmaxClassifier(6, 4)
    for a, b in zip(clf(x, y), o.softmax_classifier_loss(x, y, clf.linear.weight,
                                                          clf.linear.bias)):
        torch.testing.assert_close(a, b)
    club = o.CLUB(6, 3, hidden=8, sampled=False)
    mu, logvar = club.mu_logvar(x)
    y3 = torch.randn(8, 3)
    torch.testing.assert_close(club(x, y3), o.club_estimate(mu, logvar, y3, sampled=False))
    torch.testing.assert_close(club.log_likelihood(x, y3),
                               o.gaussian_log_likelihood(mu, logvar, y3))
    exported = {getattr(o, name) for name in o.__all__}
    assert {type(m) for m, _, _, _ in cases} | {f for _, f, _, _ in cases} <= exported
