"""Reading bounded files and writing them atomically.

A crash or Ctrl-C while writing must never leave a half-written key, model or
transcript: data goes to a temporary file in the same directory, is fsynced,
then renamed over the target (rename is atomic on POSIX).
"""

from __future__ import annotations

import fcntl
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


# Files no command may replace with something else, even with --force: the
# secrets that cannot be recreated (docs/design.md section 6).  Recognised by
# bytes near the start or the end of the file (canonical JSON sorts its keys,
# so "type" comes late); wmark.protocol's constants are checked against these
# in tests/test_cli_errors.py, since this layer may not import them.
IRREPLACEABLE = {
    b"-----BEGIN PRIVATE KEY-----": "a private signing key",
    b"-----BEGIN ENCRYPTED PRIVATE KEY-----": "a private signing key",
    b'"type":"wmark/sealed-marking-key"': "a marking key",
    b'"type":"wmark/marking-key"': "a marking key",
}
_SNIFF_BYTES = 4096


def irreplaceable_kind(path: str | os.PathLike[str]) -> str | None:
    """What secret the regular file at ``path`` holds, if it is one of :data:`IRREPLACEABLE`."""
    try:
        with Path(path).open("rb") as fh:
            head = fh.read(_SNIFF_BYTES)
            size = os.fstat(fh.fileno()).st_size
            fh.seek(max(0, size - _SNIFF_BYTES))
            tail = fh.read(_SNIFF_BYTES)
    except OSError:
        return None
    for marker, kind in IRREPLACEABLE.items():
        if marker in head or marker in tail:
            return kind
    return None


def check_output_path(path: str | os.PathLike[str], *, what: str, force: bool = False,
                      option: str = "--out", kind: str | None = None) -> Path:
    """Refuse, before any work or side effect, an output file the command could
    not or should not write (docs/design.md section 6, the overwrite rule).

    A directory, a path under a file, a non-regular file or a directory we
    cannot write in is the user's mistake.  An existing file is replaced only
    with ``force``; a secret (:data:`IRREPLACEABLE`) never, unless the command
    writes that same ``kind`` of secret: a reveal written over ``mk.wmk`` would
    lose the watermark for good.
    """
    p = Path(path)
    if str(path) == "":
        raise InvalidInput(f"{option}: an empty path; give a file name for the {what}")
    if p.is_dir():
        raise InvalidInput(f"{p}: is a directory; give {option} a file name for the {what}")
    if p.exists() or p.is_symlink():
        mode = os.lstat(p).st_mode
        if not stat.S_ISREG(mode):
            raise InvalidInput(f"{p}: exists and is not a regular file; give {option} another name for the {what}")
        held = irreplaceable_kind(p)
        if held is not None and held != kind:
            raise InvalidInput(f"{p}: holds {held}; refusing to replace it with the {what}, even with --force "
                               f"(give {option} another name)")
        if not force:
            raise InvalidInput(f"{p}: already exists; pass --force to replace it, or give {option} another name")
    parent = p.parent
    while not parent.exists():  # atomic_write creates missing directories
        if parent == parent.parent:
            break
        parent = parent.parent
    if not parent.is_dir():
        raise InvalidInput(f"{p}: {parent} is not a directory; give {option} a path in a directory")
    try:  # a real probe: os.access says yes to root on a read-only file system
        fd, probe = tempfile.mkstemp(prefix=".wmark-probe.", dir=parent)
    except OSError as exc:
        raise InvalidInput(f"{p}: cannot write in {parent} ({exc.strerror or exc}); give {option} another "
                           f"path") from None
    os.close(fd)
    os.unlink(probe)
    return p


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


@contextmanager
def exclusive_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold ``flock(LOCK_EX)`` on ``path`` (created if absent) for the block: one
    process at a time, released by the kernel if the holder dies."""
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
