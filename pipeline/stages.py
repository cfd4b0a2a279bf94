"""The stages of a run: read declared inputs, call one library function, write files, return their paths.

Plain functions, no Prefect: pipeline/run.py calls them directly (the default runner) and
flows/clean.py wraps each as a Prefect task for the flow (deployments, Dask). Each stage is
given the layout it writes into (pipeline/layout.py) and the outputs of the stages it reads,
and returns its own outputs as a small frozen dataclass of paths. Each stage skips itself
when its recorded stage key matches (pipeline/stage_keys.py), so a run killed part-way
resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from winnow import curation
from winnow.catalogs import (
    classes_of,
    list_samples,
    open_reader,
    read_ground_truth,
    resolve_catalog,
    source_of,
)
from winnow.catalogs import schemas as S
from winnow.curation.audit import MIN_CHECKED
from winnow.embeddings import EmbeddingStore, embed_samples, get_encoder
from winnow.embeddings.copies import probe_copies
from winnow.embeddings.signals import THUMB_COLUMNS, signal_columns
from winnow.pipeline.evaluate import score_against_ground_truth
from winnow.pipeline.files import load_knn_graph, save_knn_graph, write_json, write_parquet
from winnow.pipeline.issues import extra_column, issue_columns, issue_types_key
from winnow.pipeline.layout import (
    CurationOutput,
    EmbedOutput,
    KnnOutput,
    RunLayout,
    RunOutputs,
    SamplesOutput,
    ShardOutput,
    WorkLayout,
)
from winnow.pipeline.review.apply import apply_reviews, audit_rows, newly_reviewed, review_counts
from winnow.pipeline.review.store import empty_reviews, read_reviews, reviews_key
from winnow.pipeline.stage_keys import is_done, mark_done, read_done_key, stage_key
from winnow.pipeline.versions import DIFF_CHANGES, diff_manifests, moved_thresholds

LOG = logging.getLogger(__name__)

# The polars type of each dtype name an issue type may give its columns (schemas.COLUMN_TYPES).
_POLARS_TYPES = {"float64": pl.Float64, "int64": pl.Int64, "bool": pl.Boolean, "string": pl.String}


def load_samples(target: str, work: WorkLayout, *, path_column: str | None = None, label_column: str | None = None,
                 image_column: str | None = None, text_column: str | None = None, id_column: str | None = None,
                 unlabeled: bool = False, table: pa.Table | None = None) -> SamplesOutput:
    """Catalog -> samples.parquet (validated; one row per input sample).

    `table`: the samples already listed (by the run's validation); None lists them here.
    """
    out = work.samples
    if table is None:
        table = list_samples(resolve_catalog(target, path_column=path_column, label_column=label_column,
                                             image_column=image_column, text_column=text_column, id_column=id_column,
                                             unlabeled=unlabeled))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    digest = hashlib.blake2b(sink.getvalue().to_pybytes(), digest_size=16)
    # A sample changed in place keeps its row: the source's fingerprint (files: size and mtime)
    # makes the key change too, so a resumed run never reuses the embedding of the old content.
    digest.update(source_of(table).fingerprint(table).encode())
    key = digest.hexdigest()
    if not is_done(work, "samples", key, (out.table,)):
        write_parquet(table, out.table, schema=S.SAMPLES_SCHEMA)
        mark_done(work, "samples", key, rows=table.num_rows)
    return out


def _tie_keys(emb_table: pl.DataFrame) -> np.ndarray:
    """Tie-break keys: the content hash, then the sample id (issue 14): which copy of a duplicate
    group is kept, or which rows a prune keeps first, follows the bytes, not a source's ids, so the
    same images give the same decisions from a folder, a Parquet file or tar shards."""
    hashes = emb_table[S.CONTENT_HASH].fill_null("~").to_list()  # unreadable rows sort last
    return np.array([f"{h}/{sid}" for h, sid in zip(hashes, emb_table[S.SAMPLE_ID].to_list(), strict=True)])


def embed_stage_key(work: WorkLayout, encoder_name: str) -> str:
    return stage_key(work, "embed", upstream=("samples",), params={"encoder": encoder_name})


def embed_shard(samples: SamplesOutput, encoder_name: str, store_dir: str, work: WorkLayout, *, shard: int = 0,
                n_shards: int = 1, batch_size: int = 64, device: str | None = None,
                progress: bool = False, encoder=None) -> ShardOutput:
    """Embed shard `shard` of `n_shards` (every n-th sample) into the store.

    Writes the shard's table (position, content_hash, reason) and its counts. Shards
    can run on different workers at once: the store takes concurrent writers. `encoder`:
    the loaded `encoder_name` when the caller has it (None loads it here).
    """
    out = work.shard(shard, n_shards)
    done = work.embed
    if is_done(work, "embed", embed_stage_key(work, encoder_name), (done.table, done.matrix)):
        return out
    table = pq.read_table(samples.table)
    positions = list(range(shard, table.num_rows, n_shards))
    locators = table.column(S.LOCATOR).to_pylist()
    refused = table.column(S.REFUSED).to_pylist()
    encoder = encoder or get_encoder(encoder_name, device=device)
    store = EmbeddingStore(store_dir, encoder_id=encoder.encoder_id, dim=encoder.dim)
    t0 = time.perf_counter()
    with _progress_bar("embedding", len(positions), enabled=progress) as update:
        report = embed_samples([locators[i] for i in positions], open_reader(table), encoder, store,
                               refused=[refused[i] for i in positions], batch_size=batch_size, progress=update)
    if shard == 0 and encoder.modality == "image":
        # One shard calibrates the near-duplicate cut on copies of a sample drawn from every
        # shard's rows (not refused; an unreadable one is skipped), so the cut and the decisions
        # do not depend on how many shards the run has.
        usable = [p for p in range(table.num_rows) if refused[p] is None]
        probe = probe_copies(locators, open_reader(table), encoder, usable=usable)
        _save_npz(done.copies, source=probe.source, kind=probe.kind, vectors=probe.vectors, phash=probe.phash,
                  thumb=probe.thumb)
    seconds = time.perf_counter() - t0
    write_parquet(pl.DataFrame({S.POSITION: positions, S.CONTENT_HASH: report.content_hash, S.REASON: report.reason},
                               schema={S.POSITION: pl.Int64, S.CONTENT_HASH: pl.String, S.REASON: pl.String}),
                  out.table, schema=S.EMBED_SHARD_SCHEMA)
    write_json({"encoder_id": encoder.encoder_id, "dim": encoder.dim, "embedded": report.n_embedded,
                "reused": report.n_reused, "measured": report.n_measured, "unusable": report.n_unusable, "seconds": round(seconds, 3),
                "stage_seconds": {k: round(v, 3) for k, v in report.seconds.items()}},
               out.info)
    LOG.info("embedded shard %d of %d: %d new, %d reused, %d unusable in %.1f s", shard + 1, n_shards,
             report.n_embedded, report.n_reused, report.n_unusable, seconds)
    return out


def merge_embeddings(samples: SamplesOutput, shards: list[ShardOutput], encoder_name: str, store_dir: str,
                     work: WorkLayout) -> EmbedOutput:
    """Shards -> the embed table (hash, reason, row per sample) and the matrix of the usable rows."""
    out = work.embed
    key = embed_stage_key(work, encoder_name)
    if is_done(work, "embed", key, (out.table, out.matrix, out.info)):
        return out
    table = pq.read_table(samples.table)
    parts = pl.concat([pl.read_parquet(s.table) for s in shards]).sort(S.POSITION)
    if parts.height != table.num_rows or parts[S.POSITION].to_list() != list(range(table.num_rows)):
        raise RuntimeError(f"embedding shards cover {parts.height} of {table.num_rows} samples")
    stats = [read_json(s.info) for s in shards]
    reasons = parts[S.REASON].to_list()
    hashes = parts[S.CONTENT_HASH].to_list()
    usable = [i for i, r in enumerate(reasons) if r is None]
    rows = np.full(len(reasons), -1, dtype=np.int64)
    rows[usable] = np.arange(len(usable))
    store = EmbeddingStore(store_dir, encoder_id=stats[0]["encoder_id"], dim=stats[0]["dim"])
    # float16, memory-mapped by the later stages and read in blocks (issue 18: out of core).
    store.write_matrix([hashes[i] for i in usable], out.matrix, dtype=np.float16)
    _write_signals(store, table.column(S.SAMPLE_ID).to_pylist(), hashes, usable, out.signals)
    write_parquet(
        pl.DataFrame({S.SAMPLE_ID: table.column(S.SAMPLE_ID).to_pylist(), S.CONTENT_HASH: hashes,
                      S.REASON: reasons, S.ROW: rows},
                     schema={S.SAMPLE_ID: pl.String, S.CONTENT_HASH: pl.String, S.REASON: pl.String,
                             S.ROW: pl.Int64}),
        out.table, schema=S.EMBED_SCHEMA,
    )
    seconds = max(s["seconds"] for s in stats)
    embedded = sum(s["embedded"] for s in stats)
    write_json({
        "encoder": encoder_name, "encoder_id": stats[0]["encoder_id"], "dim": stats[0]["dim"],
        "embedded": embedded, "reused": sum(s["reused"] for s in stats),
        "measured": sum(s.get("measured", 0) for s in stats),
        "unusable": sum(s["unusable"] for s in stats), "shards": len(stats), "seconds": seconds,
        "stage_seconds": {k: round(sum(s["stage_seconds"].get(k, 0) for s in stats), 3)
                          for k in ("read", "decode", "model", "write")},
        "images_per_second": round(embedded / seconds, 2) if seconds > 0 and embedded else None,
    }, out.info)
    mark_done(work, "embed", key)
    return out


def _save_npz(path: Path, **arrays) -> None:
    from winnow import atomic

    with atomic.writing(path, suffix=".tmp.npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def _write_signals(store: EmbeddingStore, ids: list[str], hashes: list[str | None], usable: list[int],
                   path: Path) -> None:
    """One row per sample: the store's decode-time signals of its content (null where not embedded or not
    measured: a store block written before the signal existed)."""
    n = len(ids)
    data: dict[str, pl.Series] = {S.SAMPLE_ID: pl.Series(ids, dtype=pl.String)}
    # One read; presence per column: a block written before a later signal keeps the others.
    columns = signal_columns()
    present, values = store.signals([hashes[i] for i in usable], columns, by_column=True)
    rows = np.asarray(usable, dtype=np.int64)
    for c, dtype in columns.items():
        full = np.full(n, None, dtype=object)
        full[rows[present[c]]] = values[c][present[c]]
        data[c] = pl.Series(c, full.tolist(), dtype=pl.Int64 if dtype == "int64" else pl.Float64)
    write_parquet(pl.DataFrame(data), path)


def read_signals(embed: EmbedOutput) -> dict[str, np.ndarray]:
    """The run's decode-time signals, one (N,) array per column: float64 NaN / int64 with a
    `measured` (N,) bool mask where absent. {} for a run embedded before signals existed."""
    if not Path(embed.signals).exists():
        return {}
    frame = pl.read_parquet(embed.signals)
    columns = {c: d for c, d in signal_columns().items() if c in frame.columns}
    if not columns:
        return {}
    # `measured`: the hash and quality signals (a thumbnail not measured is all zeros: it matches nothing).
    core = [c for c in columns if c not in THUMB_COLUMNS] or list(columns)
    measured = frame.select(pl.all_horizontal([pl.col(c).is_not_null() for c in core])).to_series().to_numpy()
    out = {"measured": measured}
    for c, dtype in columns.items():
        out[c] = frame[c].fill_null(0).to_numpy() if dtype == "int64" else frame[c].cast(pl.Float64).fill_null(np.nan).to_numpy()
    return out


def read_copies(embed: EmbedOutput) -> dict[str, np.ndarray] | None:
    """The calibration copies (embeddings/copies.py: source position, kind, vectors, phash, thumb), or None."""
    if not Path(embed.copies).exists():
        return None
    with np.load(embed.copies) as z:
        return {k: z[k] for k in z.files}


def wide_k_for(detect: curation.DetectConfig, n: int) -> int:
    """How many neighbours the knn stage keeps, for `n` samples, for the detectors that read past
    knn.k (0: none): the out_of_distribution group test's 2 x its group scale at n."""
    from winnow.curation.outliers import group_scale

    return 2 * group_scale(n, detect.ood_max_group) if detect.ood_max_group > 0 else 0


def build_knn(embed: EmbedOutput, work: WorkLayout, *, knn: curation.KnnConfig = curation.KnnConfig(), seed: int = 0,
              progress: bool = False, dask_address: str | None = None, wide_k: int = 0) -> KnnOutput:
    """The embedding matrix -> the kNN graph every detector reads (`seed`: the IVF index's samples).

    dask_address: a Dask scheduler (the Dask runner's cluster, flows/clean.py): the graph is
    searched on its workers (pipeline/knn_dask.py: by IVF cell, or by query rows when exact),
    which open the matrix by path. The same graph as in this process (up to the order of
    exact ties), so the stage key does not depend on where it was searched.

    wide_k: when a detector reads further than knn.k neighbours (the out_of_distribution group
    test: 2 x its group scale, at most 2 x DetectConfig.ood_max_group, `wide_k_for`), the one
    search keeps wide_k and the stage writes both graphs: knn.npz (knn.k, what every other reader
    sees) and knn-wide.npz. A second search for the group test cost as much as the first (821 s
    of benchmarks/out_of_core.py at 1M). The IVF recall target (and the recall written to
    knn.json) is that of the first knn.k columns: tuning nprobe for recall@40 probed more cells
    than the graph every detector reads needs; the further columns are what those cells hold.
    """
    out = work.knn
    index = {k: v for k, v in dataclasses.asdict(knn).items() if k != "k"}
    params = {"k": knn.k, "seed": seed, "index": index}
    if wide_k > knn.k:
        params["wide_k"] = int(wide_k)
    key = stage_key(work, "knn", upstream=("embed",), params=params)
    if is_done(work, "knn", key, (out.graph, out.info) + ((out.wide,) if wide_k > knn.k else ())):
        return out
    emb = np.load(embed.matrix, mmap_mode="r")
    if emb.shape[0] < 2:
        raise curation.InvalidArray(f"only {emb.shape[0]} sample(s) could be embedded; need at least 2")
    t0 = time.perf_counter()
    k = min(knn.k, emb.shape[0] - 1)
    searched = min(max(knn.k, wide_k), emb.shape[0] - 1)
    if dask_address:
        from winnow.pipeline.knn_dask import build_knn_graph_at

        graph = build_knn_graph_at(dask_address, str(embed.matrix), k=searched, index=knn.index(seed=seed), recall_k=k)
    else:
        with _progress_bar("indexing", emb.shape[0], enabled=progress, unit="steps") as update:
            graph = curation.build_knn_graph(emb, k=searched, index=knn.index(seed=seed), recall_k=k,
                                             progress=update)
    out.wide.unlink(missing_ok=True)
    if searched > k:
        save_knn_graph(graph, out.wide)
    save_knn_graph(graph.head(k), out.graph)
    write_json({"method": graph.method, "recall_at_k": graph.recall, "k": k, "k_searched": searched,
                "seconds": round(time.perf_counter() - t0, 3)}, out.info)
    mark_done(work, "knn", key)
    LOG.info("kNN graph (%s, k=%d) in %.1f s", graph.method, graph.k, time.perf_counter() - t0)
    return out


def curate_samples(samples: SamplesOutput, embed: EmbedOutput, knn: KnnOutput, work: WorkLayout, *,
                   encoder_name: str, policy: curation.DecisionPolicy = curation.DecisionPolicy(),
                   detect: curation.DetectConfig = curation.DetectConfig(), seed: int = 0,
                   holdouts: tuple[EmbedOutput, ...] = (), encoder=None,
                   reviews: str | None = None) -> CurationOutput:
    """Every detector + the policy -> the curation table (one row per input sample) and its facts.

    detect.methods: "auto" or detector names; zero_shot needs an open_clip encoder (its text tower).
    holdouts: the embed outputs of the holdout catalogs (their samples that training rows duplicate
    are leaks).
    reviews: the output folder's reviews/ (pipeline/review): the reviewers' decisions win while a
    sample's content is unchanged; they are part of the stage key, so a new review re-decides.
    """
    out = work.curation
    review_rows = read_reviews(reviews) if reviews else None
    methods = detect.method_names()
    methods = methods if isinstance(methods, str) else list(methods)
    holdout_keys = [read_done_key(h.done) for h in holdouts]
    knobs = {k: v for k, v in dataclasses.asdict(detect).items() if k != "methods"}
    key = stage_key(work, "curate", upstream=("samples", "embed", "knn"),
                    params={"policy": dataclasses.asdict(policy), "methods": methods, "seed": seed,
                            "holdout": holdout_keys, "detect": knobs, "issue_types": issue_types_key(),
                            "reviews": reviews_key(review_rows) if review_rows is not None else None})
    if is_done(work, "curate", key, (out.table, out.facts)):
        return out
    table = pq.read_table(samples.table)
    classes = classes_of(table)
    emb_table = pl.read_parquet(embed.table)
    rows = np.flatnonzero(emb_table[S.ROW].to_numpy() >= 0)
    holdout_emb, holdout_hashes = None, None
    if holdouts:
        parts = [(np.load(h.matrix), pl.read_parquet(h.table)) for h in holdouts]
        holdout_emb = np.concatenate([e for e, _ in parts])
        holdout_hashes = [h for _, f in parts for h, r in zip(f[S.CONTENT_HASH], f[S.ROW], strict=True) if r >= 0]
    dup_keys, dup_pairs = _text_duplicates(table, emb_table, detect) if source_of(table).modality == "text" else (None, None)
    sample_ids = emb_table[S.SAMPLE_ID].to_list()
    label_index = table.column(S.LABEL_INDEX).to_numpy()
    usable = emb_table[S.ROW].to_numpy() >= 0
    # Fewer usable rows than an audit needs to count (audit.MIN_CHECKED): no sample to check.
    in_audit = curation.audit_members(sample_ids, usable, detect.audit_size if usable.sum() >= MIN_CHECKED else 0)
    audit = None
    if in_audit.any():
        audit = audit_rows(review_rows if review_rows is not None else empty_reviews(), sample_ids=sample_ids,
                           members=in_audit, content_hashes=emb_table[S.CONTENT_HASH].to_list(),
                           label_index=label_index, classes=classes)
    text = None
    if encoder_name.startswith("open_clip:") and (methods == "auto" or "zero_shot" in methods):
        encoder = encoder or get_encoder(encoder_name)
        if encoder.has_text:
            text = encoder.encode_text([detect.zero_shot_prompt.format(c) for c in classes])
    result = curation.curate(
        table.column(S.LABEL_INDEX).to_numpy(), np.load(embed.matrix, mmap_mode="r"),
        load_knn_graph(knn.graph), rows=rows, n_classes=len(classes),
        wide_graph=load_knn_graph(knn.wide) if knn.wide.is_file() else None,
        unusable_reason=emb_table[S.REASON].to_list(), keys=_tie_keys(emb_table),
        content_hashes=emb_table[S.CONTENT_HASH].to_list(), policy=policy, detect=detect,
        methods=methods, seed=seed, holdout_embeddings=holdout_emb, holdout_hashes=holdout_hashes,
        class_text_embeddings=text, class_names=classes, duplicate_keys=dup_keys, duplicate_pairs=dup_pairs,
        sample_stats=read_signals(embed), copy_probe=read_copies(embed), audit=audit,
    )
    d = result.decisions
    ids = emb_table[S.SAMPLE_ID].to_numpy()
    # The label detectors' columns first, then the issue types' (registry order).
    detector_cols = [c for c in result.scores if c not in result.columns]
    frame = pl.DataFrame({
        S.SAMPLE_ID: ids,
        S.DECISION: pl.Series(d.decision.tolist(), dtype=pl.String),
        S.REASONS: pl.Series(d.reasons, dtype=pl.List(pl.String)),
        S.FINAL_LABEL_INDEX: d.final_label,
        S.WEIGHT: d.weight,
        S.DUPLICATE_OF: pl.Series([ids[j] if j >= 0 else None for j in d.duplicate_of], dtype=pl.String),
        S.CLUSTER: pl.Series(d.cluster, dtype=pl.Int64).cast(pl.Int32).replace(-1, None),
        **{name: result.scores[name] for name in detector_cols},
        **{name: pl.Series(name, result.scores[name].tolist() if dtype != "float64" else result.scores[name],
                           dtype=_POLARS_TYPES[dtype]) for name, dtype in result.columns.items()},
    }).with_columns(pl.col(pl.Float64).fill_nan(None))
    frame = apply_reviews(frame, review_rows if review_rows is not None else empty_reviews(),
                          content_hashes=emb_table[S.CONTENT_HASH].to_list(),
                          label_index=label_index, classes=classes).with_columns(pl.Series(S.AUDIT, in_audit))
    write_parquet(frame, out.table, schema=S.CURATION_SCHEMA, extra=extra_column)
    facts = dict(result.facts)
    if audit is not None:
        facts["audit"] = {"size": int(in_audit.sum()), **facts.get("audit", audit.count().as_dict())}
    write_json(facts, out.facts)
    mark_done(work, "curate", key)
    return out


def _text_duplicates(table: pa.Table, emb_table: pl.DataFrame, detect: curation.DetectConfig):
    """The exact-after-normalisation keys and MinHash near-copy pairs of a text catalog's usable rows."""
    from winnow.embeddings import decode_text

    usable = [i for i, r in enumerate(emb_table[S.REASON].to_list()) if r is None]
    locators = table.column(S.LOCATOR).to_pylist()
    reads = open_reader(table).read_many([locators[i] for i in usable])
    texts: list[str | None] = [None] * table.num_rows
    for i, read in zip(usable, reads, strict=True):
        if read.reason is None:
            texts[i] = decode_text(read.data)[0]
    t0 = time.perf_counter()
    pairs = curation.find_minhash_pairs(texts, threshold=detect.text_near_duplicate_jaccard)
    LOG.info("MinHash near copies among %d texts: %d pairs in %.1f s", len(usable), len(pairs[0]),
             time.perf_counter() - t0)
    return curation.text_duplicate_keys(texts), pairs


def write_manifests(samples: SamplesOutput, embed: EmbedOutput, curated: CurationOutput, run: RunLayout, *,
                    run_info: dict, previous: RunLayout | None = None, ground_truth: str | None = None) -> RunOutputs:
    """Findings + decisions -> manifest, clean set, diff and summary (each written atomically).

    previous: the last complete run, for the diff (its manifest) and the moved cut-offs (its
    summary). ground_truth: the catalog's truth table; the summary then scores the label issues.
    """
    out = run.outputs
    table = pq.read_table(samples.table)
    frame_samples, classes = pl.from_arrow(table), classes_of(table)
    emb_table = pl.read_parquet(embed.table)
    cur = pl.read_parquet(curated.table)
    frame = frame_samples.join(emb_table, on=S.SAMPLE_ID, how="left", maintain_order="left").join(
        cur, on=S.SAMPLE_ID, how="left", maintain_order="left"
    )
    names = pl.Series(classes, dtype=pl.String)

    def class_name(col: str) -> pl.Series:
        idx = frame[col].to_numpy()
        return pl.Series([names[int(i)] if i >= 0 else None for i in idx], dtype=pl.String)

    # The label detectors' scores, then the issue types' columns in registry order.
    own = issue_columns()
    score_cols = [c for c in cur.columns if c.startswith(S.SCORE_PREFIX) and c not in own] + [
        c for c in (S.PROBE_MARGIN, S.SUGGESTION_CONFIDENCE) if c in cur.columns] + [
        c for c in own if c in cur.columns]
    manifest = pl.DataFrame({
        S.SAMPLE_ID: frame[S.SAMPLE_ID],
        S.PATH: frame[S.PATH],
        S.LABEL: frame[S.LABEL],
        S.DECISION: frame[S.DECISION],
        S.REASONS: frame[S.REASONS],
        S.LABEL_QUALITY: frame[S.LABEL_QUALITY],
        S.SUGGESTED_LABEL: class_name(S.SUGGESTED_LABEL),
        S.FINAL_LABEL: class_name(S.FINAL_LABEL_INDEX),
        S.WEIGHT: frame[S.WEIGHT],
        S.DUPLICATE_OF: frame[S.DUPLICATE_OF],
        S.CLUSTER: frame[S.CLUSTER],
        S.CONTENT_HASH: frame[S.CONTENT_HASH],
    }).with_columns([frame[c] for c in score_cols])
    if manifest.height != frame_samples.height or manifest[S.SAMPLE_ID].n_unique() != frame_samples.height:
        raise RuntimeError(f"manifest has {manifest.height} rows for {frame_samples.height} samples")  # never ship that
    keep = manifest[S.DECISION] != "drop"
    clean = pl.DataFrame({
        S.SAMPLE_ID: manifest[S.SAMPLE_ID].filter(keep),
        S.PATH: manifest[S.PATH].filter(keep),
        S.ABS_PATH: frame[S.ABS_PATH].filter(keep),
        S.LABEL: manifest[S.FINAL_LABEL].filter(keep),
        S.ORIGINAL_LABEL: manifest[S.LABEL].filter(keep),
        S.WEIGHT: manifest[S.WEIGHT].filter(keep),
        S.LOCATOR: frame[S.LOCATOR].filter(keep),
    }).to_arrow().cast(S.CLEAN_SCHEMA).replace_schema_metadata({"source": table.schema.metadata[b"source"]})
    before = previous.outputs if previous else None
    previous_manifest = pl.read_parquet(before.manifest) if before else None
    diff = diff_manifests(previous_manifest, manifest)
    write_parquet(diff, out.diff, schema=S.DIFF_SCHEMA)
    write_parquet(clean, out.clean, schema=S.CLEAN_SCHEMA)
    write_parquet(manifest, out.manifest, schema=S.MANIFEST_SCHEMA, extra=extra_column)
    summary = summarise(manifest, run_info)
    summary.update(read_json(curated.facts))
    if ground_truth:
        summary["ground_truth"] = {"path": ground_truth,
                                   **score_against_ground_truth(manifest, read_ground_truth(ground_truth))}
    # A row counts once under every change it has: the counts are a group-by of diff.parquet.
    counts = diff.explode(S.CHANGES).group_by(S.CHANGES).len()
    counts = dict(zip(counts[S.CHANGES].to_list(), counts["len"].to_list(), strict=True))
    # issue 11 finding 1: hidden files (and files beside the class folders) are not rows; say how many.
    from winnow.catalogs.samples import skipped_files_of

    summary["skipped_files"] = skipped_files_of(table)
    summary["source"] = source_of(table).kind
    summary["reviews"] = review_counts(manifest)
    summary["diff"] = {
        "previous_run": previous.name if previous else None,
        **{c: int(counts.get(c, 0)) for c in DIFF_CHANGES},
        "newly_reviewed": newly_reviewed(previous_manifest, manifest),
    }
    if before and before.summary.exists():
        summary["diff"]["thresholds"] = moved_thresholds(read_json(before.summary), summary)
    write_json(summary, out.summary)
    return out


def summarise(manifest: pl.DataFrame, run_info: dict) -> dict:
    """Counts per decision, reason and class (before and after), plus what ran and how long."""
    reasons = manifest.select(pl.col(S.REASONS).explode()).drop_nulls()[S.REASONS].value_counts(sort=True)
    before = manifest[S.LABEL].value_counts(sort=True)
    after = manifest.filter(pl.col(S.DECISION) != "drop")[S.FINAL_LABEL].value_counts(sort=True)
    return {
        **run_info,
        "samples": manifest.height,
        "decisions": {d: int((manifest[S.DECISION] == d).sum()) for d in S.DECISIONS},
        "reasons": dict(zip(reasons[S.REASONS].to_list(), reasons["count"].to_list(), strict=True)),
        "classes_before": dict(sorted(zip(before[S.LABEL].to_list(), before["count"].to_list(), strict=True))),
        "classes_after": dict(sorted(zip(after[S.FINAL_LABEL].to_list(), after["count"].to_list(), strict=True))),
    }


def read_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


class _progress_bar:
    """A rich progress bar on stderr with files/s, or a no-op when disabled."""

    def __init__(self, label: str, total: int, *, enabled: bool, unit: str = "files") -> None:
        self.label, self.total, self.enabled, self.unit = label, total, enabled, unit

    def __enter__(self):
        if not self.enabled:
            return None
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn(f"[bold]{self.label}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self._bar.start()
        self._task = self._bar.add_task(self.label, total=self.total, rate="")
        started = time.perf_counter()

        def update(done: int, total: int) -> None:
            rate = done / max(time.perf_counter() - started, 1e-9)
            self._bar.update(self._task, completed=done, total=total, rate=f"{rate:,.0f} {self.unit}/s")

        return update

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self._bar.stop()
