"""The `winnow` command line: each command builds a config and calls one flow or function.

A user's mistake (Winnow's own named errors) is one line on stderr, `error: ...` quoting the
bad value, exit status 2, found before any orchestration starts; any other exception is a bug
and keeps its traceback (exit 1). Commands import torch and Prefect only after their inputs
are checked, so a mistake is reported in about a second.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

# Prefect's per-task INFO lines drown the summary; users can still ask for them.
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# Telemetry needs a network and only produces error lines without one.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import typer  # noqa: E402

from winnow.catalogs import CatalogError, list_catalogs, resolve_catalog  # noqa: E402
from winnow.curation import InvalidArray, MissingDependency  # noqa: E402
from winnow.fields import parse_assignment, parse_scalar  # noqa: E402
from winnow.pipeline.config import (  # noqa: E402
    RUNNERS,
    ConfigError,
    check_settings,
    merge_settings,
    parse_set,
    read_settings,
)
from winnow.pipeline.files import RunLocked  # noqa: E402
from winnow.pipeline.layout import RunLayout  # noqa: E402

try:  # typer >= 0.24 ships its own copy of click; before, it used click itself
    from typer._click import exceptions as _click_errors
except ImportError:  # pragma: no cover
    from click import exceptions as _click_errors


class _OneLineUsageErrors(typer.core.TyperGroup):
    """Usage mistakes (an unknown option or command, a missing --out, `--k ten`) as one line,
    `error: ...` quoting what was typed, exit 2: the same form as Winnow's own user errors."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:  # a caller (typer's test runner) handles the errors itself
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        argv = list(sys.argv[1:] if args is None else args)
        try:
            code = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except _click_errors.UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # bare `winnow`: the help is the answer
                exc.show()
                sys.exit(exc.exit_code)
            typer.echo(f"error: {_usage_message(exc, argv)}", err=True)
            sys.exit(exc.exit_code)
        except _click_errors.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except typer.Abort:
            typer.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _usage_message(exc, argv: list[str]) -> str:
    message = exc.format_message().rstrip(".")
    param = getattr(exc, "param", None)
    if param is not None and not isinstance(exc, _click_errors.MissingParameter):
        value = _typed_value(argv, getattr(param, "opts", ()))  # typer's message may not quote it
        if value is not None and repr(value) not in message:
            message += f" (got {value!r})"
    path = exc.ctx.command_path if exc.ctx is not None else "winnow"
    return f"{message} (see '{path} --help')"


def _typed_value(argv: list[str], opts) -> str | None:
    for i, word in enumerate(argv):
        for opt in opts:
            if word.startswith(f"{opt}="):
                return word[len(opt) + 1:]
            if word == opt and i + 1 < len(argv):
                return argv[i + 1]
    return None


# Plain help (no <bool> on flags) and plain tracebacks for real bugs.
app = typer.Typer(help="Winnow: find and fix label noise, duplicates and junk in ML datasets.",
                  no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                  pretty_exceptions_enable=False, cls=_OneLineUsageErrors)
catalogs_app = typer.Typer(help="Bundled dataset catalogs.", no_args_is_help=True, rich_markup_mode=None)
encoders_app = typer.Typer(help="Encoders that embed samples.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(catalogs_app, name="catalogs")
app.add_typer(encoders_app, name="encoders")

# Named user errors of modules a command may not have imported (they import torch): an error
# of a module that was never imported cannot have been raised.
_LAZY_USER_ERRORS = (("winnow.embeddings.errors", "EncoderError"), ("winnow.pipeline.export", "ExportError"),
                     ("winnow.pipeline.report", "RunNotFound"), ("winnow.pipeline.review.store", "ReviewError"),
                     ("winnow.pipeline.review.app", "TokenRequired"))


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
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what each stage does (INFO) on stderr.")] = False,
) -> None:
    """Winnow: find and fix label noise, duplicates and junk in ML datasets."""
    _configure_logging(logging.INFO if verbose else logging.WARNING)


def _configure_logging(level: int) -> None:
    """The library logs through `logging` and never prints; the command line shows its records."""
    logger = logging.getLogger("winnow")
    if not any(getattr(h, "_winnow_cli", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler._winnow_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(level)


# --- the options of `run` and `serve`: each one Config field ----------------------------------


@dataclass(frozen=True)
class ConfigOption:
    """A command-line option that sets one Config field (`section.key`)."""

    name: str  # the parameter's name
    field: str  # the Config field it sets, "section.key"
    kind: Any  # the type typer parses (None: not given)
    decls: tuple[str, ...]  # option names
    help: str
    parse: Callable[[Any], Any] | None = None  # text -> value, when typer's type is not the field's
    required: bool = False
    extra: dict | None = None  # further typer.Option arguments (min=1, ...)

    def parameter(self) -> inspect.Parameter:
        option = typer.Option(*self.decls, help=self.help, **(self.extra or {}))
        return inspect.Parameter(self.name, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[self.kind, option],
                                 default=inspect.Parameter.empty if self.required else None)


CONFIG_OPTIONS: tuple[ConfigOption, ...] = (
    ConfigOption("out", "run.out", Path, ("--out", "-o"), "Output folder: versions under OUT/runs/, and "
                 "OUT/manifest.parquet, clean.parquet, summary.json pointing at the latest.", required=True),
    ConfigOption("encoder", "embed.encoder", str | None, ("--encoder",), "Encoder name (`winnow encoders list`). "
                 "Default: the catalog's, else Winnow's default (open_clip ViT-B-32)."),
    ConfigOption("store", "embed.store", Path | None, ("--store",), "Embedding store folder, shared between runs. "
                 "Default: OUT/store."),
    ConfigOption("batch_size", "embed.batch_size", int | None, ("--batch-size",),
                 "Samples per model forward pass. Default: 64.", extra={"min": 1}),
    ConfigOption("device", "embed.device", str | None, ("--device",), "cpu, cuda or cuda:N. Default: CUDA when "
                 "present. The kNN index follows it unless --set knn.device=..."),
    ConfigOption("shards", "embed.shards", int | None, ("--shards",), "Embedding shards; under --runner dask each "
                 "runs on its own worker. Default: 1 (2 under dask).", extra={"min": 1}),
    ConfigOption("k", "knn.k", int | None, ("--k",), "Neighbours per sample in the kNN graph. Default: 10.",
                 extra={"min": 1}),
    ConfigOption("methods", "detect.methods", str | None, ("--methods",), "Label-noise detectors, "
                 "comma-separated (`winnow detectors`), or 'auto' (the default)."),
    ConfigOption("seed", "run.seed", int | None, ("--seed",), "Seed of every random choice: the IVF index, the "
                 "probe, k-means (unless --set detect.kmeans_seed=N). Default: 0."),
    ConfigOption("keep", "policy.keep", str | None, ("--keep",), "Prune to a target size: a fraction (0.7) or a "
                 "count (50000). Same as --set policy.keep=...", parse=parse_scalar),
    ConfigOption("holdout", "run.holdout", list[str] | None, ("--holdout",), "A validation/test catalog "
                 "(repeatable): training samples that duplicate it are dropped as `leak`."),
    ConfigOption("path_column", "run.path_column", str | None, ("--path-column",), "A table TARGET's column of "
                 "sample paths (relative to the table's folder). Default: path."),
    ConfigOption("label_column", "run.label_column", str | None, ("--label-column",),
                 "A table TARGET's column of labels (a WebDataset's label member: cls, txt, json:FIELD). "
                 "Default: label, else the one ClassLabel / text / integer column (WebDataset: cls)."),
    ConfigOption("unlabeled", "run.unlabeled", bool | None, ("--unlabeled",),
                 "A folder TARGET without labels (a scrape, a camera roll): every image below it is one class, "
                 "named after the folder; duplicates, outliers and unusable files are found, labels not judged."),
    ConfigOption("image_column", "run.image_column", str | None, ("--image-column",),
                 "The column of image bytes of a Parquet / saved Hugging Face dataset TARGET (a WebDataset's "
                 "image extension). Default: the one column of image bytes."),
    ConfigOption("text_column", "run.text_column", str | None, ("--text-column",), "A .csv / .parquet / .jsonl "
                 "TARGET's column of texts: a text dataset, embedded with a text encoder (default "
                 "sentence-transformers:all-MiniLM-L6-v2). Default for .jsonl: text."),
    ConfigOption("id_column", "run.id_column", str | None, ("--id-column",), "A table TARGET's column of sample "
                 "ids (the manifest's sample_id). Default: a stable id from each row."),
    ConfigOption("wait", "run.wait", bool | None, ("--wait/--no-wait",), "Wait for another run on OUT to finish "
                 "instead of failing. Default: fail."),
    ConfigOption("runner", "run.runner", str | None, ("--runner",), f"One of {', '.join(RUNNERS)}: 'direct' (the "
                 "default) runs the stages in this process without Prefect; 'prefect' runs the Prefect flow (shown "
                 "in the server PREFECT_API_URL names); 'dask' runs it on prefect-dask (a LocalCluster unless "
                 "--dask-address)."),
    ConfigOption("dask_address", "run.dask_address", str | None, ("--dask-address",),
                 "Address of an existing Dask scheduler, e.g. tcp://host:8786."),
)
"""Every option that sets one Config field; `run` and `serve` both take all of them."""

SETTINGS_OPTIONS = (
    inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
        Path | None, typer.Option("--config", help="A TOML file of settings: [embed] [knn] [detect] [policy] "
                                  "[run] tables (see README 'Configuration'). Over the catalog's; under the "
                                  "options here.")]),
    inspect.Parameter("set_", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
        list[str] | None, typer.Option("--set", metavar="SECTION.KEY=VALUE", help="Set any Config field, e.g. "
                                       "--set knn.exact_below=5000 --set detect.probe_folds=3 (repeatable; wins "
                                       "over the other options).")]),
    inspect.Parameter("policy", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
        list[str] | None, typer.Option("--policy", metavar="KEY=VALUE", help="Decision-policy field (repeatable), "
                                       "e.g. on_label_issue=drop, class_cap=500: the same as --set policy.KEY=VALUE; "
                                       "see README 'Policy'.")]),
)


def config_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command every ConfigOption plus --config, --set and --policy; the command receives
    them as one settings layer, `settings=`, in the order file < options < --policy < --set."""
    own = [p for p in inspect.signature(func, eval_str=True).parameters.values() if p.name != "settings"]
    added = [o.parameter() for o in CONFIG_OPTIONS] + list(SETTINGS_OPTIONS)
    names = {p.name for p in added}

    @functools.wraps(func)
    def command(**kwargs: Any) -> Any:
        given = {name: kwargs.pop(name) for name in list(kwargs) if name in names}
        with _user_errors():
            settings = settings_from_options(given)
        return func(**kwargs, settings=settings)

    command.__signature__ = inspect.Signature([*own, *added])  # what typer reads
    del command.__wrapped__  # typer must see the new signature, not the function's own
    return command


def settings_from_options(given: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The option values of one command as a settings layer; each value is checked on its own,
    so an error names the option and quotes the value."""
    layers = [read_settings(given["config"])] if given.get("config") else []
    for option in CONFIG_OPTIONS:
        value = given.get(option.name)
        if value is None or value == []:
            continue
        value = option.parse(value) if option.parse else value
        value = str(value) if isinstance(value, Path) else tuple(value) if isinstance(value, list) else value
        section, key = option.field.split(".")
        layers.append(check_settings({section: {key: value}}, where=option.decls[0].split("/")[0]))
    for item in given.get("policy") or []:
        key, value = parse_assignment(item, option="--policy", error=ConfigError)
        layers.append(check_settings({"policy": {key: value}}, where=f"--policy {item!r}"))
    layers.append(parse_set(given.get("set_") or [], option="--set"))
    return merge_settings(*layers)


TARGET_HELP = ("A catalog .toml file, a .csv / .parquet table of paths and labels (or of texts and labels, with "
               "--text-column; any .jsonl file), a bundled catalog name, or a folder of class_name/<images>.")


@app.command()
@config_options
def run(
    target: Annotated[str, typer.Argument(metavar="TARGET", help=TARGET_HELP)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON (for scripts).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    *,
    settings: dict,
) -> None:
    """Clean a dataset: embed, build the kNN graph, detect problems, write manifests.

    Each run writes a new version under OUT/runs/<run id>/ and then points OUT/latest (and
    OUT/manifest.parquet, clean.parquet, summary.json, diff.parquet) at it. A re-run embeds
    only new or changed files; a killed run resumes where it stopped. Everything given is
    checked before any work starts. Settings: defaults < the catalog's tables < --config <
    the options < --policy < --set.
    """
    with _user_errors():
        from winnow.pipeline.run import run_clean, validate_run

        # Progress bars are the command line's choice (--set run.progress=... still wins).
        settings = merge_settings({"run": {"progress": not (quiet or as_json)}}, settings)
        paths = run_clean(target, settings, plan=validate_run(target, settings))
    _print_summary(paths, as_json=as_json)


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("out/demo"),
    encoder: Annotated[str | None, typer.Option(help="Encoder (default: the digits catalog's, efficientnet-lite0).")] = None,
) -> None:
    """Clean the bundled `digits` catalog (real digits, 10% planted flips) and score the result."""
    with _user_errors():
        from winnow.pipeline.run import run_clean, validate_run

        settings = check_settings({"run": {"out": str(out), "progress": True},
                                   "embed": {"encoder": encoder} if encoder else {}}, where="demo")
        paths = run_clean("digits", settings, plan=validate_run("digits", settings))
    _print_summary(paths, as_json=False)


@app.command()
@config_options
def serve(
    target: Annotated[str, typer.Argument(help="A catalog .toml file, a bundled catalog name, or a class-folder tree.")],
    cron: Annotated[str | None, typer.Option(help='Cron schedule, e.g. "0 3 * * *" (03:00 every day, the default).')] = None,
    interval: Annotated[int | None, typer.Option(help="Run every SECONDS instead of on a cron schedule.", metavar="SECONDS")] = None,
    name: Annotated[str | None, typer.Option(help="Deployment name. Default: winnow-<catalog name>.")] = None,
    *,
    settings: dict,
) -> None:
    """Serve the cleaning flow as a Prefect deployment that re-cleans TARGET on a schedule.

    Needs a running Prefect server (`prefect server start`) named by PREFECT_API_URL: its
    scheduler creates the runs, this process executes them, one at a time, until interrupted.
    Takes every option of `winnow run`; every one is checked before anything starts.
    """
    from winnow.flows.deploy import ServeError, check_serve, serve_plan

    with _user_errors(ServeError):
        plan = check_serve(target, settings, cron=cron, interval=interval, name=name)  # before Prefect is imported
    typer.echo(f"Serving {plan.name!r} {plan.schedule.describe()} on {plan.api_url}; Ctrl-C stops it.")
    serve_plan(plan)


def _audit_line(audit: dict | None) -> str | None:
    """The run's audit in one line: how far it is, and whether the label-issue count follows it."""
    from winnow.curation.audit import MIN_CHECKED

    if not audit:
        return None
    checked, wrong = audit.get("checked", 0), audit.get("wrong", 0)
    size = audit.get("size", checked)  # `winnow detect` is told only what was checked
    if not size:
        return None
    if checked == 0:
        return (f"Audit:     0 of {size} checked. Check the audit sample in `winnow review OUT` and the next run "
                f"measures how many labels are wrong.")
    if checked < MIN_CHECKED:
        return (f"Audit:     {checked} of {size} checked, {wrong} wrong; the count follows the audit from "
                f"{MIN_CHECKED} checked rows.")
    if audit.get("rate") is None:
        return (f"Audit:     {checked} of {size} checked, {wrong} wrong; the count follows the audit once some of "
                f"both its flagged and its unflagged rows are checked (the flagged ones alone would overstate it).")
    lo, hi = audit["interval"]
    model = audit.get("model_rate")
    weighted = ", flagged and unflagged rows weighted by their share of the sample" if audit.get("strata") else ""
    said = f"{wrong} of {checked} checked labels wrong{weighted}: {audit['rate']:.1%} (95%: {lo:.1%}-{hi:.1%})"
    if model is None:
        return f"Audit:     {said}."
    if audit.get("overruled"):
        return f"Audit:     {said}; the detectors' {model:.1%} is outside it, so the label-issue count follows the audit."
    return f"Audit:     {said}; the detectors' {model:.1%} is inside it, so their count stands."


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
    if len(summary.get("classes_before", {})) == 1:
        typer.echo(f"Labels:    one class ({next(iter(summary['classes_before']))!r}), so labels were not judged; "
                   "duplicates, outliers and unusable files were.")
    elif isinstance(summary.get("estimated_noise_rate"), int | float):
        typer.echo(f"Labels:    about {summary['estimated_noise_rate']:.1%} look wrong.")
    audit_line = _audit_line(summary.get("audit"))
    if audit_line:
        typer.echo(audit_line)
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
    typer.echo(f"Report:    {RunLayout(Path(paths['run'])).report}")


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
def review(
    out: Annotated[Path, typer.Argument(metavar="OUT", help="An output folder of `winnow run` (its latest run) or one run folder.")],
    host: Annotated[str, typer.Option(help="Interface to bind; anything but loopback needs --token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    token: Annotated[str | None, typer.Option(envvar="WINNOW_REVIEW_TOKEN", help="Token every change (and, off loopback, every request) must carry. Default: a random one.")] = None,
) -> None:
    """Review the flagged samples of a run in a local web app; decisions go to OUT/reviews/ and every later run applies them."""
    import secrets

    with _user_errors():
        from winnow.pipeline.review.app import check_bind, is_loopback, serve

        check_bind(host, token)
        from winnow.pipeline.report import resolve_run

        run = resolve_run(out)
    token = token or secrets.token_urlsafe(24)
    url = f"http://{host}:{port}/" + ("" if is_loopback(host) else f"?token={token}")
    typer.echo(f"Reviewing {run}: open {url} (Ctrl-C stops it)")
    with _user_errors():
        serve(out, host=host, port=port, token=token)


@app.command()
def export(
    out: Annotated[Path, typer.Argument(metavar="OUT", help="An output folder of `winnow run` (its latest run) or one run folder.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="One of: parquet, csv, jsonl, imagefolder, parquet_images (Parquet with the image bytes), webdataset (tar shards), source (the source's own form) (see README 'Outputs').")] = "parquet",
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
    audit: Annotated[str | None, typer.Option(help="What a person found on a random sample of the rows, CHECKED:WRONG (e.g. 200:33): where its 95% interval rules out the detectors' estimate, the count follows it (README, Audit).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Find label issues in arrays you already have (labels plus pred_probs and/or embeddings).

    .csv files have a header row naming their columns, unless every value is a number.
    """
    summary: dict = {}
    with _user_errors():
        audited = _parse_audit(audit)
        if multi_label:
            from winnow.curation.errors import InvalidArray
            from winnow.pipeline.evaluate import detect_multilabel_from_arrays

            if audited is not None:
                raise InvalidArray(f"--audit {audit} is for single-label data; --multi-label takes no audit yet")
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
                                       methods=methods, seed=seed, k=k, summary=summary, audit=audited)
    counts = {"samples": frame.height, "label_issues": int(frame["is_label_issue"].sum()), "out": str(out), **summary}
    if as_json:
        typer.echo(json.dumps(counts))
    else:
        typer.echo(f"{counts['label_issues']} of {counts['samples']} samples flagged as label issues -> {out}")
        typer.echo(f"About {100 * summary['estimated_noise_rate']:.1f}% of the "
                   f"{'samples have a label that looks' if multi_label else 'labels look'} wrong.")
        line = _audit_line(summary.get("audit"))
        if line:
            typer.echo(line)


def _parse_audit(text: str | None):
    """--audit CHECKED:WRONG -> an AuditCount (an error quoting the value otherwise)."""
    if text is None:
        return None
    from winnow.curation import AuditCount
    from winnow.curation.errors import InvalidArray

    parts = text.split(":")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise InvalidArray(f"--audit must be CHECKED:WRONG, two whole numbers (e.g. 200:33), got {text!r}")
    return AuditCount(int(parts[0]), int(parts[1]))


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
