"""Our JSON files (``state.json``, ``status_report.json``): marked, read warily, never clobbered.

Only a file with our marker is ours to replace; anything else is renamed aside, never deleted or
overwritten (docs/files.md, "Our marker"). Reading never follows a symlink, never blocks on a FIFO
and refuses oversized files."""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crypto_data_export.core.clock import utc_now
from crypto_data_export.core.errors import StorageError
from crypto_data_export.core.reading import read_regular_file

WRITER_KEY = "writer"
FORMAT_KEY = "format_version"
WRITER = "crypto-data-export"
MAX_JSON_BYTES = 8 * 1024 * 1024  # a state file of ours stays far below; more is not ours
_MAX_SUFFIX_TRIES = 1000

# What a read found: the file is ours, absent, not ours (foreign) or unusable (corrupt).
OURS, MISSING, FOREIGN, CORRUPT = "ours", "missing", "foreign", "corrupt"


@dataclass(frozen=True)
class JsonRead:
    verdict: str
    data: dict[str, Any] | None = None
    problem: str = ""


def mark(data: dict[str, Any], version: int, *, first: bool = True) -> dict[str, Any]:
    """``data`` with our marker added (at the top, or at the end when ``first`` is False)."""
    marker = {WRITER_KEY: WRITER, FORMAT_KEY: version}
    body = {k: v for k, v in data.items() if k not in marker}
    return {**marker, **body} if first else {**body, **marker}


def ownership_problem(data: Any) -> str | None:
    """None if ``data`` is a JSON object carrying our marker, else why it is not ours."""
    if not isinstance(data, dict):
        return f"it holds a JSON {type(data).__name__}, not an object"
    if (writer := data.get(WRITER_KEY)) is None:
        return f"it has no {WRITER_KEY!r} marker"
    if writer != WRITER:
        return f"its {WRITER_KEY!r} is {str(writer)[:40]!r}, not {WRITER!r}"
    version = data.get(FORMAT_KEY)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        return f"its {FORMAT_KEY!r} is {str(version)[:20]!r}, not a version number"
    return None


def read_owned_json(path: Path, max_bytes: int = MAX_JSON_BYTES) -> JsonRead:
    """Read ``path`` and say whether it is ours; never raises for what the file holds."""
    try:
        raw = read_regular_file(path, max_bytes=max_bytes)
    except (FileNotFoundError, NotADirectoryError):  # no file, or no folder to hold one
        return JsonRead(MISSING)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return JsonRead(FOREIGN, problem="it is a symbolic link")
        return JsonRead(CORRUPT, problem=f"it cannot be read ({exc.strerror or exc})")
    except ValueError as exc:
        return JsonRead(CORRUPT, problem=str(exc))
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # RecursionError: nesting deeper than the parser's stack
        return JsonRead(CORRUPT, problem=f"it is not valid JSON ({type(exc).__name__})")
    problem = ownership_problem(data)
    return JsonRead(OURS, data) if problem is None else JsonRead(FOREIGN, problem=problem)


def _move_no_replace(source: Path, target: Path) -> None:
    """Rename without ever replacing ``target``: a hard link (of the entry itself, never a
    symlink's target) then unlink; where hard links are refused, rename after a check."""
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError as exc:  # FileExistsError (EEXIST) is raised as it is
        if exc.errno not in (errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EACCES):
            raise
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "exists", str(target)) from exc
        os.rename(source, target)
        return
    os.unlink(source)


def set_aside(path: Path, label: str, now: datetime | None = None) -> Path | None:
    """Move ``path`` to ``<name>.<label>-<UTC stamp>`` (``-2``, ``-3``... if taken); the new
    path, or None if ``path`` is already gone. OSError if it cannot be moved."""
    base = f"{path.name}.{label}-{(now or utc_now()).astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    for candidate in (path.with_name(base if n == 1 else f"{base}-{n}") for n in range(1, _MAX_SUFFIX_TRIES)):
        try:
            _move_no_replace(path, candidate)
        except FileExistsError:
            continue
        except FileNotFoundError:
            if not os.path.lexists(path):
                return None
            raise
        return candidate
    raise OSError(errno.EEXIST, f"no free name to set {path.name} aside", str(path))


def set_aside_or_fail(path: Path, label: str, problem: str) -> Path | None:
    """``set_aside`` for a file found not ours (``problem`` says why); StorageError if it stays."""
    try:
        return set_aside(path, label)
    except OSError as exc:
        raise StorageError(f"cannot set aside {path} ({problem}): {exc.strerror or exc}; move it away by hand") from exc
