"""Per-class label policy (issue 16 item 5): relabel / drop confidence per class, a relabel allow-list."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest

from winnow.curation import build_knn_graph, plant_label_noise
from winnow.curation.curate import curate
from winnow.curation.errors import InvalidArray
from winnow.curation.noise import noise_transition_matrix
from winnow.curation.policy import DecisionPolicy, decide, policy_from_dict


def _issues(labels, suggested, confidence, quality=None, **kw):
    n = len(labels)
    return decide(np.asarray(labels), unusable_reason=[None] * n, is_label_issue=np.ones(n, dtype=bool),
                  suggested_label=np.asarray(suggested), suggestion_confidence=np.asarray(confidence, dtype=float),
                  label_quality=None if quality is None else np.asarray(quality, dtype=float), **kw)


def test_the_issue_example_parses_from_toml_and_from_a_dict():
    table = tomllib.loads('relabel_min_confidence = {"3" = 0.5}\nrelabel_classes = ["cat", "dog"]')
    p = policy_from_dict(table)
    assert p.relabel_min_confidence == {"3": 0.5} and p.relabel_classes == ("cat", "dog")
    # An int key is the class's text, an int value a float; one string is a one-class list.
    p = policy_from_dict({"drop_min_confidence": {7: 1, "*": 0.25}, "relabel_classes": "cat"})
    assert p.drop_min_confidence == {"7": 1.0, "*": 0.25} and isinstance(p.drop_min_confidence["7"], float)
    assert p.relabel_classes == ("cat",)
    assert policy_from_dict({"relabel_classes": "none"}, base=p).relabel_classes is None
    assert policy_from_dict({"relabel_min_confidence": 0.6}).relabel_min_confidence == 0.6  # a number still works
    for bad, quoted in [({"relabel_min_confidence": {"3": 1.5}}, "1.5"),
                        ({"relabel_min_confidence": {"3": "high"}}, "'high'"),
                        ({"drop_min_confidence": {"3": True}}, "True"),
                        ({"drop_min_confidence": -0.1}, "-0.1"),
                        ({"relabel_min_confidence": {}}, "{}"),
                        ({"relabel_classes": [1, 2]}, "[1, 2]")]:
        with pytest.raises(InvalidArray, match=quoted.replace("[", r"\[").replace("]", r"\]")):
            policy_from_dict(bad)


def test_the_frozen_policy_keeps_its_own_copy_of_a_table():
    table = {"3": 0.5}
    p = DecisionPolicy(relabel_min_confidence=table)
    table["3"] = 0.99
    assert p.relabel_min_confidence == {"3": 0.5}


def test_relabel_confidence_per_given_class():
    # Four flagged samples, each suggested with probability 0.6: only class 3's are relabelled
    # under {"3" = 0.5} (the others keep the default 0.8 and are dropped).
    p = DecisionPolicy(relabel_min_confidence={"3": 0.5})
    d = _issues([3, 1, 3, 0], [1, 3, 0, 2], [0.6] * 4, policy=p, n_classes=4)
    assert d.decision.tolist() == ["relabel", "drop", "relabel", "drop"]
    assert d.final_label.tolist() == [1, -1, 0, -1]
    # "*" sets every class not named; the named class keeps its own value.
    p = DecisionPolicy(relabel_min_confidence={"*": 0.5, "3": 0.9})
    d = _issues([3, 1, 3, 0], [1, 3, 0, 2], [0.6] * 4, policy=p, n_classes=4)
    assert d.decision.tolist() == ["drop", "relabel", "drop", "relabel"]
    # Class names key the table when given.
    p = DecisionPolicy(relabel_min_confidence={"dog": 0.5})
    d = _issues([0, 1], [1, 0], [0.6, 0.6], policy=p, class_names=["cat", "dog"])
    assert d.decision.tolist() == ["drop", "relabel"]


def test_drop_confidence_per_class_keeps_weakly_flagged_rare_samples():
    # label_quality 0.3: the detectors are 70% sure each label is wrong. The rare class asks
    # for 90% before a drop, so its samples stay (flagged); the others go.
    p = DecisionPolicy(on_label_issue="drop", drop_min_confidence={"rare": 0.9})
    d = _issues([0, 1, 1, 0], [1, 0, 0, 1], [0.7] * 4, quality=[0.3, 0.3, 0.05, 0.3], policy=p,
                class_names=["common", "rare"])
    assert d.decision.tolist() == ["drop", "keep", "drop", "drop"]
    assert d.reasons == [["label_issue"]] * 4 and d.final_label.tolist() == [-1, 1, -1, -1]
    # Under "auto" it applies to the drops only: a sure relabel is still a relabel.
    p = DecisionPolicy(drop_min_confidence=0.9)
    d = _issues([0, 0, 0], [1, 1, 1], [0.95, 0.5, 0.5], quality=[0.05, 0.3, 0.05], policy=p)
    assert d.decision.tolist() == ["relabel", "keep", "drop"]
    with pytest.raises(InvalidArray, match="label_quality"):
        _issues([0, 1], [1, 0], [0.5, 0.5], policy=p)


def test_relabel_allow_list():
    names = ["cat", "dog", "fox"]
    # Both the given and the suggested class must be listed.
    p = DecisionPolicy(relabel_classes=("cat", "dog"))
    d = _issues([0, 1, 2, 0], [1, 0, 0, 2], [0.95] * 4, policy=p, class_names=names)
    assert d.decision.tolist() == ["relabel", "relabel", "drop", "drop"]
    # "relabel" never drops a label issue: a relabel outside the list is kept, flagged.
    p = DecisionPolicy(on_label_issue="relabel", relabel_classes=("cat", "dog"))
    d = _issues([0, 2], [1, 0], [0.3, 0.3], policy=p, class_names=names)
    assert d.decision.tolist() == ["relabel", "keep"] and d.final_label.tolist() == [1, 2]


def test_a_class_the_data_lacks_is_an_error_quoting_it():
    for policy in (DecisionPolicy(relabel_min_confidence={"bird": 0.5}), DecisionPolicy(relabel_classes=("cat", "bird")),
                   DecisionPolicy(drop_min_confidence={"*": 0.5, "bird": 0.9})):
        with pytest.raises(InvalidArray, match="'bird'"):
            _issues([0, 1], [1, 0], [0.9, 0.9], quality=[0.1, 0.1], policy=policy, class_names=["cat", "dog"])
        with pytest.raises(InvalidArray, match="'bird'"):
            policy.check_classes(["cat", "dog"])
    with pytest.raises(InvalidArray, match="'3'"):  # without names the keys are the indices as text
        _issues([0, 1], [1, 0], [0.9, 0.9], policy=DecisionPolicy(relabel_min_confidence={"3": 0.5}))


def test_curate_applies_the_per_class_policy_to_real_detections():
    # Five well-separated Gaussian classes, 15% flips: flagged samples labelled "c0" are
    # relabelled at any confidence, the other classes' only at confidence 1.0.
    rng = np.random.default_rng(0)
    k, per = 5, 120
    true = np.repeat(np.arange(k), per)
    centres = rng.normal(size=(k, 32)) * 3
    x = centres[true] + rng.normal(size=(len(true), 32))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    noisy = plant_label_noise(true, noise_transition_matrix("symmetric", 0.15, n_classes=k), seed=0)
    graph = build_knn_graph(x, k=10)
    names = [f"c{c}" for c in range(k)]
    n = len(noisy)
    common = dict(rows=np.arange(n), n_classes=k, unusable_reason=[None] * n,
                  keys=np.array([f"s{i:04d}" for i in range(n)]), class_names=names)
    policy = DecisionPolicy(relabel_min_confidence={"*": 1.0, "c0": 0.0})
    result = curate(noisy, x, graph, policy=policy, **common)
    d, conf = result.decisions, result.scores["suggestion_confidence"]
    flagged = np.array(["label_issue" in r for r in d.reasons])
    assert flagged.sum() >= 0.8 * (noisy != true).sum()
    relabelled = d.decision == "relabel"
    assert relabelled[flagged & (noisy == 0)].mean() > 0.8  # c0: whenever the suggestion differs
    assert np.mean(d.final_label[relabelled] == true[relabelled]) > 0.9
    assert np.all(d.decision[flagged & (noisy != 0) & (conf < 1.0)] == "drop")
    # The same run under the default policy relabels by the 0.8 rule in every class.
    plain = curate(noisy, x, graph, **common).decisions
    assert np.all((plain.decision == "relabel") == (flagged & (conf >= 0.8) & (result.scores["suggested_label"] != noisy)))
