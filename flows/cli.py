"""The `winnow` command line: each command builds a config and calls one flow or function."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

# Prefect's per-task INFO lines drown the summary; users can still ask for them.
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# Telemetry needs a network and only produces error lines without one.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import typer  # noqa: E402

from catalogs import CatalogError, list_catalogs, resolve_catalog  # noqa: E402
from curation import InvalidArray, MissingDependency  # noqa: E402
from embeddings import DEFAULT_ENCODER, EncoderError, list_encoders  # noqa: E402
from flows.config import RunConfig  # noqa: E402
from flows.export import FORMATS, ExportError  # noqa: E402
from flows.io import RunLocked  # noqa: E402

app = typer.Typer(help="Winnow: find and fix label noise, duplicates and junk in ML datasets.",
                  no_args_is_help=True, add_completion=False)
catalogs_app = typer.Typer(help="Bundled dataset catalogs.", no_args_is_help=True)
encoders_app = typer.Typer(help="Encoders that embed samples.", no_args_is_help=True)
app.add_typer(catalogs_app, name="catalogs")
app.add_typer(encoders_app, name="encoders")

USER_ERRORS = (CatalogError, EncoderError, InvalidArray, RunLocked, FileNotFoundError, MissingDependency,
               ExportError)


def _fail(exc: BaseException) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(code=2)


def _parse_policy(items: list[str]) -> dict:
    """`key=value` pairs; values parse as TOML scalars (numbers, booleans, strings)."""
    import tomllib

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidArray(f"--policy expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value
    return out


@app.command()
def run(
    target: Annotated[str, typer.Argument(help="A catalog .toml file, a bundled catalog name, or a folder of class_name/*.{png,jpg,jpeg,webp}.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for manifest.parquet, clean.parquet, summary.json.")],
    encoder: Annotated[str | None, typer.Option(help=f"Encoder name (`winnow encoders list`). Default: the catalog's, else {DEFAULT_ENCODER}.")] = None,
    store: Annotated[Path | None, typer.Option(help="Embedding store folder, shared between runs. Default: OUT/store.")] = None,
    k: Annotated[int, typer.Option(min=1, help="Neighbours per sample in the kNN graph.")] = 10,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per model forward pass.")] = 64,
    device: Annotated[str | None, typer.Option(help="cpu, cuda or cuda:N. Default: CUDA when present.")] = None,
    methods: Annotated[str, typer.Option(help="Label-noise detectors, comma-separated, or 'auto'.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed for the probe and every random choice.")] = 0,
    policy: Annotated[list[str] | None, typer.Option(help="Decision-policy override KEY=VALUE (repeatable), e.g. on_label_issue=drop, class_cap=500, weighting=effective_number; see README 'Policy'.")] = None,
    keep: Annotated[str | None, typer.Option(help="Prune to a target size: a fraction (0.7) or a count (50000). Same as --policy keep=...")] = None,
    holdout: Annotated[list[str] | None, typer.Option(help="A validation/test catalog (repeatable): training samples that duplicate it are dropped as `leak`.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for another run on OUT to finish instead of failing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON (for scripts).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    runner: Annotated[str, typer.Option(help="Task runner: 'local', or 'dask' (prefect-dask; a LocalCluster unless --dask-address).")] = "local",
    dask_address: Annotated[str | None, typer.Option(help="Address of an existing Dask scheduler, e.g. tcp://host:8786.")] = None,
    shards: Annotated[int, typer.Option(min=1, help="Embedding shards; under --runner dask each runs on its own worker.")] = 1,
) -> None:
    """Clean a dataset: embed, build the kNN graph, detect problems, write manifests.

    Each run writes a new version under OUT/runs/<run id>/ and then points OUT/latest (and
    OUT/manifest.parquet, clean.parquet, summary.json, diff.parquet) at it. A re-run embeds
    only new or changed files; a killed run resumes where it stopped.
    """
    from flows.clean import run_clean

    try:
        config = RunConfig(target=target, out=str(out), encoder=encoder, store=str(store) if store else None,
                           k=k, batch_size=batch_size, device=device, methods=methods, seed=seed,
                           policy=_parse_policy((policy or []) + ([f"keep={keep}"] if keep else [])),
                           wait_for_lock=wait, holdout=tuple(holdout or ()),
                           progress=not (quiet or as_json), runner=runner, dask_address=dask_address,
                           shards=shards if runner == "local" or shards > 1 else 2)
        paths = run_clean(config)
    except USER_ERRORS as exc:
        _fail(exc)
    _print_summary(paths, as_json=as_json)


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("out/demo"),
    encoder: Annotated[str | None, typer.Option(help="Encoder (default: the digits catalog's, efficientnet-lite0).")] = None,
) -> None:
    """Clean the bundled `digits` catalog (real digits, 10% planted flips) and score the result."""
    from flows.clean import clean_dataset, score_against_ground_truth

    try:
        paths = clean_dataset(RunConfig(target="digits", out=str(out), encoder=encoder, progress=True))
    except USER_ERRORS as exc:
        _fail(exc)
    _print_summary(paths, as_json=False)
    scores = score_against_ground_truth(paths["manifest"], paths["ground_truth"])
    typer.echo(
        f"\nDetection vs the planted flips: {scores['true_positives']} of {scores['flagged']} flagged are "
        f"planted flips; {scores['planted']} planted.\n"
        f"  precision {scores['precision']:.3f}   recall {scores['recall']:.3f}   F1 {scores['f1']:.3f}"
    )


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
    from flows.deploy import ServeError, check_serve, serve_plan

    try:
        config = RunConfig(target=target, out=str(out), encoder=encoder, store=str(store.resolve()) if store else None,
                           k=k, batch_size=batch_size, device=device, methods=methods, seed=seed,
                           policy=_parse_policy((policy or []) + ([f"keep={keep}"] if keep else [])),
                           holdout=tuple(holdout or ()))
        plan = check_serve(config, cron=cron, interval=interval, name=name)  # before Prefect is imported
    except (*USER_ERRORS, ServeError) as exc:
        _fail(exc)
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
    diff = summary.get("diff", {})
    if diff.get("previous_run"):
        typer.echo(f"Changes since run {diff['previous_run']}: " + ", ".join(
            f"{k.replace('_', ' ')} {v}" for k, v in diff.items() if k != "previous_run"))
    typer.echo(f"Run:       {paths['run']}  (now {paths['latest']})")
    typer.echo(f"Manifest:  {paths['manifest']}")
    typer.echo(f"Clean set: {paths['clean']}")
    typer.echo(f"Summary:   {paths['summary']}")
    typer.echo(f"Report:    {Path(paths['run']) / 'report.html'}")


@app.command()
def report(
    out: Annotated[Path, typer.Argument(help="An output folder of `winnow run` (its latest run) or one run folder.")],
) -> None:
    """Rebuild the HTML report (report.html + thumbs/) of a run; open it in any browser, offline."""
    from flows.report import write_report

    try:
        path = write_report(out)
    except USER_ERRORS as exc:
        _fail(exc)
    typer.echo(f"Report: {path}")


@app.command()
def export(
    out: Annotated[Path, typer.Argument(help="An output folder of `winnow run` (its latest run) or one run folder.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="One of: " + "; ".join(f"{k} ({v})" for k, v in FORMATS.items()))] = "parquet",
    dest: Annotated[Path | None, typer.Option(help="File or folder to write. Default: OUT/export/ (a folder).")] = None,
) -> None:
    """Write the cleaned training set (final labels and weights) for a training job."""
    from flows.export import export_clean

    try:
        path = export_clean(out, fmt=fmt, dest=dest or out / "export")
    except USER_ERRORS as exc:
        _fail(exc)
    typer.echo(f"Exported: {path}")


@app.command()
def detect(
    labels: Annotated[Path, typer.Option(help="(N,) integer class indices, .npy or .csv.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Parquet file to write: one row per sample.")],
    pred_probs: Annotated[Path | None, typer.Option(help="(N, K) out-of-fold predicted probabilities, .npy or .csv.")] = None,
    embeddings: Annotated[Path | None, typer.Option(help="(N, D) embeddings, .npy (rows are L2-normalised for you).")] = None,
    methods: Annotated[str, typer.Option(help="Detectors, comma-separated, or 'auto' (see `winnow detectors`).")] = "auto",
    k: Annotated[int, typer.Option(min=1, help="Neighbours per sample for the kNN detectors.")] = 10,
    seed: Annotated[int, typer.Option(help="Seed for the probe.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Find label issues in arrays you already have (labels plus pred_probs and/or embeddings)."""
    from flows.evaluate import detect_from_arrays

    try:
        frame = detect_from_arrays(labels, out, pred_probs_path=pred_probs, embeddings_path=embeddings,
                                   methods=methods if methods == "auto" else methods.split(","), seed=seed, k=k)
    except USER_ERRORS as exc:
        _fail(exc)
    counts = {"samples": frame.height, "label_issues": int(frame["is_label_issue"].sum()), "out": str(out)}
    if as_json:
        typer.echo(json.dumps(counts))
    else:
        typer.echo(f"{counts['label_issues']} of {counts['samples']} samples flagged as label issues -> {out}")


@app.command()
def evaluate(
    target: Annotated[str, typer.Argument(help="A catalog .toml file, a bundled catalog name, or a class-folder tree.")],
    noise: Annotated[str, typer.Option(help="Noise to plant: symmetric:RATE, pair:RATE or matrix:FILE (a K x K .npy/.csv transition matrix).")] = "symmetric:0.2",
    seed: Annotated[int, typer.Option(help="Seed for the planted noise and the probe.")] = 0,
    encoder: Annotated[str | None, typer.Option(help="Encoder (default: the catalog's).")] = None,
    store: Annotated[Path | None, typer.Option(help="Embedding store folder (default: a temp folder shared by evaluations).")] = None,
    k: Annotated[int, typer.Option(min=1, help="Neighbours per sample in the kNN graph.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Plant label noise on a catalog's clean labels and score every detector and the ensemble."""
    from flows.evaluate import evaluate_catalog

    try:
        result = evaluate_catalog(target, noise, seed=seed, encoder=encoder, store=str(store) if store else None, k=k)
    except USER_ERRORS as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(f"{result['catalog']} with {result['encoder']}: {result['samples']} samples, "
               f"{result['planted']} planted flips ({noise}, seed {seed}); estimated noise rate "
               f"{result['estimated_noise_rate']:.3f}; detection took {result['seconds']} s")
    typer.echo(f"{'detector':<20} {'precision':>9} {'recall':>7} {'F1':>6} {'AUROC':>6} {'AP':>6}")
    for row in result["detectors"]:
        typer.echo(f"{row['detector']:<20} {row['precision']:>9.3f} {row['recall']:>7.3f} {row['f1']:>6.3f} "
                   f"{row['auroc']:>6.3f} {row['average_precision']:>6.3f}")


@app.command()
def detectors() -> None:
    """Show the label-noise detectors (names for --methods)."""
    from curation.label_issues import DETECTORS

    for name in sorted(DETECTORS):
        d = DETECTORS[name]
        typer.echo(f"{name:<20} {'auto' if d.auto else '    '}  {d.summary}")


@catalogs_app.command("list")
def catalogs_list() -> None:
    """Show the bundled catalogs."""
    for name in list_catalogs():
        spec = resolve_catalog(name)
        typer.echo(f"{name:<12} {spec.description}  [encoder: {spec.encoder or DEFAULT_ENCODER}]")


@encoders_app.command("list")
def encoders_list() -> None:
    """Show the encoder families and how to name them."""
    for name, usage in list_encoders():
        typer.echo(f"{name:<20} {usage}")
    typer.echo(f"\ndefault: {DEFAULT_ENCODER} (needs its weights cached or a network)")


if __name__ == "__main__":  # pragma: no cover
    app()
