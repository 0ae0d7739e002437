"""One pass over the export folder: what is there, whether it is valid, what is identical.

Only regular files directly in the folder whose names match
``EXPORT_NAME_PATTERN`` (or ``TEMP_NAME_PATTERN`` for crash leftovers) are
listed; symlinks are never followed, subfolders never entered. Each listed
file is read once: validation, and SHA-256 only for files whose size
collides with another's, come from that single read.
"""
from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from atomic_io import TEMP_NAME_PATTERN
from csv_validation import FileValidation, validate_many
from errors import StorageError
from export_files import ExportFile, parse_export_name

HASH_CHUNK_BYTES = 1 << 20
# Small files are validated together; this bounds the bytes held in memory at once.
VALIDATION_BATCH_BYTES = 16 << 20

# (bytes, interval, path): what csv_validation.validate_many takes.
_ValidationInput = tuple[bytes, str, Path]


def newest_first(files: Iterable[ExportFile]) -> list[ExportFile]:
    return sorted(files, key=lambda f: (f.created, f.name), reverse=True)


def cannot_read(path: Path, exc: OSError) -> FileValidation:
    """The verdict for a file that could not be read: invalid, with the OS's reason."""
    return FileValidation(path, False, f"cannot read: {exc.strerror or exc}")


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
        return [
            f for f in self.files
            if not self.validations[f.path].valid and f.path not in self.unreadable
        ]

    def duplicate_groups(self, among: Iterable[ExportFile] | None = None) -> list[list[ExportFile]]:
        """Groups of identical files, newest first in each group."""
        by_hash: dict[str, list[ExportFile]] = defaultdict(list)
        for f in self.files if among is None else among:
            digest = self.hashes.get(f.path)
            if digest is not None:
                by_hash[digest].append(f)
        groups = [newest_first(group) for group in by_hash.values() if len(group) > 1]
        return sorted(groups, key=lambda g: g[0].name)


# --- reading without trusting the name ------------------------------------

def read_regular_file(path: Path, *, want_hash: bool = False) -> tuple[bytes, str | None]:
    """Read a file in 1 MiB chunks, hashing as it streams when asked.

    ``O_NOFOLLOW`` refuses a symlink swapped in after the scan, ``O_NONBLOCK``
    keeps a FIFO from hanging the job, and ``fstat`` refuses anything but a
    regular file, so one read serves validation and hashing safely.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path.name} is not a regular file")
        digest = hashlib.sha256() if want_hash else None
        parts: list[bytes] = []
        while chunk := os.read(fd, HASH_CHUNK_BYTES):
            parts.append(chunk)
            if digest is not None:
                digest.update(chunk)
    finally:
        os.close(fd)
    return b"".join(parts), digest.hexdigest() if digest is not None else None


def writer_gone(temp_name: str) -> bool:
    """True if the process that wrote this temp file no longer exists."""
    match = TEMP_NAME_PATTERN.fullmatch(temp_name)
    if match is None:
        return False
    pid = int(match["pid"])
    if pid == os.getpid():
        return False
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)  # signal 0: existence check only, nothing is delivered
    except (ProcessLookupError, OverflowError):  # OverflowError: beyond any possible PID
        return True
    except PermissionError:  # it exists, owned by someone else
        return False
    return False


# --- the scan ---------------------------------------------------------------

def scan_folder(
    export_dir: Path, *, symbols: Collection[str] | None = None, logger: logging.Logger
) -> FolderScan:
    """One directory pass and one read per file (optionally only some symbols)."""
    wanted = None if symbols is None else frozenset(symbols)
    result = FolderScan()
    for entry in _entries(export_dir):
        _classify(entry, wanted, result)
    result.files.sort(key=lambda f: (f.created, f.name))
    _read_all(result, logger)
    return result


def _entries(export_dir: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(export_dir) as it:
            return list(it)
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


def _read_all(result: FolderScan, logger: logging.Logger) -> None:
    """Read each file once; validate in batches (one parse for many small files)."""
    sizes: dict[int, int] = defaultdict(int)
    for f in result.files:
        sizes[f.size] += 1
    present: list[ExportFile] = []
    batch: list[_ValidationInput] = []
    batch_bytes = 0
    for f in result.files:
        read = _read_one(f, sizes[f.size] > 1, result, logger)
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


def _read_one(
    f: ExportFile, want_hash: bool, result: FolderScan, logger: logging.Logger
) -> tuple[ExportFile, bytes | None] | None:
    """(file, bytes) — bytes None if unreadable; None if it vanished since the listing."""
    try:
        data, digest = read_regular_file(f.path, want_hash=want_hash)
    except FileNotFoundError:
        return None
    except OSError as exc:
        result.unreadable.add(f.path)
        result.validations[f.path] = cannot_read(f.path, exc)
        logger.warning("cannot read %s: %s", f.name, exc.strerror or exc)
        return f, None
    if digest is not None:
        result.hashes[f.path] = digest
    if len(data) != f.size:  # changed since the listing: trust what was read
        f = ExportFile(f.path, f.symbol, f.interval, f.created, len(data))
    return f, data


def _validate_batch(batch: list[_ValidationInput], result: FolderScan) -> None:
    for validation in validate_many(batch):
        result.validations[validation.path] = validation
