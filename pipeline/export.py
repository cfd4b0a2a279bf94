"""Export a run's cleaned training set: a manifest file, or a class-folder tree of symlinks.

    parquet      one file, plain Arrow types: reads as-is in polars, pandas, duckdb and
                 Hugging Face `datasets`
    csv, jsonl   the same columns as text (read `label` as a string: "01" is a class name)
    imagefolder  DEST/<final label>/<file> symlinks to the images, for tools that read class
                 folders (torchvision ImageFolder, `datasets` imagefolder), with
                 DEST/metadata.csv beside them: file_name, sample_id, label, original_label,
                 weight, path, abs_path. A sample that is not a file of its own (its bytes live
                 in a table or an archive: no abs_path) is written out as a file, read through
                 its source's reader.
    parquet_images  one Parquet file of the clean columns plus `image`, a Hugging Face `Image`
                 struct {bytes, path} holding each sample's bytes (read through its source's
                 reader): `datasets` and Winnow's parquet_images source read it as it is
    webdataset   DEST/shard-NNNNNN.tar, 10,000 samples a shard: <key>.<png|jpg|...> (the bytes),
                 <key>.cls (the label, as text) and <key>.json (sample_id, label, original_label,
                 weight, path); key = the sample id. Read back by the webdataset source
    source       the source's own form: parquet_images for Parquet / Hugging Face sources,
                 webdataset for tar shards, imagefolder for files

Every format holds exactly the rows of clean.parquet: every kept or relabelled sample once,
with its final label and weight. Labels and file names are hostile input: they never choose
where a link is made; each becomes one safe, unique path component inside DEST.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from winnow import atomic
from winnow.catalogs import open_reader, source_of
from winnow.catalogs import schemas as S
from winnow.pipeline.layout import RunLayout
from winnow.pipeline.report import resolve_run
from winnow.reading import SampleReader

FORMATS: dict[str, str] = {
    "parquet": "one Parquet file (polars, pandas, duckdb, Hugging Face datasets)",
    "csv": "one CSV file with a header row",
    "jsonl": "one JSON object per line",
    "imagefolder": "DEST/<label>/<file> symlinks to the images plus DEST/metadata.csv",
    "parquet_images": "one Parquet file with the image bytes in an `image` column (HF Image struct)",
    "webdataset": "DEST/shard-NNNNNN.tar: <key>.<ext> + <key>.cls + <key>.json per sample",
    "source": "the source's own form: parquet_images, webdataset or imagefolder",
}
_SUFFIXES = {"parquet": (".parquet",), "csv": (".csv",), "jsonl": (".jsonl", ".ndjson"), "parquet_images": (".parquet",)}
# The export format that is a source kind's own form (`--format source`).
SOURCE_FORMS = {"parquet_images": "parquet_images", "hf_dataset": "parquet_images", "webdataset": "webdataset"}
SHARD_SAMPLES = 10_000  # samples per tar shard of a webdataset export
METADATA = "metadata.csv"  # the name `datasets`' imagefolder loader looks for
MARKER = ".winnow-export"  # marks a folder as a Winnow export, so a re-export may replace it
_MAX_NAME_BYTES = 200  # below every common filesystem's 255-byte limit, with room for a suffix


class ExportError(ValueError):
    """The export cannot be written as asked (unknown format, a destination in the way)."""


class UnknownFormat(ExportError):
    """The format is not one of FORMATS."""


class DestinationNotEmpty(ExportError):
    """The imagefolder destination holds files that are not an earlier Winnow export."""


def list_formats() -> list[str]:
    return list(FORMATS)


def export_clean(run_or_out_dir: str | os.PathLike, *, fmt: str, dest: str | os.PathLike) -> Path:
    """Write the run's cleaned training set as `fmt` at `dest`; returns the file or folder written.

    For parquet, csv and jsonl, `dest` is the file when it ends in the format's suffix
    (.parquet, .csv, .jsonl or .ndjson), else a folder that receives clean.<suffix>. For
    imagefolder, `dest` is the folder; an earlier export there is replaced, anything else
    there is refused. Writes are atomic: a reader sees the old export or the new one.
    """
    if fmt not in FORMATS:
        raise UnknownFormat(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    run = resolve_run(run_or_out_dir)
    table = _read_clean(run)
    dest = Path(dest).expanduser()
    reader = lambda: open_reader(RunLayout(run).outputs.clean)  # noqa: E731
    if fmt == "source":
        kind = source_of(RunLayout(run).outputs.clean).kind
        fmt = SOURCE_FORMS.get(kind, "imagefolder")
    if fmt == "webdataset":
        return _write_webdataset(table, dest, reader=reader())
    if fmt == "imagefolder":
        # The reader is opened only if a sample is not a file (a file is linked, never read).
        return _write_imagefolder(table, dest, reader=lambda: open_reader(RunLayout(run).outputs.clean))
    if dest.suffix.lower() not in _SUFFIXES[fmt]:
        dest = dest / f"clean{_SUFFIXES[fmt][0]}"
    if dest.is_dir():
        raise ExportError(f"{str(dest)!r} is a folder; name the {fmt} file to write")
    if fmt == "parquet":
        return atomic.write_parquet(table, dest)
    if fmt == "parquet_images":
        return _write_parquet_images(table, dest, reader=reader())
    frame = pl.from_arrow(table)
    with atomic.writing(dest) as tmp:
        if fmt == "csv":
            frame.write_csv(tmp)
        else:
            frame.write_ndjson(tmp)
    return dest


def _read_clean(run: Path) -> pa.Table:
    path = RunLayout(run).outputs.clean
    if not path.is_file():
        raise FileNotFoundError(f"{str(run)!r} has no {path.name}; re-run `winnow run` to write it")
    table = pq.read_table(path)
    if S.LOCATOR not in table.column_names and S.ABS_PATH in table.column_names:
        table = table.append_column(S.LOCATOR, table.column(S.ABS_PATH))  # runs before sources had locators
    missing = [f.name for f in S.CLEAN_SCHEMA if f.name not in table.column_names]
    if missing:
        raise ExportError(f"{str(path)!r} lacks the column(s) {', '.join(missing)}")
    # Plain string/float64 types and no polars metadata: every reader takes it as-is.
    return table.select(S.CLEAN_SCHEMA.names).cast(S.CLEAN_SCHEMA).replace_schema_metadata(None)


# --- imagefolder -------------------------------------------------------------------------------


def safe_name(name: str, *, keep_suffix: bool = False) -> str:
    """One path component made from untrusted text: no separators, no control characters,
    not "." or "..", not hidden, at most 200 UTF-8 bytes. Printable text is kept as is."""
    text = unicodedata.normalize("NFC", str(name))
    text = "".join("_" if ch in "/\\" or unicodedata.category(ch).startswith("C") else ch for ch in text)
    text = text.strip()
    stem, suffix = text, ""
    if keep_suffix:
        dot = text.rfind(".")
        if dot > 0 and 1 < len(text) - dot <= 10:
            stem, suffix = text[:dot], text[dot:]
    stem = stem.rstrip(". ")  # "x." and "x " are trouble on the filesystems people copy these to
    if stem.startswith("."):
        stem = "_" + stem[1:]  # hidden files are skipped by most folder loaders
    if not stem:
        stem = "_"
    while len((stem + suffix).encode("utf-8")) > _MAX_NAME_BYTES:
        stem = stem[:-1]
    return stem + suffix


def _unique(name: str, taken: set[str], tag: str) -> str:
    """`name`, or name with `tag` (then a counter) before its suffix, unused in `taken`
    (compared case-folded: the tree may be copied to a case-insensitive filesystem)."""
    stem, dot, suffix = name.rpartition(".") if "." in name[1:] else (name, "", "")
    candidates = [name, f"{stem}-{tag}{dot}{suffix}"]
    candidates += (f"{stem}-{tag}-{i}{dot}{suffix}" for i in range(2, 10_000))
    for candidate in candidates:
        if candidate.casefold() not in taken:
            taken.add(candidate.casefold())
            return candidate
    raise ExportError(f"cannot find a free name for {name!r}")  # pragma: no cover


def _write_imagefolder(table: pa.Table, dest: Path, *, reader: Callable[[], SampleReader]) -> Path:
    if dest.exists() and not dest.is_dir():
        raise DestinationNotEmpty(f"{str(dest)!r} exists and is not a folder")
    if dest.is_dir() and any(dest.iterdir()) and not (dest / MARKER).exists():
        raise DestinationNotEmpty(
            f"{str(dest)!r} is not empty and is not an earlier Winnow export; choose another --dest "
            f"or empty it"
        )
    with atomic.replace_folder(dest) as tmp:  # the old tree's links are unlinked, never followed
        _fill_imagefolder(table, tmp, reader)
    return dest


def _fill_imagefolder(table: pa.Table, root: Path, reader: Callable[[], SampleReader]) -> None:
    frame = pl.from_arrow(table)
    reserved = {METADATA.casefold(), MARKER.casefold()}
    folders: dict[str, str] = {}
    taken_folders = set(reserved)
    for label in sorted(set(frame[S.LABEL].to_list())):
        folders[label] = _unique(safe_name(label), taken_folders, "label")
    taken_files: dict[str, set[str]] = {f: set() for f in folders.values()}
    root_abs = os.path.abspath(root)
    file_names = []
    to_copy: list[tuple[str, str, str, str]] = []  # (sample id, path, locator, where): samples that are not files
    for sid, path, abs_path, locator, label in frame.select(S.SAMPLE_ID, S.PATH, S.ABS_PATH, S.LOCATOR,
                                                            S.LABEL).iter_rows():
        folder = folders[label]
        if not taken_files[folder]:
            (root / folder).mkdir()
        base = safe_name(path.replace("\\", "/").rsplit("/", 1)[-1], keep_suffix=True)
        name = _unique(base, taken_files[folder], safe_name(sid)[:16])
        link = os.path.join(root_abs, folder, name)
        if os.path.dirname(link) != os.path.join(root_abs, folder) or os.path.commonpath([root_abs, link]) != root_abs:
            raise ExportError(f"refusing to write {link!r} outside {root_abs!r}")  # pragma: no cover
        if abs_path is not None:
            os.symlink(os.path.abspath(abs_path), link)
        else:
            to_copy.append((sid, path, locator, link))
        file_names.append(f"{folder}/{name}")
    if to_copy:
        _copy_samples(to_copy, reader())
    metadata = pl.DataFrame({"file_name": pl.Series(file_names, dtype=pl.String)}).hstack(
        frame.select(S.SAMPLE_ID, S.LABEL, "original_label", S.WEIGHT, S.PATH, S.ABS_PATH))
    metadata.write_csv(root / METADATA)
    (root / MARKER).write_text("written by `winnow export --format imagefolder`; safe to replace\n")


def _copy_samples(samples: list[tuple[str, str, str, str]], reader: SampleReader, *, block: int = 256) -> None:
    """Write each sample's bytes, read through its source's reader, to its file in the export."""
    for start in range(0, len(samples), block):
        part = samples[start : start + block]
        reads = reader.read_many([locator for _, _, locator, _ in part])
        for (sid, path, _, where), read in zip(part, reads, strict=True):
            if read.reason is not None:  # kept by the run, unreadable now: the export would lack it
                raise ExportError(f"sample {sid!r} ({path!r}) cannot be read any more ({read.reason}); "
                                  f"re-run `winnow run` and export again")
            with open(where, "xb") as fh:  # "x": never through a link or over a file already there
                fh.write(read.data)


# --- the byte forms: Parquet with image bytes, WebDataset shards --------------------------------------

_MAGIC = ((b"\x89PNG", "png"), (b"\xff\xd8", "jpg"), (b"RIFF", "webp"), (b"GIF8", "gif"), (b"BM", "bmp"),
          (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"))


def _extension(data: bytes, path: str) -> str:
    """The image member's extension: from the bytes' signature, else the path's suffix, else `img`."""
    for magic, ext in _MAGIC:
        if data.startswith(magic):
            return ext
    suffix = path.rsplit("/", 1)[-1].rpartition(".")[2].lower()
    return suffix if suffix.isalnum() and 0 < len(suffix) <= 5 else "img"


def _read_blocks(table: pa.Table, reader: SampleReader, *, block: int = 256):
    """(row slice, [bytes]) per block of the clean table, read through the source's reader."""
    for start in range(0, table.num_rows, block):
        part = table.slice(start, block)
        reads = reader.read_many(part.column(S.LOCATOR).to_pylist())
        for sid, path, read in zip(part.column(S.SAMPLE_ID).to_pylist(), part.column(S.PATH).to_pylist(), reads,
                                   strict=True):
            if read.reason is not None:
                raise ExportError(f"sample {sid!r} ({path!r}) cannot be read any more ({read.reason}); "
                                  f"re-run `winnow run` and export again")
        yield part, [read.data for read in reads]


def _write_parquet_images(table: pa.Table, dest: Path, *, reader: SampleReader) -> Path:
    import json

    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    features = {"image": {"_type": "Image"}, **{f.name: {"dtype": "string" if f.type == pa.string() else "float64", "_type": "Value"}
                                                for f in table.schema if f.type in (pa.string(), pa.float64())}}
    schema = pa.schema([pa.field("image", image_type), *table.schema]).with_metadata(
        {"huggingface": json.dumps({"info": {"features": features}})})
    with atomic.writing(dest) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for part, blobs in _read_blocks(table, reader):
            names = [p.replace("\\", "/").rsplit("/", 1)[-1] for p in part.column(S.PATH).to_pylist()]
            image = pa.array([{"bytes": b, "path": n} for b, n in zip(blobs, names, strict=True)], image_type)
            writer.write_table(pa.Table.from_arrays([image, *part.columns], schema=schema), row_group_size=256)
    return dest


def _write_webdataset(table: pa.Table, dest: Path, *, reader: SampleReader) -> Path:
    import io
    import json
    import tarfile

    if dest.exists() and not dest.is_dir():
        raise DestinationNotEmpty(f"{str(dest)!r} exists and is not a folder")
    if dest.is_dir() and any(dest.iterdir()) and not (dest / MARKER).exists():
        raise DestinationNotEmpty(f"{str(dest)!r} is not empty and is not an earlier Winnow export; choose "
                                  f"another --dest or empty it")

    def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), 0, 0o644
        tar.addfile(info, io.BytesIO(data))

    with atomic.replace_folder(dest) as tmp:
        tar, written = None, 0
        try:
            for part, blobs in _read_blocks(table, reader):
                for row, data in zip(part.to_pylist(), blobs, strict=True):
                    if written % SHARD_SAMPLES == 0:
                        if tar is not None:
                            tar.close()
                        tar = tarfile.open(tmp / f"shard-{written // SHARD_SAMPLES:06d}.tar", "w")
                    key = safe_name(row[S.SAMPLE_ID]).replace(".", "_")
                    # Sorted member order (cls, json, image), as webdataset's TarWriter writes.
                    add(tar, f"{key}.cls", str(row[S.LABEL]).encode("utf-8"))
                    meta = {k: row[k] for k in (S.SAMPLE_ID, S.LABEL, "original_label", S.WEIGHT, S.PATH)}
                    add(tar, f"{key}.json", json.dumps(meta).encode("utf-8"))
                    add(tar, f"{key}.{_extension(data, row[S.PATH])}", data)
                    written += 1
        finally:
            if tar is not None:
                tar.close()
        (tmp / MARKER).write_text("written by `winnow export --format webdataset`; safe to replace\n")
    return dest
