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

    [policy]                     # optional: overrides of the decision policy's fields

Relative paths are resolved against the TOML file's folder; `{cache}` expands to the
Winnow cache folder (``$WINNOW_CACHE`` or ``~/.cache/winnow``).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from catalogs.errors import CatalogNotFound, InvalidCatalog

BUNDLED_DIR = Path(__file__).parent / "bundled"
SOURCE_KINDS = ("image_folder", "manifest")
# File names (lower-cased) a class folder lists as images: the extensions Pillow registers for
# the formats embeddings.images decodes (PNG, JPEG, MPO, WebP, GIF, BMP, TIFF); tests/test_formats.py
# keeps the two in step. Any other non-hidden file in a class folder becomes a row with reason
# `unsupported_format`; which decoder reads an image is decided by its bytes, not its name.
IMAGE_EXTENSIONS = (".png", ".apng", ".jpg", ".jpeg", ".jpe", ".jfif", ".mpo", ".webp", ".gif", ".bmp",
                    ".tif", ".tiff")


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
    policy: dict[str, Any] = field(default_factory=dict)  # decision-policy overrides (validated by curation)
    spec_path: Path | None = None  # the TOML file this came from (None for a plain folder)


_TOP_KEYS = {"name", "description", "encoder", "classes", "ground_truth", "source", "policy"}
_SOURCE_KEYS = {"kind", "root", "path", "path_column", "label_column", "allow_outside_root", "builder"}


def cache_dir() -> Path:
    """The folder where bundled datasets are materialised and models cached."""
    return Path(os.environ.get("WINNOW_CACHE", Path.home() / ".cache" / "winnow")).expanduser()


def list_catalogs() -> list[str]:
    """Names of the catalogs that ship with Winnow."""
    return sorted(p.stem for p in BUNDLED_DIR.glob("*.toml"))


def resolve_catalog(target: str | os.PathLike) -> CatalogSpec:
    """A catalog from a TOML file, a bundled catalog name, or a plain class-folder tree."""
    text = os.fspath(target)
    path = Path(text).expanduser()
    if path.is_dir():
        return catalog_from_folder(path)
    if path.is_file():
        return load_catalog(path)
    if text in list_catalogs():
        return load_catalog(BUNDLED_DIR / f"{text}.toml")
    raise CatalogNotFound(
        f"{text!r} is neither a catalog file, a folder, nor a bundled catalog "
        f"(bundled: {', '.join(list_catalogs())})"
    )


def catalog_from_folder(root: str | os.PathLike, *, encoder: str | None = None) -> CatalogSpec:
    """A catalog for a plain folder of `class_name/<images>` (PNG, JPEG, WebP, GIF, BMP, TIFF)."""
    root = Path(root).expanduser().resolve()
    return CatalogSpec(name=root.name, source=SourceSpec(kind="image_folder", root=root), encoder=encoder)


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
    policy = raw.get("policy", {})
    if not isinstance(policy, dict):
        raise InvalidCatalog(f"{where}: [policy] must be a table, got {policy!r}")
    return CatalogSpec(
        name=name,
        source=source,
        classes=classes,
        encoder=_typed(raw, "encoder", str, where),
        ground_truth=_resolve(gt, base_dir) if gt else None,
        description=_typed(raw, "description", str, where) or "",
        policy=dict(policy),
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
