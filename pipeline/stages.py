"""The stages of a run: read inputs by path, call one library function, write a file, return its path.

Plain functions, no Prefect: flows/pipeline.py calls them directly (the default runner) and
flows/clean.py wraps each as a Prefect task for the flow (deployments, Dask). Each stage skips
itself when its recorded stage key matches (see flows/stages.py), so a run killed part-way
resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
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
from winnow.embeddings import EmbeddingStore, embed_samples, get_encoder
from winnow.pipeline.evaluate import score_against_ground_truth
from winnow.pipeline.files import load_knn_graph, save_knn_graph, write_json, write_parquet
from winnow.pipeline.stage_keys import is_done, mark_done, stage_key
from winnow.pipeline.versions import DIFF_CHANGES, diff_manifests, moved_thresholds


def load_samples(target: str, work_dir: str, *, path_column: str | None = None, label_column: str | None = None,
                 table: pa.Table | None = None) -> str:
    """Catalog -> samples.parquet (validated; one row per input sample).

    `table`: the samples already listed (by the run's validation); None lists them here.
    """
    work = Path(work_dir)
    if table is None:
        table = list_samples(resolve_catalog(target, path_column=path_column, label_column=label_column))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    digest = hashlib.blake2b(sink.getvalue().to_pybytes(), digest_size=16)
    # A sample changed in place keeps its row: the source's fingerprint (files: size and mtime)
    # makes the key change too, so a resumed run never reuses the embedding of the old content.
    digest.update(source_of(table).fingerprint(table).encode())
    key = digest.hexdigest()
    if not is_done(work, "samples", key, ("samples.parquet",)):
        write_parquet(table, work / "samples.parquet")
        mark_done(work, "samples", key, rows=table.num_rows)
    return str(work / "samples.parquet")


def embed_stage_key(work: Path, encoder_name: str) -> str:
    return stage_key(work, "embed", upstream=("samples",), params={"encoder": encoder_name})


def embed_shard(samples_path: str, encoder_name: str, store_dir: str, work_dir: str, *, shard: int = 0,
                n_shards: int = 1, batch_size: int = 64, device: str | None = None,
                progress: bool = False, encoder=None) -> str:
    """Embed shard `shard` of `n_shards` (every n-th sample) into the store.

    Writes embed-shard-<i>.parquet (position, content_hash, reason) and its counts. Shards
    can run on different workers at once: the store takes concurrent writers. `encoder`:
    the loaded `encoder_name` when the caller has it (None loads it here).
    """
    work = Path(work_dir)
    out = work / f"embed-shard-{shard}-of-{n_shards}.parquet"
    if is_done(work, "embed", embed_stage_key(work, encoder_name), ("embed.parquet", "embeddings.npy")):
        return str(out)
    samples = pq.read_table(samples_path)
    positions = list(range(shard, samples.num_rows, n_shards))
    locators = samples.column(S.LOCATOR).to_pylist()
    refused = samples.column(S.REFUSED).to_pylist()
    encoder = encoder or get_encoder(encoder_name, device=device)
    store = EmbeddingStore(store_dir, encoder_id=encoder.encoder_id, dim=encoder.dim)
    t0 = time.perf_counter()
    with _progress_bar("embedding", len(positions), enabled=progress) as update:
        report = embed_samples([locators[i] for i in positions], open_reader(samples), encoder, store,
                               refused=[refused[i] for i in positions], batch_size=batch_size, progress=update)
    seconds = time.perf_counter() - t0
    write_parquet(pl.DataFrame({"position": positions, S.CONTENT_HASH: report.content_hash,
                                "reason": report.reason},
                               schema={"position": pl.Int64, S.CONTENT_HASH: pl.String, "reason": pl.String}), out)
    write_json({"encoder_id": encoder.encoder_id, "dim": encoder.dim, "embedded": report.n_embedded,
                "reused": report.n_reused, "unusable": report.n_unusable, "seconds": round(seconds, 3),
                "stage_seconds": {k: round(v, 3) for k, v in report.seconds.items()}},
               out.with_suffix(".json"))
    return str(out)


def merge_embeddings(samples_path: str, shard_paths: list[str], encoder_name: str, store_dir: str,
                     work_dir: str) -> str:
    """Shards -> embed.parquet (hash, reason, row per sample) and embeddings.npy (usable rows)."""
    work = Path(work_dir)
    key = embed_stage_key(work, encoder_name)
    if is_done(work, "embed", key, ("embed.parquet", "embeddings.npy", "embed.json")):
        return str(work / "embed.parquet")
    samples = pq.read_table(samples_path)
    parts = pl.concat([pl.read_parquet(p) for p in shard_paths]).sort("position")
    if parts.height != samples.num_rows or parts["position"].to_list() != list(range(samples.num_rows)):
        raise RuntimeError(f"embedding shards cover {parts.height} of {samples.num_rows} samples")
    stats = [read_json(Path(p).with_suffix(".json")) for p in shard_paths]
    reasons = parts["reason"].to_list()
    hashes = parts[S.CONTENT_HASH].to_list()
    usable = [i for i, r in enumerate(reasons) if r is None]
    rows = np.full(len(reasons), -1, dtype=np.int64)
    rows[usable] = np.arange(len(usable))
    store = EmbeddingStore(store_dir, encoder_id=stats[0]["encoder_id"], dim=stats[0]["dim"])
    store.write_matrix([hashes[i] for i in usable], work / "embeddings.npy")
    write_parquet(
        pl.DataFrame({S.SAMPLE_ID: samples.column(S.SAMPLE_ID).to_pylist(), S.CONTENT_HASH: hashes,
                      "reason": reasons, "row": rows},
                     schema={S.SAMPLE_ID: pl.String, S.CONTENT_HASH: pl.String, "reason": pl.String,
                             "row": pl.Int64}),
        work / "embed.parquet",
    )
    seconds = max(s["seconds"] for s in stats)
    embedded = sum(s["embedded"] for s in stats)
    write_json({
        "encoder": encoder_name, "encoder_id": stats[0]["encoder_id"], "dim": stats[0]["dim"],
        "embedded": embedded, "reused": sum(s["reused"] for s in stats),
        "unusable": sum(s["unusable"] for s in stats), "shards": len(stats), "seconds": seconds,
        "stage_seconds": {k: round(sum(s["stage_seconds"].get(k, 0) for s in stats), 3)
                          for k in ("read", "decode", "model", "write")},
        "images_per_second": round(embedded / seconds, 2) if seconds > 0 and embedded else None,
    }, work / "embed.json")
    mark_done(work, "embed", key)
    return str(work / "embed.parquet")


def build_knn(work_dir: str, *, k: int = 10, device: str | None = None, seed: int = 0,
              progress: bool = False) -> str:
    """embeddings.npy -> knn.npz, the graph every detector reads (`seed`: the IVF index's samples)."""
    work = Path(work_dir)
    key = stage_key(work, "knn", upstream=("embed",), params={"k": k, "seed": seed})
    if is_done(work, "knn", key, ("knn.npz", "knn.json")):
        return str(work / "knn.npz")
    emb = np.load(work / "embeddings.npy", mmap_mode="r")
    if emb.shape[0] < 2:
        raise curation.InvalidArray(f"only {emb.shape[0]} sample(s) could be embedded; need at least 2")
    t0 = time.perf_counter()
    with _progress_bar("indexing", emb.shape[0], enabled=progress, unit="steps") as update:
        graph = curation.build_knn_graph(emb, k=min(k, emb.shape[0] - 1),
                                         index=curation.IndexConfig(device=device, seed=seed), progress=update)
    save_knn_graph(graph, work / "knn.npz")
    write_json({"method": graph.method, "recall_at_k": graph.recall, "k": graph.k,
                "seconds": round(time.perf_counter() - t0, 3)}, work / "knn.json")
    mark_done(work, "knn", key)
    return str(work / "knn.npz")


def curate_samples(samples_path: str, embed_path: str, knn_path: str, work_dir: str, *, encoder_name: str,
                   policy: dict, methods: str | tuple[str, ...] = "auto", seed: int = 0,
                   holdout_embed_paths: tuple[str, ...] = (), encoder=None) -> str:
    """Every detector + the policy -> curation.parquet (one row per input sample) and curation.json.

    methods: "auto" or detector names; zero_shot needs an open_clip encoder (its text tower).
    """
    work = Path(work_dir)
    methods = methods if isinstance(methods, str) else list(methods)
    holdout_keys = [read_json(Path(p).parent / "embed.done.json")["key"] for p in holdout_embed_paths]
    key = stage_key(work, "curate", upstream=("samples", "embed", "knn"),
                    params={"policy": policy, "methods": methods, "seed": seed, "holdout": holdout_keys})
    if is_done(work, "curate", key, ("curation.parquet", "curation.json")):
        return str(work / "curation.parquet")
    samples = pq.read_table(samples_path)
    classes = classes_of(samples)
    embed = pl.read_parquet(embed_path)
    rows = np.flatnonzero(embed["row"].to_numpy() >= 0)
    holdout_emb, holdout_hashes = None, None
    if holdout_embed_paths:
        parts = [(np.load(Path(p).parent / "embeddings.npy"), pl.read_parquet(p)) for p in holdout_embed_paths]
        holdout_emb = np.concatenate([e for e, _ in parts])
        holdout_hashes = [h for _, f in parts for h, r in zip(f[S.CONTENT_HASH], f["row"], strict=True) if r >= 0]
    text = None
    if encoder_name.startswith("open_clip:") and (methods == "auto" or "zero_shot" in methods):
        encoder = encoder or get_encoder(encoder_name)
        if encoder.has_text:
            text = encoder.encode_text([f"a photo of a {c}." for c in classes])
    result = curation.curate(
        samples.column(S.LABEL_INDEX).to_numpy(), np.load(work / "embeddings.npy", mmap_mode="r"),
        load_knn_graph(knn_path), rows=rows, n_classes=len(classes),
        unusable_reason=embed["reason"].to_list(), keys=embed[S.SAMPLE_ID].to_numpy(),
        content_hashes=embed[S.CONTENT_HASH].to_list(), policy=curation.policy_from_dict(policy),
        methods=methods, seed=seed, holdout_embeddings=holdout_emb, holdout_hashes=holdout_hashes,
        class_text_embeddings=text, class_names=classes,
    )
    d = result.decisions
    ids = embed[S.SAMPLE_ID].to_numpy()
    frame = pl.DataFrame({
        S.SAMPLE_ID: ids,
        S.DECISION: pl.Series(d.decision.tolist(), dtype=pl.String),
        S.REASONS: pl.Series(d.reasons, dtype=pl.List(pl.String)),
        "final_label_index": d.final_label,
        S.WEIGHT: d.weight,
        S.DUPLICATE_OF: pl.Series([ids[j] if j >= 0 else None for j in d.duplicate_of], dtype=pl.String),
        S.CLUSTER: pl.Series(d.cluster, dtype=pl.Int64).cast(pl.Int32).replace(-1, None),
        **{name: values for name, values in result.scores.items()},
    }).with_columns(pl.col(pl.Float64).fill_nan(None))
    write_parquet(frame, work / "curation.parquet")
    write_json(result.facts, work / "curation.json")
    mark_done(work, "curate", key)
    return str(work / "curation.parquet")


def write_manifests(samples_path: str, embed_path: str, curation_path: str, run_dir: str, *,
                    run_info: dict, previous_manifest: str | None = None, ground_truth: str | None = None) -> str:
    """Findings + decisions -> manifest.parquet, clean.parquet, diff.parquet, summary.json (each atomic).

    previous_manifest: the last complete run's manifest (its summary.json beside it), for the
    diff. ground_truth: the catalog's truth table; the summary then scores the label issues.
    """
    table = pq.read_table(samples_path)
    samples, classes = pl.from_arrow(table), classes_of(table)
    embed = pl.read_parquet(embed_path)
    cur = pl.read_parquet(curation_path)
    frame = samples.join(embed, on=S.SAMPLE_ID, how="left", maintain_order="left").join(
        cur, on=S.SAMPLE_ID, how="left", maintain_order="left"
    )
    names = pl.Series(classes, dtype=pl.String)

    def class_name(col: str) -> pl.Series:
        idx = frame[col].to_numpy()
        return pl.Series([names[int(i)] if i >= 0 else None for i in idx], dtype=pl.String)

    score_cols = [c for c in cur.columns if c.startswith("score_")] + [
        c for c in ("probe_margin", "suggestion_confidence", "outlier_score") if c in cur.columns]
    manifest = pl.DataFrame({
        S.SAMPLE_ID: frame[S.SAMPLE_ID],
        S.PATH: frame[S.PATH],
        S.LABEL: frame[S.LABEL],
        S.DECISION: frame[S.DECISION],
        S.REASONS: frame[S.REASONS],
        S.LABEL_QUALITY: frame[S.LABEL_QUALITY],
        S.SUGGESTED_LABEL: class_name("suggested_label"),
        S.FINAL_LABEL: class_name("final_label_index"),
        S.WEIGHT: frame[S.WEIGHT],
        S.DUPLICATE_OF: frame[S.DUPLICATE_OF],
        S.CLUSTER: frame[S.CLUSTER],
        S.CONTENT_HASH: frame[S.CONTENT_HASH],
    }).with_columns([frame[c] for c in score_cols])
    if manifest.height != samples.height or manifest[S.SAMPLE_ID].n_unique() != samples.height:
        raise RuntimeError(f"manifest has {manifest.height} rows for {samples.height} samples")  # never ship that
    run = Path(run_dir)
    keep = manifest[S.DECISION] != "drop"
    clean = pl.DataFrame({
        S.SAMPLE_ID: manifest[S.SAMPLE_ID].filter(keep),
        S.PATH: manifest[S.PATH].filter(keep),
        S.ABS_PATH: frame[S.ABS_PATH].filter(keep),
        S.LABEL: manifest[S.FINAL_LABEL].filter(keep),
        "original_label": manifest[S.LABEL].filter(keep),
        S.WEIGHT: manifest[S.WEIGHT].filter(keep),
        S.LOCATOR: frame[S.LOCATOR].filter(keep),
    }).to_arrow().cast(S.CLEAN_SCHEMA).replace_schema_metadata({"source": table.schema.metadata[b"source"]})
    previous = pl.read_parquet(previous_manifest) if previous_manifest else None
    diff = diff_manifests(previous, manifest)
    write_parquet(diff, run / "diff.parquet")
    write_parquet(clean, run / "clean.parquet")
    write_parquet(manifest, run / "manifest.parquet")
    summary = summarise(manifest, run_info)
    summary.update(read_json(Path(curation_path).with_suffix(".json")))
    if ground_truth:
        summary["ground_truth"] = {"path": ground_truth,
                                   **score_against_ground_truth(manifest, read_ground_truth(ground_truth))}
    # A row counts once under every change it has: the counts are a group-by of diff.parquet.
    counts = diff.explode("changes").group_by("changes").len()
    counts = dict(zip(counts["changes"].to_list(), counts["len"].to_list(), strict=True))
    # issue 11 finding 1: hidden files (and files beside the class folders) are not rows; say how many.
    from winnow.catalogs.samples import skipped_files_of

    summary["skipped_files"] = skipped_files_of(table)
    summary["source"] = source_of(table).kind
    summary["diff"] = {
        "previous_run": Path(previous_manifest).parent.name if previous_manifest else None,
        **{c: int(counts.get(c, 0)) for c in DIFF_CHANGES},
    }
    if previous_manifest and (Path(previous_manifest).parent / "summary.json").exists():
        before = read_json(Path(previous_manifest).parent / "summary.json")
        summary["diff"]["thresholds"] = moved_thresholds(before, summary)
    write_json(summary, run / "summary.json")
    return str(run / "manifest.parquet")


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
