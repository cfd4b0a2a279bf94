"""`winnow.clean`: from a dataset to its cleaned manifest in one call, in this process.

The same stages as `winnow run` and the Prefect flow (pipeline/run.py's `execute` with the
direct runner), with no Prefect import and no server. The result holds the manifest and the
clean set as polars DataFrames, the summary and the kNN graph; without an `out` folder the
run lives in a temporary folder (`.write(dir)` keeps its files) and embeddings are cached in
`$WINNOW_CACHE/store`, so cleaning the same data again embeds nothing.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from winnow.catalogs import CatalogSpec, cache_dir
from winnow.catalogs import schemas as S
from winnow.curation import KnnGraph
from winnow.pipeline.config import (
    Config,
    ConfigError,
    check_settings,
    merge_settings,
    read_settings,
    settings_from_kwargs,
)
from winnow.pipeline.files import load_knn_graph
from winnow.pipeline.layout import RunLayout
from winnow.pipeline.run import direct_stages, execute, validate_run

LOG = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class CleanResult:
    """One cleaned dataset, in memory (and on disk under `run_dir`)."""

    manifest: pl.DataFrame  # one row per input sample: decision, reasons, final label, weight, scores
    clean: pl.DataFrame  # the kept rows: path, final label, weight (what a training job reads)
    summary: dict  # counts per decision / reason / class, cut-offs, timings, the resolved config
    graph: KnnGraph  # the kNN graph over the embedded samples (node i = embedding row i)
    rows: np.ndarray  # (M,) int64: the manifest row of each graph node
    run_dir: Path  # the run's folder; temporary (gone with this object) unless `out` was given
    config: Config  # the resolved config the run used
    _tmp: Any = field(default=None, repr=False)  # the TemporaryDirectory that holds run_dir, if any

    def write(self, dest: str | os.PathLike) -> Path:
        """Copy the run's outputs (manifest, clean set, diff, summary, report) into folder `dest`."""
        dest = Path(dest).expanduser()
        dest.mkdir(parents=True, exist_ok=True)
        for path in RunLayout(self.run_dir).published():
            if path.is_dir():
                shutil.copytree(path, dest / path.name, dirs_exist_ok=True)
            elif path.exists():
                shutil.copy2(path, dest / path.name)
        return dest


def clean(source: str | os.PathLike | CatalogSpec | Any, *, encoder: str | None = None,
          config: Config | Mapping[str, Any] | str | os.PathLike | None = None, out: str | os.PathLike | None = None,
          **overrides: Any) -> CleanResult:
    """Clean one dataset: embed, build the kNN graph, detect problems, decide, in this process.

    source: an image folder (class_name/<images>), a catalog .toml, a .csv / .parquet table
    of paths and labels (or of texts: `text_column="text"`; any .jsonl), Parquet with image
    bytes, a save_to_disk folder, WebDataset shards (or an s3:// gs:// az:// https:// URL of
    these), a `datasets.Dataset`, a bundled catalog name ("digits"), or a CatalogSpec.
    encoder: the encoder name (`winnow encoders list`); None: the catalog's, else the default.
    config: a Config (its non-default fields), a settings dict {section: {key: value}}, or a
    TOML file of [embed] [knn] [detect] [policy] [run] tables; it overrides the catalog's
    tables. out: the output folder (versions under OUT/runs/, as `winnow run`); None: a
    temporary folder, with embeddings cached in $WINNOW_CACHE/store.
    overrides: Config fields by name (`k=5`, `keep=0.7`, `probe_folds=3`) or whole sections
    (`policy={"on_label_issue": "drop"}`); they win over `config`.

    Quiet: nothing is printed (the library logs through `logging`; progress bars only with
    `progress=True`). Raises the same named errors as `winnow run`, before any work starts.
    """
    if isinstance(config, (str, os.PathLike)):
        layer = read_settings(config)
    elif isinstance(config, Config) or config is None or isinstance(config, Mapping):
        layer = check_settings(config, where="config")
    else:
        raise ConfigError(f"config must be a Config, a dict of sections or a TOML file, got {config!r}")
    given = dict(overrides)
    if encoder is not None:
        given["embed"] = {**_section("embed", given.get("embed")), "encoder": encoder}
    if out is not None:
        given["run"] = {**_section("run", given.get("run")), "out": os.fspath(out)}
    settings = merge_settings(layer, settings_from_kwargs(given))
    tmp = tempfile.TemporaryDirectory(prefix="winnow-")
    defaults = {"run": {"out": str(Path(tmp.name) / "out")}, "embed": {"store": str(cache_dir() / "store")}}
    try:
        plan = validate_run(source, settings, defaults=defaults)
        if plan.config.run.runner != "direct":
            raise ConfigError(f"winnow.clean runs the stages in this process (runner 'direct'), got runner "
                              f"{plan.config.run.runner!r}; use winnow.run_clean or `winnow run` for the Prefect flow")
        paths = execute(plan, direct_stages())
    except BaseException:
        tmp.cleanup()
        raise
    if not Path(paths["run"]).is_relative_to(tmp.name):
        tmp.cleanup()
        tmp = None
    return load_result(paths["run"], config=plan.config, _tmp=tmp)


def load_result(run_dir: str | os.PathLike, *, config: Config | None = None, _tmp: Any = None) -> CleanResult:
    """The CleanResult of a finished run folder (OUT/runs/<run id>, or OUT/latest)."""
    run = RunLayout(Path(run_dir).resolve())
    outputs = run.outputs
    summary = json.loads(outputs.summary.read_text(encoding="utf-8"))
    embed = pl.read_parquet(run.work.embed.table, columns=[S.ROW])[S.ROW].to_numpy()
    rows = np.flatnonzero(embed >= 0).astype(np.int64)  # node i of the graph is the i-th embedded row
    if config is None:
        config = Config.from_settings(summary["config"], where=str(outputs.summary)) if "config" in summary else Config()
    return CleanResult(manifest=pl.read_parquet(outputs.manifest), clean=pl.read_parquet(outputs.clean),
                       summary=summary, graph=load_knn_graph(run.work.knn.graph), rows=rows, run_dir=run.folder,
                       config=config, _tmp=_tmp)


def _section(name: str, value: Any) -> dict[str, Any]:
    """A section keyword argument (a dict, the section's dataclass, or None) as a dict."""
    return check_settings({name: value}, where="keyword arguments").get(name, {}) if value is not None else {}
