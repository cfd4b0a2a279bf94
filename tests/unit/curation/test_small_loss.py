"""fit_probe trains its folds side by side: checked against training each fold alone with
torch's own Linear, autograd and torch.optim.Adam (the probe's algorithm before issue 16's
speed work), on folds with different step counts, sample weights and the out-of-core path."""

import numpy as np
import pytest
import torch

from winnow.curation import small_loss
from winnow.curation.small_loss import fit_probe


def mixture(n, k=4, d=24, *, seed=0, flip=0.2):
    """(N, D) unit rows of a Gaussian mixture and (N,) labels with `flip` of them replaced at random."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    x = rng.normal(size=(k, d))[y] * 1.5 + rng.normal(size=(n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    noisy = np.where(rng.random(n) < flip, rng.integers(0, k, n), y)
    return x.astype(np.float32), noisy


def fold_by_fold(x, scale, y, folds, sample_weight, *, n_classes, n_folds, epochs, min_steps, batch_size,
                 minibatch_size, learning_rate, weight_decay, seed):
    """The oracle: one fold after another, each an nn.Linear trained by autograd and torch.optim.Adam
    on its own minibatch sequence (random numbers drawn in this order: a fold's init, then its
    epochs' permutations). Returns (N, K) out-of-fold softmax, (N,) mean in-fold margin."""
    feats = x.float() if scale is None else x.float() / scale
    n = len(y)
    probs = np.zeros((n, n_classes))
    aum_sum, aum_count = np.zeros(n), np.zeros(n)
    gen = torch.Generator().manual_seed(seed)
    for f in range(n_folds):
        train = torch.from_numpy(np.flatnonzero(folds != f))
        linear = torch.nn.Linear(x.shape[1], n_classes)
        with torch.no_grad():
            linear.weight.copy_(torch.randn(linear.weight.shape, generator=gen) * 0.01)
            linear.bias.zero_()
        opt = torch.optim.Adam(linear.parameters(), lr=learning_rate, weight_decay=weight_decay)
        full = batch_size >= len(train)
        rows_per_step = len(train) if full else minibatch_size
        per_epoch = -(-len(train) // rows_per_step)
        for _ in range(max(epochs, -(-min_steps // per_epoch))):
            order = train if full else train[torch.randperm(len(train), generator=gen)]
            for start in range(0, len(train), rows_per_step):
                rows = order[start : start + rows_per_step]
                logits = linear(feats[rows])
                ce = torch.nn.functional.cross_entropy(logits, y[rows], reduction="none")
                w = torch.ones(len(rows)) if sample_weight is None else sample_weight[rows]
                loss = (ce * w).sum() / w.sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
                with torch.no_grad():
                    own = logits.gather(1, y[rows, None])[:, 0]
                    other = logits.scatter(1, y[rows, None], float("-inf")).max(1).values
                    np.add.at(aum_sum, rows.numpy(), (own - other).double().numpy())
                    np.add.at(aum_count, rows.numpy(), 1)
        test = np.flatnonzero(folds == f)
        with torch.no_grad():
            probs[test] = torch.softmax(linear(feats[test]), dim=1).double().numpy()
    return probs / probs.sum(1, keepdims=True), aum_sum / np.maximum(aum_count, 1)


def with_oracle(monkeypatch, embeddings, labels, **kw):
    """fit_probe's result and the oracle's, trained on the very features and folds fit_probe made."""
    seen = {}
    real = small_loss._train_folds

    def spy(*args, **options):
        seen["args"], seen["options"] = args, options
        return real(*args, **options)

    monkeypatch.setattr(small_loss, "_train_folds", spy)
    result = fit_probe(embeddings, labels, **kw)
    monkeypatch.undo()
    probs, aum = fold_by_fold(*seen["args"], **seen["options"])
    return result, probs, aum, seen


def step_counts(folds, *, n_folds, epochs, min_steps, batch_size, minibatch_size, **_):
    out = []
    for f in range(n_folds):
        m = int((folds != f).sum())
        per_epoch = -(-m // (m if batch_size >= m else minibatch_size))
        out.append(per_epoch * max(epochs, -(-min_steps // per_epoch)))
    return out


# 601 rows in 5 folds: 480 or 481 training rows, 5 or 6 minibatches of 96 an epoch, so the folds
# take 25 and 30 steps: the first to finish must stop where it is (no drift on Adam's momentum).
UNEVEN = dict(n_folds=5, epochs=5, min_steps=20, batch_size=400, minibatch_size=96)


@pytest.mark.parametrize("case", ["minibatches", "full_batches", "mixed", "weighted", "out_of_core"])
def test_folds_trained_side_by_side_match_each_fold_trained_alone(monkeypatch, tmp_path, case):
    x, y = mixture(601)
    kw = dict(n_classes=4, seed=3, max_dim=16, **UNEVEN)
    if case == "full_batches":
        kw.update(batch_size=1000, min_steps=40)  # every fold: 40 steps on all its rows
    elif case == "mixed":  # folds of 480 rows train on full batches, folds of 481 on minibatches
        kw.update(batch_size=480)
    elif case == "weighted":  # copies in duplicate groups weigh 1 / group size in the loss
        src = np.arange(0, 600, 7)
        kw["groups"] = np.r_[np.full(601, -1), np.arange(len(src))]
        kw["groups"][src] = np.arange(len(src))
        x, y = np.vstack([x, x[src]]), np.r_[y, y[src]]
    elif case == "out_of_core":  # float16 memory map: float16 features standardised per minibatch
        path = tmp_path / "emb.npy"
        np.save(path, x.astype(np.float16))
        x = np.load(path, mmap_mode="r")
    result, probs, aum, seen = with_oracle(monkeypatch, x, y, **kw)
    folds = seen["args"][3]
    steps = step_counts(folds, **seen["options"])
    if case in ("minibatches", "out_of_core"):
        assert len(set(steps)) == 2, steps
    if case == "mixed":
        assert sorted(set(steps)) == [20, 30], steps  # min_steps full batches; 5 epochs of 6 minibatches
    if case == "weighted":
        assert seen["args"][4] is not None
    if case == "out_of_core":
        assert seen["args"][0].dtype == torch.float16 and seen["args"][1] is not None
    np.testing.assert_allclose(result.pred_probs, probs, atol=2e-6)
    np.testing.assert_allclose(result.aum, aum, atol=2e-5)
    assert (result.pred_probs.argmax(1) == probs.argmax(1)).all()


def test_permutations_drawn_again_from_saved_generator_states_are_the_same_bits(monkeypatch):
    x, y = mixture(601)
    kw = dict(n_classes=4, seed=1, max_dim=16, **UNEVEN)
    kept = fit_probe(x, y, **kw)
    monkeypatch.setattr(small_loss, "_KEEP_PERMUTATION_BYTES", 0)
    redrawn = fit_probe(x, y, **kw)
    for field in ("pred_probs", "losses", "margin", "aum"):
        assert np.array_equal(getattr(kept, field), getattr(redrawn, field)), field


def test_probe_is_the_same_bits_whatever_the_callers_thread_count():
    x, y = mixture(601)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = fit_probe(x, y, n_classes=4, max_dim=16, **UNEVEN)
        torch.set_num_threads(2)
        two = fit_probe(x, y, n_classes=4, max_dim=16, **UNEVEN)
        assert torch.get_num_threads() == 2  # the caller's setting is restored
    finally:
        torch.set_num_threads(threads)
    for field in ("pred_probs", "aum"):
        assert np.array_equal(getattr(one, field), getattr(two, field)), field


def test_probe_finds_planted_flips():
    x, y = mixture(1500, flip=0.0)
    rng = np.random.default_rng(5)
    flipped = rng.random(len(y)) < 0.15
    noisy = np.where(flipped, (y + 1 + rng.integers(0, 3, len(y))) % 4, y)
    probe = fit_probe(x, noisy, n_classes=4)
    worst = np.argsort(-probe.losses)[: flipped.sum()]
    assert flipped[worst].mean() > 0.8
    assert np.corrcoef(probe.aum, flipped)[0, 1] < -0.5


def two_gaussian_em(z, n_iter=20, reg=5e-4):
    """The oracle for split_small_loss: EM on (N, 2) log-densities, normalised by their row max
    (the split's formulation before issue 16's speed work), then the same monotone tail."""
    mu, var, w = np.quantile(z, [0.25, 0.9]), np.full(2, z.var()) + reg, np.full(2, 0.5)

    def log_p():
        out = -0.5 * ((z[:, None] - mu) ** 2 / var + np.log(2 * np.pi * var)) + np.log(w)
        return out - out.max(axis=1, keepdims=True)

    for _ in range(n_iter):
        resp = np.exp(log_p())
        resp /= resp.sum(axis=1, keepdims=True)
        nk = resp.sum(axis=0) + 1e-12
        w, mu = nk / len(z), (resp * z[:, None]).sum(axis=0) / nk
        var = (resp * (z[:, None] - mu) ** 2).sum(axis=0) / nk + reg
    resp = np.exp(log_p())
    post = resp[:, np.argmin(mu)] / resp.sum(axis=1)
    order = np.argsort(z, kind="stable")
    out = np.empty_like(post)
    out[order] = np.minimum.accumulate(post[order])
    return out


@pytest.mark.parametrize("kind", ["bimodal", "heavy_tail", "uniform", "one_outlier"])
def test_small_loss_split_matches_the_two_gaussian_em(kind):
    rng = np.random.default_rng(2)
    losses = {
        "bimodal": np.r_[rng.gamma(1, 0.2, 4000), rng.normal(2.5, 0.7, 1000).clip(0)],
        "heavy_tail": rng.pareto(1.5, 5000),
        "uniform": rng.random(3000),
        "one_outlier": np.r_[np.zeros(999), 10.0],
    }[kind]
    split = small_loss.split_small_loss(losses)
    want = two_gaussian_em((losses - losses.min()) / np.ptp(losses))
    # Relative: the smallest clean probabilities are scores too (ranked by the ensemble).
    np.testing.assert_allclose(split.clean_prob, want, rtol=1e-9, atol=1e-300)
    assert np.array_equal(split.is_noisy, want < 0.5)
    if kind == "bimodal":
        assert split.is_noisy[4000:].mean() > 0.9 and split.is_noisy[:4000].mean() < 0.05
