"""Catalog specs: what a dataset is, read from one TOML file and validated in one place.

A catalog file looks like::

    name = "pets"
    encoder = "open_clip:ViT-B-32/laion2b_s34b_b79k"   # optional
    classes = ["cat", "dog"]                           # optional; fixes the class order

    [source]
    kind = "image_folder"        # a registered sample source: `winnow.catalogs.list_sources()`
    root = "images"              # the rest of the table belongs to the source (catalogs/sources/<kind>.py)
    # builder = "digits"         # optional: a bundled builder that materialises the data if missing

    # Optional: run settings for this dataset, the tables of winnow.Config (pipeline/config.py),
    # checked there; a --config file and the command line override them key by key.
    [embed]                      # encoder, batch_size, device, store, shards
    [knn]                        # k and the index knobs
    [detect]                     # detectors and their cut-offs
    [policy]                     # what is done with each finding
    [run]                        # out, seed, holdout, ...

Relative paths are resolved against the TOML file's folder; `{cache}` expands to the
Winnow cache folder (``$WINNOW_CACHE`` or ``~/.cache/winnow``). This module parses what every
catalog shares and hands the [source] table to the source its `kind` names.

A .csv or .parquet table of paths and labels is a catalog by itself (`catalog_from_table`):
its paths are relative to the table's folder, its name is the file's stem.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from winnow.catalogs.errors import (
    CatalogNotFound,
    DuplicatePath,
    InvalidCatalog,
    InvalidManifest,
    MissingColumn,
    MissingRoot,
    UnknownSource,
    UnsupportedSource,
)
from winnow.catalogs.keys import cache_dir, reject_unknown, resolve_path, typed
from winnow.catalogs.sources import (
    ImageFolderSource,
    ManifestSource,
    Source,
    get_source,
    source_for_target,
)
from winnow.catalogs.sources.hf_datasets import HFDatasetSource
from winnow.catalogs.sources.storage import is_url
from winnow.catalogs.sources.text_table import TEXT_TABLE_SUFFIXES, TextTableSource
from winnow.catalogs.tables import TABLE_SUFFIXES, read_table, row_name, rows_name
from winnow.fields import read_toml

BUNDLED_DIR = Path(__file__).parent / "bundled"


@dataclass(frozen=True)
class CatalogSpec:
    name: str  # short name, shown in outputs
    source: Source  # where the samples are: one of the registered sources (catalogs/sources/)
    classes: tuple[str, ...] | None = None  # fixed class list and order; None: sorted labels found
    encoder: str | None = None  # encoder name (see `winnow encoders list`); None: Winnow's default
    ground_truth: Path | None = None  # optional Parquet of planted noise, for evaluation
    description: str = ""  # one line for `winnow catalogs list`
    # Its [embed] [knn] [detect] [policy] [run] tables, as written (checked by pipeline/config.py,
    # which catalogs/ does not import): a settings layer under the user's.
    config: dict[str, dict[str, Any]] = field(default_factory=dict)
    spec_path: Path | None = None  # the TOML file this came from (None for a plain folder)
    builder: str | None = None  # a bundled builder that materialises the data if missing ([source] builder)


CONFIG_TABLES = ("embed", "knn", "detect", "policy", "run")  # the sections of winnow.Config
_TOP_KEYS = {"name", "description", "encoder", "classes", "ground_truth", "source", *CONFIG_TABLES}
_COMMON_SOURCE_KEYS = ("kind", "builder")  # the rest of [source] belongs to the source its kind names


def list_catalogs() -> list[str]:
    """Names of the catalogs that ship with Winnow."""
    return sorted(p.stem for p in BUNDLED_DIR.glob("*.toml"))


def resolve_catalog(target: Any, *, path_column: str | None = None, label_column: str | None = None,
                    image_column: str | None = None, text_column: str | None = None,
                    id_column: str | None = None, unlabeled: bool = False) -> CatalogSpec:
    """A catalog from a TOML file, a .csv / .parquet / .jsonl table, a bundled catalog name, a plain
    class-folder tree, a target a registered source takes by itself (Parquet with image bytes,
    a saved Hugging Face dataset, WebDataset shards, their s3:// ... URLs: `source_for_target`),
    or a `datasets.Dataset` object. The column options name a table's or a byte source's columns;
    `text_column` makes a table one of texts (a .jsonl file is one, its texts in `text` by default).
    `unlabeled`: a folder target is read as one class, every image file below it (see
    ImageFolderSource.unlabeled); any other target is refused with it."""
    if not isinstance(target, (str, os.PathLike)):
        if hasattr(target, "save_to_disk"):  # a datasets.Dataset (a DatasetDict is refused there, naming its splits)
            source = HFDatasetSource.from_object(target, image_column=image_column, label_column=label_column)
            return CatalogSpec(name=getattr(getattr(target, "info", None), "dataset_name", None) or "dataset",
                               source=source)
        raise CatalogNotFound(f"a target is a path, a URL, a catalog name or a datasets.Dataset, got "
                              f"{type(target).__name__}")
    text = os.fspath(target)
    found = None if text_column else source_for_target(text, image_column=image_column, label_column=label_column,
                                                          path_column=path_column)
    if found is not None:
        if unlabeled:
            raise InvalidCatalog(f"unlabeled reads a folder of images as one class, but the target {text!r} is read "
                                 f"by the {found.kind} source")
        if id_column:
            raise InvalidCatalog(f"id_column={id_column!r} names a column of a table of paths or texts; {text!r} is "
                                 f"read by the {found.kind} source, which names samples itself (shard and key, row)")
        return CatalogSpec(name=found.name(), source=found)
    if is_url(text):
        raise UnsupportedSource(f"{text!r} is a URL that no source reads: Winnow reads Parquet with image bytes "
                                f"(.parquet), WebDataset shards (.tar) and saved Hugging Face datasets from URLs")
    path = Path(text).expanduser()
    is_text = path.suffix.lower() in TEXT_TABLE_SUFFIXES and (text_column is not None or path.suffix.lower() == ".jsonl")
    is_table = path.suffix.lower() in TABLE_SUFFIXES or is_text
    if image_column and (path.exists() or text in list_catalogs()):
        raise InvalidCatalog(f"image_column={image_column!r} names a column of image bytes, but the target {text!r} "
                             f"is not a table of image bytes")
    named = (("path_column", path_column), ("label_column", label_column), ("text_column", text_column),
             ("id_column", id_column))
    if any(v for _, v in named) and not is_table:
        given = [f"{k}={v!r}" for k, v in named if v]
        raise InvalidCatalog(f"{', '.join(given)} name(s) columns of a .csv / .parquet / .jsonl table, but the "
                             f"target {text!r} is not one (a catalog file names its columns in [source])")
    if is_text and path_column:
        raise InvalidCatalog(f"path_column={path_column!r} names a column of file paths, but the table {text!r} is "
                             f"read as texts (text_column={text_column!r}): give one of the two")
    if unlabeled and not path.is_dir():
        raise InvalidCatalog(f"unlabeled reads a folder of images as one class, but the target {text!r} is not a "
                             f"folder (a table or catalog has its labels)")
    if path.is_dir():
        return catalog_from_folder(path, unlabeled=unlabeled)
    if path.is_file():
        if is_text:
            source = TextTableSource.from_file(path, text_column=text_column, label_column=label_column,
                                               id_column=id_column)
            return CatalogSpec(name=path.stem, source=source)
        if is_table:
            return catalog_from_table(path, path_column=path_column, label_column=label_column, id_column=id_column)
        if path.suffix.lower() != ".toml":  # an image, a spreadsheet...: not worth a TOML parse error
            raise InvalidCatalog(f"{text!r} is a file Winnow does not read as a dataset: give a catalog (.toml), "
                                 f"a table ({', '.join(TABLE_SUFFIXES)}; .jsonl of texts), WebDataset shards (.tar) or a folder of class_name/<images>")
        return load_catalog(path)
    if text in list_catalogs():
        return load_catalog(BUNDLED_DIR / f"{text}.toml")
    raise CatalogNotFound(
        f"{text!r} is neither a catalog file, a table, a folder, nor a bundled catalog "
        f"(bundled: {', '.join(list_catalogs())})"
    )


def catalog_from_folder(root: str | os.PathLike, *, encoder: str | None = None, unlabeled: bool = False) -> CatalogSpec:
    """A catalog for a plain folder of `class_name/<images>` (PNG, JPEG, WebP, GIF, BMP, TIFF, AVIF);
    unlabeled: every image below it, one class named after it."""
    root = Path(root).expanduser().resolve()
    return CatalogSpec(name=root.name, source=ImageFolderSource(root=root, unlabeled=unlabeled), encoder=encoder)


def catalog_from_table(path: str | os.PathLike, *, path_column: str | None = None,
                       label_column: str | None = None, id_column: str | None = None) -> CatalogSpec:
    """A catalog for a .csv / .parquet table of sample paths (relative to its folder) and labels.

    The columns default to `path` and `label`. Without a `path` column, the one column whose
    values look like file paths is used; when several do, AmbiguousTable names them.
    """
    source = ManifestSource.from_file(Path(path).expanduser(), path_column=path_column, label_column=label_column,
                                      id_column=id_column)
    return CatalogSpec(name=source.manifest.stem, source=source, spec_path=None)


def read_ground_truth(path: str | os.PathLike):
    """A catalog's ground truth as a polars DataFrame: path (str), is_flipped (bool; null where
    only true_label is given) and true_label (str; null when absent).

    The file (.parquet or .csv) has `path` and `is_flipped`, `true_label`, or both; with only
    `true_label`, a sample is flipped when its given label differs (see `known_flips`).
    """
    import polars as pl

    path = Path(path)
    if not path.is_file():
        raise MissingRoot(f"ground truth {str(path)!r} does not exist")
    frame = read_table(path, what="ground truth")
    if "path" not in frame.columns or not {"is_flipped", "true_label"} & set(frame.columns):
        raise MissingColumn(f"ground truth {str(path)!r} needs a 'path' column and 'is_flipped' and/or "
                            f"'true_label'; its columns: {frame.columns}")
    flipped = pl.Series("is_flipped", [None] * frame.height, dtype=pl.Boolean)
    if "is_flipped" in frame.columns:
        flipped = _as_bool(frame["is_flipped"], path)
    true_label = (frame["true_label"].cast(pl.String) if "true_label" in frame.columns
                  else pl.Series("true_label", [None] * frame.height, dtype=pl.String))
    out = pl.DataFrame({"path": frame["path"].cast(pl.String), "is_flipped": flipped, "true_label": true_label})
    dupes = out.with_row_index("i").filter(pl.col("path").is_duplicated())
    if dupes.height:
        first = dupes.filter(pl.col("path") == dupes["path"][0])["i"].to_list()[:2]
        raise DuplicatePath(f"ground truth {str(path)!r}: path {dupes['path'][0]!r} appears at {rows_name(path, first)}")
    return out


def _as_bool(column, path: Path):
    import polars as pl

    if column.dtype == pl.Boolean:
        return column.alias("is_flipped")
    words = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
    out = []
    for i, v in enumerate(column.cast(pl.String).to_list()):
        if v is None:
            out.append(None)
        elif v.strip().lower() in words:
            out.append(words[v.strip().lower()])
        else:
            raise InvalidManifest(f"ground truth {str(path)!r} {row_name(path, i)}: is_flipped is {v!r}; "
                                  f"expected true/false or 1/0")
    return pl.Series("is_flipped", out, dtype=pl.Boolean)


def load_catalog(path: str | os.PathLike) -> CatalogSpec:
    """Parse and validate a catalog TOML file; every error quotes the offending value."""
    path, raw = read_toml(path, what="catalog file", error=InvalidCatalog, missing=CatalogNotFound)
    return parse_catalog(raw, base_dir=path.resolve().parent, spec_path=path.resolve())


def parse_catalog(raw: dict[str, Any], *, base_dir: Path, spec_path: Path | None = None) -> CatalogSpec:
    """Validate a catalog given as a dict (the parsed TOML)."""
    where = str(spec_path) if spec_path else "catalog"
    reject_unknown(raw, _TOP_KEYS, where)
    name = typed(raw, "name", str, where, required=True)
    if not name.strip():
        raise InvalidCatalog(f"{where}: 'name' must not be empty, got {name!r}")
    source_raw = raw.get("source")
    if not isinstance(source_raw, dict):
        raise InvalidCatalog(f"{where}: a [source] table is required, got {source_raw!r}")
    kind = typed(source_raw, "kind", str, where, required=True)
    builder = typed(source_raw, "builder", str, where)
    own = {k: v for k, v in source_raw.items() if k not in _COMMON_SOURCE_KEYS}
    try:
        source_class = get_source(kind)
    except UnknownSource as exc:
        raise UnknownSource(f"{where}: {exc}") from None
    source = source_class.from_table(own, base_dir=base_dir, where=f"{where} [source]")
    classes = raw.get("classes")
    if classes is not None:
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise InvalidCatalog(f"{where}: 'classes' must be a list of strings, got {classes!r}")
        blank = [c for c in classes if not c.strip()]
        if blank:
            raise InvalidCatalog(f"{where}: 'classes' holds blank name(s) {blank!r}")
        dupes = sorted({c for c in classes if classes.count(c) > 1})
        if dupes:
            raise InvalidCatalog(f"{where}: 'classes' repeats {dupes!r}")
        classes = tuple(classes)
    gt = typed(raw, "ground_truth", str, where)
    config = {}
    for table in CONFIG_TABLES:
        if table in raw:
            if not isinstance(raw[table], dict):
                raise InvalidCatalog(f"{where}: [{table}] must be a table, got {raw[table]!r}")
            config[table] = dict(raw[table])
    if "encoder" in raw and "encoder" in config.get("embed", {}):
        raise InvalidCatalog(f"{where}: the encoder is given twice, as encoder = {raw['encoder']!r} and in [embed] "
                             f"as {config['embed']['encoder']!r}; keep one")
    return CatalogSpec(
        name=name,
        source=source,
        classes=classes,
        encoder=typed(raw, "encoder", str, where),
        ground_truth=resolve_path(gt, base_dir) if gt else None,
        description=typed(raw, "description", str, where) or "",
        config=config,
        spec_path=spec_path,
        builder=builder,
    )


__all__ = ["BUNDLED_DIR", "TABLE_SUFFIXES", "CatalogSpec", "cache_dir", "catalog_from_folder", "catalog_from_table",
           "list_catalogs", "load_catalog", "parse_catalog", "read_ground_truth", "read_table", "resolve_catalog",
           "row_name", "rows_name"]
