"""Curation algorithms: pure functions over embeddings, labels, pred_probs and the kNN graph."""

from winnow.curation.audit import AUDIT_SIZE, AuditCount, AuditRows, audit_members, reconcile
from winnow.curation.confident_learning import find_confident_learning_issues
from winnow.curation.curate import Curation, DetectConfig, cluster_balance, curate
from winnow.curation.duplicates import DuplicateGroups, Leaks, find_duplicates, find_leaks
from winnow.curation.errors import InvalidArray, LengthMismatch, MissingDependency
from winnow.curation.issues import (
    ISSUE_TYPES,
    IssueContext,
    IssueFindings,
    IssueType,
    ReportSection,
    list_issue_types,
    register_issue_type,
)
from winnow.curation.knn_graph import (
    IndexConfig,
    KnnConfig,
    KnnGraph,
    build_knn_graph,
    kmeans,
    search_knn,
)
from winnow.curation.knn_noise import KnnVotes, find_knn_label_issues, find_simifeat_label_issues
from winnow.curation.label_issues import (
    DETECTORS,
    LabelIssueReport,
    detect_label_issues,
    find_label_issues,
    list_detectors,
    out_of_fold_pred_probs,
)
from winnow.curation.multilabel import MultilabelIssues, find_multilabel_issues
from winnow.curation.noise import (
    detection_metrics,
    parse_noise_spec,
    plant_instance_noise,
    plant_label_noise,
    plant_multilabel_noise,
    sparse_noise_matrix,
)
from winnow.curation.outliers import Outliers, find_outliers, score_knn_distance
from winnow.curation.policy import DecisionPolicy, Decisions, decide, policy_from_dict
from winnow.curation.prune import (
    PrunePlan,
    SemanticDuplicates,
    find_semantic_duplicates,
    plan_prune,
    score_prototypicality,
)
from winnow.curation.rebalance import (
    Hierarchy,
    Selection,
    compute_weights,
    hierarchical_kmeans,
    plan_rebalance,
    resolve_target,
)
from winnow.curation.text_duplicates import find_minhash_pairs, normalise_text, text_duplicate_keys

__all__ = [
    "AUDIT_SIZE",
    "AuditCount",
    "AuditRows",
    "audit_members",
    "reconcile",
    "DETECTORS", "ISSUE_TYPES", "Curation", "DecisionPolicy", "Decisions", "DetectConfig", "DuplicateGroups",
    "Hierarchy", "IndexConfig", "InvalidArray", "IssueContext", "IssueFindings", "IssueType", "KnnConfig", "KnnGraph",
    "KnnVotes", "LabelIssueReport", "Leaks", "LengthMismatch", "MissingDependency", "MultilabelIssues", "Outliers",
    "PrunePlan", "ReportSection", "Selection", "SemanticDuplicates", "build_knn_graph", "cluster_balance",
    "compute_weights", "curate", "decide", "detect_label_issues", "detection_metrics",
    "find_confident_learning_issues", "find_duplicates", "find_knn_label_issues", "find_label_issues",
    "find_leaks", "find_minhash_pairs", "find_multilabel_issues", "find_outliers", "find_semantic_duplicates",
    "find_simifeat_label_issues", "hierarchical_kmeans", "kmeans", "list_detectors", "list_issue_types",
    "normalise_text", "out_of_fold_pred_probs", "parse_noise_spec", "plan_prune", "plan_rebalance",
    "plant_instance_noise", "plant_label_noise", "plant_multilabel_noise", "policy_from_dict",
    "register_issue_type", "resolve_target", "score_knn_distance", "score_prototypicality", "search_knn",
    "sparse_noise_matrix", "text_duplicate_keys",
]
