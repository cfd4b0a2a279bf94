"""One run's configuration: `Config`, five frozen sections, and the one way to build it.

    Config
      embed   EmbedConfig     encoder, batch size, device, embedding store, shards (below)
      knn     KnnConfig       neighbours per sample and the index (curation/knn_graph.py)
      detect  DetectConfig    what counts as a finding: detectors, cut-offs (curation/curate.py)
      policy  DecisionPolicy  what is done with each finding (curation/policy.py)
      run     RunOptions      output folder, seed, holdouts, runner, table columns (below)

Settings come in layers, each a nested dict `{section: {key: value}}` -- the tables of a
TOML file -- merged in this order, a later layer winning key by key:

    defaults < the catalog's [embed] [knn] [detect] [policy] [run] tables
             < a --config file < command-line flags and --set section.key=value

Every value goes through one coercer (`winnow.fields`): types follow the dataclass
annotations, and a bad key or value is a ConfigError quoting it and naming where it came
from. The CLI's options map one-to-one onto these fields (flows/cli.py).

EmbedConfig lives here rather than in winnow.embeddings: importing that package loads torch,
and a run's options are checked before anything heavy loads.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from winnow.curation import DecisionPolicy, DetectConfig, InvalidArray, KnnConfig, policy_from_dict
from winnow.fields import dataclass_from_dict, field_names, parse_assignment, read_toml

RUNNERS = ("direct", "prefect", "dask")


class ConfigError(ValueError):
    """A run option is not usable as given (the message quotes it and says where it came from)."""


@dataclass(frozen=True)
class EmbedConfig:
    """How samples become embeddings."""

    encoder: str | None = None  # encoder name (`winnow encoders list`); None: the catalog's, else Winnow's default
    batch_size: int = 64  # samples per model forward pass
    device: str | None = None  # "cpu", "cuda", "cuda:1"; None: CUDA when present
    # Embedding store folder, shared between runs (an embedding is keyed by content and encoder).
    # None: OUT/store; for winnow.clean without an `out`, $WINNOW_CACHE/store.
    store: str | None = None
    shards: int | None = None  # embedding shards (each a Dask worker under runner="dask"); None: 1, or 2 with dask

    def __post_init__(self) -> None:
        _positive(self, "batch_size")
        if self.shards is not None:
            _positive(self, "shards")
        if self.device is not None and not re.fullmatch(r"cpu|cuda(:\d+)?", self.device):
            raise ConfigError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")


@dataclass(frozen=True)
class RunOptions:
    """Where a run writes, how it is seeded and orchestrated, and how a table target reads."""

    out: str | None = None  # output folder (versions under OUT/runs/); None: the CLI requires one, winnow.clean uses a temporary folder
    # The seed of every random choice: the IVF index's samples, the probe's folds and
    # initialisation, simifeat, and k-means (unless detect.kmeans_seed is set).
    seed: int = 0
    holdout: tuple[str, ...] = ()  # validation / test catalogs: training samples that duplicate them are `leak`
    path_column: str | None = None  # a table target's column of sample paths; None: `path`
    label_column: str | None = None  # a table target's column of labels; None: `label`
    text_column: str | None = None  # a table target's column of texts (a text dataset); None: a table of paths (.jsonl: `text`)
    id_column: str | None = None  # a table target's column of sample ids; None: a stable id from each row
    # A byte-table target's column of image bytes (Parquet, saved HF dataset; a WebDataset's image
    # extension); None: the one column of image bytes.
    image_column: str | None = None
    # A folder target read as one class: every image below it (duplicates, outliers, unusable
    # files; labels are not judged). See catalogs' ImageFolderSource.unlabeled.
    unlabeled: bool = False
    wait: bool = False  # queue behind another run on OUT instead of failing
    progress: bool = False  # progress bars on stderr (the CLI turns them on unless --quiet or --json)
    # "direct": the stages in this process, no Prefect; "prefect": the Prefect flow (its runs show
    # in the server PREFECT_API_URL names); "dask": the flow on prefect-dask's DaskTaskRunner
    runner: str = "direct"
    dask_address: str | None = None  # an existing Dask scheduler; None with runner="dask": a LocalCluster

    def target_options(self) -> dict[str, Any]:
        """How a target is read (a table's columns, a folder's `unlabeled`): `winnow.catalogs.resolve_catalog`'s keywords."""
        return {"path_column": self.path_column, "label_column": self.label_column,
                "image_column": self.image_column, "text_column": self.text_column, "id_column": self.id_column,
                "unlabeled": self.unlabeled}

    def __post_init__(self) -> None:
        if self.runner not in RUNNERS:
            raise ConfigError(f"runner must be one of {RUNNERS}, got {self.runner!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")


SECTIONS: dict[str, type] = {
    "embed": EmbedConfig,
    "knn": KnnConfig,
    "detect": DetectConfig,
    "policy": DecisionPolicy,
    "run": RunOptions,
}
"""The sections of Config, in order: name -> its frozen dataclass."""


@dataclass(frozen=True)
class Config:
    """Everything one run can be told, in five sections (see the module docstring)."""

    embed: EmbedConfig = field(default_factory=EmbedConfig)  # how samples become embeddings
    knn: KnnConfig = field(default_factory=KnnConfig)  # the kNN graph every detector reads
    detect: DetectConfig = field(default_factory=DetectConfig)  # what counts as a finding
    policy: DecisionPolicy = field(default_factory=DecisionPolicy)  # what is done with each finding
    run: RunOptions = field(default_factory=RunOptions)  # output, seed, holdouts, runner

    def __post_init__(self) -> None:
        for name, cls in SECTIONS.items():
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(f"Config.{name} must be a {cls.__name__}, got {getattr(self, name)!r}")

    @classmethod
    def from_settings(cls, *layers: Mapping[str, Any] | Config | None, where: str = "settings") -> Config:
        """The Config of settings layers merged in order (a later layer wins key by key).

        A layer is a nested dict {section: {key: value}} or a Config (its non-default fields).
        """
        merged = merge_settings(*[check_settings(layer, where=where) for layer in layers])
        values = {}
        for name, section in SECTIONS.items():
            values[name] = _section(section, merged.get(name, {}), where=where, name=name)
        return cls(**values)

    def settings(self) -> dict[str, dict[str, Any]]:
        """The fields that differ from their defaults, as a settings layer."""
        out: dict[str, dict[str, Any]] = {}
        for name, section in SECTIONS.items():
            default, value = section(), getattr(self, name)
            changed = {f: getattr(value, f) for f in field_names(section) if getattr(value, f) != getattr(default, f)}
            if changed:
                out[name] = changed
        return out

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Every field, by section: JSON-ready (tuples become lists), as summary.json records it."""
        return {name: {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(getattr(self, name)).items()}
                for name in SECTIONS}

    def with_settings(self, *layers: Mapping[str, Any] | None, where: str = "settings") -> Config:
        """This config with `layers` on top (unlike from_settings, its default-valued fields stay too)."""
        return Config.from_settings(self.to_dict(), *layers, where=where)


def check_settings(layer: Mapping[str, Any] | Config | None, *, where: str) -> dict[str, dict[str, Any]]:
    """A settings layer checked on its own (unknown sections and keys, bad values) and with its
    values coerced to their field types; ConfigError names `where` and quotes the value."""
    if layer is None:
        return {}
    if isinstance(layer, Config):
        return layer.settings()
    if not isinstance(layer, Mapping):
        raise ConfigError(f"{where}: settings must be a table of sections {list(SECTIONS)}, got {layer!r}")
    out = {}
    for name, values in layer.items():
        if name not in SECTIONS:
            raise ConfigError(f"{where}: unknown section {name!r}; sections: {list(SECTIONS)}")
        if dataclasses.is_dataclass(values) and isinstance(values, SECTIONS[name]):
            values = Config(**{name: values}).settings().get(name, {})
        checked = _section(SECTIONS[name], values, where=where, name=name)
        out[name] = {key: getattr(checked, key) for key in values}
    return out


def merge_settings(*layers: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Layers merged key by key, the later winning; sections stay separate."""
    out: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for name, values in layer.items():
            out.setdefault(name, {}).update(values)
    return out


def parse_set(items: list[str] | tuple[str, ...], *, option: str = "--set") -> dict[str, dict[str, Any]]:
    """`section.key=value` strings (values parse as TOML: numbers, booleans, arrays, else text)
    as a settings layer; each item is checked on its own, so an error quotes that item."""
    layers = []
    for item in items:
        key, value = parse_assignment(item, option=option, error=ConfigError)
        section, dot, name = key.partition(".")
        if not dot or not name:
            raise ConfigError(f"{option} expects SECTION.KEY=VALUE (sections: {list(SECTIONS)}), got {item!r}")
        layers.append(check_settings({section: {name: value}}, where=f"{option} {item!r}"))
    return merge_settings(*layers)


def read_settings(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """A settings file: TOML with [embed] [knn] [detect] [policy] [run] tables, checked."""
    path, raw = read_toml(path, what="--config", error=ConfigError)
    return check_settings(raw, where=str(path))


def settings_from_kwargs(values: Mapping[str, Any], *, where: str = "keyword arguments") -> dict[str, dict[str, Any]]:
    """Python keyword arguments as a settings layer: a section name takes a dict (or that
    section's dataclass); any other name is a field of exactly one section (`k` -> knn.k,
    `keep` -> policy.keep). A name two sections share (`device`) must go through its section."""
    owners: dict[str, list[str]] = {}
    for name, section in SECTIONS.items():
        for f in field_names(section):
            owners.setdefault(f, []).append(name)
    layer: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        if key in SECTIONS:
            layer.setdefault(key, {}).update(check_settings({key: value}, where=where).get(key, {}))
            continue
        found = owners.get(key, [])
        if len(found) != 1:
            why = (f"is a field of {found}: pass it as {found[0]}={{{key!r}: ...}}" if found else
                   f"is not a field of any section; sections: {list(SECTIONS)}")
            raise ConfigError(f"{where}: {key!r} {why}")
        layer.setdefault(found[0], {})[key] = value
    return check_settings(layer, where=where)


def _section(cls: type, values: Mapping[str, Any], *, where: str, name: str) -> Any:
    try:
        if cls is DecisionPolicy:  # the same coercer, plus the hint for keys that moved to [detect]
            return policy_from_dict(values)
        return dataclass_from_dict(cls, values, error=ConfigError, what=name)
    except (ConfigError, InvalidArray) as exc:
        raise ConfigError(f"{where}: {exc}" if where else str(exc)) from None


def _positive(obj: Any, name: str) -> None:
    value = getattr(obj, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def parse_methods(text: str) -> str | tuple[str, ...]:
    """"auto", or the detector names of a comma-separated list (each a known detector)."""
    try:
        return DetectConfig(methods=text).method_names()
    except InvalidArray as exc:
        raise ConfigError(str(exc)) from None


def make_settings(**values: Any) -> dict[str, dict[str, Any]]:
    """`settings_from_kwargs` as keywords: make_settings(out="o", encoder="pixels:16", k=5)."""
    return settings_from_kwargs(values)
