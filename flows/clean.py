"""The `clean_dataset` flow: catalog -> embed -> kNN graph -> detect -> manifests."""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl
from prefect import flow

from catalogs import resolve_catalog
from curation import MissingDependency, policy_from_dict
from embeddings import DEFAULT_ENCODER
from flows.config import RunConfig
from flows.io import locked
from flows.report import write_report
from flows.tasks import (
    build_knn,
    curate_samples,
    embed_shard,
    load_samples,
    merge_embeddings,
    read_json,
    write_manifests,
)
from flows.versions import latest_run, prune_old_work, publish_run, start_run


@flow(name="clean-dataset", log_prints=True)
def clean_dataset(config: RunConfig) -> dict[str, str]:
    """Clean one dataset end to end into a new version under OUT/runs/; returns its output paths.

    A run killed part-way leaves an incomplete version; the next run on the same OUT
    resumes it, skipping the stages that had finished.
    """
    started = time.perf_counter()
    spec = resolve_catalog(config.target)  # validates the catalog before any work
    policy = {**spec.policy, **config.policy}
    policy_from_dict(policy)  # a bad policy key fails now, not after embedding
    encoder = config.encoder or spec.encoder or DEFAULT_ENCODER
    out = Path(config.out).expanduser().resolve()
    store = Path(config.store).expanduser().resolve() if config.store else out / "store"
    with locked(out, wait=config.wait_for_lock):
        previous = latest_run(out)
        run = start_run(out)
        work = run / "work"
        work.mkdir(parents=True, exist_ok=True)
        samples = load_samples(config.target, str(work))
        embed = _embed_catalog(config.target, encoder, store, work, config, samples=samples)
        knn = build_knn(str(work), k=config.k, device=config.device, progress=config.progress)
        holdout = tuple(
            _embed_catalog(target, encoder, store, work / f"holdout-{i}", config)
            for i, target in enumerate(config.holdout)
        )
        curated = curate_samples(samples, embed, knn, str(work), encoder_name=encoder, policy=policy,
                                 methods=config.methods, seed=config.seed, holdout_embed_paths=holdout)
        run_info = {
            "run_id": run.name,
            "catalog": spec.name,
            "encoder": encoder,
            "embedding": read_json(work / "embed.json"),
            "knn": read_json(work / "knn.json"),
            "k": config.k,
            "seconds": round(time.perf_counter() - started, 2),
        }
        manifest = write_manifests(
            samples, embed, curated, str(run), run_info=run_info,
            previous_manifest=str(previous / "manifest.parquet") if previous else None,
        )
        write_report(run)
        publish_run(out, run)
        prune_old_work(out, keep=2)
    return {
        "run": str(run),
        "manifest": manifest,
        "clean": str(run / "clean.parquet"),
        "summary": str(run / "summary.json"),
        "diff": str(run / "diff.parquet"),
        "latest": str(out / "latest"),
        "ground_truth": str(spec.ground_truth) if spec.ground_truth else "",
    }


def _embed_catalog(target: str, encoder: str, store: Path, work: Path, config: RunConfig, *,
                   samples: str | None = None) -> str:
    """List (unless given) and embed one catalog into `work`, in shards; returns embed.parquet."""
    work.mkdir(parents=True, exist_ok=True)
    samples = samples or load_samples(target, str(work))
    n_shards = max(1, config.shards)
    shards = [
        embed_shard.submit(samples, encoder, str(store), str(work), shard=i, n_shards=n_shards,
                           batch_size=config.batch_size, device=config.device,
                           progress=config.progress and n_shards == 1)
        for i in range(n_shards)
    ]
    return merge_embeddings(samples, [s.result() for s in shards], encoder, str(store), str(work))


def run_clean(config: RunConfig) -> dict[str, str]:
    """Run clean_dataset with the task runner the config asks for.

    "local": Prefect's default runner in this process. "dask": prefect-dask's
    DaskTaskRunner on a new LocalCluster (one worker process per shard) or on the existing
    cluster at `config.dask_address`; embedding shards fan out across its workers and write
    into the shared store. (For GPU clusters, prefect-ray's RayTaskRunner plugs in the same way.)
    """
    if config.runner == "local":
        return clean_dataset(config)
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as exc:
        raise MissingDependency("--runner dask needs prefect-dask: pip install 'winnow[dask]'") from exc
    if config.dask_address:
        runner = DaskTaskRunner(address=config.dask_address)
    else:
        runner = DaskTaskRunner(cluster_kwargs={"n_workers": max(1, config.shards), "threads_per_worker": 1,
                                                "processes": True, "dashboard_address": None})
    return clean_dataset.with_options(task_runner=runner)(config)


def score_against_ground_truth(manifest_path: str | Path, ground_truth_path: str | Path) -> dict[str, float]:
    """Precision / recall / F1 of the flagged label issues against a planted-noise table.

    The ground truth has `path` and `is_flipped`; a sample counts as flagged when its
    reasons include `label_issue`.
    """
    manifest = pl.read_parquet(manifest_path)
    truth = pl.read_parquet(ground_truth_path).select("path", "is_flipped")
    joined = manifest.join(truth, on="path", how="inner")
    flagged = joined["reasons"].list.contains("label_issue").to_numpy()
    actual = joined["is_flipped"].to_numpy()
    tp = int((flagged & actual).sum())
    precision = tp / max(int(flagged.sum()), 1)
    recall = tp / max(int(actual.sum()), 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"flagged": int(flagged.sum()), "planted": int(actual.sum()), "true_positives": tp,
            "precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}
