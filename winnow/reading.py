"""Reading samples: what a reader returns, the reader protocol, and the safe local-file reader.

This module sits on the floor below the layers: `winnow.catalogs` implements readers (one per
sample source) and `winnow.embeddings` consumes them, and neither may import the other. So the
contract between them lives here, with nothing heavier than the standard library:

- `SampleRead`: one sample's bytes, the blake2b-128 content hash of those bytes, or a reason
  code (`winnow.catalogs.schemas.UNUSABLE_REASON_CODES`) when the sample cannot be read;
- `SampleReader`: anything with `read_many(locators) -> list[SampleRead]`. A locator is an
  opaque string only its reader interprets (a file path, a shard and a row, a URL...);
- `FileReader`, `read_file`: local files, confined to a folder, regular files only, size-capped.

A reader never raises for one bad sample: the sample's row gets a reason code instead. A reader
is small and picklable (it holds settings, never open files), so another process -- a Dask
worker -- can rebuild it from the samples table (`winnow.catalogs.open_reader`).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

# Files above this many bytes are refused before being read into memory.
MAX_FILE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class SampleRead:
    data: bytes | None  # the sample's bytes; None when it could not be read
    content_hash: str | None  # blake2b-128 of the bytes, hex; None when unreadable
    reason: str | None  # reason code when the sample could not be read

    @classmethod
    def from_bytes(cls, data: bytes) -> SampleRead:
        """The read of bytes a reader already holds (a table cell, a tar member): hashed, size-capped."""
        if len(data) > MAX_FILE_BYTES:
            return cls(None, None, "too_large")
        return cls(data, hash_bytes(data), None)

    @classmethod
    def failed(cls, reason: str) -> SampleRead:
        """A sample that could not be read, and why (a reason code)."""
        return cls(None, None, reason)


@runtime_checkable
class SampleReader(Protocol):
    """Turns locators into bytes. One `SampleRead` per locator, in order; never raises for a
    per-sample problem (that is a reason code). Called from several threads at once."""

    def read_many(self, locators: Sequence[str]) -> list[SampleRead]: ...


def hash_bytes(data: bytes) -> str:
    """The content hash Winnow keys embeddings and duplicates on: blake2b-128, hex."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def read_one(reader: SampleReader, locator: str) -> SampleRead:
    """One sample through a reader (the report's thumbnails, a user looking at a row)."""
    [read] = reader.read_many([locator])
    return read


@dataclass(frozen=True)
class FileReader:
    """Locators are local file paths. `confine_to`: a resolved folder every file actually
    opened must lie in (else `outside_root`); None reads wherever the paths lead."""

    confine_to: str | None = None

    def read_many(self, locators: Sequence[str]) -> list[SampleRead]:
        return [read_file(path, confine_to=self.confine_to) for path in locators]


def read_file(path: str, *, confine_to: str | None = None) -> SampleRead:
    """Read a sample file's bytes and hash them; OS problems become reason codes.

    Only regular files are read: a FIFO or device named `x.png` would otherwise block
    the run forever or stream without end. The size is checked before any byte is read.
    confine_to: a resolved folder; the file actually opened must lie inside it, else the
    read is refused as `outside_root`. The check is on the open descriptor, so a file
    swapped for an outward symlink after listing is caught too.
    """
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused just below.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return SampleRead(None, None, "missing")
    except PermissionError:
        return SampleRead(None, None, "permission_denied")
    except (OSError, ValueError, TypeError):  # a link loop, an I/O error, a NUL byte, no path at all
        return SampleRead(None, None, "unreadable")
    try:
        if confine_to is not None and not _inside(_opened_path(fd, path), confine_to):
            return SampleRead(None, None, "outside_root")
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return SampleRead(None, None, "unreadable")
        if info.st_size > MAX_FILE_BYTES:
            return SampleRead(None, None, "too_large")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except PermissionError:
        return SampleRead(None, None, "permission_denied")
    except OSError as exc:
        return SampleRead(None, None, "missing" if exc.errno == errno.ENOENT else "unreadable")
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:  # grew after fstat
        return SampleRead(None, None, "too_large")
    return SampleRead(data, hash_bytes(data), None)


def _opened_path(fd: int, path: str) -> str:
    """The real path of the file behind `fd` (Linux /proc); elsewhere the resolved `path`."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return os.path.realpath(path)


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)
