"""`kind = "manifest"`: a .csv or .parquet table of sample file paths and labels.

    [source]
    kind = "manifest"
    path = "labels.parquet"       # the table, relative to the catalog file
    root = "."                    # optional: the folder paths are relative to (default: the table's)
    path_column = "path"
    label_column = "label"
    id_column = "id"              # optional: its values become the sample ids (default: a hash of the path)
    allow_outside_root = false    # allow absolute or `..` paths and symlinks leaving the root

A .csv / .parquet file given as the target is this source by itself (`ManifestSource.from_file`).
Rows are kept in the table's order; a bad row (empty path or label, a path escaping the root, a
URL, a duplicate) fails the catalog with its line or row number, before any work.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from winnow.catalogs.errors import (
    AmbiguousTable,
    DuplicatePath,
    EmptyDataset,
    MissingColumn,
    MissingRoot,
    UnsafePath,
    UnsupportedSource,
)
from winnow.catalogs.keys import reject_unknown, resolve_path, typed
from winnow.catalogs.sources.base import Listing
from winnow.catalogs.sources.local import LocalFileSource, is_within, real_path
from winnow.catalogs.tables import read_table, row_name, rows_name

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")
_FILE_LIKE = re.compile(r"[/\\]|\.[A-Za-z0-9]{2,5}$")


@dataclass(frozen=True, kw_only=True)
class ManifestSource(LocalFileSource):
    kind = "manifest"
    description = "a .csv / .parquet table of file paths (relative to its folder) and labels"

    manifest: Path  # the .parquet / .csv file
    path_column: str = "path"  # column holding sample paths
    label_column: str = "label"  # column holding labels
    id_column: str | None = None  # column whose values are the sample ids; None: a hash of each path

    @classmethod
    def from_table(cls, table: dict[str, Any], *, base_dir: Path, where: str) -> ManifestSource:
        reject_unknown(table, {"path", "root", "path_column", "label_column", "id_column", "allow_outside_root"}, where)
        manifest = resolve_path(typed(table, "path", str, where, required=True), base_dir)
        root_text = typed(table, "root", str, where)
        return cls(
            root=resolve_path(root_text, base_dir) if root_text else manifest.parent,
            manifest=manifest,
            path_column=typed(table, "path_column", str, where) or "path",
            label_column=typed(table, "label_column", str, where) or "label",
            id_column=typed(table, "id_column", str, where),
            allow_outside_root=typed(table, "allow_outside_root", bool, where) or False,
        )

    @classmethod
    def from_file(cls, path: Path, *, path_column: str | None = None,
                  label_column: str | None = None, id_column: str | None = None) -> ManifestSource:
        """The source for a table given as the target: paths relative to its folder.

        The columns default to `path` and `label`. Without a `path` column, the one column whose
        values look like file paths is used; when several do, AmbiguousTable names them.
        """
        if not path.is_file():
            raise MissingRoot(f"table {str(path)!r} does not exist")
        head = read_table(path, n_rows=200, what="table")
        columns = head.columns
        if path_column is None:
            path_column = "path" if "path" in columns else _guess_path_column(path, head, label_column or "label")
        label_column = label_column or "label"
        for role, col in (("path", path_column), ("label", label_column), ("id", id_column)):
            if col is not None and col not in columns:
                raise MissingColumn(f"table {str(path)!r} has no column {col!r} for the {role}s; its columns: "
                                    f"{columns} (name another with {role}_column / --{role}-column)")
        path = path.resolve()
        return cls(root=path.parent, manifest=path, path_column=path_column, label_column=label_column,
                   id_column=id_column)

    def list_samples(self) -> Listing:
        import polars as pl

        path = self.manifest
        if not path.is_file():
            raise MissingRoot(f"manifest {str(path)!r} does not exist")
        frame = read_table(path)
        for col in (self.path_column, self.label_column, self.id_column):
            if col is not None and col not in frame.columns:
                raise MissingColumn(f"manifest {str(path)!r} has no column {col!r}; its columns: {frame.columns}")
        if frame.height == 0:
            raise EmptyDataset(f"manifest {str(path)!r} has no rows")
        _check_path_column(path, self.path_column, frame[self.path_column].dtype)
        given = frame[self.path_column].cast(pl.String).to_list()
        labels = frame[self.label_column].cast(pl.String).to_list()
        real_root = self.root.resolve()
        paths, files, refusals, seen = [], [], [], {}
        for i, (p, label) in enumerate(zip(given, labels, strict=True)):
            where = f"manifest {str(path)!r} {row_name(path, i)}"
            if p is None or p == "":
                raise MissingColumn(f"{where}: empty path")
            if label is None or label == "":
                raise MissingColumn(f"{where} ({p!r}): empty label")
            if "\x00" in p:
                raise UnsafePath(f"{where}: path {p!r} contains a NUL byte")
            url = _URL.match(p)
            if url:
                # PurePosixPath would fold 's3://b/k' into the local path 's3:/b/k' and every read would fail.
                raise UnsupportedSource(
                    f"{where}: path {p!r} is a {url.group(0)} URL; Winnow reads local image files only for now "
                    f"(paths relative to the manifest's folder, or absolute with allow_outside_root = true): "
                    f"copy or mount the data locally"
                )
            rel = _inside_root(PurePosixPath(p.replace("\\", "/")).as_posix(), self.root, real_root)
            if rel in seen:
                raise DuplicatePath(f"manifest {str(path)!r}: path {p!r} appears at {rows_name(path, [seen[rel], i])}")
            seen[rel] = i
            full = Path(rel) if Path(rel).is_absolute() else self.root / rel
            refused = None
            if not self.allow_outside_root:
                if Path(rel).is_absolute() or ".." in PurePosixPath(rel).parts:
                    raise UnsafePath(
                        f"{where}: path {p!r} leaves the dataset root "
                        f"{str(self.root)!r}; set allow_outside_root = true in [source] to allow it"
                    )
                # realpath follows links anywhere along the path, not only the last component:
                # `linked_dir/passwd` with linked_dir -> /etc is refused too.
                if not is_within(real_path(full), real_root):
                    refused = "outside_root"
            paths.append(rel)
            files.append(str(full.absolute()))
            refusals.append(refused)
        ids = None
        if self.id_column is not None:
            ids = frame[self.id_column].cast(pl.String).to_list()
            for i, sid in enumerate(ids):
                if sid is None or sid == "":
                    raise MissingColumn(f"manifest {str(path)!r} {row_name(path, i)}: empty id in column "
                                        f"{self.id_column!r}")
        return Listing.from_rows(paths=paths, locators=files, abs_paths=files, labels=labels, refused=refusals,
                                 sample_ids=ids)

    def local_path(self) -> Path:
        return self.manifest


def _inside_root(rel: str, root: Path, real_root: Path) -> str:
    """An absolute path that names a file under the dataset root, as the path relative to it
    (the form every other row has); any other path unchanged. A manifest written with absolute
    paths (`find $PWD -name '*.jpg'`) then needs no allow_outside_root when it stays inside."""
    path = Path(rel)
    if not path.is_absolute() or ".." in PurePosixPath(rel).parts:
        return rel
    for base in (root.absolute(), real_root):
        if path.is_relative_to(base) and path != base:
            return path.relative_to(base).as_posix()
    # Through a linked folder: its real folder under the real root (the file itself may be a link).
    folder = Path(os.path.realpath(path.parent))
    if folder.is_relative_to(real_root):
        return (folder.relative_to(real_root) / path.name).as_posix()
    return rel


def _check_path_column(path: Path, column: str, dtype) -> None:
    """Paths are text; a column of images stored in the table is named, not cast to garbage."""
    import polars as pl

    if dtype in (pl.String, pl.Categorical) or dtype.is_integer():
        return
    if isinstance(dtype, pl.Struct):
        fields = [f.name for f in dtype.fields]
        kind = (f"structs {{{', '.join(fields)}}} (images stored in the table, as a Hugging Face `Image` "
                f"column is)")
    elif dtype == pl.Binary:
        kind = "raw bytes (images stored in the table)"
    else:
        kind = f"values of type {dtype}"
    raise UnsupportedSource(
        f"manifest {str(path)!r}: column {column!r} holds {kind}; a manifest lists local file paths "
        f"(path_column). For image bytes stored in the table use kind = \"parquet_images\" with "
        f"image_column = {column!r}, or give the .parquet file itself as the target"
    )


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
