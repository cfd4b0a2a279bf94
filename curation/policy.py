"""The decision policy: every finding about a sample becomes one keep / drop / relabel.

Findings are arrays over all N input samples (unusable ones included); the policy is a
frozen dataclass so a run's behaviour is fully described by its config.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from curation.errors import InvalidArray

ON_LABEL_ISSUE = ("auto", "drop", "relabel", "keep")


@dataclass(frozen=True)
class DecisionPolicy:
    # What to do with a flagged label: "auto" relabels when the evidence for the suggested
    # label is strong (see relabel_min_confidence) and drops otherwise; "keep" only flags.
    on_label_issue: str = "auto"
    # Relabel only when the detectors give the suggested label at least this probability.
    # 0.8 is conservative: a wrong relabel is worse than a drop, since it teaches a wrong fact.
    relabel_min_confidence: float = 0.8

    def __post_init__(self) -> None:
        if self.on_label_issue not in ON_LABEL_ISSUE:
            raise InvalidArray(f"on_label_issue must be one of {ON_LABEL_ISSUE}, got {self.on_label_issue!r}")
        if not 0.0 <= self.relabel_min_confidence <= 1.0:
            raise InvalidArray(f"relabel_min_confidence must be in [0, 1], got {self.relabel_min_confidence!r}")


def policy_from_dict(values: dict[str, Any], *, base: DecisionPolicy | None = None) -> DecisionPolicy:
    """A policy from a catalog's [policy] table or CLI overrides; unknown keys are errors."""
    base = base or DecisionPolicy()
    known = {f.name: f for f in fields(DecisionPolicy)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise InvalidArray(f"unknown policy key(s) {unknown!r}; known: {sorted(known)}")
    current = {name: getattr(base, name) for name in known}
    for key, value in values.items():
        expected = type(current[key])
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if value is not None and current[key] is not None and not isinstance(value, expected):
            raise InvalidArray(f"policy {key!r} must be {expected.__name__}, got {value!r}")
        current[key] = value
    return DecisionPolicy(**current)


@dataclass(frozen=True)
class Decisions:
    decision: np.ndarray  # (N,) object: "keep" | "drop" | "relabel"
    reasons: list[list[str]]  # N lists of reason codes (every finding, kept rows included)
    final_label: np.ndarray  # (N,) int64: label to train on; -1 for drops
    weight: np.ndarray  # (N,) float64: sample weight; 0 for drops


def decide(
    labels: np.ndarray,
    *,
    unusable_reason: list[str | None],
    is_label_issue: np.ndarray,
    suggested_label: np.ndarray,
    suggestion_confidence: np.ndarray,
    policy: DecisionPolicy = DecisionPolicy(),
) -> Decisions:
    """One decision per sample.

    labels: (N,) given class indices. unusable_reason: N entries, a reason code for
    samples that could not be embedded (always dropped) or None. is_label_issue,
    suggested_label, suggestion_confidence: (N,) detector outputs (ignored where unusable).
    """
    n = len(labels)
    decision = np.array(["keep"] * n, dtype=object)
    final = np.asarray(labels, dtype=np.int64).copy()
    reasons: list[list[str]] = [[] for _ in range(n)]
    for i in range(n):
        if unusable_reason[i] is not None:
            reasons[i].append(unusable_reason[i])
            decision[i] = "drop"
            final[i] = -1
            continue
        if not is_label_issue[i]:
            continue
        reasons[i].append("label_issue")
        action = policy.on_label_issue
        if action == "auto":
            sure = suggestion_confidence[i] >= policy.relabel_min_confidence
            action = "relabel" if sure and suggested_label[i] != labels[i] else "drop"
        if action == "relabel":
            decision[i] = "relabel"
            final[i] = int(suggested_label[i])
        elif action == "drop":
            decision[i] = "drop"
            final[i] = -1
    weight = np.where(final >= 0, 1.0, 0.0)
    return Decisions(decision=decision, reasons=reasons, final_label=final, weight=weight)
