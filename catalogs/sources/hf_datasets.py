"""`kind = "hf_dataset"`: a Hugging Face `datasets` dataset saved with `save_to_disk`, or a
`Dataset` object handed to `winnow.clean(ds, ...)`.

    [source]
    kind = "hf_dataset"
    path = "saved"                # the save_to_disk folder (local or a URL: s3://bucket/saved)
    split = "train"               # a saved DatasetDict's split (default: train, else its only one)
    image_column = "image"        # optional: the one `Image` / bytes column
    label_column = "label"        # optional: `label`, else the one ClassLabel / text / integer column

The folder is read as it lies (its Arrow files, `state.json`, `dataset_info.json`), without
importing `datasets`; ClassLabel names become the label names. A folder saved with
`save_to_disk` given as the target is this source by itself. A `Dataset` object is saved once
into the Winnow cache (`$WINNOW_CACHE/hf/<its fingerprint>`), so every stage and worker
process reads the same files. Rows: sample_id from `<split>/<arrow file>#<row>`.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from winnow.catalogs.errors import EmptyDataset, InvalidCatalog, InvalidManifest, MissingRoot
from winnow.catalogs.keys import cache_dir, reject_unknown, resolve_path, typed
from winnow.catalogs.sources.base import Listing, Source
from winnow.catalogs.sources.byte_tables import (
    TableBytesReader,
    class_names,
    label_texts,
    listing_of_shards,
    pick_columns,
)
from winnow.catalogs.sources.storage import filesystem, fingerprint_files, is_url, open_file


def _read_json(url: str) -> Any:
    with open_file(url) as fh:
        return json.loads(fh.read())


def _exists(url: str) -> bool:
    fs, path = filesystem(url)
    return fs.exists(path)


def is_saved_dataset(target: str) -> bool:
    """Whether a folder (or URL) is what `Dataset.save_to_disk` / `DatasetDict.save_to_disk` wrote."""
    base = target.rstrip("/")
    try:
        return _exists(f"{base}/state.json") or _exists(f"{base}/dataset_dict.json")
    except Exception:
        return False


@dataclass(frozen=True, kw_only=True)
class HFDatasetSource(Source):
    kind = "hf_dataset"
    description = "a Hugging Face dataset saved with save_to_disk (or a datasets.Dataset given to winnow.clean)"

    path: str  # the save_to_disk folder, local or URL
    split: str | None = None  # a DatasetDict's split; None: train, else the only split
    image_column: str | None = None  # None: the one Image / bytes column
    label_column: str | None = None  # None: `label`, else the one ClassLabel / text / integer column

    @classmethod
    def from_table(cls, table: dict[str, Any], *, base_dir: Path, where: str) -> HFDatasetSource:
        reject_unknown(table, {"path", "split", "image_column", "label_column"}, where)
        text = typed(table, "path", str, where, required=True)
        return cls(path=text if is_url(text) else str(resolve_path(text, base_dir)),
                   split=typed(table, "split", str, where), image_column=typed(table, "image_column", str, where),
                   label_column=typed(table, "label_column", str, where))

    @classmethod
    def from_target(cls, target: str, *, image_column: str | None = None, label_column: str | None = None,
                    path_column: str | None = None) -> HFDatasetSource | None:
        """A save_to_disk folder given as the target; None for anything else."""
        if path_column is not None:
            return None
        if not is_url(target):
            path = Path(target).expanduser()
            if not path.is_dir():
                return None
            target = str(path.resolve())
        if not is_saved_dataset(target):
            return None
        source = cls(path=target, image_column=image_column, label_column=label_column)
        image_column, label_column = source.columns()
        return cls(path=target, split=source.split, image_column=image_column, label_column=label_column)

    @classmethod
    def from_object(cls, dataset: Any, *, image_column: str | None = None,
                    label_column: str | None = None) -> HFDatasetSource:
        """The source of a `datasets.Dataset`: saved once under $WINNOW_CACHE/hf/<fingerprint>."""
        if type(dataset).__name__ == "DatasetDict":
            raise InvalidCatalog(f"a DatasetDict holds several splits ({sorted(dataset)}); pass one, e.g. ds['train']")
        fingerprint = getattr(dataset, "_fingerprint", None)
        if not fingerprint or not hasattr(dataset, "save_to_disk"):
            raise InvalidCatalog(f"expected a datasets.Dataset, got {type(dataset).__name__}")
        dest = cache_dir() / "hf" / str(fingerprint)
        if not (dest / "state.json").is_file():
            tmp = dest.with_name(f".{dest.name}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            with _quiet_datasets():  # winnow.clean prints nothing: no "Saving the dataset" bars
                dataset.save_to_disk(str(tmp))
            try:
                tmp.rename(dest)
            except OSError:  # another process saved it first: theirs is the same data
                shutil.rmtree(tmp, ignore_errors=True)
        found = cls.from_target(str(dest), image_column=image_column, label_column=label_column)
        assert found is not None
        return found

    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1] or "dataset"

    def _split_folder(self) -> tuple[str, str]:
        """(folder of the split's files, the split's name or '')."""
        base = self.path.rstrip("/")
        if not is_saved_dataset(base):
            raise MissingRoot(f"{base!r} is not a folder written by Dataset.save_to_disk (no state.json or "
                              f"dataset_dict.json)")
        if _exists(f"{base}/state.json"):
            if self.split is not None:
                raise InvalidCatalog(f"{base!r} holds one split (a Dataset); split = {self.split!r} names none")
            return base, ""
        splits = _read_json(f"{base}/dataset_dict.json").get("splits") or []
        split = self.split or ("train" if "train" in splits else splits[0] if len(splits) == 1 else None)
        if split is None or split not in splits:
            raise InvalidCatalog(f"{base!r} holds the splits {splits}; name one with split (got {self.split!r})")
        return f"{base}/{split}", split

    def files(self) -> tuple[list[str], dict[str, Any]]:
        folder, _ = self._split_folder()
        state = _read_json(f"{folder}/state.json")
        info = _read_json(f"{folder}/dataset_info.json") if _exists(f"{folder}/dataset_info.json") else {}
        names = [d["filename"] for d in state.get("_data_files", [])]
        if not names:
            raise EmptyDataset(f"saved dataset {folder!r} lists no data files in state.json")
        return [f"{folder}/{n}" for n in names], info.get("features") or {}

    def columns(self) -> tuple[str, str]:
        files, features = self.files()
        return pick_columns(_schema(files[0]), features, image_column=self.image_column,
                            label_column=self.label_column, where=f"saved dataset {self.path!r}")

    def list_samples(self) -> Listing:
        files, features = self.files()
        image_column, label_column = pick_columns(_schema(files[0]), features, image_column=self.image_column,
                                                  label_column=self.label_column, where=f"saved dataset {self.path!r}")
        _, split = self._split_folder()
        names = class_names(features.get(label_column))
        def shards():
            for url in files:
                column = _read_column(url, label_column)
                shard = f"{split}/{url.rsplit('/', 1)[-1]}" if split else url.rsplit("/", 1)[-1]
                yield shard, url, label_texts(column, names)

        return listing_of_shards(shards(), what=f"saved dataset {self.path!r}")

    def reader(self) -> TableBytesReader:
        return TableBytesReader(image_column=self.image_column or self.columns()[0], fmt="arrow")

    def fingerprint(self, listed: pa.Table) -> str:
        from winnow.catalogs import schemas as S

        return fingerprint_files(sorted({loc.rpartition("#")[0] for loc in listed.column(S.LOCATOR).to_pylist()}))

    def local_path(self) -> Path | None:
        return None if is_url(self.path) else Path(self.path)


@contextlib.contextmanager
def _quiet_datasets():
    """`datasets`' progress bars off for the block, as they were after it."""
    try:
        import datasets
    except ImportError:  # the object came from somewhere: nothing to silence
        yield
        return
    was_on = getattr(datasets, "is_progress_bar_enabled", lambda: True)()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_on:
            datasets.enable_progress_bars()


def _open_stream(url: str):
    if not is_url(url):
        return pa.ipc.open_stream(pa.memory_map(url))
    with open_file(url) as fh:
        return pa.ipc.open_stream(pa.py_buffer(fh.read()))


def _schema(url: str) -> pa.Schema:
    try:
        return _open_stream(url).schema
    except Exception as exc:
        raise InvalidManifest(f"saved dataset file {url!r} cannot be read as Arrow: {exc}") from exc


def _read_column(url: str, column: str) -> pa.ChunkedArray:
    try:
        return _open_stream(url).read_all().column(column)
    except Exception as exc:
        raise InvalidManifest(f"saved dataset file {url!r} cannot be read as Arrow: {exc}") from exc


__all__ = ["HFDatasetSource", "is_saved_dataset"]
