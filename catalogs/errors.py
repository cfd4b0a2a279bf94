"""Named errors for a user's mistakes in a catalog or a dataset (each quotes the bad value)."""


class CatalogError(ValueError):
    """Base class: the catalog or the dataset it names is not usable as given."""


class CatalogNotFound(CatalogError):
    """The catalog file or bundled catalog name does not exist."""


class InvalidCatalog(CatalogError):
    """The TOML is malformed: unknown key, wrong type, missing required field."""


class UnknownSource(InvalidCatalog):
    """The [source] kind names no registered sample source (`winnow.catalogs.list_sources()`)."""


class MissingRoot(CatalogError):
    """The image folder or manifest file the catalog points at does not exist."""


class EmptyDataset(CatalogError):
    """The source holds no samples (a folder with no images, an empty manifest)."""


class UnknownLabel(CatalogError):
    """A sample's label is not in the catalog's class list."""


class DuplicatePath(CatalogError):
    """The same sample path appears more than once in a manifest."""


class MissingColumn(CatalogError):
    """A manifest lacks the path or label column the catalog names."""


class UnsafePath(CatalogError):
    """A manifest path escapes the dataset root (`..`, absolute) and the catalog does not allow it."""


class TooFewClasses(CatalogError):
    """Label cleaning needs at least two classes, each with at least one sample."""


class UnreadableFolder(CatalogError):
    """A folder of the dataset cannot be listed (permissions): its samples would silently vanish."""


class InvalidManifest(CatalogError):
    """The manifest file cannot be read as a table (corrupt, malformed, not readable)."""


class UnsupportedSource(CatalogError):
    """The samples live where the named source cannot read them: a path manifest listing URLs or
    holding image bytes (those are the `parquet_images` / `webdataset` / `hf_dataset` sources'),
    a URL no source takes, or a storage protocol whose fsspec package is not installed."""


class AmbiguousTable(CatalogError):
    """A table of samples has no `path` column and several columns that could hold the paths."""
