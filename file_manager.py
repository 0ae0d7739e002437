"""FileManager: the only code that removes or moves files in the export folder.

It runs unattended and deletes files, so it is built to be impossible to turn
against the data it protects:

* only regular files directly in the folder whose names match
  ``EXPORT_NAME_PATTERN`` (or ``TEMP_NAME_PATTERN`` for crash leftovers) are
  ever candidates; symlinks are never followed, subfolders never entered;
* the newest valid file of a configured symbol is never removed, however old
  (the symbol is reported as stale instead: an exchange outage must not
  empty the folder);
* a corrupt file is moved to ``quarantine/``, never deleted, so a bug in
  validation costs disk space, not data;
* every unlink re-checks with ``lstat`` that the name is still a regular file;
* ``dry_run`` computes the same plan and changes nothing on disk.

A full pass reads each file once (``scan``): validation, and SHA-256 only for
files whose size collides with another's, come from that single read.
"""
from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from atomic_io import TEMP_NAME_PATTERN
from config.intervals import is_valid_interval
from csv_validation import FileValidation, check_bytes, validate_many
from errors import StorageError
from export_files import (
    EXPORT_NAME_PATTERN,
    ExportFile,
    export_file_name,
    iter_symbol_exports,
    parse_export_name,
    scan_exports,
    write_candles,
)

QUARANTINE_DIR_NAME = "quarantine"
TEMP_MAX_AGE = timedelta(hours=1)
HASH_CHUNK_BYTES = 1 << 20
# Small files are validated together; this bounds the bytes held in memory at once.
VALIDATION_BATCH_BYTES = 16 << 20
_MB = 1024 * 1024


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _as_utc(moment: datetime) -> datetime:
    """Naive datetimes are taken as UTC: the names on disk are UTC."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def _newest_first(files: Iterable[ExportFile]) -> list[ExportFile]:
    return sorted(files, key=lambda f: (f.created, f.name), reverse=True)


def _writer_gone(temp_name: str) -> bool:
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


def _human_bytes(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    scaled = float(size)
    for unit in ("KB", "MB"):
        scaled /= 1024
        if scaled < 1024:
            return f"{scaled:.1f} {unit}"
    return f"{scaled / 1024:.1f} GB"


# --- results --------------------------------------------------------------

@dataclass
class CleanupResult:
    """What a cleanup removed (or, in a dry run, would remove) and why it kept the rest.

    ``removed`` lists every deleted file (retention, duplicates and temp
    leftovers); ``temp_removed`` and ``duplicates_removed`` say which of them
    were which; ``bytes_freed`` counts them all.
    """

    removed: list[Path] = field(default_factory=list)
    bytes_freed: int = 0
    kept: list[Path] = field(default_factory=list)
    stale_symbols: list[str] = field(default_factory=list)
    quarantined: list[tuple[Path, str]] = field(default_factory=list)
    temp_removed: list[Path] = field(default_factory=list)
    duplicates_removed: list[Path] = field(default_factory=list)
    dry_run: bool = False
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the log and the CLI."""
        verb = "would remove" if self.dry_run else "removed"
        text = (
            f"{'dry run: ' if self.dry_run else ''}{verb} {len(self.removed)} file(s) "
            f"({_human_bytes(self.bytes_freed)}; {len(self.temp_removed)} temp, "
            f"{len(self.duplicates_removed)} duplicate), quarantined {len(self.quarantined)}, "
            f"kept {len(self.kept)}"
        )
        if self.stale_symbols:
            text += f"; stale: {', '.join(self.stale_symbols)}"
        if self.errors:
            text += f"; {len(self.errors)} error(s)"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "removed": [str(p) for p in self.removed],
            "bytes_freed": self.bytes_freed,
            "kept": [str(p) for p in self.kept],
            "stale_symbols": list(self.stale_symbols),
            "quarantined": [{"path": str(p), "reason": r} for p, r in self.quarantined],
            "temp_removed": [str(p) for p in self.temp_removed],
            "duplicates_removed": [str(p) for p in self.duplicates_removed],
            "errors": list(self.errors),
            "summary": self.summary(),
        }


@dataclass
class DuplicateReport:
    """Files with identical content; ``wasted_bytes`` is what keeping only the newest would free."""

    groups: list[list[Path]] = field(default_factory=list)
    wasted_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "group_count": len(self.groups),
            "groups": [[str(p) for p in group] for group in self.groups],
            "wasted_bytes": self.wasted_bytes,
        }


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
        groups = [_newest_first(group) for group in by_hash.values() if len(group) > 1]
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


# --- the manager ----------------------------------------------------------

class FileManager:
    """Owns the export folder: writes, validation, quarantine, retention, duplicates."""

    def __init__(
        self,
        export_dir: Path,
        interval: str,
        symbols: Sequence[str],
        max_files_per_symbol: int = 1,
        data_retention_days: float = 7,
        logger: logging.Logger | None = None,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        if not is_valid_interval(interval):
            raise ValueError(f"unknown interval {interval!r}")
        if max_files_per_symbol < 1:
            raise ValueError("max_files_per_symbol must be at least 1")
        if not data_retention_days > 0:
            raise ValueError("data_retention_days must be positive")
        # Absolute once, so a later chdir cannot point the manager elsewhere.
        self.export_dir = Path(os.path.abspath(export_dir))
        self.interval = interval
        self.symbols: tuple[str, ...] = tuple(symbols)
        self.max_files_per_symbol = int(max_files_per_symbol)
        self.data_retention_days = float(data_retention_days)
        self.logger = logger or logging.getLogger("file_manager")
        self._now = now
        self._configured = frozenset(self.symbols)

    @property
    def quarantine_dir(self) -> Path:
        return self.export_dir / QUARANTINE_DIR_NAME

    def now(self) -> datetime:
        return _as_utc(self._now())

    # --- folder and writing ---------------------------------------------

    def ensure_folder(self) -> None:
        """Create the folder up front so a bad path fails with one clear line."""
        try:
            self.export_dir.mkdir(parents=True, exist_ok=True)
        except FileExistsError as exc:
            raise StorageError(f"cannot create export folder {self.export_dir}: a file is in the way") from exc
        except OSError as exc:
            raise StorageError(
                f"cannot create export folder {self.export_dir}: {exc.strerror or exc}; check the path and permissions"
            ) from exc
        if not os.access(self.export_dir, os.W_OK | os.X_OK):
            raise StorageError(f"export folder {self.export_dir} is not writable; check permissions and mounts")

    def write_export(
        self, symbol: str, chunks: pd.DataFrame | Iterable[pd.DataFrame], created: datetime | None = None
    ) -> tuple[Path, int]:
        """Write one export atomically under the one naming scheme; returns (path, rows)."""
        name = export_file_name(symbol, self.interval, _as_utc(created or self.now()))
        if parse_export_name(name) is None:
            raise ValueError(f"symbol {symbol!r} cannot be used in an export file name")
        self.ensure_folder()
        path = self.export_dir / name
        rows = write_candles(path, chunks)
        self.logger.info("wrote %s (%d rows)", name, rows)
        return path, rows

    # --- scanning and validation -----------------------------------------

    def scan(self, *, symbols: Collection[str] | None = None) -> FolderScan:
        """One directory pass and one read per file (optionally only some symbols)."""
        wanted = None if symbols is None else frozenset(symbols)
        result = FolderScan()
        for entry in self._entries():
            self._classify(entry, wanted, result)
        result.files.sort(key=lambda f: (f.created, f.name))
        self._read_all(result)
        return result

    def _entries(self) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(self.export_dir) as it:
                return list(it)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StorageError(f"cannot list {self.export_dir}: {exc.strerror or exc}") from exc

    def _classify(self, entry: os.DirEntry[str], wanted: frozenset[str] | None, result: FolderScan) -> None:
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
            if match is not None and self._temp_wanted(match["final"], wanted):
                info = entry.stat(follow_symlinks=False)
                result.temp_files.append(TempFile(Path(entry.path), info.st_size, info.st_mtime))
        except OSError:
            return  # vanished or unstat-able since the listing: not a candidate

    @staticmethod
    def _temp_wanted(final_name: str, wanted: frozenset[str] | None) -> bool:
        if wanted is None:
            return True
        parsed = parse_export_name(final_name)
        return parsed is not None and parsed[0] in wanted

    def _read_all(self, result: FolderScan) -> None:
        """Read each file once; validate in batches (one parse for many small files)."""
        sizes: dict[int, int] = defaultdict(int)
        for f in result.files:
            sizes[f.size] += 1
        present: list[ExportFile] = []
        batch: list[tuple[bytes, str, Path]] = []
        batch_bytes = 0
        for f in result.files:
            read = self._read_one(f, sizes[f.size] > 1, result)
            if read is None:
                continue
            f, data = read
            present.append(f)
            if data is None:
                continue
            batch.append((data, f.interval, f.path))
            batch_bytes += len(data)
            if batch_bytes >= VALIDATION_BATCH_BYTES:
                self._validate_batch(batch, result)
                batch, batch_bytes = [], 0
        self._validate_batch(batch, result)
        result.files = present

    def _read_one(
        self, f: ExportFile, want_hash: bool, result: FolderScan
    ) -> tuple[ExportFile, bytes | None] | None:
        """(file, bytes) — bytes None if unreadable; None if it vanished since the listing."""
        try:
            data, digest = read_regular_file(f.path, want_hash=want_hash)
        except FileNotFoundError:
            return None
        except OSError as exc:
            result.unreadable.add(f.path)
            result.validations[f.path] = FileValidation(f.path, False, f"cannot read: {exc.strerror or exc}")
            self.logger.warning("cannot read %s: %s", f.name, exc.strerror or exc)
            return f, None
        if digest is not None:
            result.hashes[f.path] = digest
        if len(data) != f.size:  # changed since the listing: trust what was read
            f = ExportFile(f.path, f.symbol, f.interval, f.created, len(data))
        return f, data

    @staticmethod
    def _validate_batch(batch: list[tuple[bytes, str, Path]], result: FolderScan) -> None:
        for validation in validate_many(batch):
            result.validations[validation.path] = validation

    def validate_file(self, path: Path) -> FileValidation:
        """Validate one file against the interval in its name (ours if it has none)."""
        path = Path(path)
        parsed = parse_export_name(path.name)
        interval = parsed[1] if parsed else self.interval
        try:
            data, _ = read_regular_file(path)
        except OSError as exc:
            return FileValidation(path, False, f"cannot read: {exc.strerror or exc}")
        return check_bytes(data, interval, path)[0]

    def validate_all(self, *, dry_run: bool = False, scan_result: FolderScan | None = None) -> list[FileValidation]:
        """Validate every export file; quarantine the invalid ones (not in a dry run)."""
        folder = scan_result or self.scan()
        for f in folder.invalid_files():
            self._try_quarantine(f.path, folder.validations[f.path].reason or "invalid", dry_run, None)
        return [folder.validations[f.path] for f in folder.files]

    def newest_valid_export(
        self, symbol: str, *, quarantine: bool = True
    ) -> tuple[ExportFile, pd.DataFrame] | None:
        """The newest valid file of ``symbol`` as a candle frame, read once.

        Newer invalid files are quarantined (or only skipped) so that the
        incremental export never builds on a corrupt file.
        """
        for f in iter_symbol_exports(scan_exports(self.export_dir), symbol, self.interval):
            try:
                data, _ = read_regular_file(f.path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                self.logger.warning("cannot read %s: %s", f.name, exc.strerror or exc)
                continue
            validation, candles = check_bytes(data, self.interval, f.path, want_candles=True)
            if validation.valid and candles is not None:
                return f, candles
            if quarantine:
                self._try_quarantine(f.path, validation.reason or "invalid", False, None)
            else:
                self.logger.warning("skipping invalid %s: %s", f.name, validation.reason)
        return None

    # --- quarantine -------------------------------------------------------

    def quarantine(self, path: Path, reason: str, *, dry_run: bool = False) -> Path:
        """Move a corrupt file aside (never delete it) and say why; returns where it went."""
        path = Path(os.path.abspath(path))
        if path.parent != self.export_dir or EXPORT_NAME_PATTERN.fullmatch(path.name) is None:
            raise StorageError(f"refusing to quarantine {path}: not an export file of {self.export_dir}")
        if dry_run:
            target = self._free_quarantine_name(path.name)
            self.logger.warning("would quarantine %s: %s", path.name, reason)
            return target
        self._require_regular(path)
        self._ensure_quarantine_dir()
        target = self._free_quarantine_name(path.name)
        try:
            os.replace(path, target)
        except OSError as exc:
            raise StorageError(f"cannot move {path.name} to quarantine: {exc.strerror or exc}") from exc
        self.logger.warning("quarantined %s -> %s/: %s", path.name, QUARANTINE_DIR_NAME, reason)
        return target

    def _try_quarantine(self, path: Path, reason: str, dry_run: bool, result: CleanupResult | None) -> None:
        """Quarantine one file; a failure is logged and recorded, never fatal to the pass."""
        try:
            self.quarantine(path, reason, dry_run=dry_run)
        except StorageError as exc:
            self.logger.error("%s", exc)
            if result is not None:
                result.errors.append(str(exc))
            return
        if result is not None:
            result.quarantined.append((path, reason))

    def _require_regular(self, path: Path) -> os.stat_result:
        try:
            info = os.lstat(path)
        except OSError as exc:
            raise StorageError(f"cannot stat {path.name}: {exc.strerror or exc}") from exc
        if not stat.S_ISREG(info.st_mode):
            raise StorageError(f"{path.name} is no longer a regular file; left alone")
        return info

    def _ensure_quarantine_dir(self) -> None:
        """Create quarantine/ and refuse it if it is a symlink or a file: moving
        data through a planted link would carry it out of the folder."""
        folder = self.quarantine_dir
        try:
            os.mkdir(folder, 0o750)
        except FileExistsError:
            pass
        except OSError as exc:
            raise StorageError(f"cannot create {folder}: {exc.strerror or exc}") from exc
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            raise StorageError(f"{folder} is not a plain folder (symlink or file); refusing to move files there")

    def _free_quarantine_name(self, name: str) -> Path:
        """The same name, or name.N.csv on a clash: an earlier copy is never overwritten."""
        target = self.quarantine_dir / name
        stem, dot, suffix = name.rpartition(".")
        number = 1
        while os.path.lexists(target):
            target = self.quarantine_dir / f"{stem}.{number}{dot}{suffix}"
            number += 1
        return target

    # --- cleanup ----------------------------------------------------------

    def cleanup(self, *, dry_run: bool = False, symbols: Sequence[str] | None = None) -> CleanupResult:
        """Quarantine invalid files, remove stale temp files, apply retention, drop duplicates."""
        folder = self.scan(symbols=symbols)
        result = CleanupResult(dry_run=dry_run)
        for f in folder.invalid_files():
            self._try_quarantine(f.path, folder.validations[f.path].reason or "invalid", dry_run, result)
        self._remove_temp_files(folder.temp_files, dry_run, result)
        valid = folder.valid_files()
        protected = self._protected(valid)
        plan = self._retention_plan(valid, protected, result)
        duplicates = self._duplicate_plan(folder, valid, protected, plan)
        plan.update(duplicates)
        for f in valid:
            if f.path not in plan:
                result.kept.append(f.path)
            elif self._remove(f.path, plan[f.path], dry_run, result):
                if f.path in duplicates:
                    result.duplicates_removed.append(f.path)
            else:
                result.kept.append(f.path)
        self.logger.info("cleanup: %s", result.summary())
        return result

    def prune_symbol(self, symbol: str, *, dry_run: bool = False) -> CleanupResult:
        """Retention for one symbol, cheap enough to run right after each write."""
        return self.cleanup(dry_run=dry_run, symbols=[symbol])

    def _protected(self, valid: Sequence[ExportFile]) -> set[Path]:
        """Newest valid file of each (configured symbol, interval): never removed."""
        groups: dict[tuple[str, str], list[ExportFile]] = defaultdict(list)
        for f in valid:
            if f.symbol in self._configured:
                groups[(f.symbol, f.interval)].append(f)
        return {_newest_first(files)[0].path for files in groups.values()}

    def _retention_plan(
        self, valid: Sequence[ExportFile], protected: set[Path], result: CleanupResult
    ) -> dict[Path, str]:
        """Path -> reason for every valid file retention removes."""
        groups: dict[tuple[str, str], list[ExportFile]] = defaultdict(list)
        for f in valid:
            groups[(f.symbol, f.interval)].append(f)
        cutoff = self.now() - timedelta(days=self.data_retention_days)
        plan: dict[Path, str] = {}
        stale: set[str] = set()
        for (symbol, interval), files in groups.items():
            for rank, f in enumerate(_newest_first(files)):
                too_old = f.created < cutoff
                if f.path in protected:
                    if too_old and interval == self.interval:
                        stale.add(symbol)
                elif rank >= self.max_files_per_symbol:
                    plan[f.path] = f"beyond the newest {self.max_files_per_symbol} of {symbol} {interval}"
                elif too_old:
                    plan[f.path] = f"older than {self.data_retention_days:g} days"
        for symbol in sorted(stale):
            self.logger.warning(
                "%s: newest valid file is older than %g days; kept (no fresh export?)",
                symbol, self.data_retention_days,
            )
        result.stale_symbols = sorted(stale)
        return plan

    @staticmethod
    def _duplicate_plan(
        folder: FolderScan, valid: Sequence[ExportFile], protected: set[Path], plan: dict[Path, str]
    ) -> dict[Path, str]:
        """All but the newest of each identical group, under the same protection."""
        remaining = [f for f in valid if f.path not in plan]
        extra: dict[Path, str] = {}
        for group in folder.duplicate_groups(remaining):
            for f in group[1:]:
                if f.path not in protected:
                    extra[f.path] = f"duplicate of {group[0].name}"
        return extra

    def _remove_temp_files(self, temps: Sequence[TempFile], dry_run: bool, result: CleanupResult) -> None:
        """Leftovers of a killed writer.

        A young one may belong to a running writer, so it goes only when the
        writer named in it (``atomic_io`` puts the PID in the name) is gone:
        a ``kill -9`` mid-write must not leave its temp file for an hour.
        """
        cutoff = self.now().timestamp() - TEMP_MAX_AGE.total_seconds()
        for temp in temps:
            if temp.mtime >= cutoff and not _writer_gone(temp.path.name):
                continue
            if self._remove(temp.path, "temp file of an interrupted write", dry_run, result):
                result.temp_removed.append(temp.path)

    def _remove(self, path: Path, reason: str, dry_run: bool, result: CleanupResult) -> bool:
        """Unlink one candidate after re-checking it is still a regular file of ours.

        Even if a symlink were swapped in after the check, ``unlink`` removes
        the link itself, never its target.
        """
        name_ok = EXPORT_NAME_PATTERN.fullmatch(path.name) or TEMP_NAME_PATTERN.fullmatch(path.name)
        if path.parent != self.export_dir or not name_ok:
            result.errors.append(f"refused to remove {path}: not a candidate")
            return False
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            result.errors.append(f"cannot stat {path.name}: {exc.strerror or exc}")
            return False
        if not stat.S_ISREG(info.st_mode):
            self.logger.warning("%s is no longer a regular file; left alone", path.name)
            return False
        if not dry_run and not self._unlink(path, result):
            return False
        verb = "would remove" if dry_run else "removed"
        self.logger.info("%s %s (%d bytes): %s", verb, path.name, info.st_size, reason)
        result.removed.append(path)
        result.bytes_freed += info.st_size
        return True

    def _unlink(self, path: Path, result: CleanupResult) -> bool:
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            message = f"cannot remove {path.name}: {exc.strerror or exc}"
            self.logger.error("%s", message)
            result.errors.append(message)
            return False
        return True

    # --- reports ----------------------------------------------------------

    def find_duplicates(self, *, scan_result: FolderScan | None = None) -> DuplicateReport:
        """Identical export files (size first, then SHA-256), newest first per group."""
        folder = scan_result or self.scan()
        groups = folder.duplicate_groups()
        wasted = sum(f.size for group in groups for f in group[1:])
        return DuplicateReport([[f.path for f in group] for group in groups], wasted)

    def file_statistics(self, *, scan_result: FolderScan | None = None) -> dict[str, Any]:
        """Counts and sizes of the valid export files, for the status report."""
        valid = (scan_result or self.scan()).valid_files()
        total = sum(f.size for f in valid)
        return {
            "total_files": len(valid),
            "symbols_count": len({f.symbol for f in valid}),
            "total_size_mb": round(total / _MB, 2),
            "total_size_gb": round(total / (_MB * 1024), 2),
        }
