"""Run configuration: the CLI maps its options one-to-one onto these fields."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

RUNNERS = ("direct", "prefect", "dask")


class ConfigError(ValueError):
    """A run option is not usable as given (the message quotes it)."""


@dataclass(frozen=True)
class RunConfig:
    target: str  # a catalog TOML file, a .csv / .parquet table, a bundled catalog name, or a class-folder tree
    out: str  # output folder: manifests, summary, and (by default) the embedding store
    encoder: str | None = None  # encoder name; None: the catalog's, else Winnow's default (open_clip)
    store: str | None = None  # embedding store folder; None: OUT/store
    k: int = 10  # neighbours per sample in the kNN graph
    batch_size: int = 64  # images per model forward pass
    device: str | None = None  # "cpu", "cuda", "cuda:1"; None: CUDA when present
    methods: str = "auto"  # label-noise detectors, comma-separated, or "auto"
    seed: int = 0  # seeds the probe, the IVF index, and k-means (unless the policy sets kmeans_seed)
    policy: dict[str, Any] = field(default_factory=dict)  # decision-policy overrides (on top of the catalog's)
    wait_for_lock: bool = False  # queue behind another run on OUT instead of failing
    progress: bool = False  # progress bars on stderr (the CLI turns them on unless --quiet)
    # "direct": the stages in this process, no Prefect; "prefect": the Prefect flow (its runs show
    # in the server PREFECT_API_URL names); "dask": the flow on prefect-dask's DaskTaskRunner
    runner: str = "direct"
    dask_address: str | None = None  # an existing Dask scheduler; None with runner="dask": a LocalCluster
    shards: int = 1  # embedding shards (run in parallel under the dask runner)
    holdout: tuple[str, ...] = ()  # validation / test catalogs: training samples that duplicate them are `leak`
    path_column: str | None = None  # a table target's column of sample paths; None: `path`
    label_column: str | None = None  # a table target's column of labels; None: `label`

    def __post_init__(self) -> None:
        if self.runner not in RUNNERS:
            raise ConfigError(f"runner must be one of {RUNNERS}, got {self.runner!r}")
        for name in ("k", "batch_size", "shards"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.device is not None and not re.fullmatch(r"cpu|cuda(:\d+)?", self.device):
            raise ConfigError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        parse_methods(self.methods)


def parse_methods(text: str) -> str | tuple[str, ...]:
    """"auto", or the detector names of a comma-separated list (checked by the flow's validation)."""
    if not isinstance(text, str):
        raise ConfigError(f"methods must be 'auto' or comma-separated detector names, got {text!r}")
    if text.strip() == "auto":
        return "auto"
    names = tuple(n.strip() for n in text.split(","))
    if not names or any(not n for n in names):
        raise ConfigError(f"methods must be 'auto' or comma-separated detector names, got {text!r}")
    return names
