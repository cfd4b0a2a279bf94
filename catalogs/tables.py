"""Reading .csv / .parquet tables a user gives (manifests, ground truth), and naming their rows."""

from __future__ import annotations

from pathlib import Path

from winnow.catalogs.errors import InvalidManifest, MissingRoot

TABLE_SUFFIXES = (".csv", ".parquet")  # a target with one of these is a table of samples


def read_table(path: Path, *, n_rows: int | None = None, what: str = "manifest"):
    """A .csv (every column as text: values stay as written) or .parquet file as a polars
    DataFrame; a file that cannot be read raises InvalidManifest quoting it."""
    import polars as pl

    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise MissingRoot(f"{what} {str(path)!r} must be a .parquet or .csv file, got suffix {suffix!r}")
    try:
        if suffix == ".parquet":
            return pl.read_parquet(path, n_rows=n_rows)
        return pl.read_csv(path, infer_schema_length=0, n_rows=n_rows)
    except Exception as exc:  # polars / arrow / OS errors vary by version: one named error for all
        raise InvalidManifest(f"{what} {str(path)!r} cannot be read as {suffix[1:]}: {exc}") from exc


def row_name(path: Path, i: int) -> str:
    """Where row `i` (0-based) of a table is, as a person finds it: a CSV's line (the header is
    line 1, so the first row is line 2), a Parquet file's 1-based row."""
    return f"line {i + 2}" if path.suffix.lower() == ".csv" else f"row {i + 1}"


def rows_name(path: Path, rows: list[int]) -> str:
    word = "lines" if path.suffix.lower() == ".csv" else "rows"
    return f"{word} " + " and ".join(row_name(path, i).split(" ")[1] for i in rows)
