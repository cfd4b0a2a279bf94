"""Reading the keys of a catalog's TOML tables: one place for types, unknown keys and paths.

Shared by the catalog parser (`spec.py`) and every sample source's `from_table`, so every
source reports a bad key the same way: a named error that quotes the value.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from winnow.catalogs.errors import InvalidCatalog


def cache_dir() -> Path:
    """The folder where bundled datasets are materialised and models cached."""
    return Path(os.environ.get("WINNOW_CACHE", Path.home() / ".cache" / "winnow")).expanduser()


def reject_unknown(table: dict[str, Any], allowed: set[str], where: str) -> None:
    """InvalidCatalog naming every key of `table` outside `allowed`."""
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise InvalidCatalog(f"{where}: unknown key(s) {unknown!r}; allowed: {sorted(allowed)}")


def typed(table: dict[str, Any], key: str, kind: type, where: str, *, required: bool = False) -> Any:
    """`table[key]` if it is a `kind` (None when absent and not required), else InvalidCatalog."""
    if key not in table:
        if required:
            raise InvalidCatalog(f"{where}: required key {key!r} is missing")
        return None
    value = table[key]
    # bool is an int subclass in Python; keep the check strict both ways.
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise InvalidCatalog(f"{where}: {key!r} must be {kind.__name__}, got {value!r}")
    return value


def resolve_path(text: str, base_dir: Path) -> Path:
    """A path from a catalog: `{cache}` expanded, `~` expanded, relative to `base_dir` (the TOML's folder)."""
    path = Path(text.replace("{cache}", str(cache_dir()))).expanduser()
    return path if path.is_absolute() else (base_dir / path)
