"""The SSL loss library: each loss against an independent per-element computation (numpy
loops), mining rules against brute force, and a 2-process gloo run whose DDP-averaged gradients
equal the single-process gradients on the global batch."""

import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ddp_helpers import free_port
from paravox.objectives.redundancy import barlow_twins_loss, byol_regression_loss, vicreg_loss
from paravox.objectives.supcon import supcon_loss
from paravox.objectives.triplet import MinedTripletLoss, cosine_triplet_loss, mine_triplets


def _cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _data(n=12, d=6, seed=0, classes=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), \
        torch.arange(n) % classes


def test_cosine_triplet_matches_a_loop():
    x, _ = _data(n=15)
    a, p, n = x[:5], x[5:10], x[10:]
    expected = np.mean([max(0.0, _cos(a[i].numpy(), n[i].numpy())
                            - _cos(a[i].numpy(), p[i].numpy()) + 0.3) for i in range(5)])
    assert cosine_triplet_loss(a, p, n, margin=0.3).item() == pytest.approx(expected, rel=1e-6)


def test_semihard_mining_matches_brute_force():
    x, y = _data(n=16, classes=4)
    z = x.numpy()
    sim = torch.from_numpy(np.array([[_cos(u, v) for v in z] for u in z]))
    a, p, n = mine_triplets(sim, y, y, torch.arange(16), "semihard")
    expected = []
    for i in range(16):
        for j in range(16):
            if j == i or y[j] != y[i]:
                continue
            negs = [k for k in range(16) if y[k] != y[i]]
            below = [k for k in negs if sim[i, k] < sim[i, j]]
            k = (max(below, key=lambda k: sim[i, k]) if below
                 else min(negs, key=lambda k: sim[i, k]))
            expected.append((i, j, k))
    assert sorted(zip(a.tolist(), p.tolist(), n.tolist())) == sorted(expected)


def test_mined_triplet_loss_value_and_random_mining():
    x, y = _data(n=12, classes=3)
    loss = MinedTripletLoss(margin=0.25)(x, y)
    z = torch.nn.functional.normalize(x, dim=-1)
    sim = z @ z.T
    a, p, n = mine_triplets(sim, y, y, torch.arange(12), "semihard")
    expected = np.mean([max(0.0, float(sim[i, k] - sim[i, j]) + 0.25)
                        for i, j, k in zip(a.tolist(), p.tolist(), n.tolist())])
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    a, p, n = mine_triplets(sim, y, y, torch.arange(12), "random",
                            torch.Generator().manual_seed(0))
    assert len(a) == 12 * 3 and (y[a] == y[p]).all() and (y[a] != y[n]).all()
    assert (a != p).all()
    with pytest.raises(ValueError, match="semihard"):
        mine_triplets(sim, y, y, torch.arange(12), "hardest")


def test_supcon_matches_the_formula():
    x, y = _data(n=10, classes=3)
    t = 0.2
    z = x.numpy() / np.linalg.norm(x.numpy(), axis=1, keepdims=True)
    per = []
    for i in range(10):
        denom = sum(np.exp(z[i] @ z[a] / t) for a in range(10) if a != i)
        pos = [p for p in range(10) if p != i and y[p] == y[i]]
        per.append(-np.mean([np.log(np.exp(z[i] @ z[p] / t) / denom) for p in pos]))
    assert supcon_loss(x, y, t).item() == pytest.approx(np.mean(per), rel=1e-6)


def test_barlow_twins_matches_a_loop():
    x1, _ = _data(n=9, d=5, seed=1)
    x2, _ = _data(n=9, d=5, seed=2)
    a, b = x1.numpy(), x2.numpy()
    a = (a - a.mean(0)) / np.sqrt(a.var(0) + 1e-5)
    b = (b - b.mean(0)) / np.sqrt(b.var(0) + 1e-5)
    expected = 0.0
    for i in range(5):
        for j in range(5):
            c = sum(a[n, i] * b[n, j] for n in range(9)) / 9
            expected += (1 - c) ** 2 if i == j else 0.01 * c ** 2
    assert barlow_twins_loss(x1, x2, lambd=0.01).item() == pytest.approx(expected, rel=1e-6)
    # identical, decorrelated views give ~0
    q, _ = torch.linalg.qr(torch.randn(64, 4, dtype=torch.float64))
    assert barlow_twins_loss(q, q).item() < 1e-3


def test_vicreg_matches_a_loop():
    x1, _ = _data(n=8, d=4, seed=3)
    x2, _ = _data(n=8, d=4, seed=4)
    a, b = x1.numpy(), x2.numpy()

    def var_term(z):
        return np.mean([max(0.0, 1 - np.sqrt(z[:, d].var(ddof=1) + 1e-4)) for d in range(4)])

    def cov_term(z):
        c = np.cov(z, rowvar=False)
        return sum(c[i, j] ** 2 for i in range(4) for j in range(4) if i != j) / 4

    expected = (25 * np.mean((a - b) ** 2) + 25 * (var_term(a) + var_term(b))
                + cov_term(a) + cov_term(b))
    assert vicreg_loss(x1, x2).item() == pytest.approx(expected, rel=1e-6)


def test_byol_regression_matches_a_loop_and_stops_the_target_gradient():
    x1, _ = _data(n=6, seed=5)
    x2, _ = _data(n=6, seed=6)
    expected = np.mean([2 - 2 * _cos(x1[i].numpy(), x2[i].numpy()) for i in range(6)])
    p, t = x1.clone().requires_grad_(), x2.clone().requires_grad_()
    loss = byol_regression_loss(p, t)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert p.grad.abs().sum() > 0 and t.grad is None


# ---------------------------------------------------------------- DDP: 2 processes (gloo)

def _all_losses(x1, x2, y):
    return {"triplet": MinedTripletLoss(0.3)(x1, y),
            "supcon": supcon_loss(x1, y, 0.2),
            "barlow": barlow_twins_loss(x1, x2, 0.01),
            "vicreg": vicreg_loss(x1, x2),
            "byol": byol_regression_loss(x1, x2)}


def _grads(x1, x2, y):
    out = {}
    for name in ("triplet", "supcon", "barlow", "vicreg", "byol"):
        a = x1.clone().requires_grad_()
        b = x2.clone().requires_grad_()
        _all_losses(a, b, y)[name].backward()
        out[name] = (a.grad, b.grad if b.grad is not None else torch.zeros_like(b))
    return out


def _worker(rank, world, port, x1, x2, y, out_dir):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    try:
        # unequal shards: rank 0 gets 5 rows, rank 1 gets 7 (triplet/supcon counts differ)
        cut = [0, 5, 12]
        sl = slice(cut[rank], cut[rank + 1])
        grads = _grads(x1[sl], x2[sl], y[sl])
        for name, (g1, g2) in grads.items():
            # what DDP does with parameter gradients: average over processes
            full1 = torch.zeros_like(x1)
            full2 = torch.zeros_like(x2)
            full1[sl], full2[sl] = g1, g2
            dist.all_reduce(full1)
            dist.all_reduce(full2)
            grads[name] = (full1 / world, full2 / world)
        if rank == 0:
            torch.save(grads, os.path.join(out_dir, "ddp.pt"))
    finally:
        dist.destroy_process_group()


def test_two_process_gradients_equal_the_global_batch(tmp_path):
    x1, y = _data(n=12, d=6, seed=7, classes=3)
    x2, _ = _data(n=12, d=6, seed=8)
    single = _grads(x1, x2, y)
    mp.spawn(_worker, args=(2, free_port(), x1, x2, y, str(tmp_path)), nprocs=2, join=True)
    ddp = torch.load(tmp_path / "ddp.pt")
    for name in single:
        if name == "byol":  # a per-process mean: exact only for equal shards (documented)
            continue
        for s, d in zip(single[name], ddp[name]):
            # DDP averages; a per-process loss over the global batch gives the global gradient
            torch.testing.assert_close(d, s, rtol=1e-4, atol=1e-6,  # float32 inside
                                       msg=lambda m, n=name: f"{n}: {m}")
