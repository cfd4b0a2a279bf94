"""Catalog specs: what a dataset is, read from one TOML file and validated in one place.

A catalog file looks like::

    name = "pets"
    encoder = "open_clip:ViT-B-32/laion2b_s34b_b79k"   # optional
    classes = ["cat", "dog"]                           # optional; fixes the class order

    [source]
    kind = "image_folder"        # or "manifest"
    root = "images"              # image_folder: class_name/<image files> under this folder
    # path = "labels.parquet"    # manifest: a .parquet or .csv file
    # path_column = "path"       # manifest: column of paths relative to the manifest's folder
    # label_column = "label"
    # allow_outside_root = false # allow absolute or `..` paths and symlinks leaving the root

    # Optional: run settings for this dataset, the tables of winnow.Config (pipeline/config.py),
    # checked there; a --config file and the command line override them key by key.
    [embed]                      # encoder, batch_size, device, store, shards
    [knn]                        # k and the index knobs
    [detect]                     # detectors and their cut-offs
    [policy]                     # what is done with each finding
    [run]                        # out, seed, holdout, ...

Relative paths are resolved against the TOML file's folder; `{cache}` expands to the
Winnow cache folder (``$WINNOW_CACHE`` or ``~/.cache/winnow``).

A .csv or .parquet table of paths and labels is a catalog by itself (`catalog_from_table`):
its paths are relative to the table's folder, its name is the file's stem.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from winnow.catalogs.errors import (
    AmbiguousTable,
    CatalogNotFound,
    DuplicatePath,
    InvalidCatalog,
    InvalidManifest,
    MissingColumn,
    MissingRoot,
)

BUNDLED_DIR = Path(__file__).parent / "bundled"
SOURCE_KINDS = ("image_folder", "manifest")
# File names (lower-cased) a class folder lists as images: the extensions Pillow registers for
# the formats embeddings.images decodes (PNG, JPEG, MPO, WebP, GIF, BMP, TIFF); tests/test_formats.py
# keeps the two in step. Any other non-hidden file in a class folder becomes a row with reason
# `unsupported_format`; which decoder reads an image is decided by its bytes, not its name.
IMAGE_EXTENSIONS = (".png", ".apng", ".jpg", ".jpeg", ".jpe", ".jfif", ".mpo", ".webp", ".gif", ".bmp",
                    ".tif", ".tiff")
TABLE_SUFFIXES = (".csv", ".parquet")  # a target with one of these is a table of samples


@dataclass(frozen=True)
class SourceSpec:
    kind: str  # "image_folder" or "manifest"
    root: Path  # image_folder: the class-folder tree; manifest: the folder paths are relative to
    manifest: Path | None = None  # manifest: the .parquet / .csv file
    path_column: str = "path"  # manifest: column holding sample paths
    label_column: str = "label"  # manifest: column holding labels
    allow_outside_root: bool = False  # absolute / `..` paths and outward symlinks are refused unless set
    builder: str | None = None  # name of a bundled builder that materialises the data if missing


@dataclass(frozen=True)
class CatalogSpec:
    name: str  # short name, shown in outputs
    source: SourceSpec  # where the samples are
    classes: tuple[str, ...] | None = None  # fixed class list and order; None: sorted labels found
    encoder: str | None = None  # encoder name (see `winnow encoders list`); None: Winnow's default
    ground_truth: Path | None = None  # optional Parquet of planted noise, for evaluation
    description: str = ""  # one line for `winnow catalogs list`
    # Its [embed] [knn] [detect] [policy] [run] tables, as written (checked by pipeline/config.py,
    # which catalogs/ does not import): a settings layer under the user's.
    config: dict[str, dict[str, Any]] = field(default_factory=dict)
    spec_path: Path | None = None  # the TOML file this came from (None for a plain folder)


CONFIG_TABLES = ("embed", "knn", "detect", "policy", "run")  # the sections of winnow.Config
_TOP_KEYS = {"name", "description", "encoder", "classes", "ground_truth", "source", *CONFIG_TABLES}
_SOURCE_KEYS = {"kind", "root", "path", "path_column", "label_column", "allow_outside_root", "builder"}


def cache_dir() -> Path:
    """The folder where bundled datasets are materialised and models cached."""
    return Path(os.environ.get("WINNOW_CACHE", Path.home() / ".cache" / "winnow")).expanduser()


def list_catalogs() -> list[str]:
    """Names of the catalogs that ship with Winnow."""
    return sorted(p.stem for p in BUNDLED_DIR.glob("*.toml"))


def resolve_catalog(target: str | os.PathLike, *, path_column: str | None = None,
                    label_column: str | None = None) -> CatalogSpec:
    """A catalog from a TOML file, a .csv / .parquet table, a bundled catalog name, or a
    plain class-folder tree. `path_column` / `label_column` name a table's columns."""
    text = os.fspath(target)
    path = Path(text).expanduser()
    is_table = path.suffix.lower() in TABLE_SUFFIXES
    if (path_column or label_column) and not is_table:
        given = [f"{k}={v!r}" for k, v in (("path_column", path_column), ("label_column", label_column)) if v]
        raise InvalidCatalog(f"{', '.join(given)} name(s) columns of a .csv / .parquet table, but the target "
                             f"{text!r} is not one (a catalog file names its columns in [source])")
    if path.is_dir():
        return catalog_from_folder(path)
    if path.is_file():
        if is_table:
            return catalog_from_table(path, path_column=path_column, label_column=label_column)
        return load_catalog(path)
    if text in list_catalogs():
        return load_catalog(BUNDLED_DIR / f"{text}.toml")
    raise CatalogNotFound(
        f"{text!r} is neither a catalog file, a table, a folder, nor a bundled catalog "
        f"(bundled: {', '.join(list_catalogs())})"
    )


def catalog_from_folder(root: str | os.PathLike, *, encoder: str | None = None) -> CatalogSpec:
    """A catalog for a plain folder of `class_name/<images>` (PNG, JPEG, WebP, GIF, BMP, TIFF)."""
    root = Path(root).expanduser().resolve()
    return CatalogSpec(name=root.name, source=SourceSpec(kind="image_folder", root=root), encoder=encoder)


def catalog_from_table(path: str | os.PathLike, *, path_column: str | None = None,
                       label_column: str | None = None) -> CatalogSpec:
    """A catalog for a .csv / .parquet table of sample paths (relative to its folder) and labels.

    The columns default to `path` and `label`. Without a `path` column, the one column whose
    values look like file paths is used; when several do, AmbiguousTable names them.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingRoot(f"table {str(path)!r} does not exist")
    head = read_table(path, n_rows=200, what="table")
    columns = head.columns
    if path_column is None:
        path_column = "path" if "path" in columns else _guess_path_column(path, head, label_column or "label")
    label_column = label_column or "label"
    for role, col in (("path", path_column), ("label", label_column)):
        if col not in columns:
            raise MissingColumn(f"table {str(path)!r} has no column {col!r} for the {role}s; its columns: "
                                f"{columns} (name another with {role}_column / --{role}-column)")
    path = path.resolve()
    return CatalogSpec(
        name=path.stem,
        source=SourceSpec(kind="manifest", root=path.parent, manifest=path, path_column=path_column,
                          label_column=label_column),
        spec_path=None,
    )


def read_table(path: Path, *, n_rows: int | None = None, what: str = "manifest"):
    """A .csv (every column as text: values stay as written) or .parquet file as a polars
    DataFrame; a file that cannot be read raises InvalidManifest quoting it."""
    import polars as pl

    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise MissingRoot(f"{what} {str(path)!r} must be a .parquet or .csv file, got suffix {suffix!r}")
    try:
        if suffix == ".parquet":
            return pl.read_parquet(path, n_rows=n_rows)
        return pl.read_csv(path, infer_schema_length=0, n_rows=n_rows)
    except Exception as exc:  # polars / arrow / OS errors vary by version: one named error for all
        raise InvalidManifest(f"{what} {str(path)!r} cannot be read as {suffix[1:]}: {exc}") from exc


def row_name(path: Path, i: int) -> str:
    """Where row `i` (0-based) of a table is, as a person finds it: a CSV's line (the header is
    line 1, so the first row is line 2), a Parquet file's 1-based row."""
    return f"line {i + 2}" if path.suffix.lower() == ".csv" else f"row {i + 1}"


def rows_name(path: Path, rows: list[int]) -> str:
    word = "lines" if path.suffix.lower() == ".csv" else "rows"
    return f"{word} " + " and ".join(row_name(path, i).split(" ")[1] for i in rows)


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")
_FILE_LIKE = re.compile(r"[/\\]|\.[A-Za-z0-9]{2,5}$")


def _guess_path_column(path: Path, head, label_column: str) -> str:
    import polars as pl

    candidates = []
    for name, dtype in head.schema.items():
        if name == label_column:
            continue
        if isinstance(dtype, (pl.Struct, pl.Binary)):  # images stored in the table: named when listed
            candidates.append(name)
            continue
        if dtype != pl.String:
            continue
        values = [v for v in head[name].to_list() if v]
        if values and sum(bool(_FILE_LIKE.search(v) or _URL.match(v)) for v in values) >= 0.9 * len(values):
            candidates.append(name)
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        raise AmbiguousTable(
            f"table {str(path)!r} has no 'path' column and several columns that could hold the sample "
            f"paths: {candidates}; name one with path_column (--path-column)"
        )
    raise MissingColumn(
        f"table {str(path)!r} has no 'path' column and no column of file paths; its columns: "
        f"{head.columns} (name one with path_column / --path-column)"
    )


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
    path = Path(path).expanduser()
    if not path.is_file():
        raise CatalogNotFound(f"catalog file {str(path)!r} does not exist")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidCatalog(f"{str(path)!r} is not valid TOML: {exc}") from exc
    return parse_catalog(raw, base_dir=path.resolve().parent, spec_path=path.resolve())


def parse_catalog(raw: dict[str, Any], *, base_dir: Path, spec_path: Path | None = None) -> CatalogSpec:
    """Validate a catalog given as a dict (the parsed TOML)."""
    where = str(spec_path) if spec_path else "catalog"
    _reject_unknown(raw, _TOP_KEYS, where)
    name = _typed(raw, "name", str, where, required=True)
    if not name.strip():
        raise InvalidCatalog(f"{where}: 'name' must not be empty, got {name!r}")
    source_raw = raw.get("source")
    if not isinstance(source_raw, dict):
        raise InvalidCatalog(f"{where}: a [source] table is required, got {source_raw!r}")
    _reject_unknown(source_raw, _SOURCE_KEYS, f"{where} [source]")
    kind = _typed(source_raw, "kind", str, where, required=True)
    if kind not in SOURCE_KINDS:
        raise InvalidCatalog(f"{where}: source kind {kind!r} is not one of {SOURCE_KINDS}")
    allow = _typed(source_raw, "allow_outside_root", bool, where) or False
    builder = _typed(source_raw, "builder", str, where)
    if kind == "image_folder":
        root = _resolve(_typed(source_raw, "root", str, where, required=True), base_dir)
        source = SourceSpec(kind=kind, root=root, allow_outside_root=allow, builder=builder)
    else:
        manifest = _resolve(_typed(source_raw, "path", str, where, required=True), base_dir)
        root_text = _typed(source_raw, "root", str, where)
        root = _resolve(root_text, base_dir) if root_text else manifest.parent
        source = SourceSpec(
            kind=kind,
            root=root,
            manifest=manifest,
            path_column=_typed(source_raw, "path_column", str, where) or "path",
            label_column=_typed(source_raw, "label_column", str, where) or "label",
            allow_outside_root=allow,
            builder=builder,
        )
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
    gt = _typed(raw, "ground_truth", str, where)
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
        encoder=_typed(raw, "encoder", str, where),
        ground_truth=_resolve(gt, base_dir) if gt else None,
        description=_typed(raw, "description", str, where) or "",
        config=config,
        spec_path=spec_path,
    )


def _reject_unknown(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise InvalidCatalog(f"{where}: unknown key(s) {unknown!r}; allowed: {sorted(allowed)}")


def _typed(table: dict[str, Any], key: str, kind: type, where: str, *, required: bool = False) -> Any:
    if key not in table:
        if required:
            raise InvalidCatalog(f"{where}: required key {key!r} is missing")
        return None
    value = table[key]
    # bool is an int subclass in Python; keep the check strict both ways.
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise InvalidCatalog(f"{where}: {key!r} must be {kind.__name__}, got {value!r}")
    return value


def _resolve(text: str, base_dir: Path) -> Path:
    path = Path(text.replace("{cache}", str(cache_dir()))).expanduser()
    return path if path.is_absolute() else (base_dir / path)
