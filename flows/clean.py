"""The `clean_dataset` Prefect flow: the stages of pipeline/stages.py as Prefect tasks.

For deployments (`winnow serve`), schedules, a Prefect server's UI and the Dask runner. A
one-shot run does not need it: `pipeline.run.run_clean` runs the same stages directly.
"""

from __future__ import annotations

import logging
import os

# Quiet by default when used from Python too: Prefect's per-task INFO lines and its telemetry
# (which needs a network and only prints errors without one). Users can still ask for them.
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from typing import Any  # noqa: E402

from prefect import flow, task  # noqa: E402

from winnow.curation import MissingDependency  # noqa: E402
from winnow.pipeline import stages as tasks  # noqa: E402
from winnow.pipeline.run import Stages, execute, run_clean, validate_run  # noqa: E402

__all__ = ["clean_dataset", "run_clean", "run_flow"]

load_samples = task(retries=2, retry_delay_seconds=1)(tasks.load_samples)
embed_shard = task(tasks.embed_shard)
merge_embeddings = task(tasks.merge_embeddings)
build_knn = task(tasks.build_knn)
curate_samples = task(tasks.curate_samples)
write_manifests = task(retries=2, retry_delay_seconds=1)(tasks.write_manifests)


@flow(name="clean-dataset")
def clean_dataset(target: str, settings: dict[str, Any] | None = None) -> dict[str, str]:
    """Clean one dataset end to end into a new version under OUT/runs/; returns its output paths.

    target: a catalog file, table, bundled name or folder. settings: the user's settings layer,
    {section: {key: value}} (pipeline/config.py; `Config.settings()` gives one), over the
    catalog's own tables -- plain JSON, so a deployment's parameters show and edit in the UI.
    Validates everything first (each scheduled run re-reads the catalog). A run killed
    part-way leaves an incomplete version; the next run on the same OUT resumes it,
    skipping the stages that had finished.
    """
    return execute(validate_run(target, settings, load_encoder=False), _prefect_stages())


def _prefect_stages() -> Stages:
    # The task objects are looked up when the flow runs, so a patched module attribute is used.
    # Prefect tasks take paths and small values only: the listed table and the loaded encoder
    # stay behind (each task re-lists or loads its own, possibly on another worker).
    def load(target, work_dir, *, table=None, **kw):
        return load_samples(target, work_dir, **kw)

    def embed_shards(samples, encoder_name, store, work, *, n_shards, encoder=None, **kw):
        futures = [embed_shard.submit(samples, encoder_name, store, work, shard=i, n_shards=n_shards, **kw)
                   for i in range(n_shards)]
        return [f.result() for f in futures]

    def knn(embed, work, **kw):  # on the Dask runner's cluster when there is one
        return build_knn(embed, work, dask_address=_dask_scheduler(), **kw)

    def curate(*args, encoder=None, **kw):
        return curate_samples(*args, **kw)

    return Stages(load_samples=load, embed_shards=embed_shards, merge_embeddings=merge_embeddings,
                  build_knn=knn, curate_samples=curate, write_manifests=write_manifests)


def _dask_scheduler() -> str | None:
    """The scheduler address of the running flow's DaskTaskRunner (its LocalCluster or the
    --dask-address cluster); None under any other task runner."""
    from prefect.context import FlowRunContext

    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        return None
    context = FlowRunContext.get()
    runner = context.task_runner if context else None
    return runner.client.scheduler.address if isinstance(runner, DaskTaskRunner) else None


def run_flow(target: str, settings: dict[str, Any] | None = None, *, runner: str = "prefect",
             dask_address: str | None = None, shards: int = 2) -> dict[str, str]:
    """Run clean_dataset with the Prefect task runner named (the resolved run.runner).

    "prefect": Prefect's default runner in this process. "dask": prefect-dask's
    DaskTaskRunner on a new LocalCluster (one worker process per shard) or on the existing
    cluster at `dask_address`; embedding shards fan out across its workers and write
    into the shared store. (For GPU clusters, prefect-ray's RayTaskRunner plugs in the same way.)
    """
    if runner != "dask":
        return clean_dataset(target, settings)
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as exc:
        raise MissingDependency("--runner dask needs prefect-dask: pip install 'winnow-curate[dask]'") from exc
    # Dask's own INFO lines (scheduler, nannies, workers) are not for users, here or in the
    # worker processes (which read DASK_* from the environment they inherit).
    logging.getLogger("distributed").setLevel(logging.WARNING)
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    if dask_address:
        task_runner = DaskTaskRunner(address=dask_address)
    else:
        _share_prefect_api()
        task_runner = DaskTaskRunner(cluster_kwargs={"n_workers": max(1, shards), "threads_per_worker": 1,
                                                     "processes": True, "dashboard_address": None})
    return clean_dataset.with_options(task_runner=task_runner)(target, settings)


def _share_prefect_api() -> None:
    """Without a Prefect server, start this process's temporary one now and name it to the workers.

    Each LocalCluster worker is a new process: with no PREFECT_API_URL it would start a
    temporary server of its own, N servers on one database, and on a small machine they time
    out ("Timed out while attempting to connect to ephemeral Prefect API server").
    """
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the one this process's Prefect client would start
    server.start()
    os.environ["PREFECT_API_URL"] = server.api_url  # inherited by the worker processes
