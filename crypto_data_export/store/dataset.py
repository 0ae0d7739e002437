"""The dataset layout: the whole history of each series, one verified Parquet file per period.

    EXPORT_DIR/dataset/market=spot/interval=1h/symbol=BTCUSDT/2026.parquet   (Hive partitions)
    EXPORT_DIR/quarantine/dataset/<the same relative path>                  files set aside (never read)

A period is a UTC day below 1m (``1s``: 86,400 rows), a calendar month from 1m to 30m (at most
44,640 rows) and a calendar year from 1h up (at most 8,784): files neither tiny nor huge. A
candle belongs to the period holding its open time. Each file is written whole, atomically and
read back by the rule book before it replaces the old one; its footer names the series (checked
before a file is reused: a foreign one is quarantined, never merged), the period, its expected and
present candles, its gaps and its sources. The current period, rewritten every cycle, is not compressed
(a third of zstd's time to write and read back); one that has ended is zstd. One writer per series at a time
(``lock``). The root may be in a bucket (``DATASET_URL``: s3://, gs://): every file operation goes through the
store (``store.dataset_store``).
Everything reads and writes the dataset through this module; no other builds its paths.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from crypto_data_export.core.candles import (
    SeriesId,
    differing_rows,
    exchange_host,
    first_open_ms,
    last_open_ms,
    open_times,
    within,
)
from crypto_data_export.core.clock import from_ms, ms_to_iso, to_iso, utc_now
from crypto_data_export.core.errors import InvalidDataError, StorageError, StoreSetupError
from crypto_data_export.core.intervals import (
    DAY_MS,
    HOUR_MS,
    INTERVAL_MS,
    first_open_from_ms,
    floor_open_ms,
    next_open_ms,
)
from crypto_data_export.core.rules import check_candles, gaps, grid_steps
from crypto_data_export.settings.symbols import SYMBOL_PATTERN
from crypto_data_export.store.azure_objects import AzureObjects
from crypto_data_export.store.cleanup_report import CleanupResult
from crypto_data_export.store.dataset_store import LocalStore, Objects, ObjectStore, Store
from crypto_data_export.store.exports import ExportFile
from crypto_data_export.store.files import ReusableExport, require_forward
from crypto_data_export.store.formats.parquet_format import (
    CPU_BOUND,
    ParquetFormat,
    judge_parquet,
    numeric_candles,
    parquet_table,
    read_footer,
    table_to_candles,
)
from crypto_data_export.store.formats.parquet_format import SCHEMA_VERSION as SCHEMA_VERSION
from crypto_data_export.store.gcs_objects import GcsObjects
from crypto_data_export.store.layout import QUARANTINE_DIR_NAME
from crypto_data_export.store.s3_objects import S3Objects
from crypto_data_export.store.validation import FileValidation

if TYPE_CHECKING:
    from crypto_data_export.settings.settings import Settings

logger = logging.getLogger(__name__)

DATASET_FOLDER = "dataset"
# DATASET_URL's scheme -> its kind of bucket, made from the URL and DATASET_ENDPOINT_URL.
OBJECT_STORES: dict[str, Callable[[str, str], Objects]] = {"s3": S3Objects, "gs": GcsObjects, "az": AzureObjects}
_PERIOD_FILE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?\.parquet$")
_FORMATS = {"day": "%Y-%m-%d", "month": "%Y-%m", "year": "%Y"}


def _format(interval: str) -> str:
    """The period's name format: a day below 1m, a month below 1h, a year from 1h up."""
    length = INTERVAL_MS[interval]  # KeyError: not an interval
    return _FORMATS["day" if interval == "1s" else "month" if length is not None and length < HOUR_MS else "year"]


@functools.lru_cache(maxsize=4096)
def _start_of(interval: str, name: str) -> int:
    """The start of the period named ``name`` (ValueError: not a period name of ``interval``)."""
    return _ms(datetime.strptime(name, _format(interval)).replace(tzinfo=UTC))


def period_bounds(interval: str, open_ms: int) -> tuple[int, int]:
    """[start, end) epoch ms of the period holding a candle opening at open_ms."""
    return _bounds_of_day(interval, open_ms // DAY_MS)


# A period is whole UTC days: its name and bounds depend on the day alone (a cycle asks for the same few).
@functools.lru_cache(maxsize=4096)
def _bounds_of_day(interval: str, day: int) -> tuple[int, int]:
    start = _start_of(interval, _name_of_day(interval, day))
    later = {"%Y-%m-%d": DAY_MS, "%Y-%m": 32 * DAY_MS, "%Y": 366 * DAY_MS}[_format(interval)]  # in the next one
    return start, _start_of(interval, _name_of_day(interval, (start + later) // DAY_MS))


@functools.lru_cache(maxsize=4096)
def _name_of_day(interval: str, day: int) -> str:
    return from_ms(day * DAY_MS).strftime(_format(interval))


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def period_name(interval: str, start_ms: int) -> str:
    """``2026``, ``2026-11`` or ``2026-11-07``: the file name of the period, without ``.parquet``."""
    return _name_of_day(interval, start_ms // DAY_MS)


def periods_between(interval: str, start_ms: int, end_ms: int) -> list[tuple[int, int]]:
    """Every period overlapping [start_ms, end_ms), in order."""
    found: list[tuple[int, int]] = []
    cursor = start_ms
    while cursor < end_ms:
        found.append(period_bounds(interval, cursor))
        cursor = found[-1][1]
    return found


def expected_candles(interval: str, start_ms: int, end_ms: int, now_ms: int) -> tuple[int, int, int]:
    """(count, first open, last open) of the grid candles opening in [start_ms, end_ms) and closed at now_ms."""
    first = first_open_from_ms(start_ms, interval)
    last = min(floor_open_ms(end_ms - 1, interval), floor_open_ms(floor_open_ms(now_ms, interval) - 1, interval))
    if last < first:
        return 0, first, last
    steps = grid_steps(np.array([first, last], dtype=np.int64), interval)
    return int(steps[1] - steps[0] + 1), first, last


@dataclass(frozen=True)
class PeriodInfo:
    """One stored period, from its footer alone (no row read)."""

    path: Path
    series: SeriesId | None  # what the metadata names (None: names none -> not ours)
    start_ms: int
    end_ms: int
    expected: int
    present: int
    gaps: list[tuple[int, int, int]] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    complete: bool = False
    written_at: str = ""
    first_open_ms: int | None = None  # from the open_time statistics
    last_open_ms: int | None = None
    confirmed: list[tuple[int, int, int]] = field(default_factory=list)  # gaps the exchange served empty

    @property
    def unconfirmed(self) -> list[tuple[int, int, int]]:
        """The gaps no fetch has confirmed absent: all of them until the period is complete."""
        return [] if self.complete else [g for g in self.gaps if g not in self.confirmed]

    @property
    def missing(self) -> int:
        return sum(g[2] for g in self.gaps)


# A version of a file: (inode, size, mtime_ns, ctime_ns); any write or rename changes it (ctime cannot be set back).
Stamp = tuple[int, int, int, int]


@dataclass
class _Known:
    """What this process knows of one version of a file on disk: its footer's period, whether the rule book
    judged it (one unchanged since is not judged again), and, for a current period the scheduler loop keeps
    (``keeps_current``), its candles (numeric_candles): the next cycle's append takes them from here."""

    stamp: Stamp
    info: PeriodInfo | None = None
    judged: bool = False
    table: pa.Table | None = None


# By absolute path; a file's entry is replaced once the file changed. Tables within _TABLE_BYTES: one that does
# not fit is not kept (a cycle visits every series in turn: evicting one for another would keep none).
_KNOWN: dict[str, _Known] = {}
_MAX_KNOWN = 65_536
_TABLE_BYTES = 256 << 20
_HELD = [0]  # bytes of the tables kept
_KNOWN_LOCK = threading.Lock()


def _stamp(path: Path | int) -> Stamp:
    found = os.stat(path, follow_symlinks=False) if not isinstance(path, int) else os.fstat(path)
    return found.st_ino, found.st_size, found.st_mtime_ns, found.st_ctime_ns


def _known(path: Path, stamp: Stamp | None) -> _Known:
    """What is known of this version of the file (nothing: a new version, or a bucket's object)."""
    found = _KNOWN.get(os.path.abspath(path)) if stamp is not None else None
    return found if found is not None and found.stamp == stamp else _Known(stamp or (0, 0, 0, 0))


def _learned(path: Path, stamp: Stamp, *, info: PeriodInfo | None = None, table: pa.Table | None = None,
             judged: bool = False) -> None:  # fmt: skip
    """Add to what is known of this version of the file (a table past the budget is not kept)."""
    with _KNOWN_LOCK:
        key = os.path.abspath(path)
        old = _KNOWN.pop(key, None)
        _HELD[0] -= old.table.nbytes if old is not None and old.table is not None else 0
        if len(_KNOWN) >= _MAX_KNOWN:
            _KNOWN.clear()
            _HELD[0] = 0
        old = old if old is not None and old.stamp == stamp else _Known(stamp)
        table = table if table is not None else old.table
        if table is not None and _HELD[0] + table.nbytes > _TABLE_BYTES:
            table = None
        _HELD[0] += table.nbytes if table is not None else 0
        _KNOWN[key] = _Known(stamp, info or old.info, judged or old.judged, table)


def read_period_info(path: Path, store: Store | None = None) -> PeriodInfo | None:
    """The period a file's footer describes (in ``store``, default this disk: each version of a file read
    once); None: not a readable period of ours."""
    try:
        stamp = None if store is not None and store.remote else _stamp(path)
        if (known := _known(path, stamp).info) is not None:
            return known
        with (store or LocalStore()).open(path, whole=False) as source:
            footer = read_footer(path, source)
        keys = {k.decode(): v.decode() for k, v in (footer.metadata or {}).items()}
        names = [keys.get(f) for f in ("exchange_host", "market", "symbol", "interval")]
        series = SeriesId(*names) if all(names) else None  # type: ignore[arg-type]
        lows: list[Any] = []
        highs: list[Any] = []
        for index in range(footer.num_row_groups):
            stats = footer.row_group(index).column(0).statistics
            if stats is not None and stats.has_min_max:
                lows.append(stats.min_raw)
                highs.append(stats.max_raw)
        first, last = (int(min(lows)), int(max(highs))) if lows else (None, None)
        info = _period_info(path, series, keys, first, last)
        if stamp is not None:  # (a bucket's objects: not kept)
            _learned(path, stamp, info=info)
        return info
    except (InvalidDataError, OSError, KeyError, ValueError, TypeError) as exc:
        logger.debug("%s is not a period of ours: %s", path, exc)
        return None


def _period_info(
    path: Path, series: SeriesId | None, keys: dict[str, str], first: int | None, last: int | None
) -> PeriodInfo:
    """A period from its footer's key/value metadata (and its open times' range)."""
    return PeriodInfo(
        Path(path),
        series,
        int(keys["cdx_period_start"]),
        int(keys["cdx_period_end"]),
        int(keys["cdx_expected"]),
        int(keys["cdx_present"]),
        [(int(a), int(b), int(c)) for a, b, c in json.loads(keys["cdx_gaps"])],
        list(json.loads(keys["cdx_sources"])),
        keys["cdx_complete"] == "true",
        keys["cdx_written_at"],
        first,
        last,
        [(int(a), int(b), int(c)) for a, b, c in json.loads(keys.get("cdx_confirmed_gaps", "[]"))],
    )


class Dataset:
    """The dataset under one root for one exchange host and market."""

    def __init__(
        self, root: Path, exchange_host: str, market: str, numbers: str = "float", store: Store | None = None
    ) -> None:
        self.store = store or LocalStore()
        self.root = Path(root if self.store.remote else os.path.abspath(root))
        self.host, self.market = exchange_host, market
        self.format = ParquetFormat(numbers)
        self.keeps_current = False  # the current periods' tables kept in memory (_Known): the scheduler loop's
        self._folders: dict[SeriesId, Path] = {}
        self.quarantine_root = self.root.parent / QUARANTINE_DIR_NAME / DATASET_FOLDER
        if self.store.remote:  # outside every reader's glob (dataset_store)
            self.quarantine_root = self.root / ".quarantine"

    @classmethod
    def from_settings(cls, settings: Settings, export_dir: Path | None = None, *, writes: bool = True) -> Dataset:
        """The dataset of the settings: ``DATASET_URL`` if set (a bucket is checked at once, its
        conditional writes too if it ``writes``), else ``EXPORT_DIR/dataset`` (a backfill's ``export_dir``)."""
        root, store, url = Path(export_dir or settings.export_dir) / DATASET_FOLDER, None, settings.dataset_url
        if url.startswith("file://"):
            root = Path(url[len("file://") :])
        elif url:
            if (kind := OBJECT_STORES.get(url.split("://", 1)[0])) is None:
                raise StoreSetupError(f"DATASET_URL={url}: no such kind of store here ({', '.join(OBJECT_STORES)})")
            store = ObjectStore(url, kind(url, settings.dataset_endpoint_url), settings.dataset_lease_seconds)
            store.check(writes)
            root = store.root
        return cls(root, exchange_host(settings.base_url), settings.market, settings.dataset_numbers, store)

    def series_of(self, symbol: str, interval: str) -> SeriesId:
        return SeriesId(self.host, self.market, symbol, interval)

    def series_folder(self, series: SeriesId) -> Path:
        if (folder := self._folders.get(series)) is None:  # (a cycle asks for each several times)
            if not SYMBOL_PATTERN.fullmatch(series.symbol) or series.interval not in INTERVAL_MS:
                raise ValueError(f"not a series of a dataset: {series}")
            parts = (f"market={series.market}", f"interval={series.interval}", f"symbol={series.symbol}")
            folder = self._folders[series] = self.root.joinpath(*parts)
        return folder

    def period_path(self, series: SeriesId, start_ms: int) -> Path:
        return self.series_folder(series) / f"{period_name(series.interval, start_ms)}.parquet"

    def _period_files(self, series: SeriesId) -> list[Path]:
        """The regular files with a period's name in the series folder (a symlink is never followed)."""
        return [path for path, _ in self.store.files(self.series_folder(series)) if _PERIOD_FILE.fullmatch(path.name)]

    def _foreign(self, series: SeriesId, path: Path, info: PeriodInfo | None) -> str | None:
        """Why a stored file may not be used as a period of ``series`` (None: it may); raises StorageError for
        a period of another exchange host (the folders name none: a misconfigured run never moves a history)."""
        if info is None:
            return "not a readable period of the dataset"
        if (why := _other_host(series, path, info)) is not None:
            raise StorageError(why)
        if info.series != series:
            return f"its metadata names {info.series or 'no series'}, not {series}"
        if (
            path.name != f"{period_name(series.interval, info.start_ms)}.parquet"
            or info.end_ms != period_bounds(series.interval, info.start_ms)[1]
        ):
            return f"its metadata names the period {ms_to_iso(info.start_ms)}, not the one of its name"
        return None

    def periods(self, series: SeriesId) -> list[PeriodInfo]:
        """Stored periods in order, identity checked: a file whose metadata names another series
        (or none) is quarantined (logged warning naming it and why) and left out."""
        found = []
        for path in self._period_files(series):
            info = read_period_info(path, self.store)
            why = self._foreign(series, path, info)  # StorageError: another host's series, nothing is written
            if why is not None:
                self.quarantine(path, why)
            elif info is not None:
                found.append(info)
        return found

    def all_series(self) -> list[SeriesId]:
        """Every series folder present under the root (this dataset's host; the folder's market)."""
        found = []
        for folder in self.store.folders(self.root, "market=*/interval=*/symbol=*"):
            market, interval, symbol = (part.partition("=")[2] for part in folder.relative_to(self.root).parts)
            series = SeriesId(self.host, market, symbol, interval)
            if series.interval in INTERVAL_MS and SYMBOL_PATTERN.fullmatch(series.symbol):
                found.append(series)
        return found

    def read_period(
        self, series: SeriesId, start_ms: int, *, quarantine: bool = True, numeric: bool = False
    ) -> pa.Table | None:
        """The period's candles as the candle model (``numeric``: as stored, ``numeric_candles``), judged by the
        rule book; None if absent; an invalid or foreign file is quarantined (``quarantine=False``, a dry
        run's: only logged) and None returned."""
        path = self.period_path(series, start_ms)
        stamp: Stamp | None = None
        candles: pa.Table | None = None
        try:
            kept = None if self.store.remote else _known(path, stamp := _stamp(path)).table
            if hit := kept is not None:
                verdict, candles = FileValidation(path, True), kept if numeric else table_to_candles(kept)
            else:
                with self.store.open(path) as source, CPU_BOUND:
                    stamp = None if self.store.remote else _stamp(source.fileno())
                    judged = _known(path, stamp).judged
                    verdict, candles = judge_parquet(
                        source, series.interval, path, candles_from=0, numeric=numeric, judged=judged
                    )
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc
        why = self._foreign(series, path, read_period_info(path, self.store)) if verdict.valid else verdict.reason
        start, end = period_bounds(series.interval, start_ms)
        if why is None and candles is not None and len(candles):
            if first_open_ms(candles) < start or last_open_ms(candles) >= end:
                why = "it holds candles outside its period"
        if why is not None or candles is None:
            if quarantine:
                self.quarantine(path, why or "invalid")
            else:
                logger.warning("would quarantine %s: %s", path, why)
            return None
        if stamp is not None and not hit:
            keep = numeric and self.keeps_current and end > _ms(utc_now())
            _learned(path, stamp, table=candles if keep else None, judged=True)
        return candles

    def write_period(
        self,
        series: SeriesId,
        start_ms: int,
        candles: pa.Table,
        sources: list[dict[str, Any]],
        *,
        confirmed_empty: Callable[[int, int], bool] | None = None,
        now_ms: int | None = None,
        checked: bool = False,
    ) -> PeriodInfo:
        """Atomically replace the period's file with exactly these candles (candle model, all inside
        the period), verified (read back, rule book) before the rename; computes expected/present/gaps/
        complete (complete needs the period closed and every hole confirmed: by confirmed_empty(first, last)
        when given). Raises InvalidDataError and writes nothing if the candles break a rule.
        ``now_ms``: the exchange's time (default this machine's), what counts as closed. ``checked``: every
        candle and their order passed the rule book (a merge's): the bytes read back must decode to them."""
        start, end = period_bounds(series.interval, start_ms)
        path = self.period_path(series, start)
        if not len(candles):
            raise InvalidDataError(f"{path.name}: no candles for the period; nothing was written")
        first, last = first_open_ms(candles), last_open_ms(candles)
        if first < start or last >= end:
            raise InvalidDataError(
                f"{path.name}: candles from {ms_to_iso(first)} to {ms_to_iso(last)} are not all in it"
            )
        now = _ms(utc_now()) if now_ms is None else now_ms
        expected, grid_first, grid_last = expected_candles(series.interval, start, end, now)
        # Missing too: the grid candles before the first candle and after the last one (sentinels).
        opens = open_times(candles)
        opens = np.append(opens, next_open_ms(grid_last, series.interval)) if grid_last > last else opens
        holes = gaps(opens, series.interval, floor_open_ms(grid_first - 1, series.interval))
        last_close = next_open_ms(floor_open_ms(end - 1, series.interval), series.interval)
        closed = expected_candles(series.interval, start, end, last_close)[0] == expected
        # A hole counts as confirmed once a fetch that covered it came back without it (kept in the metadata:
        # a real outage of the exchange in the current period is no alert for the rest of the period).
        served_empty = [g for g in holes if confirmed_empty is not None and confirmed_empty(g[0], g[1])]
        confirmed = len(served_empty) == len(holes)
        metadata = {
            "cdx_period_start": str(start),
            "cdx_period_end": str(end),
            "cdx_expected": str(expected),
            "cdx_present": str(len(candles)),
            "cdx_gaps": json.dumps([list(g) for g in holes]),
            "cdx_sources": json.dumps(sources),
            "cdx_complete": "true" if closed and confirmed else "false",
            "cdx_confirmed_gaps": json.dumps([list(g) for g in served_empty]),
            "cdx_written_at": to_iso(utc_now()) or "",
        }
        with self.store.publishing(path) as target:  # on disk: ``path``; in a bucket: uploaded after
            codec: Literal["zstd", "none"] = "zstd" if closed else "none"  # the current period: every cycle
            self.format.write(
                target, candles, series.interval, series=series, metadata=metadata, compression=codec, checked=checked
            )
        info = _period_info(path, series, metadata, first, last)  # the footer just written and judged
        if self.store.remote:
            return info
        keep = self.keeps_current and not closed and not pa.types.is_string(candles.schema.field("close").type)
        _learned(path, _stamp(path), info=info, table=candles.combine_chunks() if keep else None, judged=True)
        return info

    def merge(
        self,
        series: SeriesId,
        candles: pa.Table,
        source: dict[str, Any] | list[dict[str, Any]],
        *,
        confirmed_empty: Callable[[int, int], bool] | None = None,
        now_ms: int | None = None,
        stored_by_start: dict[int, pa.Table] | None = None,
    ) -> list[PeriodInfo]:
        """Split by period; in each touched period: stored candles (read_period) UNION the new ones; for
        an open time in both, the new candle wins (the exchange's current value) and a warning counts
        how many differed (numerically); write_period each touched period; the sources list is the
        stored one plus ``source`` (or a backfill's list of them; no duplicate; a REST range overlapping
        the last one extends it, so a cycle's appends make one entry). A stored period to which the
        candles add nothing and change nothing is not written again (unless ``confirmed_empty`` may now
        complete it). ``stored_by_start``:
        periods the caller read with ``read_period`` under the same lock (not read and judged twice)."""
        written: list[PeriodInfo] = []
        if not len(candles):
            return written
        with CPU_BOUND:
            breach = check_candles(candles, series.interval)
        if breach is not None:
            raise InvalidDataError(f"new candles fail validation ({breach}); nothing was merged")
        for start, end in periods_between(series.interval, first_open_ms(candles), last_open_ms(candles) + 1):
            new = within(candles, start, end)
            if not len(new):
                continue
            stored = (stored_by_start or {}).get(start) or self.read_period(series, start, numeric=True)
            info = read_period_info(self.period_path(series, start), self.store) if stored is not None else None
            sources = info.sources if info else []
            for added in source if isinstance(source, list) else [source]:
                sources = _with_source(sources, added)
            if stored is not None and info is not None:
                # The merge's array work one thread at a time, as the encoding is (CPU_BOUND): thirty export
                # workers merging at once spent about a third of the cycle's CPU handing the GIL to each other.
                with CPU_BOUND:
                    new, changed = self._merged(stored, new, info.path)
                if not changed and not _may_confirm(info, series.interval, confirmed_empty, now_ms):
                    written.append(info)  # it adds and changes nothing
                    continue
            confirms = _or_confirmed_before(info, confirmed_empty)
            # Valid by construction: the new candles passed the rule book above, the stored ones when they were
            # read (read_period), and the union is in order.
            info = self.write_period(series, start, new, sources, confirmed_empty=confirms, now_ms=now_ms, checked=True)
            written.append(info)
        return written

    def _merged(self, stored: pa.Table, new: pa.Table, path: Path) -> tuple[pa.Table, bool]:
        """The stored candles with the new ones, and whether that changed them. Merged as numbers: only the new
        candles are converted, the stored ones kept as they are (an older file's number type converted too);
        for an open time in both the new candle wins and how many differed is logged."""
        new = numeric_candles(parquet_table(new, None, self.format.numbers))
        if stored.schema != new.schema:
            stored = numeric_candles(parquet_table(stored, None, self.format.numbers))
        both = _isin(open_times(stored), open_times(new))
        same = new.filter(pa.array(_isin(open_times(new), open_times(stored))))
        old = stored.filter(pa.array(both))
        differ = 0 if old.equals(same) else len(set().union(*differing_rows(old, same).values()))
        if differ:
            logger.warning("%s: %d stored candle(s) differ from the exchange's; replaced", path, differ)
        if not differ and both.sum() == len(new):
            return stored, False
        kept = within(stored, 0, first_open_ms(new))  # an append: the stored candles before the new ones
        ordered = len(kept) == len(stored) - both.sum()
        merged = pa.concat_tables([kept if ordered else stored.filter(pa.array(~both)), new]).combine_chunks()
        return (merged if ordered else merged.sort_by("open_time")), True

    def lock(
        self, series: SeriesId, *, wait: bool, stop: threading.Event | None = None
    ) -> contextlib.AbstractContextManager[bool]:
        """The series' one writer (``.lock`` flocked in its folder; in a bucket the ``.lease`` object): True if
        held; with wait=False a held lock yields False at once (the cycle skips that series with a note)."""
        return self.store.lock(self.series_folder(series), wait=wait, stop=stop)

    def quarantine(self, path: Path, reason: str) -> Path:
        """Move a file of the dataset outside the root (readers never see it), never deleting it."""
        path = Path(path if self.store.remote else os.path.abspath(path))
        target = self.quarantine_root / path.relative_to(self.root)
        target = target.with_name(target.name + self.store.quarantine_suffix)
        stem, suffix, number = target.stem, target.suffix, 1
        try:
            while self.store.exists(target):
                target = target.with_name(f"{stem}.{number}{suffix}")
                number += 1
            self.store.move(path, target)
        except OSError as exc:
            raise StorageError(f"cannot move {path} to quarantine: {exc.strerror or exc}") from exc
        logger.warning("quarantined %s -> %s: %s", self.store.name(path), self.store.name(target), reason)
        return target

    def remove_older_than(self, cutoff_ms: int) -> list[Path]:
        """Remove whole periods that end by ``cutoff_ms`` (DATASET_RETENTION_DAYS); returns them."""
        removed = []
        for series in self.all_series():
            for path in self._period_files(series):
                try:
                    start = _start_of(series.interval, path.stem)
                except ValueError:
                    continue  # not a period name of this interval: not ours
                if period_bounds(series.interval, start)[1] <= cutoff_ms:
                    if why := _other_host(series, path, read_period_info(path, self.store)):
                        logger.warning("%s; not removed", why)
                        continue
                    if not self.store.remove(path):
                        continue
                    logger.info(
                        "removed %s: the period ended before %s (DATASET_RETENTION_DAYS)", path, ms_to_iso(cutoff_ms)
                    )
                    removed.append(path)
        return removed


def fetched_between(first_ms: int, end_ms: int) -> Callable[[int, int], bool]:
    """``confirmed_empty`` of a fetch that asked for [first_ms, end_ms): a hole inside it was served empty."""
    return lambda first, last: first_ms <= first and last < end_ms


def _may_confirm(
    info: PeriodInfo, interval: str, confirmed_empty: Callable[[int, int], bool] | None, now_ms: int | None
) -> bool:
    """Whether writing an unchanged stored period again would confirm more of it: a hole newly served
    empty, or a period that has closed since it was written (then complete if every hole is confirmed)."""
    if info.complete or confirmed_empty is None:
        return False
    closes_at = next_open_ms(floor_open_ms(info.end_ms - 1, interval), interval)
    return closes_at <= (_ms(utc_now()) if now_ms is None else now_ms) or any(
        confirmed_empty(a, b) for a, b, _ in info.unconfirmed
    )


def _or_confirmed_before(
    info: PeriodInfo | None, confirmed_empty: Callable[[int, int], bool] | None
) -> Callable[[int, int], bool] | None:
    """``confirmed_empty``, or a hole inside one the stored period already records as served empty."""
    earlier = info.confirmed if info is not None else []
    if not earlier:
        return confirmed_empty
    return lambda a, b: any(x <= a and b <= y for x, y, _ in earlier) or bool(confirmed_empty and confirmed_empty(a, b))


def recent_closes(dataset: Dataset, series: SeriesId, last_open_ms: int, since_ms: int) -> list[float]:
    """The closes from ``since_ms`` on in the stored period that holds ``last_open_ms`` (a sparkline's data:
    the window a file of the files layout would show); [] when it cannot be read: a picture never fails a cycle."""
    path = dataset.period_path(series, period_bounds(series.interval, last_open_ms)[0])
    try:
        table = None if dataset.store.remote else _known(path, _stamp(path)).table
        if table is None:  # (the table the cycle just wrote, else the file's columns)
            with dataset.store.open(path) as source:
                table = pq.ParquetFile(source).read(columns=["open_time", "close"], use_threads=False)
    except Exception as exc:
        logger.debug("no sparkline for %s: %s", path, exc)
        return []
    recent = table["close"].slice(int(np.searchsorted(open_times(table), since_ms)))
    return [float(v) for v in pc.cast(recent, pa.float64()).to_pylist() if v is not None]


def _other_host(series: SeriesId, path: Path, info: PeriodInfo | None) -> str | None:
    """The one line saying that a period of this very series was written from another exchange host."""
    if (
        info is None
        or info.series is None
        or info.series == series
        or replace(info.series, exchange_host=series.exchange_host) != series
    ):
        return None
    return (
        f"{path} was written from {info.series.exchange_host}; this run's exchange is {series.exchange_host} "
        "(BINANCE_BASE_URL): use another EXPORT_DIR or the same exchange"
    )


def _with_source(sources: list[dict[str, Any]], source: dict[str, Any]) -> list[dict[str, Any]]:
    last = sources[-1] if sources else {}
    ends = [last.get("from_ms"), last.get("until_ms"), source.get("from_ms"), source.get("until_ms")]
    if last.get("kind") == source.get("kind") == "rest" and all(isinstance(v, int) for v in ends):
        first, until, new_first, new_until = (int(v) for v in ends)  # type: ignore[arg-type]
        if first <= new_until and new_first <= until:  # overlapping ranges: one entry
            return [*sources[:-1], {**last, "from_ms": min(first, new_first), "until_ms": max(until, new_until)}]
    return [s for s in sources if s != source] + [source]


def _isin(opens: np.ndarray, sorted_opens: np.ndarray) -> np.ndarray:
    """Which of ``opens`` are in ``sorted_opens`` (np.isin without hashing a year of open times)."""
    at = np.searchsorted(sorted_opens, opens).clip(max=len(sorted_opens) - 1)
    return np.asarray(sorted_opens[at] == opens) if len(sorted_opens) else np.zeros(len(opens), dtype=bool)


class DatasetSink:
    """The export job's sink in the dataset layout: what ``FileManager`` is to the rolling files, with
    the same methods. The stored candles of the window are the previous export (None if the window
    has holes: it is fetched again and merged); the candles written are merged into their periods;
    nothing is cut to the window and nothing is pruned (only ``DATASET_RETENTION_DAYS`` removes periods)."""

    def __init__(self, dataset: Dataset, interval: str) -> None:
        self.dataset, self.interval = dataset, interval
        self.stored: dict[int, pa.Table] = {}  # the periods ``newest_valid_export`` read, by start

    def for_interval(self, interval: str) -> DatasetSink:
        return DatasetSink(self.dataset, interval)

    def listed_once(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def writer(self, symbol: str) -> contextlib.AbstractContextManager[bool]:
        """The series' lock, not waited for: a series a backfill is writing is skipped this cycle."""
        return self.dataset.lock(self.dataset.series_of(symbol, self.interval), wait=False)

    def export_path(self, symbol: str) -> Path:
        """The period file a cycle writes now (the current period's)."""
        return self.dataset.period_path(self.dataset.series_of(symbol, self.interval), _ms(utc_now()))

    def newest_valid_export(
        self, symbol: str, *, quarantine: bool = True, record: CleanupResult | None = None, candles_from: int = 0
    ) -> ReusableExport | None:
        series = self.dataset.series_of(symbol, self.interval)
        spans = periods_between(self.interval, candles_from, _ms(utc_now()) + 1)
        newest = self.dataset._period_files(series)[-1:]  # its exchange host: no new period beside another's
        if newest and newest[0] != self.dataset.period_path(series, spans[-1][0]):  # (read_period checks that one)
            self.dataset._foreign(series, newest[0], read_period_info(newest[0], self.dataset.store))
        read = {
            start: self.dataset.read_period(series, start, quarantine=quarantine, numeric=True) for start, _ in spans
        }
        self.stored = {start: table for start, table in read.items() if table is not None}  # for write_export
        stored = list(self.stored.values())
        candles = table_to_candles(within(pa.concat_tables(stored), candles_from, _ms(utc_now()))) if stored else None
        if candles is None or not len(candles):
            return None
        path = self.dataset.period_path(series, period_bounds(self.interval, last_open_ms(candles))[0])
        if holes := gaps(open_times(candles), self.interval):
            logger.info("%s: %d candle(s) missing in the stored window; it is fetched again", path, holes[0][2])
            return None
        first, last = first_open_ms(candles), last_open_ms(candles)
        verdict = FileValidation(path, True, None, len(candles), first, last, series=series)
        return ReusableExport(
            ExportFile(path, symbol, self.interval, from_ms(last), 0, series.market), candles, verdict
        )

    def write_export(
        self,
        symbol: str,
        chunks: pa.Table | Iterable[pa.Table],
        *,
        replacing: ReusableExport | None = None,
        now_ms: int | None = None,
    ) -> tuple[Path, FileValidation]:
        parts = [chunks] if isinstance(chunks, pa.Table) else list(chunks)
        candles = pa.concat_tables(parts).combine_chunks()
        require_forward(last_open_ms(candles), replacing)
        first, last = first_open_ms(candles), last_open_ms(candles)
        source = {"kind": "rest", "from_ms": first, "until_ms": last}
        series = self.dataset.series_of(symbol, self.interval)
        # A hole between the window's first and last candle was asked for and not served: a stored window
        # with holes is fetched again whole (newest_valid_export), so only fetched ranges span one.
        served = fetched_between(first, last + 1)
        info = self.dataset.merge(
            series, candles, source, confirmed_empty=served, now_ms=now_ms, stored_by_start=self.stored
        )[-1]
        verdict = FileValidation(info.path, True, None, info.present, info.first_open_ms, info.last_open_ms)
        verdict.gaps, verdict.missing_candles, verdict.series = info.gaps, info.missing, info.series
        return info.path, verdict

    def cleanup(self, **_: object) -> CleanupResult:
        """Nothing: the look-back and DATA_RETENTION_DAYS never remove dataset periods."""
        return CleanupResult()
