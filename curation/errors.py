"""Named errors for arrays a user hands to the curation functions (each quotes the bad value)."""


class InvalidArray(ValueError):
    """An input array has the wrong shape, dtype, range, or holds NaN / inf."""


class LengthMismatch(InvalidArray):
    """Two arrays that must have one row per sample have different lengths."""


class MissingDependency(ImportError):
    """An optional dependency is not installed; the message gives the install command."""
