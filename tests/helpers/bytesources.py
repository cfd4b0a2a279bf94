"""The same images in every byte form Winnow reads, and a real S3-compatible server on localhost.

Each writer takes (name, bytes, label) triples in the order to write them, so a test can hold
the images and their order fixed and vary only the form: Parquet (an HF `Image` struct column
or plain binary, in shards), a folder saved by `datasets`' save_to_disk, WebDataset tar shards.
`moto_server` starts moto's S3 server in its own process (never a mock object in this process)
and stops it by its PID.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

Sample = tuple[str, bytes, str]  # (name, image bytes, label)


def folder_samples(root: Path) -> list[Sample]:
    """The images of a class folder in the image-folder source's order: (relative path, bytes, label)."""
    out = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(class_dir.iterdir()):
            out.append((f.relative_to(root).as_posix(), f.read_bytes(), class_dir.name))
    return out


def write_parquet_shards(dest: Path, samples: Sequence[Sample], *, shards: int = 1, struct: bool = True,
                         row_group_size: int = 64, class_names: Sequence[str] | None = None) -> list[Path]:
    """Parquet shards dest/part-<i>.parquet of `image` (HF struct {bytes, path} or binary) and `label`.

    class_names: write the label as a ClassLabel index with Hugging Face feature metadata."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    dest.mkdir(parents=True, exist_ok=True)
    per = -(-len(samples) // shards)
    written = []
    for s in range(shards):
        part = samples[s * per:(s + 1) * per]
        if struct:
            image = pa.array([{"bytes": b, "path": n} for n, b, _ in part],
                             pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
        else:
            image = pa.array([b for _, b, _ in part], pa.binary())
        if class_names is not None:
            label = pa.array([list(class_names).index(lab) for _, _, lab in part], pa.int64())
            features = {"image": {"_type": "Image"}, "label": {"_type": "ClassLabel", "names": list(class_names)}}
            meta = {"huggingface": json.dumps({"info": {"features": features}})}
        else:
            label, meta = pa.array([lab for _, _, lab in part], pa.string()), None
        table = pa.table({"image": image, "label": label})
        if meta:
            table = table.replace_schema_metadata(meta)
        path = dest / f"part-{s:05d}.parquet"
        pq.write_table(table, path, row_group_size=row_group_size)
        written.append(path)
    return written


def write_hf_saved(dest: Path, samples: Sequence[Sample]) -> Path:
    """A `datasets.Dataset` of Image + ClassLabel saved with save_to_disk (the real library)."""
    return save_hf_dataset(hf_dataset(samples), dest)


def hf_dataset(samples: Sequence[Sample]):
    import datasets

    names = sorted({lab for _, _, lab in samples})
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)})
    return datasets.Dataset.from_dict(
        {"image": [{"bytes": b, "path": n} for n, b, _ in samples], "label": [names.index(lab) for _, _, lab in samples]},
        features=features)


def save_hf_dataset(ds, dest: Path) -> Path:
    import datasets

    datasets.disable_progress_bars()
    ds.save_to_disk(str(dest))
    return dest


def write_webdataset(dest: Path, samples: Sequence[Sample], *, shards: int = 2, label: str = "cls") -> list[Path]:
    """WebDataset shards dest/shard-<i>.tar: <key>.cls (or .json {"label": ...}) and <key>.png."""
    dest.mkdir(parents=True, exist_ok=True)
    per = -(-len(samples) // shards)
    written = []
    for s in range(shards):
        path = dest / f"shard-{s:03d}.tar"
        with tarfile.open(path, "w") as tar:
            for i, (_, data, lab) in enumerate(samples[s * per:(s + 1) * per]):
                key = f"{s:03d}{i:06d}"
                # Members in sorted extension order, as webdataset's TarWriter writes them.
                if label == "cls":
                    add_member(tar, f"{key}.cls", lab.encode())
                else:
                    add_member(tar, f"{key}.json", f'{{"label": "{lab}"}}'.encode())
                add_member(tar, f"{key}.png", data)
        written.append(path)
    return written


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _server(args: list[str], port: int, *, timeout: float) -> Iterator[str]:
    """A server process listening on localhost:`port`; yields its URL, stops it by its PID."""
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{args[2]} exited with {proc.returncode}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{args[2]} did not listen on {url} within {timeout} s")
            time.sleep(0.2)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@contextlib.contextmanager
def http_server(folder: Path, *, timeout: float = 30.0) -> Iterator[str]:
    """Python's http.server serving `folder` on a free localhost port (Range requests included)."""
    port = free_port()
    with _server([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(folder),
                  str(port)], port, timeout=timeout) as url:
        yield url


@contextlib.contextmanager
def moto_server(*, timeout: float = 180.0) -> Iterator[str]:
    """moto's S3-compatible server on a free localhost port, in a process of its own; yields its
    endpoint URL and stops the process by its PID. Credentials are dummies (moto accepts any)."""
    port = free_port()
    _forget_s3_clients()  # fsspec caches filesystems: one made for an earlier server would be reused
    try:
        with _server([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], port,
                     timeout=timeout) as endpoint:
            yield endpoint
    finally:
        _forget_s3_clients()


def _forget_s3_clients() -> None:
    with contextlib.suppress(ImportError):
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()


S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def upload_tree(endpoint: str, bucket: str, local: Path, prefix: str) -> None:
    """Every file below `local` to s3://bucket/prefix/<relative path> (bucket created if absent)."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                      region_name="us-east-1")
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=bucket)
    for f in sorted(p for p in local.rglob("*") if p.is_file()):
        s3.upload_file(str(f), bucket, f"{prefix}/{f.relative_to(local).as_posix()}")
