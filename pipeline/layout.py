"""Every file of a run, named in one place.

    OUT/runs/<run id>/                  RunLayout
        manifest.parquet clean.parquet diff.parquet summary.json report.html thumbs/
        map.parquet                     the embedding map (pipeline/review/projection.py)
        COMPLETE                        written last: the run finished (pipeline/versions.py)
        work/                           WorkLayout: the stages' files
            samples.parquet             load_samples      -> SamplesOutput
            embed-shard-<i>-of-<n>.*    embed_shard       -> ShardOutput
            embed.parquet embeddings.npy embed.json signals.parquet copies.npz
                                        merge_embeddings  -> EmbedOutput
            knn.npz knn.json            build_knn         -> KnnOutput
            curation.parquet curation.json
                                        curate_samples    -> CurationOutput
            <stage>.done.json           a finished stage's key (pipeline/stage_keys.py)
            holdout-<i>/                WorkLayout of the i-th holdout catalog (samples, embed)

A stage is given the layout it writes into and the outputs of the stages it reads, and
returns its own outputs: small frozen dataclasses of paths (Prefect passes them between
tasks, possibly to other machines), never arrays. No other module spells a run file's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

STAGES = ("samples", "embed", "knn", "curate")
"""The stages that record a done-file, in order."""


@dataclass(frozen=True)
class SamplesOutput:
    table: Path  # samples.parquet: catalogs.schemas.SAMPLES_SCHEMA, one row per input sample


@dataclass(frozen=True)
class ShardOutput:
    table: Path  # one shard's rows: catalogs.schemas.EMBED_SHARD_SCHEMA
    info: Path  # its counts and seconds (JSON)


@dataclass(frozen=True)
class EmbedOutput:
    table: Path  # embed.parquet: catalogs.schemas.EMBED_SCHEMA, one row per sample (`row` into the matrix)
    matrix: Path  # embeddings.npy: (M, D) float16, the usable samples' L2-normalised embeddings (memory-mapped)
    info: Path  # embed.json: encoder, counts, seconds
    done: Path  # embed.done.json: the stage key (curate keys holdouts by it)
    signals: Path  # signals.parquet: one row per sample, its decode-time signals (null where not embedded)
    copies: Path  # copies.npz: embedded edited copies of a sample of the data (the near-duplicate calibration)


@dataclass(frozen=True)
class KnnOutput:
    graph: Path  # knn.npz: the (M, k) graph over the matrix rows
    info: Path  # knn.json: method, recall, k, seconds
    wide: Path  # knn-wide.npz: the same search's (M, wide_k) graph when a detector reads further (else absent)


@dataclass(frozen=True)
class CurationOutput:
    table: Path  # curation.parquet: catalogs.schemas.CURATION_SCHEMA plus score columns
    facts: Path  # curation.json: cut-offs and counts for the summary


@dataclass(frozen=True)
class RunOutputs:
    manifest: Path  # manifest.parquet: one row per input sample (catalogs.schemas.MANIFEST_SCHEMA)
    clean: Path  # clean.parquet: the kept rows, final labels and weights (CLEAN_SCHEMA)
    diff: Path  # diff.parquet: changes since the previous run (DIFF_SCHEMA)
    summary: Path  # summary.json: counts, cut-offs, timings and the resolved config


@dataclass(frozen=True)
class WorkLayout:
    """The stage files of one catalog in one folder: a run's `work/`, or a holdout's."""

    folder: Path

    @property
    def samples(self) -> SamplesOutput:
        return SamplesOutput(table=self.folder / "samples.parquet")

    def shard(self, shard: int, n_shards: int) -> ShardOutput:
        stem = self.folder / f"embed-shard-{shard}-of-{n_shards}"
        return ShardOutput(table=stem.with_suffix(".parquet"), info=stem.with_suffix(".json"))

    @property
    def embed(self) -> EmbedOutput:
        return EmbedOutput(table=self.folder / "embed.parquet", matrix=self.folder / "embeddings.npy",
                           info=self.folder / "embed.json", done=self.done("embed"),
                           signals=self.folder / "signals.parquet", copies=self.folder / "copies.npz")

    @property
    def knn(self) -> KnnOutput:
        return KnnOutput(graph=self.folder / "knn.npz", info=self.folder / "knn.json",
                         wide=self.folder / "knn-wide.npz")

    @property
    def curation(self) -> CurationOutput:
        return CurationOutput(table=self.folder / "curation.parquet", facts=self.folder / "curation.json")

    def done(self, stage: str) -> Path:
        """The done-file of `stage` (its key; pipeline/stage_keys.py)."""
        return self.folder / f"{stage}.done.json"

    def holdout(self, i: int) -> WorkLayout:
        """The work folder of the i-th holdout catalog."""
        return WorkLayout(self.folder / f"holdout-{i}")


@dataclass(frozen=True)
class RunLayout:
    """One run's folder: its published outputs and its `work/`."""

    folder: Path

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def work(self) -> WorkLayout:
        return WorkLayout(self.folder / "work")

    @property
    def outputs(self) -> RunOutputs:
        return RunOutputs(manifest=self.folder / "manifest.parquet", clean=self.folder / "clean.parquet",
                          diff=self.folder / "diff.parquet", summary=self.folder / "summary.json")

    @property
    def manifest(self) -> Path:
        return self.outputs.manifest

    @property
    def summary(self) -> Path:
        return self.outputs.summary

    @property
    def report(self) -> Path:
        return self.folder / "report.html"

    @property
    def thumbs(self) -> Path:
        return self.folder / "thumbs"

    @property
    def map(self) -> Path:
        """map.parquet: the embedding map (pipeline/review/projection.py), once per run."""
        return self.folder / "map.parquet"

    @property
    def complete(self) -> Path:
        """Written last: the run finished."""
        return self.folder / "COMPLETE"

    def published(self) -> tuple[Path, ...]:
        """What OUT/ points at (through OUT/latest) once the run is published."""
        o = self.outputs
        return (o.manifest, o.clean, o.summary, o.diff, self.report, self.thumbs)


LATEST = "latest"  # OUT/latest -> runs/<run id>: the newest complete run
RUNS = "runs"  # OUT/runs/<run id>/: one folder per run

PUBLISHED = tuple(p.name for p in RunLayout(Path("run")).published())
"""The names OUT/ links to the latest run's files by."""
