"""The kNN graph sharded by IVF cell on a 2-worker Dask LocalCluster (processes) against the
single-process graph: recall >= 0.99, both workers searched cells, the same decisions; the
confident joint and spherical k-means reduced from small summaries equal the one-process values."""

from __future__ import annotations

import numpy as np
import pytest

from winnow import curation
from winnow.curation.confident_learning import compute_confident_joint

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as c:
        yield c


def planted(tmp_path, n=4000, d=32, concepts=25, classes=5, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((concepts, d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    concept = rng.integers(0, concepts, n)
    x = centres[concept] + 0.35 * rng.standard_normal((n, d)).astype(np.float32) / np.sqrt(d)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    path = tmp_path / "embeddings.npy"
    np.save(path, x.astype(np.float16))
    truth = concept % classes
    flipped = rng.random(n) < 0.1
    labels = np.where(flipped, (truth + rng.integers(1, classes, n)) % classes, truth)
    return path, labels, flipped


def test_sharded_graph_equals_the_single_process_graph_and_decisions(client, tmp_path):
    from winnow.pipeline.knn_dask import build_knn_graph_dask

    path, labels, flipped = planted(tmp_path)
    emb = np.load(path, mmap_mode="r")
    cfg = curation.IndexConfig(kind="ivf", nprobe=3, seed=0)
    single = curation.build_knn_graph(emb, k=10, index=cfg)
    sharded = build_knn_graph_dask(str(path), client, k=10, index=cfg)
    g = sharded.graph
    assert g.indices.shape == single.indices.shape
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(g.indices, single.indices, strict=True)])
    assert recall >= 0.99, recall
    np.testing.assert_allclose(np.sort(g.similarities, axis=1), np.sort(single.similarities, axis=1), atol=1e-6)
    assert len(sharded.cells_by_worker) == 2 and all(c > 0 for c in sharded.cells_by_worker.values())
    assert all(r > 0 for r in sharded.rows_by_worker.values())
    assert g.recall >= 0.9 and "dask" in g.method
    n = len(labels)
    decisions = [curation.curate(labels, emb, graph, rows=np.arange(n), n_classes=5, unusable_reason=[None] * n,
                                 keys=np.arange(n), seed=0).decisions for graph in (single, g)]
    assert (decisions[0].decision == decisions[1].decision).all()
    assert [sorted(r) for r in decisions[0].reasons] == [sorted(r) for r in decisions[1].reasons]
    found = np.array(["label_issue" in r for r in decisions[1].reasons])
    assert (found & flipped).sum() >= 0.9 * flipped.sum()


def test_small_data_is_searched_exactly_by_query_rows(client, tmp_path):
    from winnow.pipeline.knn_dask import build_knn_graph_at, build_knn_graph_dask

    path, _, _ = planted(tmp_path, n=900)
    single = curation.build_knn_graph(np.load(path, mmap_mode="r"), k=7)  # auto: exact below 20k rows
    sharded = build_knn_graph_dask(str(path), client, k=7)
    assert single.method == "exact" and sharded.graph.method == "exact-dask(workers=2)"
    np.testing.assert_array_equal(sharded.graph.indices, single.indices)
    np.testing.assert_allclose(sharded.graph.similarities, single.similarities, atol=1e-6)
    assert sorted(sharded.rows_by_worker.values()) == [450, 450]
    # The same through the scheduler's address (how a run's build_knn stage reaches the cluster).
    at = build_knn_graph_at(client.scheduler.address, str(path), k=7)
    np.testing.assert_array_equal(at.indices, single.indices)


def test_confident_joint_from_partition_summaries(client):
    from winnow.pipeline.knn_dask import confident_joint_dask

    rng = np.random.default_rng(1)
    n, k = 3000, 4
    labels = rng.integers(0, k, n)
    logits = rng.standard_normal((n, k)) + 2.5 * np.eye(k)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    parts = [(labels[a:b], probs[a:b]) for a, b in ((0, 700), (700, 1900), (1900, 3000))]
    np.testing.assert_array_equal(confident_joint_dask(client, parts, k), compute_confident_joint(labels, probs))


def test_spherical_kmeans_from_cluster_sums(client, tmp_path):
    from winnow.pipeline.knn_dask import spherical_kmeans_dask

    path, _, _ = planted(tmp_path, n=2000, concepts=6)
    x = np.load(path).astype(np.float32)
    init = x[:6].copy()
    cent, assign = spherical_kmeans_dask(str(path), client, init, niter=5)
    ref = init.astype(np.float32)
    for _ in range(5):  # the same Lloyd steps in one process
        a = np.argmax(x @ ref.T, axis=1)
        sums = np.zeros(ref.shape)
        np.add.at(sums, a, x.astype(np.float64))
        new = np.where(np.bincount(a, minlength=6)[:, None] > 0, sums, ref)
        ref = (new / np.linalg.norm(new, axis=1, keepdims=True)).astype(np.float32)
    np.testing.assert_allclose(cent, ref, atol=1e-5)
    assert (assign == np.argmax(x @ ref.T, axis=1)).mean() > 0.999
