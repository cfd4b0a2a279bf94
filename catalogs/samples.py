"""Turn a validated catalog into the samples table (one row per input sample)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path, PurePosixPath

import polars as pl
import pyarrow as pa

from winnow.catalogs import schemas as S
from winnow.catalogs.builders import ensure_built
from winnow.catalogs.errors import (
    DuplicatePath,
    EmptyDataset,
    MissingColumn,
    MissingRoot,
    TooFewClasses,
    UnknownLabel,
    UnreadableFolder,
    UnsafePath,
    UnsupportedSource,
)
from winnow.catalogs.spec import (
    _URL,
    IMAGE_EXTENSIONS,
    CatalogSpec,
    read_table,
    row_name,
    rows_name,
)


def make_sample_id(relative_path: str) -> str:
    """Stable id of a sample: it survives re-runs, moves of the root and row reordering."""
    return hashlib.blake2b(relative_path.encode("utf-8"), digest_size=8).hexdigest()


def list_samples(spec: CatalogSpec) -> pa.Table:
    """The samples table of a catalog, validated; raises a named CatalogError on bad input.

    Columns follow `catalogs.schemas.SAMPLES_SCHEMA`; the class list, in label-index
    order, is stored in the schema metadata under ``classes`` (see `classes_of`).
    """
    ensure_built(spec)
    if spec.source.kind == "image_folder":
        rows, skipped = _list_image_folder(spec)
    else:
        rows, skipped = _list_manifest(spec), {}
    table = _to_table(rows, spec)
    # Files the listing did not make rows of (hidden ones), counted so the summary can say so.
    return table.replace_schema_metadata({**table.schema.metadata, b"skipped_files": json.dumps(
        {key: skipped.get(key, 0) for key in SKIPPED_KINDS}).encode("utf-8")})


SKIPPED_KINDS = ("hidden", "outside_class_folders")
"""Why a file of an image folder is not a row: a hidden file or folder (.DS_Store, ._x, .git:
each counted once, never opened or walked), or a file beside the class folders (it has no label)."""


def skipped_files_of(table: pa.Table) -> dict[str, int]:
    """Counts of the files the listing left out, by kind (SKIPPED_KINDS); zeros for a manifest."""
    text = (table.schema.metadata or {}).get(b"skipped_files")
    return json.loads(text) if text else {key: 0 for key in SKIPPED_KINDS}


def confinement_of(table: pa.Table) -> str | None:
    """The folder every sample read must stay inside, or None when the catalog allows any."""
    value = (table.schema.metadata or {}).get(b"confine_to", b"").decode("utf-8")
    return value or None


def classes_of(table: pa.Table) -> list[str]:
    """The class names of a samples table, in label-index order."""
    meta = table.schema.metadata or {}
    if b"classes" not in meta:
        return []
    text = meta[b"classes"].decode("utf-8")
    # JSON, so a class name may hold any character; older tables joined names with \x1f.
    return json.loads(text) if text.startswith("[") else text.split("\x1f")


def _list_image_folder(spec: CatalogSpec) -> tuple[list[tuple[str, str, str, str | None]], dict[str, int]]:
    """Rows of every non-hidden file below a class folder, and counts of the files left out.

    A file whose extension is not an image format Winnow reads is a row refused as
    `unsupported_format` (never opened): no file in a class folder is silently dropped.
    """
    root = spec.source.root
    if not root.is_dir():
        raise MissingRoot(f"image folder {str(root)!r} does not exist or is not a folder")
    real_root = root.resolve()
    rows = []
    skipped = {"hidden": 0, "outside_class_folders": 0}
    # Sorted walk so the table's order does not depend on the file system.
    try:
        class_dirs = []
        for entry in sorted(root.iterdir()):
            if entry.name.startswith("."):
                skipped["hidden"] += 1
            elif entry.is_dir():
                class_dirs.append(entry)
            else:
                skipped["outside_class_folders"] += 1
    except OSError as exc:
        _unlistable(exc)
    for class_dir in class_dirs:
        # os.walk descends into its top folder even when that is a symlink, so a class
        # folder linked out of the root would expose every file below it.
        class_escapes = class_dir.is_symlink() and not _is_within(_real(class_dir), real_root)
        for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=False, onerror=_unlistable):
            skipped["hidden"] += sum(d.startswith(".") for d in dirnames)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for fname in sorted(filenames):
                if fname.startswith("."):  # .DS_Store, ._x (AppleDouble), editor swap files
                    skipped["hidden"] += 1
                    continue
                full = Path(dirpath) / fname
                rel = full.relative_to(root).as_posix()
                refused = None if fname.lower().endswith(IMAGE_EXTENSIONS) else "unsupported_format"
                if (class_escapes or full.is_symlink()) and not spec.source.allow_outside_root:
                    if not _is_within(_real(full), real_root):
                        refused = "outside_root"
                rows.append((rel, str(full.absolute()), class_dir.name, refused))
    if not any(r[3] != "unsupported_format" for r in rows):
        others = [r[0] for r in rows][:3]
        raise EmptyDataset(
            f"image folder {str(root)!r} has no images: expected class_name/<file> with an extension "
            f"in {{{','.join(IMAGE_EXTENSIONS)}}} below it"
            + (f"; found only other files, e.g. {others!r}" if others else "")
        )
    return rows, skipped


def _list_manifest(spec: CatalogSpec) -> list[tuple[str, str, str, str | None]]:
    src = spec.source
    path = src.manifest
    assert path is not None
    if not path.is_file():
        raise MissingRoot(f"manifest {str(path)!r} does not exist")
    frame = read_table(path)
    for col in (src.path_column, src.label_column):
        if col not in frame.columns:
            raise MissingColumn(f"manifest {str(path)!r} has no column {col!r}; its columns: {frame.columns}")
    if frame.height == 0:
        raise EmptyDataset(f"manifest {str(path)!r} has no rows")
    _check_path_column(path, src.path_column, frame[src.path_column].dtype)
    paths = frame[src.path_column].cast(pl.String).to_list()
    labels = frame[src.label_column].cast(pl.String).to_list()
    real_root = src.root.resolve()
    rows, seen = [], {}
    for i, (p, label) in enumerate(zip(paths, labels, strict=True)):
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
        rel = PurePosixPath(p.replace("\\", "/")).as_posix()
        if rel in seen:
            raise DuplicatePath(f"manifest {str(path)!r}: path {p!r} appears at {rows_name(path, [seen[rel], i])}")
        seen[rel] = i
        full = Path(rel) if Path(rel).is_absolute() else src.root / rel
        refused = None
        if not src.allow_outside_root:
            if Path(rel).is_absolute() or ".." in PurePosixPath(rel).parts:
                raise UnsafePath(
                    f"{where}: path {p!r} leaves the dataset root "
                    f"{str(src.root)!r}; set allow_outside_root = true in [source] to allow it"
                )
            # realpath follows links anywhere along the path, not only the last component:
            # `linked_dir/passwd` with linked_dir -> /etc is refused too.
            if not _is_within(_real(full), real_root):
                refused = "outside_root"
        rows.append((rel, str(full.absolute()), label, refused))
    return rows


def _check_path_column(path: Path, column: str, dtype: pl.DataType) -> None:
    """Paths are text; a column of images stored in the table is named, not cast to garbage."""
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
        f"manifest {str(path)!r}: column {column!r} holds {kind}; Winnow reads images from local files "
        f"only for now: give a column of file paths relative to the manifest's folder (path_column)"
    )


def _to_table(rows: list[tuple[str, str, str, str | None]], spec: CatalogSpec) -> pa.Table:
    found = sorted({r[2] for r in rows})
    if spec.classes is not None and len(spec.classes) < 2:
        raise TooFewClasses(f"label cleaning needs at least 2 classes; the class list is {list(spec.classes)!r}")
    if spec.classes is not None:
        allowed = set(spec.classes)
        for rel, _, label, _ in rows:
            if label not in allowed:
                raise UnknownLabel(f"sample {rel!r} has label {label!r}, which is not in the class list {list(spec.classes)}")
        empty = [c for c in spec.classes if c not in set(found)]
        if empty:
            raise TooFewClasses(f"class(es) {empty!r} of the class list have no samples")
        classes = list(spec.classes)
    else:
        classes = found
    if len(classes) < 2:
        raise TooFewClasses(f"label cleaning needs at least 2 classes; found only {classes!r}")
    index = {c: i for i, c in enumerate(classes)}
    ids = [make_sample_id(r[0]) for r in rows]
    if len(set(ids)) != len(ids):  # 64-bit collision: vanishingly rare, but never silent
        raise DuplicatePath("two sample paths hash to the same sample_id; rename one of them")
    table = pa.table(
        {
            S.SAMPLE_ID: ids,
            S.PATH: [r[0] for r in rows],
            S.ABS_PATH: [r[1] for r in rows],
            S.LABEL: [r[2] for r in rows],
            S.LABEL_INDEX: pa.array([index[r[2]] for r in rows], pa.int32()),
            "refused": pa.array([r[3] for r in rows], pa.string()),
        },
        schema=S.SAMPLES_SCHEMA,
    )
    # Where reads must stay: the resolved root, unless the catalog allows leaving it.
    confine = "" if spec.source.allow_outside_root else str(spec.source.root.resolve())
    return table.replace_schema_metadata({"classes": json.dumps(classes), "catalog": spec.name,
                                          "confine_to": confine})


def _unlistable(exc: OSError) -> None:
    # os.walk skips a folder it cannot list unless told otherwise: that would drop its samples unseen.
    raise UnreadableFolder(f"cannot list folder {exc.filename!r} of the dataset: {exc.strerror}") from exc


def _real(path: Path) -> Path:
    """Where a path really leads. Unlike Path.resolve() in 3.11, a symlink loop does not raise:
    the looping link stays inside the root and the reader reports it as unreadable."""
    return Path(os.path.realpath(path))


def _is_within(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False
