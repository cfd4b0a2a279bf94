"""The `winnow` command line: each command builds a config and calls one flow or function.

A user's mistake (Winnow's own named errors) is one line on stderr, `error: ...` quoting the
bad value, exit status 2, found before any orchestration starts; any other exception is a bug
and keeps its traceback (exit 1). Commands import torch and Prefect only after their inputs
are checked, so a mistake is reported in about a second.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

# Prefect's per-task INFO lines drown the summary; users can still ask for them.
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# Telemetry needs a network and only produces error lines without one.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import typer  # noqa: E402

from winnow.catalogs import CatalogError, list_catalogs, resolve_catalog  # noqa: E402
from winnow.curation import InvalidArray, MissingDependency  # noqa: E402
from winnow.pipeline.config import RUNNERS, ConfigError, RunConfig  # noqa: E402
from winnow.pipeline.files import RunLocked  # noqa: E402

# Plain help (no <bool> on flags) and plain tracebacks for real bugs.
app = typer.Typer(help="Winnow: find and fix label noise, duplicates and junk in ML datasets.",
                  no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                  pretty_exceptions_enable=False)
catalogs_app = typer.Typer(help="Bundled dataset catalogs.", no_args_is_help=True, rich_markup_mode=None)
encoders_app = typer.Typer(help="Encoders that embed samples.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(catalogs_app, name="catalogs")
app.add_typer(encoders_app, name="encoders")

# Named user errors of modules a command may not have imported (they import torch): an error
# of a module that was never imported cannot have been raised.
_LAZY_USER_ERRORS = (("winnow.embeddings.errors", "EncoderError"), ("winnow.pipeline.export", "ExportError"),
                     ("winnow.pipeline.report", "RunNotFound"))


def _is_user_error(exc: BaseException, extra: tuple[type[BaseException], ...] = ()) -> bool:
    kinds = [CatalogError, InvalidArray, MissingDependency, RunLocked, ConfigError, *extra]
    for module, name in _LAZY_USER_ERRORS:
        if module in sys.modules:
            kinds.append(getattr(sys.modules[module], name))
    return isinstance(exc, tuple(kinds))


@contextmanager
def _user_errors(*extra: type[BaseException]) -> Iterator[None]:
    """Winnow's user errors (and `extra`) -> `error: ...` on stderr, exit 2; others propagate."""
    try:
        yield
    except Exception as exc:
        if not _is_user_error(exc, extra):
            raise
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None


def _version(value: bool) -> None:
    if value:
        import winnow

        typer.echo(f"winnow {winnow.__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print Winnow's version and exit.")] = False,
) -> None:
    """Winnow: find and fix label noise, duplicates and junk in ML datasets."""


def _parse_policy(items: list[str]) -> dict:
    """`key=value` pairs; values parse as TOML scalars (numbers, booleans, strings)."""
    import tomllib

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--policy expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value
    return out


TARGET_HELP = ("A catalog .toml file, a .csv / .parquet table of paths and labels, a bundled catalog name, "
               "or a folder of class_name/<images>.")


@app.command()
def run(
    target: Annotated[str, typer.Argument(metavar="TARGET", help=TARGET_HELP)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for manifest.parquet, clean.parquet, summary.json.")],
    encoder: Annotated[str | None, typer.Option(help="Encoder name (`winnow encoders list`). Default: the catalog's, else Winnow's default (open_clip ViT-B-32).")] = None,
    store: Annotated[Path | None, typer.Option(help="Embedding store folder, shared between runs. Default: OUT/store.")] = None,
    k: Annotated[int, typer.Option(min=1, help="Neighbours per sample in the kNN graph.")] = 10,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per model forward pass.")] = 64,
    device: Annotated[str | None, typer.Option(help="cpu, cuda or cuda:N. Default: CUDA when present.")] = None,
    methods: Annotated[str, typer.Option(help="Label-noise detectors, comma-separated (`winnow detectors`), or 'auto'.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed for the probe, the IVF index and k-means (unless --policy kmeans_seed=N).")] = 0,
    policy: Annotated[list[str] | None, typer.Option(help="Decision-policy override KEY=VALUE (repeatable), e.g. on_label_issue=drop, class_cap=500, weighting=effective_number; see README 'Policy'.")] = None,
    keep: Annotated[str | None, typer.Option(help="Prune to a target size: a fraction (0.7) or a count (50000). Same as --policy keep=...")] = None,
    holdout: Annotated[list[str] | None, typer.Option(help="A validation/test catalog (repeatable): training samples that duplicate it are dropped as `leak`.")] = None,
    path_column: Annotated[str | None, typer.Option(help="A table TARGET's column of sample paths (relative to the table's folder). Default: path.")] = None,
    label_column: Annotated[str | None, typer.Option(help="A table TARGET's column of labels. Default: label.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for another run on OUT to finish instead of failing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON (for scripts).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    runner: Annotated[str, typer.Option(help=f"One of {', '.join(RUNNERS)}: 'direct' runs the stages in this process without Prefect; 'prefect' runs the Prefect flow (shown in the server PREFECT_API_URL names); 'dask' runs it on prefect-dask (a LocalCluster unless --dask-address).")] = "direct",
    dask_address: Annotated[str | None, typer.Option(help="Address of an existing Dask scheduler, e.g. tcp://host:8786.")] = None,
    shards: Annotated[int, typer.Option(min=1, help="Embedding shards; under --runner dask each runs on its own worker.")] = 1,
) -> None:
    """Clean a dataset: embed, build the kNN graph, detect problems, write manifests.

    Each run writes a new version under OUT/runs/<run id>/ and then points OUT/latest (and
    OUT/manifest.parquet, clean.parquet, summary.json, diff.parquet) at it. A re-run embeds
    only new or changed files; a killed run resumes where it stopped. Everything given is
    checked before any work starts.
    """
    with _user_errors():
        from winnow.pipeline.run import run_clean, validate_run

        config = RunConfig(target=target, out=str(out), encoder=encoder, store=str(store) if store else None,
                           k=k, batch_size=batch_size, device=device, methods=methods, seed=seed,
                           policy=_parse_policy((policy or []) + ([f"keep={keep}"] if keep else [])),
                           wait_for_lock=wait, holdout=tuple(holdout or ()),
                           progress=not (quiet or as_json), runner=runner, dask_address=dask_address,
                           shards=shards if runner != "dask" or shards > 1 else 2,
                           path_column=path_column, label_column=label_column)
        paths = run_clean(config, plan=validate_run(config))
    _print_summary(paths, as_json=as_json)


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("out/demo"),
    encoder: Annotated[str | None, typer.Option(help="Encoder (default: the digits catalog's, efficientnet-lite0).")] = None,
) -> None:
    """Clean the bundled `digits` catalog (real digits, 10% planted flips) and score the result."""
    with _user_errors():
        from winnow.pipeline.run import run_clean, validate_run

        config = RunConfig(target="digits", out=str(out), encoder=encoder, progress=True)
        paths = run_clean(config, plan=validate_run(config))
    _print_summary(paths, as_json=False)


@app.command()
def serve(
    target: Annotated[str, typer.Argument(help="A catalog .toml file, a bundled catalog name, or a class-folder tree.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder; every scheduled run adds a version under OUT/runs/.")],
    cron: Annotated[str | None, typer.Option(help='Cron schedule, e.g. "0 3 * * *" (03:00 every day, the default).')] = None,
    interval: Annotated[int | None, typer.Option(help="Run every SECONDS instead of on a cron schedule.", metavar="SECONDS")] = None,
    name: Annotated[str | None, typer.Option(help="Deployment name. Default: winnow-<catalog name>.")] = None,
    encoder: Annotated[str | None, typer.Option(help="Encoder name (see `winnow run --help`).")] = None,
    store: Annotated[Path | None, typer.Option(help="Embedding store folder. Default: OUT/store.")] = None,
    k: Annotated[int, typer.Option(min=1, help="Neighbours per sample in the kNN graph.")] = 10,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per model forward pass.")] = 64,
    device: Annotated[str | None, typer.Option(help="cpu, cuda or cuda:N. Default: CUDA when present.")] = None,
    methods: Annotated[str, typer.Option(help="Label-noise detectors, comma-separated, or 'auto'.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed for the probe and every random choice.")] = 0,
    policy: Annotated[list[str] | None, typer.Option(help="Decision-policy override KEY=VALUE (repeatable).")] = None,
    keep: Annotated[str | None, typer.Option(help="Prune to a target size: a fraction (0.7) or a count (50000).")] = None,
    holdout: Annotated[list[str] | None, typer.Option(help="A validation/test catalog (repeatable): training samples that duplicate it are dropped as `leak`.")] = None,
) -> None:
    """Serve the cleaning flow as a Prefect deployment that re-cleans TARGET on a schedule.

    Needs a running Prefect server (`prefect server start`) named by PREFECT_API_URL: its
    scheduler creates the runs, this process executes them, one at a time, until interrupted.
    Every option is checked before anything starts.
    """
    from winnow.flows.deploy import ServeError, check_serve, serve_plan

    with _user_errors(ServeError):
        config = RunConfig(target=target, out=str(out), encoder=encoder, store=str(store.resolve()) if store else None,
                           k=k, batch_size=batch_size, device=device, methods=methods, seed=seed,
                           policy=_parse_policy((policy or []) + ([f"keep={keep}"] if keep else [])),
                           holdout=tuple(holdout or ()))
        plan = check_serve(config, cron=cron, interval=interval, name=name)  # before Prefect is imported
    typer.echo(f"Serving {plan.name!r} {plan.schedule.describe()} on {plan.api_url}; Ctrl-C stops it.")
    serve_plan(plan)


def _print_summary(paths: dict[str, str], *, as_json: bool) -> None:
    summary = json.loads(Path(paths["summary"]).read_text())
    if as_json:
        typer.echo(json.dumps({**summary, "outputs": paths}, indent=2))
        return
    emb = summary.get("embedding", {})
    typer.echo(f"Cleaned {summary['samples']} samples of {summary['catalog']!r} with {summary['encoder']} "
               f"in {summary['seconds']} s (embedded {emb.get('embedded')}, reused {emb.get('reused')}).")
    typer.echo("Decisions: " + ", ".join(f"{d} {c}" for d, c in summary["decisions"].items()))
    if summary["reasons"]:
        typer.echo("Reasons:   " + ", ".join(f"{r} {c}" for r, c in summary["reasons"].items()))
    if summary.get("rare_classes"):
        typer.echo("Rare classes (left out of the noise estimate): "
                   + ", ".join(f"{c} {n}" for c, n in summary["rare_classes"].items()))
    diff = summary.get("diff", {})
    if diff.get("previous_run"):
        counts = {k: v for k, v in diff.items() if k not in ("previous_run", "thresholds")}
        typer.echo(f"Changes since run {diff['previous_run']}: " + ", ".join(
            f"{k.replace('_', ' ')} {v}" for k, v in counts.items()))
        moved = {k: v for k, v in diff.get("thresholds", {}).items() if v["old"] != v["new"]}
        if moved:
            typer.echo("Cut-offs moved (they are estimated from the data): " + ", ".join(
                f"{k} {_num(v['old'])} -> {_num(v['new'])}" for k, v in moved.items()))
    truth = summary.get("ground_truth")
    if truth:
        typer.echo(f"Ground truth ({Path(truth['path']).name}): {truth['true_positives']} of {truth['n_flagged']} "
                   f"flagged label issues are known flips; {truth['n_true_issues']} known flips among "
                   f"{truth['scored']} scored samples.\n"
                   f"  precision {truth['precision']:.3f}   recall {truth['recall']:.3f}   F1 {truth['f1']:.3f}")
    typer.echo(f"Run:       {paths['run']}  (now {paths['latest']})")
    typer.echo(f"Manifest:  {paths['manifest']}")
    typer.echo(f"Clean set: {paths['clean']}")
    typer.echo(f"Summary:   {paths['summary']}")
    typer.echo(f"Report:    {Path(paths['run']) / 'report.html'}")


def _num(value) -> str:
    return "none" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


@app.command()
def report(
    out: Annotated[Path, typer.Argument(metavar="OUT", help="An output folder of `winnow run` (its latest run) or one run folder.")],
) -> None:
    """Rebuild the HTML report (report.html + thumbs/) of a run; open it in any browser, offline."""
    with _user_errors():
        from winnow.pipeline.report import write_report

        path = write_report(out)
    typer.echo(f"Report: {path}")


@app.command()
def export(
    out: Annotated[Path, typer.Argument(metavar="OUT", help="An output folder of `winnow run` (its latest run) or one run folder.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="One of: parquet, csv, jsonl, imagefolder (see README 'Outputs').")] = "parquet",
    dest: Annotated[Path | None, typer.Option(help="File or folder to write. Default: OUT/export/ (a folder).")] = None,
) -> None:
    """Write the cleaned training set (final labels and weights) for a training job."""
    # FileNotFoundError: a run folder without clean.parquet (export names it).
    with _user_errors(FileNotFoundError):
        from winnow.pipeline.export import export_clean

        path = export_clean(out, fmt=fmt, dest=dest or out / "export")
    typer.echo(f"Exported: {path}")


@app.command()
def detect(
    labels: Annotated[Path, typer.Option(help="(N,) labels: integer class indices or class names; .npy, or a .csv / .parquet column (--label-column). With --multi-label: an (N, K) 0/1 matrix (.npy, or a table's numeric columns in class order).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Parquet file to write: one row per sample.")],
    pred_probs: Annotated[Path | None, typer.Option(help="(N, K) out-of-fold predicted probabilities: .npy, .csv or .parquet (numeric columns, in class order; named by class they set the order).")] = None,
    embeddings: Annotated[Path | None, typer.Option(help="(N, D) embeddings: .npy, .csv (numeric columns) or .parquet (one list column, or numeric columns); rows are L2-normalised for you.")] = None,
    class_text_embeddings: Annotated[Path | None, typer.Option(help="(K, D) text-tower embeddings of one prompt per class, in class order, for zero_shot (needs --embeddings from the same model).")] = None,
    label_column: Annotated[str | None, typer.Option(help="Column of --labels that holds the labels. Default: its only column, else 'label'.")] = None,
    ids: Annotated[Path | None, typer.Option(help="(N,) sample ids carried to the output: .npy, or a .csv / .parquet column (--id-column).")] = None,
    id_column: Annotated[str | None, typer.Option(help="Column holding the ids: of --ids, or of --labels when --ids is not given (left out of the matrices).")] = None,
    classes: Annotated[str | None, typer.Option(help="Class names in pred_probs' column order, comma-separated (text labels). Default: the pred_probs table's column names when they are the labels, else the sorted labels.")] = None,
    methods: Annotated[str, typer.Option(help="Detectors, comma-separated, or 'auto' (see `winnow detectors`).")] = "auto",
    k: Annotated[int, typer.Option(min=1, help="Neighbours per sample for the kNN detectors.")] = 10,
    seed: Annotated[int, typer.Option(help="Seed for the probe.")] = 0,
    multi_label: Annotated[bool, typer.Option("--multi-label", help="Each sample has a set of labels: --labels is an (N, K) 0/1 matrix and --pred-probs (N, K) per-class probabilities; issues per sample and per (sample, class).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Find label issues in arrays you already have (labels plus pred_probs and/or embeddings).

    .csv files have a header row naming their columns, unless every value is a number.
    """
    summary: dict = {}
    with _user_errors():
        if multi_label:
            from winnow.curation.errors import InvalidArray
            from winnow.pipeline.evaluate import detect_multilabel_from_arrays

            if pred_probs is None:
                raise InvalidArray("--multi-label needs --pred-probs (N, K)")
            unused = [name for name, given in [("--embeddings", embeddings), ("--class-text-embeddings", class_text_embeddings),
                                               ("--label-column", label_column)] if given is not None]
            if methods != "auto":
                unused.append("--methods")
            if unused:
                raise InvalidArray(f"--multi-label reads --labels and --pred-probs only; drop {', '.join(unused)}")
            frame = detect_multilabel_from_arrays(labels, out, pred_probs_path=pred_probs, ids_path=ids,
                                                  id_column=id_column, classes=classes.split(",") if classes else None,
                                                  summary=summary)
        else:
            from winnow.pipeline.evaluate import detect_from_arrays

            frame = detect_from_arrays(labels, out, pred_probs_path=pred_probs, embeddings_path=embeddings,
                                       class_text_path=class_text_embeddings, ids_path=ids, label_column=label_column,
                                       id_column=id_column, classes=classes.split(",") if classes else None,
                                       methods=methods, seed=seed, k=k, summary=summary)
    counts = {"samples": frame.height, "label_issues": int(frame["is_label_issue"].sum()), "out": str(out), **summary}
    if as_json:
        typer.echo(json.dumps(counts))
    else:
        typer.echo(f"{counts['label_issues']} of {counts['samples']} samples flagged as label issues -> {out}")
        typer.echo(f"About {100 * summary['estimated_noise_rate']:.1f}% of the "
                   f"{'samples have a label that looks' if multi_label else 'labels look'} wrong.")


@app.command()
def evaluate(
    target: Annotated[str, typer.Argument(metavar="TARGET", help=TARGET_HELP)],
    noise: Annotated[str, typer.Option(help="Noise to plant: symmetric:RATE, pair:RATE or matrix:FILE (a K x K .npy/.csv transition matrix).")] = "symmetric:0.2",
    seed: Annotated[int, typer.Option(help="Seed for the planted noise, the probe and the index.")] = 0,
    encoder: Annotated[str | None, typer.Option(help="Encoder (default: the catalog's).")] = None,
    store: Annotated[Path | None, typer.Option(help="Embedding store folder (default: a temp folder shared by evaluations).")] = None,
    k: Annotated[int, typer.Option(min=1, help="Neighbours per sample in the kNN graph.")] = 10,
    methods: Annotated[str, typer.Option(help="Detectors to score, comma-separated (`winnow detectors`), or 'auto'.")] = "auto",
    path_column: Annotated[str | None, typer.Option(help="A table TARGET's column of sample paths. Default: path.")] = None,
    label_column: Annotated[str | None, typer.Option(help="A table TARGET's column of labels. Default: label.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Plant label noise on a catalog's clean labels and score every detector and the ensemble.

    With a ground truth in the catalog (path plus is_flipped and/or true_label), the known
    flips are undone where the true label is known and left out where it is not.
    """
    with _user_errors():
        from winnow.pipeline.evaluate import evaluate_catalog

        result = evaluate_catalog(target, noise, seed=seed, encoder=encoder, store=str(store) if store else None,
                                  k=k, methods=methods, path_column=path_column, label_column=label_column)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    excluded = result["excluded_known_flips"]
    typer.echo(f"{result['catalog']} with {result['encoder']}: {result['samples']} samples"
               f"{f' ({excluded} known flips left out)' if excluded else ''}, "
               f"{result['planted']} planted flips ({noise}, seed {seed}); noise rate: estimated "
               f"{result['estimated_noise_rate']:.3f}, true {result['true_noise_rate']:.3f}; detection took "
               f"{result['seconds']} s")
    per_class = ", ".join(f"{c} {_num(v['estimated'])} ({_num(v['true'])})" for c, v in result["class_noise_rates"].items())
    typer.echo(f"per class, estimated (true): {per_class}")
    typer.echo(f"{'detector':<20} {'precision':>9} {'recall':>7} {'F1':>6} {'AUROC':>6} {'AP':>6}")
    for row in result["detectors"]:
        typer.echo(f"{row['detector']:<20} {row['precision']:>9.3f} {row['recall']:>7.3f} {row['f1']:>6.3f} "
                   f"{row['auroc']:>6.3f} {row['average_precision']:>6.3f}")


@app.command()
def detectors() -> None:
    """Show the label-noise detectors (names for --methods)."""
    from winnow.curation.label_issues import DETECTORS

    for name in sorted(DETECTORS):
        d = DETECTORS[name]
        typer.echo(f"{name:<20} {'auto' if d.auto else '    '}  {d.summary}")


@catalogs_app.command("list")
def catalogs_list() -> None:
    """Show the bundled catalogs."""
    from winnow.embeddings import DEFAULT_ENCODER

    for name in list_catalogs():
        spec = resolve_catalog(name)
        typer.echo(f"{name:<12} {spec.description}  [encoder: {spec.encoder or DEFAULT_ENCODER}]")


@encoders_app.command("list")
def encoders_list() -> None:
    """Show the encoder families and how to name them."""
    from winnow.embeddings import DEFAULT_ENCODER, list_encoders

    for name, usage in list_encoders():
        typer.echo(f"{name:<20} {usage}")
    typer.echo(f"\ndefault: {DEFAULT_ENCODER} (needs its weights cached or a network)")


if __name__ == "__main__":  # pragma: no cover
    app()
