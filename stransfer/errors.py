"""The project's exception types; the CLI turns each into one stderr line and an exit code."""

from __future__ import annotations


class StransferError(Exception):
    """Base class: a problem the user can act on, described in one line."""

    exit_code = 1


class UsageError(StransferError):
    """Bad flags, config, style or model: nothing can run (exit code 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """A TOML file or flag holds an unknown key, a wrong type or an out-of-range value."""


class InputError(StransferError):
    """One input image cannot be used; the other inputs of a run still are (exit code 1)."""


class OutputError(StransferError):
    """An output cannot be written (exists, read-only folder, full disk)."""


class WeightsError(StransferError):
    """Backbone or model weights cannot be found, fetched, verified or read."""
