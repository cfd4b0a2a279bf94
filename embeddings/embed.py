"""Embedding samples into the store: reader -> model -> writer, each stage timed.

Samples are locators read through a `winnow.reading.SampleReader` (local files, or a sample
source's own reader: `winnow.catalogs.open_reader(samples)`). A thread pool (file I/O, hashing
and image decoding release the GIL) reads and decodes the next chunk while the model runs on
the current one; each finished chunk is committed to the store as one block, so a killed run
keeps every finished chunk and a re-run embeds only content the store does not have yet.

Decoding is the seam between kinds of data: `decode` turns a sample's bytes into what the
encoder's `preprocess` takes (images: `decode_image`, bytes -> RGB image; text: `decode_text`,
bytes -> str with reason codes of its own), chosen by the encoder's `modality`. The encoder's
`collate` makes the batch (a stacked tensor, a list of texts); a text encoder's chunks are
ordered by length first, so each batch pads little.

While an image is decoded, its decode-time signals (embeddings/signals.py: perceptual hash,
quality statistics) are taken from the same pixels and committed with its embedding, by
content hash: content the store already has is neither decoded nor measured again.
"""

from __future__ import annotations

import functools
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from winnow.embeddings.encoders import Encoder
from winnow.embeddings.images import WORKING_SIDE, decode_image
from winnow.embeddings.signals import image_signals
from winnow.embeddings.store import EmbeddingStore
from winnow.embeddings.text import decode_text
from winnow.reading import FileReader, SampleRead, SampleReader

Decode = Callable[[bytes], "tuple[Any, str | None]"]
"""bytes -> (what the encoder's preprocess takes, None) or (None, reason code); never raises."""

Measure = Callable[[Any], "dict[str, float | int]"]
"""A decoded sample -> its decode-time signals (column -> number); {} for a kind it does not measure."""


def measure_image(decoded: Any) -> dict[str, float | int]:
    """Every registered signal of a decoded image (embeddings/signals.py); {} for anything else."""
    from PIL import Image

    return image_signals(decoded) if isinstance(decoded, Image.Image) else {}


@dataclass
class EmbedReport:
    content_hash: list[str | None]  # per input sample; None when it could not be read
    reason: list[str | None]  # per input sample; a reason code when it has no embedding
    n_embedded: int = 0  # samples whose content was newly embedded in this run
    n_reused: int = 0  # usable samples whose content was already in the store
    n_measured: int = 0  # samples whose decode-time signals were computed in this run (new content only)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per stage: read, decode, model, write

    @property
    def n_unusable(self) -> int:
        return sum(r is not None for r in self.reason)


@dataclass
class _Chunk:
    positions: list[int]  # input positions whose content is new and decoded
    hashes: list[str]
    tensors: list[torch.Tensor]
    signals: list[dict[str, float | int]] = field(default_factory=list)  # per decoded sample, its signals


def embed_files(
    paths: Sequence[str],
    encoder: Encoder,
    store: EmbeddingStore,
    *,
    refused: Sequence[str | None] | None = None,
    batch_size: int = 64,
    chunk_size: int = 256,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    confine_to: str | None = None,
    decode: Decode | None = None,
    measure: Measure | None = measure_image,
) -> EmbedReport:
    """Embed local image files: `embed_samples` with the file reader.

    confine_to: a resolved folder every file read must really lie in (see
    `winnow.reading.read_file`); None reads wherever the paths lead.
    """
    return embed_samples(paths, FileReader(confine_to=confine_to), encoder, store, refused=refused,
                         batch_size=batch_size, chunk_size=chunk_size, workers=workers, progress=progress,
                         decode=decode, measure=measure)


def embed_samples(
    locators: Sequence[str],
    reader: SampleReader,
    encoder: Encoder,
    store: EmbeddingStore,
    *,
    refused: Sequence[str | None] | None = None,
    batch_size: int = 64,
    chunk_size: int = 256,  # one committed store block: a kill loses at most this much work
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    decode: Decode | None = None,
    measure: Measure | None = measure_image,
) -> EmbedReport:
    """Embed every sample whose content (by hash) is not yet in `store`; report per-sample hash or reason.

    locators: what `reader.read_many` takes, one per sample. refused: optional per-sample
    reason code decided before reading (e.g. "outside_root"); such samples are never read.
    decode: bytes -> the encoder's input (see the module docstring); None: by the encoder's
    modality, `decode_image` or `decode_text`.
    measure: the decoded sample -> its decode-time signals, stored with its embedding (None:
    none; a text measures nothing).
    """
    if decode is None and encoder.modality == "text":
        decode = decode_text
    elif decode is None:  # large images decoded reduced, never below what the encoder resizes to
        decode = functools.partial(decode_image, min_side=max(WORKING_SIDE, encoder.input_side))
    n = len(locators)
    refused = list(refused) if refused is not None else [None] * n
    report = EmbedReport(content_hash=[None] * n, reason=list(refused))
    timers = {"read": 0.0, "decode": 0.0, "model": 0.0, "write": 0.0}
    lock = threading.Lock()
    workers = workers or min(8, os.cpu_count() or 1)
    stored = store.index()  # live: grows as this run commits blocks
    scheduled: set[str] = set()  # content new to the store, taken up by this run
    failed: dict[str, str] = {}  # content hash -> reason its first copy could not be decoded

    def prepare(start: int, pool: ThreadPoolExecutor) -> _Chunk:
        todo = [i for i in range(start, min(start + chunk_size, n)) if refused[i] is None]
        t0 = time.perf_counter()
        reads = _read_parallel(reader, [locators[i] for i in todo], pool, workers)
        t1 = time.perf_counter()
        fresh: list[tuple[int, bytes, str]] = []
        for i, r in zip(todo, reads, strict=True):
            if r.reason is not None:
                report.reason[i] = r.reason
                continue
            report.content_hash[i] = r.content_hash
            if r.content_hash not in scheduled and r.content_hash not in stored:
                scheduled.add(r.content_hash)
                fresh.append((i, r.data, r.content_hash))

        def to_tensor(item: tuple[int, bytes, str]) -> tuple[int, str, torch.Tensor | None, str | None, dict]:
            i, data, h = item
            decoded, reason = decode(data)
            if decoded is None:
                return i, h, None, reason, {}
            try:
                tensor = encoder.preprocess(decoded)
            except Exception:  # a codec that decoded but produced garbage the transform rejects
                return i, h, None, "unreadable", {}
            return i, h, tensor, None, (measure(decoded) if measure is not None else {})

        chunk = _Chunk([], [], [])
        for i, h, tensor, reason, signals in pool.map(to_tensor, fresh):
            if tensor is None:
                report.reason[i] = reason
                failed[h] = reason
                continue
            chunk.positions.append(i)
            chunk.hashes.append(h)
            chunk.tensors.append(tensor)
            chunk.signals.append(signals)
        with lock:
            timers["read"] += t1 - t0
            timers["decode"] += time.perf_counter() - t1
        return chunk

    chunks: queue.Queue = queue.Queue(maxsize=2)
    failure: list[BaseException] = []

    def producer() -> None:
        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="winnow-read") as pool:
                for start in range(0, n, chunk_size):
                    chunks.put((start, prepare(start, pool)))
        except BaseException as exc:  # surfaced in the consumer: a reader bug must not hang the run
            failure.append(exc)
        finally:
            chunks.put(None)

    thread = threading.Thread(target=producer, name="winnow-reader", daemon=True)
    thread.start()
    while (item := chunks.get()) is not None:
        start, chunk = item
        end = min(start + chunk_size, n)
        if chunk.tensors:
            t0 = time.perf_counter()
            _order_by_length(chunk, encoder)
            vecs = []
            for b in range(0, len(chunk.tensors), batch_size):
                vecs.append(encoder.encode_batch(encoder.collate(chunk.tensors[b : b + batch_size])))
                if progress and b + batch_size < len(chunk.tensors):
                    # Within a chunk too, in proportion to its batches: a chunk of 256 photos
                    # takes the CPU tens of seconds, and a bar that stands still looks hung.
                    progress(start + (end - start) * (b + batch_size) // len(chunk.tensors), n)
            t1 = time.perf_counter()
            columns = _signal_columns(chunk.signals)
            store.append(chunk.hashes, np.concatenate(vecs), signals=columns)
            timers["model"] += t1 - t0
            timers["write"] += time.perf_counter() - t1
            report.n_embedded += len(chunk.positions)
            report.n_measured += len(chunk.positions) if columns else 0
        if progress:
            progress(end, n)
    thread.join()
    if failure:
        raise failure[0]
    # Reused: usable samples whose content the store had before this run (in-run copies are neither).
    report.n_reused = sum(
        1 for h, r in zip(report.content_hash, report.reason, strict=True) if h and r is None and h not in scheduled
    )
    # A hash whose first copy failed to decode makes its later copies unusable too.
    for i, h in enumerate(report.content_hash):
        if h is not None and report.reason[i] is None and h not in store:
            report.reason[i] = failed.get(h, "unreadable")
    report.seconds = timers
    return report


def _order_by_length(chunk: _Chunk, encoder: Encoder) -> None:
    """Sort a chunk by the encoder's `length_of` (texts), so each batch pads to a similar length;
    a chunk stays in input order when the encoder gives no lengths (images)."""
    lengths = [encoder.length_of(t) for t in chunk.tensors]
    if not lengths or lengths[0] is None:
        return
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    chunk.positions = [chunk.positions[i] for i in order]
    chunk.hashes = [chunk.hashes[i] for i in order]
    chunk.tensors = [chunk.tensors[i] for i in order]
    if chunk.signals:
        chunk.signals = [chunk.signals[i] for i in order]


def _signal_columns(per_sample: list[dict[str, float | int]]) -> dict[str, np.ndarray]:
    """Per-sample signal dicts -> column arrays; only the columns every sample of the block has."""
    if not per_sample:
        return {}
    common = [c for c in per_sample[0] if all(c in s for s in per_sample)]
    return {c: np.asarray([s[c] for s in per_sample]) for c in common}


def _read_parallel(reader: SampleReader, locators: list[str], pool: ThreadPoolExecutor, workers: int) -> list[SampleRead]:
    """`reader.read_many` over contiguous slices, one per worker thread, results in order.

    Contiguous, so a reader of shards sees neighbouring rows together (one open per shard).
    """
    if not locators:
        return []
    step = -(-len(locators) // workers)
    parts = [locators[i : i + step] for i in range(0, len(locators), step)]
    reads: list[SampleRead] = []
    for part, got in zip(parts, pool.map(reader.read_many, parts), strict=True):
        if len(got) != len(part):  # a reader bug, not a sample problem: fail loudly
            raise RuntimeError(f"{type(reader).__name__}.read_many returned {len(got)} reads for {len(part)} locators")
        reads.extend(got)
    return reads
