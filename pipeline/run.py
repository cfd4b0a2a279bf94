"""One run, start to end: validate everything first, then the stages, with or without Prefect.

`validate_run` reads and checks all a user gave (settings, catalog and its samples,
holdouts, ground truth, output folders, device, encoder) before anything is created, so a
mistake is reported in about a second, with no run folder left behind and Prefect never
imported. Its RunPlan holds the resolved Config: the settings layers merged over the
catalog's tables (pipeline/config.py), every default that depends on the run filled in.
`execute` runs the stages of pipeline/stages.py through a `Stages`: called directly in this
process (the default, `direct_stages`), or as Prefect tasks (flows/clean.py's flow, for
deployments and the Dask runner). Both produce the same files.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Mapping
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
from winnow.catalogs.sources.local import is_within
from winnow.curation import InvalidArray
from winnow.pipeline.config import Config, ConfigError, RunOptions, check_settings
from winnow.pipeline.files import check_output_folder, locked
from winnow.pipeline.layout import LATEST, EmbedOutput, RunLayout, SamplesOutput, WorkLayout
from winnow.pipeline.versions import latest_run, prune_old_work, publish_run, start_run

LOG = logging.getLogger(__name__)

Settings = Mapping[str, Mapping[str, Any]] | Config | None
"""A settings layer: {section: {key: value}} (or a Config: its non-default fields)."""


@dataclass(frozen=True, eq=False)
class RunPlan:
    """A validated run: what `execute` needs, read once."""

    target: str  # the target as given (a Prefect task re-lists it by this); a CatalogSpec's file or name
    config: Config  # resolved: layers merged, encoder / store / out / shards / knn.device filled in
    spec: CatalogSpec  # the resolved catalog
    samples: pa.Table  # its samples, listed and validated
    holdouts: tuple[tuple[str, pa.Table], ...]  # (target, samples) of each holdout catalog
    out: Path  # resolved output folder
    store: Path  # resolved embedding store folder
    ground_truth: Path | None  # the catalog's ground truth table, checked
    encoder: Any = None  # the loaded encoder when validation loaded it (direct runner), else None

    @property
    def encoder_name(self) -> str:
        return self.config.embed.encoder


@dataclass(frozen=True)
class Stages:
    """How each stage of pipeline/stages.py runs: called directly, or as a Prefect task."""

    load_samples: Callable[..., SamplesOutput]
    embed_shards: Callable[..., list]  # every shard of one catalog -> their ShardOutputs
    merge_embeddings: Callable[..., EmbedOutput]
    build_knn: Callable[..., Any]
    curate_samples: Callable[..., Any]
    write_manifests: Callable[..., Any]


def catalog_settings(spec: CatalogSpec) -> dict[str, dict[str, Any]]:
    """A catalog's [embed] [knn] [detect] [policy] [run] tables (and its `encoder`) as a settings layer."""
    where = f"catalog {str(spec.spec_path or spec.name)!r}"
    tables = {name: dict(values) for name, values in spec.config.items()}
    if spec.encoder is not None:
        tables.setdefault("embed", {})["encoder"] = spec.encoder
    columns = sorted(set(RunOptions().target_options()) & set(tables.get("run", {})))
    if columns:
        raise ConfigError(f"{where} [run]: {columns!r} say how a target is read; a catalog says that in "
                          f"[source]")
    return check_settings(tables, where=where)


def resolve_config(spec: CatalogSpec, settings: Settings = None, *, defaults: Settings = None) -> Config:
    """defaults < the catalog's tables < settings, merged (nothing filled in yet)."""
    return Config.from_settings(check_settings(defaults, where="defaults"), catalog_settings(spec),
                                check_settings(settings, where="settings"))


def validate_run(target: str | os.PathLike | CatalogSpec, settings: Settings = None, *, defaults: Settings = None,
                 load_encoder: bool = True) -> RunPlan:
    """Check everything the run was given, cheapest first; raises the user's error by name.

    settings: the user's layer (a --config file, flags and --set, merged); defaults: a layer
    beneath the catalog's tables (winnow.clean's temporary folder and cache store). Writes
    nothing. `load_encoder=False` checks the encoder's name only by its family (the flow
    does that: each embedding task loads its own, possibly on another machine).
    """
    settings = check_settings(settings, where="settings")  # a bad key fails before the catalog is read
    own = Config.from_settings(settings)
    if isinstance(target, CatalogSpec):
        spec, text = target, str(target.spec_path or target.name)
    elif isinstance(target, (str, os.PathLike)):
        text = os.fspath(target)
        spec = resolve_catalog(text, **own.run.target_options())
    else:  # a datasets.Dataset: saved once to the cache, then a target like any saved folder
        spec = resolve_catalog(target, label_column=own.run.label_column, image_column=own.run.image_column)
        text = spec.source.path
    config = resolve_config(spec, settings, defaults=defaults)
    if config.run.out is None:
        raise ConfigError("no output folder: pass --out (run.out)")
    out = check_output_folder(config.run.out, "--out")
    store = check_output_folder(config.embed.store, "--store") if config.embed.store else out / "store"
    samples = list_samples(spec)
    # A folder source (class folders, a folder of Parquet shards) would list OUT's files next time.
    data_dir = spec.source.local_path()
    if data_dir is not None and data_dir.is_dir() and is_within(out, data_dir.resolve()):
        raise ConfigError(f"--out {str(out)!r} is inside the dataset folder {str(data_dir)!r}: the next "
                          f"run would list its files as samples; choose a folder outside it")
    classes = classes_of(samples)
    if classes:  # a per-class policy setting that names no class of the data fails here, before any embedding
        try:
            config.policy.check_classes(classes)
        except InvalidArray as exc:
            raise ConfigError(str(exc)) from None
    methods = config.detect.method_names()
    # A review file that does not follow the schema fails now, not after embedding (it names the file).
    from winnow.pipeline.review.store import read_reviews, reviews_dir

    read_reviews(reviews_dir(out))
    holdouts = tuple((h, list_samples(resolve_catalog(h))) for h in config.run.holdout)
    ground_truth = None
    if spec.ground_truth is not None:
        read_ground_truth(spec.ground_truth)  # a bad truth table fails now, not after the run
        ground_truth = spec.ground_truth
    device = config.embed.device
    if device and device.startswith("cuda"):
        _check_cuda(device)

    named = config.embed.encoder  # None: Winnow's default, an open_clip model
    if methods != "auto" and "zero_shot" in methods and named and not named.startswith("open_clip:"):
        raise ConfigError(f"detector 'zero_shot' needs an encoder with a text tower (open_clip:...), not {named!r}")

    # Only now the encoder, and with it torch: every mistake above is reported in a second.
    from winnow.embeddings import (
        DEFAULT_ENCODER,
        DEFAULT_TEXT_ENCODER,
        encoder_modality,
        get_encoder,
    )

    modality = spec.source.modality  # text tables get a text encoder by default, and only a text encoder
    encoder_name = named or (DEFAULT_TEXT_ENCODER if modality == "text" else DEFAULT_ENCODER)
    if encoder_modality(encoder_name) != modality:
        raise ConfigError(f"encoder {encoder_name!r} embeds {encoder_modality(encoder_name)}s, but the samples of "
                          f"{spec.name!r} are {modality}s; e.g. --encoder "
                          f"{DEFAULT_TEXT_ENCODER if modality == 'text' else 'efficientnet-lite0'}")
    encoder = get_encoder(encoder_name, device=device) if load_encoder else None
    if encoder is not None and methods != "auto" and "zero_shot" in methods and not encoder.has_text:
        raise ConfigError(f"detector 'zero_shot' needs a text tower, and {encoder_name!r} has none")
    shards = config.embed.shards or (2 if config.run.runner == "dask" else 1)
    # The index follows the embedding device's kind unless set (a CPU run stays on the CPU).
    knn_device = config.knn.device or (None if device is None else "cpu" if device == "cpu" else "cuda")
    config = dataclasses.replace(
        config,
        embed=dataclasses.replace(config.embed, encoder=encoder_name, store=str(store), shards=shards),
        knn=dataclasses.replace(config.knn, device=knn_device),
        run=dataclasses.replace(config.run, out=str(out)),
    )
    return RunPlan(target=text, config=config, spec=spec, samples=samples, holdouts=holdouts, out=out, store=store,
                   ground_truth=ground_truth, encoder=encoder)


def run_clean(target: str | os.PathLike, settings: Settings = None, *, plan: RunPlan | None = None) -> dict[str, str]:
    """Clean one dataset with the runner the settings name (run.runner); returns the output paths.

    "direct" (the default) runs the stages in this process with no Prefect at all: nothing
    is logged to a Prefect server and no database is shared with other runs. "prefect" runs
    the clean_dataset flow (its runs show in the server PREFECT_API_URL names, or a temporary
    one); "dask" runs that flow on prefect-dask's DaskTaskRunner (see flows/clean.py).
    `plan`: `validate_run(target, settings)` when the caller already has it.
    """
    plan = plan or validate_run(target, settings)
    if plan.config.run.runner == "direct":
        return execute(plan, direct_stages())
    from winnow.flows.clean import run_flow

    return run_flow(os.fspath(target), check_settings(settings, where="settings"), runner=plan.config.run.runner,
                    dask_address=plan.config.run.dask_address, shards=plan.config.embed.shards)


def execute(plan: RunPlan, stages: Stages) -> dict[str, str]:
    """The stages of one run into a new version under OUT/runs/ (or the killed run it resumes)."""
    # The stages import the image readers (and torch): not needed for validation.
    from winnow.pipeline.report import write_report
    from winnow.pipeline.review.projection import write_map
    from winnow.pipeline.review.store import reviews_dir
    from winnow.pipeline.stages import read_json, wide_k_for

    started = time.perf_counter()
    config = plan.config
    with locked(plan.out, wait=config.run.wait):
        previous = latest_run(plan.out)
        run = RunLayout(start_run(plan.out))
        work = run.work
        work.folder.mkdir(parents=True, exist_ok=True)
        LOG.info("run %s: %d samples of %r", run.name, plan.samples.num_rows, plan.spec.name)
        samples = stages.load_samples(plan.target, work, **config.run.target_options(), table=plan.samples)
        embed = _embed(stages, plan, samples, work)
        knn = stages.build_knn(embed, work, knn=config.knn, seed=config.run.seed, progress=config.run.progress,
                               wide_k=wide_k_for(config.detect, plan.samples.num_rows))
        holdouts = []
        for i, (target, table) in enumerate(plan.holdouts):
            folder = work.holdout(i)
            folder.folder.mkdir(parents=True, exist_ok=True)
            holdouts.append(_embed(stages, plan, stages.load_samples(target, folder, table=table), folder))
        curated = stages.curate_samples(samples, embed, knn, work, encoder_name=plan.encoder_name,
                                        policy=config.policy, detect=config.detect, seed=config.run.seed,
                                        holdouts=tuple(holdouts), encoder=plan.encoder,
                                        reviews=str(reviews_dir(plan.out)))
        run_info = {
            "run_id": run.name,
            "catalog": plan.spec.name,
            "encoder": plan.encoder_name,
            "embedding": read_json(embed.info),
            "knn": read_json(knn.info),
            "k": config.knn.k,
            "seconds": round(time.perf_counter() - started, 2),
            "config": config.to_dict(),
        }
        outputs = stages.write_manifests(
            samples, embed, curated, run, run_info=run_info,
            previous=RunLayout(previous) if previous else None,
            ground_truth=str(plan.ground_truth) if plan.ground_truth else None,
        )
        write_map(run.folder, seed=config.run.seed)
        write_report(run.folder)
        publish_run(plan.out, run.folder)
        prune_old_work(plan.out, keep=2)
    LOG.info("run %s published in %.1f s", run.name, time.perf_counter() - started)
    return {
        "run": str(run.folder),
        "manifest": str(outputs.manifest),
        "clean": str(outputs.clean),
        "summary": str(outputs.summary),
        "diff": str(outputs.diff),
        "latest": str(plan.out / LATEST),
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


def _embed(stages: Stages, plan: RunPlan, samples: SamplesOutput, work: WorkLayout) -> EmbedOutput:
    """Embed one listed catalog into `work`, in shards."""
    embed = plan.config.embed
    shards = stages.embed_shards(samples, plan.encoder_name, str(plan.store), work, n_shards=embed.shards,
                                 batch_size=embed.batch_size, device=embed.device,
                                 progress=plan.config.run.progress and embed.shards == 1, encoder=plan.encoder)
    return stages.merge_embeddings(samples, shards, plan.encoder_name, str(plan.store), work)


def _check_cuda(device: str) -> None:
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(f"--device {device!r}, but no CUDA device is available here (use cpu)")
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise ConfigError(f"--device {device!r}, but there are only {torch.cuda.device_count()} CUDA device(s)")
