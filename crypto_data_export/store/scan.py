"""One pass over the export folder: what is there, whether it is valid, what is identical.

Only regular files directly in the folder with our names (exports, ``our_temp_name``)
are listed; symlinks are never followed, subfolders never entered. Each file is read
once: its verdict, and its SHA-256 if its size collides with another's. A file is held
whole only under ``STREAM_VALIDATION_BYTES``; past that its format's ``stream_checker``
judges it as it streams (a layout that checker cannot judge is junk), so memory stays
bounded. A scan of some symbols looks only at their names' prefixes. Once ``stop`` has
been set for ``STOP_GRACE_SECONDS`` (a normal folder finishes, so the status written on
the way out is whole), files not yet read get a "not checked" verdict (never trusted,
moved or removed) and the scan returns.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from crypto_data_export.core.atomic_io import TEMP_NAME_PATTERN
from crypto_data_export.core.errors import ExportError
from crypto_data_export.core.processes import pid_alive
from crypto_data_export.core.reading import hash_regular_file, iter_chunks, open_regular
from crypto_data_export.settings.market_names import SPOT
from crypto_data_export.store.exports import ExportFile, newest_first
from crypto_data_export.store.formats import FileFormat, format_for_name
from crypto_data_export.store.formats.base import StreamChecker
from crypto_data_export.store.layout import export_name_prefix, our_temp_name, parse_export_name
from crypto_data_export.store.listing import FolderEntry, FolderNames, folder_entries
from crypto_data_export.store.validation import FileValidation, cannot_read, not_checked

if TYPE_CHECKING:  # a type only: --status and --health must not import pandas for it
    import pandas as pd

logger = logging.getLogger(__name__)

# Small files are validated together; this bounds the bytes held in memory at once.
VALIDATION_BATCH_BYTES = 16 << 20
# A file is held whole only up to this size; beyond it, it is validated chunk by chunk as it streams.
STREAM_VALIDATION_BYTES = 8 << 20


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
# (bytes, interval, path): what FileFormat.validate_many takes.
_ValidationInput = tuple[bytes, str, Path]


@dataclass(frozen=True)
class TempFile:
    """A leftover of ``atomic_io`` (possibly of a writer still running)."""

    path: Path
    mtime: float


@dataclass
class FolderScan:
    """Our files, their verdicts, hashes where sizes collide, and temp leftovers. ``unreadable``
    files (and files a stopped scan did not reach) are never quarantined or removed; ``fresh``
    ones were just written by this process and win ties in the content order."""

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
        return newest_first(files, self.validations, self.fresh)

    def duplicate_groups(self, among: Iterable[ExportFile] | None = None) -> list[list[ExportFile]]:
        """Groups of identical files, newest (by content) first in each, by their newest's name."""
        by_hash: dict[str, list[ExportFile]] = defaultdict(list)
        for f in self.files if among is None else among:
            if f.path in self.hashes:
                by_hash[self.hashes[f.path]].append(f)
        return sorted(
            (self.newest_first(group) for group in by_hash.values() if len(group) > 1), key=lambda g: g[0].name
        )

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
        return replace(
            self,
            files=[f for f in self.files if f.path not in gone],
            validations={p: v for p, v in self.validations.items() if p not in gone},
            hashes={p: h for p, h in self.hashes.items() if p not in gone},
            temp_files=[t for t in self.temp_files if t.path not in gone],
            unreadable=self.unreadable - gone,
            fresh=self.fresh - gone,
        )

    def hash_size_collisions(self) -> None:
        """Hash any readable file whose size collides and has no hash yet (its size changed
        after the listing), so duplicate groups never miss one."""
        for f in _size_colliding(self.files):
            if f.path not in self.hashes and f.path not in self.unreadable:
                try:
                    self.hashes[f.path] = hash_regular_file(f.path)
                except FileNotFoundError:
                    pass  # gone since the listing
                except OSError as exc:
                    logger.warning("cannot read %s: %s", f.name, exc.strerror or exc)


def _size_colliding(files: Iterable[ExportFile]) -> list[ExportFile]:
    files = list(files)
    sizes = Counter(f.size for f in files)
    return [f for f in files if sizes[f.size] > 1]


@dataclass
class FileCheck:
    """One file read once: its verdict, candle frame (if asked and valid), hash (if asked), bytes read."""

    validation: FileValidation
    candles: pd.DataFrame | None
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
    """Validate (and hash) one file in one read by the format its name says (``read_once``)."""
    read = read_once(path, interval, _format_of(path), want_hash=want_hash, want_candles=want_candles, stop=stop)
    return FileCheck(*read.verdict(want_candles), read.digest, read.size)


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

    def verdict(self, want_candles: bool = False) -> tuple[FileValidation, pd.DataFrame | None]:
        if self.data is not None:
            return self.file_format.check_bytes(self.data, self.interval, self.path, want_candles=want_candles)
        assert self.stream is not None
        finished = self.stream.finish()
        if finished is not None:
            return finished
        # Only the whole-file parser could judge this layout, and the file is too large to
        # hold: it is none of ours (we never write such a layout), so it is junk.
        why = self.stream.undecided_because or "a layout only a whole-file parse can judge"
        reason = f"not an export this program writes: {why}, in {self.size} bytes (too large to judge whole)"
        return FileValidation(self.path, False, reason), None


def read_once(
    path: Path,
    interval: str,
    file_format: FileFormat,
    *,
    want_hash: bool = False,
    want_candles: bool = False,
    stop: ShouldStop | None = None,
) -> _Read:
    """Read a file once, hashing as it goes; hold it whole only while it stays under
    ``STREAM_VALIDATION_BYTES`` (it may have grown since listed), past that stream it to the
    format's checker. Raises OSError (FileNotFoundError if it vanished), ScanStopped on ``stop``.
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
    """One directory pass and one read per file (only ``symbols``' files if given, of ``series``
    = (market, interval) if given, their names from ``names`` if given). ``known``: verdicts
    of files just written (not read back, only hashed if their size collides; ``fresh``);
    ``judged``: verdicts read moments ago, used as they are."""
    wanted = None if symbols is None else frozenset(symbols)
    market, interval = series if series is not None else (SPOT, None)
    # Each symbol's names, and its temp files' (".{name}...").
    mine = [export_name_prefix(symbol, interval, market) for symbol in wanted or ()]
    prefixes = tuple(mine + ["." + p for p in mine]) if wanted is not None else ("",)
    result = _listed(export_dir, wanted, prefixes, names)
    known = {Path(p): v for p, v in (known or {}).items()}
    result.fresh = set(known)
    _read_all(result, {**{Path(p): v for p, v in (judged or {}).items()}, **known}, StopCheck(stop))
    return result


def scan_duplicates(export_dir: Path, *, stop: threading.Event | None = None) -> FolderScan:
    """What a duplicate report needs: one listing and the SHA-256 of files whose size collides
    (no verdicts)."""
    result = _listed(export_dir, None, ("",), None)
    gone: set[Path] = set()
    should_stop = StopCheck(stop)
    for f in _size_colliding(result.files):
        if should_stop():
            result.stopped = True
            result.unreadable.add(f.path)
            continue
        try:
            result.hashes[f.path] = hash_regular_file(f.path)
        except FileNotFoundError:
            gone.add(f.path)  # since the listing
        except OSError as exc:
            result.unreadable.add(f.path)
            logger.warning("cannot read %s: %s", f.name, exc.strerror or exc)
    result.files = [f for f in result.files if f.path not in gone]
    return result


def scan_exports(
    folder: Path,
    *,
    symbol: str | None = None,
    interval: str | None = None,
    market: str | None = None,
    names: FolderNames | None = None,
) -> list[ExportFile]:
    """Our export files in ``folder`` (never a symlink), oldest first; with ``symbol`` (and
    ``interval`` of ``market``) only that series' names are looked at, from ``names`` if given."""
    prefix = export_name_prefix(symbol, interval, market or SPOT) if symbol is not None else ""
    files = _listed(Path(folder), None, (prefix,), names if prefix else None).files
    return [f for f in files if market is None or f.market == market]


def _listed(
    export_dir: Path, wanted: frozenset[str] | None, prefixes: tuple[str, ...], names: FolderNames | None
) -> FolderScan:
    """Our files and temp files whose names start with one of ``prefixes``, oldest first."""
    result = FolderScan()
    for entry in folder_entries(export_dir, prefixes, names):
        _classify(entry, wanted, result)
    result.files.sort(key=lambda f: (f.created, f.name))
    return result


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
        final = parse_export_name(match["final"]) if match is not None else None
        if match is not None and (wanted is None or (final is not None and final.symbol in wanted)):
            result.temp_files.append(TempFile(Path(entry.path), entry.stat(follow_symlinks=False).st_mtime))
    except OSError:
        return  # vanished or unstat-able since the listing: not a candidate


def _read_all(result: FolderScan, known: Mapping[Path, FileValidation], stop: ShouldStop) -> None:
    """Read each file once; validate small ones in batches, large ones as they stream; ``known``
    files are not read back; on ``stop`` the files not yet read are marked not checked."""
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
            if _known(f, known[f.path], want_hash, result):
                present.append(f)
            continue
        read = _read_one(f, want_hash, result, stop)
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


def _read_one(
    f: ExportFile, want_hash: bool, result: FolderScan, stop: ShouldStop
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
        _unreadable(f, exc, result)
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
