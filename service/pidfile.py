"""The service's pidfile: written atomically, read without trusting it, removed safely.

The pidfile is only a hint: PIDs are reused and anyone who can write the
export folder can plant a symlink, a FIFO or garbage in its place. Reading
never follows a symlink nor blocks, and says what it found instead of
guessing; deciding whether the PID is really our scheduler is the caller's.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from common.atomic_io import atomic_write_text
from common.errors import ServiceError

MAX_PID = 4_194_304  # the kernel's upper bound for pid_max
_READ_LIMIT = 64  # a PID is at most 7 digits; more is not a pidfile


@dataclass(frozen=True)
class Pidfile:
    """What the pidfile says: ``missing``, ``unsafe`` (not a regular file), ``invalid`` or ``ok``."""

    kind: str
    pid: int | None = None
    detail: str = ""


def read_pidfile(path: Path) -> Pidfile:
    """Read without following a symlink and without blocking on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return Pidfile("missing")
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return Pidfile("unsafe", detail="it is a symbolic link")
        raise ServiceError(f"cannot read the pidfile {path}: {exc.strerror or exc}") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return Pidfile("unsafe", detail="it is not a regular file")
        raw = os.read(fd, _READ_LIMIT)
    finally:
        os.close(fd)
    text = raw.decode("ascii", errors="replace").strip()
    if re.fullmatch(r"\d{1,7}", text) and 1 < int(text) <= MAX_PID:
        return Pidfile("ok", int(text))
    return Pidfile("invalid", detail=f"content {text[:20]!r} is not a process id")


def write_pidfile(path: Path, pid: int) -> None:
    """Atomically, so a reader never sees half a PID (StorageError if it cannot be written)."""
    atomic_write_text(path, f"{pid}\n")


def remove_pidfile(path: Path) -> None:
    """Unlink the entry itself: for a symlink that is the link, never its target."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ServiceError(f"cannot remove the pidfile {path}: {exc.strerror or exc}; remove it by hand") from exc
