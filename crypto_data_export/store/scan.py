"""One pass over the export folder: what is there, whether it is valid, what is identical.

Each of our files (``listing``: never a symlink, never a subfolder) is read once, streamed through its format's
``stream_checker``: its verdict, and its SHA-256 if its size collides with another's (bounded memory). Once
``stop`` has been set for ``STOP_GRACE_SECONDS`` (a normal folder finishes, so the status written on the way
out is whole), files not yet read get a "not checked" verdict (never trusted, moved or removed).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from crypto_data_export.core.atomic_io import TEMP_NAME_PATTERN
from crypto_data_export.core.errors import ExportError
from crypto_data_export.core.processes import pid_alive
from crypto_data_export.core.reading import hash_regular_file, iter_chunks, open_regular
from crypto_data_export.settings.market_names import SPOT
from crypto_data_export.store.exports import ExportFile
from crypto_data_export.store.formats import format_for_name
from crypto_data_export.store.layout import export_name_prefix
from crypto_data_export.store.listing import FolderNames, FolderScan, list_ours, size_colliding
from crypto_data_export.store.validation import NOT_CHECKED, FileValidation, cannot_read

if TYPE_CHECKING:  # a type only: --status and --health must not import pyarrow for it
    import pyarrow as pa

logger = logging.getLogger(__name__)

# Once a stop is requested, a scan may go on this long before it gives up on the files left.
STOP_GRACE_SECONDS = 2.0


class ScanStopped(ExportError):
    """A stop was requested while files were being read."""


class StopCheck:
    """True once ``event`` has been set for ``STOP_GRACE_SECONDS`` (as first seen by this check)."""

    def __init__(self, event: threading.Event | None) -> None:
        self._event = event
        self._since: float | None = None

    def __call__(self) -> bool:
        if self._event is None or not self._event.is_set():
            return False
        now = time.monotonic()
        self._since = self._since or now
        return now - self._since >= STOP_GRACE_SECONDS


# Asked between files and between chunks of a file: True means stop reading.
ShouldStop = Callable[[], bool]


@dataclass
class FileCheck:
    """One file read once: its verdict, candle frame (if asked and valid), hash (if asked), bytes read."""

    validation: FileValidation
    candles: pa.Table | None
    digest: str | None
    size: int


def check_regular_file(
    path: Path,
    interval: str,
    *,
    want_hash: bool = False,
    candles_from: int | None = None,
    stop: ShouldStop | None = None,
) -> FileCheck:
    """Validate (and hash) one file in one read, streamed through the checker of the format
    its name says. Raises OSError (FileNotFoundError if it vanished), ScanStopped on ``stop``."""
    file_format = format_for_name(Path(path).name)
    if file_format is None:
        raise OSError(f"{Path(path).name} is not an export file of a known format")
    stream = file_format.stream_checker(interval, path, candles_from=candles_from)
    digest = hashlib.sha256() if want_hash else None
    size = 0
    fd, _ = open_regular(path)
    try:
        for chunk in iter_chunks(fd):
            if stop is not None and stop():
                raise ScanStopped(f"stop requested while reading {Path(path).name}")
            size += len(chunk)
            if digest is not None:
                digest.update(chunk)
            stream.feed(chunk)
    finally:
        os.close(fd)
    return FileCheck(*stream.finish(), digest.hexdigest() if digest is not None else None, size)


def validate_file(path: Path, interval: str) -> FileValidation:
    """One file's verdict (streamed); an unreadable file is invalid, not an exception."""
    try:
        return check_regular_file(Path(path), interval).validation
    except OSError as exc:
        return cannot_read(Path(path), exc)


def writer_gone(temp_name: str) -> bool:
    """True if the process that wrote this temp file (its PID is in the name) no longer exists."""
    match = TEMP_NAME_PATTERN.fullmatch(temp_name)
    if match is None:
        return False
    pid = int(match["pid"])
    return pid != os.getpid() and not pid_alive(pid)


def scan_folder(
    export_dir: Path,
    *,
    symbols: Collection[str] | None = None,
    known: Mapping[Path, FileValidation] | None = None,
    stop: threading.Event | None = None,
    series: tuple[str, str] | None = None,
    names: FolderNames | None = None,
    judged: Mapping[Path, FileValidation] | None = None,
) -> FolderScan:
    """One directory pass and one read per file, one at a time (only ``symbols``' files if given, of
    ``series`` = (market, interval) if given, their names from ``names`` if given). ``known``: verdicts
    of files just written (not read back, only hashed if their size collides; ``fresh``); ``judged``:
    verdicts read moments ago, used as they are."""
    wanted = None if symbols is None else frozenset(symbols)
    market, interval = series if series is not None else (SPOT, None)
    # Each symbol's names, and its temp files' (".{name}...").
    mine = [export_name_prefix(symbol, interval, market) for symbol in wanted or ()]
    prefixes = tuple(mine + ["." + p for p in mine]) if wanted is not None else ("",)
    result = list_ours(export_dir, wanted, prefixes, names)
    known = {Path(p): v for p, v in (known or {}).items()}
    result.fresh = set(known)
    known = {**{Path(p): v for p, v in (judged or {}).items()}, **known}
    colliding, should_stop = {f.path for f in size_colliding(result.files)}, StopCheck(stop)
    present: list[ExportFile] = []
    for f in result.files:
        if result.stopped or should_stop():
            _not_reached(f, result)
            present.append(f)
        elif f.path in known:
            if _known(f, known[f.path], f.path in colliding, result):
                present.append(f)
        elif (read := _read_one(f, f.path in colliding, result, should_stop)) is not None:
            present.append(read)
    result.files = present
    return result


def _not_reached(f: ExportFile, result: FolderScan) -> None:
    result.stopped = True
    result.unreadable.add(f.path)
    result.validations[f.path] = FileValidation(f.path, False, NOT_CHECKED)


def _known(f: ExportFile, verdict: FileValidation, want_hash: bool, result: FolderScan) -> bool:
    """Record a file just written (and judged as written) with its verdict; False if it vanished."""
    if want_hash:
        try:
            result.hashes[f.path] = hash_regular_file(f.path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            _unreadable(f, exc, result)
            return True
    result.validations[f.path] = replace(verdict, path=f.path)
    return True


def _unreadable(f: ExportFile, exc: OSError, result: FolderScan) -> None:
    result.unreadable.add(f.path)
    result.validations[f.path] = cannot_read(f.path, exc)
    logger.warning("cannot read %s: %s", f.name, exc.strerror or exc)


def _read_one(f: ExportFile, want_hash: bool, result: FolderScan, stop: ShouldStop) -> ExportFile | None:
    """Judge (and hash) one file; None if it vanished since the listing."""
    try:
        read = check_regular_file(f.path, f.interval, want_hash=want_hash, stop=stop)
    except FileNotFoundError:
        return None
    except ScanStopped:
        _not_reached(f, result)
        return f
    except OSError as exc:
        _unreadable(f, exc, result)
        return f
    if read.digest is not None:
        result.hashes[f.path] = read.digest
    if read.size != f.size:  # changed since the listing: trust what was read
        f = ExportFile(f.path, f.symbol, f.interval, f.created, read.size, f.market)
    result.validations[f.path] = read.validation
    return f
