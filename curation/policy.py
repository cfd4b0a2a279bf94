"""The decision policy: every finding about a sample becomes one keep / drop / relabel.

Findings are arrays over all N input samples (unusable ones included); the policy is a
frozen dataclass so a run's behaviour is fully described by its config. It holds what is
DONE with a finding; what COUNTS as one (similarity cut-offs, the outlier cut, clustering)
is `curate.DetectConfig`'s.

The default is conservative: it drops only what is redundant or unusable for certain
(unreadable files, copies of a kept sample, copies of a holdout sample) or far outside
the data by a strict cut-off (outliers: about one false flag per clean dataset), and it
never shrinks or reweights the data unless asked (no target size, no caps, weight 1).
Label issues follow `on_label_issue` ("auto": relabel only on strong evidence).

Order of the decision for one sample (a drop stops nothing: every finding is listed):
unusable -> the flag issue types in registry order (curation/issues: leak -> outlier -> rare
class -> any registered type, each kept or dropped by `on_<name>`) -> label issue -> duplicate
(one representative per group, re-picked among the members that survive the steps before) ->
per-class cap ("over_cap") -> target size ("pruned") -> weight.

A registered issue type needs no field here: `on_<its name>` ("drop" | "keep") is accepted by
`policy_from_dict` (so by `--set policy.on_<name>=...` and a [policy] table) and kept in
`actions`; `policy.action_for(name)` (or `policy.on_<name>`) reads it, else the type's default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from winnow.curation.duplicates import REPRESENTATIVE_RULES, DuplicateGroups
from winnow.curation.errors import InvalidArray
from winnow.curation.issues import ISSUE_TYPES, flag_types
from winnow.curation.prune import PRUNE_KEEP
from winnow.curation.rebalance import (
    CLASS_DISTRIBUTIONS,
    WEIGHTINGS,
    Hierarchy,
    as_cluster_levels,
    compute_weights,
    plan_rebalance,
    resolve_target,
)
from winnow.curation.validation import check_same_length, rank_keys
from winnow.fields import dataclass_from_dict

ON_LABEL_ISSUE = ("auto", "drop", "relabel", "keep")
ON_FINDING = ("drop", "keep")
ON_LABEL_CONFLICT = ("keep_one", "drop_all")


@dataclass(frozen=True)
class DecisionPolicy:
    # What to do with a flagged label: "auto" relabels when the evidence for the suggested
    # label is strong (see relabel_min_confidence) and drops otherwise; "keep" only flags.
    on_label_issue: str = "auto"
    # Relabel only when the detectors give the suggested label at least this probability.
    # 0.8 is conservative: a wrong relabel is worse than a drop, since it teaches a wrong fact.
    # (A judgement: not tuned on any benchmark.) Per class: a table keyed by the name of the
    # GIVEN label's class, e.g. {"3" = 0.5} relabels samples labelled "3" from 0.5 and the
    # others from 0.8; the key "*" sets every class not named.
    relabel_min_confidence: float | dict[str, float] = 0.8
    # Drop a flagged label only when the detectors are at least this sure it is wrong
    # (1 - label_quality); a flagged sample below it is kept (reason label_issue, as "keep"
    # does). 0 drops every flagged label that is not relabelled. A number, or a table by
    # given class like relabel_min_confidence: {"rare_bird" = 0.9} keeps a rare class's
    # samples unless the evidence is strong. (A user's choice: not tuned.)
    drop_min_confidence: float | dict[str, float] = 0.0
    # The classes a relabel may move between: the given AND the suggested label must be
    # listed (None: any class). A flagged label outside them is never relabelled: "auto"
    # drops it (subject to drop_min_confidence), "relabel" keeps it, flagged.
    relabel_classes: tuple[str, ...] | None = None

    # --- duplicates and leakage (what counts as one: DetectConfig) -----------------------
    # Which member of a duplicate group is kept: "central" (most similar to the rest of
    # the group) or "label_quality" (best-supported label; use it when labels are noisy).
    duplicate_representative: str = "central"
    # "drop" the non-representative members of a duplicate group, or "keep" (flag only).
    on_duplicate: str = "drop"
    # Duplicates with different labels: "keep_one" keeps the representative (its label
    # still goes through the label-issue detector), "drop_all" drops the whole group.
    on_duplicate_label_conflict: str = "keep_one"
    # "drop" training samples that duplicate a holdout (val/test) sample, or "keep" (flag).
    on_leak: str = "drop"

    # --- outliers (the cut-off: DetectConfig) ---------------------------------------------
    # "drop" outliers, or "keep" (flag only; they stay in clean.parquet).
    on_outlier: str = "drop"
    # Rows of a class with fewer than max(5, k) usable samples (k: the kNN graph's): too
    # rare for the label detectors to judge (a typo'd label, say). "keep" them with the
    # reason `rare_class`, or "drop" them.
    on_rare_class: str = "keep"

    # --- pruning and rebalancing -------------------------------------------------------
    # Target size of the kept set: a float in (0, 1] is a fraction of all N input rows,
    # an int is a row count; None keeps everything that survives the findings.
    keep: float | int | None = None
    # Which end of the hardness ranking pruning keeps: "hard" or "easy" (curation/prune.py).
    prune_keep: str = "hard"
    # At most this many kept rows per class (None: no cap); the excess is "over_cap".
    class_cap: int | None = None
    # How the target size is shared among classes: "original" (proportional: stratified),
    # "uniform" or "sqrt" (proportional to sqrt of the class counts).
    class_distribution: str = "original"
    # Inside a class, spread the kept rows evenly over the hierarchical k-means clusters
    # (concept balance, Vo et al. 2024) instead of taking the top of the pruning ranking.
    cluster_balanced: bool = False
    # Sample weights of the kept rows: "none" (1), "inverse_frequency" or
    # "effective_number" (Cui et al. 2019), from the kept class counts; mean weight 1.
    weighting: str = "none"
    # beta of the effective number of samples, in [0, 1).
    effective_number_beta: float = 0.999

    # --- issue types without a field of their own (curation/issues) ---------------------
    # (issue type name, "drop" | "keep") pairs, from `on_<name>` keys; a type not listed
    # gets its default action. A dict is accepted and stored sorted.
    actions: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "actions", _check_actions(self.actions))
        choices = {
            "on_label_issue": ON_LABEL_ISSUE, "duplicate_representative": REPRESENTATIVE_RULES,
            "on_duplicate": ON_FINDING, "on_duplicate_label_conflict": ON_LABEL_CONFLICT,
            "on_leak": ON_FINDING, "on_outlier": ON_FINDING, "on_rare_class": ON_FINDING, "prune_keep": PRUNE_KEEP,
            "class_distribution": CLASS_DISTRIBUTIONS, "weighting": WEIGHTINGS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise InvalidArray(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in CLASS_TABLES:
            value = getattr(self, name)
            if isinstance(value, dict):
                bad = [k for k in value if not isinstance(k, str) or not k.strip()]
                if bad or not value:
                    raise InvalidArray(f"{name} must name classes (non-empty strings), got {value!r}")
                # A private copy: the frozen policy must not change when the caller's dict does.
                object.__setattr__(self, name, {k: _probability(name, v, key=k) for k, v in value.items()})
            else:
                _probability(name, value)
        if self.relabel_classes is not None:
            if isinstance(self.relabel_classes, str) or not all(isinstance(c, str) for c in self.relabel_classes):
                raise InvalidArray(f"relabel_classes must be a list of class names, got {self.relabel_classes!r}")
        if self.keep is not None:
            resolve_target(self.keep, 1)  # raises on a bad fraction or count
        if self.class_cap is not None and self.class_cap < 0:
            raise InvalidArray(f"class_cap must be a non-negative count, got {self.class_cap!r}")
        if not 0.0 <= self.effective_number_beta < 1.0:
            raise InvalidArray(f"effective_number_beta must be in [0, 1), got {self.effective_number_beta!r}")

    def class_thresholds(self, name: str, class_names: list[str]) -> np.ndarray:
        """(K,) float64: the per-class field `name` (a CLASS_TABLES field) for each class.

        A number applies to every class; a table is resolved by class name ("*": the rest,
        else the field's default). A name that is not a class raises, quoting it.
        """
        value = getattr(self, name)
        if not isinstance(value, dict):
            return np.full(len(class_names), float(value))
        self.check_classes(class_names)
        default = value.get(ANY_CLASS, _FIELD_DEFAULTS[name])
        return np.array([value.get(c, default) for c in class_names], dtype=np.float64)

    def relabel_allowed(self, class_names: list[str]) -> np.ndarray:
        """(K,) bool: the classes a relabel may move between (relabel_classes; all when None)."""
        if self.relabel_classes is None:
            return np.ones(len(class_names), dtype=bool)
        self.check_classes(class_names)
        return np.isin(np.asarray(class_names, dtype=object), list(self.relabel_classes))

    def check_classes(self, class_names) -> None:
        """Raise when a per-class setting names a class that is not among `class_names`."""
        known = set(class_names)
        named = {name: set(getattr(self, name)) - {ANY_CLASS} for name in CLASS_TABLES
                 if isinstance(getattr(self, name), dict)}
        named["relabel_classes"] = set(self.relabel_classes or ())
        for name, classes in named.items():
            unknown = sorted(classes - known)
            if unknown:
                shown = sorted(known)[:20]
                raise InvalidArray(f"policy {name} names {unknown!r}, not classes of this data; "
                                   f"classes: {shown}{' ...' if len(known) > 20 else ''}")


    def action_for(self, issue: str) -> str:
        """What is done with a flagged sample of flag issue type `issue`: its `on_<issue>`
        field, else its entry in `actions`, else the type's default action."""
        if issue not in ISSUE_TYPES or ISSUE_TYPES[issue].mechanics != "flag":
            raise InvalidArray(f"{issue!r} is not a registered flag issue type; flag types: "
                               f"{[t.name for t in flag_types()]}")
        key = f"on_{issue}"
        if key in _FIELDS:
            return getattr(self, key)
        return dict(self.actions).get(issue, ISSUE_TYPES[issue].default_action)

    def __getattr__(self, name: str) -> Any:
        # policy.on_<registered type> reads like a field (only called when no field matched).
        if name.startswith("on_") and name[3:] in ISSUE_TYPES and ISSUE_TYPES[name[3:]].mechanics == "flag":
            actions = self.__dict__.get("actions", ())
            return dict(actions).get(name[3:], ISSUE_TYPES[name[3:]].default_action)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


_FIELDS = frozenset(DecisionPolicy.__dataclass_fields__)


def _probability(name: str, value: Any, *, key: str | None = None) -> float:
    where = name if key is None else f"{name}[{key!r}]"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidArray(f"{where} must be a number in [0, 1], got {value!r}")
    if not 0.0 <= float(value) <= 1.0:
        raise InvalidArray(f"{where} must be in [0, 1], got {value!r}")
    return float(value)


# The fields that take a number or a table class name -> number, and the table's key for
# "every class not named".
CLASS_TABLES = ("relabel_min_confidence", "drop_min_confidence")
ANY_CLASS = "*"
_FIELD_DEFAULTS = {f.name: f.default for f in dataclasses.fields(DecisionPolicy)}


def _check_actions(actions) -> tuple[tuple[str, str], ...]:
    """`actions` (pairs or a dict) as sorted (name, action) pairs, each a registered flag type's."""
    if isinstance(actions, Mapping):
        pairs = list(actions.items())
    elif isinstance(actions, (list, tuple)) and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in actions):
        pairs = [tuple(p) for p in actions]
    else:
        raise InvalidArray(f"actions must map issue type names to 'drop' or 'keep', got {actions!r}")
    out = {}
    for name, action in pairs:
        issue = ISSUE_TYPES.get(name)
        if issue is None or issue.mechanics != "flag":
            raise InvalidArray(f"actions: {name!r} is not a registered flag issue type; flag types: "
                               f"{[t.name for t in flag_types()]}")
        if f"on_{name}" in _FIELDS:
            raise InvalidArray(f"actions: set {name!r} through its own field on_{name}, not actions")
        if action not in ON_FINDING:
            raise InvalidArray(f"on_{name} must be one of {ON_FINDING}, got {action!r}")
        out[name] = action
    return tuple(sorted(out.items()))


def issue_policy_keys() -> list[str]:
    """Every `on_<name>` key of a registered flag issue type (a field or an `actions` entry)."""
    return [f"on_{t.name}" for t in flag_types()]


# Fields that were policy keys before the detection knobs got their own section (issue 13):
# naming the new place beats "unknown key".
MOVED_TO_DETECT = ("near_duplicate_min_similarity", "outlier_expected_false", "outlier_local",
                   "semdedup_min_similarity", "cluster_levels", "kmeans_seed")


def policy_from_dict(values: dict[str, Any], *, base: DecisionPolicy | None = None) -> DecisionPolicy:
    """A policy from a [policy] table or overrides; unknown keys are errors.

    Values are checked against the field's annotation by Winnow's one coercer
    (`winnow.fields`): an int is accepted for a float field, a list for a tuple field
    (TOML arrays), and "none" (any case) for a field that may be None (TOML has no null).
    """
    moved = sorted(set(values) & set(MOVED_TO_DETECT))
    if moved:
        raise InvalidArray(f"policy key(s) {moved!r} moved to the detect section: set them in a [detect] table "
                           f"or with --set detect.{moved[0]}=...")
    if not isinstance(values, Mapping):
        raise InvalidArray(f"policy must be a table of key = value, got {values!r}")
    # on_<registered issue type> without a field of its own: an entry of `actions`.
    extra = {k for k in values if k.startswith("on_") and k not in _FIELDS and k[3:] in ISSUE_TYPES}
    unknown = sorted(set(values) - _FIELDS - extra)
    if unknown:
        raise InvalidArray(f"unknown policy key(s) {unknown!r}; known: "
                           f"{sorted(_FIELDS - {'actions'} | set(issue_policy_keys()))}")
    fields = {k: v for k, v in values.items() if k not in extra}
    policy = dataclass_from_dict(DecisionPolicy, fields, base=base, error=InvalidArray, what="policy")
    if extra:
        actions = dict(policy.actions)
        for key in sorted(extra):
            actions[key[3:]] = values[key]
        policy = dataclasses.replace(policy, actions=actions)
    return policy


_UnionType = type(int | None)


@dataclass(frozen=True)
class Decisions:
    decision: np.ndarray  # (N,) object: "keep" | "drop" | "relabel"
    reasons: list[list[str]]  # N lists of reason codes (every finding, kept rows included)
    final_label: np.ndarray  # (N,) int64: label to train on; -1 for drops
    weight: np.ndarray  # (N,) float64: sample weight; 0 for drops, positive and finite otherwise
    duplicate_of: np.ndarray  # (N,) int64: row of the kept representative of its duplicate group; -1 if none
    cluster: np.ndarray  # (N,) int64: finest k-means cluster; -1 when not clustered


def decide(
    labels: np.ndarray,
    *,
    unusable_reason: list[str | None],
    is_label_issue: np.ndarray,
    suggested_label: np.ndarray,
    suggestion_confidence: np.ndarray,
    policy: DecisionPolicy = DecisionPolicy(),
    duplicates: DuplicateGroups | None = None,
    outliers=None,
    leaks=None,
    clusters: Hierarchy | np.ndarray | list[np.ndarray] | None = None,
    prune_priority: np.ndarray | None = None,
    keys=None,
    n_classes: int | None = None,
    is_rare_class: np.ndarray | None = None,
    flags: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    label_quality: np.ndarray | None = None,
    class_names: list[str] | None = None,
) -> Decisions:
    """One decision per sample.

    labels: (N,) given class indices. unusable_reason: N entries, a reason code for
    samples that could not be embedded (always dropped) or None. is_label_issue,
    suggested_label, suggestion_confidence: (N,) detector outputs (ignored where unusable).

    Optional findings, all over the same N rows (the unusable rows with no finding):
    duplicates: `find_duplicates(...)`. outliers: `find_outliers(...)` or an (N,) bool
    array. leaks: `find_leaks(...)` or an (N,) bool array. clusters: the
    `hierarchical_kmeans(...)` result, or (N,) cluster arrays finest first (-1 = none);
    needed for `policy.cluster_balanced`, reported in `Decisions.cluster`. prune_priority:
    (N,) `plan_prune(...).priority` (higher kept first) used to meet `policy.keep` and
    `policy.class_cap`, read only on the rows still kept after the findings (the others,
    unusable ones included, may hold NaN); without it the rows kept are the first by `keys`. keys: (N,)
    unique sortable ids (sample ids) so that tie-breaks, and so all decisions, do not
    depend on row order. n_classes: K, for class counts (default max label + 1).
    is_rare_class: (N,) bool, rows of classes too rare to judge (reason `rare_class`,
    `policy.on_rare_class`).
    flags: the findings of the flag issue types (curation/issues): {type name: {reason code:
    (N,) bool}}; `leaks`, `outliers` and `is_rare_class` are shorthands for the built-in three.
    Each type's flagged usable rows get its code, and are dropped when `policy.action_for(type)`
    is "drop", in registry order.
    `policy.on_rare_class`). label_quality: (N,) 1 - P(given label wrong), needed when
    `policy.drop_min_confidence` is set. class_names: K names, the keys of the policy's
    per-class settings (default: the class indices as text, "0", "1", ...).
    """
    n = len(labels)
    labels = np.asarray(labels, dtype=np.int64)
    found = _issue_flags(flags, leak=_flags(leaks, "is_leak"), outlier=_flags(outliers, "is_outlier"),
                         rare_class=_flags(is_rare_class, "is_rare_class"))
    levels = as_cluster_levels(clusters)
    check_same_length(labels=labels, unusable_reason=unusable_reason, is_label_issue=is_label_issue,
                      suggested_label=suggested_label, suggestion_confidence=suggestion_confidence,
                      prune_priority=prune_priority, keys=keys,
                      duplicates=None if duplicates is None else duplicates.group,
                      **{(_SHORTHAND[t] if t in _SHORTHAND and c == t else f"flags[{t!r}][{c!r}]"): a for t, codes in found.items()
                         for c, a in codes.items()},
                      **{f"clusters[{i}]": a for i, a in enumerate(levels)})
    decision = np.array(["keep"] * n, dtype=object)
    final = labels.copy()
    reasons: list[list[str]] = [[] for _ in range(n)]
    dropped = np.zeros(n, dtype=bool)
    usable = np.array([r is None for r in unusable_reason], dtype=bool)

    def drop(i: int) -> None:
        decision[i] = "drop"
        final[i] = -1
        dropped[i] = True

    for i in np.flatnonzero(~usable):
        reasons[i].append(unusable_reason[i])
        drop(i)
    for issue in flag_types():  # registry order
        action = policy.action_for(issue.name)
        for code, flag in found.get(issue.name, {}).items():
            for i in np.flatnonzero(flag & usable):
                reasons[i].append(code)
                if action == "drop":
                    drop(i)
    relabel_min, drop_min, movable = _label_issue_policy(policy, labels, suggested_label, usable, label_quality,
                                                         class_names, n_classes)
    for i in np.flatnonzero(np.asarray(is_label_issue, dtype=bool) & usable):
        reasons[i].append("label_issue")
        action = policy.on_label_issue
        given, suggested = labels[i], suggested_label[i]
        can_move = movable[given] and 0 <= suggested < len(movable) and movable[suggested]
        if action == "auto":
            sure = suggestion_confidence[i] >= relabel_min[given]
            action = "relabel" if sure and suggested != given and can_move else "drop"
        elif action == "relabel" and not can_move:
            action = "keep"
        if action == "drop" and label_quality is not None and 1.0 - label_quality[i] < drop_min[given]:
            action = "keep"  # not sure enough that the label is wrong to lose the sample
        if action == "relabel" and not dropped[i]:
            decision[i] = "relabel"
            final[i] = int(suggested_label[i])
        elif action == "drop":
            drop(i)

    duplicate_of = np.full(n, -1, dtype=np.int64)
    if duplicates is not None:
        _decide_duplicates(duplicates, usable, dropped, reasons, duplicate_of, drop, policy, keys)

    cluster = levels[0].copy() if levels else np.full(n, -1, dtype=np.int64)
    target = resolve_target(policy.keep, n)
    if target is not None or policy.class_cap is not None:
        if policy.cluster_balanced and not levels:
            raise InvalidArray("policy.cluster_balanced is set but decide() got no clusters")
        eligible = ~dropped
        k = int(n_classes) if n_classes is not None else int(max(labels.max(), final.max())) + 1
        selection = plan_rebalance(
            np.where(eligible, final, 0), n_classes=k, eligible=eligible, target_size=target,
            class_cap=policy.class_cap, class_distribution=policy.class_distribution,
            hierarchy=levels or None, cluster_balanced=policy.cluster_balanced,
            priority=prune_priority, keys=keys,
        )
        for i in np.flatnonzero(eligible & ~selection.selected):
            reasons[i].append(selection.reason[i])
            drop(i)
    weight = compute_weights(np.where(dropped, 0, final), selected=~dropped, scheme=policy.weighting,
                             beta=policy.effective_number_beta)
    return Decisions(decision=decision, reasons=reasons, final_label=final, weight=weight,
                     duplicate_of=duplicate_of, cluster=cluster)


def _label_issue_policy(policy: DecisionPolicy, labels, suggested_label, usable, label_quality, class_names,
                        n_classes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class: the relabel and the drop confidence, and whether a relabel may touch it."""
    judged = labels[usable] if usable.any() else np.zeros(1, dtype=np.int64)
    suggested = np.asarray(suggested_label)[usable] if usable.any() else np.zeros(1, dtype=np.int64)
    k = max(int(judged.max()) + 1, int(suggested.max()) + 1, int(n_classes or 0))
    if class_names is not None:
        class_names = [str(c) for c in class_names]
        if len(class_names) < k:
            raise InvalidArray(f"class_names has {len(class_names)} names but the labels reach class {k - 1}")
    names = class_names if class_names is not None else [str(c) for c in range(k)]
    drop_min = policy.class_thresholds("drop_min_confidence", names)
    if label_quality is None and drop_min.any():
        raise InvalidArray(f"policy drop_min_confidence is {policy.drop_min_confidence!r} but decide() got no "
                           "label_quality to compare with it")
    if label_quality is not None:
        check_same_length(labels=labels, label_quality=label_quality)
    return policy.class_thresholds("relabel_min_confidence", names), drop_min, policy.relabel_allowed(names)


def _decide_duplicates(dup: DuplicateGroups, usable, dropped, reasons, duplicate_of, drop, policy, keys) -> None:
    """One representative per group: the best-ranked member that no earlier step dropped."""
    n = len(dup.group)
    members = np.flatnonzero((dup.group >= 0) & usable)
    if not len(members):
        return
    key_rank = rank_keys(keys, n)
    g = dup.group[members]
    order = members[np.lexsort((key_rank[members], -dup.score[members], dropped[members], g))]
    first = np.r_[True, dup.group[order][1:] != dup.group[order][:-1]]
    rep_of_group = dict(zip(dup.group[order][first].tolist(), order[first].tolist(), strict=True))
    for i in members.tolist():
        rep = rep_of_group[int(dup.group[i])]
        conflict = bool(dup.label_conflict[i])
        if i != rep:
            duplicate_of[i] = rep
            exact = dup.hash_code[i] >= 0 and dup.hash_code[i] == dup.hash_code[rep]
            reasons[i].append("exact_duplicate" if exact else "near_duplicate")
        if conflict:
            reasons[i].append("duplicate_label_conflict")
        if conflict and policy.on_duplicate_label_conflict == "drop_all":
            drop(i)
        elif i != rep and policy.on_duplicate == "drop":
            drop(i)


# decide()'s keywords for the built-in flag types (error messages name what the caller passed).
_SHORTHAND = {"leak": "leaks", "outlier": "outliers", "rare_class": "is_rare_class"}


def _issue_flags(flags, **shorthands) -> dict[str, dict[str, np.ndarray]]:
    """{type: {code: (N,) bool}} from `flags` and the built-in shorthands, each checked."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, codes in dict(flags or {}).items():
        issue = ISSUE_TYPES.get(name)
        if issue is None or issue.mechanics != "flag":
            raise InvalidArray(f"flags: {name!r} is not a registered flag issue type; flag types: "
                               f"{[t.name for t in flag_types()]}")
        if not isinstance(codes, Mapping):
            raise InvalidArray(f"flags[{name!r}] must map reason codes to (N,) bool arrays, got {codes!r}")
        for code, arr in codes.items():
            if code not in issue.reasons:
                raise InvalidArray(f"flags[{name!r}]: {code!r} is not a reason code of {name!r} "
                                   f"({sorted(issue.reasons)})")
            out.setdefault(name, {})[code] = _flags(arr, f"flags[{name!r}][{code!r}]", attribute=False)
    for name, arr in shorthands.items():
        if arr is None:
            continue
        if name in out:
            raise InvalidArray(f"the {name!r} findings were given twice (as a keyword and in flags)")
        out[name] = {name: arr}
    # Codes in the type's declared order, so a sample's reasons do not depend on the dict given.
    return {name: {c: out[name][c] for c in ISSUE_TYPES[name].reasons if c in out[name]} for name in out}


def _flags(finding, attr: str, *, attribute: bool = True) -> np.ndarray | None:
    """(N,) bool flags: `finding` itself, or (with `attribute`) its `attr` (Outliers.is_outlier)."""
    if finding is None:
        return None
    arr = np.asarray(getattr(finding, attr, finding) if attribute else finding)
    if arr.ndim != 1 or arr.dtype != bool:
        raise InvalidArray(f"{attr} must be a 1-D bool array (N,), got shape {arr.shape} dtype {arr.dtype}")
    return arr
