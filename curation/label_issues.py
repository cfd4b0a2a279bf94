"""find_label_issues: every label-noise detector that the inputs allow, and their ensemble.

Detectors are looked up by name in DETECTORS (see list_detectors()). Each is a pure
function of a DetectionInputs and returns a per-sample score in [0, 1] (low = likely
mislabelled), optionally a class distribution that the ensemble blends, and its own
flags. A user may bring only pred_probs, only embeddings (a probe is then trained
K-fold for out-of-fold pred_probs), or both.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from winnow.curation.audit import AuditCount, AuditRows
from winnow.curation.confident_learning import find_confident_learning_issues
from winnow.curation.duplicates import find_duplicates, near_duplicate_threshold
from winnow.curation.ensemble import EnsembleVerdict, combine_detectors
from winnow.curation.errors import InvalidArray
from winnow.curation.knn_graph import KnnGraph, build_knn_graph
from winnow.curation.knn_noise import (
    build_voter_graph,
    find_knn_label_issues,
    find_simifeat_label_issues,
    flag_lowest,
)
from winnow.curation.small_loss import ProbeResult, fit_probe, split_small_loss
from winnow.curation.validation import (
    check_cosine_graph,
    check_every_class_present,
    check_labels,
    check_pred_probs,
    check_same_length,
    check_unit_embeddings,
    scatter_rows,
)
from winnow.curation.zero_shot import CLIP_TEMPERATURE, zero_shot_pred_probs

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectionInputs:
    labels: np.ndarray  # (N,) int64 given labels, validated
    n_classes: int  # K
    pred_probs: np.ndarray | None  # (N, K) out-of-fold probabilities: the user's, else the probe's
    embeddings: np.ndarray | None  # (N, D) float32, L2-normalised rows
    knn: KnnGraph | None  # (N, k) the voters: the kNN graph with duplicates collapsed (knn_noise.build_voter_graph)
    probe: ProbeResult | None  # the K-fold probe, when it ran
    class_text_embeddings: np.ndarray | None  # (K, D) text-tower embeddings of class prompts
    zero_shot_temperature: float  # softmax temperature for zero-shot priors
    seed: int  # every random choice derives from it


@dataclass(frozen=True)
class DetectorOutput:
    score: np.ndarray  # (N,) float64 in [0, 1]: low = the given label is likely wrong
    class_probs: np.ndarray | None  # (N, K) distribution the ensemble blends; None = score only
    is_label_issue: np.ndarray | None  # (N,) bool: the detector's own flags; None = cut at the ensemble's noise rate


@dataclass(frozen=True)
class Detector:
    detect: Callable[[DetectionInputs], DetectorOutput]  # the pure function
    needs: tuple[str, ...]  # inputs it reads: "pred_probs", "knn", "embeddings", "probe", "class_text_embeddings"
    auto: bool  # run by methods="auto" when its inputs are there
    blend: str  # in the ensemble: "probs" (its class distribution), "score" (label_quality only), "none"
    summary: str  # one line for list_detectors() / the CLI


def _detect_knn_vote(inp: DetectionInputs) -> DetectorOutput:
    v = find_knn_label_issues(inp.labels, inp.knn, n_classes=inp.n_classes)
    return DetectorOutput(score=v.label_quality, class_probs=v.vote_probs, is_label_issue=None)


def _detect_simifeat(inp: DetectionInputs) -> DetectorOutput:
    v = find_simifeat_label_issues(inp.labels, inp.embeddings, inp.knn, n_classes=inp.n_classes, seed=inp.seed)
    return DetectorOutput(score=v.label_quality, class_probs=v.vote_probs, is_label_issue=None)


def _detect_small_loss(inp: DetectionInputs) -> DetectorOutput:
    if inp.probe is not None:
        losses = inp.probe.losses
    else:
        own = inp.pred_probs[np.arange(len(inp.labels)), inp.labels]
        losses = -np.log(np.clip(own, 1e-12, None))
    split = split_small_loss(losses)
    return DetectorOutput(score=split.clean_prob, class_probs=None, is_label_issue=split.is_noisy)


def _detect_aum(inp: DetectionInputs) -> DetectorOutput:
    # A logistic squash keeps the ranking and maps the margin (any real) into [0, 1].
    score = 1.0 / (1.0 + np.exp(-np.clip(inp.probe.aum, -50, 50)))
    return DetectorOutput(score=score, class_probs=None, is_label_issue=None)


def _detect_confident_learning(inp: DetectionInputs) -> DetectorOutput:
    cl = find_confident_learning_issues(inp.labels, inp.pred_probs)
    return DetectorOutput(score=cl.label_quality, class_probs=inp.pred_probs, is_label_issue=cl.is_label_issue)


def _detect_probe(inp: DetectionInputs) -> DetectorOutput:
    probs = inp.probe.pred_probs
    return DetectorOutput(score=probs[np.arange(len(inp.labels)), inp.labels], class_probs=probs, is_label_issue=None)


def _detect_zero_shot(inp: DetectionInputs) -> DetectorOutput:
    probs = zero_shot_pred_probs(inp.embeddings, inp.class_text_embeddings, temperature=inp.zero_shot_temperature)
    return DetectorOutput(score=probs[np.arange(len(inp.labels)), inp.labels], class_probs=probs, is_label_issue=None)


DETECTORS: dict[str, Detector] = {
    "knn_vote": Detector(_detect_knn_vote, ("knn",), True, "probs",
                         "similarity-weighted vote of the k nearest neighbours' labels"),
    "simifeat": Detector(_detect_simifeat, ("knn", "embeddings"), False, "probs",
                         "SimiFeat-style hard kNN votes over random feature subsets"),
    "small_loss": Detector(_detect_small_loss, ("pred_probs",), True, "none",
                           "2-component Gaussian mixture over out-of-fold losses (DivideMix split)"),
    "aum": Detector(_detect_aum, ("probe",), True, "score",
                    "area under the margin over the probe's training epochs"),
    "confident_learning": Detector(_detect_confident_learning, ("pred_probs",), True, "probs",
                                   "confident joint + prune by noise rate on out-of-fold pred_probs"),
    # A second source of class evidence beside the user's pred_probs: the probe sees the
    # embeddings, the user's model saw something else (pixels, text), and their errors differ.
    "probe": Detector(_detect_probe, ("probe",), True, "probs",
                      "the embedding probe's out-of-fold class probabilities, beside a user's pred_probs"),
    "zero_shot": Detector(_detect_zero_shot, ("embeddings", "class_text_embeddings"), True, "probs",
                          "CLIP text-tower class prompts as a training-free prior"),
}


def list_detectors() -> list[str]:
    """Names accepted by find_label_issues(methods=...)."""
    return sorted(DETECTORS)


@dataclass(frozen=True)
class LabelIssueReport:
    frame: object  # polars.DataFrame, one row per sample in input order (see find_label_issues)
    noise_rate: float  # the ensemble's estimated share of wrong labels (rows of rare classes left out)
    confident_joint: np.ndarray  # (K, K) int64 calibrated joint of the blend, row = given, column = true
    pred_probs: np.ndarray | None  # (N, K) the out-of-fold pred_probs used (user's or the probe's; probe: NaN rows for rare classes)
    weights: dict[str, float]  # detector -> weight in the ensemble blend
    detector_flags: dict[str, np.ndarray] = field(default_factory=dict)  # detector -> (N,) bool own flags
    methods: tuple[str, ...] = ()  # detectors that ran, in registry order
    rare_classes: dict[int, int] = field(default_factory=dict)  # class index -> samples, for classes too rare to judge
    class_noise_rates: np.ndarray | None = None  # (K,) estimated share of wrong labels per given class; NaN = rare
    audit: AuditCount | None = None  # the audit's count as used (see combine_detectors)
    audit_overruled: bool = False  # the audit ruled out the ensemble's estimate: noise_rate is the audit's rate
    model_noise_rate: float | None = None  # the ensemble's own estimate (= noise_rate unless the audit overruled it)

    def audit_facts(self) -> dict | None:
        """The audit as a run's summary and `winnow detect` report it; None without one."""
        if self.audit is None:
            return None
        model = self.model_noise_rate
        return {**self.audit.as_dict(), "overruled": bool(self.audit_overruled),
                "model_rate": None if model is None else round(float(model), 4)}


# A class needs at least this many samples (and at least the kNN graph's k) for the
# detectors to judge its labels: fewer, and its own members cannot outvote a neighbourhood,
# the probe sees about one example per fold, and each sample moves the noise estimate.
# (The rule max(5, k) comes from issue 11's first-hour report; not tuned on data.)
RARE_CLASS_MIN_SAMPLES = 5


def rare_class_min_samples(graph_k: int | None) -> int:
    """Samples a class needs not to be rare: max(RARE_CLASS_MIN_SAMPLES, the kNN graph's k)."""
    return max(RARE_CLASS_MIN_SAMPLES, int(graph_k or 0))


def find_label_issues(
    labels,
    *,
    pred_probs=None,
    embeddings=None,
    knn: KnnGraph | None = None,
    methods: str | list[str] | tuple[str, ...] = "auto",
    n_classes: int | None = None,
    seed: int = 0,
    knn_k: int = 10,
    class_text_embeddings=None,
    zero_shot_temperature: float = CLIP_TEMPERATURE,
    probe_folds: int = 5,
    probe_epochs: int = 5,
    duplicate_groups="auto",
    content_hashes=None,
    audit: AuditCount | AuditRows | None = None,
):
    """Label issues as a polars DataFrame, one row per sample in input order.

    labels: (N,) int class indices in 0..K-1; the options are detect_label_issues'.
    Columns: is_label_issue (bool), label_quality (float in [0, 1], low = likely wrong),
    suggested_label (int), suggestion_confidence (float in [0, 1]), score_<detector>
    for every detector that ran, probe_margin (float in [-1, 1], out-of-fold
    p[given] - max p[other]; low = hard or wrong) when the probe was trained, and
    is_rare_class (bool). Rows of a rare class are not judged: never flagged, NaN scores,
    their given label as the suggestion.
    """
    return detect_label_issues(
        labels, pred_probs=pred_probs, embeddings=embeddings, knn=knn, methods=methods, n_classes=n_classes,
        seed=seed, knn_k=knn_k, class_text_embeddings=class_text_embeddings,
        zero_shot_temperature=zero_shot_temperature, probe_folds=probe_folds, probe_epochs=probe_epochs,
        duplicate_groups=duplicate_groups, content_hashes=content_hashes, audit=audit,
    ).frame


def detect_label_issues(
    labels,
    *,
    pred_probs=None,
    embeddings=None,
    knn: KnnGraph | None = None,
    methods: str | list[str] | tuple[str, ...] = "auto",
    n_classes: int | None = None,
    seed: int = 0,
    knn_k: int = 10,
    class_text_embeddings=None,
    zero_shot_temperature: float = CLIP_TEMPERATURE,
    probe_folds: int = 5,
    probe_epochs: int = 5,
    duplicate_groups="auto",
    content_hashes=None,
    audit: AuditCount | AuditRows | None = None,
) -> LabelIssueReport:
    """Run the detectors the inputs allow and their ensemble; see find_label_issues.

    labels: (N,); pred_probs: (N, K) out-of-fold probabilities (optional); embeddings:
    (N, D) L2-normalised (optional; other rows are normalised with a UserWarning, and a zero,
    NaN or inf row is an error quoting it); knn: a KnnGraph of the same N rows (built from the
    embeddings with `knn_k` neighbours when absent); class_text_embeddings: (K, D) for
    zero_shot. methods: "auto" or detector names from list_detectors(). n_classes
    defaults to pred_probs' columns, else max(labels) + 1. Deterministic for a seed.

    Duplicates are one voter: the members of a duplicate group never vote for each other in
    the kNN detectors and share one fold of the probe (`knn_noise.build_voter_graph`,
    `small_loss.fit_probe`), so a mislabelled image and its copies cannot shelter each other.
    duplicate_groups: (N,) int group ids (-1 = none, e.g. `find_duplicates(...).group`);
    "auto": near duplicates on the kNN graph at the data-driven cut that curate() uses
    (`duplicates.near_duplicate_threshold`) plus equal `content_hashes` (N strings or None);
    None: no grouping.

    audit: what a person found on a random sample of the rows (`audit.AuditCount`, or
    `audit.AuditRows` aligned with the labels): when its 95% interval rules out the ensemble's
    estimate, the estimate is the audit's rate and each class's count is scaled to it
    (`audit.reconcile`; report.audit is the count used, report.audit_overruled).

    Rare classes: a class with fewer than max(5, k) samples (k = the kNN graph's k, 0 without
    a graph) is left out of every detector, of the classes they vote over, and of the noise
    estimate; its rows come back unjudged (`is_rare_class`, `rare_classes`).
    """
    import polars as pl

    if pred_probs is None and embeddings is None and knn is None:
        raise InvalidArray("find_label_issues needs pred_probs, embeddings or knn (got none of them)")
    if pred_probs is not None:
        pred_probs = check_pred_probs(pred_probs)
    if embeddings is not None:
        embeddings = check_unit_embeddings(embeddings)
    if knn is not None:
        check_cosine_graph(knn.similarities)
    if class_text_embeddings is not None:
        class_text_embeddings = check_unit_embeddings(class_text_embeddings, name="class_text_embeddings", warn=False)
    k = _resolve_n_classes(labels, n_classes, pred_probs, class_text_embeddings)
    labels = check_labels(labels, n_classes=k)
    n = check_same_length(
        labels=labels,
        pred_probs=pred_probs,
        embeddings=embeddings,
        knn=None if knn is None else knn.indices,
        content_hashes=content_hashes,
    )
    check_every_class_present(labels, k)
    names = _resolve_methods(methods, pred_probs=pred_probs, embeddings=embeddings, knn=knn,
                             class_text_embeddings=class_text_embeddings)

    needs = {need for name in names for need in DETECTORS[name].needs}
    if "knn" in needs and knn is None:
        knn = build_knn_graph(embeddings, k=knn_k)
    groups = _resolve_groups(duplicate_groups, knn=knn, content_hashes=content_hashes, n=n)

    if k == 1:  # nothing to confuse a lone class with, however few its samples: not "rare", unjudged
        return _unjudged_report(labels, k, {}, pred_probs)
    counts = np.bincount(labels, minlength=k)
    rare = counts < rare_class_min_samples(knn.k if knn is not None else None)
    rare_classes = {int(c): int(counts[c]) for c in np.flatnonzero(rare)}
    if rare_classes:
        logger.info("rare classes left out of label-issue detection (class: samples): %s", rare_classes)
    judged = ~rare[labels]
    classes = np.flatnonzero(~rare)
    if len(classes) < 2:
        return _unjudged_report(labels, k, rare_classes, pred_probs)
    rows = np.flatnonzero(judged)
    sub = len(rows) < n  # rare rows to leave out: solve on the judged rows, over the judged classes
    voters = None
    if knn is not None:
        voters = build_voter_graph(knn, groups=groups, exclude=~judged, embeddings=embeddings)
        if sub:
            voters = _subgraph(voters, rows, n)
    remap = np.full(k, -1, dtype=np.int64)
    remap[classes] = np.arange(len(classes))
    sub_labels = remap[labels[rows]]
    sub_probs = None if pred_probs is None else _restrict_probs(pred_probs[rows], classes)
    sub_emb = embeddings if embeddings is None or not sub else embeddings[rows]
    sub_text = None if class_text_embeddings is None else class_text_embeddings[classes]
    sub_groups = None if groups is None else _restrict_groups(groups[rows])

    probe = None
    if "probe" in needs or ("pred_probs" in needs and sub_probs is None):
        probe = fit_probe(sub_emb, sub_labels, n_classes=len(classes), n_folds=probe_folds, epochs=probe_epochs,
                          seed=seed, groups=sub_groups)
    used_probs = sub_probs if sub_probs is not None else (probe.pred_probs if probe is not None else None)
    inputs = DetectionInputs(
        labels=sub_labels, n_classes=len(classes), pred_probs=used_probs, embeddings=sub_emb, knn=voters,
        probe=probe, class_text_embeddings=sub_text, zero_shot_temperature=zero_shot_temperature, seed=seed,
    )
    outputs = {name: DETECTORS[name].detect(inputs) for name in names}
    blended = {n: o.class_probs for n, o in outputs.items() if DETECTORS[n].blend == "probs"}
    mixed = {n: o.score for n, o in outputs.items() if DETECTORS[n].blend == "score"}
    if blended:
        sub_audit = audit.subset(rows) if isinstance(audit, AuditRows) and sub else audit
        verdict = combine_detectors(sub_labels, blended, scores=mixed, sample_weight=_group_weights(sub_groups),
                                    audit=sub_audit)
    else:
        verdict = _verdict_from_scores(sub_labels, outputs, len(classes))

    def full(values, fill):
        return scatter_rows(rows, values, n, fill) if sub else np.asarray(values)

    flags = {}
    for name, out in outputs.items():
        own = out.is_label_issue if out.is_label_issue is not None else flag_lowest(out.score, verdict.noise_rate)
        flags[name] = full(own, False)
    columns = {
        "is_label_issue": full(verdict.is_label_issue, False),
        "label_quality": full(verdict.label_quality, np.nan),
        "suggested_label": np.where(judged, classes[full(verdict.suggested_label, 0)], labels),
        "suggestion_confidence": full(verdict.suggestion_confidence, np.nan),
    }
    for name, out in outputs.items():
        columns[f"score_{name}"] = full(np.clip(out.score, 0.0, 1.0), np.nan)
    if probe is not None:
        columns["probe_margin"] = full(probe.margin, np.nan)
    columns["is_rare_class"] = ~judged
    cj = verdict.confident_joint
    if sub:
        cj = np.zeros((k, k), dtype=np.int64)
        cj[np.ix_(classes, classes)] = verdict.confident_joint
    if pred_probs is not None:
        report_probs = pred_probs
    elif used_probs is not None and sub:
        report_probs = np.full((n, k), np.nan)
        report_probs[np.ix_(rows, classes)] = used_probs
        report_probs[rows[:, None], np.flatnonzero(rare)[None, :]] = 0.0
    else:
        report_probs = used_probs
    class_rates = np.full(k, np.nan)
    class_rates[classes] = verdict.class_noise_rate
    return LabelIssueReport(
        frame=pl.DataFrame(columns), noise_rate=verdict.noise_rate, confident_joint=cj, pred_probs=report_probs,
        weights=verdict.weights, detector_flags=flags, methods=tuple(names), rare_classes=rare_classes,
        class_noise_rates=class_rates, audit=verdict.audit, audit_overruled=verdict.audit_overruled,
        model_noise_rate=verdict.model_noise_rate,
    )


def _resolve_groups(duplicate_groups, *, knn: KnnGraph | None, content_hashes, n: int) -> np.ndarray | None:
    """(N,) duplicate group ids (-1 = none), or None when no sample has a duplicate."""
    if duplicate_groups is None:
        return None
    if isinstance(duplicate_groups, str):
        if duplicate_groups != "auto":
            raise InvalidArray(f"duplicate_groups must be 'auto', None or (N,) group ids, got {duplicate_groups!r}")
        if knn is None and content_hashes is None:
            return None
        if knn is None:
            knn = KnnGraph(indices=np.full((n, 1), -1, dtype=np.int64), similarities=np.full((n, 1), -np.inf, dtype=np.float32))
            near = 1.0
        else:
            near = near_duplicate_threshold(knn)
        groups = find_duplicates(knn, min_similarity=near, content_hashes=content_hashes).group
    else:
        groups = np.asarray(getattr(duplicate_groups, "group", duplicate_groups))
        if groups.ndim != 1 or not np.issubdtype(groups.dtype, np.integer):
            raise InvalidArray(f"duplicate_groups must be (N,) integer group ids, got shape {groups.shape} dtype {groups.dtype}")
        check_same_length(labels=np.empty(n), duplicate_groups=groups)
    groups = groups.astype(np.int64)
    return groups if (groups >= 0).any() else None


def _group_weights(groups: np.ndarray | None) -> np.ndarray | None:
    """(N,) 1 / size of the row's duplicate group (1 outside groups); None without groups."""
    if groups is None:
        return None
    sizes = np.bincount(groups[groups >= 0])
    return np.where(groups >= 0, 1.0 / sizes[np.maximum(groups, 0)], 1.0)


def _restrict_groups(groups: np.ndarray) -> np.ndarray | None:
    """Group ids over a subset of rows: renumbered, a group left with one member is none."""
    out = np.full(len(groups), -1, dtype=np.int64)
    ok = groups >= 0
    if ok.any():
        ids, inverse, sizes = np.unique(groups[ok], return_inverse=True, return_counts=True)
        keep = sizes[inverse] > 1
        dense = np.cumsum(sizes > 1) - 1
        out[np.flatnonzero(ok)[keep]] = dense[inverse[keep]]
    return out if (out >= 0).any() else None


def _subgraph(graph: KnnGraph, rows: np.ndarray, n: int) -> KnnGraph:
    """The graph of `rows` (M of N), neighbours renumbered 0..M-1; other neighbours dropped."""
    remap = np.full(n, -1, dtype=np.int64)
    remap[rows] = np.arange(len(rows))
    idx = graph.indices[rows]
    new = np.where(idx >= 0, remap[np.maximum(idx, 0)], -1)
    sims = np.where(new >= 0, graph.similarities[rows], -np.inf).astype(np.float32)
    # Dropped neighbours leave holes: move the survivors to the front, keeping their order.
    order = np.argsort(new < 0, axis=1, kind="stable")
    return KnnGraph(indices=np.take_along_axis(new, order, axis=1), similarities=np.take_along_axis(sims, order, axis=1),
                    method=graph.method, recall=graph.recall)


def _restrict_probs(pred_probs: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """(M, K') the columns of the judged classes, rows renormalised (uniform where all mass was elsewhere)."""
    probs = pred_probs[:, classes]
    total = probs.sum(axis=1, keepdims=True)
    return np.where(total > 0, probs / np.where(total > 0, total, 1.0), 1.0 / len(classes))


def _unjudged_report(labels: np.ndarray, k: int, rare_classes: dict[int, int], pred_probs) -> LabelIssueReport:
    """Fewer than two classes are common enough to judge: nothing is flagged, nothing estimated.

    With rare classes set aside, a lone remaining class has nothing to be confused with:
    its rows get label_quality 1 (every judged neighbour agrees); rare rows get NaN.
    """
    import polars as pl

    n = len(labels)
    if k == 1:  # an unlabeled folder, or a dataset of one class: expected, not a problem
        logger.info("one class: no other class to confuse it with; labels are not judged")
    else:
        logger.warning("only %d class(es) have enough samples to judge labels; no label-issue detection",
                       k - len(rare_classes))
    rare = np.zeros(k, dtype=bool)
    rare[list(rare_classes)] = True
    unjudged = np.where(rare[labels], np.nan, 1.0)
    frame = pl.DataFrame({
        "is_label_issue": np.zeros(n, dtype=bool), "label_quality": unjudged, "suggested_label": labels,
        "suggestion_confidence": unjudged, "is_rare_class": rare[labels],
    })
    return LabelIssueReport(frame=frame, noise_rate=0.0, confident_joint=np.zeros((k, k), dtype=np.int64),
                            pred_probs=pred_probs, weights={}, methods=(), rare_classes=rare_classes,
                            class_noise_rates=np.where(rare, np.nan, 0.0))


def out_of_fold_pred_probs(embeddings, labels, *, n_classes: int | None = None, n_folds: int = 5,
                           seed: int = 0) -> np.ndarray:
    """(N, K) out-of-fold pred_probs of the softmax-regression probe on (N, D) embeddings."""
    embeddings = check_unit_embeddings(embeddings)
    labels_arr = check_labels(labels)
    k = n_classes if n_classes is not None else int(labels_arr.max()) + 1
    return fit_probe(embeddings, labels_arr, n_classes=k, n_folds=n_folds, seed=seed).pred_probs


def _resolve_n_classes(labels, n_classes, pred_probs, class_text_embeddings) -> int:
    if pred_probs is not None:
        if n_classes is not None and n_classes != pred_probs.shape[1]:
            raise InvalidArray(f"n_classes is {n_classes} but pred_probs has {pred_probs.shape[1]} columns")
        return int(pred_probs.shape[1])
    if class_text_embeddings is not None:
        if n_classes is not None and n_classes != class_text_embeddings.shape[0]:
            raise InvalidArray(
                f"n_classes is {n_classes} but class_text_embeddings has {class_text_embeddings.shape[0]} rows"
            )
        return int(class_text_embeddings.shape[0])
    if n_classes is not None:
        if n_classes < 1:
            raise InvalidArray(f"n_classes must be at least 1, got {n_classes}")
        return int(n_classes)  # one class: nothing to be confused with, the rows come back unjudged
    inferred = int(check_labels(labels).max()) + 1
    if inferred < 2:
        raise InvalidArray(f"labels hold a single class ({inferred - 1}); pass n_classes")
    return inferred


def _resolve_methods(methods, *, pred_probs, embeddings, knn, class_text_embeddings) -> list[str]:
    have = set()
    if pred_probs is not None or embeddings is not None:
        have.add("pred_probs")  # from the user, or the probe trained on the embeddings
    if embeddings is not None or knn is not None:
        have.add("knn")
    if embeddings is not None:
        have.update({"embeddings", "probe"})
    if class_text_embeddings is not None:
        have.add("class_text_embeddings")
    if isinstance(methods, str) and methods == "auto":
        names = [n for n, d in DETECTORS.items() if d.auto and set(d.needs) <= have]
        # Without a user's pred_probs the probe's probabilities already feed confident
        # learning (and the blend through it): a "probe" source would count them twice.
        if pred_probs is None:
            names = [n for n in names if n != "probe"]
        return names
    requested = [methods] if isinstance(methods, str) else list(methods)
    if not requested:
        raise InvalidArray("methods is empty; pass 'auto' or names from list_detectors()")
    unknown = [m for m in requested if m not in DETECTORS]
    if unknown:
        raise InvalidArray(f"unknown detector(s) {unknown!r}; known: {list_detectors()}")
    for name in requested:
        missing = sorted(set(DETECTORS[name].needs) - have)
        if missing:
            raise InvalidArray(f"detector {name!r} needs {missing} (for 'probe': embeddings), which were not given")
    return [n for n in DETECTORS if n in requested]


def _verdict_from_scores(labels: np.ndarray, outputs: dict[str, DetectorOutput], k: int) -> EnsembleVerdict:
    # Only score-only detectors ran (small_loss / aum): average their scores, cut where the
    # small-loss mixture puts the noisy component, suggest nothing new.
    scores = np.mean([o.score for o in outputs.values()], axis=0)
    flags = [o.is_label_issue for o in outputs.values() if o.is_label_issue is not None]
    rate = float(np.mean(flags[0])) if flags else 0.0
    n = len(labels)
    return EnsembleVerdict(
        blend_probs=np.zeros((n, k)), weights={name: 1.0 / len(outputs) for name in outputs},
        label_quality=np.clip(scores, 0, 1), suggested_label=labels.copy(), suggestion_confidence=np.zeros(n),
        is_label_issue=flag_lowest(scores, rate), confident_joint=np.zeros((k, k), dtype=np.int64), noise_rate=rate,
        class_noise_rate=np.bincount(labels, weights=flag_lowest(scores, rate), minlength=k)
        / np.maximum(np.bincount(labels, minlength=k), 1),
    )


__all__ = [
    "DETECTORS", "RARE_CLASS_MIN_SAMPLES", "DetectionInputs", "Detector", "DetectorOutput", "LabelIssueReport",
    "detect_label_issues", "find_label_issues", "list_detectors", "out_of_fold_pred_probs", "rare_class_min_samples",
]
