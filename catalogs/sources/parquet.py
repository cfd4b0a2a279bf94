"""`kind = "parquet_images"`: Parquet files whose image column holds the image bytes.

    [source]
    kind = "parquet_images"
    path = "data"                 # a .parquet file, a folder of shards, a glob or brace pattern,
                                  # or a URL of any of these (s3://bucket/train/, https://.../x.parquet)
    image_column = "image"        # optional: the one column of bytes (binary, or HF `Image` {bytes, path})
    label_column = "label"        # optional: `label`, else the one ClassLabel / text / integer column

Every Hugging Face image dataset on the Hub is such a table (its `Image` feature is a struct
{bytes, path}; its ClassLabel names are in the schema metadata, and become the label names).
A .parquet target whose columns include image bytes is this source by itself:
`winnow run data.parquet --image-column image --label-column label`.

A row is one sample: sample_id from `<shard name>#<row>`, so it is stable while the shards are;
the locator `<shard url>#<row>`. Listing reads the label column only; bytes are read when
embedding, a row group at a time. A null or corrupt image is a row with a reason (`missing`,
`unreadable`), never a crash.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from winnow.catalogs.errors import InvalidManifest
from winnow.catalogs.keys import reject_unknown, resolve_path, typed
from winnow.catalogs.sources.base import Listing, Source
from winnow.catalogs.sources.byte_tables import (
    TableBytesReader,
    class_names,
    hf_features,
    is_image_type,
    label_texts,
    listing_of_shards,
    pick_columns,
)
from winnow.catalogs.sources.storage import (
    filesystem,
    fingerprint_files,
    is_url,
    list_files,
    local_folder,
    open_file,
    relative_name,
)


def _schema(url: str) -> pa.Schema:
    import pyarrow.parquet as pq

    try:
        with open_file(url) as fh:
            return pq.ParquetFile(fh).schema_arrow
    except Exception as exc:  # arrow and storage errors vary: one named error
        raise InvalidManifest(f"Parquet file {url!r} cannot be read: {exc}") from exc


def _is_folder(url: str) -> bool:
    try:
        fs, path = filesystem(url)
        return fs.isdir(path)
    except Exception:
        return False


@dataclass(frozen=True, kw_only=True)
class ParquetImagesSource(Source):
    kind = "parquet_images"
    description = "Parquet files / shards (local or s3:// gs:// az:// https://) with the image bytes in a column"

    path: str  # a .parquet file, folder of shards, glob, brace pattern, or URL
    image_column: str | None = None  # None: the one column of image bytes
    label_column: str | None = None  # None: `label`, else the one ClassLabel / text / integer column

    @classmethod
    def from_table(cls, table: dict[str, Any], *, base_dir: Path, where: str) -> ParquetImagesSource:
        reject_unknown(table, {"path", "image_column", "label_column"}, where)
        text = typed(table, "path", str, where, required=True)
        return cls(path=text if is_url(text) else str(resolve_path(text, base_dir)),
                   image_column=typed(table, "image_column", str, where),
                   label_column=typed(table, "label_column", str, where))

    @classmethod
    def from_target(cls, target: str, *, image_column: str | None = None, label_column: str | None = None,
                    path_column: str | None = None) -> ParquetImagesSource | None:
        """The source for a .parquet file / folder of .parquet shards / URL given as the target,
        when it holds image bytes (or `image_column` says so); None leaves it to the path manifest."""
        if path_column is not None:
            return None
        local = not is_url(target)
        if local:
            path = Path(target).expanduser()
            if path.is_dir():
                if not any(path.glob("*.parquet")) or (path / "state.json").is_file():
                    return None
            elif path.suffix.lower() != ".parquet" or not path.is_file():
                return None
            target = str(path.resolve())
        elif not (target.rstrip("/").endswith(".parquet") or "{" in target or _is_folder(target)):
            return None
        try:
            files = list_files(target, suffixes=(".parquet",), what="Parquet data")
        except Exception:
            if local:
                return None
            raise
        schema = _schema(files[0])
        if image_column is None and not any(is_image_type(f.type) for f in schema):
            return None
        # Resolved now: a wrong column name fails before any work, and readers need no listing.
        image_column, label_column = cls(path=target, image_column=image_column,
                                         label_column=label_column).columns(schema)
        return cls(path=target, image_column=image_column, label_column=label_column)

    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1].split("{")[0].removesuffix(".parquet") or "parquet"

    def files(self) -> list[str]:
        return list_files(self.path, suffixes=(".parquet",), what="Parquet data")

    def columns(self, schema: pa.Schema) -> tuple[str, str]:
        return pick_columns(schema, hf_features(schema), image_column=self.image_column,
                            label_column=self.label_column, where=f"Parquet data {self.path!r}")

    def list_samples(self) -> Listing:
        import pyarrow.parquet as pq

        files = self.files()
        image_column, label_column = self.columns(_schema(files[0]))

        def shards():
            for url in files:
                try:
                    with open_file(url) as fh:
                        reader = pq.ParquetFile(fh)
                        schema = reader.schema_arrow
                        if label_column not in schema.names or image_column not in schema.names:
                            raise InvalidManifest(f"Parquet shard {url!r} lacks column {label_column!r} or "
                                                  f"{image_column!r}; its columns: {schema.names}")
                        column = reader.read(columns=[label_column]).column(label_column)
                except InvalidManifest:
                    raise
                except Exception as exc:
                    raise InvalidManifest(f"Parquet shard {url!r} cannot be read: {exc}") from exc
                names = class_names(hf_features(schema).get(label_column))
                shard = relative_name(url, self.path)
                yield shard, url, label_texts(column, names)

        return listing_of_shards(shards(), what=f"Parquet data {self.path!r}")

    def reader(self) -> TableBytesReader:
        image_column = self.image_column or self.columns(_schema(self.files()[0]))[0]
        return TableBytesReader(image_column=image_column, fmt="parquet")

    def fingerprint(self, listed: pa.Table) -> str:
        from winnow.catalogs import schemas as S

        urls = sorted({loc.rpartition("#")[0] for loc in listed.column(S.LOCATOR).to_pylist()})
        return fingerprint_files(urls)

    def local_path(self) -> Path | None:
        return None if is_url(self.path) else local_folder(self.path)
