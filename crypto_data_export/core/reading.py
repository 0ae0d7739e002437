"""The one chunked reader of the export folder's files (validation, hashing, log tails):
``O_NOFOLLOW`` refuses a symlink swapped in after a scan, ``O_NONBLOCK`` keeps a FIFO from
hanging the job, ``fstat`` refuses anything but a regular file."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

CHUNK_BYTES = 1 << 20


def open_regular(path: Path) -> tuple[int, int]:
    """(fd, size) of a regular file, opened without following a symlink."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"{Path(path).name} is not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd, info.st_size


def iter_chunks(fd: int, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The rest of an open file, ``chunk_bytes`` at a time."""
    while chunk := os.read(fd, chunk_bytes):
        yield chunk


def read_regular_file(path: Path, *, max_bytes: int) -> bytes:
    """A whole small file; ValueError if it is larger than ``max_bytes``, before reading it and
    again if it grew while being read, so a hostile file cannot balloon the process."""
    fd, size = open_regular(path)
    try:
        if size > max_bytes:
            raise ValueError(f"it is {size} bytes, more than the {max_bytes} a file of ours can be")
        parts: list[bytes] = []
        read = 0
        for chunk in iter_chunks(fd):
            read += len(chunk)
            if read > max_bytes:
                raise ValueError(f"it grew beyond {max_bytes} bytes while being read")
            parts.append(chunk)
    finally:
        os.close(fd)
    return b"".join(parts)


def hash_regular_file(path: Path) -> str:
    """SHA-256 of a regular file, streamed: nothing is held, nothing parsed."""
    fd, _ = open_regular(path)
    with open(fd, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
