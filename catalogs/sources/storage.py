"""Where the byte sources' files live: local paths and object storage URLs, through fsspec.

Every byte source (Parquet shards, saved Hugging Face datasets, WebDataset shards) names its
files as a local path or a URL (`s3://`, `gs://`, `az://`, `https://`, `file://`); this module
lists them (a folder, a glob, a brace pattern `shards/{000..099}.tar`), opens them for streaming
reads, and fingerprints them (size and ETag or modification time). Credentials come from the
usual environment of each storage's fsspec package (AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL,
GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_CONNECTION_STRING...); Winnow stores none.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from winnow.catalogs.errors import MissingRoot, UnsupportedSource

URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")
_BRACE = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)$")
_GLOB_CHARS = set("*?[")

# The package each protocol needs, for the install hint of a missing one.
_PROTOCOL_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs",
                      "abfss": "adlfs", "http": "aiohttp", "https": "aiohttp"}
_EXTRA_HINT = "pip install 'winnow-curate[s3]'"


def is_url(text: str) -> bool:
    """A `scheme://...` target (object storage, http), as opposed to a local path."""
    return bool(URL.match(text))


def local_folder(target: str) -> Path:
    """Where a local target's samples are listed from: a folder itself, a file itself, and for a
    glob or brace pattern the folder before its first pattern character ('shards/{000..009}.tar'
    -> shards). A run's output must not lie inside a folder that is listed."""
    head = re.split(r"[{*?\[]", target, maxsplit=1)[0]
    if head == target:  # no pattern: the folder or file named
        return Path(target)
    return Path(head) if head.endswith("/") else Path(head).parent


def filesystem(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path within it) for a local path or URL; a missing package is named."""
    try:
        import fsspec.core
    except ImportError as exc:  # fsspec is a dependency of Winnow: only a broken install lands here
        raise UnsupportedSource(f"reading {url!r} needs fsspec: {_EXTRA_HINT}") from exc
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as exc:
        protocol = url.split("://", 1)[0].lower()
        package = _PROTOCOL_PACKAGES.get(protocol, f"the fsspec package for {protocol}://")
        raise UnsupportedSource(f"reading {url!r} needs {package}: pip install {package} "
                                f"(for s3:// also {_EXTRA_HINT})") from exc
    except ValueError as exc:  # an unknown protocol
        raise UnsupportedSource(f"cannot read {url!r}: {exc}") from exc


def full_url(fs: Any, path: str, like: str) -> str:
    """The URL of `path` on `fs`, written the way the user wrote `like` (a local path stays a path)."""
    return fs.unstrip_protocol(path) if is_url(like) else path


def expand_braces(pattern: str) -> list[str]:
    """`shards/{000..002}.tar` -> shards/000.tar, shards/001.tar, shards/002.tar; `{a,b}` lists
    alternatives. Ranges keep the zero padding of their first bound. No braces: [pattern]."""
    parts: list[list[str]] = []
    last = 0
    for match in _BRACE.finditer(pattern):
        parts.append([pattern[last:match.start()]])
        body = match.group(1)
        ranged = _RANGE.match(body)
        if ranged:
            lo, hi = int(ranged.group(1)), int(ranged.group(2))
            width = len(ranged.group(1).lstrip("-"))
            step = 1 if hi >= lo else -1
            parts.append([f"{i:0{width}d}" for i in range(lo, hi + step, step)])
        else:
            parts.append(body.split(","))
        last = match.end()
    parts.append([pattern[last:]])
    return ["".join(p) for p in itertools.product(*parts)]


def list_files(target: str, *, suffixes: Sequence[str], what: str) -> list[str]:
    """The files a target names, sorted: a brace pattern (each must exist), a glob, a folder
    (every file below it with one of `suffixes`, hidden ones left out) or one file."""
    if _BRACE.search(target):
        names = expand_braces(target)
        fs, _ = filesystem(names[0])
        missing = [n for n in names if not fs.exists(filesystem(n)[1])]
        if missing:
            raise MissingRoot(f"{what} {target!r}: {len(missing)} of its {len(names)} files do not exist, "
                              f"e.g. {missing[0]!r}")
        return names
    fs, path = filesystem(target)
    if _GLOB_CHARS & set(path):
        found = sorted(fs.glob(path))
    elif fs.isdir(path):
        found = sorted(p for p in fs.find(path) if p.lower().endswith(tuple(suffixes)) and not _hidden(p, path))
    elif fs.exists(path):
        return [target]
    else:
        raise MissingRoot(f"{what} {target!r} does not exist")
    files = [full_url(fs, p, target) for p in found if not fs.isdir(p)]
    if not files:
        raise MissingRoot(f"{what} {target!r} holds no {'/'.join(suffixes)} files")
    return files


def _hidden(path: str, root: str) -> bool:
    rel = path[len(root.rstrip("/")) + 1:] if path.startswith(root.rstrip("/") + "/") else path
    return any(part.startswith((".", "_")) for part in rel.split("/"))


def open_file(url: str, *, block_size: int | None = None):
    """A binary file object for streaming reads (ranged requests on object storage)."""
    fs, path = filesystem(url)
    if block_size is None:
        return fs.open(path, "rb")
    return fs.open(path, "rb", block_size=block_size)


def relative_name(url: str, root: str) -> str:
    """`url` relative to `root` when that is its folder, else to the folder part of the pattern
    or file `root` (a shard's stable name in sample ids)."""
    if url.startswith(root.rstrip("/") + "/"):
        return url[len(root.rstrip("/")) + 1:]
    base = root.split("{", 1)[0]
    base = base if base.endswith("/") else base.rsplit("/", 1)[0] + "/"
    if url.startswith(base):
        return url[len(base):]
    return url.rsplit("/", 1)[-1]


def fingerprint_files(urls: Sequence[str]) -> str:
    """A digest of each file's size and ETag (object storage) or modification time (files)."""
    digest = hashlib.blake2b(digest_size=16)
    for url in urls:
        try:
            fs, path = filesystem(url)
            info = fs.info(path)
            tag = info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified") or ""
            digest.update(f"{url}:{info.get('size')}:{tag}\n".encode())
        except Exception:  # a file gone since listing: its reads will say so, row by row
            digest.update(f"{url}:-\n".encode())
    return digest.hexdigest()


__all__ = ["URL", "expand_braces", "filesystem", "fingerprint_files", "full_url", "is_url", "list_files",
           "open_file", "relative_name"]
