"""The service's pidfile: written atomically, read without trusting it (never through a symlink,
never blocking on a FIFO), removed safely.

The first line is the PID (``head -1`` gives it); the next record the folder that process
serves and when it started (clock ticks since boot), so a copied pidfile or a reused PID is
never taken for this folder's scheduler::

    12345
    export_dir="/srv/crypto/historical_exports"
    start_ticks=8812345
"""

from __future__ import annotations

import errno
import json
import re
from dataclasses import dataclass
from pathlib import Path

from crypto_data_export.core.atomic_io import atomic_write_text
from crypto_data_export.core.errors import ServiceError
from crypto_data_export.core.reading import read_regular_file
from crypto_data_export.core.text import printable

MAX_PID = 4_194_304  # the kernel's upper bound for pid_max
_READ_LIMIT = 65536  # a PID, a folder path (PATH_MAX 4096, JSON-escaped) and a number
_PID_LINE = re.compile(r"\d{1,7}")


@dataclass(frozen=True)
class Pidfile:
    """What the pidfile says: ``missing``, ``unsafe`` (not a regular file), ``invalid`` or ``ok``;
    ``export_dir`` and ``start_ticks`` are None in a pidfile written by an older version."""

    kind: str
    pid: int | None = None
    detail: str = ""
    export_dir: str | None = None
    start_ticks: int | None = None


def _invalid(text: str) -> Pidfile:
    return Pidfile("invalid", detail=f"content {printable(text, 20)!r} is not a pidfile of ours")


def _parse(text: str) -> Pidfile:
    lines = text.strip().splitlines() or [""]
    first = lines[0].strip()
    if not (_PID_LINE.fullmatch(first) and 1 < int(first) <= MAX_PID):
        return Pidfile("invalid", detail=f"content {printable(first, 20)!r} is not a process id")
    record: dict[str, str] = {}
    for line in lines[1:]:
        key, sep, value = line.partition("=")
        if not sep or key not in ("export_dir", "start_ticks") or key in record:
            return _invalid(text)
        record[key] = value.strip()
    try:
        folder = json.loads(record["export_dir"]) if "export_dir" in record else None
        ticks = int(record["start_ticks"]) if "start_ticks" in record else None
    except (ValueError, RecursionError):
        return _invalid(text)
    if (folder is not None and not isinstance(folder, str)) or (ticks is not None and ticks < 0):
        return _invalid(text)
    return Pidfile("ok", int(first), export_dir=folder, start_ticks=ticks)


def read_pidfile(path: Path) -> Pidfile:
    try:
        raw = read_regular_file(path, max_bytes=_READ_LIMIT)
    except FileNotFoundError:
        return Pidfile("missing")
    except ValueError:
        return Pidfile("invalid", detail=f"it is larger than {_READ_LIMIT} bytes")
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return Pidfile("unsafe", detail="it is a symbolic link")
        if exc.errno is None:  # open_regular's refusal of a FIFO, a folder, a device
            return Pidfile("unsafe", detail="it is not a regular file")
        raise ServiceError(f"cannot read the pidfile {path}: {exc.strerror or exc}") from exc
    return _parse(raw.decode("utf-8", errors="replace"))


def write_pidfile(path: Path, pid: int, export_dir: Path | None = None, start_ticks: int | None = None) -> None:
    """Atomically, so a reader never sees half a PID (StorageError if it cannot be written)."""
    lines = [str(pid)]
    if export_dir is not None:
        lines.append(f"export_dir={json.dumps(str(export_dir))}")
    if start_ticks is not None:
        lines.append(f"start_ticks={start_ticks}")
    atomic_write_text(path, "\n".join(lines) + "\n")


def remove_pidfile(path: Path) -> None:
    """Unlink the entry itself: for a symlink that is the link, never its target."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise ServiceError(f"cannot remove the pidfile {path}: {exc.strerror or exc}; remove it by hand") from exc
