"""The masked-prediction losses (MGF: frame reconstruction and span InfoNCE) against per-element
python loops, span extraction against a loop over random masks, and a 2-process gloo run with
unequal shards whose DDP-averaged gradients equal the single-process gradients on the global
batch."""

import math
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hypothesis import given, settings
from hypothesis import strategies as st

from ddp_helpers import free_port
from paravox.errors import ConfigError
from paravox.objectives.masked import (
    SpanContrastiveLoss,
    masked_reconstruction_loss,
    pool_spans,
    sample_negatives,
    span_info_nce,
    spans_of_mask,
)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _mask(b, t, p, seed):
    return torch.rand(b, t, generator=_gen(seed)) < p


# ---------------------------------------------------------------- reconstruction

@pytest.mark.parametrize("kind", ["l1", "l2"])
def test_reconstruction_matches_a_loop_and_ignores_unmasked_frames(kind):
    b, t, f = 3, 9, 4
    pred = torch.randn(b, t, f, generator=_gen(0), dtype=torch.float64)
    target = torch.randn(b, t, f, generator=_gen(1), dtype=torch.float64)
    mask = _mask(b, t, 0.4, seed=2)
    n_masked = int(mask.sum())
    assert 0 < n_masked < b * t
    terms = [abs(float(pred[i, j, k] - target[i, j, k])) if kind == "l1"
             else float(pred[i, j, k] - target[i, j, k]) ** 2
             for i in range(b) for j in range(t) if mask[i, j] for k in range(f)]
    expected = sum(terms) / (n_masked * f)
    p = pred.clone().requires_grad_()
    loss = masked_reconstruction_loss(p, target, mask, kind=kind)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    diff = (pred - target).float()
    analytic = (diff.sign() if kind == "l1" else 2 * diff) / (n_masked * f)
    for i in range(b):
        for j in range(t):
            if mask[i, j]:
                torch.testing.assert_close(p.grad[i, j].float(), analytic[i, j])
            else:
                assert (p.grad[i, j] == 0).all()
    # unmasked frames, even non-finite ones, change neither the value nor the gradient
    wild = pred.clone()
    wild[~mask] = float("nan")
    wild[0, ~mask[0]] = 1e6
    w = wild.requires_grad_()
    wild_loss = masked_reconstruction_loss(w, target, mask, kind=kind)
    assert wild_loss.item() == pytest.approx(expected, rel=1e-6)
    wild_loss.backward()
    torch.testing.assert_close(w.grad, p.grad)


def test_reconstruction_without_masked_frames_is_zero_with_a_graph():
    pred = torch.randn(2, 5, 3, requires_grad=True)
    loss = masked_reconstruction_loss(pred, torch.randn(2, 5, 3),
                                      torch.zeros(2, 5, dtype=torch.bool), kind="l2")
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert (pred.grad == 0).all()
    loss = masked_reconstruction_loss(pred, torch.randn(2, 5, 3),
                                      torch.zeros(2, 5, dtype=torch.bool), global_mean=True)
    assert loss.item() == 0.0 and loss.requires_grad


def test_reconstruction_rejects_bad_kind_and_shapes():
    x = torch.randn(2, 5, 3)
    with pytest.raises(ConfigError, match="'l1', 'l2'"):
        masked_reconstruction_loss(x, x, torch.ones(2, 5, dtype=torch.bool), kind="huber")
    with pytest.raises(ValueError, match="mask"):
        masked_reconstruction_loss(x, x, torch.ones(2, 4, dtype=torch.bool))


# ---------------------------------------------------------------- spans

def _runs_loop(mask):
    out = []
    for b, row in enumerate(mask.tolist()):
        t = 0
        while t < len(row):
            if row[t]:
                s = t
                while t < len(row) and row[t]:
                    t += 1
                out.append((b, s, t))
            else:
                t += 1
    return out


@settings(max_examples=80, deadline=None)
@given(st.tuples(st.integers(1, 4), st.integers(1, 12)).flatmap(lambda bt: st.lists(
    st.lists(st.booleans(), min_size=bt[1], max_size=bt[1]), min_size=bt[0], max_size=bt[0])))
def test_spans_of_mask_matches_a_loop(rows):
    mask = torch.tensor(rows, dtype=torch.bool)
    utt, start, end = spans_of_mask(mask)
    assert utt.dtype == start.dtype == end.dtype == torch.long
    assert list(zip(utt.tolist(), start.tolist(), end.tolist())) == _runs_loop(mask)


@pytest.mark.parametrize("seed", range(6))
def test_spans_of_mask_matches_a_loop_on_span_masks(seed):
    # wav2vec 2.0-style: random starts, overlapping spans of length 4 merging into runs
    g = _gen(seed)
    mask = torch.zeros(3, 50, dtype=torch.bool)
    starts = torch.rand(3, 50, generator=g) < 0.1
    for b, s in starts.nonzero().tolist():
        mask[b, s:s + 4] = True
    utt, start, end = spans_of_mask(mask)
    assert list(zip(utt.tolist(), start.tolist(), end.tolist())) == _runs_loop(mask)


def test_spans_of_mask_edges():
    for mask in (torch.zeros(2, 7, dtype=torch.bool), torch.ones(2, 7, dtype=torch.bool),
                 torch.zeros(0, 7, dtype=torch.bool)):
        utt, start, end = spans_of_mask(mask)
        assert list(zip(utt.tolist(), start.tolist(), end.tolist())) == _runs_loop(mask)


def test_pool_spans_matches_a_loop_with_gradients():
    x = torch.randn(3, 11, 5, generator=_gen(3), dtype=torch.float64)
    utt = torch.tensor([0, 0, 1, 2, 2, 2])
    start = torch.tensor([0, 2, 10, 0, 3, 4])  # overlapping spans allowed
    end = torch.tensor([3, 4, 11, 11, 6, 5])
    xs = x.clone().requires_grad_()
    out = pool_spans(xs, utt, start, end)
    expected = torch.stack([x[b, s:e].mean(0) for b, s, e in
                            zip(utt.tolist(), start.tolist(), end.tolist())])
    torch.testing.assert_close(out, expected)
    out.square().sum().backward()
    grad = torch.zeros_like(x)
    for n, (b, s, e) in enumerate(zip(utt.tolist(), start.tolist(), end.tolist())):
        grad[b, s:e] += 2 * expected[n] / (e - s)
    torch.testing.assert_close(xs.grad, grad)
    assert pool_spans(x, *(torch.zeros(0, dtype=torch.long),) * 3).shape == (0, 5)
    with pytest.raises(ValueError, match="start < end"):
        pool_spans(x, torch.tensor([0]), torch.tensor([2]), torch.tensor([2]))


def test_spans_of_mask_then_pool_spans():
    x = torch.randn(2, 20, 4, generator=_gen(4))
    mask = _mask(2, 20, 0.5, seed=5)
    utt, start, end = spans_of_mask(mask)
    pooled = pool_spans(x, utt, start, end)
    for n, (b, s, e) in enumerate(_runs_loop(mask)):
        torch.testing.assert_close(pooled[n], x[b, s:e].mean(0))


# ---------------------------------------------------------------- span InfoNCE

def _cos_matrix(a, b):
    a = a.numpy() / np.linalg.norm(a.numpy(), axis=1, keepdims=True)
    b = b.numpy() / np.linalg.norm(b.numpy(), axis=1, keepdims=True)
    return a @ b.T


def _info_nce_loop(pred, target, neg_sets, t):
    """Mean over spans with negatives of -log(e^s_ii / (e^s_ii + sum_{j in Q_i} e^s_ij))."""
    s = _cos_matrix(pred, target) / t
    per, correct = [], []
    for i, negs in enumerate(neg_sets):
        if not negs:
            continue
        num = math.exp(s[i, i])
        per.append(-math.log(num / (num + sum(math.exp(s[i, j]) for j in negs))))
        correct.append(all(s[i, i] > s[i, j] for j in negs))
    return (float(np.mean(per)) if per else 0.0), (float(np.mean(correct)) if per else 0.0)


def _spans(n=10, d=8, seed=0):
    pred = torch.randn(n, d, generator=_gen(seed), dtype=torch.float64)
    target = torch.randn(n, d, generator=_gen(seed + 100), dtype=torch.float64)
    utt = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3, 3, 3])[:n]  # utterance 2 has a single span
    return pred, target, utt


@pytest.mark.parametrize("same", [False, True])
def test_span_info_nce_all_negatives_matches_a_loop(same):
    pred, target, utt = _spans()
    n = len(utt)
    neg_sets = [[j for j in range(n) if j != i and (not same or utt[j] == utt[i])]
                for i in range(n)]
    expected, acc = _info_nce_loop(pred, target, neg_sets, 0.2)
    loss, accuracy = span_info_nce(pred, target, utt, temperature=0.2,
                                   same_utterance_only=same, return_accuracy=True)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert accuracy.item() == pytest.approx(acc) and not accuracy.requires_grad
    module = SpanContrastiveLoss(temperature=0.2, same_utterance_only=same)
    assert module(pred, target, utt).item() == pytest.approx(expected, rel=1e-5)


def test_span_info_nce_gradients_match_autograd_of_the_loop():
    pred, target, utt = _spans(seed=1)
    p, q = pred.clone().requires_grad_(), target.clone().requires_grad_()
    span_info_nce(p, q, utt, temperature=0.5, same_utterance_only=True).backward()
    p2, q2 = pred.clone().requires_grad_(), target.clone().requires_grad_()
    pn = torch.nn.functional.normalize(p2, dim=-1)
    qn = torch.nn.functional.normalize(q2, dim=-1)
    terms = []
    for i in range(len(utt)):
        negs = [j for j in range(len(utt)) if j != i and utt[j] == utt[i]]
        if negs:
            s = torch.stack([pn[i] @ qn[j] for j in [i, *negs]]) / 0.5
            terms.append(torch.logsumexp(s, 0) - s[0])
    torch.stack(terms).mean().backward()
    torch.testing.assert_close(p.grad, p2.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(q.grad, q2.grad, rtol=1e-4, atol=1e-6)
    assert (p.grad[5] == 0).all()  # the lone span of utterance 2 contributes nothing


@pytest.mark.parametrize("same,k", [(False, 3), (True, 2), (False, 20)])
def test_span_info_nce_sampled_negatives(same, k):
    pred, target, utt = _spans(seed=2)
    n = len(utt)
    allowed = torch.tensor([[j != i and (not same or bool(utt[j] == utt[i]))
                             for j in range(n)] for i in range(n)])
    chosen = sample_negatives(allowed, k, _gen(7))
    neg_sets = [chosen[i].nonzero().flatten().tolist() for i in range(n)]
    for i, negs in enumerate(neg_sets):
        assert i not in negs  # never the positive
        assert set(negs) <= set(allowed[i].nonzero().flatten().tolist())
        assert len(negs) == min(k, int(allowed[i].sum()))  # all available where fewer
    expected, acc = _info_nce_loop(pred, target, neg_sets, 0.1)
    loss, accuracy = span_info_nce(pred, target, utt, temperature=0.1, n_negatives=k,
                                   same_utterance_only=same, generator=_gen(7),
                                   return_accuracy=True)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert accuracy.item() == pytest.approx(acc)
    module = SpanContrastiveLoss(0.1, n_negatives=k, same_utterance_only=same)
    assert module(pred, target, utt, _gen(7)).item() == pytest.approx(expected, rel=1e-5)


def test_sampled_negatives_are_uniform():
    allowed = torch.ones(2000, 6, dtype=torch.bool)
    allowed[:, 0] = False
    chosen = sample_negatives(allowed, 2, _gen(8))
    assert (chosen.sum(1) == 2).all() and not chosen[:, 0].any()
    freq = chosen[:, 1:].float().mean(0)  # each of 5 candidates drawn with probability 2/5
    torch.testing.assert_close(freq, torch.full((5,), 0.4), atol=0.04, rtol=0)


def test_span_info_nce_perfect_and_random_predictions():
    target = torch.randn(40, 1024, generator=_gen(9))
    utt = torch.arange(40) // 8
    assert span_info_nce(target, target, utt, temperature=0.01).item() < 1e-3
    loss, acc = span_info_nce(target, target, utt, temperature=0.01, return_accuracy=True)
    assert acc.item() == 1.0
    rand = torch.randn(40, 1024, generator=_gen(10))
    for k, same in [(None, False), (None, True), (5, False)]:
        n_neg = {None: 39, 5: 5}[k] if not same else 7
        loss = span_info_nce(rand, target, utt, temperature=0.1, n_negatives=k,
                             same_utterance_only=same, generator=_gen(11))
        assert loss.item() == pytest.approx(math.log(1 + n_neg), abs=0.15)


def test_span_info_nce_without_spans_or_negatives_is_zero_with_a_graph():
    pred = torch.randn(0, 8, requires_grad=True)
    loss, acc = span_info_nce(pred, torch.randn(0, 8), torch.zeros(0, dtype=torch.long),
                              return_accuracy=True)
    assert loss.item() == 0.0 and loss.requires_grad and acc.item() == 0.0
    loss.backward()
    pred = torch.randn(3, 8, requires_grad=True)  # three utterances with one span each
    loss = span_info_nce(pred, torch.randn(3, 8), torch.arange(3), same_utterance_only=True)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert (pred.grad == 0).all()


def test_span_info_nce_rejects_bad_settings():
    x = torch.randn(4, 8)
    with pytest.raises(ConfigError, match="temperature"):
        span_info_nce(x, x, torch.zeros(4, dtype=torch.long), temperature=0)
    with pytest.raises(ConfigError, match="n_negatives"):
        SpanContrastiveLoss(n_negatives=0)
    with pytest.raises(ValueError, match="utt_index"):
        span_info_nce(x, x, torch.zeros(3, dtype=torch.long))


# ---------------------------------------------------------------- DDP: 2 processes (gloo)

# reconstruction: 6 utterances, rank 0 holds 2 (few masked frames), rank 1 holds 4
REC_CUT = [0, 2, 6]
# spans: 11 spans of 5 utterances; rank 0 holds utterances 0-1 (4 spans), rank 1 2-4 (7)
SPAN_UTT = torch.tensor([0, 0, 0, 1, 2, 2, 3, 3, 3, 4, 4])
SPAN_CUT, UTT_CUT = [0, 4, 11], [0, 2, 5]


def _ddp_data():
    pred = torch.randn(6, 8, 3, generator=_gen(20), dtype=torch.float64)
    target = torch.randn(6, 8, 3, generator=_gen(21), dtype=torch.float64)
    mask = _mask(6, 8, 0.4, seed=22)
    mask[:2] = False
    mask[0, 3] = True  # rank 0: 1 masked frame, rank 1: many
    sp = torch.randn(11, 6, generator=_gen(23), dtype=torch.float64)
    st_ = torch.randn(11, 6, generator=_gen(24), dtype=torch.float64)
    return pred, target, mask, sp, st_


def _ddp_grads(pred, target, mask, sp, st_, utt):
    out = {}
    a = pred.clone().requires_grad_()
    masked_reconstruction_loss(a, target, mask, kind="l1", global_mean=True).backward()
    out["reconstruction"] = (a.grad,)
    for name, same in (("span", False), ("span_same_utt", True)):
        p, q = sp.clone().requires_grad_(), st_.clone().requires_grad_()
        span_info_nce(p, q, utt, temperature=0.3, same_utterance_only=same).backward()
        out[name] = (p.grad, q.grad)
    return out


def _worker(rank, world, port, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    try:
        pred, target, mask, sp, st_ = _ddp_data()
        rec = slice(REC_CUT[rank], REC_CUT[rank + 1])
        spans = slice(SPAN_CUT[rank], SPAN_CUT[rank + 1])
        local_utt = SPAN_UTT[spans] - UTT_CUT[rank]  # utterance ids are per process
        grads = _ddp_grads(pred[rec], target[rec], mask[rec], sp[spans], st_[spans], local_utt)
        full = {}
        for name, parts in grads.items():
            rows = rec if name == "reconstruction" else spans
            shapes = [pred] if name == "reconstruction" else [sp, st_]
            full[name] = []
            for g, like in zip(parts, shapes):
                # what DDP does with parameter gradients: average over processes
                whole = torch.zeros_like(like)
                whole[rows] = g
                dist.all_reduce(whole)
                full[name].append(whole / world)
        if rank == 0:
            torch.save(full, os.path.join(out_dir, "ddp.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_and_single(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp_masked")
    mp.spawn(_worker, args=(2, free_port(), str(out)), nprocs=2, join=True)
    return torch.load(out / "ddp.pt"), _ddp_grads(*_ddp_data(), SPAN_UTT)


@pytest.mark.parametrize("name", ["reconstruction", "span", "span_same_utt"])
def test_two_process_gradients_equal_the_global_batch(ddp_and_single, name):
    ddp, single = ddp_and_single
    pred, target, mask, *_ = _ddp_data()
    assert int(mask[:2].sum()) != int(mask[2:].sum())  # unequal numbers of masked frames
    for s, d in zip(single[name], ddp[name]):
        assert s.abs().sum() > 0
        torch.testing.assert_close(d, s, rtol=1e-4, atol=1e-6,  # float32 inside
                                   msg=lambda m: f"{name}: {m}")
