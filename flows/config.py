"""Run configuration: the CLI maps its options one-to-one onto these fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RunConfig:
    target: str  # a catalog TOML file, a bundled catalog name, or a class-folder tree
    out: str  # output folder: manifests, summary, and (by default) the embedding store
    encoder: str | None = None  # encoder name; None: the catalog's, else Winnow's default (open_clip)
    store: str | None = None  # embedding store folder; None: OUT/store
    k: int = 10  # neighbours per sample in the kNN graph
    batch_size: int = 64  # images per model forward pass
    device: str | None = None  # "cpu", "cuda", "cuda:1"; None: CUDA when present
    methods: str = "auto"  # label-noise detectors, comma-separated, or "auto"
    seed: int = 0  # seeds the probe and every random choice
    policy: dict[str, Any] = field(default_factory=dict)  # decision-policy overrides (on top of the catalog's)
    wait_for_lock: bool = False  # queue behind another run on OUT instead of failing
    progress: bool = False  # progress bars on stderr (the CLI turns them on unless --quiet)
    runner: str = "local"  # "local" (this process) or "dask" (prefect-dask DaskTaskRunner)
    dask_address: str | None = None  # an existing Dask scheduler; None with runner="dask": a LocalCluster
    shards: int = 1  # embedding shards (run in parallel under the dask runner)
    holdout: tuple[str, ...] = ()  # validation / test catalogs: training samples that duplicate them are `leak`

    def __post_init__(self) -> None:
        if self.runner not in ("local", "dask"):
            raise ValueError(f"runner must be 'local' or 'dask', got {self.runner!r}")
        if self.shards < 1:
            raise ValueError(f"shards must be at least 1, got {self.shards!r}")
