"""Errors that are the user's to fix (bad input, bad config): shown as one clear line, never a bare traceback."""

from __future__ import annotations

from schemas.validate import SchemaError


class UserError(Exception):
    """Bad input or configuration. The message says what is wrong and where (file, line, column, key)."""


class InputFileError(UserError):
    """An input file is missing, corrupt, truncated or of the wrong shape."""


class ConfigError(UserError, ValueError):
    """A configuration file or value is wrong, or differs from what an output folder was made with; the message
    names the key(s)."""


# Schema errors are the user's to fix too: the CLI shows them the same way.
USER_ERRORS: tuple[type[BaseException], ...] = (UserError, SchemaError)
