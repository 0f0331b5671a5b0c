"""Reading bounded files and writing them atomically.

A crash or Ctrl-C while writing must never leave a half-written key, model or
transcript: data goes to a temporary file in the same directory, is fsynced,
then renamed over the target (rename is atomic on POSIX).
"""

from __future__ import annotations

import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

from wmark.errors import InvalidInput


@contextmanager
def open_input(path: str | os.PathLike[str], *, what: str) -> Iterator[BinaryIO]:
    """``path`` open for reading, if it is a regular file (through symlinks);
    a path that is missing, a directory, unreadable or anything but a regular
    file is the user's mistake, named with ``what``.

    Only regular files have a size to check before reading: a FIFO blocks
    forever and ``/dev/zero`` never ends.  The file is opened non-blocking
    and checked again through its descriptor, so one swapped in between the
    two checks cannot hang the open either.
    """
    p = Path(path)
    try:
        _expect_regular(os.stat(p), p, what)
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise InvalidInput(f"{p}: {what} not found") from None
    except (IsADirectoryError, NotADirectoryError):
        raise InvalidInput(f"{p}: is a directory; expected the {what} file") from None
    except PermissionError:
        raise InvalidInput(f"{p}: {what} is not readable (permission denied)") from None
    try:
        _expect_regular(os.fstat(fd), p, what)
        fh = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with fh:
        yield fh


def _expect_regular(st: os.stat_result, p: Path, what: str) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(p)
    if not stat.S_ISREG(st.st_mode):
        raise InvalidInput(f"{p}: {what} is not a regular file (a FIFO, device or socket); refusing to read it")


def read_bounded(path: str | os.PathLike[str], *, max_bytes: int, what: str) -> bytes:
    """The whole of a regular file, refused from its size before reading when over ``max_bytes``."""
    p = Path(path)
    with open_input(p, what=what) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > max_bytes:
            raise InvalidInput(f"{p}: {what} of {size} bytes exceeds the limit of {max_bytes}")
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise InvalidInput(f"{p}: {what} exceeds the limit of {max_bytes} bytes")
    return data


def atomic_write(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(p.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
