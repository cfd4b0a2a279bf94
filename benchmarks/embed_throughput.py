"""Embedding throughput: Winnow's reader -> model -> writer pipeline vs the bare model forward.

The ceiling is the model's forward pass alone on the same preprocessed batches (no file
reading, hashing, decoding, resizing or store writes). The pipeline must reach at least
90% of it. With --size WxH above 512 on both sides (camera photos: 4000x3000), the pipeline
also runs with full-resolution decoding (`decode_image(min_side=None)`), side by side, to
show what decoding reduced (embeddings/images.py WORKING_SIDE) saves. Prints one table; run on
whatever machine you want numbers for:

    .venv/bin/python -m benchmarks.embed_throughput --encoder efficientnet-lite0 --images 512
    .venv/bin/python -m benchmarks.embed_throughput --encoder efficientnet-lite0 --images 64 --size 4000x3000
    .venv/bin/python -m benchmarks.embed_throughput --encoder open_clip:ViT-B-32/random --device cuda --images 20000
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import emit, markdown_table
from winnow.embeddings import EmbeddingStore, decode_image, embed_files, get_encoder


def write_images(folder: Path, n: int, size: tuple[int, int]) -> list[str]:
    """n distinct real-looking JPEGs of `size` (width, height) pixels: sklearn digits, upscaled
    and tinted, up to 512 a side; above that, sklearn's two sample photos (china, flower)
    resized and grained (sensor-like noise, a different draw each), like camera photos."""
    from PIL import Image
    from sklearn.datasets import load_digits, load_sample_image

    rng = np.random.default_rng(0)
    if min(size) > 512:
        photos = [np.asarray(Image.fromarray(load_sample_image(name)).resize(size, Image.Resampling.LANCZOS),
                             dtype=np.float32) for name in ("china.jpg", "flower.jpg")]

        def image(i: int) -> Image.Image:
            grain = rng.normal(0.0, 6.0, photos[i % 2].shape).astype(np.float32)
            return Image.fromarray(np.clip(photos[i % 2] + grain, 0, 255).astype(np.uint8))
    else:
        digits = load_digits()

        def image(i: int) -> Image.Image:
            base = digits.images[i % len(digits.images)] / 16.0
            tint = rng.uniform(0.3, 1.0, 3)
            rgb = (np.stack([base * t for t in tint], axis=-1) * 255).astype(np.uint8)
            return Image.fromarray(rgb).resize(size, Image.Resampling.BICUBIC)
    paths = []
    for i in range(n):
        path = folder / f"{i:06d}.jpg"
        image(i).save(path, quality=90)
        paths.append(str(path))
    return paths


def parse_size(text: str) -> tuple[int, int]:
    """"256" -> (256, 256); "4000x3000" -> (4000, 3000)."""
    w, _, h = text.lower().partition("x")
    try:
        size = (int(w), int(h or w))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size takes N or WxH, got {text!r}") from None
    if min(size) < 8:
        raise argparse.ArgumentTypeError(f"--size must be at least 8 a side, got {text!r}")
    return size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default="efficientnet-lite0")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--size", type=parse_size, default=(256, 256), help="N or WxH: size of the JPEGs written")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default=None)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--markdown", type=Path, help="also write the table as markdown to this file")
    args = parser.parse_args()
    encoder = get_encoder(args.encoder, device=args.device)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_images(Path(tmp), args.images, args.size)
        # Bare forward on the same batches, preprocessed in advance (the ceiling).
        from PIL import Image

        batches = []
        for b in range(0, len(paths), args.batch_size):
            batches.append(torch.stack([encoder.preprocess(Image.open(p).convert("RGB"))
                                        for p in paths[b : b + args.batch_size]]))
        encoder.encode_batch(batches[0][:4])  # warm-up (kernels, allocator)
        if encoder.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for batch in batches:
            encoder.encode_batch(batch)
        if encoder.device.type == "cuda":
            torch.cuda.synchronize()
        bare = len(paths) / (time.perf_counter() - t0)
        decoders = {"winnow pipeline (read .. store)": None}
        if min(args.size) > 512:
            decoders["winnow pipeline, full-resolution decode"] = functools.partial(decode_image, min_side=None)
        rates, reports = {}, {}
        for name, decode in decoders.items():
            store = EmbeddingStore(Path(tmp) / f"store-{len(rates)}", encoder_id=encoder.encoder_id, dim=encoder.dim)
            t0 = time.perf_counter()
            reports[name] = embed_files(paths, encoder, store, batch_size=args.batch_size, workers=args.workers,
                                        decode=decode)
            rates[name] = len(paths) / (time.perf_counter() - t0)
            assert reports[name].n_embedded == len(paths)
    rows = [["bare model forward (ceiling)", f"{bare:.1f}"]]
    for name, rate in rates.items():
        rows += [[name, f"{rate:.1f}"], [f"{name.replace('winnow pipeline', 'pipeline')} / ceiling", f"{rate / bare:.1%}"]]
    table = markdown_table(["what", "images/s"], rows, align="lr")
    note = (f"{args.encoder} on {encoder.device} ({torch.get_num_threads()} torch threads), {len(paths)} JPEGs of "
            f"{args.size[0]} x {args.size[1]}, batch {args.batch_size}. Stage seconds (summed over threads): "
            + "; ".join(f"{name}: " + ", ".join(f"{k} {v:.2f}" for k, v in rep.seconds.items())
                        for name, rep in reports.items()) + ".")
    emit([table, note], args.markdown)


if __name__ == "__main__":
    main()
