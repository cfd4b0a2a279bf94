"""Curation algorithms: pure functions over embeddings, labels, pred_probs and the kNN graph."""

from curation.errors import InvalidArray, LengthMismatch, MissingDependency
from curation.knn_graph import IndexConfig, KnnGraph, build_knn_graph
from curation.knn_noise import KnnVotes, find_knn_label_issues
from curation.policy import DecisionPolicy, Decisions, decide, policy_from_dict

__all__ = [
    "DecisionPolicy", "Decisions", "IndexConfig", "InvalidArray", "KnnGraph", "KnnVotes", "LengthMismatch",
    "MissingDependency", "build_knn_graph", "decide", "find_knn_label_issues", "policy_from_dict",
]
