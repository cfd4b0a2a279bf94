"""All findings for one dataset, from arrays: label issues, duplicates, the issue types of
the registry (curation/issues: leaks, outliers, rare classes, ...), clusters and pruning,
turned into one decision per sample by the policy.

This is the library's single entry point for a whole cleaning pass; the flow only reads
files, calls `curate`, and writes the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from winnow.curation.audit import AUDIT_SIZE, AuditCount, AuditRows
from winnow.curation.errors import InvalidArray
from winnow.curation.issues import IssueContext, check_findings, flag_types, issue_columns
from winnow.curation.knn_graph import KnnGraph
from winnow.curation.label_issues import DETECTORS, detect_label_issues, list_detectors
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
from winnow.curation.zero_shot import CLIP_TEMPERATURE


@dataclass(frozen=True)
class DetectConfig:
    """What counts as a finding: the detectors, their knobs and cut-offs (the `detect` section
    of winnow.Config). What is then done with each finding is the DecisionPolicy's.

    The line between the two: a field here changes which samples are flagged, clustered or
    ranked (the findings, the manifest's reasons and scores); a policy field only changes
    the keep / drop / relabel taken on them. A run's seed (`run.seed`) seeds the probe and,
    unless `kmeans_seed` is set, k-means.
    """

    # Label-noise detectors: "auto" (those the inputs allow) or names from
    # curation.list_detectors(), comma-separated.
    methods: str = "auto"
    # Folds of the out-of-fold probe (small_loss.fit_probe); every sample is predicted by a
    # probe that never saw it.
    probe_folds: int = 5
    # Epochs of the probe over the training folds (small_loss.fit_probe; its min_steps still apply).
    probe_epochs: int = 5
    # Softmax temperature of the zero-shot detector's class priors (CLIP's 0.01).
    zero_shot_temperature: float = CLIP_TEMPERATURE
    # The zero-shot text prompt per class; {} is replaced by the class name.
    zero_shot_prompt: str = "a photo of a {}."
    # Cosine at or above which two kNN neighbours are near duplicates (and a training
    # sample leaks into the holdout). None: estimated from the data (the robust lower tail
    # of nearest-neighbour distances, see duplicates.near_duplicate_threshold), because a
    # fixed cosine means different things for different encoders.
    near_duplicate_min_similarity: float | None = None
    # The outlier cut-off is set so that a clean dataset would flag this many samples in
    # expectation (see curation/outliers.py); larger flags more. (A design choice: the z of
    # the cut follows from it and N by a normal model; not tuned on data.)
    outlier_expected_false: float = 1.0
    # Also flag samples far from their neighbours relative to the neighbours' own spread
    # (a local ratio, for data whose concepts differ much in density). Off by default: on
    # real images it adds a few false flags and the global score already finds the junk.
    # Provenance: chosen on the MNIST images of tests/unit/curation/test_outliers.py and of
    # benchmarks/duplicates_outliers.py (500 files, efficientnet-lite0 and pixels) against
    # that benchmark's 100k synthetic mix; not validated on held-out data.
    outlier_local: bool = False
    # Out-of-distribution groups (curation/outliers.py): the largest group of look-alike odd
    # samples looked for (their distance is read at neighbours ood_max_group+1 .. 2x, a second
    # kNN search of 2x neighbours); 0 turns the group test off. Provenance: issue 15's groups of
    # 5-20 images; checked on benchmarks/outliers_ood.py (digits dev, MNIST held-out).
    ood_max_group: int = 20
    # SemDeDup: cosine within a k-means cluster above which a sample is redundant and is
    # pruned before any non-redundant one. Looser than near_duplicate_min_similarity on
    # purpose: it only orders the pruning, it drops nothing unless a target size is set.
    # (Not tuned on any benchmark.)
    semdedup_min_similarity: float = 0.9
    # Hierarchical k-means clusters per level, finest first; () = sqrt(N), then its sqrt.
    cluster_levels: tuple[int, ...] = ()
    # Texts: Jaccard similarity of two texts' character 5-gram sets at or above which they are
    # near copies (MinHash LSH, curation/text_duplicates.py). 0.8 is the usual fuzzy-dedup cut
    # (NeMo Curator's default); not tuned here.
    text_near_duplicate_jaccard: float = 0.8
    # Rows in the audit sample (curation/audit.py): a fixed random sample of the usable rows that a
    # person checks in `winnow review`; its answers correct the label-noise count. 0: no audit.
    audit_size: int = AUDIT_SIZE
    # k-means seed (FAISS); None: the run's seed. The rows are put in a canonical order
    # first, so runs repeat.
    kmeans_seed: int | None = None

    def __post_init__(self) -> None:
        self.method_names()  # raises on a bad list
        for name in ("probe_folds", "probe_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (2 if name == "probe_folds" else 1):
                raise InvalidArray(f"{name} must be an integer of at least {2 if name == 'probe_folds' else 1}, "
                                   f"got {value!r}")
        if not self.zero_shot_temperature > 0:
            raise InvalidArray(f"zero_shot_temperature must be > 0, got {self.zero_shot_temperature!r}")
        if "{}" not in self.zero_shot_prompt:
            raise InvalidArray(f"zero_shot_prompt must contain {{}} (the class name), got {self.zero_shot_prompt!r}")
        for name in ("near_duplicate_min_similarity", "semdedup_min_similarity"):
            if getattr(self, name) is not None and not -1.0 <= getattr(self, name) <= 1.0:
                raise InvalidArray(f"{name} must be a cosine in [-1, 1], got {getattr(self, name)!r}")
        if not 0.0 < self.text_near_duplicate_jaccard <= 1.0:
            raise InvalidArray(f"text_near_duplicate_jaccard must be in (0, 1], got {self.text_near_duplicate_jaccard!r}")
        if isinstance(self.ood_max_group, bool) or not isinstance(self.ood_max_group, int) or self.ood_max_group < 0:
            raise InvalidArray(f"ood_max_group must be a non-negative integer, got {self.ood_max_group!r}")
        if isinstance(self.audit_size, bool) or not isinstance(self.audit_size, int) or self.audit_size < 0:
            raise InvalidArray(f"audit_size must be a non-negative integer, got {self.audit_size!r}")
        if not self.outlier_expected_false > 0:
            raise InvalidArray(f"outlier_expected_false must be > 0, got {self.outlier_expected_false!r}")
        levels = self.cluster_levels
        if any(c < 1 for c in levels) or any(b >= a for a, b in zip(levels, levels[1:], strict=False)):
            raise InvalidArray(f"cluster_levels must be positive and strictly decreasing, got {levels!r}")

    def method_names(self) -> str | tuple[str, ...]:
        """"auto", or the detector names of `methods` (each one known)."""
        text = self.methods
        if not isinstance(text, str):
            raise InvalidArray(f"methods must be 'auto' or comma-separated detector names, got {text!r}")
        if text.strip() == "auto":
            return "auto"
        names = tuple(n.strip() for n in text.split(","))
        if not names or any(not n for n in names):
            raise InvalidArray(f"methods must be 'auto' or comma-separated detector names, got {text!r}")
        unknown = [m for m in names if m not in DETECTORS]
        if unknown:
            raise InvalidArray(f"unknown detector(s) {unknown!r} in methods {text!r}; known: {list_detectors()}")
        return names


@dataclass(frozen=True)
class Curation:
    decisions: Decisions  # one decision per input row (N)
    scores: dict[str, np.ndarray]  # per-row columns for the manifest, NaN / -1 / None where not embedded
    facts: dict[str, Any] = field(default_factory=dict)  # cut-offs and counts for the summary
    columns: dict[str, str] = field(default_factory=dict)  # the issue types' columns among `scores` -> dtype


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
    detect: DetectConfig = DetectConfig(),
    methods: str | list[str] | tuple[str, ...] | None = None,
    seed: int = 0,
    holdout_embeddings=None,
    holdout_hashes: list[str | None] | None = None,
    class_text_embeddings=None,
    class_names=None,
    sample_stats=None,
    duplicate_keys: list[str | None] | None = None,
    duplicate_pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    copy_probe=None,
    wide_graph: KnnGraph | None = None,
    audit: AuditCount | AuditRows | None = None,
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

    detect: what counts as a finding (detectors, cut-offs, clustering); policy: what is done
    with each. methods: the detectors, overriding `detect.methods` when given. seed: the
    probe's, simifeat's and (unless detect.kmeans_seed) k-means' seed.

    sample_stats: {name: (N,) array} of per-sample statistics taken while decoding, for the
    issue types that read them (IssueContext.stat); rows that were not decoded are ignored.
    copy_probe: made copies of a sample of the inputs (embeddings/copies.py: "source" input
    rows, "kind", "vectors", "phash", "thumb"): the near-duplicate cut is calibrated on them
    (duplicates.calibrate_near_duplicates; facts["near_duplicate_calibration"]).
    audit: what a person found on the audit sample (`audit.AuditCount`, or `audit.AuditRows` over
    all N input rows), for the label noise count (`detect_label_issues`); facts["audit"] says
    what it counted and whether it overruled.
    wide_graph: the same search with more neighbours per row (a run's knn stage keeps 2 x
    detect.ood_max_group), read by the out_of_distribution group test; None: that test searches
    again when it needs more than graph.k.

    duplicate_keys: N keys whose equality makes rows exact duplicates, in place of the content
    hashes (texts: the normalised text's hash, curation/text_duplicates.py). duplicate_pairs:
    (rows, cols, similarity) over the N input rows of near copies found another way (texts:
    MinHash LSH); pairs touching an unusable row are ignored.

    Duplicate groups (equal content hashes, near duplicates at the detect cut) are found
    first: the label detectors count each group as one voter. A class with fewer usable
    samples than max(5, the graph's k) is rare: left out of label detection and the noise
    estimate, its rows get reason `rare_class` (facts["rare_classes"]: name -> count).
    Every flag issue type of the registry (curation/issues: leak, outlier, rare_class and any
    registered one) then flags rows through its `find`, adds its columns and facts; decide()
    keeps or drops them by `policy.action_for(type)`.
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
    if wide_graph is not None:
        check_same_length(embeddings=embeddings, wide_graph=wide_graph.indices)
    hashes_u = [content_hashes[i] for i in rows] if content_hashes is not None else None
    if duplicate_keys is not None:
        check_same_length(labels=labels, duplicate_keys=np.asarray(duplicate_keys, dtype=object))
    dup_keys_u = [duplicate_keys[i] for i in rows] if duplicate_keys is not None else hashes_u
    pairs_u = _pairs_on_rows(duplicate_pairs, rows, n) if duplicate_pairs is not None else None
    keys_u = keys[rows]
    m = len(rows)
    stats_u = {}
    for name, values in dict(sample_stats or {}).items():
        values = np.asarray(values)
        check_same_length(labels=labels, **{f"sample_stats[{name!r}]": values})
        stats_u[name] = values[rows]

    probe_u = None
    if copy_probe is not None:
        row_of = np.full(n, -1, dtype=np.int64)
        row_of[rows] = np.arange(m)
        src = row_of[np.asarray(copy_probe["source"], dtype=np.int64)]
        ok = src >= 0
        probe_u = {"row": src[ok], **{k: np.asarray(v)[ok] for k, v in copy_probe.items() if k != "source"}}

    methods = detect.method_names() if methods is None else methods
    kmeans_seed = seed if detect.kmeans_seed is None else detect.kmeans_seed
    # Label issues on the usable rows. A class whose every sample is unusable has no
    # evidence: detect over the classes present and map back.
    present = np.unique(labels[rows])
    remap = np.full(n_classes, -1, dtype=np.int64)
    remap[present] = np.arange(len(present))
    text = class_text_embeddings[present] if class_text_embeddings is not None else None

    def label_report(ctx: IssueContext):
        # The duplicate groups alone (no representative yet): the label detectors count each as one voter.
        return detect_label_issues(remap[labels[rows]], embeddings=embeddings, knn=graph, methods=methods,
                                   n_classes=len(present), seed=seed, class_text_embeddings=text,
                                   zero_shot_temperature=detect.zero_shot_temperature,
                                   probe_folds=detect.probe_folds, probe_epochs=detect.probe_epochs,
                                   duplicate_groups=ctx.duplicate_groups,
                                   audit=audit.subset(rows) if isinstance(audit, AuditRows) else audit)

    names = list(class_names) if class_names is not None else None
    ctx = IssueContext(embeddings=embeddings, graph=graph, labels=labels[rows], n_classes=n_classes, keys=keys_u,
                       detect=detect, class_names=names, content_hashes=hashes_u,
                       holdout_embeddings=holdout_embeddings, holdout_hashes=holdout_hashes, sample_stats=stats_u,
                       seed=seed, label_report=label_report, report_classes=present,
                       duplicate_keys=dup_keys_u, duplicate_pairs=pairs_u, copy_probe=probe_u,
                       wide_graph=wide_graph)
    near = ctx.near_duplicate_similarity
    report = ctx.label_report
    frame = report.frame
    issue = scatter_rows(rows, frame["is_label_issue"].to_numpy(), n, False)
    suggested = scatter_rows(rows, present[frame["suggested_label"].to_numpy()], n, -1)
    confidence = scatter_rows(rows, np.nan_to_num(frame["suggestion_confidence"].to_numpy()), n, 0.0)
    quality_u = frame["label_quality"].to_numpy()

    # Rows of rare classes have no label quality: the last choice as a group's representative.
    dup = ctx.find_duplicates(labels=labels[rows], label_quality=np.nan_to_num(quality_u, nan=0.0),
                              keep=policy.duplicate_representative)
    # The flag issue types (curation/issues), in registry order: each flags rows of the usable M.
    findings = {t.name: check_findings(t, t.find(ctx), m) for t in flag_types()}
    hierarchy = hierarchical_kmeans(embeddings, levels=detect.cluster_levels, seed=kmeans_seed, niter=10)
    clusters = [scatter_rows(rows, level, n, -1) for level in hierarchy.assignments]
    priority = None
    if policy.keep is not None or policy.class_cap is not None:
        eligible = ~dup.is_duplicate
        for t in flag_types():
            if not t.rank_for_pruning:
                for flags in findings[t.name].flags.values():
                    eligible &= ~np.asarray(flags, dtype=bool)
        difficulty = -frame["probe_margin"].to_numpy() if "probe_margin" in frame.columns else None
        plan = plan_prune(embeddings, hierarchy.centroids[0], hierarchy.finest, difficulty=difficulty,
                          eligible=eligible, min_similarity=detect.semdedup_min_similarity,
                          keep_end=policy.prune_keep, keys=keys_u)
        # Unusable rows are dropped before pruning and capping: they have no rank (NaN).
        priority = scatter_rows(rows, plan.priority, n, np.nan)

    decisions = decide(
        labels, unusable_reason=unusable_reason, is_label_issue=issue, suggested_label=suggested,
        suggestion_confidence=confidence, policy=policy, duplicates=dup.scatter(rows, n),
        flags={name: {code: scatter_rows(rows, np.asarray(f, dtype=bool), n, False) for code, f in found.flags.items()}
               for name, found in findings.items()},
        clusters=clusters, prune_priority=priority, keys=keys, n_classes=n_classes,
        label_quality=scatter_rows(rows, quality_u, n, np.nan), class_names=class_names,
    )
    scores = {
        "label_quality": scatter_rows(rows, quality_u, n, np.nan),
        "suggested_label": suggested,
        "suggestion_confidence": scatter_rows(rows, frame["suggestion_confidence"].to_numpy(), n, np.nan),
    }
    for col in frame.columns:
        if col.startswith("score_") or col == "probe_margin":
            scores[col] = scatter_rows(rows, frame[col].to_numpy(), n, np.nan)
    columns = issue_columns()  # every registered type's, in registry order; the flag types fill theirs
    for found in findings.values():
        for col, values in found.columns.items():
            scores[col] = _scatter_column(rows, values, n, columns[col])
    flagged_quality = quality_u[frame["is_label_issue"].to_numpy()]
    facts = {
        "label_detectors": list(report.methods),
        "estimated_noise_rate": round(float(report.noise_rate), 4),
        "label_issue_cutoff": float(flagged_quality.max()) if flagged_quality.size else None,
        "detector_weights": {k: round(float(v), 4) for k, v in report.weights.items()},
    }
    if report.audit is not None:
        facts["audit"] = report.audit_facts()
    for name, found in findings.items():
        clash = sorted(set(found.facts) & set(facts))
        if clash:
            raise InvalidArray(f"issue type {name!r} reports fact(s) {clash!r} that another step reports")
        facts.update(found.facts)
    facts.update({
        "near_duplicate_min_similarity": round(float(near), 4),
        "near_duplicate_calibration": ctx.near_duplicate_rule.calibration,
        "duplicate_groups": int(dup.n_groups),
        "clusters": int(len(hierarchy.centroids[0])),
        "cluster_balance_before": cluster_balance(clusters[0][rows]),
        "cluster_balance_after": cluster_balance(decisions.cluster[decisions.final_label >= 0]),
    })
    return Curation(decisions=decisions, scores=scores, facts=facts,
                    columns={c: columns[c] for c in scores if c in columns})


def _pairs_on_rows(pairs, rows: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs over the N input rows -> pairs over the M usable rows (pairs touching others dropped)."""
    a, b, sim = (np.asarray(x) for x in pairs)
    if not len(a) == len(b) == len(sim):
        raise InvalidArray(f"duplicate_pairs has {len(a)}, {len(b)} and {len(sim)} entries; they must match")
    if len(a) and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= n):
        raise InvalidArray(f"duplicate_pairs must be input rows in [0, {n}), got {min(a.min(), b.min())} .. "
                           f"{max(a.max(), b.max())}")
    where = np.full(n, -1, dtype=np.int64)
    where[rows] = np.arange(len(rows))
    ok = (where[a.astype(np.int64)] >= 0) & (where[b.astype(np.int64)] >= 0)
    return where[a[ok].astype(np.int64)], where[b[ok].astype(np.int64)], sim[ok].astype(np.float32)


def _scatter_column(rows: np.ndarray, values, n: int, dtype: str) -> np.ndarray:
    """An issue type's (M,) column over all N rows: NaN (float64) or None (other types) where not embedded."""
    if dtype == "float64":
        return scatter_rows(rows, np.asarray(values, dtype=np.float64), n, np.nan)
    out = np.full(n, None, dtype=object)
    out[rows] = np.asarray(values, dtype=object)
    return out


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
