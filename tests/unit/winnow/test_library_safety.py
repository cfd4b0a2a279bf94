"""Safe loading: no pickle, no shell, no torch.load without weights_only anywhere in the library."""

from __future__ import annotations

import re

from tests.helpers import REPO

_FORBIDDEN = [
    (re.compile(r"^\s*(import|from)\s+(c?pickle|dill|cloudpickle|marshal|shelve)\b", re.M), "pickle import"),
    (re.compile(r"\bpickle\.loads?\("), "pickle.load"),
    (re.compile(r"shell\s*=\s*True"), "shell=True"),
    (re.compile(r"\bos\.(system|popen|exec\w*|spawn\w*)\("), "os shell/exec"),
    (re.compile(r"allow_pickle\s*=\s*True"), "allow_pickle=True"),
    (re.compile(r"(?<![\w.])(eval|exec)\("), "eval/exec"),
    (re.compile(r"\bread_pickle\(|\bjoblib\.load\("), "pickle reader"),
]


def test_no_pickle_no_shell_in_the_library():
    offenders = []
    for package in ("catalogs", "embeddings", "curation", "flows"):
        for path in sorted((REPO / package).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            for pattern, what in _FORBIDDEN:
                offenders += [f"{path.relative_to(REPO)}: {what}" for _ in pattern.finditer(text)]
            for call in re.finditer(r"torch\.load\(([^)]*)\)", text):
                if "weights_only=True" not in call.group(1):
                    offenders.append(f"{path.relative_to(REPO)}: torch.load without weights_only=True")
    assert not offenders, offenders
