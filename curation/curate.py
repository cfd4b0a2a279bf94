"""All findings for one dataset, from arrays: label issues, duplicates, leaks, outliers,
clusters and pruning, turned into one decision per sample by the policy.

This is the library's single entry point for a whole cleaning pass; the flow only reads
files, calls `curate`, and writes the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from winnow.curation.duplicates import find_duplicates, find_leaks, near_duplicate_threshold
from winnow.curation.knn_graph import KnnGraph
from winnow.curation.label_issues import detect_label_issues
from winnow.curation.outliers import find_outliers
from winnow.curation.policy import DecisionPolicy, Decisions, decide
from winnow.curation.prune import plan_prune
from winnow.curation.rebalance import hierarchical_kmeans
from winnow.curation.validation import (
    check_cosine_graph,
    check_same_length,
    check_unit_embeddings,
    rank_keys,
    scatter_rows,
)


@dataclass(frozen=True)
class Curation:
    decisions: Decisions  # one decision per input row (N)
    scores: dict[str, np.ndarray]  # per-row columns for the manifest, NaN / -1 where not embedded
    facts: dict[str, Any] = field(default_factory=dict)  # cut-offs and counts for the summary


def curate(
    labels,
    embeddings,
    graph: KnnGraph,
    *,
    rows,
    n_classes: int,
    unusable_reason: list[str | None],
    keys,
    content_hashes: list[str | None] | None = None,
    policy: DecisionPolicy = DecisionPolicy(),
    methods: str = "auto",
    seed: int = 0,
    holdout_embeddings=None,
    holdout_hashes: list[str | None] | None = None,
    class_text_embeddings=None,
    class_names=None,
) -> Curation:
    """Run every detector and decide.

    labels: (N,) class indices of all input rows. embeddings: (M, D) of the M usable rows,
    L2-normalised (other rows are normalised with a UserWarning; zero, NaN or inf rows are
    errors quoting the row); graph: their kNN graph (built from the normalised rows);
    rows: (M,) which input row each embedding belongs to.
    unusable_reason: N entries (a reason code, or None for the embedded rows). keys: (N,)
    stable sample ids (tie-breaks never depend on row order). holdout_embeddings: (H, D)
    of a validation / test catalog, to flag leaks. class_names: K names, to name the rare
    classes in the facts (default: the class index).

    Duplicate groups (equal content hashes, near duplicates at the policy's cut) are found
    first: the label detectors count each group as one voter. A class with fewer usable
    samples than max(5, the graph's k) is rare: left out of label detection and the noise
    estimate, its rows get reason `rare_class` (facts["rare_classes"]: name -> count).
    """
    labels = np.asarray(labels, dtype=np.int64)
    rows = np.asarray(rows, dtype=np.int64)
    # Once, here: every step below compares rows by inner product (cosine on unit rows).
    embeddings = check_unit_embeddings(embeddings)
    check_cosine_graph(graph.similarities)
    if holdout_embeddings is not None:
        holdout_embeddings = check_unit_embeddings(holdout_embeddings, name="holdout_embeddings")
    n = len(labels)
    check_same_length(labels=labels, unusable_reason=unusable_reason, keys=np.asarray(keys))
    # Rank the sample ids once; every step below breaks ties by these ranks (same order).
    keys = rank_keys(keys, n, unique=True)
    check_same_length(embeddings=embeddings, rows=rows, knn_graph=graph.indices)
    hashes_u = [content_hashes[i] for i in rows] if content_hashes is not None else None
    keys_u = keys[rows]

    near = policy.near_duplicate_min_similarity
    if near is None:
        near = near_duplicate_threshold(graph)
    # The groups alone (no representative yet): the label detectors count each as one voter.
    groups_u = find_duplicates(graph, min_similarity=near, content_hashes=hashes_u, keys=keys_u).group

    # Label issues on the usable rows. A class whose every sample is unusable has no
    # evidence: detect over the classes present and map back.
    present = np.unique(labels[rows])
    remap = np.full(n_classes, -1, dtype=np.int64)
    remap[present] = np.arange(len(present))
    text = class_text_embeddings[present] if class_text_embeddings is not None else None
    report = detect_label_issues(remap[labels[rows]], embeddings=embeddings, knn=graph, methods=methods,
                                 n_classes=len(present), seed=seed, class_text_embeddings=text,
                                 duplicate_groups=groups_u)
    frame = report.frame
    issue = scatter_rows(rows, frame["is_label_issue"].to_numpy(), n, False)
    rare = scatter_rows(rows, frame["is_rare_class"].to_numpy(), n, False)
    suggested = scatter_rows(rows, present[frame["suggested_label"].to_numpy()], n, -1)
    confidence = scatter_rows(rows, np.nan_to_num(frame["suggestion_confidence"].to_numpy()), n, 0.0)
    quality_u = frame["label_quality"].to_numpy()

    # Rows of rare classes have no label quality: the last choice as a group's representative.
    dup = find_duplicates(graph, min_similarity=near, content_hashes=hashes_u,
                          labels=labels[rows], label_quality=np.nan_to_num(quality_u, nan=0.0),
                          keep=policy.duplicate_representative, keys=keys_u)
    out = find_outliers(graph, expected_false=policy.outlier_expected_false, local=policy.outlier_local)
    leaks = None
    if holdout_embeddings is not None:
        leaks = find_leaks(embeddings, holdout_embeddings, min_similarity=near,
                           content_hashes=hashes_u, holdout_hashes=holdout_hashes).scatter(rows, n)
    hierarchy = hierarchical_kmeans(embeddings, levels=policy.cluster_levels, seed=policy.kmeans_seed, niter=10)
    clusters = [scatter_rows(rows, level, n, -1) for level in hierarchy.assignments]
    priority = None
    if policy.keep is not None or policy.class_cap is not None:
        eligible = ~dup.is_duplicate & ~out.is_outlier
        if leaks is not None:
            eligible &= ~leaks.is_leak[rows]
        difficulty = -frame["probe_margin"].to_numpy() if "probe_margin" in frame.columns else None
        plan = plan_prune(embeddings, hierarchy.centroids[0], hierarchy.finest, difficulty=difficulty,
                          eligible=eligible, min_similarity=policy.semdedup_min_similarity,
                          keep_end=policy.prune_keep, keys=keys_u)
        # Unusable rows are dropped before pruning and capping: they have no rank (NaN).
        priority = scatter_rows(rows, plan.priority, n, np.nan)

    decisions = decide(
        labels, unusable_reason=unusable_reason, is_label_issue=issue, suggested_label=suggested,
        suggestion_confidence=confidence, policy=policy, duplicates=dup.scatter(rows, n),
        outliers=out.scatter(rows, n), leaks=leaks, clusters=clusters, prune_priority=priority,
        keys=keys, n_classes=n_classes, is_rare_class=rare,
        label_quality=scatter_rows(rows, quality_u, n, np.nan), class_names=class_names,
    )
    scores = {
        "label_quality": scatter_rows(rows, quality_u, n, np.nan),
        "suggested_label": suggested,
        "suggestion_confidence": scatter_rows(rows, frame["suggestion_confidence"].to_numpy(), n, np.nan),
        "outlier_score": scatter_rows(rows, out.score, n, np.nan),
    }
    for col in frame.columns:
        if col.startswith("score_") or col == "probe_margin":
            scores[col] = scatter_rows(rows, frame[col].to_numpy(), n, np.nan)
    flagged_quality = quality_u[frame["is_label_issue"].to_numpy()]
    names = list(class_names) if class_names is not None else None
    rare_classes = {(names[int(present[c])] if names is not None else str(int(present[c]))): int(count)
                    for c, count in sorted(report.rare_classes.items())}
    facts = {
        "label_detectors": list(report.methods),
        "estimated_noise_rate": round(float(report.noise_rate), 4),
        "rare_classes": rare_classes,  # class too rare to judge -> its usable samples
        "label_issue_cutoff": float(flagged_quality.max()) if flagged_quality.size else None,
        "detector_weights": {k: round(float(v), 4) for k, v in report.weights.items()},
        "outlier_threshold": float(out.threshold),
        "near_duplicate_min_similarity": round(float(near), 4),
        "duplicate_groups": int(dup.n_groups),
        "clusters": int(len(hierarchy.centroids[0])),
        "cluster_balance_before": cluster_balance(clusters[0][rows]),
        "cluster_balance_after": cluster_balance(decisions.cluster[decisions.final_label >= 0]),
    }
    return Curation(decisions=decisions, scores=scores, facts=facts)


def cluster_balance(assignment: np.ndarray) -> dict[str, float]:
    """How evenly samples spread over clusters: the effective number of clusters
    (exp of the entropy) against the number used, and the largest / smallest size."""
    assignment = np.asarray(assignment)
    assignment = assignment[assignment >= 0]
    if assignment.size == 0:
        return {"clusters": 0, "effective_clusters": 0.0, "max_over_min": 0.0}
    counts = np.bincount(assignment)
    counts = counts[counts > 0]
    p = counts / counts.sum()
    return {
        "clusters": int(len(counts)),
        "effective_clusters": round(float(np.exp(-(p * np.log(p)).sum())), 2),
        "max_over_min": round(float(counts.max() / counts.min()), 2),
    }
