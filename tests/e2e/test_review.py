"""Reviews that persist: whole runs apply OUT/reviews/, and the review app over a real run."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import winnow
from tests.helpers.review import (
    free_port,
    post_json,
    review_world,
    start_review_server,
    stop_server,
    write_audit_column,
)
from winnow.pipeline.export import export_clean
from winnow.pipeline.layout import RunLayout
from winnow.pipeline.review import ReviewError, read_reviews, write_reviews
from winnow.pipeline.review.app import TokenRequired, check_bind, create_app
from winnow.pipeline.stage_keys import done_key

KW = {"encoder": "pixels:16", "k": 5}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("review")
    root = review_world(base / "digits")
    out = base / "out"
    winnow.clean(root, out=out, **KW)
    return root, out


def _act(row, decision, label=None):
    return {"sample_id": row["sample_id"], "content_hash": row["content_hash"], "decision": decision, "label": label}


def test_runs_apply_reviews_until_the_content_changes(tmp_path):
    root = review_world(tmp_path / "digits")
    out = tmp_path / "out"
    first = winnow.clean(root, out=out, **KW)
    m = first.manifest
    assert first.summary["reviews"]["reviewed"] == 0 and first.summary["reviews"]["pending"] > 0
    issue = m.filter(pl.col("reasons").list.contains("label_issue") & (pl.col("decision") != "keep")).row(0, named=True)
    clean_rows = m.filter(pl.col("reasons").list.len() == 0)
    kept, other = clean_rows.row(0, named=True), clean_rows.row(1, named=True)
    third = next(c for c in map(str, range(10)) if c != other["label"])
    write_reviews(out / "reviews", [_act(issue, "keep", issue["label"]), _act(kept, "drop"),
                                    _act(other, "relabel", third)], reviewer="ann")
    second = winnow.clean(root, out=out, **KW)
    rows = {r["sample_id"]: r for r in second.manifest.iter_rows(named=True)}
    assert (rows[issue["sample_id"]]["decision"], rows[issue["sample_id"]]["final_label"]) == ("keep", issue["label"])
    assert rows[kept["sample_id"]]["decision"] == "drop"
    assert (rows[other["sample_id"]]["decision"], rows[other["sample_id"]]["final_label"]) == ("relabel", third)
    for sid in (issue["sample_id"], kept["sample_id"], other["sample_id"]):
        assert "reviewed" in rows[sid]["reasons"] and rows[sid]["review_state"] == "reviewed"
        assert rows[sid]["reviewer"] == "ann"
    assert second.summary["reviews"]["reviewed"] == 3
    assert second.summary["diff"]["newly_reviewed"] == 3
    # exports use the reviewed decisions
    exported = pl.read_csv(export_clean(out, fmt="csv", dest=tmp_path / "export.csv"))
    labels = dict(zip(exported["sample_id"], exported["label"].cast(pl.String), strict=True))
    assert kept["sample_id"] not in labels and labels[other["sample_id"]] == third
    assert labels[issue["sample_id"]] == issue["label"]
    html = (RunLayout(second.run_dir).report).read_text()
    assert 'data-key="reviewed"' in html and 'id="embedding-map"' in html

    # The reviewed file changes: the review no longer applies, the sample is flagged for re-review.
    path = root / issue["path"]
    img = Image.open(path).convert("L")
    img.putpixel((0, 0), 255 - img.getpixel((0, 0)))
    img.save(path)
    third_run = winnow.clean(root, out=out, **KW)
    row = third_run.manifest.filter(pl.col("sample_id") == issue["sample_id"]).row(0, named=True)
    assert row["review_state"] == "stale" and "review_stale" in row["reasons"] and "reviewed" not in row["reasons"]
    assert row["content_hash"] != issue["content_hash"]
    assert third_run.summary["reviews"] == {"reviewed": 2, "stale": 1,
                                            "pending": second.summary["reviews"]["pending"] + 1}

    # A file in the folder that does not follow the schema stops the run, naming it.
    pq.write_table(pa.table({"sample_id": ["x"]}), out / "reviews" / "bad-tool.parquet")
    with pytest.raises(ReviewError, match="bad-tool.parquet"):
        winnow.clean(root, out=out, **KW)


def test_a_new_review_changes_the_curate_key_so_a_resumed_run_re_decides(world, tmp_path):
    from winnow.pipeline import stages
    from winnow.pipeline.review.store import reviews_dir

    _, out = world
    run = RunLayout((out / "latest").resolve())
    work = run.work
    reviews = tmp_path / "reviews"  # its own folder: the module's run stays as it was
    args = (work.samples, work.embed, work.knn, work)
    kw = {"encoder_name": "pixels:16", "reviews": str(reviews)}
    before = {s: done_key(work, s) for s in ("samples", "embed", "knn", "curate")}
    stages.curate_samples(*args, **kw)  # no review yet: an empty folder
    key_empty = done_key(work, "curate")
    mtime = work.curation.table.stat().st_mtime_ns
    stages.curate_samples(*args, **kw)
    assert done_key(work, "curate") == key_empty and work.curation.table.stat().st_mtime_ns == mtime  # skipped
    cur = pl.read_parquet(work.curation.table)
    victim = cur.filter(pl.col("decision") == "keep").row(0, named=True)
    h = pl.read_parquet(work.embed.table).filter(pl.col("sample_id") == victim["sample_id"])["content_hash"].item()
    write_reviews(reviews, [{"sample_id": victim["sample_id"], "content_hash": h, "decision": "drop"}], reviewer="bo")
    stages.curate_samples(*args, **kw)
    assert done_key(work, "curate") != key_empty
    assert {s: done_key(work, s) for s in ("samples", "embed", "knn")} == {s: before[s] for s in ("samples", "embed", "knn")}
    again = pl.read_parquet(work.curation.table).filter(pl.col("sample_id") == victim["sample_id"]).row(0, named=True)
    assert again["decision"] == "drop" and again["review_state"] == "reviewed"
    # put the run's own table back for the other tests
    stages.curate_samples(*args, encoder_name="pixels:16", reviews=str(reviews_dir(out)))


def test_the_app_lists_filters_pages_and_refuses_paths(world):
    root, out = world
    app = create_app(out, token="t0k")
    c = TestClient(app)
    meta = c.get("/api/meta").json()
    assert meta["flagged"] > 0 and "label_issue" in meta["reasons"] and meta["map"]["sampled"] == 150
    manifest = pl.read_parquet(out / "manifest.parquet")
    flagged = manifest.filter(pl.col("reasons").list.len() > 0)
    everything = c.get("/api/samples?size=200").json()
    assert everything["total"] == flagged.height
    scores = [i["score"] for i in everything["items"] if i["score"] is not None]
    assert scores == sorted(scores)
    desc = [i["score"] for i in c.get("/api/samples?size=200&sort=-score").json()["items"] if i["score"] is not None]
    assert desc == sorted(desc, reverse=True)
    by_reason = c.get("/api/samples?reason=label_issue&size=200").json()
    assert by_reason["total"] == flagged.filter(pl.col("reasons").list.contains("label_issue")).height
    assert all("label_issue" in i["reasons"] for i in by_reason["items"])
    label = by_reason["items"][0]["label"]
    assert all(i["label"] == label for i in c.get(f"/api/samples?label={label}&size=200").json()["items"])
    ranged = c.get("/api/samples?min_score=0.2&max_score=0.6&size=200").json()["items"]
    assert all(0.2 <= i["score"] <= 0.6 for i in ranged)
    pages = [c.get(f"/api/samples?size=3&page={p}").json()["items"] for p in (1, 2)]
    assert [i["sample_id"] for i in pages[0] + pages[1]] == [i["sample_id"] for i in everything["items"][:6]]
    assert c.get("/api/samples?size=0").status_code == 400 and c.get("/api/samples?state=odd").status_code == 400
    sid = by_reason["items"][0]["sample_id"]
    detail = c.get(f"/api/samples/{sid}").json()
    assert len(detail["neighbours"]) == 5 and "score_knn_vote" in detail["scores"]
    png = c.get(f"/api/image/{sid}")
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    secret = root.parent / "secret.txt"
    secret.write_text("not a sample")
    for url in (f"/api/image/{secret}", "/api/image/..%2Fsecret.txt", "/api/image/..%2F..%2Fetc%2Fpasswd",
                f"/api/image/x?path={secret}", "/../secret.txt", "/api/samples/..%2Fsecret.txt"):
        r = c.get(url)
        assert r.status_code == 404 and b"not a sample" not in r.content, url
    # changes need the token; a retried request id writes once
    body = {"reviewer": "ann", "request_id": "once", "actions": [{"sample_id": sid, "decision": "drop"}]}
    assert c.post("/api/reviews", json=body).status_code == 403
    assert c.post("/api/reviews", json=body, headers={"X-Winnow-Token": "wrong"}).status_code == 403
    first = c.post("/api/reviews", json=body, headers={"X-Winnow-Token": "t0k"}).json()
    again = c.post("/api/reviews", json=body, headers={"X-Winnow-Token": "t0k"}).json()
    assert first["new"] and not again["new"] and first["file"] == again["file"]
    assert c.get("/api/samples?state=reviewed&size=200").json()["items"][0]["now_decision"] == "drop"
    bad = c.post("/api/reviews", json={"actions": [{"sample_id": "../etc", "decision": "drop"}]},
                 headers={"X-Winnow-Token": "t0k"})
    assert bad.status_code == 400 and "'../etc'" in bad.json()["error"]
    bulk = c.post("/api/reviews", json={"decision": "drop", "filter": {"reason": "near_duplicate"}},
                  headers={"X-Winnow-Token": "t0k"}).json()
    assert bulk["actions"] == flagged.filter(pl.col("reasons").list.contains("near_duplicate")).height
    # off loopback: a token for everything
    with pytest.raises(TokenRequired, match="0.0.0.0"):
        check_bind("0.0.0.0", None)
    check_bind("0.0.0.0", "t")
    check_bind("127.0.0.1", None)
    closed = TestClient(create_app(out, token="t0k", token_for_reads=True))
    assert closed.get("/api/meta").status_code == 403 and closed.get("/").status_code == 403
    assert closed.get("/api/meta?token=t0k").status_code == 200


def test_the_app_serves_the_audit_sample_beside_the_flagged_rows(world, tmp_path):
    _, world_out = world
    out = tmp_path / "out"  # a copy: the module's run and reviews stay as they were
    shutil.copytree(world_out, out, symlinks=True, ignore=shutil.ignore_patterns("reviews"))
    run = (out / "latest").resolve()
    assert run.is_relative_to(out)
    manifest = pl.read_parquet(run / "manifest.parquet")
    flagged = manifest.filter(pl.col("reasons").list.len() > 0).sort("sample_id")
    clean = manifest.filter((pl.col("reasons").list.len() == 0) & pl.col("content_hash").is_not_null()).sort("sample_id")
    audit_ids = set(flagged["sample_id"][:4]) | set(clean["sample_id"][:8])
    token = {"X-Winnow-Token": "t0k"}

    write_audit_column(run / "manifest.parquet", None)  # an older run: no audit column, an empty sample
    c = TestClient(create_app(out, token="t0k"))
    assert c.get("/api/meta").json()["audit"] == {"size": 0, "reviewed": 0, "wrong": 0, "dropped": 0}
    assert c.get("/api/samples?audit=1").json()["total"] == 0
    default = c.get("/api/samples?size=200").json()

    write_audit_column(run / "manifest.parquet", audit_ids)
    c = TestClient(create_app(out, token="t0k"))
    meta = c.get("/api/meta").json()
    assert meta["audit"] == {"size": 12, "reviewed": 0, "wrong": 0, "dropped": 0}
    assert meta["flagged"] == flagged.height
    # the default list is unchanged: the flagged rows, the unflagged audit rows left out
    assert c.get("/api/samples?size=200").json() == {**default, "items": [
        {**i, "audit": i["sample_id"] in audit_ids} for i in default["items"]]}
    listed = c.get("/api/samples?audit=1&size=200").json()
    assert listed["total"] == 12 and {i["sample_id"] for i in listed["items"]} == audit_ids
    assert all(i["audit"] for i in listed["items"])
    paths = [i["path"] for i in listed["items"]]
    assert paths == sorted(paths)  # by path, not by the model's score
    unflagged = [i for i in listed["items"] if not i["reasons"]]
    assert len(unflagged) == 8 and {i["state"] for i in unflagged} == {"pending"}
    assert {i["now_decision"] for i in unflagged} == {"keep"}
    assert c.get("/api/samples?audit=true&size=200").json()["total"] == 12
    assert c.get("/api/samples?audit=0&size=200").json()["total"] == flagged.height
    for bad in ("maybe", "yes"):
        r = c.get(f"/api/samples?audit={bad}")
        assert r.status_code == 400 and f"'{bad}'" in r.json()["error"], r.text

    # review an unflagged audit row: a relabel to another class is a wrong label, then a drop
    wrong, dropped = unflagged[0], unflagged[1]
    other = next(k for k in meta["classes"] if k != wrong["label"])
    r = c.post("/api/reviews", headers=token, json={"reviewer": "ann", "actions": [
        {"sample_id": wrong["sample_id"], "decision": "relabel", "label": other}]})
    assert r.status_code == 200 and r.json()["written"] == 1, r.text
    assert c.get("/api/meta").json()["audit"] == {"size": 12, "reviewed": 1, "wrong": 1, "dropped": 0}
    c.post("/api/reviews", headers=token, json={"reviewer": "ann", "decision": "drop",
                                                "sample_ids": [dropped["sample_id"]]})
    assert c.get("/api/meta").json()["audit"] == {"size": 12, "reviewed": 1, "wrong": 1, "dropped": 1}
    now = {i["sample_id"]: i for i in c.get("/api/samples?audit=1&state=reviewed").json()["items"]}
    assert now[wrong["sample_id"]]["now_label"] == other and now[dropped["sample_id"]]["now_decision"] == "drop"
    got = {r["sample_id"]: (r["decision"], r["label"]) for r in read_reviews(out / "reviews").iter_rows(named=True)}
    assert got == {wrong["sample_id"]: ("relabel", other), dropped["sample_id"]: ("drop", None)}
    assert c.get("/api/samples?size=200").json()["total"] == flagged.height
    # a bulk action on the audit filter reaches every audit row, flagged or not
    bulk = c.post("/api/reviews", headers=token, json={"decision": "keep", "filter": {"audit": "1", "state": "pending"}})
    assert bulk.json()["actions"] == 10
    assert c.get("/api/meta").json()["audit"] == {"size": 12, "reviewed": 11, "wrong": 1, "dropped": 1}


def test_two_reviewers_at_once_lose_nothing_over_http(world):
    _, out = world
    ids = pl.read_parquet(out / "manifest.parquet").filter(pl.col("content_hash").is_not_null())["sample_id"].to_list()
    before = read_reviews(out / "reviews").height if (out / "reviews").is_dir() else 0
    port, token = free_port(), "http-token"
    proc = start_review_server(out, port=port, token=token)
    try:
        url = f"http://127.0.0.1:{port}/api/reviews"
        results = []

        def reviewer(who, mine):
            for sid in mine:
                results.append(post_json(url, {"reviewer": who, "actions": [{"sample_id": sid, "decision": "keep"}]},
                                         token=token)[0])
            # the same request sent twice at once (a retry) writes one file
            results.append(post_json(url, {"reviewer": who, "request_id": f"retry-{who}",
                                           "actions": [{"sample_id": mine[0], "decision": "drop"}]}, token=token)[0])

        mine = {"ann": ids[100:115], "bob": ids[115:130]}
        threads = [threading.Thread(target=reviewer, args=(w, m)) for w, m in mine.items()]
        threads += [threading.Thread(target=reviewer, args=(w, m[:1])) for w, m in mine.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert set(results) == {200}
        status, _ = post_json(url, {"actions": [{"sample_id": ids[0], "decision": "drop"}]}, token=None)
        assert status == 403
        # a page that rebinds its own name to 127.0.0.1 (DNS rebinding) cannot read the app
        import urllib.error
        import urllib.request

        req = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Host": f"evil.example:{port}"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=10)
        assert refused.value.code == 403
        for name in ("localhost", "127.0.0.1"):
            ok = urllib.request.Request(f"http://127.0.0.1:{port}/api/meta", headers={"Host": f"{name}:{port}"})
            assert urllib.request.urlopen(ok, timeout=10).status == 200
    finally:
        stop_server(proc)
    got = read_reviews(out / "reviews")
    reviewed = set(got["sample_id"].to_list())
    assert set(ids[100:130]) <= reviewed
    assert len(list((out / "reviews").glob("*-retry-ann.parquet"))) == 1
    assert got.height >= before


def test_command_line_errors_are_one_line(world, tmp_path):
    from tests.helpers.clirun import run_winnow

    root, out = world
    done = run_winnow("review", str(out), "--host", "0.0.0.0", track_imports=False, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith("error: --host '0.0.0.0'") and "--token" in done.stderr
    done = run_winnow("review", str(tmp_path), track_imports=False, timeout=120)
    assert done.returncode == 2 and "not a Winnow run" in done.stderr
    bad_out = tmp_path / "out"
    (bad_out / "reviews").mkdir(parents=True)
    pq.write_table(pa.table({"sample_id": ["x"]}), bad_out / "reviews" / "by-hand.parquet")
    done = run_winnow("run", str(root), "--out", str(bad_out), "--encoder", "pixels:16", track_imports=False,
                      timeout=300)
    assert done.returncode == 2 and "by-hand.parquet" in done.stderr and "Traceback" not in done.output
    assert not (bad_out / "runs").exists()  # found before any work


def test_the_prefect_flow_that_scheduled_runs_execute_applies_reviews(prefect_harness, world, tmp_path):
    from winnow.flows.clean import clean_dataset
    from winnow.pipeline.config import make_settings

    root, _ = world
    out = tmp_path / "out"
    first = pl.read_parquet(winnow.clean(root, out=out, **KW).run_dir / "manifest.parquet")
    row = first.filter(pl.col("decision") == "keep").row(0, named=True)
    write_reviews(out / "reviews", [_act(row, "drop")], reviewer="night")
    paths = clean_dataset(str(root), make_settings(out=str(out), encoder="pixels:16", k=5))
    got = pl.read_parquet(paths["manifest"]).filter(pl.col("sample_id") == row["sample_id"]).row(0, named=True)
    assert got["decision"] == "drop" and got["review_state"] == "reviewed" and got["reviewer"] == "night"
