"""The one place a .pth file is read: torch.load with weights_only=True (tensors and plain containers, never
code), after the file's kind and size are checked, with every failure one line naming the file."""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from stransfer.errors import WeightsError
from stransfer.fileio import file_problem


def load_untrusted(path: Path, max_bytes: int, error: type[WeightsError], what: str) -> Any:
    """torch.load(weights_only=True) of a regular file under `max_bytes`; every failure is one `error` line
    saying `path` is not a readable `what`."""
    problem = file_problem(path, max_bytes)
    if problem:
        raise error(f"{path}: {problem}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on its own formats and defaults: nothing to act on
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise error(f"{path}: {_refusal(e)}") from None
    except Exception as e:  # noqa: BLE001 - torch raises many types for damaged files
        raise error(f"{path}: not a readable {what} ({_refusal(e)})") from None


def _refusal(e: Exception) -> str:
    """Why torch.load failed, in a few words. torch's unpickling error advises weights_only=False, which would
    run whatever code the file holds: that advice is never passed on, only what the file tried to import."""
    if isinstance(e, pickle.UnpicklingError):
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        return "refused to load " + (f"global {found.group(1)}: only tensors are allowed" if found
                                     else "objects other than tensors")
    first = re.split(r"(?<=\.)\s", " ".join(str(e).split()), maxsplit=1)[0]
    return f"{type(e).__name__}: {first}"
