"""What a dataset is: catalog specs, sample sources, their validation, and the table schemas."""

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
    UnknownSource,
    UnreadableFolder,
    UnsafePath,
    UnsupportedSource,
)
from winnow.catalogs.samples import (
    classes_of,
    confinement_of,
    list_samples,
    make_sample_id,
    open_reader,
    read_sample,
    source_of,
)
from winnow.catalogs.sources import (
    SOURCES,
    Listing,
    Source,
    get_source,
    list_sources,
    register_source,
)
from winnow.catalogs.spec import (
    CatalogSpec,
    cache_dir,
    catalog_from_folder,
    catalog_from_table,
    list_catalogs,
    load_catalog,
    parse_catalog,
    read_ground_truth,
    resolve_catalog,
)

SourceSpec = Source  # the name of a catalog's source before sources were a registry

__all__ = [
    "CatalogError", "CatalogNotFound", "CatalogSpec", "DuplicatePath", "EmptyDataset",
    "InvalidCatalog", "MissingColumn", "MissingRoot", "SourceSpec", "TooFewClasses",
    "UnknownLabel", "UnsafePath", "InvalidManifest", "UnreadableFolder", "cache_dir", "catalog_from_folder", "classes_of", "confinement_of",
    "list_catalogs", "list_samples", "load_catalog", "make_sample_id", "parse_catalog",
    "resolve_catalog", "schemas",
    # tables as targets, sources not readable yet, ground truth
    "AmbiguousTable", "UnsupportedSource", "catalog_from_table", "read_ground_truth",
    # sample sources: the registry, and reopening a samples table's source in any process
    "SOURCES", "Listing", "Source", "UnknownSource", "get_source", "list_sources", "open_reader", "read_sample",
    "register_source", "source_of",
]
