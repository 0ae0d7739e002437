"""One pass over the export folder: what is there, whether it is valid, what is identical.

Only regular files directly in the folder whose names match
``EXPORT_NAME_PATTERN`` (or ``TEMP_NAME_PATTERN`` for crash leftovers) are
listed; symlinks are never followed, subfolders never entered. Each listed
file is read once: validation, and SHA-256 only for files whose size
collides with another's, come from that single read. Large files are
validated as they stream (their format's ``stream_checker``), never held whole.
A scan limited to some symbols looks only at names starting with their
prefix, so its cost follows their files, not the folder's.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from common.atomic_io import TEMP_NAME_PATTERN
from common.errors import StorageError
from common.processes import pid_alive
from common.reading import hash_regular_file, iter_chunks, open_regular, read_regular_file
from store.exports import ExportFile, newest_first
from store.formats import FileFormat, format_for_name
from store.formats.base import StreamChecker
from store.layout import export_name_prefix, parse_export_name
from store.validation import FileValidation, cannot_read

# Small files are validated together; this bounds the bytes held in memory at once.
VALIDATION_BATCH_BYTES = 16 << 20
# Files larger than this are validated chunk by chunk as they stream, never held whole.
STREAM_VALIDATION_BYTES = 8 << 20

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
    """One pass over the folder: our files (oldest first), their verdicts,
    hashes where sizes collide, and temp leftovers."""

    files: list[ExportFile] = field(default_factory=list)
    validations: dict[Path, FileValidation] = field(default_factory=dict)
    hashes: dict[Path, str] = field(default_factory=dict)
    temp_files: list[TempFile] = field(default_factory=list)
    unreadable: set[Path] = field(default_factory=set)

    def valid_files(self) -> list[ExportFile]:
        return [f for f in self.files if self.validations[f.path].valid]

    def invalid_files(self) -> list[ExportFile]:
        """Readable files that break a rule (unreadable ones are not judged)."""
        return [f for f in self.files if not self.validations[f.path].valid and f.path not in self.unreadable]

    def duplicate_groups(self, among: Iterable[ExportFile] | None = None) -> list[list[ExportFile]]:
        """Groups of identical files, newest first in each group."""
        return identical_groups(self.files if among is None else among, self.hashes)

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


def identical_groups(files: Iterable[ExportFile], hashes: dict[Path, str]) -> list[list[ExportFile]]:
    """Groups of files with the same hash, newest first in each, groups by their newest's name."""
    by_hash: dict[str, list[ExportFile]] = defaultdict(list)
    for f in files:
        digest = hashes.get(f.path)
        if digest is not None:
            by_hash[digest].append(f)
    groups = [newest_first(group) for group in by_hash.values() if len(group) > 1]
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
    candles: pd.DataFrame | None
    digest: str | None
    size: int


def check_regular_file(path: Path, interval: str, *, want_hash: bool = False, want_candles: bool = False) -> FileCheck:
    """Validate (and hash) one file in one read, by the format its name says; a
    large file streams through the format's checker so neither its bytes nor
    its text are ever held whole.

    Raises OSError (FileNotFoundError if it vanished) like ``read_regular_file``.
    """
    file_format = _format_of(path)
    fd, size = open_regular(path)
    digest = hashlib.sha256() if want_hash else None
    read = 0
    data: bytes | None = None
    stream: StreamChecker | None = None
    try:
        if size > STREAM_VALIDATION_BYTES:
            stream = file_format.stream_checker(interval, path, want_candles=want_candles)
        parts: list[bytes] = []
        for chunk in iter_chunks(fd):
            read += len(chunk)
            if digest is not None:
                digest.update(chunk)
            if stream is not None:
                stream.feed(chunk)
            else:
                parts.append(chunk)
        if stream is None:
            data = b"".join(parts)
        del parts
    finally:
        os.close(fd)
    hexdigest = digest.hexdigest() if digest is not None else None
    verdict = stream.finish() if stream is not None else None
    if verdict is None:
        if data is None:  # a layout only the whole-file parser judges (CSV: quotes, CR, blank lines): not ours
            data, _ = read_regular_file(path)
        verdict = file_format.check_bytes(data, interval, path, want_candles=want_candles)
    return FileCheck(verdict[0], verdict[1], hexdigest, read)


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
    """True if the process that wrote this temp file no longer exists."""
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
    known_valid: Collection[Path] = (),
) -> FolderScan:
    """One directory pass and one read per file (optionally only some symbols).

    ``known_valid`` names files the caller has just written from checked
    candles: they are not read back (only hashed, streamed, if their size
    collides); their verdict is valid, without row details.
    """
    wanted = None if symbols is None else frozenset(symbols)
    prefixes = (
        None
        if wanted is None
        else tuple(p for s in wanted for p in (export_name_prefix(s), "." + export_name_prefix(s)))
    )
    result = FolderScan()
    for entry in _entries(export_dir, prefixes):
        _classify(entry, wanted, result)
    result.files.sort(key=lambda f: (f.created, f.name))
    _read_all(result, logger, frozenset(Path(p) for p in known_valid))
    return result


def scan_duplicates(export_dir: Path, *, logger: logging.Logger | None = None) -> FolderScan:
    """Only what a duplicate report needs: one listing, sizes, and a streamed
    SHA-256 of the files whose size collides; nothing is parsed or validated
    (the result has no verdicts)."""
    result = FolderScan()
    for entry in _entries(export_dir, None):
        _classify(entry, None, result)
    result.files.sort(key=lambda f: (f.created, f.name))
    present: list[ExportFile] = []
    colliding = {f.path for f in _size_colliding(result.files)}
    for f in result.files:
        if f.path not in colliding:
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


def _entries(export_dir: Path, prefixes: tuple[str, ...] | None) -> list[os.DirEntry[str]]:
    """The folder's entries; with ``prefixes`` only names starting with one of them."""
    try:
        with os.scandir(export_dir) as it:
            if prefixes is None:
                return list(it)
            return [e for e in it if e.name.startswith(prefixes)]
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StorageError(f"cannot list {export_dir}: {exc.strerror or exc}") from exc


def _classify(entry: os.DirEntry[str], wanted: frozenset[str] | None, result: FolderScan) -> None:
    """Keep only regular files (never a symlink) with one of our two name shapes."""
    try:
        if not entry.is_file(follow_symlinks=False):
            return
        parsed = parse_export_name(entry.name)
        if parsed is not None:
            if wanted is None or parsed[0] in wanted:
                size = entry.stat(follow_symlinks=False).st_size
                result.files.append(ExportFile(Path(entry.path), *parsed, size))
            return
        match = TEMP_NAME_PATTERN.fullmatch(entry.name)
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


def _read_all(result: FolderScan, logger: logging.Logger, known_valid: frozenset[Path] = frozenset()) -> None:
    """Read each file once; validate small ones in batches (one parse for many),
    large ones as they stream; files just written from checked data are not read back."""
    colliding = {f.path for f in _size_colliding(result.files)}
    present: list[ExportFile] = []
    batch: list[_ValidationInput] = []
    batch_bytes = 0
    for f in result.files:
        want_hash = f.path in colliding
        if f.path in known_valid:
            if _known_valid(f, want_hash, result, logger):
                present.append(f)
            continue
        if f.size > STREAM_VALIDATION_BYTES:
            checked = _check_one(f, want_hash, result, logger)
            if checked is not None:
                present.append(checked)
            continue
        read = _read_one(f, want_hash, result, logger)
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


def _known_valid(f: ExportFile, want_hash: bool, result: FolderScan, logger: logging.Logger) -> bool:
    """Record a file just written from checked data as valid; False if it vanished."""
    if want_hash:
        try:
            result.hashes[f.path] = hash_regular_file(f.path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            _unreadable(f, exc, result, logger)
            return True
    result.validations[f.path] = FileValidation(f.path, True, None)
    return True


def _unreadable(f: ExportFile, exc: OSError, result: FolderScan, logger: logging.Logger) -> None:
    result.unreadable.add(f.path)
    result.validations[f.path] = cannot_read(f.path, exc)
    logger.warning("cannot read %s: %s", f.name, exc.strerror or exc)


def _check_one(f: ExportFile, want_hash: bool, result: FolderScan, logger: logging.Logger) -> ExportFile | None:
    """A large file: validated (and hashed) as it streams; None if it vanished."""
    try:
        checked = check_regular_file(f.path, f.interval, want_hash=want_hash)
    except FileNotFoundError:
        return None
    except OSError as exc:
        _unreadable(f, exc, result, logger)
        return f
    if checked.digest is not None:
        result.hashes[f.path] = checked.digest
    result.validations[f.path] = checked.validation
    if checked.size != f.size:  # changed since the listing: trust what was read
        f = ExportFile(f.path, f.symbol, f.interval, f.created, checked.size)
    return f


def _read_one(
    f: ExportFile, want_hash: bool, result: FolderScan, logger: logging.Logger
) -> tuple[ExportFile, bytes | None] | None:
    """(file, bytes) — bytes None if unreadable; None if it vanished since the listing."""
    try:
        data, digest = read_regular_file(f.path, want_hash=want_hash)
    except FileNotFoundError:
        return None
    except OSError as exc:
        _unreadable(f, exc, result, logger)
        return f, None
    if digest is not None:
        result.hashes[f.path] = digest
    if len(data) != f.size:  # changed since the listing: trust what was read
        f = ExportFile(f.path, f.symbol, f.interval, f.created, len(data))
    return f, data


def _validate_batch(batch: list[_ValidationInput], result: FolderScan) -> None:
    """Each format judges its own files (CSV shares one parse between many)."""
    by_format: dict[str, tuple[FileFormat, list[_ValidationInput]]] = {}
    for item in batch:
        file_format = _format_of(item[2])
        by_format.setdefault(file_format.name, (file_format, []))[1].append(item)
    for file_format, items in by_format.values():
        for validation in file_format.validate_many(items):
            result.validations[validation.path] = validation
