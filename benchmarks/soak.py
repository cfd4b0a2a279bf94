"""Soak: run the clean flow over and over on random datasets with random faults; count rows lost.

Each run writes a fresh small dataset of real digits plus random faults (truncated,
zero-byte, non-image, disguised EPS, decompression bomb, 16-bit, CMYK, palette, alpha,
EXIF-rotated, symlink out of the root, FIFO, byte duplicate, odd names, and files that
vanish between listing and reading), runs `clean_dataset`, and checks the promise:
every input exactly once, each fault with its reason. Every `--kill-every`-th run is
first SIGKILLed mid-stage in a subprocess (embedding, indexing or manifest writing) and
then resumed in the same output folder.

    .venv/bin/python -m benchmarks.soak --runs 40 --kill-every 4 --seed 0

Run from the repository root (it reuses the test suite's fault writers and kill driver).
Prints a Markdown table (--markdown PATH also writes it to a file): runs, kills, faults injected, rows checked, rows lost, rows
duplicated, wrong reasons, crashes. Exit status 1 when anything was lost or wrong.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # handed to the kill driver (the crash-safety test's)
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import polars as pl  # noqa: E402

from benchmarks.common import emit  # noqa: E402
from tests.helpers.crash import DRIVER  # noqa: E402
from tests.helpers.faults import FAULTS, ODD_NAMES, make_faulty_folder  # noqa: E402
from winnow.catalogs import schemas as S  # noqa: E402
from winnow.pipeline.issues import reason_codes  # noqa: E402

KILL_STAGES = ("embed", "knn", "manifest")


def random_dataset(base: Path, rng: random.Random) -> tuple[Path, dict[str, str | None], set[str], Counter]:
    """A dataset with random faults; returns root, path -> expected reason, files to vanish, fault counts."""
    n_classes = rng.randint(2, 4)
    faults = [(rng.choice(sorted(FAULTS)), rng.randrange(n_classes)) for _ in range(rng.randint(1, 10))]
    root = base / "data"
    expected = make_faulty_folder(root, base / "outside", n=rng.randint(20, 80), faults=faults,
                                  seed=rng.randrange(10_000), n_classes=n_classes)
    injected = Counter(kind for kind, _ in faults)
    originals = sorted(root.glob("*/img_*.png"))
    for i, name in enumerate(rng.sample(ODD_NAMES, rng.randint(0, 2))):
        dest = root / str(i % n_classes) / name
        shutil.copy(originals[i], dest)
        expected[dest.relative_to(root).as_posix()] = None
        injected["odd_name"] += 1
    vanish = set()
    for j in range(rng.randint(0, 2)):
        dest = root / "0" / f"vanish_{j}.png"
        shutil.copy(originals[-1 - j], dest)
        expected[dest.relative_to(root).as_posix()] = "missing"
        vanish.add(str(dest.absolute()))
        injected["vanish"] += 1
    return root, expected, vanish, injected


def audit(manifest: pl.DataFrame, expected: dict[str, str | None]) -> dict[str, int]:
    """Rows lost, duplicated, invented, and rows whose reasons break the promise."""
    paths = manifest[S.PATH].to_list()
    counts = Counter(paths)
    wrong = 0
    for path, reasons in zip(paths, manifest[S.REASONS].to_list(), strict=True):
        want = expected.get(path)
        unusable = set(reasons or []) & S.UNUSABLE_REASONS
        if reasons is None or not set(reasons) <= set(reason_codes()):
            wrong += 1
        elif want is None and unusable or want is not None and reasons != [want]:
            wrong += 1
    return {
        "lost": sum(1 for p in expected if p not in counts),
        "duplicated": sum(c - 1 for c in counts.values() if c > 1),
        "invented": sum(1 for p in counts if p not in expected),
        "wrong_reason": wrong,
    }


def kill_midway(stage: str, root: Path, out: Path, store: Path) -> int:
    from prefect.settings import PREFECT_API_URL

    driver = out.parent / "driver.py"
    driver.write_text(DRIVER)
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    proc = subprocess.run([sys.executable, str(driver), str(REPO), stage, str(root), str(out), str(store)],
                          env=env, capture_output=True, text=True, timeout=600)
    return proc.returncode


def soak(runs: int, seed: int, kill_every: int, encoder: str) -> dict[str, int]:
    import winnow.reading as reading_mod  # every file read of a run goes through winnow.reading.read_file
    from winnow.flows.clean import clean_dataset
    from winnow.pipeline.config import make_settings

    rng = random.Random(seed)
    totals = Counter()
    real_read = reading_mod.read_file
    vanish: set[str] = set()

    def read(path, **options):
        if path in vanish and os.path.lexists(path):
            os.remove(path)
        return real_read(path, **options)

    reading_mod.read_file = read
    try:
        for i in range(runs):
            base = Path(tempfile.mkdtemp(prefix="winnow-soak-"))
            try:
                root, expected, vanish_now, injected = random_dataset(base, rng)
                killed = bool(kill_every) and (i + 1) % kill_every == 0
                if killed:  # the killed process reads them normally: nothing vanishes in this run
                    for path in vanish_now:
                        expected[Path(path).relative_to(root).as_posix()] = None
                    injected.pop("vanish", None)
                    vanish_now = set()
                vanish.clear()
                vanish.update(vanish_now)
                out, store = base / "out", base / "store"
                out.mkdir()
                totals["faults"] += sum(injected.values())
                totals.update({f"fault:{k}": v for k, v in injected.items()})
                if killed:
                    rc = kill_midway(rng.choice(KILL_STAGES), root, out, store)
                    totals["kills"] += rc == -9
                    totals["kill_not_reached"] += rc != -9
                try:
                    paths = clean_dataset(str(root), make_settings(out=str(out), store=str(store),
                                                    encoder=encoder, k=5))
                except Exception as exc:  # counted, not hidden: a crash breaks the promise
                    totals["crashes"] += 1
                    print(f"run {i}: {type(exc).__name__}: {exc}", file=sys.stderr)
                    continue
                manifest = pl.read_parquet(paths["manifest"])
                totals.update(audit(manifest, expected))
                totals["rows"] += len(expected)
                totals["runs"] += 1
            finally:
                shutil.rmtree(base, ignore_errors=True)
    finally:
        reading_mod.read_file = real_read
    return totals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=40, help="flow runs (each on a fresh random dataset)")
    parser.add_argument("--seed", type=int, default=0, help="seeds datasets, faults and kill points")
    parser.add_argument("--kill-every", type=int, default=4, help="SIGKILL every Nth run mid-stage, then resume (0: never)")
    parser.add_argument("--encoder", default="pixels:16")
    parser.add_argument("--markdown", type=Path, help="also write the table as markdown to this file")
    args = parser.parse_args()
    from prefect.testing.utilities import prefect_test_harness

    started = time.perf_counter()
    with prefect_test_harness(server_startup_timeout=120):
        t = soak(args.runs, args.seed, args.kill_every, args.encoder)
    seconds = time.perf_counter() - started
    table = ("| runs | killed + resumed | faults injected | rows checked | rows lost | rows duplicated | wrong reasons "
             "| crashes |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n"
             f"| {t['runs']} | {t['kills']} | {t['faults']} | {t['rows']} | {t['lost']} | "
             f"{t['duplicated'] + t['invented']} | {t['wrong_reason']} | {t['crashes']} |")
    kinds = ", ".join(f"{k.split(':', 1)[1]} {v}" for k, v in sorted(t.items()) if k.startswith("fault:"))
    note = (f"Seed {args.seed}, {args.runs} runs, every {args.kill_every}th killed, encoder {args.encoder}, "
            f"{seconds:.0f} s wall on {os.cpu_count()} cores. Faults by kind: {kinds}.")
    if t["kill_not_reached"]:
        note += (f" {t['kill_not_reached']} scheduled kill(s) did not reach their stage (the dataset was too small "
                 "to get there), so those runs simply completed.")
    emit([table, note], args.markdown)
    bad = t["lost"] + t["duplicated"] + t["invented"] + t["wrong_reason"] + t["crashes"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
