"""What a dataset is: catalog specs, their validation, and the table schemas."""

from catalogs import schemas
from catalogs.errors import (
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
)
from catalogs.samples import classes_of, confinement_of, list_samples, make_sample_id
from catalogs.spec import (
    CatalogSpec,
    SourceSpec,
    cache_dir,
    catalog_from_folder,
    list_catalogs,
    load_catalog,
    parse_catalog,
    resolve_catalog,
)

__all__ = [
    "CatalogError", "CatalogNotFound", "CatalogSpec", "DuplicatePath", "EmptyDataset",
    "InvalidCatalog", "MissingColumn", "MissingRoot", "SourceSpec", "TooFewClasses",
    "UnknownLabel", "UnsafePath", "InvalidManifest", "UnreadableFolder", "cache_dir", "catalog_from_folder", "classes_of", "confinement_of",
    "list_catalogs", "list_samples", "load_catalog", "make_sample_id", "parse_catalog",
    "resolve_catalog", "schemas",
]
