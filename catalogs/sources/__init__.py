"""Sample sources: where a catalog's samples come from, one file per kind, one registry line each.

A catalog's `[source]` table names its kind (`kind = "image_folder"`); the registry below maps
the kind to its `Source` class (see `base.py`), which parses the rest of the table, lists the
samples as a table (sample_id, path, locator, abs_path, label, refused) and gives the reader that
turns locators into bytes. Everything after the listing -- embedding, stage keys, the report's
thumbnails, export -- goes through that reader, so a new kind of data needs nothing else.

How to add a source
-------------------
1. Write `catalogs/sources/<kind>.py`: a frozen dataclass subclassing `Source` whose fields are
   its settings (plain values and Paths: they are stored as JSON in the samples table so other
   processes can rebuild it), with

   - `kind = "<kind>"` and a one-line `description`;
   - `from_table(table, *, base_dir, where)`: its own [source] keys, checked with
     `winnow.catalogs.keys` (`reject_unknown`, `typed`, `resolve_path`) so a bad key raises
     InvalidCatalog quoting it;
   - `list_samples()`: a `Listing` (`Listing.from_rows(paths=..., locators=..., labels=...)`);
     a sample it cannot use is a row with a `refused` reason code, never a silent skip;
   - `reader()`: a small picklable object with `read_many(locators) -> list[SampleRead]`
     (`winnow.reading`); a sample it cannot read is `SampleRead.failed(reason)`, never an
     exception; `SampleRead.from_bytes(data)` hashes the bytes it has;
   - `fingerprint(listed)`: a digest that changes when a listed sample's content may have
     changed (sizes and mtimes of the files behind it, an object's ETag...).

2. Add one line to `SOURCES` below: `"<kind>": <Kind>Source,`.

3. Optionally, `from_target(target, *, image_column, label_column, path_column)`: the source for a
   bare target (`winnow run data.parquet`) when this kind takes it, else None; `source_for_target`
   asks the registered kinds in registry order.

Code outside Winnow registers its own source with `register_source(MySource)`, or, so that every
process finds it (Dask workers included), through the `winnow.sources` entry-point group of its
package: `<kind> = "my_package.my_module:MySource"`.
"""

from __future__ import annotations

import re
from importlib.metadata import entry_points

from winnow.catalogs.errors import UnknownSource, UnsupportedSource
from winnow.catalogs.sources.base import Listing, Source, make_sample_id
from winnow.catalogs.sources.hf_datasets import HFDatasetSource
from winnow.catalogs.sources.image_folder import ImageFolderSource
from winnow.catalogs.sources.manifest import ManifestSource
from winnow.catalogs.sources.parquet import ParquetImagesSource
from winnow.catalogs.sources.text_table import TextTableSource
from winnow.catalogs.sources.webdataset import WebDatasetSource

SOURCES: dict[str, type[Source]] = {
    "image_folder": ImageFolderSource,
    "manifest": ManifestSource,
    "text_table": TextTableSource,
    "hf_dataset": HFDatasetSource,
    "webdataset": WebDatasetSource,
    "parquet_images": ParquetImagesSource,
}
"""kind -> Source class: every kind a catalog's [source] table may name."""

ENTRY_POINT_GROUP = "winnow.sources"  # where installed packages register sources of their own
_KIND = re.compile(r"[a-z][a-z0-9_]*")


def list_sources() -> list[str]:
    """The kinds of sample source a catalog may name."""
    return sorted(SOURCES)


def get_source(kind: str) -> type[Source]:
    """The Source class registered for `kind` (here or through the `winnow.sources` entry points)."""
    if kind not in SOURCES:
        found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == kind]
        if found:
            register_source(found[0].load())
    if kind not in SOURCES:
        raise UnknownSource(f"source kind {kind!r} is not one of {list_sources()}")
    return SOURCES[kind]


def source_for_target(target: str, *, image_column: str | None = None, label_column: str | None = None,
                      path_column: str | None = None) -> Source | None:
    """The source of the first registered kind that takes `target` by itself (`Source.from_target`),
    or None: the target is then a catalog file, a table of paths, a class folder or a bundled name."""
    for cls in list(SOURCES.values()):
        try:
            found = cls.from_target(target, image_column=image_column, label_column=label_column,
                                    path_column=path_column)
        except Exception as exc:
            if not type(exc).__module__.startswith(_STORAGE_CLIENTS):
                raise
            # Object storage refused or could not be reached (no credentials, access denied, no
            # endpoint): the user's setup, said in one line, not a traceback from the client.
            raise UnsupportedSource(f"cannot read {target!r}: {exc} (credentials and endpoint come from the "
                                    f"environment, e.g. AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE, "
                                    f"and AWS_ENDPOINT_URL for a local S3 server)") from None
        if found is not None:
            return found
    return None


_STORAGE_CLIENTS = ("botocore", "aiobotocore", "s3fs", "gcsfs", "adlfs", "azure", "google", "aiohttp")


def register_source(cls: type[Source], *, replace: bool = False) -> type[Source]:
    """Add a Source class to the registry under its `kind`; returns it (usable as a decorator).

    Registering another class under a kind that is taken raises, unless `replace`.
    """
    if not (isinstance(cls, type) and issubclass(cls, Source)):
        raise TypeError(f"a sample source must subclass winnow.catalogs.sources.Source, got {cls!r}")
    kind = getattr(cls, "kind", None)
    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise ValueError(f"{cls.__name__}.kind must be a lower-case name like 'image_folder', got {kind!r}")
    if SOURCES.get(kind, cls) is not cls and not replace:
        raise ValueError(f"source kind {kind!r} is already registered to {SOURCES[kind].__name__}")
    SOURCES[kind] = cls
    return cls


__all__ = ["SOURCES", "HFDatasetSource", "ImageFolderSource", "Listing", "ManifestSource", "ParquetImagesSource",
           "Source", "TextTableSource", "UnknownSource", "WebDatasetSource", "get_source", "list_sources",
           "make_sample_id", "register_source", "source_for_target"]
