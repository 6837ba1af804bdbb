"""HuBERT cluster targets: the k-means codebook against scikit-learn (partition and inertia),
assignment against a numpy brute-force argmin, determinism and checkpoint round trips,
empty-cluster repair (all in paravox.models.codebook), and the masked cluster loss
(paravox.objectives.unit_prediction) against F.cross_entropy on frames picked by hand."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from paravox.errors import ConfigError
from paravox.models import codebook as kmeans
from paravox.models.codebook import KMeansCodebook, fit_codebook_on
from paravox.objectives.unit_prediction import masked_cluster_loss


def _standardised(x: np.ndarray) -> np.ndarray:
    """What the codebook clusters: per-dimension z-scores with the population std."""
    x = x.astype(np.float64)
    return (x - x.mean(0)) / x.std(0)


def _sklearn_inertia(x: np.ndarray, k: int) -> float:
    """scikit-learn's best-of-10 k-means inertia, per point, on the standardised data."""
    km = KMeans(n_clusters=k, n_init=10, random_state=0).fit(_standardised(x))
    return km.inertia_ / len(x)


def _fit(x: np.ndarray, k: int, **kw) -> tuple[KMeansCodebook, float]:
    codebook = KMeansCodebook(k, x.shape[1])
    return codebook, codebook.fit(torch.from_numpy(x.astype(np.float32)), **kw)


# ---------------------------------------------------------------- k-means against sklearn


def test_separated_blobs_recover_the_partition_and_sklearn_inertia():
    x, y = make_blobs(n_samples=2000, centers=5, n_features=8, cluster_std=0.5, random_state=0)
    codebook, inertia = _fit(x, 5, seed=0)
    labels = codebook.assign(torch.from_numpy(x.astype(np.float32))).numpy()
    assert adjusted_rand_score(y, labels) == 1.0
    ref = _sklearn_inertia(x, 5)
    assert abs(inertia - ref) <= 0.01 * ref, (inertia, ref)
    assert bool(codebook.fitted)


@pytest.mark.parametrize("n, centers, dim, spread, k, state", [
    (3000, 12, 6, 2.5, 12, 1),  # a single k-means++ run lands up to 16% above sklearn here
    (4000, 30, 10, 3.0, 20, 7),  # fewer clusters than blobs: no "true" partition
])
def test_overlapping_data_inertia_close_to_sklearn(n, centers, dim, spread, k, state):
    x, _ = make_blobs(n_samples=n, centers=centers, n_features=dim, cluster_std=spread,
                      random_state=state)
    _, inertia = _fit(x, k, seed=0)
    ref = _sklearn_inertia(x, k)
    assert inertia <= 1.02 * ref, (inertia, ref)


def test_inertia_is_mean_squared_distance_in_standardised_space():
    x = np.random.default_rng(0).normal(size=(500, 3)) * [1.0, 10.0, 100.0] + [0.0, 5.0, -3.0]
    codebook, inertia = _fit(x, 4, seed=1)
    z = _standardised(x)
    c = codebook.centroids.double().numpy()
    d2 = ((z[:, None, :] - c[None]) ** 2).sum(-1)
    assert inertia == pytest.approx(d2.min(1).mean(), rel=1e-5)
    np.testing.assert_allclose(codebook.mean.numpy(), x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(codebook.std.numpy(), x.std(0), rtol=1e-5)


# ---------------------------------------------------------------- assignment


@pytest.mark.parametrize("standardise", [True, False])
def test_assign_is_brute_force_argmin(standardise):
    rng = np.random.default_rng(3)
    train = rng.normal(size=(400, 6)) * rng.uniform(0.5, 4.0, size=6) + rng.normal(size=6)
    codebook = KMeansCodebook(7, 6, standardise=standardise)
    codebook.fit(torch.from_numpy(train.astype(np.float32)), seed=0, n_init=1)
    points = rng.normal(size=(3, 50, 6)).astype(np.float32) * 3
    got = codebook.assign(torch.from_numpy(points))
    assert got.shape == (3, 50) and got.dtype == torch.long
    z = (points.astype(np.float64) - codebook.mean.double().numpy()) / codebook.std.double().numpy()
    c = codebook.centroids.double().numpy()
    want = ((z[..., None, :] - c) ** 2).sum(-1).argmin(-1)
    np.testing.assert_array_equal(got.numpy(), want)
    if not standardise:
        assert bool((codebook.mean == 0).all()) and bool((codebook.std == 1).all())
    assert torch.equal(codebook(torch.from_numpy(points)), got)  # forward = assign
    assert codebook.assign(torch.from_numpy(points[0, 0])).shape == ()  # [D] -> []


def test_blockwise_distances_equal_one_block(monkeypatch):
    x = torch.randn(1000, 5, generator=torch.Generator().manual_seed(0))
    whole = KMeansCodebook(9, 5)
    whole.fit(x, seed=2, n_init=2)
    monkeypatch.setattr(kmeans, "_CHUNK_ELEMENTS", 9 * 37)  # blocks of 37 rows
    blocks = KMeansCodebook(9, 5)
    blocks.fit(x, seed=2, n_init=2)
    torch.testing.assert_close(blocks.centroids, whole.centroids)
    assert torch.equal(blocks.assign(x), whole.assign(x))


# ---------------------------------------------------------------- determinism, checkpoints, errors


def test_same_seed_same_codebook_and_state_dict_round_trip():
    x = torch.randn(3000, 4, generator=torch.Generator().manual_seed(1)) * 2 + 1
    a, b = KMeansCodebook(10, 4), KMeansCodebook(10, 4)
    ia = a.fit(x, seed=5, max_points=1000)  # also exercises the seeded subsample
    ib = b.fit(x, seed=5, max_points=1000)
    assert ia == ib and torch.equal(a.centroids, b.centroids)
    assert torch.equal(a.mean, b.mean) and torch.equal(a.std, b.std)

    fresh = KMeansCodebook(10, 4)
    assert {k: v.shape for k, v in fresh.state_dict().items()} == \
        {k: v.shape for k, v in a.state_dict().items()}
    fresh.load_state_dict(a.state_dict())
    assert bool(fresh.fitted)
    probe = torch.randn(2, 30, 4)
    assert torch.equal(fresh.assign(probe), a.assign(probe))


def test_errors():
    x = torch.randn(5, 3)
    with pytest.raises(ConfigError, match="never fitted"):
        KMeansCodebook(2, 3).assign(x)
    with pytest.raises(ConfigError, match="5 points for 6 clusters"):
        KMeansCodebook(6, 3).fit(x)
    with pytest.raises(ConfigError, match="D = dim = 4"):
        KMeansCodebook(2, 4).fit(x)
    fitted = KMeansCodebook(2, 3)
    fitted.fit(x)
    with pytest.raises(ConfigError, match="D = dim = 3"):
        fitted.assign(torch.randn(4, 2))
    bad = x.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(ConfigError, match="NaN"):
        KMeansCodebook(2, 3).fit(bad)
    with pytest.raises(ConfigError):
        KMeansCodebook(0, 3)
    with pytest.raises(ConfigError):
        KMeansCodebook(2, 3).fit(x, iters=0)


# ---------------------------------------------------------------- empty clusters


def test_duplicates_and_too_many_clusters_give_k_non_empty_clusters():
    rng = np.random.default_rng(0)
    # 3 tight natural clusters, but 12 distinct points only, each repeated 50 times
    distinct = np.concatenate([rng.normal(loc=m, scale=0.05, size=(4, 2)) for m in (-5, 0, 5)])
    x = torch.from_numpy(np.repeat(distinct, 50, axis=0).astype(np.float32))
    codebook = KMeansCodebook(12, 2)
    inertia = codebook.fit(x, seed=0)
    counts = torch.bincount(codebook.assign(x), minlength=12)
    assert bool((counts > 0).all()), counts.tolist()
    assert inertia == pytest.approx(0.0, abs=1e-6)  # one centroid per distinct point

    # more clusters than natural ones, no duplicates
    x2, _ = make_blobs(n_samples=300, centers=2, n_features=3, cluster_std=0.1, random_state=0)
    x2 = torch.from_numpy(x2.astype(np.float32))
    codebook = KMeansCodebook(25, 3)
    codebook.fit(x2, seed=0)
    assert bool((torch.bincount(codebook.assign(x2), minlength=25) > 0).all())


def test_empty_cluster_is_reseeded_on_the_farthest_point():
    x = torch.tensor([[0.0], [0.1], [0.2], [10.0], [10.1], [30.0]])
    start = torch.tensor([[0.1], [10.0], [1000.0]])  # the third centre attracts no point
    c, d2 = kmeans._lloyd(x, start, iters=10)
    labels = kmeans._scan(x, c, with_sums=False)[0]
    assert sorted(torch.bincount(labels, minlength=3).tolist()) == [1, 2, 3]
    assert sorted(c.flatten().tolist()) == pytest.approx([0.1, 10.05, 30.0])
    assert float(d2.max()) == pytest.approx(0.01, abs=1e-5)


def test_fewer_distinct_points_than_clusters_still_fits():
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0]]).repeat(10, 1)  # 20 points, 2 distinct
    codebook = KMeansCodebook(4, 2)
    assert codebook.fit(x) == pytest.approx(0.0, abs=1e-6)
    assert codebook.assign(x).unique().numel() == 2


# ---------------------------------------------------------------- fit_codebook_on


def test_fit_codebook_on_blocks_and_stops_at_max_points():
    g = torch.Generator().manual_seed(0)
    blocks = [torch.randn(2, 40, 3, generator=g), torch.randn(50, 3, generator=g)]
    codebook = fit_codebook_on(iter(blocks), n_clusters=4, seed=3)
    direct = KMeansCodebook(4, 3)
    direct.fit(torch.cat([blocks[0].reshape(-1, 3), blocks[1]]), seed=3)
    assert torch.equal(codebook.centroids, direct.centroids)

    consumed = []

    def stream():
        for i in range(100):
            consumed.append(i)
            yield torch.randn(30, 3, generator=g)

    codebook = fit_codebook_on(stream(), n_clusters=4, max_points=100)
    assert consumed == [0, 1, 2, 3] and bool(codebook.fitted)
    with pytest.raises(ConfigError, match="no feature block"):
        fit_codebook_on([], n_clusters=2)
    with pytest.raises(ConfigError, match="same dim"):
        fit_codebook_on([torch.randn(10, 3), torch.randn(10, 4)], n_clusters=2)


# ---------------------------------------------------------------- masked_cluster_loss


def _loss_case(seed=0, b=3, t=20, k=7):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, t, k, generator=g) * 2
    targets = torch.randint(k, (b, t), generator=g)
    mask = torch.rand(b, t, generator=g) < 0.4
    return logits, targets, mask


def test_masked_cluster_loss_matches_cross_entropy_on_hand_picked_frames():
    logits, targets, mask = _loss_case()
    targets[0, :5] = -100  # padding, some of it masked
    mask[0, :5] = True
    poisoned = logits.clone()
    poisoned[~mask] = float("nan")  # unmasked frames must be inert
    poisoned.requires_grad_()
    loss, acc = masked_cluster_loss(poisoned, targets, mask)

    frames = [(bi, ti) for bi in range(3) for ti in range(20)
              if mask[bi, ti] and targets[bi, ti] != -100]
    ref_logits = torch.stack([logits[bi, ti] for bi, ti in frames]).requires_grad_()
    ref_targets = torch.stack([targets[bi, ti] for bi, ti in frames])
    ref = F.cross_entropy(ref_logits, ref_targets)
    torch.testing.assert_close(loss, ref)
    hits = sum(int(logits[bi, ti].argmax() == targets[bi, ti]) for bi, ti in frames)
    assert float(acc) == pytest.approx(hits / len(frames))
    assert not acc.requires_grad

    loss.backward()
    ref.backward()
    grad = poisoned.grad
    assert bool(torch.isfinite(grad).all())
    assert bool((grad[~mask] == 0).all()) and bool((grad[0, :5] == 0).all())
    torch.testing.assert_close(torch.stack([grad[bi, ti] for bi, ti in frames]), ref_logits.grad)

    same, same_acc = masked_cluster_loss(logits, targets, mask, global_mean=True)
    torch.testing.assert_close(same, ref)  # no process group: the local mean
    assert float(same_acc) == float(acc)


def test_masked_cluster_loss_without_masked_frames():
    logits, targets, mask = _loss_case(seed=1)
    logits[0, 0, 0] = float("nan")
    logits.requires_grad_()
    for m, tg in ((torch.zeros_like(mask), targets), (mask, torch.full_like(targets, -100))):
        loss, acc = masked_cluster_loss(logits, tg, m)
        assert loss.item() == 0.0 and acc.item() == 0.0 and loss.grad_fn is not None
        (grad,) = torch.autograd.grad(loss, logits)
        assert bool((grad == 0).all())


def test_masked_cluster_loss_rejects_bad_inputs():
    logits, targets, mask = _loss_case()
    bad = targets.clone()
    bad[mask] = 7  # K = 7: out of range
    with pytest.raises(ValueError, match=r"outside \[0, 7\)"):
        masked_cluster_loss(logits, bad, mask)
    bad[mask] = -1
    with pytest.raises(ValueError, match="-100"):
        masked_cluster_loss(logits, bad, mask)
    bad[~mask] = 99  # out of range but unmasked: ignored
    bad[mask] = targets[mask]
    masked_cluster_loss(logits, bad, mask)
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        masked_cluster_loss(logits, targets[:, :-1], mask)
    with pytest.raises(ValueError, match=r"\[B, T, K\]"):
        masked_cluster_loss(logits[0], targets, mask)
