"""FileManager: the only code that removes or moves files in the export folder.

It runs unattended and deletes files, so it cannot be turned against the data it protects: only regular
files directly in the folder with our names (exports, ``our_temp_name`` leftovers of a writer that is gone)
are candidates, symlinks and subfolders never; new candles are published only if valid as written and not
older than the newest kept (``write_export``); a corrupt file is quarantined, never deleted; every unlink
re-checks with ``lstat``; ``dry_run`` changes nothing on disk; a scan stops soon after ``stop_event`` is set,
leaving the files it did not reach as they are. ``scan`` reads the folder, ``retention`` decides what goes
and why (the newest valid file of a configured symbol never), ``cleanup_report`` holds the results.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import stat
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from crypto_data_export.core.candles import SeriesId, exchange_host
from crypto_data_export.core.clock import as_utc, ms_to_iso, utc_now
from crypto_data_export.core.errors import InvalidDataError, OlderDataError, StorageError
from crypto_data_export.core.intervals import is_valid_interval
from crypto_data_export.settings.market_names import SPOT, VALID_MARKETS
from crypto_data_export.settings.symbols import unique_in_order
from crypto_data_export.store.cleanup_report import CleanupResult, DuplicateReport
from crypto_data_export.store.exports import ExportFile, content_key
from crypto_data_export.store.formats import DEFAULT_FORMAT, FileFormat, format_for_name, format_named
from crypto_data_export.store.layout import (
    EXPORT_NAME_PATTERN,
    QUARANTINE_DIR_NAME,
    ExportFolder,
    export_file_name,
    our_temp_name,
    parse_export_name,
)
from crypto_data_export.store.listing import FolderNames, FolderScan, TempFile, list_ours, scan_exports
from crypto_data_export.store.retention import RetentionRules, plan_cleanup
from crypto_data_export.store.scan import (
    ScanStopped,
    StopCheck,
    check_regular_file,
    scan_folder,
    validate_file,
    writer_gone,
)
from crypto_data_export.store.validation import FileValidation

if TYPE_CHECKING:  # types only: --status and --health must not import pyarrow for them
    import pyarrow as pa

    from crypto_data_export.settings.settings import Settings

logger = logging.getLogger(__name__)

TEMP_MAX_AGE = timedelta(hours=1)
MAX_SPARK_FILE_BYTES = 64 * 1024 * 1024  # a sparkline is not worth reading a bigger file


@dataclass
class ReusableExport:
    """The newest valid file of a symbol (by content), read once: what an incremental export builds on."""

    file: ExportFile
    candles: pa.Table
    validation: FileValidation

    @property
    def newest_candle_ms(self) -> int:
        assert self.validation.last_open_ms is not None, "a valid file has candles"
        return self.validation.last_open_ms


def require_forward(new_last_open_ms: int | None, kept: ReusableExport | None) -> None:
    """Refuse candles ending before the newest one kept: an exchange whose clock or data is
    behind (a restore, a lagging mirror) must not replace recent data with older data."""
    if kept is None or new_last_open_ms is None or new_last_open_ms >= kept.newest_candle_ms:
        return
    raise OlderDataError(
        f"the exchange's newest candle opens at {ms_to_iso(new_last_open_ms)}, before the newest one kept "
        f"({ms_to_iso(kept.newest_candle_ms)}, in {kept.file.name}): its clock or data is behind; "
        "nothing was replaced, the next run asks again"
    )


class FileManager:
    """Owns the export folder: writes, validation, quarantine, retention, duplicates."""

    def __init__(
        self,
        export_dir: Path,
        interval: str,
        symbols: Sequence[str],
        max_files_per_symbol: int = 1,
        data_retention_days: float = 7,
        now: Callable[[], datetime] = utc_now,
        file_format: FileFormat = DEFAULT_FORMAT,
        stop_event: threading.Event | None = None,
        *,
        market: str = SPOT,
        intervals: Sequence[str] = (),
        host: str = "",
    ) -> None:
        if not all(is_valid_interval(i) for i in (interval, *intervals)):
            raise ValueError(f"unknown interval in {[interval, *intervals]!r}")
        if market not in VALID_MARKETS:
            raise ValueError(f"unknown market {market!r}")
        if max_files_per_symbol < 1:
            raise ValueError("max_files_per_symbol must be at least 1")
        if not data_retention_days > 0:
            raise ValueError("data_retention_days must be positive")
        # Absolute once, so a later chdir cannot point the manager elsewhere.
        self.export_dir = Path(os.path.abspath(export_dir))
        self.folder = ExportFolder(self.export_dir)
        self.file_format = file_format
        # The series this manager writes and reuses is (market, symbol, interval); cleanup
        # covers the folder, and every configured interval (``intervals``) counts as configured.
        self.interval = interval
        self.market, self.host = market, host  # the exchange's host, kept in Parquet files
        self.intervals: tuple[str, ...] = tuple(dict.fromkeys((*intervals, interval))) if intervals else (interval,)
        self.symbols: tuple[str, ...] = tuple(symbols)
        self.max_files_per_symbol = int(max_files_per_symbol)
        self.data_retention_days = float(data_retention_days)
        self._now = now
        # Set by SIGTERM/SIGINT (the export job's event): scans stop between files.
        self.stop_event = stop_event or threading.Event()
        # Set for an export pass (``listed_once``): the per-series scans take their names from it.
        self._names: FolderNames | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, *, protected_symbols: Sequence[str] = (), stop_event: threading.Event | None = None
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
            file_format=format_named(settings.export_format, settings.dataset_numbers),
            stop_event=stop_event,
            market=settings.market,
            intervals=settings.kline_intervals,
            host=exchange_host(settings.base_url),
        )

    def series_of(self, symbol: str) -> SeriesId:
        """The identity of ``symbol``'s files here: what they are written as and reused for."""
        return SeriesId(self.host, self.market, symbol, self.interval)

    def for_interval(self, interval: str) -> FileManager:
        """This manager for the series of ``interval`` (same folder, market, rules and stop:
        a shallow copy shares them); used per interval by the export job."""
        if interval == self.interval:
            return self
        if not is_valid_interval(interval):
            raise ValueError(f"unknown interval {interval!r}")
        other = copy.copy(self)
        other.interval = interval
        return other

    def writer(self, symbol: str) -> contextlib.AbstractContextManager[bool]:
        """The series' writer lock: here the run lock already makes the export job the only writer."""
        return contextlib.nullcontext(True)

    @contextlib.contextmanager
    def listed_once(self) -> Iterator[None]:
        """Within this block the per-series scans (here and in ``for_interval`` copies) share
        one listing of the folder, kept current with this manager's changes (see ``listing``)."""
        try:
            self._names = FolderNames.of(self.export_dir)
        except StorageError:
            self._names = None  # each series lists the folder itself, and fails alone if it must
        try:
            yield
        finally:
            self._names = None

    def list_ours(self, name: str, present: bool = True) -> None:
        if self._names is not None:
            (self._names.add if present else self._names.discard)(name)

    def protect(self, symbols: Sequence[str]) -> None:
        """Replace the symbols whose newest valid file retention never removes (a symbol
        universe changes from cycle to cycle; a symbol that left it gets the normal rules)."""
        self.symbols = unique_in_order(symbols)

    def now(self) -> datetime:
        return as_utc(self._now())

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

    def export_path(self, symbol: str) -> Path:
        """Where a new export of ``symbol`` created now goes: never the name of a file there
        (two runs in one second must not replace a file the cleanup would keep)."""
        created = self.now()
        name = export_file_name(symbol, self.interval, created, self.file_format.suffix, self.market)
        if EXPORT_NAME_PATTERN.fullmatch(name) is None:
            raise ValueError(f"symbol {symbol!r} cannot be used in an export file name")
        while os.path.lexists(self.export_dir / name):
            created += timedelta(seconds=1)
            name = export_file_name(symbol, self.interval, created, self.file_format.suffix, self.market)
        return self.export_dir / name

    def write_export(
        self,
        symbol: str,
        chunks: pa.Table | Iterable[pa.Table],
        *,
        replacing: ReusableExport | None = None,
        now_ms: int | None = None,  # the exchange's time: a dataset's sink counts closed candles by it
    ) -> tuple[Path, FileValidation]:
        """Write one export atomically; returns (path, verdict). Validate before replace: the bytes are judged
        as written, by the checker of files on disk, and published only if valid and not older than ``replacing``
        (the newest valid file kept); else InvalidDataError (OlderDataError), and no export name has changed."""
        path = self.export_path(symbol)
        self.ensure_folder()

        def approve(verdict: FileValidation) -> None:
            require_forward(verdict.last_open_ms, replacing)

        try:
            series = self.series_of(symbol)
            verdict = self.file_format.write(path, chunks, self.interval, approve=approve, series=series)
        except OlderDataError:
            raise
        except InvalidDataError as exc:
            kept = f"{replacing.file.name} is kept" if replacing is not None else "no file was replaced"
            raise InvalidDataError(f"{exc}; {kept}, the next run asks again") from exc
        self.list_ours(path.name)
        logger.debug("wrote %s (%d rows)", path.name, verdict.rows)  # the export job logs the full line
        return path, verdict

    def scan(
        self,
        *,
        symbols: Collection[str] | None = None,
        known: Mapping[Path, FileValidation] | None = None,
        series_only: bool = False,
        judged: Mapping[Path, FileValidation] | None = None,
    ) -> FolderScan:
        """``scan_folder`` of this folder (``series_only``: the symbols' files of this manager's
        market and interval only), cut short once ``stop_event`` is set."""
        series = (self.market, self.interval) if series_only and symbols is not None else None
        return scan_folder(
            self.export_dir,
            symbols=symbols,
            known=known,
            stop=self.stop_event,
            series=series,
            names=self._names if symbols is not None else None,
            judged=judged,
        )

    def validate_file(self, path: Path) -> FileValidation:
        """Validate one file against the interval in its name (ours if it has none), streamed."""
        parsed = parse_export_name(Path(path).name)
        return validate_file(Path(path), parsed[1] if parsed else self.interval)

    def validate_all(self, *, dry_run: bool = False, scan_result: FolderScan | None = None) -> list[FileValidation]:
        """Validate every export file; quarantine the invalid ones (not in a dry run)."""
        folder = scan_result or self.scan()
        for f in folder.invalid_files():
            self._try_quarantine(f.path, folder.validations[f.path].reason or "invalid", dry_run, None)
        return [folder.validations[f.path] for f in folder.files]

    def newest_valid_export(
        self, symbol: str, *, quarantine: bool = True, record: CleanupResult | None = None, candles_from: int = 0
    ) -> ReusableExport | None:
        """The valid file of ``symbol`` whose newest candle is newest, with its candles opening from
        ``candles_from`` (a window's: bounded memory whatever the file holds). Every file of the series is
        judged (the newest content can hide behind any name); invalid ones are quarantined (added to
        ``record``) or skipped. At most two frames are held; ScanStopped soon after ``stop_event`` is set."""
        best: ReusableExport | None = None
        should_stop = StopCheck(self.stop_event)
        exports = scan_exports(
            self.export_dir, symbol=symbol, interval=self.interval, market=self.market, names=self._names
        )
        for f in exports:
            if should_stop():
                raise ScanStopped(f"stop requested before every file of {symbol} was checked")
            try:
                checked = check_regular_file(f.path, self.interval, candles_from=candles_from, stop=should_stop)
            except FileNotFoundError:
                continue
            except OSError as exc:
                logger.warning("cannot read %s: %s", f.name, exc.strerror or exc)
                continue
            validation, candles = checked.validation, checked.candles
            if validation.series not in (None, self.series_of(symbol)):  # another's
                logger.warning("%s holds the candles of %s; not reused", f.name, validation.series)
                continue
            if validation.valid and candles is not None:
                if best is None or content_key(f, validation) > content_key(best.file, best.validation):
                    best = ReusableExport(f, candles, validation)
                continue
            if quarantine:
                self._try_quarantine(f.path, validation.reason or "invalid", False, record)
            else:
                logger.warning("skipping invalid %s: %s", f.name, validation.reason)
        return best

    def quarantine(self, path: Path, reason: str, *, dry_run: bool = False) -> Path:
        """Move a corrupt file aside (never delete it) and say why; returns where it went."""
        path = Path(os.path.abspath(path))
        if path.parent != self.export_dir or EXPORT_NAME_PATTERN.fullmatch(path.name) is None:
            raise StorageError(f"refusing to quarantine {path}: not an export file of {self.export_dir}")
        if dry_run:
            target = self._free_quarantine_name(path.name)
            logger.warning("would quarantine %s: %s", path.name, reason)
            return target
        try:
            regular = stat.S_ISREG(os.lstat(path).st_mode)
        except OSError as exc:
            raise StorageError(f"cannot stat {path.name}: {exc.strerror or exc}") from exc
        if not regular:
            raise StorageError(f"{path.name} is no longer a regular file; left alone")
        # quarantine/ must be a plain folder: moving data through a planted link would carry it out of the folder.
        try:
            with contextlib.suppress(FileExistsError):
                os.mkdir(self.folder.quarantine, 0o750)
        except OSError as exc:
            raise StorageError(f"cannot create {self.folder.quarantine}: {exc.strerror or exc}") from exc
        if not stat.S_ISDIR(os.lstat(self.folder.quarantine).st_mode):
            raise StorageError(
                f"{self.folder.quarantine} is not a plain folder (symlink or file); refusing to move files there"
            )
        target = self._free_quarantine_name(path.name)
        try:
            os.replace(path, target)
        except OSError as exc:
            raise StorageError(f"cannot move {path.name} to quarantine: {exc.strerror or exc}") from exc
        self.list_ours(path.name, False)
        logger.warning("quarantined %s -> %s/: %s", path.name, QUARANTINE_DIR_NAME, reason)
        return target

    def _try_quarantine(self, path: Path, reason: str, dry_run: bool, result: CleanupResult | None) -> None:
        """Quarantine one file; a failure is logged and recorded, never fatal to the pass."""
        try:
            self.quarantine(path, reason, dry_run=dry_run)
        except StorageError as exc:
            logger.error("%s", exc)
            if result is not None:
                result.errors.append(str(exc))
            return
        if result is not None:
            result.quarantined.append((path, reason))
            result.reasons[path] = reason

    def _free_quarantine_name(self, name: str) -> Path:
        """The same name, or name.N.csv on a clash: an earlier copy is never overwritten."""
        target = self.folder.quarantine / name
        stem, dot, suffix = name.rpartition(".")
        number = 1
        while os.path.lexists(target):
            target = self.folder.quarantine / f"{stem}.{number}{dot}{suffix}"
            number += 1
        return target

    def cleanup(
        self,
        *,
        dry_run: bool = False,
        symbols: Sequence[str] | None = None,
        known: Mapping[Path, FileValidation] | None = None,
        judged: Mapping[Path, FileValidation] | None = None,
        gone: Collection[Path] = (),
        cover: Path | None = None,
    ) -> CleanupResult:
        """Quarantine invalid files, remove stale temp files, apply retention, drop duplicates. ``known``: files
        just written and their verdicts (in a dry run: the files the real run would write); ``judged``: verdicts
        read moments ago; ``gone``: in a dry run, the files the run's earlier steps would have removed or
        quarantined; ``cover``: a backfill's new file, which removes only the files whose every candle it holds.
        ``result.remaining`` is the folder as the cleanup left it (verdicts, hashes): no second pass."""
        known = dict(known or {})
        # Limited to some symbols (a prune after a write), the cleanup looks at this manager's series only.
        on_disk = self.scan(symbols=symbols, known=None if dry_run else known, series_only=True, judged=judged)
        # A dry run judges the folder as the real run would have left it by now.
        folder = on_disk.without(set(gone)).with_planned(_as_export_files(known)) if dry_run else on_disk
        result = CleanupResult(dry_run=dry_run, stopped=folder.stopped)
        for f in folder.invalid_files():
            self._try_quarantine(f.path, folder.validations[f.path].reason or "invalid", dry_run, result)
        self._remove_temp_files(folder.temp_files, dry_run, result)
        # Built per cleanup from the attributes, so a changed setting applies at once.
        series = frozenset((self.market, interval) for interval in self.intervals)
        rules = RetentionRules(series, frozenset(self.symbols), self.max_files_per_symbol, self.data_retention_days)
        plan = plan_cleanup(folder, rules, self.now(), cover)
        for symbol in plan.stale_symbols:
            logger.warning(
                "%s: newest valid file is older than %g days; kept (no fresh export?)", symbol, self.data_retention_days
            )
        result.stale_symbols = plan.stale_symbols
        for f in folder.valid_files():  # a file that cannot be removed counts as kept
            if f.path in plan.removals and self._remove(f.path, plan.removals[f.path], dry_run, result):
                if f.path in plan.duplicates:
                    result.duplicates_removed.append(f.path)
            else:
                result.kept.append(f.path)
        if dry_run:
            result.remaining = on_disk
        else:
            result.remaining = folder.without(
                {*result.removed, *(path for path, _ in result.quarantined), *result.vanished}
            )
        # A per-symbol prune after each write would repeat this line for every symbol.
        logger.log(logging.INFO if symbols is None else logging.DEBUG, "cleanup: %s", result.summary())
        return result

    def _remove_temp_files(self, temps: Sequence[TempFile], dry_run: bool, result: CleanupResult) -> None:
        """Leftovers of a killed writer: a young one may be a running writer's, so it goes only
        when the PID in its name is gone (a ``kill -9`` must not leave it for an hour)."""
        cutoff = self.now().timestamp() - TEMP_MAX_AGE.total_seconds()
        for temp in temps:
            if temp.mtime >= cutoff and not writer_gone(temp.path.name):
                continue
            if self._remove(temp.path, "temp file of an interrupted write", dry_run, result):
                result.temp_removed.append(temp.path)

    def _remove(self, path: Path, reason: str, dry_run: bool, result: CleanupResult) -> bool:
        """Unlink one candidate after re-checking it is a regular file of ours (a symlink swapped
        in after the check is itself removed, never its target)."""
        name_ok = EXPORT_NAME_PATTERN.fullmatch(path.name) or our_temp_name(path.name)
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
            logger.warning("%s is no longer a regular file; left alone", path.name)
            return False
        if not dry_run:
            try:
                os.unlink(path)
            except FileNotFoundError:
                self.list_ours(path.name, False)
                result.vanished.append(path)
                return False
            except OSError as exc:
                result.errors.append(f"cannot remove {path.name}: {exc.strerror or exc}")
                logger.error("%s", result.errors[-1])
                return False
            self.list_ours(path.name, False)
        verb = "would remove" if dry_run else "removed"
        logger.info("%s %s (%d bytes): %s", verb, path.name, info.st_size, reason)
        result.removed.append(path)
        result.reasons[path] = reason
        result.bytes_freed += info.st_size
        return True

    def closes_of(self, names: Mapping[str, str]) -> dict[str, list[float]]:
        """Per key, the closes of the named file of the folder (a sparkline's data). A file that is a symlink, too
        large to be worth it, or unreadable is left out: a picture is never worth failing a cycle for."""
        closes: dict[str, list[float]] = {}
        for key, name in names.items():
            path = self.export_dir / Path(name).name
            file_format = format_for_name(path.name)
            try:
                info = path.lstat()  # a symlink is never followed, a large file never read
                if file_format is None or stat.S_ISLNK(info.st_mode) or info.st_size > MAX_SPARK_FILE_BYTES:
                    continue
                closes[key] = file_format.read_closes(path)
            except Exception as exc:
                logger.debug("no sparkline for %s: %s", path, exc)
        return closes

    def find_duplicates(self, *, scan_result: FolderScan | None = None) -> DuplicateReport:
        """Identical export files (size first, then SHA-256), newest first per group; without a
        scan, only files whose size collides are read (hashed, not parsed)."""
        folder = scan_result or list_ours(self.export_dir, None, ("",), None)
        folder.hash_size_collisions(StopCheck(self.stop_event))
        groups = folder.duplicate_groups()
        wasted = sum(f.size for group in groups for f in group[1:])
        return DuplicateReport([[f.path for f in group] for group in groups], wasted)


def _as_export_files(files: Mapping[Path, FileValidation]) -> dict[ExportFile, FileValidation]:
    """Files a dry run would write, as a scan would list them (they have no size yet)."""
    named = ((Path(path), parse_export_name(Path(path).name), verdict) for path, verdict in files.items())
    return {ExportFile(p, n.symbol, n.interval, n.created, 0, n.market): v for p, n, v in named if n is not None}
