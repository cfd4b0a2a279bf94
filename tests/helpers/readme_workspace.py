"""The folder the README's commands run in (tests/acceptance/), and what stands in for each of
its placeholders.

A README command is run as written, in one shared working folder, except where the tables
below say otherwise. Most placeholders are real files made under the README's own names
(`./pets`, `labels.csv`, `train.toml`...), so the command line itself is unchanged; the few
that cannot exist here (an absolute `/data/...` path, the UI port) are substituted word for
word; and the encoder is swapped where the README's one needs downloaded weights.

A new README command that names a file none of these make fails
tests/acceptance/test_readme.py::test_every_file_a_command_names_is_bound, naming the file: add
it to PLACEHOLDERS (made in make_workspace, or on demand in Workspace.prepare) or to
SUBSTITUTED, or write it from a `<!-- acceptance: file PATH -->` block of the README.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from tests.helpers import REPO
from tests.helpers.clirun import Completed, run_winnow
from tests.helpers.prefect_server import (
    api_post,
    isolated_env,
    process_group_gone,
    stop_process_group,
)
from tests.helpers.readme import Command
from tests.helpers.userdata import UserData, make_user_folder

# README placeholder -> what stands in for it. Each is made, under the README's own name, in
# the working folder by Workspace.prepare (the arrays only once the run they come from exists).
PLACEHOLDERS: dict[str, str] = {
    "./pets": "a real image folder of 3 digit classes (tests/helpers/userdata.make_user_folder): every supported "
              "format and the variants phones and tools write, odd files (.txt, .csv, no extension, .heic), "
              "a truncated PNG, a text file named .png, a byte copy, and hidden files",
    "./pets/0": "one class folder of ./pets, read with --unlabeled as a folder without labels",
    "labels.csv": "the same data as a CSV manifest (path,label; paths relative to it)",
    "labels.parquet": "the same manifest as Parquet, its columns named file and y",
    "catalogs/pets.toml": "a catalog named pets over ./pets",
    "pets.toml": "the same catalog, beside ./pets",
    "train.toml": "a catalog over ./pets",
    "val.toml": "a catalog over splits/val: new digits plus byte copies of 3 ./pets images (planted leaks)",
    "test.toml": "a catalog over splits/test: new digits plus byte copies of 2 ./pets images (planted leaks)",
    "big.toml": "a catalog over ./pets (big in name only: the suite must stay fast)",
    "y.npy": "the given labels of the bundled digits run (out/digits), as integers",
    "p.npy": "out-of-fold predicted probabilities for them (5-fold, a 15-nearest-neighbour classifier on x.npy)",
    "x.npy": "their embeddings, read from out/digits/store",
    "x.parquet": "the same embeddings as one list column",
    "labels.csv (detect)": "for `detect`: arrays/labels.csv, the id and label of each x.parquet row",
    "catalog-example/": "an images/ folder of cat and dog (two classes of ./pets) with 2 planted flips in "
                        "noise.parquet, for the Catalogs section's TOML (written there by its file marker)",
    "benchmarks/data/": "this checkout's benchmarks/data (a link)",
    "digits": "the bundled catalog, written into the session's WINNOW_CACHE",
    "data.parquet": "./pets as one Parquet file of image bytes (HF Image struct) and labels",
    "shards/{000..003}.tar": "./pets as 4 WebDataset tar shards (<key>.png, <key>.cls)",
    "reviews.csv": "a text classification CSV (id, text, label: 3 topics of short sentences)",
}

# Words replaced in a command line: the README's value cannot be used on a test machine.
SUBSTITUTED = {
    "/data/pets-clean": "a folder in the working folder (pets-clean)",
    "http://127.0.0.1:4200/api": "the API of the Prefect server the suite started on a free port",
    "prefect server start": "that server: started once by the suite (tests/helpers/prefect_server.py), stopped by PID",
    "labels.csv": "arrays/labels.csv in `detect` commands (the run's labels.csv has paths, not ids)",
}

# The encoder. Hub weights (any open_clip pretrained tag, Winnow's default among them) need a
# network, which tests do not have: those commands run with OFFLINE_ENCODER instead, and the
# default's offline failure is tested on its own (test_default_encoder_offline_fails_in_one_line).
# The bundled digits catalog names efficientnet-lite0, which works offline but embeds its 1,797
# images in about 3 minutes on 2 busy cores; its commands run with OFFLINE_ENCODER too, for time.
# efficientnet-lite0 itself still runs: the README's `--encoder efficientnet-lite0` lines keep it.
OFFLINE_ENCODER = "pixels:16"
ENCODER_COMMANDS = ("run", "serve", "evaluate", "demo")

# `--shards 8` under `--runner dask` starts 8 worker processes; on the 2 cores tests get that
# is 8 Prefect clients competing for them. The suite runs the same command with 2.
SHARDS_HERE = "2"


# Names a README python block uses without defining them -> the code that binds them (run before
# the block, only for the names it uses): the bundled digits run of the CLI block (out/digits) and
# images of ./pets in several formats. A new block using only these (or none) runs as it is.
PYTHON_PLACEHOLDERS: dict[str, str] = {
    "labels": "labels = _np.load('y.npy')",
    "emb": "emb = _np.load('x.npy')",
    "pred_probs": "pred_probs = _np.load('p.npy')",
    "hashes": "hashes = _pl.read_parquet('out/digits/latest/manifest.parquet')['content_hash'].to_list()",
    "ids": "ids = _pl.read_parquet('out/digits/latest/manifest.parquet')['sample_id'].to_list()",
    "pil_images": "pil_images = [_Image.open('pets/' + p) for p in {images!r}]",
}
PYTHON_PREPARES = {"labels": "y.npy", "emb": "x.npy", "pred_probs": "p.npy", "hashes": "x.npy", "ids": "x.npy"}
# Formats of ./pets whose images stand in for `pil_images` (tests/helpers/userdata.py VARIANTS).
PIL_VARIANTS = ("png_rgba", "jpeg_cmyk", "webp_lossy", "gif_animated", "bmp", "tiff_multipage")


def python_prelude(code: str, workspace: Workspace) -> str:
    """The bindings of PYTHON_PLACEHOLDERS a block uses (a bare name it never assigns)."""
    used = [name for name in PYTHON_PLACEHOLDERS
            if re.search(rf"\b{name}\b", code) and not re.search(rf"^\s*{name}\s*=", code, flags=re.M)]
    for name in used:
        if name in PYTHON_PREPARES:
            workspace.prepare(PYTHON_PREPARES[name])
    images = [rel for rel, variant in workspace.data.variant.items() if variant in PIL_VARIANTS]
    lines = ["# The README block's placeholders, bound to real data (tests/helpers/readme_workspace.py).",
             "import numpy as _np, polars as _pl", "from PIL import Image as _Image"]
    lines += [PYTHON_PLACEHOLDERS[name].format(images=images) for name in used]
    return "\n".join(lines) + "\n\n"


def bind_encoder(argv: list[str]) -> list[str]:
    """The README's argv with OFFLINE_ENCODER where its encoder needs hub weights or is digits' (see above)."""
    if len(argv) < 2 or argv[0] != "winnow" or argv[1] not in ENCODER_COMMANDS:
        return argv
    if "--encoder" in argv:
        i = argv.index("--encoder") + 1
        if argv[i].startswith("open_clip:"):
            argv[i] = OFFLINE_ENCODER
        return argv
    if "--text-column" in argv or any(w.endswith(".jsonl") for w in argv):
        return argv  # texts: the default text encoder (MiniLM) is packaged on PyPI and loads offline
    return [*argv, "--encoder", OFFLINE_ENCODER]


@dataclass
class Workspace:
    path: Path  # the working folder every command runs in
    data: UserData  # ./pets and what each of its files must become
    env: dict[str, str]
    leaks: set[str] = field(default_factory=set)  # ./pets paths (folder-relative) copied into val/test
    server_url: str | None = None  # the Prefect server, once started
    exported: dict[str, str] = field(default_factory=dict)  # what the README's `export NAME=VALUE` lines set
    results: dict[int, Completed] = field(default_factory=dict)  # README line -> what its command did
    manifests: dict[int, pl.DataFrame] = field(default_factory=dict)  # README line -> the manifest it wrote
    served: dict[tuple[str, ...], int] = field(default_factory=dict)  # `winnow serve` argv -> README line
    _prepared: set[str] = field(default_factory=set)

    # --- placeholders -------------------------------------------------------------------------
    def bind(self, command: Command) -> list[str]:
        """The command's argv as the suite runs it: substitutions, then the encoder rule."""
        argv = list(command.argv)
        detect = argv[:2] == ["winnow", "detect"]
        out = []
        for word in argv:
            if word == "/data/pets-clean":
                word = str(self.path / "pets-clean")
            elif word == "http://127.0.0.1:4200/api" or word.endswith("=http://127.0.0.1:4200/api"):
                word = word.replace("http://127.0.0.1:4200/api", self.require_server())
            elif detect and word == "labels.csv":
                word = "arrays/labels.csv"
            out.append(word)
        if "--shards" in out and "--runner" in out and out[out.index("--runner") + 1] == "dask":
            out[out.index("--shards") + 1] = SHARDS_HERE
        for word in out:
            self.prepare(word)
        return bind_encoder(out)

    def prepare(self, word: str) -> None:
        """Make the file a command word names, if it is a placeholder made on demand."""
        makers: dict[str, Callable[[], None]] = {
            "y.npy": self._make_arrays, "p.npy": self._make_arrays, "x.npy": self._make_arrays,
            "x.parquet": self._make_arrays, "arrays/labels.csv": self._make_arrays,
        }
        if word in makers and word not in self._prepared:
            makers[word]()

    def require_server(self) -> str:
        if self.server_url is None:
            raise RuntimeError("this command needs the suite's Prefect server (the prefect_api fixture)")
        return self.server_url

    def _make_arrays(self) -> None:
        """y/p/x.npy, x.parquet and arrays/labels.csv from the bundled digits run in out/digits
        (the CLI block's; made here when a command that needs them runs without it)."""
        from sklearn.model_selection import cross_val_predict
        from sklearn.neighbors import KNeighborsClassifier

        from winnow.embeddings import EmbeddingStore

        out = self.path / "out" / "digits"
        if not (out / "latest" / "manifest.parquet").exists():
            made = self.run(["winnow", "run", "digits", "--out", "out/digits", "--encoder", OFFLINE_ENCODER, "--quiet"])
            assert made.returncode == 0, made.output[-3000:]
        manifest = pl.read_parquet(out / "latest" / "manifest.parquet")
        (meta_path,) = list((out / "store").glob("*/meta.json"))  # one encoder ran there (OFFLINE_ENCODER)
        meta = json.loads(meta_path.read_text())
        store = EmbeddingStore(out / "store", encoder_id=meta["encoder_id"], dim=meta["dim"])
        store.write_matrix(manifest["content_hash"].to_list(), self.path / "x.npy")
        x = np.load(self.path / "x.npy")
        y = manifest["label"].cast(pl.Int64).to_numpy()
        np.save(self.path / "y.npy", y)
        model = KNeighborsClassifier(n_neighbors=15, weights="distance")
        np.save(self.path / "p.npy", cross_val_predict(model, x, y, cv=5, method="predict_proba"))
        pl.DataFrame({"embedding": x.tolist()}).write_parquet(self.path / "x.parquet")
        (self.path / "arrays").mkdir(exist_ok=True)
        pl.DataFrame({"id": manifest["sample_id"], "label": manifest["label"]}).write_csv(
            self.path / "arrays" / "labels.csv")
        (self.path / "arrays" / "paths.json").write_text(json.dumps(manifest["path"].to_list()))
        self._prepared.update({"y.npy", "p.npy", "x.npy", "x.parquet", "arrays/labels.csv"})

    # --- running ------------------------------------------------------------------------------
    def run(self, argv: list[str], *, timeout: float = 400, **env: str) -> Completed:
        """A `winnow ...` command (the installed script) or a `python ...` one (this interpreter)."""
        if argv[0] in ("python", "python3"):
            started = time.perf_counter()
            proc = subprocess.run([sys.executable, *argv[1:]], cwd=self.path, env={**self.env, **env},
                                  capture_output=True, text=True, timeout=timeout)
            return Completed(proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - started)
        assert argv[0] == "winnow", argv
        return run_winnow(*argv[1:], env={**self.env, **env}, cwd=self.path, timeout=timeout, track_imports=False)

    def run_python(self, code: str, *, timeout: float = 400, **env: str) -> Completed:
        """A README python block, with python_prelude's bindings before it, as a script in the folder."""
        script = self.path.parent / f"block-{len(list(self.path.parent.glob('block-*.py')))}.py"
        script.write_text(python_prelude(code, self) + code + "\n", encoding="utf-8")
        return self.run(["python", str(script)], timeout=timeout, **env)

    def serve(self, argv: list[str], *, until: Callable[[], bool], timeout: float = 240, env: dict | None = None,
              log_name: str = "serve") -> tuple[str, float]:
        """Start `winnow serve ...`, wait for `until()` (polled each second), stop it by PID.

        Returns (its output, seconds until `until` held). Fails when it exits on its own or
        `until` never holds; the process group is gone either way.
        """
        assert argv[:2] in (["winnow", "serve"], ["winnow", "review"]), argv
        log_path = self.path / f"{log_name}.log"
        # PREFECT_API_URL as the README's `export` line sets it (default: the suite's server); runs
        # are picked up every 2 s instead of 10.
        server = {"PREFECT_API_URL": self.require_server()} if argv[1] == "serve" else {}  # review needs none
        env = {**self.env, **server, **(env or {}), "PREFECT_RUNNER_POLL_FREQUENCY": "2"}
        started = time.monotonic()
        with open(log_path, "w") as log:
            proc = subprocess.Popen([str(Path(sys.executable).with_name("winnow")), *argv[1:]], cwd=self.path,
                                    env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                while not until():
                    if proc.poll() is not None:
                        raise AssertionError(f"`{' '.join(argv)}` exited {proc.returncode}:\n"
                                             + log_path.read_text()[-3000:])
                    if time.monotonic() - started > timeout:
                        raise AssertionError(f"`{' '.join(argv)}`: not done after {timeout} s:\n"
                                             + log_path.read_text()[-3000:])
                    time.sleep(1)
                took = time.monotonic() - started
            finally:
                stop_process_group(proc, grace=45)  # Ctrl-C; pausing the schedule is a server call
            assert process_group_gone(proc.pid), f"`{' '.join(argv)}` is still running"
        return log_path.read_text(), took

    def deployments(self) -> list[dict]:
        return api_post(f"{self.require_server()}/deployments/filter", {})


def make_workspace(path: Path) -> Workspace:
    """The working folder with every placeholder that exists before the first command."""
    path.mkdir(parents=True, exist_ok=True)
    data = make_user_folder(path)  # path/images, path/labels.csv (paths images/...)
    (path / "images").rename(path / "pets")
    data.root, data.folder, data.manifest = path, path / "pets", path / "labels.csv"
    with open(data.manifest, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    with open(data.manifest, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([rows[0], *([re.sub(r"^images/", "pets/", p), label] for p, label in rows[1:])])
    pl.read_csv(data.manifest).rename({"path": "file", "label": "y"}).write_parquet(path / "labels.parquet")

    def catalog(file: Path, name: str, root: str) -> None:
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(f'name = "{name}"\n\n[source]\nkind = "image_folder"\nroot = "{root}"\n')

    catalog(path / "catalogs" / "pets.toml", "pets", "../pets")
    catalog(path / "pets.toml", "pets", "pets")
    catalog(path / "train.toml", "train", "pets")
    catalog(path / "big.toml", "big", "pets")
    leaks = _write_splits(path, data)
    catalog(path / "val.toml", "val", "splits/val")
    catalog(path / "test.toml", "test", "splits/test")
    _write_catalog_example(path, data)
    _write_byte_and_text_sources(path, data)
    os.symlink(REPO / "benchmarks", path / "benchmarks")

    home = path / "prefect-home"
    empty_hf = path / "empty-hf-home"
    empty_hf.mkdir()
    env = isolated_env(home, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
                       COLUMNS="200",
                       # No network in tests, said explicitly so a machine that has one behaves the same,
                       # and no cached hub weights (HF_HOME empty): the default encoder must fail at once.
                       HF_HUB_OFFLINE="1", HF_HOME=str(empty_hf))
    env["WINNOW_CACHE"] = os.environ["WINNOW_CACHE"]  # the session's (tests/conftest.py)
    # Prefect's own knob: a temporary server (the Dask command's) may take over its default 20 s
    # to start on a shared 2-core machine; 120 s as in tests/conftest.py's prefect_harness.
    env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
    return Workspace(path=path, data=data, env=env, leaks=leaks)


def _write_byte_and_text_sources(path: Path, data: UserData) -> None:
    """data.parquet and shards/ (./pets' decodable images as bytes) and reviews.csv (texts)."""
    from tests.helpers.bytesources import write_parquet_shards, write_webdataset
    from tests.helpers.texts import topic_rows, write_csv

    images = []  # the decodable PNG / JPEG files of ./pets (its odd and hidden files stay out)
    for class_dir in sorted(p for p in data.folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in sorted(class_dir.iterdir()):
            if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in (".png", ".jpg", ".jpeg"):
                images.append((f"{class_dir.name}/{f.name}", f.read_bytes(), class_dir.name))
    [part] = write_parquet_shards(path / "pq", images)
    part.rename(path / "data.parquet")
    shutil.rmtree(path / "pq")
    for shard in write_webdataset(path / "shards", images, shards=4):  # shards/000.tar ... 003.tar
        shard.rename(shard.with_name(shard.name.removeprefix("shard-")))
    write_csv(path / "reviews.csv", topic_rows(20, seed=3))


def _write_splits(path: Path, data: UserData) -> set[str]:
    """splits/val and splits/test: new digits (classes 3-9, not in ./pets) and byte copies of 5 ./pets images."""
    from tests.helpers.userdata import digit_images_by_class

    planted = {"val": ["0/img_0002.png", "1/img_0003.png", "2/img_0004.png"], "test": ["0/img_0005.png",
                                                                                        "2/img_0001.png"]}
    new = digit_images_by_class(4, classes=("3", "5", "7", "9"), seed=11)
    for split, copies in planted.items():
        for cls, images in new.items():
            for i, img in enumerate(images):
                target = path / "splits" / split / cls / f"{split}_{i}.png"
                target.parent.mkdir(parents=True, exist_ok=True)
                img.save(target)
        for rel in copies:
            target = path / "splits" / split / rel.split("/")[0] / f"copied_{rel.split('/')[1]}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(data.folder / rel, target)
    return {rel for copies in planted.values() for rel in copies}


CATALOG_FLIPS = ("cat/img_0001.png", "dog/img_0002.png")  # filed under the other class (as flipped_*) in catalog-example


def _write_catalog_example(path: Path, data: UserData) -> None:
    """catalog-example/: images/cat (class 0 of ./pets), images/dog (class 1), with 2 files swapped.

    The TOML itself is the README's, written by the test that runs it.
    """
    root = path / "catalog-example" / "images"
    for name, cls in (("cat", "0"), ("dog", "1")):
        shutil.copytree(data.folder / cls, root / name)
    truth = []
    for rel in CATALOG_FLIPS:  # a cat filed as a dog and a dog as a cat: planted label flips
        cls, file = rel.split("/")
        moved = f"{'dog' if cls == 'cat' else 'cat'}/flipped_{file}"
        (root / rel).rename(root / moved)
        truth.append({"path": moved, "is_flipped": True})
    # The README's documented form: path and is_flipped (no true_label).
    pl.DataFrame(truth).write_parquet(path / "catalog-example" / "noise.parquet")
