"""One pass over the export folder: what is there, whether it is valid, what is identical.

Only regular files directly in the folder whose names match
``EXPORT_NAME_PATTERN`` (or ``our_temp_name`` for crash leftovers) are
listed; symlinks are never followed, subfolders never entered. Each listed
file is read once: validation, and SHA-256 only for files whose size
collides with another's, come from that single read. A file is held whole
only while it stays under ``STREAM_VALIDATION_BYTES`` (whatever its listed
size said); past that it is validated as it streams (its format's
``stream_checker``):
memory stays bounded whatever a file named like an export holds.
A scan limited to some symbols looks only at names starting with their
prefix, so its cost follows their files, not the folder's. A scan given a
``stop`` event checks it between files and between chunks of a file: once it
has been set for ``STOP_GRACE_SECONDS`` (enough for a normal folder, so the
status written on the way out is still whole), the files not yet read get a
"not checked" verdict (never trusted, moved or removed) and the scan returns.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from crypto_data_export.core.atomic_io import TEMP_NAME_PATTERN
from crypto_data_export.core.errors import ExportError, StorageError
from crypto_data_export.core.processes import pid_alive
from crypto_data_export.core.reading import hash_regular_file, iter_chunks, open_regular
from crypto_data_export.settings.market_names import SPOT
from crypto_data_export.store.exports import ExportFile, newest_first
from crypto_data_export.store.formats import FileFormat, format_for_name
from crypto_data_export.store.formats.base import StreamChecker
from crypto_data_export.store.layout import export_name_prefix, our_temp_name, parse_export_name
from crypto_data_export.store.listing import FolderEntry, FolderNames, folder_entries
from crypto_data_export.store.validation import FileValidation, cannot_read, not_checked

if TYPE_CHECKING:  # a type only: --status and --health must not import pyarrow for it
    import pyarrow as pa

# Small files are validated together; this bounds the bytes held in memory at once.
VALIDATION_BATCH_BYTES = 16 << 20
# A file is held whole only up to this size; beyond it, it is validated chunk by chunk as it streams.
STREAM_VALIDATION_BYTES = 8 << 20


# Once a stop is requested, a scan may go on this long before it gives up on the files left.
STOP_GRACE_SECONDS = 2.0


class ScanStopped(ExportError):
    """A stop was requested while files were being read."""


class StopCheck:
    """True once ``event`` has been set for ``grace`` seconds (as first seen by this check).

    A stop request must end a long scan within seconds, but a scan that can
    finish in that time (every normal folder) should: the status report
    written on the way out then still judges every file.
    """

    def __init__(self, event: threading.Event | None, grace: float | None = None) -> None:
        self._event = event
        self._grace = STOP_GRACE_SECONDS if grace is None else grace
        self._since: float | None = None

    def __call__(self) -> bool:
        if self._event is None or not self._event.is_set():
            return False
        now = time.monotonic()
        if self._since is None:
            self._since = now
        return now - self._since >= self._grace


# Asked between files and between chunks of a file: True means stop reading.
ShouldStop = Callable[[], bool]


# (bytes, interval, path): what FileFormat.validate_many takes.
_ValidationInput = tuple[bytes, str, Path]


@dataclass(frozen=True)
class TempFile:
    """A leftover of ``atomic_io`` (possibly of a writer still running)."""

    path: Path
    size: int
    mtime: float


@dataclass
class FolderScan:
    """One pass over the folder: our files (by name), their verdicts, hashes
    where sizes collide, and temp leftovers.

    ``unreadable`` files (and files a stopped scan did not reach) are not
    judged: never quarantined, never removed. ``fresh`` names files just
    written by this process: they win ties in the content order.
    """

    files: list[ExportFile] = field(default_factory=list)
    validations: dict[Path, FileValidation] = field(default_factory=dict)
    hashes: dict[Path, str] = field(default_factory=dict)
    temp_files: list[TempFile] = field(default_factory=list)
    unreadable: set[Path] = field(default_factory=set)
    fresh: set[Path] = field(default_factory=set)
    stopped: bool = False

    def valid_files(self) -> list[ExportFile]:
        return [f for f in self.files if self.validations[f.path].valid]

    def invalid_files(self) -> list[ExportFile]:
        """Readable files that break a rule (unreadable ones are not judged)."""
        return [f for f in self.files if not self.validations[f.path].valid and f.path not in self.unreadable]

    def newest_first(self, files: Iterable[ExportFile]) -> list[ExportFile]:
        """``files`` by content, newest candle first (see ``crypto_data_export.store.exports.newest_first``)."""
        return newest_first(files, self.validations, self.fresh)

    def duplicate_groups(self, among: Iterable[ExportFile] | None = None) -> list[list[ExportFile]]:
        """Groups of identical files, newest (by content) first in each group."""
        return identical_groups(self.files if among is None else among, self.hashes, self.validations, self.fresh)

    def with_planned(self, planned: Mapping[ExportFile, FileValidation]) -> FolderScan:
        """This scan plus files a dry run would have written (they exist only in the plan)."""
        if not planned:
            return self
        files = sorted([*self.files, *planned], key=lambda f: (f.created, f.name))
        validations = {**self.validations, **{f.path: v for f, v in planned.items()}}
        return replace(self, files=files, validations=validations, fresh=self.fresh | {f.path for f in planned})

    def without(self, gone: Collection[Path]) -> FolderScan:
        """This scan minus files no longer there (removed or moved by a cleanup)."""
        gone = set(gone)
        if not gone:
            return self
        return FolderScan(
            files=[f for f in self.files if f.path not in gone],
            validations={p: v for p, v in self.validations.items() if p not in gone},
            hashes={p: h for p, h in self.hashes.items() if p not in gone},
            temp_files=[t for t in self.temp_files if t.path not in gone],
            unreadable=self.unreadable - gone,
            fresh=self.fresh - gone,
            stopped=self.stopped,
        )

    def hash_size_collisions(self, logger: logging.Logger | None = None) -> None:
        """Hash (streamed) any readable file whose size collides and has no hash yet.

        A scan hashes these as it reads; this only catches a file whose size
        changed after the listing, so duplicate groups never miss one.
        """
        for f in _size_colliding(self.files):
            if f.path not in self.hashes and f.path not in self.unreadable:
                digest = _try_hash(f, logger)
                if digest is not None:
                    self.hashes[f.path] = digest


def identical_groups(
    files: Iterable[ExportFile],
    hashes: Mapping[Path, str],
    validations: Mapping[Path, FileValidation],
    fresh: Collection[Path] = (),
) -> list[list[ExportFile]]:
    """Groups of files with the same hash, newest (by content) first in each, groups by their newest's name."""
    by_hash: dict[str, list[ExportFile]] = defaultdict(list)
    for f in files:
        digest = hashes.get(f.path)
        if digest is not None:
            by_hash[digest].append(f)
    groups = [newest_first(group, validations, fresh) for group in by_hash.values() if len(group) > 1]
    return sorted(groups, key=lambda g: g[0].name)


def _size_colliding(files: Iterable[ExportFile]) -> list[ExportFile]:
    files = list(files)
    sizes: dict[int, int] = defaultdict(int)
    for f in files:
        sizes[f.size] += 1
    return [f for f in files if sizes[f.size] > 1]


def _try_hash(f: ExportFile, logger: logging.Logger | None) -> str | None:
    try:
        return hash_regular_file(f.path)
    except OSError as exc:
        if logger is not None and not isinstance(exc, FileNotFoundError):
            logger.warning("cannot read %s: %s", f.name, exc.strerror or exc)
        return None


# --- reading without trusting the name ------------------------------------


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
    want_candles: bool = False,
    stop: ShouldStop | None = None,
) -> FileCheck:
    """Validate (and hash) one file in one read, by the format its name says, in
    bounded memory (see ``read_once``).

    Raises OSError (FileNotFoundError if it vanished) and ScanStopped if
    ``stop`` is set while it reads.
    """
    file_format = _format_of(path)
    read = read_once(path, interval, file_format, want_hash=want_hash, want_candles=want_candles, stop=stop)
    verdict = read.verdict(want_candles)
    return FileCheck(verdict[0], verdict[1], read.digest, read.size)


@dataclass
class _Read:
    """One file read once: its whole bytes if small, else the checker that judged it as it streamed."""

    path: Path
    interval: str
    file_format: FileFormat
    data: bytes | None
    stream: StreamChecker | None
    digest: str | None
    size: int

    def verdict(self, want_candles: bool = False) -> tuple[FileValidation, pa.Table | None]:
        if self.data is not None:
            return self.file_format.check_bytes(self.data, self.interval, self.path, want_candles=want_candles)
        assert self.stream is not None
        return self.stream.finish()


def read_once(
    path: Path,
    interval: str,
    file_format: FileFormat,
    *,
    want_hash: bool = False,
    want_candles: bool = False,
    stop: ShouldStop | None = None,
) -> _Read:
    """Read a file once, hashing as it goes; hold it whole only while it stays
    under ``STREAM_VALIDATION_BYTES`` (its size when listed decides nothing: it
    may have grown), past that feed it to the format's stream checker.

    Raises OSError (FileNotFoundError if it vanished), ScanStopped on ``stop``.
    """
    fd, _ = open_regular(path)
    digest = hashlib.sha256() if want_hash else None
    size = 0
    parts: list[bytes] | None = []
    stream: StreamChecker | None = None
    try:
        for chunk in iter_chunks(fd):
            if stop is not None and stop():
                raise ScanStopped(f"stop requested while reading {Path(path).name}")
            size += len(chunk)
            if digest is not None:
                digest.update(chunk)
            if parts is None:
                assert stream is not None
                stream.feed(chunk)
                continue
            parts.append(chunk)
            if size > STREAM_VALIDATION_BYTES:
                stream = file_format.stream_checker(interval, path, want_candles=want_candles)
                for part in parts:
                    stream.feed(part)
                parts = None
    finally:
        os.close(fd)
    data = b"".join(parts) if parts is not None else None
    hexdigest = digest.hexdigest() if digest is not None else None
    return _Read(Path(path), interval, file_format, data, stream, hexdigest, size)


def validate_file(path: Path, interval: str) -> FileValidation:
    """One file's verdict (streamed); an unreadable file is invalid, not an exception."""
    try:
        return check_regular_file(Path(path), interval).validation
    except OSError as exc:
        return cannot_read(Path(path), exc)


def _format_of(path: Path) -> FileFormat:
    file_format = format_for_name(Path(path).name)
    if file_format is None:
        raise OSError(f"{Path(path).name} is not an export file of a known format")
    return file_format


def writer_gone(temp_name: str) -> bool:
    """True if the process that wrote this temp file (its PID is in the name) no longer exists."""
    match = TEMP_NAME_PATTERN.fullmatch(temp_name)
    if match is None:
        return False
    pid = int(match["pid"])
    return pid != os.getpid() and not pid_alive(pid)


# --- the scan ---------------------------------------------------------------


def scan_folder(
    export_dir: Path,
    *,
    symbols: Collection[str] | None = None,
    logger: logging.Logger,
    known: Mapping[Path, FileValidation] | None = None,
    stop: threading.Event | None = None,
    series: tuple[str, str] | None = None,
    names: FolderNames | None = None,
    judged: Mapping[Path, FileValidation] | None = None,
) -> FolderScan:
    """One directory pass and one read per file (optionally only some symbols,
    and with ``series`` = (market, interval) only those symbols' files of that series;
    ``names``: a listing of the folder to take those symbols' names from, see ``crypto_data_export.store.listing``;
    ``judged``: verdicts the caller read moments ago, used as they are, not ``fresh``).

    ``known`` gives the verdicts of files the caller has just written (and
    judged byte for byte as it wrote them): they are not read back (only
    hashed, streamed, if their size collides), and they are ``fresh``.
    """
    wanted = None if symbols is None else frozenset(symbols)
    market, interval = series if series is not None else (SPOT, None)
    prefixes = (
        None
        if wanted is None
        else tuple(
            p
            for s in wanted
            for p in (export_name_prefix(s, interval, market), "." + export_name_prefix(s, interval, market))
        )
    )
    result = FolderScan()
    for entry in _entries(export_dir, prefixes, names):
        _classify(entry, wanted, result)
    result.files.sort(key=lambda f: (f.created, f.name))
    known = {Path(p): v for p, v in (known or {}).items()}
    result.fresh = set(known)
    _read_all(result, logger, {**{Path(p): v for p, v in (judged or {}).items()}, **known}, StopCheck(stop))
    return result


def scan_duplicates(
    export_dir: Path, *, logger: logging.Logger | None = None, stop: threading.Event | None = None
) -> FolderScan:
    """Only what a duplicate report needs: one listing, sizes, and a streamed
    SHA-256 of the files whose size collides; nothing is parsed or validated
    (the result has no verdicts)."""
    result = FolderScan()
    for entry in _entries(export_dir, None):
        _classify(entry, None, result)
    result.files.sort(key=lambda f: (f.created, f.name))
    present: list[ExportFile] = []
    colliding = {f.path for f in _size_colliding(result.files)}
    should_stop = StopCheck(stop)
    for f in result.files:
        if f.path not in colliding:
            present.append(f)
            continue
        if should_stop():
            result.stopped = True
            result.unreadable.add(f.path)
            present.append(f)
            continue
        try:
            result.hashes[f.path] = hash_regular_file(f.path)
        except FileNotFoundError:
            continue  # gone since the listing
        except OSError as exc:
            result.unreadable.add(f.path)
            if logger is not None:
                logger.warning("cannot read %s: %s", f.name, exc.strerror or exc)
        present.append(f)
    result.files = present
    return result


def _entries(export_dir: Path, prefixes: tuple[str, ...] | None, names: FolderNames | None = None) -> list[FolderEntry]:
    """The folder's entries; with ``prefixes`` only names starting with one of them (taken
    from ``names``, a pass's listing, if given)."""
    if prefixes is not None:
        return folder_entries(export_dir, prefixes, names)
    try:
        with os.scandir(export_dir) as it:
            return list(it)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StorageError(f"cannot list {export_dir}: {exc.strerror or exc}") from exc


def _classify(entry: FolderEntry, wanted: frozenset[str] | None, result: FolderScan) -> None:
    """Keep only regular files (never a symlink) with one of our two name shapes."""
    try:
        if not entry.is_file(follow_symlinks=False):
            return
        parsed = parse_export_name(entry.name)
        if parsed is not None:
            if wanted is None or parsed[0] in wanted:
                size = entry.stat(follow_symlinks=False).st_size
                symbol, interval, created, market = parsed
                result.files.append(ExportFile(Path(entry.path), symbol, interval, created, size, market))
            return
        match = our_temp_name(entry.name)
        if match is not None and _temp_wanted(match["final"], wanted):
            info = entry.stat(follow_symlinks=False)
            result.temp_files.append(TempFile(Path(entry.path), info.st_size, info.st_mtime))
    except OSError:
        return  # vanished or unstat-able since the listing: not a candidate


def _temp_wanted(final_name: str, wanted: frozenset[str] | None) -> bool:
    if wanted is None:
        return True
    parsed = parse_export_name(final_name)
    return parsed is not None and parsed[0] in wanted


def _read_all(
    result: FolderScan,
    logger: logging.Logger,
    known: Mapping[Path, FileValidation],
    stop: ShouldStop,
) -> None:
    """Read each file once; validate small ones in batches (one parse for many),
    large ones as they stream; files just written (``known``) are not read back.
    On ``stop`` the files not yet read are marked not checked."""
    colliding = {f.path for f in _size_colliding(result.files)}
    present: list[ExportFile] = []
    batch: list[_ValidationInput] = []
    batch_bytes = 0
    for f in result.files:
        if result.stopped or stop():
            _not_reached(f, result)
            present.append(f)
            continue
        want_hash = f.path in colliding
        if f.path in known:
            if _known(f, known[f.path], want_hash, result, logger):
                present.append(f)
            continue
        read = _read_one(f, want_hash, result, logger, stop)
        if read is None:
            continue
        f, data = read
        present.append(f)
        if data is None:
            continue
        batch.append((data, f.interval, f.path))
        batch_bytes += len(data)
        if batch_bytes >= VALIDATION_BATCH_BYTES:
            _validate_batch(batch, result)
            batch, batch_bytes = [], 0
    _validate_batch(batch, result)
    result.files = present


def _not_reached(f: ExportFile, result: FolderScan) -> None:
    result.stopped = True
    result.unreadable.add(f.path)
    result.validations[f.path] = not_checked(f.path)


def _known(f: ExportFile, verdict: FileValidation, want_hash: bool, result: FolderScan, logger: logging.Logger) -> bool:
    """Record a file just written (and judged as written) with its verdict; False if it vanished."""
    if want_hash:
        try:
            result.hashes[f.path] = hash_regular_file(f.path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            _unreadable(f, exc, result, logger)
            return True
    result.validations[f.path] = replace(verdict, path=f.path)
    return True


def _unreadable(f: ExportFile, exc: OSError, result: FolderScan, logger: logging.Logger) -> None:
    result.unreadable.add(f.path)
    result.validations[f.path] = cannot_read(f.path, exc)
    logger.warning("cannot read %s: %s", f.name, exc.strerror or exc)


def _read_one(
    f: ExportFile, want_hash: bool, result: FolderScan, logger: logging.Logger, stop: ShouldStop
) -> tuple[ExportFile, bytes | None] | None:
    """(file, bytes to validate in a batch): bytes None if unreadable, stopped, or
    already judged as it streamed (a large file); None if it vanished since the listing."""
    try:
        read = read_once(f.path, f.interval, _format_of(f.path), want_hash=want_hash, stop=stop)
    except FileNotFoundError:
        return None
    except ScanStopped:
        _not_reached(f, result)
        return f, None
    except OSError as exc:
        _unreadable(f, exc, result, logger)
        return f, None
    if read.digest is not None:
        result.hashes[f.path] = read.digest
    if read.size != f.size:  # changed since the listing: trust what was read
        f = ExportFile(f.path, f.symbol, f.interval, f.created, read.size, f.market)
    if read.data is None:
        result.validations[f.path] = read.verdict()[0]
    return f, read.data


def _validate_batch(batch: list[_ValidationInput], result: FolderScan) -> None:
    """Each format judges its own files (CSV shares one parse between many)."""
    by_format: dict[str, tuple[FileFormat, list[_ValidationInput]]] = {}
    for item in batch:
        file_format = _format_of(item[2])
        by_format.setdefault(file_format.name, (file_format, []))[1].append(item)
    for file_format, items in by_format.values():
        for validation in file_format.validate_many(items):
            result.validations[validation.path] = validation
