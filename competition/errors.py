"""The base of the kit's own errors: the CLI prints these as one clear
message (no traceback) and exits non-zero."""


class KitError(Exception):
    """An error the user can fix: bad input, a missing step, a bad setting."""


class ConfigError(KitError, ValueError):
    """A config file, override or task spec that does not fit the schema."""
