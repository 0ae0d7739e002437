"""Atomic file replacement: a crash leaves the old file or the new one, never half.

A temp file in the same folder, flushed and fsynced, ``os.replace``-d over the target,
then the folder fsynced (the rename survives a power cut); any error removes the temp
file. Temp names (``.{final}.{pid}.{8 hex}.cdx.tmp``, ``TEMP_NAME_PATTERN``) let cleanup
recognise leftovers of a killed writer, never a look-alike of another program."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from crypto_data_export.core.errors import StorageError

TEMP_TAG = "cdx"  # marks our temp files; the one regex below is all that recognises them
TEMP_NAME_PATTERN = re.compile(rf"^\.(?P<final>.+)\.(?P<pid>\d+)\.(?P<token>[0-9a-f]{{8}})\.{TEMP_TAG}\.tmp$")
FILE_MODE = 0o640


def fsync_folder(folder: Path) -> None:
    """Make a rename durable; some file systems refuse, which is harmless."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _describe(exc: OSError, path: Path) -> str:
    return f"cannot write {path}: {exc.strerror or exc}; check free space and permissions of {path.parent}"


@contextmanager
def atomic_output_at(target: Path) -> Iterator[tuple[IO[str], Path]]:
    """Yield (a file object, its temp path); on a clean exit its content replaces ``target``
    atomically (the path: for a writer that reads back what it wrote before publishing)."""
    target = Path(target)
    temp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.{TEMP_TAG}.tmp")  # TEMP_NAME_PATTERN
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    except OSError as exc:
        raise StorageError(_describe(exc, target)) from exc
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
            yield handle, temp
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        if isinstance(exc, OSError):
            raise StorageError(_describe(exc, target)) from exc
        raise
    fsync_folder(target.parent)


def atomic_write_text(target: Path, text: str) -> None:
    with atomic_output_at(target) as (handle, _):
        handle.write(text)


def atomic_write_json(target: Path, data: Any) -> None:
    atomic_write_text(target, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
