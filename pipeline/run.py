"""One run, start to end: validate everything first, then the stages, with or without Prefect.

`validate_run` reads and checks all a user gave (catalog and its samples, holdouts, ground
truth, policy, detectors, output folders, device, encoder) before anything is created, so a
mistake is reported in about a second, with no run folder left behind and Prefect never
imported. `execute` runs the stages of flows/tasks.py through a `Stages`: called directly in
this process (the default, `direct_stages`), or as Prefect tasks (flows/clean.py's flow, for
deployments and the Dask runner). Both produce the same files.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from winnow.catalogs import (
    CatalogSpec,
    classes_of,
    list_samples,
    read_ground_truth,
    resolve_catalog,
)
from winnow.curation import DETECTORS, list_detectors, policy_from_dict
from winnow.pipeline.config import ConfigError, RunConfig, parse_methods
from winnow.pipeline.files import locked
from winnow.pipeline.versions import latest_run, prune_old_work, publish_run, start_run

LOG = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class RunPlan:
    """A validated run: what `execute` needs, read once."""

    config: RunConfig
    spec: CatalogSpec  # the resolved catalog
    samples: pa.Table  # its samples, listed and validated
    holdouts: tuple[tuple[str, pa.Table], ...]  # (target, samples) of each --holdout catalog
    policy: dict[str, Any]  # catalog policy + overrides; kmeans_seed defaults to config.seed
    methods: str | tuple[str, ...]  # "auto" or detector names
    encoder_name: str  # the encoder to use (option, else the catalog's, else Winnow's default)
    out: Path  # resolved output folder
    store: Path  # resolved embedding store folder
    ground_truth: Path | None  # the catalog's ground truth table, checked
    encoder: Any = None  # the loaded encoder when validation loaded it (direct runner), else None


@dataclass(frozen=True)
class Stages:
    """How each stage of flows/tasks.py runs: called directly, or as a Prefect task."""

    load_samples: Callable[..., str]
    embed_shards: Callable[..., list[str]]  # every shard of one catalog -> their shard files
    merge_embeddings: Callable[..., str]
    build_knn: Callable[..., str]
    curate_samples: Callable[..., str]
    write_manifests: Callable[..., str]


def validate_run(config: RunConfig, *, load_encoder: bool = True) -> RunPlan:
    """Check everything the run was given, cheapest first; raises the user's error by name.

    Writes nothing. `load_encoder=False` checks the encoder's name only by its family (the
    flow does that: each embedding task loads its own, possibly on another machine).
    """
    out = _output_folder(config.out, "--out")
    store = _output_folder(config.store, "--store") if config.store else out / "store"
    spec = resolve_catalog(config.target, path_column=config.path_column, label_column=config.label_column)
    samples = list_samples(spec)
    if spec.source.kind == "image_folder" and _is_within(out, spec.source.root.resolve()):
        raise ConfigError(f"--out {str(out)!r} is inside the dataset folder {str(spec.source.root)!r}: the next "
                          f"run would list its files as samples; choose a folder outside it")
    policy = {**spec.policy, **config.policy}
    policy.setdefault("kmeans_seed", config.seed)
    classes = classes_of(samples)
    if classes:  # a per-class setting that names no class fails here, before any embedding
        policy_from_dict(policy).check_classes(classes)
    else:
        policy_from_dict(policy)
    methods = parse_methods(config.methods)
    if methods != "auto":
        unknown = [m for m in methods if m not in DETECTORS]
        if unknown:
            raise ConfigError(f"unknown detector(s) {unknown!r} in --methods {config.methods!r}; "
                              f"known: {list_detectors()}")
    holdouts = tuple((target, list_samples(resolve_catalog(target))) for target in config.holdout)
    ground_truth = None
    if spec.ground_truth is not None:
        read_ground_truth(spec.ground_truth)  # a bad truth table fails now, not after the run
        ground_truth = spec.ground_truth
    if config.device and config.device.startswith("cuda"):
        _check_cuda(config.device)

    named = config.encoder or spec.encoder  # None: Winnow's default, an open_clip model
    if methods != "auto" and "zero_shot" in methods and named and not named.startswith("open_clip:"):
        raise ConfigError(f"detector 'zero_shot' needs an encoder with a text tower (open_clip:...), not {named!r}")

    # Only now the encoder, and with it torch: every mistake above is reported in a second.
    from winnow.embeddings import DEFAULT_ENCODER, get_encoder

    encoder_name = named or DEFAULT_ENCODER
    encoder = get_encoder(encoder_name, device=config.device) if load_encoder else None
    if encoder is not None and methods != "auto" and "zero_shot" in methods and not encoder.has_text:
        raise ConfigError(f"detector 'zero_shot' needs a text tower, and {encoder_name!r} has none")
    return RunPlan(config=config, spec=spec, samples=samples, holdouts=holdouts, policy=policy, methods=methods,
                   encoder_name=encoder_name, out=out, store=store, ground_truth=ground_truth, encoder=encoder)


def run_clean(config: RunConfig, *, plan: RunPlan | None = None) -> dict[str, str]:
    """Clean one dataset with the runner `config.runner` names; returns the output paths.

    "direct" (the default) runs the stages in this process with no Prefect at all: nothing
    is logged to a Prefect server and no database is shared with other runs. "prefect" runs
    the clean_dataset flow (its runs show in the server PREFECT_API_URL names, or a temporary
    one); "dask" runs that flow on prefect-dask's DaskTaskRunner (see flows/clean.py).
    """
    if config.runner == "direct":
        plan = plan or validate_run(config)
        return execute(plan, direct_stages())
    from winnow.flows.clean import run_flow

    return run_flow(config)


def execute(plan: RunPlan, stages: Stages) -> dict[str, str]:
    """The stages of one run into a new version under OUT/runs/ (or the killed run it resumes)."""
    # The stages import the image readers (and torch): not needed for validation.
    from winnow.pipeline.report import write_report
    from winnow.pipeline.stages import read_json

    started = time.perf_counter()
    config = plan.config
    with locked(plan.out, wait=config.wait_for_lock):
        previous = latest_run(plan.out)
        run = start_run(plan.out)
        work = run / "work"
        work.mkdir(parents=True, exist_ok=True)
        LOG.info("run %s: %d samples of %r", run.name, plan.samples.num_rows, plan.spec.name)
        samples = stages.load_samples(config.target, str(work), path_column=config.path_column,
                                      label_column=config.label_column, table=plan.samples)
        embed = _embed(stages, plan, samples, work)
        knn = stages.build_knn(str(work), k=config.k, device=config.device, seed=config.seed,
                               progress=config.progress)
        holdout = []
        for i, (target, table) in enumerate(plan.holdouts):
            folder = work / f"holdout-{i}"
            folder.mkdir(parents=True, exist_ok=True)
            holdout.append(_embed(stages, plan, stages.load_samples(target, str(folder), table=table), folder))
        curated = stages.curate_samples(samples, embed, knn, str(work), encoder_name=plan.encoder_name,
                                        policy=plan.policy, methods=plan.methods, seed=config.seed,
                                        holdout_embed_paths=tuple(holdout), encoder=plan.encoder)
        run_info = {
            "run_id": run.name,
            "catalog": plan.spec.name,
            "encoder": plan.encoder_name,
            "embedding": read_json(work / "embed.json"),
            "knn": read_json(work / "knn.json"),
            "k": config.k,
            "seconds": round(time.perf_counter() - started, 2),
        }
        manifest = stages.write_manifests(
            samples, embed, curated, str(run), run_info=run_info,
            previous_manifest=str(previous / "manifest.parquet") if previous else None,
            ground_truth=str(plan.ground_truth) if plan.ground_truth else None,
        )
        write_report(run)
        publish_run(plan.out, run)
        prune_old_work(plan.out, keep=2)
    LOG.info("run %s published in %.1f s", run.name, time.perf_counter() - started)
    return {
        "run": str(run),
        "manifest": manifest,
        "clean": str(run / "clean.parquet"),
        "summary": str(run / "summary.json"),
        "diff": str(run / "diff.parquet"),
        "latest": str(plan.out / "latest"),
        "ground_truth": str(plan.ground_truth) if plan.ground_truth else "",
    }


def direct_stages() -> Stages:
    """The stage functions, called in this process."""
    from winnow.pipeline import stages as tasks

    def embed_shards(samples, encoder_name, store, work, *, n_shards, encoder=None, **kw):
        return [tasks.embed_shard(samples, encoder_name, store, work, shard=i, n_shards=n_shards, encoder=encoder,
                                  **kw) for i in range(n_shards)]

    return Stages(load_samples=tasks.load_samples, embed_shards=embed_shards,
                  merge_embeddings=tasks.merge_embeddings, build_knn=tasks.build_knn,
                  curate_samples=tasks.curate_samples, write_manifests=tasks.write_manifests)


def _embed(stages: Stages, plan: RunPlan, samples: str, work: Path) -> str:
    """Embed one listed catalog into `work`, in shards; returns embed.parquet."""
    config = plan.config
    n_shards = max(1, config.shards)
    shards = stages.embed_shards(samples, plan.encoder_name, str(plan.store), str(work), n_shards=n_shards,
                                 batch_size=config.batch_size, device=config.device,
                                 progress=config.progress and n_shards == 1, encoder=plan.encoder)
    return stages.merge_embeddings(samples, shards, plan.encoder_name, str(plan.store), str(work))


def _output_folder(text: str, option: str) -> Path:
    """A folder Winnow may create and write: not an existing file, under a writable folder."""
    path = Path(text).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {str(path)!r} exists and is not a folder")
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{option} {str(path)!r} cannot be created: {str(parent)!r} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {str(path)!r} cannot be written: no write permission on {str(parent)!r}")
    return path


def _check_cuda(device: str) -> None:
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(f"--device {device!r}, but no CUDA device is available here (use cpu)")
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise ConfigError(f"--device {device!r}, but there are only {torch.cuda.device_count()} CUDA device(s)")


def _is_within(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False
