"""Embedding throughput: Winnow's reader -> model -> writer pipeline vs the bare model forward.

The ceiling is the model's forward pass alone on the same preprocessed batches (no file
reading, hashing, decoding, resizing or store writes). The pipeline must reach at least
90% of it. Prints one table; run on whatever machine you want numbers for:

    .venv/bin/python -m benchmarks.embed_throughput --encoder efficientnet-lite0 --images 512
    .venv/bin/python -m benchmarks.embed_throughput --encoder open_clip:ViT-B-32/random --device cuda --images 20000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import emit, markdown_table
from winnow.embeddings import EmbeddingStore, embed_files, get_encoder


def write_images(folder: Path, n: int, size: int) -> list[str]:
    """n distinct real-looking JPEGs (sklearn digits, upscaled and tinted) of `size` pixels."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        base = digits.images[i % len(digits.images)] / 16.0
        tint = rng.uniform(0.3, 1.0, 3)
        rgb = (np.stack([base * t for t in tint], axis=-1) * 255).astype(np.uint8)
        img = Image.fromarray(rgb).resize((size, size), Image.Resampling.BICUBIC)
        path = folder / f"{i:06d}.jpg"
        img.save(path, quality=90)
        paths.append(str(path))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default="efficientnet-lite0")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--size", type=int, default=256, help="side of the JPEGs written")
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
        store = EmbeddingStore(Path(tmp) / "store", encoder_id=encoder.encoder_id, dim=encoder.dim)
        t0 = time.perf_counter()
        report = embed_files(paths, encoder, store, batch_size=args.batch_size, workers=args.workers)
        pipeline = len(paths) / (time.perf_counter() - t0)
    assert report.n_embedded == len(paths)
    table = markdown_table(
        ["what", "images/s"],
        [["bare model forward (ceiling)", f"{bare:.1f}"], ["winnow pipeline (read .. store)", f"{pipeline:.1f}"],
         ["pipeline / ceiling", f"{pipeline / bare:.1%}"]], align="lr")
    note = (f"{args.encoder} on {encoder.device} ({torch.get_num_threads()} torch threads), {len(paths)} JPEGs of "
            f"{args.size} x {args.size}, batch {args.batch_size}. Stage seconds (summed over threads): "
            + ", ".join(f"{k} {v:.2f}" for k, v in report.seconds.items()) + ".")
    emit([table, note], args.markdown)


if __name__ == "__main__":
    main()
