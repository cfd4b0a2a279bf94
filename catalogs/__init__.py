"""What a dataset is: catalog specs, their validation, and the table schemas."""

from winnow.catalogs import schemas
from winnow.catalogs.errors import (
    AmbiguousTable,
    CatalogError,
    CatalogNotFound,
    DuplicatePath,
    EmptyDataset,
    InvalidCatalog,
    InvalidManifest,
    MissingColumn,
    MissingRoot,
    TooFewClasses,
    UnknownLabel,
    UnreadableFolder,
    UnsafePath,
    UnsupportedSource,
)
from winnow.catalogs.samples import classes_of, confinement_of, list_samples, make_sample_id
from winnow.catalogs.spec import (
    CatalogSpec,
    SourceSpec,
    cache_dir,
    catalog_from_folder,
    catalog_from_table,
    list_catalogs,
    load_catalog,
    parse_catalog,
    read_ground_truth,
    resolve_catalog,
)

__all__ = [
    "CatalogError", "CatalogNotFound", "CatalogSpec", "DuplicatePath", "EmptyDataset",
    "InvalidCatalog", "MissingColumn", "MissingRoot", "SourceSpec", "TooFewClasses",
    "UnknownLabel", "UnsafePath", "InvalidManifest", "UnreadableFolder", "cache_dir", "catalog_from_folder", "classes_of", "confinement_of",
    "list_catalogs", "list_samples", "load_catalog", "make_sample_id", "parse_catalog",
    "resolve_catalog", "schemas",
    # tables as targets, sources not readable yet, ground truth
    "AmbiguousTable", "UnsupportedSource", "catalog_from_table", "read_ground_truth",
]
