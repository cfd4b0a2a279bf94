"""Named errors for encoder names and weights the user asked for."""


class EncoderError(ValueError):
    """Base class for encoder problems caused by the user's request."""


class UnknownEncoder(EncoderError):
    """The encoder name, architecture or pretrained tag is not known."""


class EncoderUnavailable(EncoderError):
    """The weights cannot be had here (no network, missing file); the message names offline choices."""


class StoreMismatch(EncoderError):
    """An embedding store on disk belongs to another encoder or dimension."""
