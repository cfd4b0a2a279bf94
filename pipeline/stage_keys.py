"""Stage bookkeeping that lets a killed run resume without redoing finished stages.

Each stage, once its outputs are written, records its done-file (`WorkLayout.done(stage)`)
with a key: a hash of its parameters and of its upstream stages' keys. A stage whose
recorded key matches and whose outputs exist is skipped. Keys chain, so changing the data,
the encoder or k re-runs exactly the stages downstream of the change.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from winnow.pipeline.files import write_json
from winnow.pipeline.layout import WorkLayout


def stage_key(work: WorkLayout, stage: str, *, upstream: tuple[str, ...] = (),
              params: dict[str, Any] | None = None) -> str:
    parts = {
        "stage": stage,
        "params": params or {},
        "upstream": {name: done_key(work, name) for name in upstream},
    }
    return hashlib.blake2b(json.dumps(parts, sort_keys=True, default=str).encode(), digest_size=16).hexdigest()


def read_done_key(path: Path) -> str | None:
    """The key recorded in a done-file, or None when there is none (yet)."""
    try:
        return json.loads(path.read_text())["key"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return None


def done_key(work: WorkLayout, stage: str) -> str | None:
    return read_done_key(work.done(stage))


def is_done(work: WorkLayout, stage: str, key: str, outputs: tuple[Path, ...]) -> bool:
    return done_key(work, stage) == key and all(o.exists() for o in outputs)


def mark_done(work: WorkLayout, stage: str, key: str, **info: Any) -> None:
    write_json({"key": key, **info}, work.done(stage))
