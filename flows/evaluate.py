"""`winnow evaluate` and `winnow detect`: detection quality on planted noise, and detection
on arrays a user already has. Orchestration only: load files, call curation, write files."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

import curation
from catalogs import classes_of, confinement_of, list_samples, resolve_catalog
from catalogs import schemas as S
from curation.errors import InvalidArray
from curation.noise import noise_transition_matrix
from embeddings import DEFAULT_ENCODER, EmbeddingStore, embed_files, get_encoder
from flows.io import write_parquet


def load_array(path: str | Path, *, name: str) -> np.ndarray:
    """A .npy (never unpickled) or .csv array a user hands us; errors quote the path."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{name} file {str(path)!r} does not exist")
    try:
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if path.suffix == ".csv":
            return np.loadtxt(path, delimiter=",", ndmin=1)
    except ValueError as exc:
        raise InvalidArray(f"{name} file {str(path)!r} cannot be read as an array: {exc}") from None
    raise InvalidArray(f"{name} file {str(path)!r} must be .npy or .csv, got {path.suffix!r}")


def detect_from_arrays(labels_path, out_path, *, pred_probs_path=None, embeddings_path=None,
                       methods: str = "auto", seed: int = 0, k: int = 10) -> pl.DataFrame:
    """Label issues for user arrays -> a Parquet file with one row per sample (atomic)."""
    labels = load_array(labels_path, name="labels")
    pred_probs = load_array(pred_probs_path, name="pred_probs") if pred_probs_path else None
    embeddings = load_array(embeddings_path, name="embeddings") if embeddings_path else None
    if embeddings is not None and embeddings.ndim == 2 and np.issubdtype(embeddings.dtype, np.floating):
        norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
        embeddings = embeddings / np.where(norms > 0, norms, 1.0)  # the graph assumes unit rows
    frame = curation.find_label_issues(labels, pred_probs=pred_probs, embeddings=embeddings, methods=methods,
                                       seed=seed, knn_k=k)
    frame = frame.with_columns(pl.Series("row", np.arange(frame.height)), pl.Series("label", labels)).select(
        "row", "label", pl.all().exclude("row", "label"))
    write_parquet(frame, out_path)
    return frame


def evaluate_catalog(target: str, noise: str, *, seed: int = 0, encoder: str | None = None,
                     store: str | None = None, k: int = 10) -> dict:
    """Plant `noise` on a catalog's clean labels, run each detector and the ensemble, score them.

    The clean labels are the catalog's ground truth when it has one (the bundled digits
    catalog's planted flips are undone first), else its given labels.
    """
    spec = resolve_catalog(target)
    table = list_samples(spec)
    classes = classes_of(table)
    labels = table.column(S.LABEL_INDEX).to_numpy().astype(np.int64)
    if spec.ground_truth and spec.ground_truth.exists():
        truth = pl.read_parquet(spec.ground_truth).select("path", "true_label")
        joined = pl.DataFrame({"path": table.column(S.PATH).to_pylist()}).join(truth, on="path", how="left",
                                                                               maintain_order="left")
        index = {c: i for i, c in enumerate(classes)}
        labels = np.array([index[t] if t is not None else labels[i] for i, t in enumerate(joined["true_label"])])
    n_classes = len(classes)
    parsed = curation.parse_noise_spec(noise)
    if parsed.kind == "matrix":
        transition = load_array(parsed.source, name="transition matrix")
    else:
        transition = noise_transition_matrix(parsed.kind, parsed.rate, n_classes=n_classes)
    noisy = curation.plant_label_noise(labels, transition, seed=seed)
    is_issue = noisy != labels

    name = encoder or spec.encoder or DEFAULT_ENCODER
    enc = get_encoder(name)
    store_dir = store or str(Path(tempfile.gettempdir()) / "winnow-evaluate-store")
    emb_store = EmbeddingStore(store_dir, encoder_id=enc.encoder_id, dim=enc.dim)
    report = embed_files(table.column(S.ABS_PATH).to_pylist(), enc, emb_store,
                         refused=table.column("refused").to_pylist(), confine_to=confinement_of(table))
    usable = np.array([r is None for r in report.reason])
    with tempfile.TemporaryDirectory() as tmp:
        matrix = emb_store.write_matrix([h for h, ok in zip(report.content_hash, usable, strict=True) if ok],
                                        Path(tmp) / "emb.npy")
        emb = np.load(matrix)
    noisy, is_issue = noisy[usable], is_issue[usable]
    graph = curation.build_knn_graph(emb, k=k)
    rows = []
    t0 = time.perf_counter()
    full = curation.detect_label_issues(noisy, embeddings=emb, knn=graph, n_classes=n_classes, seed=seed)
    ensemble_seconds = time.perf_counter() - t0
    for method in full.methods:
        score = full.frame[f"score_{method}"].to_numpy()
        rows.append({"detector": method, **curation.detection_metrics(is_issue, score, full.detector_flags[method])})
    rows.append({"detector": "ensemble", **curation.detection_metrics(
        is_issue, full.frame["label_quality"].to_numpy(), full.frame["is_label_issue"].to_numpy())})
    return {
        "catalog": spec.name, "encoder": name, "noise": noise, "seed": seed, "samples": int(usable.sum()),
        "planted": int(is_issue.sum()), "estimated_noise_rate": round(float(full.noise_rate), 4),
        "seconds": round(ensemble_seconds, 2), "detectors": rows,
    }
