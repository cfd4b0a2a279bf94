"""`winnow evaluate` and `winnow detect`: detection quality on planted noise, and detection
on arrays a user already has. Orchestration only: load files, call curation, write files.

Everything a user gives is read and checked before the encoder (and torch) is loaded.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from winnow import curation
from winnow.catalogs import (
    classes_of,
    list_samples,
    open_reader,
    read_ground_truth,
    resolve_catalog,
)
from winnow.catalogs import schemas as S
from winnow.curation.errors import InvalidArray
from winnow.curation.noise import noise_transition_matrix
from winnow.curation.validation import check_labels
from winnow.pipeline.config import parse_methods
from winnow.pipeline.files import check_output_file, write_parquet

ARRAY_SUFFIXES = (".npy", ".csv", ".parquet")
# What each detector input is called on `winnow detect`'s command line.
_DETECT_OPTIONS = {"knn": "--embeddings", "embeddings": "--embeddings", "probe": "--embeddings",
                   "pred_probs": "--pred-probs or --embeddings", "class_text_embeddings": "--class-text-embeddings"}


class InputFileError(InvalidArray):
    """A file the user named is missing or cannot be read as the array or column asked for."""


# --- reading what users bring ---------------------------------------------------------------


def load_array(path: str | Path, *, name: str) -> np.ndarray:
    """A numeric array from .npy (never unpickled), .csv or .parquet; errors quote the path.

    A 1-column table gives (N,), a wider one (N, D) (see `load_matrix`).
    """
    arr, _ = load_matrix(path, name=name)
    return arr[:, 0] if arr.ndim == 2 and arr.shape[1] == 1 else arr


def load_matrix(path: str | Path, *, name: str, exclude: tuple[str, ...] = ()) -> tuple[np.ndarray, list[str] | None]:
    """(N, D) floats and, for a table, its column names (None for .npy or one list column).

    .npy: the array. .csv: numeric columns, with a header row unless every value is a number.
    .parquet: one list / array column (an embedding per row), else every numeric column.
    Columns named in `exclude` (ids) are left out.
    """
    path = _existing(path, name)
    if path.suffix.lower() == ".npy":
        try:
            return np.load(path, allow_pickle=False), None
        except ValueError as exc:
            raise InputFileError(f"{name} file {str(path)!r} cannot be read as an array: {exc}") from None
    frame = _read_frame(path, name=name, numeric=True).drop([c for c in exclude if c], strict=False)
    lists = [c for c, t in frame.schema.items() if isinstance(t, (pl.List, pl.Array))]
    if lists:
        if len(lists) > 1:
            raise InputFileError(f"{name} file {str(path)!r} has several list columns {lists}; keep one")
        try:
            return np.array(frame[lists[0]].to_list(), dtype=np.float64), None
        except (ValueError, TypeError) as exc:
            raise InputFileError(f"{name} file {str(path)!r}: column {lists[0]!r} is not one equal-length "
                                 f"list of numbers per row: {exc}") from None
    numeric = [c for c, t in frame.schema.items() if t.is_numeric()]
    other = [c for c in frame.columns if c not in numeric]
    if not numeric:
        raise InputFileError(f"{name} file {str(path)!r} has no numeric columns; its columns: {frame.columns}")
    if other:
        raise InputFileError(f"{name} file {str(path)!r} has non-numeric column(s) {other}; a matrix needs "
                             f"numbers only (name an id column with --id-column to leave it out)")
    return frame.select(numeric).to_numpy().astype(np.float64), numeric


def load_column(path: str | Path, *, name: str, column: str | None = None, default: str | None = None) -> np.ndarray:
    """(N,) values of one column: a 1-D .npy, or a .csv / .parquet column (`column`, else the
    only column, else `default`). Integers stay integers, text stays text."""
    path = _existing(path, name)
    if path.suffix.lower() == ".npy":
        if column:
            raise InputFileError(f"{name} file {str(path)!r} is a .npy array: it has no column {column!r}")
        try:
            arr = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise InputFileError(f"{name} file {str(path)!r} cannot be read as an array: {exc}") from None
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1:
            raise InputFileError(f"{name} file {str(path)!r} must hold a 1-D array (N,), got shape {arr.shape}")
        return arr
    frame = _read_frame(path, name=name, numeric=False)
    pick = column or (frame.columns[0] if frame.width == 1 else default)
    if pick not in frame.columns:
        hint = f"name one with --{name.replace('_', '-')}-column" if name in ("label", "id") else "name one"
        raise InputFileError(f"{name} file {str(path)!r} has no column {pick!r}; its columns: {frame.columns} "
                             f"({hint})")
    series = frame[pick]
    if series.null_count():
        first = int(series.is_null().arg_max())
        raise InputFileError(f"{name} file {str(path)!r} column {pick!r} is empty at {_row_name(path, first)}")
    return series.to_numpy()


def _existing(path: str | Path, name: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{name} file {str(path)!r} does not exist")
    if path.suffix.lower() not in ARRAY_SUFFIXES:
        raise InputFileError(f"{name} file {str(path)!r} must be .npy, .csv or .parquet, got {path.suffix!r}")
    return path


def _read_frame(path: Path, *, name: str, numeric: bool) -> pl.DataFrame:
    try:
        if path.suffix.lower() == ".parquet":
            return pl.read_parquet(path)
        header = _csv_has_header(path)
        frame = pl.read_csv(path, has_header=header, infer_schema_length=None if numeric else 10_000)
        if not header:
            frame = frame.rename({c: f"column_{i}" for i, c in enumerate(frame.columns)})
        return frame
    except InputFileError:
        raise
    except Exception as exc:  # polars / arrow errors vary by version: one named error for all
        raise InputFileError(f"{name} file {str(path)!r} cannot be read as {path.suffix[1:]}: {exc}") from None


def _csv_has_header(path: Path) -> bool:
    """A CSV's first line is a header unless every field on it is a number."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        first = fh.readline().strip()
    try:
        [float(f) for f in first.split(",")]
        return False
    except ValueError:
        return True


def _row_name(path: Path, i: int) -> str:
    if path.suffix.lower() == ".csv":
        return f"line {i + 2 if _csv_has_header(path) else i + 1}"
    return f"row {i + 1}"


def encode_labels(values: np.ndarray, *, classes: list[str] | None = None) -> tuple[np.ndarray, list[str] | None]:
    """(N,) class indices and the class names: integer labels are indices already (names
    None); text labels index `classes` (every label must be one) or, without it, their sorted
    set (scikit-learn's order for predict_proba columns)."""
    if np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating):
        return check_labels(values), None
    text = values.astype(str)
    names = list(classes) if classes else sorted(set(text.tolist()))
    index = {c: i for i, c in enumerate(names)}
    unknown = sorted(set(text.tolist()) - set(index))
    if unknown:
        raise InvalidArray(f"label(s) {unknown[:5]!r} are not among the classes {names}")
    return np.array([index[t] for t in text], dtype=np.int64), names


# --- detect -------------------------------------------------------------------------------------


def detect_from_arrays(labels_path, out_path, *, pred_probs_path=None, embeddings_path=None,
                       class_text_path=None, ids_path=None, label_column: str | None = None,
                       id_column: str | None = None, classes: list[str] | None = None,
                       methods: str = "auto", seed: int = 0, k: int = 10, summary: dict | None = None,
                       audit: curation.AuditCount | None = None) -> pl.DataFrame:
    """Label issues for user files -> a Parquet file with one row per sample (atomic).

    Columns: row (0-based), id (when ids are given), label (as given: a name or an index),
    then find_label_issues' columns with suggested_label as a class name for text labels.
    summary: a dict to fill with estimated_noise_rate (the share of labels that look wrong)
    and class_noise_rates (class -> its estimated share; None for a class too rare to judge).
    """
    check_output_file(out_path, "--out")  # before any array is read
    if pred_probs_path is None and embeddings_path is None:
        raise InvalidArray("detect needs --pred-probs and/or --embeddings (got neither)")
    if class_text_path is not None and embeddings_path is None:
        raise InvalidArray("--class-text-embeddings needs --embeddings (the image side of zero-shot)")
    names = parse_methods(methods)
    have = {"pred_probs"} | ({"knn", "embeddings", "probe"} if embeddings_path else set())
    have |= {"class_text_embeddings"} if class_text_path else set()
    for method in () if names == "auto" else names:
        detector = curation.DETECTORS.get(method)
        if detector is None:
            raise InvalidArray(f"unknown detector {method!r}; known: {curation.list_detectors()}")
        missing = [_DETECT_OPTIONS[n] for n in detector.needs if n not in have]
        if missing:
            raise InvalidArray(f"detector {method!r} needs {', '.join(dict.fromkeys(missing))}")

    given = load_column(labels_path, name="label", column=label_column, default="label")
    ids = None
    if ids_path is not None:
        ids = load_column(ids_path, name="id", column=id_column, default="id")
    elif id_column is not None:
        ids = load_column(labels_path, name="id", column=id_column)
    exclude = (id_column,) if id_column else ()
    pred_probs, prob_names = (load_matrix(pred_probs_path, name="pred_probs", exclude=exclude)
                              if pred_probs_path else (None, None))
    embeddings = load_matrix(embeddings_path, name="embeddings", exclude=exclude)[0] if embeddings_path else None
    text = load_matrix(class_text_path, name="class_text_embeddings")[0] if class_text_path else None

    # Text labels and named pred_probs columns: the columns' order is the class order.
    if classes is None and prob_names and set(given.astype(str).tolist()) <= set(prob_names):
        classes = prob_names
    labels, class_names = encode_labels(given, classes=classes)
    if class_names is not None and pred_probs is not None and pred_probs.shape[1] != len(class_names):
        raise InvalidArray(f"labels hold {len(class_names)} classes {class_names[:10]} but pred_probs has "
                           f"{pred_probs.shape[1]} columns; name the columns' classes with --classes")
    if ids is not None:
        _check_ids(ids, len(labels))
    if embeddings is not None and embeddings.ndim == 2 and np.issubdtype(embeddings.dtype, np.floating):
        norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
        embeddings = embeddings / np.where(norms > 0, norms, 1.0)  # the graph assumes unit rows
    report = curation.detect_label_issues(labels, pred_probs=pred_probs, embeddings=embeddings,
                                          class_text_embeddings=text, methods=names, seed=seed, knn_k=k,
                                          n_classes=len(class_names) if class_names else None, audit=audit)
    frame = report.frame
    if summary is not None:
        summary.update(_noise_summary(report.noise_rate, report.class_noise_rates, class_names))
        if report.audit is not None:
            summary["audit"] = report.audit_facts()
    if class_names is not None:
        frame = frame.with_columns(pl.Series("suggested_label", [class_names[i] for i in frame["suggested_label"]],
                                             dtype=pl.String))
    lead = [pl.Series("row", np.arange(frame.height))]
    if ids is not None:
        lead.append(pl.Series("id", ids))
    lead.append(pl.Series("label", given))
    frame = pl.DataFrame(lead).hstack(frame)
    write_parquet(frame, out_path)
    return frame


def _noise_summary(rate: float, class_rates, class_names: list[str] | None) -> dict:
    names = class_names or [str(c) for c in range(len(class_rates))]
    return {"estimated_noise_rate": round(float(rate), 4),
            "class_noise_rates": {names[c]: (None if not np.isfinite(r) else round(float(r), 4))
                                  for c, r in enumerate(class_rates)}}


def detect_multilabel_from_arrays(labels_path, out_path, *, pred_probs_path, ids_path=None,
                                  id_column: str | None = None, classes: list[str] | None = None,
                                  cut: str = "evidence", summary: dict | None = None) -> pl.DataFrame:
    """Multi-label issues for user files -> a Parquet file with one row per sample (atomic).

    labels: an (N, K) 0/1 matrix (.npy, or the numeric columns of a .csv / .parquet, in class
    order); pred_probs: (N, K) out-of-fold probabilities that each class applies. Columns: row,
    id (when given), is_label_issue, label_quality, issue_classes (the classes whose annotation
    looks wrong: present but unlikely, or absent but likely), labels and suggested_labels (the
    given sets, and the sets with those classes flipped). Classes are named by --classes, else
    the label table's column names, else their indices. Reading list columns or separated
    label strings from a manifest is left to the sample-sources registry.
    """
    check_output_file(out_path, "--out")  # before any array is read
    exclude = (id_column,) if id_column else ()
    matrix, label_names = load_matrix(labels_path, name="labels", exclude=exclude)
    probs, prob_names = load_matrix(pred_probs_path, name="pred_probs", exclude=exclude)
    if matrix.ndim != 2:
        raise InvalidArray(f"multi-label labels must be an (N, K) 0/1 matrix, got shape {matrix.shape}")
    if probs.shape != matrix.shape:
        raise InvalidArray(f"labels has shape {matrix.shape} but pred_probs has {probs.shape}; "
                           "both are (N, K) with the classes in the same column order")
    names = classes or label_names or prob_names or [str(c) for c in range(matrix.shape[1])]
    if len(names) != matrix.shape[1]:
        raise InvalidArray(f"--classes names {len(names)} classes but the matrices have {matrix.shape[1]} columns")
    ids = None
    if ids_path is not None:
        ids = load_column(ids_path, name="id", column=id_column, default="id")
    elif id_column is not None:
        ids = load_column(labels_path, name="id", column=id_column)
    if ids is not None:
        _check_ids(ids, len(matrix))
    res = curation.find_multilabel_issues(matrix, probs, cut=cut)
    if summary is not None:
        summary.update(_noise_summary(res.noise_rate, res.class_noise_rates, names))
    as_names = [[names[c] for c in np.flatnonzero(row)] for row in (matrix > 0.5)]
    lead = [pl.Series("row", np.arange(len(matrix)))]
    if ids is not None:
        lead.append(pl.Series("id", ids))
    frame = pl.DataFrame(lead).hstack(pl.DataFrame({
        "is_label_issue": res.is_label_issue,
        "label_quality": res.label_quality,
        "issue_classes": pl.Series([[names[c] for c in np.flatnonzero(r)] for r in res.class_issues],
                                   dtype=pl.List(pl.String)),
        "labels": pl.Series(as_names, dtype=pl.List(pl.String)),
        "suggested_labels": pl.Series([[names[c] for c in np.flatnonzero(r)] for r in res.suggested_labels],
                                      dtype=pl.List(pl.String)),
    }))
    write_parquet(frame, out_path)
    return frame


def _check_ids(ids: np.ndarray, n: int) -> None:
    if len(ids) != n:
        raise InvalidArray(f"ids has {len(ids)} rows but labels has {n}")
    seen: dict = {}
    for i, v in enumerate(ids.tolist()):
        if v in seen:
            raise InvalidArray(f"id {v!r} appears at rows {seen[v]} and {i}; ids must be unique")
        seen[v] = i


# --- ground truth ---------------------------------------------------------------------------------


def known_flips(paths: list[str], labels: list[str], truth: pl.DataFrame) -> np.ndarray:
    """(N,) int8 per sample: 1 its given label is known wrong, 0 known right, -1 not in the truth.

    `truth` is read_ground_truth's: is_flipped where given, else label != true_label.
    """
    joined = pl.DataFrame({"path": paths, "label": labels}, schema={"path": pl.String, "label": pl.String}).join(
        truth, on="path", how="left", maintain_order="left")
    flipped = joined.select(
        pl.coalesce(pl.col("is_flipped"), pl.col("label") != pl.col("true_label")).alias("f"))["f"]
    return np.where(flipped.is_null().to_numpy(), -1, flipped.fill_null(False).to_numpy().astype(np.int8)).astype(np.int8)


def score_against_ground_truth(manifest: pl.DataFrame | str | Path, truth: pl.DataFrame | str | Path) -> dict:
    """Precision / recall / F1 / AUROC / AP of the flagged label issues against a truth table.

    A sample counts as flagged when its reasons include `label_issue`. Scored: the samples
    the truth table covers that were embedded (an unreadable file has no label verdict).
    """
    if not isinstance(manifest, pl.DataFrame):
        manifest = pl.read_parquet(manifest)
    if not isinstance(truth, pl.DataFrame):
        truth = read_ground_truth(truth)
    flips = known_flips(manifest[S.PATH].to_list(), manifest[S.LABEL].to_list(), truth)
    quality = manifest[S.LABEL_QUALITY].to_numpy().astype(np.float64)
    scored = (flips >= 0) & np.isfinite(quality)
    actual = flips[scored] == 1
    flagged = manifest[S.REASONS].list.contains("label_issue").to_numpy()[scored]
    metrics = curation.detection_metrics(actual, quality[scored], flagged)
    out = {key: (round(v, 4) if np.isfinite(v) else None) if isinstance(v, float) else v
           for key, v in metrics.items()}
    return {**out, "true_positives": int((actual & flagged).sum()), "scored": int(scored.sum()),
            "not_scored": int((~scored).sum())}


# --- evaluate -------------------------------------------------------------------------------------


def evaluate_catalog(target: str, noise: str, *, seed: int = 0, encoder: str | None = None,
                     store: str | None = None, k: int = 10, methods: str = "auto",
                     path_column: str | None = None, label_column: str | None = None) -> dict:
    """Plant `noise` on a catalog's clean labels, run each detector and the ensemble, score them.

    The clean labels come from the catalog's ground truth when it has one: a `true_label`
    replaces the given label; a sample marked `is_flipped` without a `true_label` has no
    known clean label and is left out (counted in `excluded_known_flips`). Without ground
    truth the given labels count as clean.
    """
    spec = resolve_catalog(target, path_column=path_column, label_column=label_column)
    table = list_samples(spec)
    classes = classes_of(table)
    parsed = curation.parse_noise_spec(noise)
    names = parse_methods(methods)
    if names != "auto":
        unknown = [m for m in names if m not in curation.DETECTORS]
        if unknown:
            raise InvalidArray(f"unknown detector(s) {unknown!r}; known: {curation.list_detectors()}")
    n_classes = len(classes)
    transition = (load_array(parsed.source, name="transition matrix") if parsed.kind == "matrix"
                  else noise_transition_matrix(parsed.kind, parsed.rate, n_classes=n_classes))
    labels = table.column(S.LABEL_INDEX).to_numpy().astype(np.int64)
    keep = np.ones(len(labels), dtype=bool)
    if spec.ground_truth is not None:
        truth = read_ground_truth(spec.ground_truth)
        paths = table.column(S.PATH).to_pylist()
        joined = pl.DataFrame({"path": paths}).join(truth, on="path", how="left", maintain_order="left")
        index = {c: i for i, c in enumerate(classes)}
        strange = sorted({t for t in joined["true_label"].drop_nulls().to_list() if t not in index})
        if strange:
            raise InvalidArray(f"ground truth {str(spec.ground_truth)!r} has true_label(s) {strange[:5]!r} "
                               f"outside the classes {classes}")
        labels = np.array([index[t] if t is not None else labels[i] for i, t in enumerate(joined["true_label"])])
        keep = ~(joined["is_flipped"].fill_null(False).to_numpy() & joined["true_label"].is_null().to_numpy())

    # Only now the encoder, and with it torch: every mistake above is reported in a second.
    from winnow.embeddings import DEFAULT_ENCODER, EmbeddingStore, embed_samples, get_encoder

    name = encoder or spec.encoder or DEFAULT_ENCODER
    if names != "auto" and "zero_shot" in names and not name.startswith("open_clip:"):
        raise InvalidArray(f"detector 'zero_shot' needs an encoder with a text tower (open_clip:...), not {name!r}")
    enc = get_encoder(name)
    text = None
    if enc.has_text and (names == "auto" or "zero_shot" in names):
        text = enc.encode_text([f"a photo of a {c}." for c in classes])
    noisy = curation.plant_label_noise(labels[keep], transition, seed=seed)
    is_issue = noisy != labels[keep]

    store_dir = store or str(Path(tempfile.gettempdir()) / "winnow-evaluate-store")
    emb_store = EmbeddingStore(store_dir, encoder_id=enc.encoder_id, dim=enc.dim)
    report = embed_samples([p for p, ok in zip(table.column(S.LOCATOR).to_pylist(), keep, strict=True) if ok],
                           open_reader(table), enc, emb_store,
                           refused=[r for r, ok in zip(table.column(S.REFUSED).to_pylist(), keep, strict=True) if ok])
    usable = np.array([r is None for r in report.reason])
    with tempfile.TemporaryDirectory() as tmp:
        matrix = emb_store.write_matrix([h for h, ok in zip(report.content_hash, usable, strict=True) if ok],
                                        Path(tmp) / "emb.npy")
        emb = np.load(matrix)
    noisy, is_issue = noisy[usable], is_issue[usable]
    graph = curation.build_knn_graph(emb, k=k, index=curation.IndexConfig(seed=seed))
    rows = []
    t0 = time.perf_counter()
    full = curation.detect_label_issues(noisy, embeddings=emb, knn=graph, n_classes=n_classes, seed=seed,
                                        methods=names, class_text_embeddings=text)
    ensemble_seconds = time.perf_counter() - t0
    for method in full.methods:
        score = full.frame[f"score_{method}"].to_numpy()
        rows.append({"detector": method, **curation.detection_metrics(is_issue, score, full.detector_flags[method])})
    rows.append({"detector": "ensemble", **curation.detection_metrics(
        is_issue, full.frame["label_quality"].to_numpy(), full.frame["is_label_issue"].to_numpy())})
    true_rates = {classes[c]: round(float(is_issue[noisy == c].mean()), 4) if (noisy == c).any() else None
                  for c in range(n_classes)}
    estimated = _noise_summary(full.noise_rate, full.class_noise_rates, list(classes))["class_noise_rates"]
    return {
        "catalog": spec.name, "encoder": name, "noise": noise, "seed": seed,
        "samples": int(usable.sum()), "excluded_known_flips": int((~keep).sum()),
        "planted": int(is_issue.sum()), "estimated_noise_rate": round(float(full.noise_rate), 4),
        "true_noise_rate": round(float(is_issue.mean()), 4) if len(is_issue) else 0.0,
        "class_noise_rates": {c: {"estimated": estimated[c], "true": true_rates[c]} for c in classes},
        "seconds": round(ensemble_seconds, 2), "detectors": rows,
    }
