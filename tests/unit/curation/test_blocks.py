"""Block reads of (N, D) embeddings: float32 copies, caller's order, a memory map's pages given back;
the out-of-core paths (blocked exact search, sampled k-means, the probe's blocked features) against
the in-memory ones; float16 storage against float32 on planted data."""

from __future__ import annotations

import numpy as np
import pytest

from winnow import curation
from winnow.curation import blocks, knn_graph
from winnow.curation.blocks import (
    is_mapped,
    iter_blocks,
    matmul_blocks,
    release_pages,
    take_rows,
    take_slice,
)


def unit(rng, n, d, dtype=np.float32):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(dtype)


def mapped(tmp_path, x, name="m.npy"):
    np.save(tmp_path / name, x)
    return np.load(tmp_path / name, mmap_mode="r")


def resident_pages() -> int:
    # File-backed resident pages (statm's "shared"): the map's, not the heap's, which the
    # allocator may keep after a free when other tests ran in this process first.
    return int(open("/proc/self/statm").read().split()[2])


@pytest.fixture(params=["pread", "through the map"])
def gather(request, monkeypatch):
    """Both ways take_rows gathers a map's rows: pread (maps over SMALL_MAP_BYTES) and numpy through
    the map (small maps)."""
    from winnow.curation import blocks

    monkeypatch.setattr(blocks, "SMALL_MAP_BYTES", 0 if request.param == "pread" else 1 << 40)
    calls = []
    real = blocks._pread_rows
    monkeypatch.setattr(blocks, "_pread_rows", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    yield request.param, calls


def test_take_rows_keeps_the_callers_order_and_returns_float32(tmp_path, gather):
    x = unit(np.random.default_rng(0), 50, 8, np.float16)
    m = mapped(tmp_path, x)
    rows = np.array([7, 3, 3, 49, 0])
    got = take_rows(m, rows)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, x[rows].astype(np.float32))
    np.testing.assert_array_equal(take_rows(x, np.zeros(50, bool)), np.zeros((0, 8), np.float32))
    np.testing.assert_array_equal(take_slice(m, 10, 20), x[10:20].astype(np.float32))
    assert bool(gather[1]) == (gather[0] == "pread")


def test_take_rows_reads_views_of_a_map_at_their_own_file_positions(tmp_path, gather):
    x = unit(np.random.default_rng(3), 300, 16, np.float16)
    m = mapped(tmp_path, x)
    rows = np.array([0, 1, 2, 40, 41, 7, 7, 89])
    for view, ref in [(m, x), (m[5:], x[5:]), (np.asarray(m)[::2], x[::2]), (m[100:200][10:], x[100:200][10:]),
                      (m[:, 4:], x[:, 4:])]:  # the last: rows not contiguous in the file, read through the map
        np.testing.assert_array_equal(take_rows(view, rows), ref[rows].astype(np.float32))
    np.testing.assert_array_equal(take_rows(m, np.arange(300)), x.astype(np.float32))  # one run, one read


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="ru_maxrss in KiB (Linux)")
def test_scattered_rows_of_a_map_do_not_become_resident(tmp_path):
    # Touching one row of a map maps the page-cache folio around it (measured 0.87 MiB a row on
    # this kernel, so 500 rows of a 512 MiB map put 434 MiB in RSS); take_rows reads the bytes
    # instead. A fresh process (its peak RSS is the measure) gathers 500 rows of a 64 MiB file
    # read from disk (dropped from the page cache first: what read-ahead brings in comes as large folios).
    import subprocess
    import sys

    np.save(tmp_path / "m.npy", np.ones((32768, 1024), dtype=np.float16))
    code = (
        "import os, resource, sys, numpy as np\n"
        "from winnow.curation.blocks import take_rows\n"
        "fd = os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)\n"
        "m = np.load(sys.argv[1], mmap_mode='r')\n"
        "rows = np.sort(np.random.default_rng(0).choice(len(m), 500, replace=False))\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "assert take_rows(m, rows).shape == (500, 1024)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.npy")], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.strip()) < 8, out.stdout  # MiB over the peak before the gather


def test_iter_blocks_and_matmul_cover_every_row_once():
    x = unit(np.random.default_rng(1), 103, 16, np.float16)
    starts = [s for s, _ in iter_blocks(x, rows_per_block=10)]
    assert starts == list(range(0, 103, 10))
    joined = np.concatenate([b for _, b in iter_blocks(x, rows_per_block=10)])
    np.testing.assert_array_equal(joined, x.astype(np.float32))
    w = np.random.default_rng(2).standard_normal((16, 3)).astype(np.float32)
    np.testing.assert_allclose(matmul_blocks(x, w, rows_per_block=7), x.astype(np.float32) @ w, rtol=1e-5, atol=1e-5)
    assert blocks.block_rows(512) == (1 << 26) // 2048


@pytest.mark.skipif(not hasattr(__import__("mmap"), "MADV_DONTNEED"), reason="needs madvise (Linux)")
def test_release_pages_gives_a_read_only_maps_pages_back(tmp_path):
    x = np.ones((4096, 1024), dtype=np.float16)  # 8 MiB
    m = mapped(tmp_path, x)
    view = np.asarray(m)[::2]
    assert is_mapped(m) and is_mapped(view) and not is_mapped(x)
    before = resident_pages()
    float(np.asarray(m).sum(dtype=np.float64))  # touches every page of the map
    touched = resident_pages()
    release_pages(view)
    after = resident_pages()
    assert touched - before >= 1500  # the 2048 pages of the map were resident
    assert after - before < 200
    # A copy-on-write map is left alone: its written pages must not be dropped.
    cow = np.load(tmp_path / "m.npy", mmap_mode="c")
    cow[0, 0] = 5
    release_pages(cow)
    assert cow[0, 0] == 5 and not is_mapped(cow)


def test_blocked_exact_search_equals_one_index(monkeypatch):
    x = unit(np.random.default_rng(3), 900, 24)
    one = curation.build_knn_graph(x, k=7, index=curation.IndexConfig(kind="exact"))
    monkeypatch.setattr(knn_graph, "EXACT_BASE_BYTES", 100 * 24 * 4)  # base blocks of 100 rows
    blocked = curation.build_knn_graph(x, k=7, index=curation.IndexConfig(kind="exact"), block_size=64)
    np.testing.assert_allclose(blocked.similarities, one.similarities, atol=1e-6)
    assert (blocked.indices == one.indices).mean() > 0.999


def test_ivf_graph_on_a_float16_map_matches_float32(tmp_path):
    rng = np.random.default_rng(4)
    centres = unit(rng, 20, 32)
    x = centres[rng.integers(0, 20, 3000)] + 0.05 * rng.standard_normal((3000, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    cfg = curation.IndexConfig(kind="ivf", seed=0)
    g32 = curation.build_knn_graph(x, k=10, index=cfg)
    g16 = curation.build_knn_graph(mapped(tmp_path, x.astype(np.float16)), k=10, index=cfg)
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(g32.indices, g16.indices, strict=True)])
    assert overlap >= 0.97, overlap
    assert g16.recall >= 0.95
    np.testing.assert_allclose(g16.similarities, g32.similarities, atol=2e-3)


def test_kmeans_out_of_core_path_assigns_every_row_to_its_nearest_centroid(monkeypatch, tmp_path):
    rng = np.random.default_rng(5)
    centres = unit(rng, 8, 16)
    truth = rng.integers(0, 8, 4000)
    x = centres[truth] + 0.05 * rng.standard_normal((4000, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    monkeypatch.setattr(knn_graph, "KMEANS_TRAIN_BYTES", 500 * 16 * 4)  # train on 500 sampled rows
    cent, assign = curation.kmeans(mapped(tmp_path, x.astype(np.float16)), 8, seed=0)
    nearest = np.argmax(x @ cent.T, axis=1)
    assert (assign == nearest).mean() > 0.999
    # As tight as k-means on every row in memory (mean cosine to the own centroid).
    monkeypatch.undo()
    cent_all, assign_all = curation.kmeans(x, 8, seed=0)
    tight = np.mean(np.sum(x * cent[assign], axis=1))
    assert tight >= 0.97 * np.mean(np.sum(x * cent_all[assign_all], axis=1))
    monkeypatch.setattr(knn_graph, "KMEANS_TRAIN_BYTES", 500 * 16 * 4)
    # Row order does not matter (canonical order, then a seeded sample).
    perm = rng.permutation(4000)
    _, again = curation.kmeans(x.astype(np.float16)[perm], 8, seed=0)
    assert (again == assign[perm]).all()


def test_probe_features_in_blocks_match_the_in_memory_probe(tmp_path):
    from winnow.curation.small_loss import fit_probe

    rng = np.random.default_rng(6)
    centres = unit(rng, 4, 160)
    y = rng.integers(0, 4, 1200)
    x = centres[y] + 0.6 * rng.standard_normal((1200, 160)).astype(np.float32) / np.sqrt(160)
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)
    in_memory = fit_probe(x.astype(np.float32), y, n_classes=4, seed=0, max_dim=32)
    blocked = fit_probe(mapped(tmp_path, x), y, n_classes=4, seed=0, max_dim=32)
    assert (in_memory.pred_probs.argmax(1) == blocked.pred_probs.argmax(1)).mean() > 0.99
    np.testing.assert_allclose(blocked.pred_probs, in_memory.pred_probs, atol=0.02)


def test_curate_decisions_agree_between_float16_and_float32(tmp_path):
    """The float16 effect, measured: the same planted flips found, decisions agree on >= 99.5% of rows."""
    rng = np.random.default_rng(7)
    n, d, k = 3000, 64, 5
    centres = unit(rng, 15, d)
    concept = rng.integers(0, 15, n)
    x = centres[concept] + 0.25 * rng.standard_normal((n, d)).astype(np.float32) / np.sqrt(d) * 4
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    truth = concept % k
    flipped = rng.random(n) < 0.1
    labels = np.where(flipped, (truth + rng.integers(1, k, n)) % k, truth)
    runs = {}
    for name, emb in (("f32", x), ("f16", mapped(tmp_path, x.astype(np.float16)))):
        graph = curation.build_knn_graph(emb, k=10)
        runs[name] = curation.curate(labels, emb, graph, rows=np.arange(n), n_classes=k,
                                     unusable_reason=[None] * n, keys=np.arange(n), seed=0).decisions
    agree = (runs["f32"].decision == runs["f16"].decision).mean()
    assert agree >= 0.995, agree
    for name in runs:
        found = np.array(["label_issue" in r for r in runs[name].reasons])
        assert (found & flipped).sum() >= 0.9 * flipped.sum(), name
