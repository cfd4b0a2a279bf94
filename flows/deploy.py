"""Scheduled cleaning: the clean_dataset flow served as a Prefect deployment on a cron or interval schedule.

Schedules fire only on a real Prefect server (its scheduler service creates the runs; a
temporary in-process server has none), so `winnow serve` needs PREFECT_API_URL. Everything
serve can get wrong -- the catalog, encoder, policy, schedule, and whether a server answers --
is checked by `check_serve` before Prefect is imported: a mistake costs one line and a
second, not a traceback at 03:00.
"""

from __future__ import annotations

import importlib.util
import os
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from winnow.pipeline.config import Config, check_settings, merge_settings

DEFAULT_CRON = "0 3 * * *"  # every day at 03:00
START_SERVER = ("start one with `prefect server start`, then export "
                "PREFECT_API_URL=http://127.0.0.1:4200/api")


class ServeError(ValueError):
    """A `winnow serve` option or environment that cannot work (the CLI prints it as one line)."""


class InvalidSchedule(ServeError):
    """A bad --cron / --interval."""


class NoPrefectServer(ServeError):
    """PREFECT_API_URL is unset, or no Prefect API answers there."""


@dataclass(frozen=True)
class Schedule:
    cron: str | None = None  # a cron expression (minute hour day month weekday); None with an interval
    interval: int | None = None  # seconds between runs; None with a cron

    def describe(self) -> str:
        return f"every {self.interval} s" if self.interval else f"on cron {self.cron!r}"


@dataclass(frozen=True)
class ServePlan:
    target: str  # what each scheduled run cleans (made absolute when it is a path)
    settings: dict[str, Any]  # the user's settings layer each run gets (out, store, holdouts made absolute)
    config: Config  # those settings over the catalog's tables, as checked now (each run re-reads the catalog)
    schedule: Schedule  # when
    name: str  # deployment name
    api_url: str  # the Prefect server that schedules the runs


def check_schedule(*, cron: str | None = None, interval: int | None = None) -> Schedule:
    """One of cron / interval (neither: DEFAULT_CRON), validated as Prefect will validate it."""
    if cron is not None and interval is not None:
        raise InvalidSchedule(f"pass --cron or --interval, not both (got --cron {cron!r} and --interval {interval!r})")
    if interval is not None:
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise InvalidSchedule(f"--interval must be a whole number of seconds, at least 1; got {interval!r}")
        return Schedule(interval=interval)
    cron = DEFAULT_CRON if cron is None else cron
    problem = _cron_problem(cron)
    if problem:
        raise InvalidSchedule(f"invalid cron expression {cron!r}: {problem}")
    return Schedule(cron=cron)


def _cron_problem(cron: str) -> str | None:
    """Why Prefect would refuse `cron`, or None. Uses the croniter Prefect vendors, loaded from
    its file so that checking a schedule does not import Prefect (seconds of start-up)."""
    checker = _vendored_croniter()
    if checker is None:  # a Prefect that no longer vendors it: ask Prefect itself
        from prefect._internal.schemas.validators import validate_cron_string

        try:
            validate_cron_string(cron)
        except ValueError as exc:
            return str(exc)
        return None
    if not checker.croniter.is_valid(cron):
        return "expected 5 fields (minute hour day-of-month month day-of-week), e.g. \"0 3 * * *\""
    if any(field.casefold() in ("r", "h") for field in cron.split()):
        return "random (R) and hashed (H) fields are not supported by Prefect"
    return None


def _vendored_croniter():
    spec = importlib.util.find_spec("prefect")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "_vendor" / "croniter" / "croniter.py"
    if not path.is_file():
        return None
    module_spec = importlib.util.spec_from_file_location("_winnow_vendored_croniter", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def prefect_api_url() -> str | None:
    """PREFECT_API_URL from the environment, else from the active Prefect profile, else None."""
    url = os.environ.get("PREFECT_API_URL", "").strip()
    if url:
        return url
    home = Path(os.environ.get("PREFECT_HOME", "~/.prefect")).expanduser()
    path = Path(os.environ.get("PREFECT_PROFILES_PATH", home / "profiles.toml")).expanduser()
    try:
        profiles = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None
    active = os.environ.get("PREFECT_PROFILE") or profiles.get("active")
    table = profiles.get("profiles", {}).get(active, {}) if isinstance(active, str) else {}
    url = table.get("PREFECT_API_URL") if isinstance(table, dict) else None
    return url.strip() if isinstance(url, str) and url.strip() else None


def check_prefect_server(url: str | None, *, timeout: float = 2.0) -> str:
    """`url` if a Prefect API answers its health check there; NoPrefectServer (one line) otherwise."""
    if not url:
        raise NoPrefectServer(f"winnow serve needs a running Prefect server and PREFECT_API_URL is not set: "
                              f"{START_SERVER}")
    request = urllib.request.Request(url.rstrip("/") + "/health")
    if os.environ.get("PREFECT_API_KEY"):
        request.add_header("Authorization", f"Bearer {os.environ['PREFECT_API_KEY']}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(64)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise NoPrefectServer(f"PREFECT_API_URL={url!r} answers but not as a Prefect API (HTTP 404 at /health; "
                                  f"the URL usually ends in /api)") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        why = getattr(exc, "reason", exc)
        raise NoPrefectServer(f"no Prefect server answers at PREFECT_API_URL={url!r} ({why}): {START_SERVER}") from None
    return url


def check_serve(target: str, settings: dict[str, Any] | None = None, *, cron: str | None = None,
                interval: int | None = None, name: str | None = None) -> ServePlan:
    """Validate everything a scheduled run needs, without importing Prefect; raises a named error.

    Checked in order, cheapest first: the settings (the same coercer as `winnow run`), the
    catalog and holdouts (they must exist now, not at 03:00), the output folder, the
    schedule, whether a Prefect server answers, and last the device and encoder (loaded
    once, so unknown names and missing weights fail now).
    """
    from winnow.catalogs import resolve_catalog
    from winnow.pipeline.run import resolve_config

    settings = check_settings(settings, where="settings")
    own = Config.from_settings(settings)
    spec = resolve_catalog(target, **own.run.target_options())
    config = resolve_config(spec, settings)
    for holdout in config.run.holdout:
        resolve_catalog(holdout)
    if config.run.runner == "dask":
        raise ServeError("winnow serve runs the flow with Prefect's own task runner; --runner dask is for "
                         "one-shot runs (`winnow run --runner dask`)")
    if config.run.out is None:
        raise ServeError("winnow serve needs an output folder: --out")
    out = Path(config.run.out).expanduser()
    if out.exists() and not out.is_dir():
        raise ServeError(f"--out {str(out)!r} is a file; it must be a folder (it is created if missing)")
    schedule = check_schedule(cron=cron, interval=interval)
    api_url = check_prefect_server(prefect_api_url())
    _check_device(config.embed.device)
    _check_encoder(config.embed.encoder, config.embed.device, modality=spec.source.modality)
    path = Path(target).expanduser()
    absolute: dict[str, Any] = {"run": {"out": str(out.resolve()), "wait": True, "progress": False,
                                        # A scheduled run queues behind a manual one (wait).
                                        "holdout": tuple(_absolute(h) for h in config.run.holdout)}}
    if config.embed.store:
        absolute["embed"] = {"store": str(Path(config.embed.store).expanduser().resolve())}
    settings = check_settings(merge_settings(settings, absolute), where="settings")
    return ServePlan(target=str(path.resolve()) if path.exists() else target, settings=settings,
                     config=Config.from_settings(config, settings), schedule=schedule,
                     name=name or f"winnow-{spec.name}", api_url=api_url)


def _absolute(target: str) -> str:
    return str(Path(target).expanduser().resolve()) if Path(target).expanduser().exists() else target


def _check_device(device: str | None) -> None:
    if device is None:
        return
    import torch

    try:
        torch.device(device)
    except (RuntimeError, ValueError):
        raise ServeError(f"--device {device!r} is not a torch device; use cpu, cuda or cuda:N") from None


def _check_encoder(name: str | None, device: str | None, *, modality: str = "image") -> None:
    from winnow.embeddings import DEFAULT_ENCODER, DEFAULT_TEXT_ENCODER, get_encoder

    default = DEFAULT_TEXT_ENCODER if modality == "text" else DEFAULT_ENCODER
    encoder = get_encoder(name or default, device=device)  # unknown names and missing weights fail here
    del encoder  # each run loads its own, in its own process


def build_deployment(target: str, settings: dict[str, Any] | None = None, *, name: str, cron: str | None = None,
                     interval: int | None = None):
    """A RunnerDeployment of clean_dataset that re-cleans `target` on the schedule.

    Its parameters are the target and the user's settings layer, plain JSON (each run merges
    them over the catalog's tables, as read at that run). `.apply()` registers it with the
    Prefect API; `prefect.serve(deployment)` (what `winnow serve` does) also starts the
    process that executes the scheduled runs.
    """
    from prefect.deployments.runner import EntrypointType

    from winnow.flows.clean import clean_dataset

    schedule = check_schedule(cron=cron, interval=interval)
    settings = _json(check_settings(settings, where="settings"))
    out = settings.get("run", {}).get("out")
    return clean_dataset.to_deployment(
        name=name,
        cron=schedule.cron,
        interval=schedule.interval,
        parameters={"target": target, "settings": settings},
        description=f"Re-clean {target}" + (f" into {out}" if out else ""),
        tags=["winnow"],
        # Runs import flows.clean by module name: they work from any folder the server runs them in.
        entrypoint_type=EntrypointType.MODULE_PATH,
    )


def _json(settings: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
            for name, values in settings.items()}


def serve_plan(plan: ServePlan) -> None:
    """Register the deployment with the server at plan.api_url and execute its runs until interrupted."""
    os.environ["PREFECT_API_URL"] = plan.api_url  # the server that was checked is the one Prefect uses
    from prefect import serve

    deployment = build_deployment(plan.target, plan.settings, name=plan.name, cron=plan.schedule.cron,
                                  interval=plan.schedule.interval)
    serve(deployment, limit=1)  # one run at a time; a run due meanwhile waits for its turn
