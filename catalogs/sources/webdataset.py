"""`kind = "webdataset"`: WebDataset tar shards, read streaming (a shard is never unpacked).

    [source]
    kind = "webdataset"
    shards = "shards/{000..099}.tar"  # a brace pattern, glob, folder of .tar files, one .tar, or a URL
    label_key = "cls"                 # optional: the member holding the label: an extension ("cls",
                                      # "txt", "label.txt") or a JSON field ("json:label"); default: cls
    image_key = "jpg"                 # optional: the image member's extension; default: the first image one

A sample is the group of members sharing a key (the member name up to its first dot in the
last path component, as WebDataset groups them): `000123.jpg`, `000123.cls`, `000123.json`.
Listing streams each shard once, reading the label members and noting where each image's
bytes lie; reading then fetches those bytes by offset (a ranged read on object storage).
sample_id from `<shard name>/<key>`. A member cut short (a truncated shard) or a sample with
no image member is a row with a reason (`unreadable`, `missing`), never a crash.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from winnow.catalogs.errors import EmptyDataset, InvalidCatalog, InvalidManifest, MissingColumn
from winnow.catalogs.keys import reject_unknown, resolve_path, typed
from winnow.catalogs.sources.base import Listing, Source, make_sample_id
from winnow.catalogs.sources.storage import (
    filesystem,
    fingerprint_files,
    is_url,
    list_files,
    local_folder,
    open_file,
    relative_name,
)
from winnow.reading import MAX_FILE_BYTES, SampleRead

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff", "ppm", "pgm")  # in order of preference
_STREAM_BLOCK = 8 * 1024 * 1024  # listing reads a shard front to back in blocks this large


def split_member(name: str) -> tuple[str, str]:
    """(key, extension) of a tar member, as WebDataset splits them: `a/b/000123.seg.png` ->
    ('a/b/000123', 'seg.png')."""
    folder, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower() if dot else ""


def parse_label_key(text: str, where: str) -> tuple[str, str | None]:
    """("cls", None) for an extension, ("json", "label") for `json:label`."""
    ext, _, field = text.partition(":")
    if not ext or (":" in text and not field):
        raise InvalidCatalog(f"{where}: label_key must be an extension like 'cls' or a JSON field like "
                             f"'json:label', got {text!r}")
    return ext.lower().lstrip("."), field or None


@dataclass(frozen=True, kw_only=True)
class WebDatasetSource(Source):
    kind = "webdataset"
    description = "WebDataset .tar shards (brace patterns, s3:// ...), read streaming; label from .cls/.txt/.json"

    shards: str  # brace pattern, glob, folder, one .tar, or a URL of any of these
    label_key: str = "cls"  # an extension ("cls", "txt") or a JSON field ("json:label")
    image_key: str | None = None  # the image member's extension; None: the first of IMAGE_KEYS present

    @classmethod
    def from_table(cls, table: dict[str, Any], *, base_dir: Path, where: str) -> WebDatasetSource:
        reject_unknown(table, {"shards", "label_key", "image_key"}, where)
        text = typed(table, "shards", str, where, required=True)
        label_key = typed(table, "label_key", str, where) or "cls"
        parse_label_key(label_key, where)
        return cls(shards=text if is_url(text) else str(resolve_path(text, base_dir)), label_key=label_key,
                   image_key=typed(table, "image_key", str, where))

    @classmethod
    def from_target(cls, target: str, *, image_column: str | None = None, label_column: str | None = None,
                    path_column: str | None = None) -> WebDatasetSource | None:
        """`.tar` shards given as the target (one file, a brace pattern or glob, a folder of .tar files
        and nothing else). `label_column` names the label member (`cls`, `json:label`)."""
        if path_column is not None:
            return None
        if is_url(target):
            bare = target.split("?", 1)[0]
            if not (bare.endswith(".tar") or _folder_of_tars(target)):
                return None
        else:
            path = Path(target.split("{", 1)[0]).expanduser() if "{" in target else Path(target).expanduser()
            if "{" in target or any(c in target for c in "*?["):
                if not target.endswith(".tar"):
                    return None
                target = str(Path(target).expanduser().absolute())
            elif path.is_file() and path.suffix == ".tar":
                target = str(path.resolve())
            elif path.is_dir() and _folder_of_tars(str(path)):
                target = str(path.resolve())
            else:
                return None
        label_key = label_column or "cls"
        parse_label_key(label_key, f"target {target!r}")
        return cls(shards=target, label_key=label_key, image_key=image_column)

    def name(self) -> str:
        """A folder's name; a pattern's folder; a single shard's stem."""
        parts = [p for p in self.shards.rstrip("/").split("/") if p]
        if not parts:
            return "shards"
        if "{" in parts[-1] or any(c in parts[-1] for c in "*?["):
            return parts[-2] if len(parts) > 1 else "shards"
        return parts[-1].removesuffix(".tar")

    def files(self) -> list[str]:
        return list_files(self.shards, suffixes=(".tar",), what="WebDataset shards")

    def list_samples(self) -> Listing:
        ext, field = parse_label_key(self.label_key, f"webdataset {self.shards!r}")
        paths, ids, locators, labels, refused = [], [], [], [], []
        for url in self.files():
            shard = relative_name(url, self.shards)
            for key, sample in _scan_shard(url, label_ext=ext).items():
                image_ext = self.image_key or next((k for k in IMAGE_KEYS if k in sample["images"]), None)
                label = _label_of(sample["labels"].get(ext), field)
                where = f"webdataset shard {url!r} sample {key!r}"
                if label is None:
                    raise MissingColumn(f"{where} has no label: no {self.label_key!r} "
                                        f"{'field' if field else 'member'} (found members: "
                                        f"{sorted(sample['members'])}); name another with label_key / --label-column")
                found = sample["images"].get(image_ext) if image_ext else None
                paths.append(f"{shard}/{key}.{image_ext or 'missing'}")
                ids.append(make_sample_id(f"{shard}/{key}"))
                labels.append(label)
                if found is None:
                    locators.append(f"{url}#0:0")
                    refused.append("missing")
                else:
                    offset, size, complete = found
                    locators.append(f"{url}#{offset}:{size}")
                    refused.append(None if complete else "unreadable")
        if not paths:
            raise EmptyDataset(f"WebDataset shards {self.shards!r} hold no samples")
        return Listing.from_rows(paths=paths, locators=locators, labels=labels, refused=refused,
                                 sample_ids=ids)

    def reader(self) -> TarMemberReader:
        return TarMemberReader()

    def fingerprint(self, listed: pa.Table) -> str:
        from winnow.catalogs import schemas as S

        return fingerprint_files(sorted({loc.rpartition("#")[0] for loc in listed.column(S.LOCATOR).to_pylist()}))

    def local_path(self) -> Path | None:
        if is_url(self.shards):
            return None
        return local_folder(self.shards)


def _folder_of_tars(folder: str) -> bool:
    fs, path = filesystem(folder)
    try:
        names = [p.rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)]
    except (OSError, ValueError):
        return False
    visible = [n for n in names if not n.startswith((".", "_"))]
    return bool(visible) and all(n.endswith(".tar") for n in visible)


def _label_of(data: bytes | None, field: str | None) -> str | None:
    if data is None:
        return None
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    if field is None:
        return text or None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    for part in field.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return None if value is None or value == "" else str(value)


def _scan_shard(url: str, *, label_ext: str) -> dict[str, dict[str, Any]]:
    """{key: {"images": {ext: (offset, size, complete)}, "labels": {ext: bytes}, "members": [...]}},
    streaming the shard once (members in tar order)."""
    samples: dict[str, dict[str, Any]] = {}
    fs, path = filesystem(url)
    try:
        total = fs.size(path)
    except Exception as exc:
        raise InvalidManifest(f"WebDataset shard {url!r} cannot be opened: {exc}") from exc
    last_image: tuple[str, str] | None = None
    try:
        # Streamed front to back in large blocks (one request per block on object storage, not one
        # per member); on local disk this costs less CPU than seeking from header to header.
        with open_file(url, block_size=_STREAM_BLOCK) as fh, tarfile.open(fileobj=fh, mode="r|") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, ext = split_member(member.name)
                sample = samples.setdefault(key, {"images": {}, "labels": {}, "members": []})
                sample["members"].append(ext)
                if ext in IMAGE_KEYS or ext.rpartition(".")[2] in IMAGE_KEYS:
                    end = member.offset_data + member.size
                    sample["images"][ext] = (member.offset_data, member.size, end <= total)
                    last_image = (key, ext)
                elif ext == label_ext or ext.endswith("." + label_ext):
                    got = tar.extractfile(member)
                    sample["labels"][label_ext] = got.read(1 << 20) if got else None
    except (tarfile.ReadError, EOFError, OSError) as exc:
        if not samples:
            raise InvalidManifest(f"WebDataset shard {url!r} is not a readable tar file: {exc}") from exc
        # Cut short: the members listed so far stay; the last image, if it ran past the end, is unreadable.
        if last_image is not None:
            key, ext = last_image
            offset, size, _ = samples[key]["images"][ext]
            samples[key]["images"][ext] = (offset, size, offset + size <= total)
    return samples


@dataclass(frozen=True)
class TarMemberReader:
    """Reads `<shard url>#<offset>:<size>` locators: the member's bytes, by a seek and a read
    (a ranged request on object storage). A member cut short is `unreadable`, a shard gone `missing`."""

    def read_many(self, locators: Sequence[str]) -> list[SampleRead]:
        reads: list[SampleRead | None] = [None] * len(locators)
        by_shard: dict[str, list[tuple[int, int, int]]] = {}
        for i, loc in enumerate(locators):
            url, _, span = loc.rpartition("#")
            offset, _, size = span.partition(":")
            if not url or not offset.isdigit() or not size.isdigit():
                reads[i] = SampleRead.failed("missing")
                continue
            by_shard.setdefault(url, []).append((i, int(offset), int(size)))
        for url, wanted in by_shard.items():
            ordered = sorted(wanted, key=lambda w: w[1])
            for (i, _, size), data in zip(ordered, _read_spans(url, [(o, n) for _, o, n in ordered]), strict=True):
                if data is _GONE:
                    reads[i] = SampleRead.failed("missing")
                elif size > MAX_FILE_BYTES:
                    reads[i] = SampleRead.failed("too_large")
                elif data is None or len(data) != size:
                    reads[i] = SampleRead.failed("unreadable")  # cut short, or an I/O error
                else:
                    reads[i] = SampleRead.from_bytes(data)
        return reads  # type: ignore[return-value]


_GONE = object()


def _read_spans(url: str, spans: list[tuple[int, int]]) -> list:
    """The bytes at each (offset, size), in offset order: by seeks (ranged requests); from a
    server without range requests, by one forward stream. _GONE for every span when the shard
    cannot be opened, None for a span that failed."""
    try:
        fh = open_file(url, block_size=1 << 20)
    except Exception:
        return [_GONE] * len(spans)
    out: list = []
    with fh:
        for offset, size in spans:
            if size > MAX_FILE_BYTES:
                out.append(b"")
                continue
            try:
                fh.seek(offset)
                out.append(fh.read(size))
            except ValueError as exc:  # fsspec's HTTP file: "doesn't appear to support range requests"
                if "range" not in str(exc).lower() or out:
                    out.append(None)
                    continue
                return _stream_spans(url, spans)
            except Exception:
                out.append(None)
    return out


def _stream_spans(url: str, spans: list[tuple[int, int]]) -> list:
    out: list = []
    try:
        with open_file(url, block_size=0) as fh:
            position = 0
            for offset, size in spans:
                while position < offset:  # skip forward, a block at a time
                    got = fh.read(min(offset - position, 1 << 20))
                    if not got:
                        break
                    position += len(got)
                data = fh.read(size) if position == offset and size <= MAX_FILE_BYTES else b""
                position += len(data)
                out.append(data)
    except Exception:
        out.extend([None] * (len(spans) - len(out)))
    return out


__all__ = ["IMAGE_KEYS", "TarMemberReader", "WebDatasetSource", "parse_label_key", "split_member"]
