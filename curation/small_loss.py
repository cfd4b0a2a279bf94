"""Small-loss label noise: a linear probe on the embeddings, trained K-fold.

Networks fit clean labels before noisy ones, so a sample the probe cannot fit (high
out-of-fold loss, low margin while training) is probably mislabelled. The probe is a
softmax regression in torch: out-of-fold `pred_probs` feed confident learning, the
per-sample losses feed a 2-component Gaussian mixture (DivideMix's clean/noisy split),
and the margins recorded over training epochs give the area under the margin (AUM).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from winnow.curation.blocks import block_rows, is_mapped, iter_blocks, take_rows
from winnow.curation.errors import InvalidArray
from winnow.curation.validation import (
    check_every_class_present,
    check_labels,
    check_same_length,
    check_unit_embeddings,
)


@dataclass(frozen=True)
class ProbeResult:
    pred_probs: np.ndarray  # (N, K) float64: out-of-fold softmax of the probe (never trained on the row)
    losses: np.ndarray  # (N,) float64: out-of-fold cross-entropy of the given label
    margin: np.ndarray  # (N,) float64 in [-1, 1]: out-of-fold p[given] - max p[other]; low = hard or wrong
    aum: np.ndarray  # (N,) float64: mean over training epochs of logit[given] - max logit[other], in-fold


@dataclass(frozen=True)
class SmallLossSplit:
    clean_prob: np.ndarray  # (N,) float64 in [0, 1]: posterior of the low-loss Gaussian component
    is_noisy: np.ndarray  # (N,) bool: clean_prob < 0.5


def fit_probe(
    embeddings,
    labels,
    *,
    n_classes: int,
    n_folds: int = 5,
    epochs: int = 5,
    min_steps: int = 100,
    batch_size: int = 8192,
    minibatch_size: int = 2048,
    learning_rate: float = 0.01,
    weight_decay: float = 0.1,
    max_dim: int | None = 128,
    seed: int = 0,
    groups=None,
) -> ProbeResult:
    """Out-of-fold softmax-regression probe on `embeddings` (N, D) with `labels` (N,).

    When D > `max_dim` the probe sees the top `max_dim` principal axes (no labels
    involved). Folds are stratified by given label, and the members of a duplicate group
    (`groups`: (N,) int ids, -1 = none, e.g. `find_duplicates(...).group`) share one fold,
    so a copy never trains the model that predicts its twin, and train as one sample.
    Features are standardised with statistics of all rows (no labels involved, so nothing
    leaks across folds). Adam on large minibatches; deterministic for a given seed. Strong
    weight decay keeps the probe from fitting the noisy labels it is meant to find.

    Provenance of the defaults: weight_decay (0.1, was 1e-4) and max_dim (128) were chosen
    on benchmarks/label_noise.py's 15 seed-0 rows (digits and MNIST through EfficientNet-
    Lite0, the 10-class Gaussian mixture); epochs (5, was 30), min_steps (100, was 300)
    and batch_size (8192, was 4096) were set in the same change, for those rows and for the
    --scale timing (100k x 512 Gaussian mixture). learning_rate (0.01) and n_folds (5)
    predate the benchmark and were not tuned on it. minibatch_size (2048: folds larger than
    batch_size train on minibatches of this many rows) was set for speed on the issue-16 speed
    data (clustered low-rank, 512-d, 20% flips): detection at 50k took 10.5 s instead of 21.1 s
    and at 100k 14.7 s instead of 25.0 s on a loaded 2-core machine, with the same F1 (0.9682
    vs 0.9679, 0.9745 vs 0.9746); it changes nothing for folds of at most batch_size rows, so
    none of the label-noise benchmark's quality rows. None is validated on held-out data yet.
    """
    import torch

    threads = torch.get_num_threads()
    # Each step is a (batch x 128) @ (128 x K) product: far too small to split across
    # threads, and thread hand-offs cost more than they save (many times more on a busy
    # machine), so the probe runs on one thread and restores the caller's setting.
    torch.set_num_threads(1)
    try:
        return _fit_probe(embeddings, labels, n_classes=n_classes, n_folds=n_folds, epochs=epochs,
                          min_steps=min_steps, batch_size=batch_size, minibatch_size=minibatch_size,
                          learning_rate=learning_rate, weight_decay=weight_decay, max_dim=max_dim, seed=seed,
                          groups=groups, threads=threads)
    finally:
        torch.set_num_threads(threads)


def _fit_probe(embeddings, labels, *, n_classes, n_folds, epochs, min_steps, batch_size, minibatch_size,
               learning_rate, weight_decay, max_dim, seed, groups, threads) -> ProbeResult:
    import torch

    emb = check_unit_embeddings(embeddings)
    labels = check_labels(labels, n_classes=n_classes)
    groups = None if groups is None else np.asarray(groups, dtype=np.int64)
    check_same_length(labels=labels, embeddings=emb, groups=groups)
    check_every_class_present(labels, n_classes)
    if n_folds < 2:
        raise InvalidArray(f"n_folds must be at least 2, got {n_folds}")
    n = len(labels)
    # A duplicate group counts as one sample (each member weighs 1 / group size) in the
    # feature statistics and in training: copies of a mislabelled image must not outweigh
    # it into being fitted, and a folder with copies gets the probe of its distinct images.
    sample_weight = None
    if groups is not None and (groups >= 0).any():
        sizes = np.bincount(groups[groups >= 0])
        sample_weight = torch.from_numpy(np.where(groups >= 0, 1.0 / sizes[np.maximum(groups, 0)], 1.0).astype(np.float32))
    scale = None  # out of core: the features' (max_dim,) std, divided out block by block
    if (emb.dtype == np.float16 or is_mapped(emb)) and max_dim is not None and emb.shape[1] > max_dim:
        # Out of core (a float16 memory map): centre and project block by block (curation/blocks.py).
        # numpy's products and one torch thread: a run's scores must be the same bits in any
        # process (multi-threaded torch products were not: a resumed run's probe scores differed
        # in the 7th digit from the uninterrupted run's, which tests/e2e/test_crash_safety.py caught).
        x, key = _projected_blocks(emb, max_dim, seed=seed, weights=sample_weight)
        folds = _stratified_folds(labels, None, n_folds=n_folds, seed=seed, groups=groups, key=key)
        scale = _feature_std(x, sample_weight).add_(1e-6)
    else:
        # A copy: the rows may be a read-only memory map, which torch will not wrap.
        x = torch.from_numpy(np.array(emb, dtype=np.float32, order="C"))
        folds = _stratified_folds(labels, x, n_folds=n_folds, seed=seed, groups=groups)
        if sample_weight is None:
            x -= x.mean(0)  # in place: at 1M x 512 every extra copy is 2 GB
        else:
            x -= (sample_weight @ x) / sample_weight.sum()  # a weighted mean, still no (N, D) temporary
        if max_dim is not None and x.shape[1] > max_dim:
            # Two large products (the covariance, the projection): worth the caller's threads.
            torch.set_num_threads(threads)
            try:
                x = x @ _principal_axes(x, max_dim, seed=seed, weights=sample_weight)
            finally:
                torch.set_num_threads(1)
        # In place (x is this function's own copy): a second (N, max_dim) float32 array would be
        # 512 bytes a row at the peak (issue 18 item 1).
        if sample_weight is None:
            x.div_(x.std(0) + 1e-6)
        else:  # the weighted analogue of the unbiased std (its weights sum to the distinct samples)
            x.div_(_feature_std(x, sample_weight).add_(1e-6))

    y = torch.from_numpy(labels)
    weight, bias, aum_sum, aum_count = _train_folds(
        x, scale, y, folds, sample_weight, n_classes=n_classes, n_folds=n_folds, epochs=epochs, min_steps=min_steps,
        batch_size=batch_size, minibatch_size=minibatch_size, learning_rate=learning_rate, weight_decay=weight_decay,
        seed=seed)
    probs = np.zeros((n, n_classes), dtype=np.float64)
    with torch.no_grad():
        for f in range(n_folds):
            test = np.flatnonzero(folds == f)
            for start in range(0, len(test), _PREDICT_ROWS):  # blocks: x[test] is 0.2 x 512 bytes a row
                part = test[start : start + _PREDICT_ROWS]
                logits = torch.addmm(bias[f], _features(x, torch.from_numpy(part), scale), weight[f].t())
                probs[part] = torch.softmax(logits, dim=1).double().numpy()
    del x
    probs /= probs.sum(axis=1, keepdims=True)
    own = probs[np.arange(n), labels]
    return ProbeResult(
        pred_probs=probs,
        losses=-np.log(np.clip(own, 1e-12, None)),
        margin=own - _max_other(probs, labels),
        aum=aum_sum / np.maximum(aum_count, 1),
    )


# Rows per block where the probe makes an (rows, K) or (rows, max_dim) temporary: 8k rows keep
# them at a few MiB whatever N is (a (rows, 128) float64 block of 64k rows was 64 MiB).
_PREDICT_ROWS = 1 << 13

# The folds' epoch permutations are drawn before training, in the order one fold after another
# would draw them. Up to this many bytes of them are kept; beyond (millions of rows), each
# fold's generator state is kept instead and its permutations are drawn again as it needs them.
_KEEP_PERMUTATION_BYTES = 1 << 24


def _train_folds(x, scale, y, folds, sample_weight, *, n_classes, n_folds, epochs, min_steps, batch_size,
                 minibatch_size, learning_rate, weight_decay, seed):
    """Train the folds' softmax regressions side by side: fold f's model on the rows of the other
    folds. Returns weight (F, K, D) and bias (F, K) float32, the (N,) float64 sum of each row's
    in-fold margins over the steps that saw it, and the (N,) count of those steps.

    One step updates every fold at once (batched products): 5 folds x 100 steps were 500 tiny
    torch calls each, whose per-call overhead was most of the probe's time (issue 16 speed). Each
    fold keeps its own initial weights and minibatch sequence, drawn in the order training one
    fold after another draws them, its own loss (the mean over its minibatch) and its own Adam
    state; a fold with fewer steps than the others stops moving when its steps are done.
    """
    import torch

    n, d = x.shape
    n_train = [int(np.count_nonzero(folds != f)) for f in range(n_folds)]
    full = [batch_size >= m for m in n_train]
    step_rows = [m if fb else minibatch_size for m, fb in zip(n_train, full, strict=True)]
    per_epoch = [-(-m // r) for m, r in zip(n_train, step_rows, strict=True)]
    # Small data needs more passes than large data: at least `min_steps` updates.
    n_epochs = [max(epochs, -(-min_steps // s)) for s in per_epoch]
    n_steps = [s * e for s, e in zip(per_epoch, n_epochs, strict=True)]

    gen = torch.Generator().manual_seed(seed)
    keep = (n_folds * max(n_epochs) * max(n_train) * 8) <= _KEEP_PERMUTATION_BYTES
    init, gens, perms = [], [], []
    for f in range(n_folds):
        init.append(torch.randn((n_classes, d), generator=gen) * 0.01)
        own = torch.Generator()
        own.set_state(gen.get_state())
        gens.append(own)
        drawn = [] if full[f] else [torch.randperm(n_train[f], generator=gen) for _ in range(n_epochs[f])]
        perms.append(drawn if keep else None)
    weight = torch.stack(init)  # (F, K, D): one batched product for all folds
    bias = torch.zeros(n_folds, n_classes)
    opt = _Adam([weight, bias], lr=learning_rate, weight_decay=weight_decay)
    aum_sum = torch.zeros(n + 1, dtype=torch.float64)  # the last slot takes the padding rows' margins
    aum_count = np.zeros(n, dtype=np.float64)
    for f in range(n_folds):
        aum_count[folds != f] += n_epochs[f]  # each epoch sees each of the fold's training rows once
    orders: list = [None] * n_folds  # each fold's row numbers in its current epoch's order
    # int32 row numbers where they fit: five folds' orders are 4 bytes a row each, not 8 (160 MB at 10M rows).
    row_type = np.int32 if n < 2**31 else np.int64
    cached = None
    # Every step's features are gathered into the same buffers (no fresh (rows, D) arrays per step).
    rows_at_most = n_folds * max(step_rows)
    buffers = (torch.empty((rows_at_most, d)),
               torch.empty((rows_at_most, d), dtype=x.dtype) if scale is not None and x.dtype != torch.float32 else None)
    for s in range(max(n_steps)):
        active = [f for f in range(n_folds) if s < n_steps[f]]
        parts = []
        for f in active:
            epoch, j = divmod(s, per_epoch[f])
            if j == 0 and (orders[f] is None or not full[f]):
                orders[f] = None  # dropped before the next is built: one fold's order less at the peak
                train = torch.from_numpy(np.flatnonzero(folds != f).astype(row_type))
                if not full[f]:
                    train = train[perms[f][epoch] if keep else torch.randperm(n_train[f], generator=gens[f])]
                orders[f] = train
            parts.append(orders[f][j * step_rows[f] : (j + 1) * step_rows[f]])
        # Full batches (small data) are the same rows every step: gather them once.
        reuse = cached is not None and cached[0] == active and all(full[f] for f in active)
        if not reuse:
            cached = (active, *_step_batch(x, scale, y, sample_weight, parts, n, buffers))
        _, xb, yb, coef, into = cached
        whole = len(active) == n_folds
        w = weight if whole else weight[active]
        b = bias if whole else bias[active]
        # Classes by rows, (A, K, rows): with K ~ 10, the products, the softmax and the margins
        # over the class axis run several times faster in this layout than in (A, rows, K).
        logits = torch.baddbmm(b[:, :, None], w, xb.transpose(1, 2))
        aum_sum.index_add_(0, into, _logit_margin(logits, yb, dim=1).reshape(-1).double())
        # The gradient of each fold's (weighted) mean cross-entropy: (softmax - one-hot) x row weight.
        grad = torch.softmax(logits, dim=1)
        grad.scatter_add_(1, yb[:, None, :], torch.full((yb.shape[0], 1, yb.shape[1]), -1.0))
        grad.mul_(coef)
        opt.step([torch.bmm(grad, xb), grad.sum(2)], None if whole else active)
    return weight, bias, aum_sum[:n].numpy(), aum_count


def _step_batch(x, scale, y, sample_weight, parts, n, buffers):
    """One step's minibatches, one per active fold (`parts`: row-number tensors), padded to the
    longest: features (A, rows, D), labels (A, rows), each row's weight in its fold's mean loss
    (A, 1, rows; 0 for padding), and where each row's margin is summed (padding: row n)."""
    import torch

    width = max(len(p) for p in parts)
    if all(len(p) == width for p in parts):
        rows = torch.cat(parts)
        into = rows
        valid = None
    else:
        rows = torch.zeros(len(parts) * width, dtype=parts[0].dtype)
        valid = torch.zeros(len(parts) * width, dtype=torch.bool)
        for a, p in enumerate(parts):
            rows[a * width : a * width + len(p)] = p
            valid[a * width : a * width + len(p)] = True
        into = torch.where(valid, rows, n)
    xb = _features(x, rows, scale, buffers).view(len(parts), width, -1)
    yb = y[rows].view(len(parts), width)
    if sample_weight is None:
        count = torch.tensor([len(p) for p in parts], dtype=torch.float32)
        coef = (1.0 / count)[:, None, None].expand(-1, 1, width)
        if valid is not None:
            coef = coef * valid.view(len(parts), 1, width)
    else:
        wb = sample_weight[rows] if valid is None else sample_weight[rows] * valid
        wb = wb.view(len(parts), 1, width)
        coef = wb / wb.sum(2, keepdim=True)
    return xb, yb, coef, into


def _features(x, rows, scale, buffers=None):
    """Standardised float32 features of `rows` (a torch index tensor): x's rows, divided by
    `scale` when x is stored unstandardised (out of core). `buffers`: (float32, x's dtype or
    None) tensors of at least len(rows) rows to gather into; the result is a view of the first."""
    import torch

    if buffers is None:
        rows_x = x.index_select(0, rows)
        # Exactly x[rows].float() / scale (float16 -> float32 is exact), without the float32 copy.
        return rows_x if scale is None else torch.div(rows_x, scale)
    out = buffers[0][: len(rows)]
    if scale is None or buffers[1] is None:
        torch.index_select(x, 0, rows, out=out)
        return out if scale is None else out.div_(scale)
    raw = buffers[1][: len(rows)]
    torch.index_select(x, 0, rows, out=raw)
    return torch.div(raw, scale, out=out)


def _max_other(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N,) max over the classes other than the given label, in row blocks (no (N, K) copy)."""
    out = np.empty(len(labels), dtype=probs.dtype)
    for start in range(0, len(labels), _PREDICT_ROWS):
        block = probs[start : start + _PREDICT_ROWS].copy()
        block[np.arange(len(block)), labels[start : start + _PREDICT_ROWS]] = -np.inf
        out[start : start + len(block)] = block.max(axis=1)
    return out


def _feature_std(x, weights=None):
    """(D,) float32 std of the columns of x (N, D) (float32 or float16), in row blocks (no (N, D)
    temporary). Unweighted: the unbiased std (torch's x.std(0)). weights (N,): the weighted
    analogue of the unbiased std of centred features, sqrt(weights @ x^2 / (sum(weights) - 1))
    (the weights sum to the distinct samples)."""
    import torch

    total = torch.zeros(x.shape[1], dtype=torch.float64)
    squares = torch.zeros(x.shape[1], dtype=torch.float64)
    for start in range(0, x.shape[0], _PREDICT_ROWS):
        block = x[start : start + _PREDICT_ROWS].double()
        if weights is None:
            total += block.sum(0)
            squares += block.square().sum(0)
        else:
            squares += weights[start : start + _PREDICT_ROWS].double() @ block.square()
    if weights is None:
        n = x.shape[0]
        var = (squares - total.square() / n) / max(n - 1, 1)
    else:
        var = squares / (weights.double().sum() - 1)
    return var.clamp_(min=0).sqrt().float()


def split_small_loss(losses, *, n_iter: int = 20) -> SmallLossSplit:
    """2-component 1-D Gaussian mixture over `losses` (N,), as DivideMix does.

    Losses are min-max normalised; the component with the smaller mean is "clean".
    When all losses are equal, every sample is clean.
    """
    loss = np.asarray(losses, dtype=np.float64)
    if loss.ndim != 1 or loss.size == 0:
        raise InvalidArray(f"losses must be a non-empty 1-D array, got shape {loss.shape}")
    if not np.all(np.isfinite(loss)):
        bad = int(np.flatnonzero(~np.isfinite(loss))[0])
        raise InvalidArray(f"losses[{bad}] is {loss[bad]!r}; values must be finite")
    span = loss.max() - loss.min()
    if span <= 0:
        return SmallLossSplit(clean_prob=np.ones(len(loss)), is_noisy=np.zeros(len(loss), dtype=bool))
    z = (loss - loss.min()) / span
    clean = _gmm_clean_posterior(z, n_iter=n_iter)
    return SmallLossSplit(clean_prob=clean, is_noisy=clean < 0.5)


def _gmm_clean_posterior(z: np.ndarray, *, n_iter: int) -> np.ndarray:
    # Deterministic start: the lower quartile and the 90th percentile; reg keeps a variance
    # from collapsing. These (and n_iter = 20) predate the benchmarks: not tuned on any.
    reg = 5e-4
    mu = np.quantile(z, [0.25, 0.9])
    var = np.array([z.var(), z.var()]) + reg
    w = np.array([0.5, 0.5])
    # With two components a responsibility is a logistic function of the log-density ratio, a
    # quadratic in z: a few passes over N per iteration instead of (N, 2) temporaries
    # (0.31 s -> 0.05 s at 100k, issue 16 speed). Each component's own responsibility is computed
    # as 1 / (1 + exp(-ratio)), so a tiny one keeps its relative precision (no 1 - r).
    z2 = z * z
    ratio = np.empty_like(z)
    resp = np.empty_like(z)
    centred = np.empty_like(z)
    for _ in range(n_iter):
        _log_density_ratio(z, z2, mu, var, w, out=ratio)
        for c, sign in ((0, -1.0), (1, 1.0)):  # component 0: 1 / (1 + exp(-ratio)); 1: 1 / (1 + exp(ratio))
            _logistic(ratio, sign, out=resp)
            nk = resp.sum() + 1e-12
            w[c] = nk / len(z)
            mu[c] = (resp @ z) / nk
            np.subtract(z, mu[c], out=centred)
            np.multiply(centred, resp, out=resp)
            var[c] = (resp @ centred) / nk + reg
    clean_comp = int(np.argmin(mu))
    _log_density_ratio(z, z2, mu, var, w, out=ratio)
    post = _logistic(ratio, -1.0 if clean_comp == 0 else 1.0, out=resp)
    # Beyond the noisy mean a wider clean component could win back the tail; keep it monotone.
    order = np.argsort(z, kind="stable")
    post_sorted = np.minimum.accumulate(post[order])
    out = np.empty_like(post)
    out[order] = post_sorted
    return out


def _log_density_ratio(z, z2, mu, var, w, *, out):
    """log(w0 N(z; mu0, var0)) - log(w1 N(z; mu1, var1)) for every z, written into `out`."""
    a = -0.5 * (1 / var[0] - 1 / var[1])
    b = mu[0] / var[0] - mu[1] / var[1]
    c = -0.5 * (mu[0] ** 2 / var[0] - mu[1] ** 2 / var[1] + np.log(var[0] / var[1])) + np.log(w[0] / w[1])
    np.multiply(z2, a, out=out)
    out += b * z
    out += c
    return out


def _logistic(ratio, sign, *, out):
    """1 / (1 + exp(sign * ratio)) into `out`: the responsibility of component 0 (sign -1) or 1 (+1)."""
    with np.errstate(over="ignore"):  # exp overflows to inf for a hopeless component: 1 / inf = 0
        np.multiply(ratio, sign, out=out)
        np.exp(out, out=out)
    out += 1.0
    np.reciprocal(out, out=out)
    return out


def _projected_blocks(emb, n_axes: int, *, seed: int, weights=None, max_rows: int = 20000):
    """The in-memory path's centred, projected features ((N, n_axes) torch, float16 for float16
    embeddings, else float32; not yet standardised) and fold keys, reading `emb` (N, D) in float32
    blocks: the same mean, the same PCA rows and axes.

    Stored as float16 when the embeddings are: the features round as finely as the inputs they
    are projected from, and at 128 axes they are 256 bytes a row instead of 512, the largest
    array the label detectors hold (issue 18 item 1: 2.6 GB of a 10M-row run)."""
    import torch

    n, d = emb.shape
    w = None if weights is None else weights.numpy().astype(np.float64)
    total = np.zeros(d, dtype=np.float64)
    direction = np.random.default_rng(seed).standard_normal(d).astype(np.float32)  # _stratified_folds' direction
    key = np.empty(n, dtype=np.float32)
    # One float32 buffer for every block of both passes: a fresh 64 MiB array per block cost more in
    # page faults than the copy into it (issue 16 speed).
    buf = np.empty((min(n, block_rows(d)), d), dtype=np.float32)
    for start, block in iter_blocks(emb, buffer=buf):
        total += block.sum(axis=0, dtype=np.float64) if w is None else w[start : start + len(block)] @ block
        key[start : start + len(block)] = block @ direction
    mean = (total / (n if w is None else w.sum())).astype(np.float32)
    rows = np.arange(n) if n <= max_rows else np.sort(np.random.default_rng(seed).choice(n, max_rows, replace=False))
    # _principal_axes' covariance of the sampled rows, summed over blocks (no float64 sample copies).
    cov = np.zeros((d, d), dtype=np.float64)
    ws = None if w is None else w[rows]
    for b in range(0, len(rows), 2048):
        part = (take_rows(emb, rows[b : b + 2048]) - mean).astype(np.float64)
        cov += (part.T if ws is None else part.T * ws[b : b + 2048]) @ part
    cov /= len(rows) if ws is None else ws.sum()
    axes = _top_axes(torch.from_numpy(cov), n_axes).numpy()
    x = np.empty((n, n_axes), dtype=np.float16 if emb.dtype == np.float16 else np.float32)
    projected = None if x.dtype == np.float32 else np.empty((min(n, 8192), n_axes), dtype=np.float32)
    # Smaller blocks than the first pass: here they add to x, which is already whole.
    for start, block in iter_blocks(emb, buffer=buf[:8192]):
        block -= mean
        rows_x = x[start : start + len(block)]
        if projected is None:
            np.matmul(block, axes, out=rows_x)
        else:  # torch rounds float32 to float16 as numpy does (to nearest, ties to even), 20x faster
            np.matmul(block, axes, out=projected[: len(block)])
            torch.from_numpy(rows_x).copy_(torch.from_numpy(projected[: len(block)]))
    return torch.from_numpy(x), key


def _principal_axes(x, n_axes: int, *, seed: int, max_rows: int = 20000, weights=None):
    # Top principal axes of centred x (N, D) -> (D, n_axes), from at most `max_rows` rows:
    # a linear probe loses little on the top axes and each step gets D / n_axes cheaper.
    import torch

    # weights (N,): per-row weights of the covariance (duplicate groups count once).
    w = weights
    if x.shape[0] > max_rows:
        rows = torch.from_numpy(np.sort(np.random.default_rng(seed).choice(x.shape[0], max_rows, replace=False)))
        sample = x[rows]
        w = None if w is None else w[rows]
    else:
        sample = x
    if w is None:
        cov = (sample.T.double() @ sample.double()) / sample.shape[0]
    else:
        cov = ((sample.T.double() * w.double()) @ sample.double()) / w.double().sum()
    return _top_axes(cov, n_axes)


def _top_axes(cov, n_axes: int):
    """(D, n_axes) float32: the top eigenvectors of the (D, D) float64 covariance, signs fixed."""
    import torch

    _, vecs = torch.linalg.eigh(cov)
    axes = vecs[:, -n_axes:].flip(1)
    # eigh's sign is arbitrary; fix it so results do not depend on the LAPACK build.
    signs = torch.sign(axes[axes.abs().argmax(0), torch.arange(n_axes)])
    return (axes * signs).float()


def _logit_margin(logits, y, *, dim: int = -1):
    """logit[given] - max logit[other] along the class axis `dim` of `logits`; `y`: the given
    labels, shaped like `logits` without that axis."""
    own = logits.gather(dim, y.unsqueeze(dim)).squeeze(dim)
    masked = logits.scatter(dim, y.unsqueeze(dim), float("-inf"))
    return own - masked.amax(dim)


def _stratified_folds(labels: np.ndarray, x, *, n_folds: int, seed: int, groups=None, key=None) -> np.ndarray:
    """(N,) fold number per row, each class spread evenly over folds.

    Rows are ordered within their class by a seeded random projection of their embedding,
    not by position, so permuting the samples permutes the folds with them. The projection
    is of the row alone (before centring, PCA and scaling, which depend on every row), so
    adding samples (copies, say) or grouping some moves no other row to another fold.
    A duplicate group (groups: (N,) ids, -1 = none) takes one place in that order, its
    leader's (the member first by projection, then label), and all its members go to the
    leader's fold.
    """
    import torch

    if key is None:  # key: the projections already computed (out of core, _projected_blocks)
        direction = torch.from_numpy(np.random.default_rng(seed).standard_normal(x.shape[1]).astype(np.float32))
        key = (x @ direction).numpy()
    n = len(labels)
    leader = np.arange(n)
    if groups is not None and (groups >= 0).any():
        members = np.flatnonzero(groups >= 0)
        members = members[np.lexsort((labels[members], key[members], groups[members]))]
        g = groups[members]
        first = np.r_[True, g[1:] != g[:-1]]
        leader[members] = members[first][np.cumsum(first) - 1]
    leads = leader == np.arange(n)
    folds = np.empty(n, dtype=np.int64)
    offset = 0
    for c in np.unique(labels[leads]):
        rows = np.flatnonzero(leads & (labels == c))
        rows = rows[np.argsort(key[rows], kind="stable")]
        folds[rows] = (np.arange(len(rows)) + offset) % n_folds
        offset += len(rows)
    return folds[leader]


class _Adam:
    """torch.optim.Adam's update with L2 weight decay, for the probe's stacked (F, ...) tensors.

    torch.optim imports torch._dynamo on first use: 1.4 s of every run (measured on 2
    cores), more than the probe's whole training at 100k rows. The update is elementwise, so
    each fold's slice moves by its own gradient only; `step(grads, folds)` moves the listed
    folds' slices alone (a fold that has run out of steps must not drift on its momentum).
    """

    def __init__(self, params, *, lr: float, weight_decay: float, betas=(0.9, 0.999), eps: float = 1e-8) -> None:
        import torch

        self.params = list(params)
        self.lr, self.weight_decay, self.eps = lr, weight_decay, eps
        self.beta1, self.beta2 = betas
        self.t = 0  # steps taken by the folds still moving (all of them share every step until they stop)
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    def step(self, grads, folds=None) -> None:
        """grads: one per parameter, (F, ...) or, with `folds` (a list of A fold numbers), (A, ...)."""
        self.t += 1
        for p, g, m, v in zip(self.params, grads, self.m, self.v, strict=True):
            if folds is None:
                self._update(p, g, m, v)
            else:
                for a, f in enumerate(folds):
                    self._update(p[f], g[a], m[f], v[f])

    def _update(self, p, grad, m, v) -> None:
        correction1 = 1 - self.beta1**self.t
        correction2 = 1 - self.beta2**self.t
        g = grad + self.weight_decay * p
        m.mul_(self.beta1).add_(g, alpha=1 - self.beta1)
        v.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
        denom = (v.sqrt() / correction2**0.5).add_(self.eps)
        p.addcdiv_(m, denom, value=-self.lr / correction1)
