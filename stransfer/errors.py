"""The project's exception types; the CLI turns each into one stderr line and an exit code."""

from __future__ import annotations

import errno


class StransferError(Exception):
    """Base class: a problem the user can act on, described in one line. A setting is named as the Python API
    names it, in backticks (`style_blend`); the CLI writes each such name as its flag (--style-blend)."""

    exit_code = 1
    # Fatal: every later file of a batch would fail the same way, so the batch stops (with its summary)
    # instead of repeating the failure once per file.
    fatal = False


class UsageError(StransferError):
    """Bad flags, config, style or model: nothing can run (exit code 2)."""

    exit_code = 2
    fatal = True


class ArgumentError(UsageError, ValueError):
    """A value given to the Python API that cannot be used: a tensor of the wrong shape or holding NaN, a number
    out of range. A ValueError too, as Python code expects of a bad argument."""


class ArgumentTypeError(UsageError, TypeError):
    """An argument of the Python API of a type it does not take (a number where a path or image belongs)."""


class ConfigError(ArgumentError):
    """A TOML file, an argument or a flag holds an unknown key, a wrong type or an out-of-range value. `key`: the
    setting, when its value was given as an argument (the message then names no source)."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class ConfigTypeError(ConfigError, ArgumentTypeError):
    """A setting given as an argument of a type it does not take (a number where a name belongs): a TypeError
    too, as Python code expects."""


class InputError(StransferError):
    """One input image cannot be used; the other inputs of a run still are (exit code 1)."""


class OutputError(StransferError):
    """An output cannot be written (exists, read-only folder, full disk)."""


class DiskFullError(OutputError):
    """No space (or quota) left where outputs go: the next file would fail the same way."""

    fatal = True


class WeightsError(StransferError):
    """Backbone or model weights cannot be found, fetched, verified or read."""

    fatal = True


class ModelError(UsageError, WeightsError):
    """The model named by --model cannot be used (unknown name, unreadable file, another engine's): a usage
    error (exit code 2), and still a WeightsError for code that handles any weights that will not load."""


def write_error(path: object, e: BaseException, verb: str = "write") -> OutputError:
    """The error for an output that could not be written: DiskFullError (fatal to a batch) when the disk or
    quota is full, else OutputError."""
    kind = DiskFullError if getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT) else OutputError
    return kind(f"{path}: cannot {verb} ({getattr(e, 'strerror', None) or e})")
