"""What every source of local files shares: a root the reads are confined to, the file reader,
and a fingerprint from each file's size and modification time."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from winnow.catalogs import schemas as S
from winnow.catalogs.errors import UnreadableFolder
from winnow.catalogs.sources.base import Source
from winnow.reading import FileReader


@dataclass(frozen=True, kw_only=True)
class LocalFileSource(Source):
    """Samples are local files below `root` (locator = absolute path); not registered itself."""

    root: Path  # the dataset root: reads must stay inside it
    allow_outside_root: bool = False  # absolute / `..` paths and outward symlinks are refused unless set

    def reader(self) -> FileReader:
        # Checked on every opened descriptor: a file swapped for an outward link after listing is refused.
        return FileReader(confine_to=None if self.allow_outside_root else str(self.root.resolve()))

    def fingerprint(self, listed: pa.Table) -> str:
        # A file edited in place keeps its path: its size and mtime make the key change too,
        # so a resumed run never reuses the embedding of the old content.
        digest = hashlib.blake2b(digest_size=16)
        for path in listed.column(S.LOCATOR).to_pylist():
            try:
                st = os.stat(path)
                digest.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
            except (OSError, ValueError):
                digest.update(b"-")
        return digest.hexdigest()

    def local_path(self) -> Path:
        return self.root


def real_path(path: Path) -> Path:
    """Where a path really leads. Unlike Path.resolve() in 3.11, a symlink loop does not raise:
    the looping link stays inside the root and the reader reports it as unreadable."""
    return Path(os.path.realpath(path))


def is_within(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def unlistable(exc: OSError) -> None:
    """os.walk's onerror: a folder it cannot list would otherwise drop its samples unseen."""
    raise UnreadableFolder(f"cannot list folder {exc.filename!r} of the dataset: {exc.strerror}") from exc
