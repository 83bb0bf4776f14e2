"""Files as untrusted input and atomic output: what a path is before it is opened (a FIFO or a device would
block or never end), and writes through a temporary file, fsync and rename, so no reader sees half a file."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def file_problem(path: Path, max_bytes: int | None = None) -> str | None:
    """Why `path` cannot be read as a regular file, judged by stat() alone (so nothing blocks), or None.
    Opening a FIFO waits for a writer forever and /dev/zero never ends: refused here by their kind."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return "no such file"
    except PermissionError:
        return "permission denied"
    except OSError as e:  # a path through a file, a name too long, a loop of links
        return f"cannot read ({e.strerror or e})"
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _KINDS if test(info.st_mode)), None)
        return f"is {kind}, not a regular file" if kind else "is not a regular file"
    if max_bytes is not None and info.st_size > max_bytes:
        return f"is {info.st_size / 2**20:,.1f} MiB, more than the {max_bytes / 2**20:,.0f} MiB such a file may be"
    return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The mode a plain new file gets under the process's umask (mkstemp's are 0600)."""
    return 0o666 & ~_umask()


def publish(tmp: Path, path: Path, replace: bool) -> None:
    """Move the finished file `tmp` to `path` in one step. With replace=False an existing `path` (say, one that
    appeared while we computed) is never clobbered: FileExistsError is raised instead."""
    if replace:
        os.replace(tmp, path)
        return
    # link() refuses an existing target atomically, where exists()+rename() would race.
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:  # a filesystem without hard links: fall back to check-then-rename
        if path.exists():
            raise FileExistsError(path) from None
        os.replace(tmp, path)
    else:
        os.unlink(tmp)


@contextlib.contextmanager
def atomic_write(path: Path, mode: str = "wb", replace: bool = True) -> Iterator[IO[Any]]:
    """Yield a file object; on clean exit it becomes `path`, on any error it vanishes.

    With replace=False an existing `path` (say, one that appeared while we computed) is never clobbered:
    FileExistsError is raised instead.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, new_file_mode())  # mkstemp makes 0600; outputs should look like any other file
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        publish(Path(tmp), path, replace)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
