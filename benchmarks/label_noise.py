"""Label-noise detection benchmark: Winnow vs cleanlab on development and held-out conditions.

The conditions and their split are benchmarks/label_noise_protocol.py's (committed before any
constant was tuned): every constant of the detectors was chosen on the development split;
the held-out split is reported first and was never used to choose anything.

Every row runs every method on the same inputs (the same planted noise, the same embeddings
and kNN graph, the same pred_probs):
- winnow:   curation.detect_label_issues(methods="auto") on what the data set gives: embeddings
            (Winnow trains its probe), a user's pred_probs, or both;
- cleanlab: cleanlab.filter.find_label_issues (defaults) on the user's pred_probs, else on
            Winnow's out-of-fold probe pred_probs; ranked by cleanlab's self-confidence;
- datalab:  cleanlab's Datalab label check from the embeddings (its own kNN), where there are
            embeddings (--datalab);
- best cut: the best F1 any threshold on Winnow's label_quality could reach (an oracle that
            knows the truth: how much the cut leaves on the table).
Also per row: Winnow's estimated noise rate against the true one; on long tails the false-flag
rate of clean samples in the rarer and the more frequent half of the classes; on rows with a
user's pred_probs AND embeddings the AUROC of each source alone and combined; on rows with
pred_probs, the AUROC of cleanlab's other pred_probs-only scores.

    .venv/bin/python -m benchmarks.label_noise                      # both splits, held-out first
    .venv/bin/python -m benchmarks.label_noise --quick              # CI-sized: a few rows per split
    .venv/bin/python -m benchmarks.label_noise --split dev          # one split
    .venv/bin/python -m benchmarks.label_noise --speed 50000,100000 # + the speed table
    .venv/bin/python -m benchmarks.label_noise --split none --speed 50000,100000   # the speed table alone
    .venv/bin/python -m benchmarks.label_noise --markdown out/label_noise.md

Data are built offline and cached under ~/.cache/winnow/bench/ (benchmarks/label_noise_data.py);
the per-condition pred_probs of the raw-pixel / multi-label logistic regressions (which depend
only on the condition, never on Winnow's code) and Winnow's probe (keyed by its inputs and the
source of curation/small_loss.py) are cached under --cache (default /tmp/winnow-label-noise),
so a rerun after a change to the ensemble or the cut takes minutes, not the better part of an hour.
--dump DIR saves each condition's blend inputs (what curation.ensemble.combine_detectors was
given, plus the truth) so a change to the cut can be tried offline in seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.common import datalab_label_issues, emit, graph_pred_probs, markdown_table
from benchmarks.label_noise_data import (
    Data,
    load,
    long_tail_rows,
    oof_logistic_pred_probs,
    oof_multilabel_pred_probs,
)
from benchmarks.label_noise_protocol import (
    DATASETS,
    NOISE_SEED,
    QUICK,
    SPLITS,
    Condition,
    conditions,
)
from winnow.curation import (
    AuditCount,
    audit_members,
    build_knn_graph,
    detect_label_issues,
    detection_metrics,
    plant_label_noise,
)
from winnow.curation.noise import (
    noise_transition_matrix,
    plant_instance_noise,
    plant_multilabel_noise,
    sparse_noise_matrix,
)

DATA_DIR = Path(__file__).resolve().parent / "data"
# Per-condition pred_probs (set by --cache); None = no cache.
PRED_CACHE: list[Path | None] = [Path(os.environ.get("WINNOW_LABEL_NOISE_CACHE", "/tmp/winnow-label-noise"))]
# Samples of the largest class on long-tail rows (the rarest keeps n_max / ratio).
LONG_TAIL_N_MAX = {"gmm": 2000, "text-minilm": 1000}


@dataclass
class Prepared:
    noisy: np.ndarray  # (N,) given labels (or (N, K) bool sets)
    true: np.ndarray  # (N,) true labels (or (N, K) bool)
    embeddings: np.ndarray | None  # what Winnow is given
    pred_probs: np.ndarray | None  # a user's out-of-fold pred_probs (or multi-label (N, K))
    graph: object | None
    extra: dict = field(default_factory=dict)


_DATA: dict[str, Data] = {}
_GRAPHS: dict[tuple, object] = {}


def _data(name: str) -> Data:
    if name not in _DATA:
        if name == "gmm-20000":  # the long-tail rows draw from a larger mixture
            from benchmarks.label_noise_data import gaussian_mixture

            _DATA[name] = gaussian_mixture(n=20000)
        else:
            _DATA[name] = load(name)
    return _DATA[name]


def transition_for(kind: str, rate, k: int, *, sparsity=None, seed: int = NOISE_SEED) -> np.ndarray:
    if kind == "cifar10n":
        return np.loadtxt(DATA_DIR / f"cifar10n_{rate}.csv", delimiter=",")
    if kind == "sparse":
        return sparse_noise_matrix(k, rate, sparsity=sparsity, seed=seed)
    return noise_transition_matrix(kind, rate, n_classes=k)


def _cached_probs(cond: Condition, what: str, noisy: np.ndarray, build) -> np.ndarray:
    """pred_probs that depend only on the condition (data, planted noise): from the cache when
    the same noisy labels were seen before (the key hashes them), else built and saved."""
    folder = PRED_CACHE[0]
    if folder is None:
        return build()
    digest = hashlib.sha1(np.ascontiguousarray(noisy).tobytes()).hexdigest()[:16]
    # The raw view is the data source's (mnist-lr and mnist-lr+effnet share their pixels).
    path = folder / f"{what}-{cond.dataset.split('-')[0]}-{cond.imbalance}-{digest}.npy"
    if path.exists():
        return np.load(path)
    out = np.asarray(build())
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.npy")
    np.save(tmp, out)
    os.replace(tmp, path)
    return out


def cache_probe() -> None:
    """Cache Winnow's K-fold probe under --cache: keyed by a hash of its inputs AND of the source of
    curation/small_loss.py (a change to the probe is a new key), so reruns after a change to the
    ensemble or the cut skip the training. Detection is otherwise unchanged (the cached
    ProbeResult is the one fit_probe returned)."""
    import pickle

    import winnow.curation.label_issues as li
    import winnow.curation.small_loss as sl

    original = li.fit_probe
    code = hashlib.sha1(Path(sl.__file__).read_bytes()).hexdigest()[:12]

    def cached(embeddings, labels, **kw):
        folder = PRED_CACHE[0]
        if folder is None:
            return original(embeddings, labels, **kw)
        h = hashlib.sha1(code.encode())
        for a in (embeddings, labels, kw.get("groups")):
            h.update(b"-" if a is None else np.ascontiguousarray(a).tobytes())
        h.update(repr(sorted((k, v) for k, v in kw.items() if k != "groups")).encode())
        path = folder / f"probe-{h.hexdigest()[:20]}.pkl"
        if path.exists():
            return pickle.loads(path.read_bytes())
        out = original(embeddings, labels, **kw)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.pkl")
        tmp.write_bytes(pickle.dumps(out))
        os.replace(tmp, path)
        return out

    li.fit_probe = cached


def prepare(cond: Condition) -> Prepared:
    """The inputs of one condition: noisy labels, truth, and what each method is given."""
    spec = DATASETS[cond.dataset]
    data = _data("gmm-20000" if cond.dataset == "gmm" and cond.imbalance > 1 else cond.dataset)
    if spec.inputs == "multilabel":
        noisy = plant_multilabel_noise(data.labels, cond.noise.kind, cond.noise.rate, seed=NOISE_SEED)
        features = data.embeddings if data.embeddings is not None else data.raw
        probs = _cached_probs(cond, "ml", noisy, lambda: oof_multilabel_pred_probs(features, noisy, seed=NOISE_SEED))
        return Prepared(noisy, data.labels, None, probs, None)
    rows = np.arange(len(data.labels))
    if cond.imbalance > 1:
        rows = long_tail_rows(data.labels, cond.imbalance, n_max=LONG_TAIL_N_MAX.get(cond.dataset), seed=NOISE_SEED)
    true = data.labels[rows]
    k = int(true.max()) + 1
    noise = cond.noise
    if noise.kind == "instance":
        noisy = plant_instance_noise(true, data.raw[rows], noise.rate, seed=NOISE_SEED)
    else:
        noisy = plant_label_noise(true, transition_for(noise.kind, noise.rate, k, sparsity=noise.sparsity), seed=NOISE_SEED)
    emb = data.embeddings[rows] if spec.inputs in ("embeddings", "both") else None
    probs = None
    if spec.inputs in ("pred_probs", "both"):
        probs = _cached_probs(cond, "lr", noisy, lambda: oof_logistic_pred_probs(data.raw[rows], noisy, seed=NOISE_SEED))
    graph = None
    if emb is not None:
        key = (cond.dataset, cond.imbalance, len(rows))
        if key not in _GRAPHS:
            _GRAPHS[key] = build_knn_graph(emb, k=10)
        graph = _GRAPHS[key]
    return Prepared(noisy, true, emb, probs, graph)


def best_threshold_f1(truth: np.ndarray, quality: np.ndarray) -> float:
    """The best F1 any cut of the ranking could reach (flag the m lowest, best m): an oracle."""
    order = np.argsort(quality, kind="stable")
    tp = np.cumsum(truth[order])
    m = np.arange(1, len(quality) + 1)
    return float((2 * tp / (m + truth.sum())).max()) if truth.any() else 0.0


def false_flag_rates(given: np.ndarray, truth: np.ndarray, flagged: np.ndarray) -> tuple[float, float]:
    """Share of clean samples flagged in the rarer half of the classes and in the more frequent half."""
    k = int(given.max()) + 1
    order = np.argsort(-np.bincount(given, minlength=k), kind="stable")
    half = k // 2

    def rate(classes):
        clean = np.isin(given, classes) & ~truth
        return float(flagged[clean].mean()) if clean.any() else float("nan")

    return rate(order[half:]), rate(order[:half])


def _auroc(truth, quality) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(truth, -np.asarray(quality))) if 0 < truth.sum() < len(truth) else float("nan")


def _detect_dumping(dump: Path | None, name: str, truth: np.ndarray, *args, **kwargs):
    """detect_label_issues; with `dump`, also save what the ensemble was given (the sources' class
    distributions, score-only evidence, sample weights) and the truth to dump/name.npz."""
    if dump is None:
        return detect_label_issues(*args, **kwargs)
    import winnow.curation.label_issues as li

    seen = {}
    original = li.combine_detectors

    def spy(labels, class_probs, *, scores=None, sample_weight=None):
        seen.update(labels=labels, class_probs=class_probs, scores=scores, sample_weight=sample_weight)
        return original(labels, class_probs, scores=scores, sample_weight=sample_weight)

    li.combine_detectors = spy
    try:
        rep = detect_label_issues(*args, **kwargs)
    finally:
        li.combine_detectors = original
    if seen and len(seen["labels"]) == len(truth):  # rare classes left out: rows differ, not dumped
        arrays = {"labels": seen["labels"], "truth": truth}
        arrays.update({f"probs_{k}": v for k, v in seen["class_probs"].items()})
        arrays.update({f"score_{k}": v for k, v in (seen["scores"] or {}).items()})
        if seen["sample_weight"] is not None:
            arrays["sample_weight"] = seen["sample_weight"]
        dump.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(dump / f"{name}.npz", **arrays)
    return rep


def run_condition(cond: Condition, *, with_datalab: bool = False, dump: Path | None = None,
                  sources: bool = True, audit_size: int = 0) -> dict:
    """Every method on one condition; metrics per method plus the row's extras."""
    p = prepare(cond)
    if DATASETS[cond.dataset].inputs == "multilabel":
        return run_multilabel(p)
    from cleanlab.filter import find_label_issues as cleanlab_find
    from cleanlab.rank import get_label_quality_scores

    truth = p.noisy != p.true
    out: dict = {"true_rate": float(truth.mean())}
    t = time.perf_counter()
    name = f"{cond.split}__{cond.dataset}__{cond.noise.label.replace(' ', '_')}__{cond.imbalance}"
    rep = _detect_dumping(dump, name, truth, p.noisy, embeddings=p.embeddings, knn=p.graph,
                          pred_probs=p.pred_probs, seed=0)
    out["seconds"] = time.perf_counter() - t
    f = rep.frame
    quality, flagged = f["label_quality"].to_numpy(), f["is_label_issue"].to_numpy()
    out["winnow"] = detection_metrics(truth, quality, flagged)
    out["best_cut"] = best_threshold_f1(truth, quality)
    out["est_rate"] = float(rep.noise_rate)
    probs = p.pred_probs if p.pred_probs is not None else rep.pred_probs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mask = cleanlab_find(p.noisy, probs, n_jobs=1)
        score = get_label_quality_scores(p.noisy, probs)
    out["cleanlab"] = detection_metrics(truth, score, mask)
    if cond.imbalance > 1:
        out["ffr"] = {"winnow": false_flag_rates(p.noisy, truth, flagged), "cleanlab": false_flag_rates(p.noisy, truth, mask)}
    if p.pred_probs is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out["scores"] = {
                "self_confidence": _auroc(truth, get_label_quality_scores(p.noisy, p.pred_probs)),
                "normalized_margin": _auroc(truth, get_label_quality_scores(p.noisy, p.pred_probs, method="normalized_margin")),
                "confidence_weighted_entropy": _auroc(
                    truth, get_label_quality_scores(p.noisy, p.pred_probs, method="confidence_weighted_entropy")),
                "adjusted self_confidence": _auroc(
                    truth, get_label_quality_scores(p.noisy, p.pred_probs, adjust_pred_probs=True)),
                "adjusted normalized_margin": _auroc(
                    truth, get_label_quality_scores(p.noisy, p.pred_probs, method="normalized_margin",
                                                    adjust_pred_probs=True)),
            }
    if sources and p.pred_probs is not None and p.embeddings is not None:
        alone = detect_label_issues(p.noisy, embeddings=p.embeddings, knn=p.graph, seed=0).frame
        only_probs = detect_label_issues(p.noisy, pred_probs=p.pred_probs, seed=0).frame
        out["sources"] = {"pred_probs": _auroc(truth, only_probs["label_quality"].to_numpy()),
                          "embeddings": _auroc(truth, alone["label_quality"].to_numpy()),
                          "both": out["winnow"]["auroc"]}
    if audit_size:
        # A person checks `audit_size` rows of the audit sample (hash of the row's id, as a run
        # chooses them) and answers truthfully; Winnow is given what they found.
        member = audit_members([f"row{i}" for i in range(len(truth))], size=audit_size)
        audit = AuditCount(int(member.sum()), int(truth[member].sum()))
        audited = detect_label_issues(p.noisy, embeddings=p.embeddings, knn=p.graph, pred_probs=p.pred_probs,
                                      seed=0, audit=audit)
        fa = audited.frame
        out["audit"] = {**detection_metrics(truth, fa["label_quality"].to_numpy(), fa["is_label_issue"].to_numpy()),
                        "est_rate": float(audited.noise_rate), "overruled": audited.audit_overruled,
                        "checked": audit.checked, "wrong": audit.wrong, "interval": audit.interval()}
    if with_datalab and p.embeddings is not None:
        flagged_d, score_d, seconds = datalab_label_issues(p.noisy, features=p.embeddings)
        out["datalab"] = detection_metrics(truth, score_d, flagged_d)
        out["datalab"]["seconds"] = seconds
    return out


def run_multilabel(p: Prepared) -> dict:
    from cleanlab.multilabel_classification.filter import find_label_issues as ml_find
    from cleanlab.multilabel_classification.rank import get_label_quality_scores as ml_rank

    from winnow.curation import find_multilabel_issues

    truth = (p.noisy != p.true).any(axis=1)
    sets = [list(np.flatnonzero(row)) for row in p.noisy]
    t = time.perf_counter()
    res = find_multilabel_issues(p.noisy, p.pred_probs)
    out = {"true_rate": float(truth.mean()), "seconds": time.perf_counter() - t}
    out["winnow"] = detection_metrics(truth, res.label_quality, res.is_label_issue)
    out["best_cut"] = best_threshold_f1(truth, res.label_quality)
    out["est_rate"] = res.noise_rate
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["cleanlab"] = detection_metrics(truth, ml_rank(sets, p.pred_probs), ml_find(sets, p.pred_probs))
    cells = p.noisy != p.true
    out["cells"] = {"winnow": detection_metrics(cells.ravel(), res.class_quality.ravel(), res.class_issues.ravel())["f1"]}
    # Per class: estimated / true share of samples whose class cell is wrong.
    out["class_ratios"] = res.class_noise_rates / np.maximum(cells.mean(axis=0), 1e-12)
    return out


# --- tables -------------------------------------------------------------------------------------


def _f(x, nd=3) -> str:
    return "-" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{nd}f}"


def quality_table(split: str, rows: list[tuple[Condition, dict]], *, with_datalab: bool) -> list[str]:
    """One split's single-label table and the lines that check it against the targets."""
    header = ["data", "noise", "tail", "true %", "est %", "winnow F1/AUROC", "cleanlab F1/AUROC", "best cut F1"]
    if with_datalab:
        header.append("datalab F1")
    header.append("s")
    body, wins, gaps, est_ok, ratios = [], 0, [], 0, []
    single = [(c, r) for c, r in rows if "cells" not in r]
    for cond, r in single:
        w, c = r["winnow"], r["cleanlab"]
        ok = w["f1"] >= c["f1"] - 1e-9
        wins += ok
        gaps.append(r["best_cut"] - w["f1"])
        ratio = r["est_rate"] / r["true_rate"] if r["true_rate"] else float("nan")
        ratios.append(ratio)
        est_ok += abs(ratio - 1) <= 0.2
        wf = f"{w['f1']:.3f}" if ok else f"**{w['f1']:.3f}**"
        cells = [cond.dataset, cond.noise.label, "-" if cond.imbalance == 1 else f"IR {cond.imbalance}",
                 f"{100 * r['true_rate']:.1f}", f"{100 * r['est_rate']:.1f}", f"{wf}/{_f(w['auroc'])}",
                 f"{c['f1']:.3f}/{_f(c['auroc'])}", f"{r['best_cut']:.3f}"]
        if with_datalab:
            cells.append(_f(r["datalab"]["f1"]) if "datalab" in r else "-")
        cells.append(f"{r['seconds']:.1f}")
        body.append(cells)
    if not single:
        return []
    mean_w = np.mean([r["winnow"]["f1"] for _, r in single])
    mean_c = np.mean([r["cleanlab"]["f1"] for _, r in single])
    body.append(["**mean**", "", "", "", "", f"{mean_w:.3f}", f"{mean_c:.3f}",
                 f"{np.mean([r['best_cut'] for _, r in single]):.3f}"] + (["" ] if with_datalab else []) + [""])
    table = markdown_table(header, body, align="lll" + "r" * (len(header) - 3))
    n = len(single)
    worst = max(zip(gaps, single, strict=True), key=lambda g: g[0])
    far = [f"{c.dataset} {c.noise.label}{'' if c.imbalance == 1 else f' IR {c.imbalance}'} ({ratio:.2f}x)"
           for (c, _), ratio in zip(single, ratios, strict=True) if not abs(ratio - 1) <= 0.2]
    lines = [
        f"{split}: {n} conditions. Winnow's F1 >= cleanlab's in {wins}/{n} (bold: below). Mean F1 winnow "
        f"{mean_w:.3f}, cleanlab {mean_c:.3f}. Mean gap to the best cut on Winnow's own ranking "
        f"{np.mean(gaps):.3f} (largest {worst[0]:.3f}: {worst[1][0].dataset} {worst[1][0].noise.label}). "
        f"Estimated noise rate within 20% of the true one in {est_ok}/{n}"
        + (f"; outside: {', '.join(far)}" if far else "") + "."
    ]
    return [table, *lines]


def sources_table(split: str, rows) -> list[str]:
    both = [(c, r) for c, r in rows if "sources" in r]
    if not both:
        return []
    body = [[c.dataset, c.noise.label, "-" if c.imbalance == 1 else f"IR {c.imbalance}",
             _f(r["sources"]["pred_probs"]), _f(r["sources"]["embeddings"]), _f(r["sources"]["both"])]
            for c, r in both]
    above = sum(r["sources"]["both"] > max(r["sources"]["pred_probs"], r["sources"]["embeddings"]) for _, r in both)
    above_p = sum(r["sources"]["both"] > r["sources"]["pred_probs"] for _, r in both)
    return [markdown_table(["data", "noise", "tail", "AUROC pred_probs alone", "AUROC embeddings alone", "AUROC both"],
                           body, align="lllrrr"),
            f"{split}: with both sources Winnow's AUROC is above the pred_probs alone in {above_p}/{len(both)} "
            f"conditions and above either alone in {above}/{len(both)}."]


def scores_table(split: str, rows) -> list[str]:
    have = [r["scores"] for _, r in rows if "scores" in r]
    if not have:
        return []
    names = list(have[0])
    body = [[name, f"{np.nanmean([h[name] for h in have]):.4f}",
             f"{np.nanmin([h[name] for h in have]):.4f}"] for name in names]
    winnow = [r["winnow"]["auroc"] for _, r in rows if "scores" in r and "sources" not in r]
    if winnow:
        body.append(["Winnow label_quality (pred_probs only)", f"{np.mean(winnow):.4f}", f"{np.min(winnow):.4f}"])
    return [markdown_table(["pred_probs-only score (cleanlab.rank)", "mean AUROC", "min AUROC"], body, align="lrr"),
            f"{split}: over the {len(have)} conditions with a user's pred_probs."]


def tail_table(split: str, rows) -> list[str]:
    tails = [(c, r) for c, r in rows if "ffr" in r]
    if not tails:
        return []
    body = [[c.dataset, c.noise.label, f"IR {c.imbalance}",
             f"{100 * r['ffr']['winnow'][0]:.1f} / {100 * r['ffr']['winnow'][1]:.1f}",
             f"{100 * r['ffr']['cleanlab'][0]:.1f} / {100 * r['ffr']['cleanlab'][1]:.1f}"] for c, r in tails]
    return [markdown_table(["data", "noise", "tail", "winnow false flags % rare / frequent half",
                            "cleanlab false flags % rare / frequent half"], body, align="lllrr"),
            f"{split}: share of CLEAN samples flagged, in the rarer and the more frequent half of the classes."]


def audit_table(split: str, rows) -> list[str]:
    audited = [(c, r) for c, r in rows if "audit" in r]
    if not audited:
        return []

    def within(est, true) -> bool:
        return abs(est / true - 1) <= 0.2

    body = []
    for c, r in audited:
        a = r["audit"]
        lo, hi = a["interval"]
        body.append([c.dataset, c.noise.label, "-" if c.imbalance == 1 else f"IR {c.imbalance}",
                     f"{100 * r['true_rate']:.1f}", f"{a['wrong']}/{a['checked']} ({100 * lo:.1f}-{100 * hi:.1f})",
                     f"{100 * r['est_rate']:.1f}", f"{100 * a['est_rate']:.1f}", "yes" if a["overruled"] else "no",
                     _f(r["winnow"]["f1"]), _f(a["f1"]), _f(r["cleanlab"]["f1"])])
    n = len(audited)
    f_no = np.mean([r["winnow"]["f1"] for _, r in audited])
    f_au = np.mean([r["audit"]["f1"] for _, r in audited])
    f_cl = np.mean([r["cleanlab"]["f1"] for _, r in audited])
    ok_no = sum(within(r["est_rate"], r["true_rate"]) for _, r in audited)
    ok_au = sum(within(r["audit"]["est_rate"], r["true_rate"]) for _, r in audited)
    ge = sum(r["audit"]["f1"] >= r["cleanlab"]["f1"] for _, r in audited)
    return [markdown_table(["data", "noise", "tail", "true %", "audit wrong (95% %)", "est % alone", "est % audited",
                            "overruled", "winnow F1 alone", "winnow F1 audited", "cleanlab F1"], body,
                           align="lllrrrrlrrr"),
            f"{split}: with an audit of {audited[0][1]['audit']['checked']} rows (a person's true answers). "
            f"Mean F1 alone {f_no:.3f}, audited {f_au:.3f}, cleanlab {f_cl:.3f}; audited F1 >= cleanlab's in "
            f"{ge}/{n}; estimate within 20% of the true rate alone {ok_no}/{n}, audited {ok_au}/{n}."]


def multilabel_table(split: str, rows) -> list[str]:
    ml = [(c, r) for c, r in rows if "cells" in r]
    if not ml:
        return []

    def within(ratio) -> bool:
        return bool(abs(ratio - 1) <= 0.2)

    body = [[c.dataset, c.noise.label, f"{100 * r['true_rate']:.1f}", f"{100 * r['est_rate']:.1f}",
             f"{sum(within(x) for x in r['class_ratios'])}/{len(r['class_ratios'])} "
             f"({np.nanmin(r['class_ratios']):.1f}-{np.nanmax(r['class_ratios']):.1f}x)",
             f"{r['winnow']['f1']:.3f}/{_f(r['winnow']['auroc'])}", f"{r['cleanlab']['f1']:.3f}/{_f(r['cleanlab']['auroc'])}",
             f"{r['best_cut']:.3f}", f"{r['cells']['winnow']:.3f}"] for c, r in ml]
    ok = sum(within(r["est_rate"] / r["true_rate"]) for _, r in ml if r["true_rate"])
    return [markdown_table(["data", "noise", "samples with a wrong label %", "est %",
                            "classes est within 20% (est/true range)", "winnow F1/AUROC",
                            "cleanlab multi-label F1/AUROC", "best cut F1", "winnow per-cell F1"], body,
                           align="llrrrrrrr"),
            f"{split}: multi-label, per sample (a sample is wrong when any class cell is); `find_multilabel_issues` "
            "against cleanlab.multilabel_classification.filter.find_label_issues on the same out-of-fold pred_probs. "
            f"Estimated share of samples with a wrong label within 20% of the true one in {ok}/{len(ml)}."]


# --- speed ----------------------------------------------------------------------------------------


def clustered_low_rank(n: int, *, d: int = 512, latent: int = 16, concepts: int = 50, k: int = 10, seed: int = 0):
    """(N, d) L2-normalised rows: 50 Gaussian concepts in a 16-d latent space, lifted to d by a
    random linear map plus a little isotropic noise; concept c carries label c % 10."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(concepts, latent)) * 1.5
    concept = rng.integers(0, concepts, n)
    z = centres[concept] + rng.normal(size=(n, latent))
    lift = rng.normal(size=(latent, d)) / np.sqrt(latent)
    x = z @ lift + 0.1 * rng.normal(size=(n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), (concept % k).astype(np.int64)


def speed_table(sizes: list[int], *, datalab_max: int = 50000, seed: int = 0) -> list[str]:
    """Graph + detection against Datalab's label check, side by side in this run."""
    rows, notes = [], []

    def timed(fn, *a, **kw):
        t, c = time.perf_counter(), time.process_time()
        out = fn(*a, **kw)
        return out, time.perf_counter() - t, time.process_time() - c

    for n in sizes:
        x, y = clustered_low_rank(n, seed=seed)
        noisy = plant_label_noise(y, noise_transition_matrix("symmetric", 0.2, n_classes=10), seed=seed)
        truth = noisy != y
        print(f"  speed: {n}", file=sys.stderr, flush=True)
        graph, t_graph, c_graph = timed(build_knn_graph, x, k=10)
        rep, t_det, c_det = timed(detect_label_issues, noisy, embeddings=x, knn=graph, seed=seed)
        f = rep.frame
        w = detection_metrics(truth, f["label_quality"].to_numpy(), f["is_label_issue"].to_numpy())
        total = t_graph + t_det
        rows.append([f"{n:,}", "Winnow: graph + `detect_label_issues`", f"{graph.method} (recall {graph.recall:.3f})",
                     f"{t_graph:.1f} + {t_det:.1f} = {total:.1f}", f"{c_graph + c_det:.1f}", f"{w['f1']:.3f}"])
        (fl, sc, _), t_dg, c_dg = timed(datalab_label_issues, noisy, pred_probs=graph_pred_probs(graph.indices, noisy, 10))
        rows.append([f"{n:,}", "Datalab label check given Winnow's graph", graph.method,
                     f"{t_graph:.1f} + {t_dg:.1f} = {t_graph + t_dg:.1f}", f"{c_graph + c_dg:.1f}",
                     f"{detection_metrics(truth, sc, fl)['f1']:.3f}"])
        line = f"{n:,}: Winnow {total:.1f} s end to end"
        if n <= datalab_max:
            (fl, sc, _), t_own, c_own = timed(datalab_label_issues, noisy, features=x)
            rows.append([f"{n:,}", "Datalab label check from features", "its own (scikit-learn)", f"{t_own:.1f}",
                         f"{c_own:.1f}", f"{detection_metrics(truth, sc, fl)['f1']:.3f}"])
            line += f", Datalab from features {t_own:.1f} s ({t_own / total:.1f}x Winnow's time)"
        notes.append(line)
    table = markdown_table(["N", "what", "kNN graph", "seconds", "CPU s", "F1"], rows, align="rlllrr")
    return [table, "Clustered low-rank data: 50 concepts in a 16-d latent space lifted to 512-d, 10 labels, "
            f"symmetric 20% flips, seed {seed}, all in one process (CPU s: all its threads). " + "; ".join(notes) + "."]


# --- main -----------------------------------------------------------------------------------------


def _row_line(r: dict) -> str:
    """One condition's result as a log line, printed as soon as it is known."""
    line = (f"true {100 * r['true_rate']:.1f}% est {100 * r['est_rate']:.1f}% | F1 winnow {r['winnow']['f1']:.3f} "
            f"cleanlab {r['cleanlab']['f1']:.3f} best cut {r['best_cut']:.3f}")
    if "ffr" in r:
        (wr, wf), (cr, cf) = r["ffr"]["winnow"], r["ffr"]["cleanlab"]
        line += f" | false flags rare/frequent winnow {100 * wr:.1f}/{100 * wf:.1f}% cleanlab {100 * cr:.1f}/{100 * cf:.1f}%"
    return line


def _selected(split: str, *, quick: bool, datasets: tuple[str, ...] | None) -> list[Condition]:
    conds = conditions(split, datasets=datasets)
    if quick:
        want = set(QUICK[split])
        conds = [c for c in conds if (c.dataset, c.noise.label) in want and c.imbalance == 1]
    return conds


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=[*SPLITS, "both", "none"], default="both",
                    help="which conditions to run; none: only the --speed table")
    ap.add_argument("--datasets", default="", help="comma-separated protocol data sets (default: all of the split)")
    ap.add_argument("--quick", action="store_true", help="a few conditions per split (CI-sized)")
    ap.add_argument("--datalab", action="store_true", help="also run Datalab's label check where there are embeddings")
    ap.add_argument("--speed", default="", metavar="N[,N]", help="also time graph + detection at these sizes")
    ap.add_argument("--speed-datalab-max", type=int, default=50000,
                    help="largest N at which Datalab runs from features in the speed table")
    ap.add_argument("--markdown", type=Path, help="also write the tables as markdown to this file")
    ap.add_argument("--cache", type=Path, default=PRED_CACHE[0],
                    help="folder caching each condition's logistic-regression pred_probs ('' = none)")
    ap.add_argument("--dump", type=Path, help="save each condition's ensemble inputs and truth here (npz)")
    ap.add_argument("--audit", type=int, default=0, metavar="N",
                    help="also run Winnow given an audit of N rows (the truth on the audit sample) and tabulate it")
    ap.add_argument("--no-sources", action="store_true",
                    help="skip the per-source AUROC runs on rows with pred_probs AND embeddings (2 extra detections)")
    args = ap.parse_args(argv)
    PRED_CACHE[0] = args.cache if str(args.cache) not in ("", ".") else None
    cache_probe()
    datasets = tuple(filter(None, args.datasets.split(","))) or None
    blocks = []
    for split in {"both": SPLITS, "none": ()}.get(args.split, (args.split,)):
        rows = []
        for cond in _selected(split, quick=args.quick, datasets=datasets):
            t = time.perf_counter()
            r = run_condition(cond, with_datalab=args.datalab, dump=args.dump, sources=not args.no_sources,
                              audit_size=args.audit)
            rows.append((cond, r))
            print(f"  {split} {cond.dataset} {cond.noise.label} IR {cond.imbalance}: {_row_line(r)} "
                  f"({time.perf_counter() - t:.1f} s)", file=sys.stderr, flush=True)
        title = "Held-out conditions" if split == "held_out" else "Development conditions"
        blocks.append(f"### {title}")
        blocks += quality_table(split, rows, with_datalab=args.datalab)
        blocks += sources_table(split, rows)
        blocks += scores_table(split, rows)
        blocks += tail_table(split, rows)
        blocks += audit_table(split, rows)
        blocks += multilabel_table(split, rows)
    if args.speed:
        blocks.append("### Speed")
        blocks += speed_table([int(s) for s in args.speed.split(",")], datalab_max=args.speed_datalab_max)
    emit(blocks, args.markdown)


if __name__ == "__main__":
    main()
