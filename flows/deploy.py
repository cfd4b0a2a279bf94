"""Scheduled cleaning: the clean_dataset flow as a Prefect deployment with a cron schedule."""

from __future__ import annotations

from dataclasses import asdict

from flows.clean import clean_dataset
from flows.config import RunConfig


def build_deployment(config: RunConfig, *, cron: str, name: str):
    """A RunnerDeployment of clean_dataset that re-cleans `config.target` on `cron`.

    `.apply()` registers it with the Prefect API; `prefect.serve(deployment)` (what
    `winnow serve` does) also starts the process that executes the scheduled runs.
    """
    from prefect.client.schemas.schedules import CronSchedule

    try:
        CronSchedule(cron=cron)
    except ValueError as exc:
        raise ValueError(f"invalid cron expression {cron!r}: {exc}") from None
    return clean_dataset.to_deployment(
        name=name,
        cron=cron,
        parameters={"config": asdict(config)},
        description=f"Re-clean {config.target} into {config.out}",
        tags=["winnow"],
    )
