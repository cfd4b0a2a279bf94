"""The registry of issue types (curation/issues): one list of reason codes, policy keys, the
generic decision loop in registry order, and the checks on what a type declares and returns."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from winnow.catalogs import schemas as S
from winnow.curation import DecisionPolicy, build_knn_graph, curate, decide, issues
from winnow.curation.errors import InvalidArray
from winnow.curation.issues import IssueContext, IssueFindings, IssueType, check_findings
from winnow.pipeline.issues import reason_codes

REPO = Path(__file__).resolve().parents[3]


def test_one_list_of_reason_codes_and_the_readme_documents_it():
    codes = reason_codes()
    # The fixed unusable-file codes first, then each type's, with no code claimed twice.
    assert list(codes)[: len(S.UNUSABLE_REASON_CODES)] == list(S.UNUSABLE_REASON_CODES)
    owned = [c for t in issues.ISSUE_TYPES.values() for c in t.reasons]
    assert len(owned) == len(set(owned)) and not set(owned) & S.UNUSABLE_REASONS
    assert all(meaning.strip() for meaning in codes.values())
    # Every code decide() can write is in the list.
    for code in ("label_issue", "near_duplicate", "exact_duplicate", "duplicate_label_conflict", "leak", "outlier",
                 "rare_class", "pruned", "over_cap"):
        assert code in codes, code
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = readme.split("### Reason codes", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z0-9_]+)`(?: / `([a-z0-9_]+)`)?", table, re.M))
    documented = {c for pair in documented for c in pair if c}
    assert documented == set(codes), (sorted(set(codes) - documented), sorted(documented - set(codes)))


def test_policy_fields_of_the_built_in_flag_types_default_to_the_registry():
    policy = DecisionPolicy()
    for issue in issues.flag_types():
        assert policy.action_for(issue.name) == issue.default_action, issue.name
        assert getattr(policy, issue.policy_key) == issue.default_action
    with pytest.raises(InvalidArray, match="not a registered flag issue type"):
        policy.action_for("duplicate")  # its own fields (on_duplicate, ...)
    with pytest.raises(InvalidArray, match="through its own field on_outlier"):
        DecisionPolicy(actions={"outlier": "keep"})
    with pytest.raises(AttributeError):
        policy.on_nothing  # noqa: B018


class Odd(IssueType):
    """Flags odd keys; two codes to show that a type may write several."""

    name = "odd"
    reasons = {"odd": "an odd key", "very_odd": "a key that is 1 mod 4"}
    columns = {"score_odd": "float64", "odd_tag": "string"}
    default_action = "drop"

    def find(self, ctx: IssueContext) -> IssueFindings:
        odd = ctx.keys % 2 == 1
        return IssueFindings(flags={"odd": odd, "very_odd": ctx.keys % 4 == 1},
                             columns={"score_odd": ctx.keys.astype(float), "odd_tag": np.where(odd, "o", "e")},
                             facts={"odd_count": int(odd.sum())})


@pytest.fixture
def odd():
    issue = issues.register_issue_type(Odd)
    try:
        yield issue
    finally:
        issues.unregister_issue_type("odd")


def test_registered_types_act_after_the_built_in_flag_types_in_registry_order(odd):
    names = issues.list_issue_types()
    last_built_in = [t.name for t in issues.flag_types() if t.name != "odd"][-1]
    assert names.index("odd") == names.index(last_built_in) + 1 < names.index("label_issue")
    n = 8
    labels = np.zeros(n, dtype=np.int64)
    base = dict(unusable_reason=[None] * (n - 1) + ["unreadable"], is_label_issue=np.zeros(n, bool),
                suggested_label=labels, suggestion_confidence=np.zeros(n), keys=np.arange(n))
    leak = np.zeros(n, bool)
    leak[[1, 2]] = True
    odd_flags = np.arange(n) % 2 == 1
    # Given in any order, the reasons come in registry order, the type's codes in declared order.
    d = decide(labels, **base, flags={"odd": {"very_odd": np.arange(n) % 4 == 1, "odd": odd_flags}}, leaks=leak)
    assert d.reasons[1] == ["leak", "odd", "very_odd"] and d.reasons[2] == ["leak"] and d.reasons[3] == ["odd"]
    assert d.reasons[7] == ["unreadable"]  # unusable rows get no finding
    assert list(d.decision) == ["keep", "drop", "drop", "drop", "keep", "drop", "keep", "drop"]
    kept = decide(labels, **base, flags={"odd": {"odd": odd_flags}}, policy=DecisionPolicy(actions={"odd": "keep"}))
    assert kept.reasons[3] == ["odd"] and kept.decision[3] == "keep"
    with pytest.raises(InvalidArray, match="'strange' is not a reason code of 'odd'"):
        decide(labels, **base, flags={"odd": {"strange": odd_flags}})
    with pytest.raises(InvalidArray, match="'label_issue' is not a registered flag issue type"):
        decide(labels, **base, flags={"label_issue": {"label_issue": odd_flags}})
    with pytest.raises(InvalidArray, match="given twice"):
        decide(labels, **base, flags={"leak": {"leak": leak}}, leaks=leak)


def test_curate_carries_a_registered_type_columns_and_facts(odd):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = np.repeat(np.arange(3), 20)
    rows = np.arange(1, 60)  # row 0 was not embedded
    keys = np.array([f"k{i:03d}" for i in range(60)])
    result = curate(labels, x[1:], build_knn_graph(x[1:], k=5), rows=rows, n_classes=3,
                    unusable_reason=["unreadable"] + [None] * 59, keys=keys, methods=["knn_vote"])
    assert list(result.columns) == ["outlier_score", "ood_score", "ood_group_distance", "ood_evenness", "score_odd",
                                    "odd_tag"]
    assert np.isnan(result.scores["score_odd"][0]) and result.scores["odd_tag"][0] is None
    # keys are ranked: k001 -> 1, odd
    assert result.scores["odd_tag"][1] == "o" and "odd" in result.decisions.reasons[1]
    assert result.decisions.decision[1] == "drop"  # the type's default action
    assert result.facts["odd_count"] == sum(int(k[1:]) % 2 for k in keys[1:])


def test_findings_are_checked_against_the_declaration():
    odd = Odd()
    good = IssueFindings(flags={"odd": np.zeros(4, bool)}, columns={"score_odd": np.zeros(4)})
    assert check_findings(odd, good, 4) is good
    bad = [
        (IssueFindings(flags={"even": np.zeros(4, bool)}), "does not declare"),
        (IssueFindings(flags={"odd": np.zeros(3, bool)}), r"\(M,\) = \(4,\) bool"),
        (IssueFindings(flags={"odd": np.zeros(4)}), "dtype float64"),
        (IssueFindings(flags={}, columns={"score_x": np.zeros(4)}), "column 'score_x'"),
        (IssueFindings(flags={}, columns={"score_odd": np.zeros(5)}), "5 rows, not M = 4"),
        ({"odd": np.zeros(4, bool)}, "must return IssueFindings"),
    ]
    for findings, message in bad:
        with pytest.raises(InvalidArray, match=message):
            check_findings(odd, findings, 4)


def test_declarations_are_checked():
    def make(**attrs):
        return type("T", (Odd,), attrs)()

    for attrs, message in [({"name": "Odd"}, "lowercase identifier"), ({"reasons": {}}, "must declare its reason"),
                           ({"reasons": {"odd": ""}}, "needs a one-line meaning"),
                           ({"columns": {"x": "float32"}}, "dtype 'float32'"),
                           ({"default_action": "relabel"}, "default_action"),
                           ({"sections": {"nope": issues.ReportSection()}}, "not its reason codes")]:
        with pytest.raises(InvalidArray, match=message):
            issues.check_issue_type(make(**attrs))


def test_the_context_computes_shared_inputs_once():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((30, 4)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    calls = []

    def report(ctx):
        calls.append(1)
        return "the report"

    ctx = IssueContext(embeddings=x, graph=build_knn_graph(x, k=5), labels=np.zeros(30), n_classes=1,
                       keys=np.arange(30), label_report=report)
    assert ctx.label_report == ctx.label_report == "the report" and len(calls) == 1
    assert -1.0 <= ctx.near_duplicate_similarity <= 1.0 and ctx.duplicate_groups.shape == (30,)
    with pytest.raises(issues.MissingInput, match="no per-sample statistic 'brightness'"):
        ctx.stat("brightness")
    with pytest.raises(issues.MissingInput, match="no label-issue report"):
        IssueContext(embeddings=x, graph=ctx.graph, labels=np.zeros(30), n_classes=1, keys=np.arange(30)).label_report  # noqa: B018
