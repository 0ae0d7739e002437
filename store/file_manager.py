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

The parts live beside it: ``folder_scan`` lists and reads the folder once
(validation and hashes from one read), ``retention`` decides what goes and
why, ``cleanup_report`` holds the results; this module does the moving and
removing.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from common.atomic_io import TEMP_NAME_PATTERN
from common.clock import as_utc, utc_now
from common.errors import StorageError
from config.intervals import is_valid_interval
from config.symbols_config import unique_in_order
from store.exports import ExportFile, newest_first, scan_exports
from store.formats import DEFAULT_FORMAT, FileFormat
from store.layout import EXPORT_NAME_PATTERN, QUARANTINE_DIR_NAME, ExportFolder, export_file_name, parse_export_name
from store.reports import CleanupResult, DuplicateReport
from store.retention import CleanupPlan, RetentionRules, plan_cleanup
from store.scan import (
    FolderScan,
    TempFile,
    check_regular_file,
    scan_duplicates,
    scan_folder,
    validate_file,
    writer_gone,
)
from store.validation import FileValidation

if TYPE_CHECKING:
    from config.settings import Settings

TEMP_MAX_AGE = timedelta(hours=1)
_MB = 1024 * 1024


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
        now: Callable[[], datetime] = utc_now,
        file_format: FileFormat = DEFAULT_FORMAT,
    ) -> None:
        if not is_valid_interval(interval):
            raise ValueError(f"unknown interval {interval!r}")
        if max_files_per_symbol < 1:
            raise ValueError("max_files_per_symbol must be at least 1")
        if not data_retention_days > 0:
            raise ValueError("data_retention_days must be positive")
        # Absolute once, so a later chdir cannot point the manager elsewhere.
        self.export_dir = Path(os.path.abspath(export_dir))
        self.folder = ExportFolder(self.export_dir)
        self.file_format = file_format
        self.interval = interval
        self.symbols: tuple[str, ...] = tuple(symbols)
        self.max_files_per_symbol = int(max_files_per_symbol)
        self.data_retention_days = float(data_retention_days)
        self.logger = logger or logging.getLogger("file_manager")
        self._now = now
        self._configured = frozenset(self.symbols)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, protected_symbols: Sequence[str] = (), logger: logging.Logger | None = None
    ) -> FileManager:
        """The manager of ``settings.export_dir``; ``protected_symbols`` adds symbols
        (e.g. a run's ``--symbols``) whose newest valid file retention must keep."""
        symbols = unique_in_order([*settings.symbols, *protected_symbols])
        return cls(
            settings.export_dir,
            settings.kline_interval,
            symbols,
            settings.max_files_per_symbol,
            settings.data_retention_days,
            logger=logger,
        )

    @property
    def quarantine_dir(self) -> Path:
        return self.folder.quarantine

    def now(self) -> datetime:
        return as_utc(self._now())

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
        name = export_file_name(symbol, self.interval, as_utc(created or self.now()), self.file_format)
        if EXPORT_NAME_PATTERN.fullmatch(name) is None:
            raise ValueError(f"symbol {symbol!r} cannot be used in an export file name")
        self.ensure_folder()
        path = self.export_dir / name
        rows = self.file_format.write(path, chunks)
        self.logger.debug("wrote %s (%d rows)", name, rows)  # the export job logs the full line
        return path, rows

    # --- scanning and validation -----------------------------------------

    def scan(self, *, symbols: Collection[str] | None = None, known_valid: Collection[Path] = ()) -> FolderScan:
        """One directory pass and one read per file (optionally only some symbols,
        whose names alone are then looked at; ``known_valid``: see ``scan_folder``)."""
        return scan_folder(self.export_dir, symbols=symbols, logger=self.logger, known_valid=known_valid)

    def validate_file(self, path: Path) -> FileValidation:
        """Validate one file against the interval in its name (ours if it has none), streamed."""
        parsed = parse_export_name(Path(path).name)
        return validate_file(Path(path), parsed[1] if parsed else self.interval)

    def validate_all(self, *, dry_run: bool = False, scan_result: FolderScan | None = None) -> list[FileValidation]:
        """Validate every export file; quarantine the invalid ones (not in a dry run)."""
        folder = scan_result or self.scan()
        self._quarantine_invalid(folder, dry_run, None)
        return [folder.validations[f.path] for f in folder.files]

    def newest_valid_export(self, symbol: str, *, quarantine: bool = True) -> tuple[ExportFile, pd.DataFrame] | None:
        """The newest valid file of ``symbol`` as a candle frame, read once.

        Newer invalid files are quarantined (or only skipped) so that the
        incremental export never builds on a corrupt file. Only this symbol's
        names are looked at, and a large file is validated as it streams, so
        only its candle frame is ever held whole.
        """
        mine = scan_exports(self.export_dir, symbol=symbol, interval=self.interval)
        for f in newest_first(mine):
            try:
                checked = check_regular_file(f.path, self.interval, want_candles=True)
            except FileNotFoundError:
                continue
            except OSError as exc:
                self.logger.warning("cannot read %s: %s", f.name, exc.strerror or exc)
                continue
            validation, candles = checked.validation, checked.candles
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

    def _quarantine_invalid(self, folder: FolderScan, dry_run: bool, result: CleanupResult | None) -> None:
        for f in folder.invalid_files():
            self._try_quarantine(f.path, folder.validations[f.path].reason or "invalid", dry_run, result)

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

    def cleanup(
        self, *, dry_run: bool = False, symbols: Sequence[str] | None = None, known_valid: Collection[Path] = ()
    ) -> CleanupResult:
        """Quarantine invalid files, remove stale temp files, apply retention, drop duplicates.

        ``result.remaining`` is the scan it made minus what it removed or
        quarantined (all of it in a dry run): the folder as the cleanup left
        it, with verdicts and the hashes of size-colliding files, so that a
        caller needs no second pass for reports.
        """
        folder = self.scan(symbols=symbols, known_valid=known_valid)
        result = CleanupResult(dry_run=dry_run)
        self._quarantine_invalid(folder, dry_run, result)
        self._remove_temp_files(folder.temp_files, dry_run, result)
        plan = plan_cleanup(folder, self.retention_rules(), self.now())
        self._warn_stale(plan.stale_symbols)
        result.stale_symbols = plan.stale_symbols
        self._carry_out(plan, folder.valid_files(), dry_run, result)
        if dry_run:
            result.remaining = folder
        else:
            gone = {*result.removed, *(path for path, _ in result.quarantined), *result.vanished}
            result.remaining = folder.without(gone)
        # A per-symbol prune after each write would repeat this line for every symbol.
        self.logger.log(logging.INFO if symbols is None else logging.DEBUG, "cleanup: %s", result.summary())
        return result

    def prune_symbol(self, symbol: str, *, dry_run: bool = False, known_valid: Collection[Path] = ()) -> CleanupResult:
        """Retention for one symbol, cheap enough to run right after each write.

        Only that symbol's names are looked at. ``known_valid``: files just
        written from checked candles (``write_export``), not read back.
        """
        return self.cleanup(dry_run=dry_run, symbols=[symbol], known_valid=known_valid)

    def retention_rules(self) -> RetentionRules:
        # Built per cleanup from the attributes, so a changed setting applies at once.
        return RetentionRules(self.interval, self._configured, self.max_files_per_symbol, self.data_retention_days)

    def _warn_stale(self, stale_symbols: Iterable[str]) -> None:
        for symbol in stale_symbols:
            self.logger.warning(
                "%s: newest valid file is older than %g days; kept (no fresh export?)",
                symbol,
                self.data_retention_days,
            )

    def _carry_out(self, plan: CleanupPlan, valid: Sequence[ExportFile], dry_run: bool, result: CleanupResult) -> None:
        """Remove what the plan says; a file that cannot be removed counts as kept."""
        for f in valid:
            if f.path in plan.removals and self._remove(f.path, plan.removals[f.path], dry_run, result):
                if f.path in plan.duplicates:
                    result.duplicates_removed.append(f.path)
            else:
                result.kept.append(f.path)

    def _remove_temp_files(self, temps: Sequence[TempFile], dry_run: bool, result: CleanupResult) -> None:
        """Leftovers of a killed writer.

        A young one may belong to a running writer, so it goes only when the
        writer named in it (``atomic_io`` puts the PID in the name) is gone:
        a ``kill -9`` mid-write must not leave its temp file for an hour.
        """
        cutoff = self.now().timestamp() - TEMP_MAX_AGE.total_seconds()
        for temp in temps:
            if temp.mtime >= cutoff and not writer_gone(temp.path.name):
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
            result.vanished.append(path)
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
            result.vanished.append(path)
            return False
        except OSError as exc:
            message = f"cannot remove {path.name}: {exc.strerror or exc}"
            self.logger.error("%s", message)
            result.errors.append(message)
            return False
        return True

    # --- reports ----------------------------------------------------------

    def find_duplicates(self, *, scan_result: FolderScan | None = None) -> DuplicateReport:
        """Identical export files (size first, then SHA-256), newest first per group.

        Without a scan this lists the folder once and hashes (streamed) only
        the files whose size collides: no parsing, no validation.
        """
        if scan_result is None:
            folder = scan_duplicates(self.export_dir, logger=self.logger)
        else:
            folder = scan_result
            folder.hash_size_collisions(self.logger)
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
