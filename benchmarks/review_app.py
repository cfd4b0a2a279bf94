"""Review app latency: page, filter and detail requests over HTTP with 5,000 flagged samples.

    .venv/bin/python -m benchmarks.review_app                       # the table
    .venv/bin/python -m benchmarks.review_app --markdown out/review_app.md

A synthetic run folder (no encoder): 20,000 samples in 100 classes, 5,000 of them flagged
with one to three reason codes and a label_quality score, a kNN graph (k=10) for the detail
requests, an embedding map (5,000 points, as a run writes), and 1,000 reviews in 50 part files of OUT/reviews/. The app runs
in uvicorn in this process (as `winnow review` runs it); every request goes over a real
socket. Each kind is timed over `--repeat` requests with varied parameters. "After a new
review": a reviewer's POST lands before each request, so the app reads the new part file and
re-joins the reviews, the slowest case of the listing. Goal (issue 17): p95 under 300 ms.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import polars as pl

from benchmarks.common import emit, markdown_table
from winnow.catalogs import schemas as S
from winnow.curation import KnnGraph
from winnow.pipeline.files import save_knn_graph
from winnow.pipeline.layout import RunLayout
from winnow.pipeline.review.projection import MAP_SAMPLE, MAP_SCHEMA, choose_map_rows
from winnow.pipeline.review.store import write_reviews

REASONS = ["label_issue", "near_duplicate", "outlier", "rare_class", "exact_duplicate"]
GOAL_MS = 300.0


def build_run(out: Path, *, n: int, n_flagged: int, n_classes: int, seed: int = 0) -> RunLayout:
    rng = np.random.default_rng(seed)
    run = RunLayout(out / "runs" / "20260101T000000Z-bench")
    run.work.folder.mkdir(parents=True)
    classes = [f"class_{i:03d}" for i in range(n_classes)]
    ids = [f"{i:016x}" for i in range(n)]
    labels = rng.integers(0, n_classes, n)
    flagged = np.zeros(n, dtype=bool)
    flagged[rng.choice(n, n_flagged, replace=False)] = True
    reasons = [sorted(set(rng.choice(REASONS, rng.integers(1, 4)).tolist())) if f else [] for f in flagged]
    suggested = np.where(flagged, rng.integers(0, n_classes, n), labels)
    decision = ["drop" if "near_duplicate" in r or "outlier" in r else "relabel" if r else "keep" for r in reasons]
    manifest = pl.DataFrame({
        S.SAMPLE_ID: ids, S.PATH: [f"{classes[y]}/img_{i:06d}.png" for i, y in enumerate(labels)],
        S.LABEL: [classes[y] for y in labels], S.DECISION: decision, S.REASONS: reasons,
        S.LABEL_QUALITY: np.where(flagged, rng.uniform(0, 0.5, n), rng.uniform(0.5, 1, n)),
        S.SUGGESTED_LABEL: [classes[y] for y in suggested],
        S.FINAL_LABEL: [None if d == "drop" else classes[s] for d, s in zip(decision, suggested, strict=True)],
        S.WEIGHT: [0.0 if d == "drop" else 1.0 for d in decision], S.DUPLICATE_OF: [None] * n,
        S.CLUSTER: pl.Series([0] * n, dtype=pl.Int32), S.CONTENT_HASH: [f"h{i}" for i in range(n)],
        "score_knn_vote": rng.uniform(0, 1, n), "outlier_score": rng.uniform(0, 1, n),
    }, schema_overrides={S.DUPLICATE_OF: pl.String, S.FINAL_LABEL: pl.String})
    manifest.write_parquet(run.manifest)
    (run.folder / "COMPLETE").write_text("bench\n")
    (out / "latest").symlink_to(run.folder.relative_to(out))
    k = 10
    idx = rng.integers(0, n, (n, k)).astype(np.int64)
    save_knn_graph(KnnGraph(indices=idx, similarities=np.sort(rng.uniform(0.5, 1, (n, k)).astype(np.float32))[:, ::-1]),
                   run.work.knn.graph)
    pl.DataFrame({S.SAMPLE_ID: ids, S.CONTENT_HASH: manifest[S.CONTENT_HASH], S.REASON: [None] * n,
                  S.ROW: np.arange(n)}, schema_overrides={S.REASON: pl.String}).write_parquet(run.work.embed.table)
    import pyarrow.parquet as pq

    on_map = choose_map_rows(flagged, limit=MAP_SAMPLE, seed=seed)  # what a run projects
    pq.write_table(pl.DataFrame({S.SAMPLE_ID: [ids[i] for i in on_map],
                                 "x": rng.uniform(0, 1, len(on_map)).astype(np.float32),
                                 "y": rng.uniform(0, 1, len(on_map)).astype(np.float32), "flagged": flagged[on_map]})
                   .to_arrow().cast(MAP_SCHEMA), run.map)
    hot = np.flatnonzero(flagged)
    for part in range(50):
        chosen = rng.choice(hot, 20, replace=False)
        write_reviews(out / "reviews", [{"sample_id": ids[i], "content_hash": f"h{i}", "decision": "keep"}
                                        for i in chosen], reviewer=f"r{part % 3}")
    return run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> float:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as r:
        r.read()
        assert r.status == 200, url
    return (time.perf_counter() - t0) * 1000


def _stats(ms: list[float]) -> list[str]:
    a = np.asarray(ms)
    return [f"{np.percentile(a, 50):.1f}", f"{np.percentile(a, 95):.1f}", f"{a.max():.1f}",
            "yes" if np.percentile(a, 95) < GOAL_MS else "**no**"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flagged", type=int, default=5_000, help="flagged samples (default 5,000)")
    parser.add_argument("--samples", type=int, default=20_000, help="samples in the run (default 20,000)")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=60, help="requests per kind")
    parser.add_argument("--markdown", type=Path, help="also write the table as markdown to this file")
    args = parser.parse_args()

    import uvicorn

    from winnow.pipeline.review.app import create_app

    with tempfile.TemporaryDirectory(prefix="winnow-review-bench-") as tmp:
        out = Path(tmp) / "out"
        t0 = time.perf_counter()
        build_run(out, n=args.samples, n_flagged=args.flagged, n_classes=args.classes)
        built = time.perf_counter() - t0
        token = "bench"
        t0 = time.perf_counter()
        app = create_app(out, token=token)
        loaded = time.perf_counter() - t0
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        base = f"http://127.0.0.1:{port}"
        while not server.started:
            time.sleep(0.05)
        rnd = random.Random(0)
        meta = json.loads(urllib.request.urlopen(f"{base}/api/meta").read())
        classes = meta["classes"]
        flagged_ids = [i["sample_id"] for i in json.loads(urllib.request.urlopen(
            f"{base}/api/samples?size=200").read())["items"]]
        pages = -(-meta["flagged"] // 50)

        def page():
            return f"{base}/api/samples?size=50&page={rnd.randint(1, pages)}&sort={rnd.choice(['score', '-score'])}"

        def filt():
            q = rnd.choice([f"reason={rnd.choice(REASONS)}", f"label={rnd.choice(classes)}",
                            f"state={rnd.choice(['pending', 'reviewed'])}", f"decision={rnd.choice(['drop', 'relabel'])}",
                            f"min_score={rnd.uniform(0, .2):.2f}&max_score={rnd.uniform(.25, .5):.2f}",
                            f"reason={rnd.choice(REASONS)}&label={rnd.choice(classes)}&sort=-score"])
            return f"{base}/api/samples?size=50&{q}"

        kinds = {
            "page (50 of 5,000, sorted by score)": page,
            "filter (reason / class / decision / state / score range)": filt,
            "sample detail (neighbours, duplicate group)": lambda: f"{base}/api/samples/{rnd.choice(flagged_ids)}",
            "meta (counts per reason and state)": lambda: f"{base}/api/meta",
        }
        rows = []
        for name, url in kinds.items():
            _get(url())  # warm
            rows.append([name, str(args.repeat), *_stats([_get(url()) for _ in range(args.repeat)])])
        after = []
        for i in range(args.repeat):
            body = {"reviewer": "bench", "actions": [{"sample_id": flagged_ids[i % len(flagged_ids)], "decision": "drop"}]}
            req = urllib.request.Request(f"{base}/api/reviews", data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json", "X-Winnow-Token": token})
            urllib.request.urlopen(req).read()
            after.append(_get(filt()))
        rows.append(["filter after a new review (reads the new part file)", str(args.repeat), *_stats(after)])
        posts = []
        for i in range(args.repeat):
            body = {"reviewer": "bench", "actions": [{"sample_id": flagged_ids[-1 - i % 100], "decision": "keep"}]}
            req = urllib.request.Request(f"{base}/api/reviews", data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json", "X-Winnow-Token": token})
            t0 = time.perf_counter()
            urllib.request.urlopen(req).read()
            posts.append((time.perf_counter() - t0) * 1000)
        rows.append(["POST one review (a new part file, fsynced)", str(args.repeat), *_stats(posts)])
        map_ms = [_get(f"{base}/api/map") for _ in range(5)]
        rows.append([f"map points ({min(args.samples, MAP_SAMPLE):,})", "5", *_stats(map_ms)])
        server.should_exit = True
        thread.join(timeout=10)
        n_parts = len(list((out / "reviews").glob("*.parquet")))
    table = markdown_table(["request", "n", "p50 ms", "p95 ms", "max ms", f"p95 < {GOAL_MS:.0f} ms"], rows,
                           align="lrrrrl")
    note = (f"{args.samples:,} samples, {args.flagged:,} flagged, {args.classes} classes; OUT/reviews/ grew to "
            f"{n_parts} part files during the run. Run folder built in {built:.1f} s, app loaded in {loaded:.2f} s.")
    emit([table, note], args.markdown)


if __name__ == "__main__":
    main()
