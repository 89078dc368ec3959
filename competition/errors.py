"""The base of the kit's own errors: the CLI prints these as one clear
message (no traceback) and exits non-zero."""


class KitError(Exception):
    """An error the user can fix: bad input, a missing step, a bad setting."""


class ConfigError(KitError, ValueError):
    """A config file, override or task spec that does not fit the schema."""


class ImageReadError(KitError):
    """An image file (DICOM, PNG, JPEG) that cannot be turned into an image:
    reported with the file and the cause, and left out, never replaced by zeros."""

    def __init__(self, path, cause: str):
        self.path = str(path)
        self.cause = cause
        super().__init__(f"{path}: {cause}")
