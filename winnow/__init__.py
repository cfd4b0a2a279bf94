"""Winnow: find and fix wrong labels, duplicates, outliers and unusable files in ML datasets.

One package, one layer per subpackage (each a folder of the repository):

    winnow.catalogs    what a dataset is: catalog specs, sample sources, validation, schemas
    winnow.embeddings  encoders, safe sample reading, the content-keyed embedding store
    winnow.curation    the algorithms: pure functions over arrays and the kNN graph
    winnow.pipeline    one run as library code: stages, outputs, versions, report, export
    winnow.flows       the application: Prefect flows and the typer CLI

`import winnow` is cheap: the names below load their layer on first use.

    result = winnow.clean("digits", encoder="pixels")   # no Prefect, no server
    result.manifest                                     # polars: one row per sample
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("winnow-curate")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

# name -> module that defines it; loaded on first attribute access (PEP 562).
_LAZY = {
    "clean": "winnow.pipeline.cleaning",
    "CleanResult": "winnow.pipeline.cleaning",
    "load_result": "winnow.pipeline.cleaning",
    "Config": "winnow.pipeline.config",
    "ConfigError": "winnow.pipeline.config",
    "EmbedConfig": "winnow.pipeline.config",
    "RunOptions": "winnow.pipeline.config",
    "KnnConfig": "winnow.curation",
    "DetectConfig": "winnow.curation",
    "DecisionPolicy": "winnow.curation",
    "run_clean": "winnow.pipeline.run",
    "validate_run": "winnow.pipeline.run",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'winnow' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
