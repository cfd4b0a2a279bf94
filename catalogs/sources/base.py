"""The sample-source interface: what one kind of catalog `[source]` table provides.

A source is a frozen dataclass whose fields are its settings (plain values and Paths). It

- parses its own `[source]` keys (`from_table`), raising a named CatalogError quoting a bad value;
- lists its samples (`list_samples`): one row per input sample, never skipping one silently
  (a sample it cannot use is a row with a `refused` reason; what it leaves out on purpose,
  such as hidden files, is counted in `Listing.skipped`);
- gives a reader (`reader`) that turns the listed locators into bytes: a small picklable object
  (`winnow.reading.SampleReader`) that never raises for one bad sample;
- fingerprints what it listed (`fingerprint`), so a sample changed in place gives the run's
  stages a new key and nothing stale is reused.

The samples table carries the source's kind and settings in its schema metadata, so any
process can rebuild the source, and its reader, from the table alone
(`winnow.catalogs.open_reader`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa

from winnow.catalogs import schemas as S
from winnow.catalogs.errors import InvalidCatalog
from winnow.reading import SampleReader


def make_sample_id(key: str) -> str:
    """Stable id of a sample from its stable key (a path relative to the root, shard + member,
    a row id): it survives re-runs, moves of the root and row reordering."""
    return hashlib.blake2b(key.encode("utf-8"), digest_size=8).hexdigest()


@dataclass(frozen=True)
class Listing:
    """What a source lists: one row per input sample, and the inputs it left out on purpose."""

    table: pa.Table  # columns of schemas.LISTING_SCHEMA, in a stable order (sorted, or the input's)
    skipped: dict[str, int] = field(default_factory=dict)  # inputs that are not rows, counted by kind

    @classmethod
    def from_rows(cls, *, paths: Sequence[str], locators: Sequence[str], labels: Sequence[str],
                  refused: Sequence[str | None] | None = None, abs_paths: Sequence[str | None] | None = None,
                  sample_ids: Sequence[str] | None = None, skipped: dict[str, int] | None = None) -> Listing:
        """A listing from columns. sample_ids: None hashes each path (`make_sample_id`);
        abs_paths: the local file of each sample, None for samples that are not files."""
        n = len(paths)
        table = pa.table(
            {
                S.SAMPLE_ID: list(sample_ids) if sample_ids is not None else [make_sample_id(p) for p in paths],
                S.PATH: list(paths),
                S.LOCATOR: list(locators),
                S.ABS_PATH: pa.array(list(abs_paths) if abs_paths is not None else [None] * n, pa.string()),
                S.LABEL: list(labels),
                S.REFUSED: pa.array(list(refused) if refused is not None else [None] * n, pa.string()),
            },
            schema=S.LISTING_SCHEMA,
        )
        return cls(table=table, skipped=dict(skipped or {}))


class Source(ABC):
    """One kind of sample source. Subclasses are frozen dataclasses registered in `SOURCES`."""

    kind: ClassVar[str]  # the `kind = "..."` of a [source] table that selects this source
    description: ClassVar[str] = ""  # one line for `list_sources()` and the docs
    modality: ClassVar[str] = "image"  # what a sample's bytes are: "image", or "text" (a text encoder embeds them)

    @classmethod
    @abstractmethod
    def from_table(cls, table: dict[str, Any], *, base_dir: Path, where: str) -> Source:
        """The source from its [source] table (the parsed TOML, without `kind` and `builder`).

        base_dir: the folder relative paths are resolved against (the catalog file's);
        where: names the table in error messages. Unknown keys and wrong types raise
        InvalidCatalog quoting them (see `winnow.catalogs.keys`).
        """

    @classmethod
    def from_target(cls, target: str, *, image_column: str | None = None, label_column: str | None = None,
                    path_column: str | None = None) -> Source | None:
        """The source for a target given by itself (`winnow run TARGET`: a file, folder, pattern or
        URL) when this kind takes it, else None (the default: only catalogs name this kind).

        The column options are the user's `--image-column` / `--label-column` / `--path-column`;
        a source that takes the target checks them (a wrong name raises, quoting it).
        """
        return None

    def name(self) -> str:
        """A short name for a catalog made from this source alone (the file or folder's name)."""
        return self.kind

    @abstractmethod
    def list_samples(self) -> Listing:
        """Every input sample as a row; raises a named CatalogError when the source as a whole
        is unusable (missing, empty, malformed), never for one bad sample."""

    @abstractmethod
    def reader(self) -> SampleReader:
        """A reader of this source's locators: cheap to build, picklable."""

    @abstractmethod
    def fingerprint(self, listed: pa.Table) -> str:
        """A digest that changes when a listed sample's content may have changed (for files: size
        and mtime), over the rows of `listed` (its `locator` column). The listing itself is hashed
        by the caller; this adds what the listing cannot see."""

    def local_path(self) -> Path | None:
        """The local file or folder holding the data (its builder materialises the folder above
        it; a run's output must not lie inside it), or None when the data is not local."""
        return None

    # --- settings: how the samples table records the source, so another process rebuilds it ----

    def settings(self) -> dict[str, Any]:
        """The source's fields as JSON values (Paths as text, tuples as lists)."""
        return {f.name: _to_json(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> Source:
        """The source `settings()` describes. Fields typed as Path (or tuple) are restored as such."""
        values = {}
        for f in dataclasses.fields(cls):
            if f.name not in settings:
                continue
            value, hint = settings[f.name], str(f.type)
            if value is not None and "Path" in hint:
                value = Path(value)
            elif isinstance(value, list) and "tuple" in hint:
                value = tuple(value)
            values[f.name] = value
        return cls(**values)


def _to_json(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (tuple, list)):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise InvalidCatalog(f"a source setting must be a plain value or a Path, got {value!r}")
