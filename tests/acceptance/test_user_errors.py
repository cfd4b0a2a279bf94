"""Every user error the README documents, and the typos a new user makes, through the real CLI.

Each must exit 2 with exactly one line on stderr (nothing on stdout) that quotes the bad
value, print no traceback, and leave no output folder behind. The README's own lists of
errors are read at test time: a kind of mistake the README names without a case here fails
`test_every_documented_error_has_a_case`.

(tests/e2e/test_cli_errors.py and tests/e2e/test_serve.py hold more cases, and check the cost: no
Prefect import, CPU seconds. This file is about coverage of what users meet.)
"""

from __future__ import annotations

import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tests.helpers import REPO
from tests.helpers.clirun import Completed
from tests.helpers.readme_workspace import OFFLINE_ENCODER, Workspace


@dataclass(frozen=True)
class Case:
    argv: tuple[str, ...]  # after `winnow`, run in the working folder
    quoted: str  # the bad value the one line must quote
    also: tuple[str, ...] = ()  # more the line must say (what would work instead)


RUN = ("run",)
OUT = ("--out", "errors/out", "--encoder", OFFLINE_ENCODER)

# README phrase (its lists of documented mistakes) -> the case that makes that mistake.
DOCUMENTED: dict[str, Case] = {
    # Catalogs: "Unknown keys, wrong types, a missing root, a folder with no images, a label outside
    # the class list, an empty class, duplicate manifest paths, a missing label
    # column, or a path escaping the root each raise a named catalogs.CatalogError subclass"
    "Unknown keys": Case((*RUN, "errors/colour.toml", *OUT), "'colour'"),
    "wrong types": Case((*RUN, "errors/classes-string.toml", *OUT), "classes"),
    "a missing root": Case((*RUN, "errors/no-root.toml", *OUT), "no-such-folder"),
    "a folder with no images": Case((*RUN, "errors/empty", *OUT), "errors/empty"),
    "a label outside the class list": Case((*RUN, "errors/two-classes.toml", *OUT), "'2'"),
    "an empty class": Case((*RUN, "errors/four-classes.toml", *OUT), "'3'"),
    "duplicate manifest paths": Case((*RUN, "errors/duplicate.csv", *OUT), "imgs/0/img_0000.png"),
    "a missing label column": Case((*RUN, "errors/no-label.csv", *OUT), "'label'"),
    "a path escaping the root": Case((*RUN, "errors/escape.csv", *OUT), "../outside.png"),
    # CLI: "`run` checks everything it is given before any work starts: the catalog and every
    # sample listing, holdouts, ground truth, policy keys and values, `--methods`, the device,
    # the output folder and the encoder."
    "the catalog": Case((*RUN, "errors/not-toml.toml", *OUT), "not-toml.toml"),
    "every sample listing": Case((*RUN, "errors/no-label-row.csv", *OUT), "line 3"),  # a CSV row with no label
    "holdouts": Case((*RUN, "./pets", *OUT, "--holdout", "errors/val.toml"), "errors/val.toml"),
    "ground truth": Case((*RUN, "errors/no-truth.toml", *OUT), "flips.parquet"),
    "policy keys": Case((*RUN, "./pets", *OUT, "--policy", "relabel_everything=true"), "relabel_everything"),
    "values": Case((*RUN, "./pets", *OUT, "--policy", "on_label_issue=dorp"), "'dorp'"),
    "--methods": Case((*RUN, "./pets", *OUT, "--methods", "knn_vote,smal_loss"), "'smal_loss'"),
    "the device": Case((*RUN, "./pets", *OUT, "--device", "gpu"), "'gpu'"),
    "the output folder": Case((*RUN, "./pets", "--out", "labels.csv", "--encoder", OFFLINE_ENCODER), "labels.csv"),
    "the encoder": Case((*RUN, "./pets", "--out", "errors/out", "--encoder", "efficientnet-lite"),
                        "'efficientnet-lite'", ("efficientnet-lite0",)),
    # Table targets: "when several do, the run stops and names them"; "Object-storage URLs ...
    # and a column of image bytes named as `--path-column` stop the run by name".
    "when several do": Case((*RUN, "errors/two-path-columns.csv", *OUT), "'thumb'", ("--path-column",)),
    "Object-storage URLs": Case((*RUN, "errors/s3.csv", *OUT), "s3://"),
    "a column of image bytes named as `--path-column`": Case((*RUN, "errors/hf.parquet", "--path-column", "image",
                                                              *OUT), "'image'"),
    # Encoders: "Without a network and without cached weights, `open_clip:...` tags fail at once
    # with a message naming the offline choices."
    "`open_clip:...` tags fail at once": Case((*RUN, "./pets", "--out", "errors/out", "--encoder",
                                               "open_clip:ViT-B-32/laion2b_s34b_b79k"),
                                              "laion2b_s34b_b79k", ("efficientnet-lite0", "pixels")),
    # Scale: "`--device cuda` to insist; without the extra that fails with the install command"
    # (here: without a GPU at all, it says so).
    "`--device cuda` to insist": Case((*RUN, "./pets", *OUT, "--device", "cuda"), "'cuda'"),
    # Scheduled cleaning: "Everything is checked before Prefect starts (the catalog, holdouts,
    # policy, detectors, schedule, the server, then the encoder)": the schedule and the server
    # here; the rest in tests/test_serve.py.
    "schedule": Case(("serve", "./pets", "--out", "errors/out", "--cron", "0 25 * * *"), "'0 25 * * *'"),
    "the server": Case(("serve", "./pets", "--out", "errors/out", "--encoder", OFFLINE_ENCODER),
                       "PREFECT_API_URL", ("prefect server start",)),
}

# What a new user types: misspelled values and options, the wrong file, the wrong folder.
TYPOS: dict[str, Case] = {
    "misspelled runner": Case((*RUN, "./pets", *OUT, "--runner", "dsak"), "'dsak'"),
    "keep as a percentage": Case((*RUN, "./pets", *OUT, "--keep", "70%"), "'70%'"),
    "policy without =": Case((*RUN, "./pets", *OUT, "--policy", "class_cap"), "'class_cap'"),
    "misspelled catalog name": Case((*RUN, "digit", *OUT), "'digit'", ("digits",)),
    "an image as the target": Case((*RUN, "pets/0/png_grey.png", *OUT), "png_grey.png", (".toml", ".csv")),
    "a spreadsheet as the target": Case((*RUN, "errors/labels.xlsx", *OUT), "labels.xlsx", (".toml", ".csv")),
    "the class folder instead of its parent": Case((*RUN, "pets/0", *OUT), "pets/0"),
    "--label-column on a folder": Case((*RUN, "./pets", *OUT, "--label-column", "y"), "'y'"),
    "misspelled label column": Case((*RUN, "labels.parquet", "--path-column", "file", "--label-column", "Y", *OUT),
                                    "'Y'"),
    "misspelled option": Case((*RUN, "./pets", "--out", "errors/out", "--encodr", OFFLINE_ENCODER), "--encodr",
                              ("--encoder",)),
    "no --out": Case((*RUN, "./pets", "--encoder", OFFLINE_ENCODER), "--out"),
    "a word for a number": Case((*RUN, "./pets", *OUT, "--k", "ten"), "'ten'"),
    "misspelled command": Case(("rn", "./pets", *OUT), "'rn'", ("run",)),
    "report of a folder that is not a run": Case(("report", "out/never-ran"), "out/never-ran"),
    "export of a folder that is not a run": Case(("export", "errors/empty"), "errors/empty"),
    "misspelled export format": Case(("export", "errors/run", "--format", "parqet"), "'parqet'"),
    "misspelled noise kind": Case(("evaluate", "digits", "--encoder", OFFLINE_ENCODER, "--noise", "symetric:0.2"),
                                  "'symetric'"),
    "noise rate above 1": Case(("evaluate", "digits", "--encoder", OFFLINE_ENCODER, "--noise", "pair:30"), "30"),
    "detect with arrays of different lengths": Case(
        ("detect", "--labels", "errors/y10.npy", "--embeddings", "errors/x9.npy", "--out", "errors/i.parquet"),
        "10", ("9",)),
    "detect with a text file of labels": Case(
        ("detect", "--labels", "errors/labels.txt", "--embeddings", "errors/x9.npy", "--out", "errors/i.parquet"),
        "labels.txt"),
    "detect with no arrays": Case(("detect", "--labels", "errors/y10.npy", "--out", "errors/i.parquet"),
                                  "--embeddings", ("--pred-probs",)),
    "serve with both schedules": Case(("serve", "./pets", "--out", "errors/out", "--interval", "60", "--cron",
                                       "0 3 * * *"), "'0 3 * * *'"),
}

CASES = {**DOCUMENTED, **TYPOS}


@pytest.fixture(scope="module")
def mistakes(workspace: Workspace) -> Workspace:
    """The files each mistake needs, under errors/ in the working folder."""
    e = workspace.path / "errors"
    if e.exists():
        return workspace
    e.mkdir()
    pets = workspace.data.folder

    def catalog(name: str, body: str, root: str = "../pets") -> None:
        (e / name).write_text(f'name = "{name.removesuffix(".toml")}"\n{body}\n[source]\nkind = "image_folder"\n'
                              f'root = "{root}"\n')

    catalog("colour.toml", 'colour = "red"')
    catalog("classes-string.toml", 'classes = "0, 1, 2"')
    catalog("no-root.toml", "", root="no-such-folder")
    catalog("two-classes.toml", 'classes = ["0", "1"]')
    catalog("four-classes.toml", 'classes = ["0", "1", "2", "3"]')
    catalog("no-truth.toml", 'ground_truth = "flips.parquet"')
    (e / "not-toml.toml").write_text("name = pets\n")
    (e / "empty" / "cat").mkdir(parents=True)
    (e / "empty" / "cat" / "notes.txt").write_text("no images here")
    rel = [f"imgs/{c}/img_{i:04d}.png" for c in "012" for i in range(4)]  # beside the tables, in errors/
    for path in rel:
        (e / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pets / path.removeprefix("imgs/"), e / path)
    labels = [p.split("/")[1] for p in rel]
    images = rel
    pl.DataFrame({"path": rel + [rel[0]], "label": labels + [labels[0]]}).write_csv(e / "duplicate.csv")
    pl.DataFrame({"path": rel, "y": labels}).write_csv(e / "no-label.csv")
    pl.DataFrame({"path": ["../outside.png", *rel[1:]], "label": labels}).write_csv(e / "escape.csv")
    pl.DataFrame({"path": rel, "label": [None if i == 1 else x for i, x in enumerate(labels)]}).write_csv(
        e / "no-label-row.csv")
    pl.DataFrame({"file": rel, "thumb": rel, "label": labels}).write_csv(e / "two-path-columns.csv")
    pl.DataFrame({"path": ["s3://bucket/" + p for p in images], "label": labels}).write_csv(e / "s3.csv")
    pl.DataFrame({"image": [{"bytes": b"\x89PNG", "path": p} for p in images], "label": labels}).write_parquet(
        e / "hf.parquet")
    (e / "labels.xlsx").write_bytes(b"PK\x03\x04 not really a spreadsheet")
    (e / "labels.txt").write_text("0\n1\n2\n")
    np.save(e / "y10.npy", np.arange(10) % 2)
    np.save(e / "x9.npy", np.random.default_rng(0).normal(size=(9, 4)))
    (e / "run").mkdir()  # an output folder without a run in it
    return workspace


def test_every_documented_error_has_a_case():
    """The README's lists of mistakes, read now: each item must be a key of DOCUMENTED."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    catalog_list = re.search(r"\n(Unknown keys,.*?) each raise a named", readme, flags=re.S)[1]
    run_list = re.search(r"before any work starts: (.*?)\. A mistake", readme, flags=re.S)[1]
    text = " ".join(f"{catalog_list}, {run_list}".replace("`", "").split())
    items = [re.sub(r"^(or|and) ", "", x.strip()) for x in re.split(r",|\sand\s", text)]
    missing = [x for x in items if x not in DOCUMENTED]
    assert not missing, f"README names mistakes with no case here: {missing}"


@pytest.fixture(scope="module")
def outcomes(mistakes: Workspace) -> dict[str, tuple[Completed, Path]]:
    """Every case run once, a few at a time (each its own `winnow` process and --out folder)."""
    def run(i: int, case: Case) -> tuple[Completed, Path]:
        out = f"errors/out-{i}"
        argv = ["winnow", *(out if word == "errors/out" else word for word in case.argv)]
        env = {"PREFECT_API_URL": ""} if case.argv[0] == "serve" else {}  # no server unless named
        return mistakes.run(argv, timeout=300, **env), mistakes.path / out

    with ThreadPoolExecutor(max_workers=2) as pool:  # CPU-bound processes; CI has 2 cores
        futures = {name: pool.submit(run, i, case) for i, (name, case) in enumerate(CASES.items())}
    return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("name", list(CASES))
def test_user_error_is_one_line_quoting_the_value(outcomes, name: str):
    case = CASES[name]
    result, out = outcomes[name]
    assert result.returncode == 2, f"exit {result.returncode}:\n{result.output[-2000:]}"
    assert "Traceback" not in result.output, result.output[-2000:]
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1, result.output
    line = result.stderr.strip()
    assert line.startswith("error: ") and case.quoted in line, line
    for text in case.also:
        assert text in line, f"{line!r} does not say {text!r}"
    assert not out.exists(), f"a run folder was left behind: {sorted(p.name for p in out.iterdir())}"


def test_a_bug_is_not_a_user_error(mistakes: Workspace):
    """An unexpected exception in the real `winnow` script: exit 1 and its own traceback, ending
    with that exception (not dressed as `error: ...`, and no second error raised while handling it)."""
    boom = mistakes.path / "errors" / "sitecustomize.py"  # imported by the interpreter at start-up
    boom.write_text("import winnow.catalogs.samples as s\n"
                    "def _boom(*a, **k):\n"
                    "    raise RuntimeError('boom: a bug, not a user error')\n"
                    "s._with_label_index = _boom\n")
    pythonpath = f"{boom.parent}:{mistakes.env['PYTHONPATH']}"
    try:
        result = mistakes.run(["winnow", "run", "./pets", "--out", "errors/bug", "--encoder", OFFLINE_ENCODER],
                              PYTHONPATH=pythonpath)
    finally:
        boom.unlink()
    assert result.returncode == 1, result.output
    assert "Traceback" in result.stderr and "error: boom" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "RuntimeError: boom: a bug, not a user error", result.stderr
    assert "During handling of the above exception" not in result.stderr, result.stderr
