"""OUT/reviews/: part files in REVIEW_SCHEMA, newest row per sample, bad files named, no write lost."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from winnow.pipeline.review.store import (
    REVIEW_SCHEMA,
    ReviewError,
    read_reviews,
    review_files,
    reviews_key,
    write_reviews,
)

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _act(sid, decision="keep", label=None, h="h"):
    return {"sample_id": sid, "content_hash": h, "decision": decision, "label": label}


def test_newest_row_per_sample_wins_across_files(tmp_path):
    write_reviews(tmp_path, [_act("a"), _act("b", "drop")], reviewer="ann", now=T0)
    write_reviews(tmp_path, [_act("a", "relabel", "cat")], reviewer="bob", now=T0 + timedelta(seconds=1))
    got = read_reviews(tmp_path)
    assert got.height == 2
    row = got.filter(pl.col("sample_id") == "a").row(0, named=True)
    assert (row["decision"], row["label"], row["reviewer"]) == ("relabel", "cat", "bob")
    assert got.filter(pl.col("sample_id") == "b")["decision"].item() == "drop"
    assert all(f.name.endswith(".parquet") for f in review_files(tmp_path))
    assert pq.read_schema(review_files(tmp_path)[0]).remove_metadata().equals(REVIEW_SCHEMA)


def test_a_file_from_another_tool_is_read_and_a_bad_one_is_named(tmp_path):
    other = pa.table({"sample_id": ["a"], "content_hash": ["h"], "decision": ["drop"], "label": [None],
                      "reviewer": ["script"], "reviewed_at": ["2030-01-01T00:00:00Z"]})
    pq.write_table(other, tmp_path / "from-script.parquet")  # no note column; time as ISO text
    write_reviews(tmp_path, [_act("a")], reviewer="ann", now=T0)
    assert read_reviews(tmp_path)["decision"].to_list() == ["drop"]  # the script's row is newer
    pq.write_table(pa.table({"sample_id": ["a"], "decision": ["maybe"]}), tmp_path / "broken.parquet")
    with pytest.raises(ReviewError, match="broken.parquet.*content_hash"):
        read_reviews(tmp_path)
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(ReviewError, match="broken.parquet"):
        read_reviews(tmp_path)
    (tmp_path / "broken.parquet").unlink()
    bad = other.set_column(2, "decision", pa.array(["maybe"]))
    pq.write_table(bad, tmp_path / "odd.parquet")
    with pytest.raises(ReviewError, match="odd.parquet.*'maybe'"):
        read_reviews(tmp_path)


def test_a_request_id_is_written_once_and_part_files_are_never_rewritten(tmp_path):
    path, new = write_reviews(tmp_path, [_act("a")], reviewer="ann", request_id="req-1")
    before = path.stat().st_mtime_ns, path.read_bytes()
    again, new2 = write_reviews(tmp_path, [_act("a", "drop")], reviewer="ann", request_id="req-1")
    assert new and not new2 and again == path and (path.stat().st_mtime_ns, path.read_bytes()) == before
    assert len(review_files(tmp_path)) == 1
    with pytest.raises(ReviewError, match="request id"):
        write_reviews(tmp_path, [_act("a")], reviewer="ann", request_id="../x")
    with pytest.raises(ReviewError, match="'maybe'"):
        write_reviews(tmp_path, [_act("a", "maybe")], reviewer="ann")
    with pytest.raises(ReviewError, match="needs a label"):
        write_reviews(tmp_path, [_act("a", "relabel")], reviewer="ann")


def test_concurrent_writers_lose_nothing(tmp_path):
    def worker(w):
        for i in range(10):
            write_reviews(tmp_path, [_act(f"s{w}-{i}", "drop")], reviewer=f"r{w}")

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = read_reviews(tmp_path)
    assert got.height == 40 and len(review_files(tmp_path)) == 40


def test_the_key_follows_the_effective_reviews(tmp_path):
    empty = reviews_key(read_reviews(tmp_path))
    write_reviews(tmp_path, [_act("a")], reviewer="ann", now=T0)
    one = reviews_key(read_reviews(tmp_path))
    write_reviews(tmp_path, [_act("a")], reviewer="bob", now=T0 + timedelta(seconds=1))  # same decision
    assert empty != one == reviews_key(read_reviews(tmp_path))
    write_reviews(tmp_path, [_act("a", "drop")], reviewer="bob", now=T0 + timedelta(seconds=2))
    assert reviews_key(read_reviews(tmp_path)) != one


def test_the_app_reader_parses_each_file_once_and_follows_the_folder(tmp_path, monkeypatch):
    from winnow.pipeline.review import store

    reader = store.ReviewReader(tmp_path)
    assert reader.read().height == 0
    write_reviews(tmp_path, [_act("a")], reviewer="ann", now=T0)
    write_reviews(tmp_path, [_act("b")], reviewer="ann", now=T0)
    assert reader.read().height == 2
    parsed = []
    real = store.read_review_file
    monkeypatch.setattr(store, "read_review_file", lambda p: parsed.append(p.name) or real(p))
    path, _ = write_reviews(tmp_path, [_act("a", "drop")], reviewer="bob", now=T0 + timedelta(seconds=1))
    got = reader.read()
    assert parsed == [path.name]  # only the new file was read
    assert got.filter(pl.col("sample_id") == "a")["decision"].item() == "drop"
    assert got.equals(read_reviews(tmp_path))
    path.unlink()
    assert reader.read().filter(pl.col("sample_id") == "a")["decision"].item() == "keep"
