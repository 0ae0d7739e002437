"""Every fixed name in the export folder, in one place.

    historical_exports/
        {SYMBOL}_{INTERVAL}_{YYYYMMDD_HHMMSS}.csv   exports (one function builds the name, one regex parses it)
        {SYMBOL}_{MARKET}_{INTERVAL}_{...}.csv      exports of a market other than spot (e.g. BTCUSDT_usdm_1h_...)
        .{name}.{pid}.{8 hex}.cdx.tmp               a write in progress (core.atomic_io) of one of our names
        quarantine/                                 invalid files, moved aside, never deleted
        state.json  .state.lock                     the scheduler's memory between runs
        status_report.json                          the guide's status report
        status.html                                 the same, as one self-contained page for people
        metrics/exporter.prom                       Prometheus textfile metrics (METRICS_FILE; never scanned)
        .run.lock                                   one cycle at a time (cron and the service)
        .service.lock  data_export_service.pid      the background service
        export_log.log                              the exporter's log
        logs/scheduled_data_manager.log  logs/data_export_service.log
        .archive_cache/                             verified archive zips of an unfinished backfill (resume)
        .backfill_partial/                          REST pages of an unfinished backfill (resume journals)

A name that does not match ``EXPORT_NAME_PATTERN`` (or ``our_temp_name``) is
not ours: it is never read as data, moved or deleted.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from crypto_data_export.core.atomic_io import TEMP_NAME_PATTERN
from crypto_data_export.core.clock import as_utc
from crypto_data_export.settings.intervals import VALID_INTERVALS
from crypto_data_export.settings.market_names import SPOT, VALID_MARKETS
from crypto_data_export.settings.settings import EXPORT_FORMATS
from crypto_data_export.settings.symbols import SYMBOL_RULE

QUARANTINE_DIR_NAME = "quarantine"
LOGS_DIR_NAME = "logs"
STATE_NAME = "state.json"
STATE_LOCK_NAME = ".state.lock"
STATUS_NAME = "status_report.json"
STATUS_PAGE_NAME = "status.html"
# Metrics go to a subfolder (node_exporter's textfile collector reads a whole folder): scans never enter it.
METRICS_DIR_NAME = "metrics"
METRICS_FILE_NAME = "exporter.prom"
RUN_LOCK_NAME = ".run.lock"
SERVICE_LOCK_NAME = ".service.lock"
PIDFILE_NAME = "data_export_service.pid"
EXPORT_LOG_NAME = "export_log.log"
MANAGER_LOG_NAME = "scheduled_data_manager.log"
SERVICE_LOG_NAME = "data_export_service.log"
ARCHIVE_CACHE_DIR_NAME = ".archive_cache"
BACKFILL_PARTIAL_DIR_NAME = ".backfill_partial"
# Backfills go to a subfolder: the scheduler's scans and retention never enter subfolders.
BACKFILL_DIR_NAME = "backfill"

STAMP_FORMAT = "%Y%m%d_%H%M%S"
_INTERVALS_RE = "|".join(re.escape(i) for i in VALID_INTERVALS)
# A format's files end with "." + its name: naming files needs no format class (nor pyarrow, which
# --status and --health never load).
_SUFFIXES_RE = "|".join(re.escape(f".{name}") for name in EXPORT_FORMATS)
# Spot names carry no market (the guide's names); every other market is named. No market
# name is an interval and symbols have no "_", so the optional group is never ambiguous.
_MARKETS_RE = "|".join(re.escape(m) for m in VALID_MARKETS if m != SPOT)
EXPORT_NAME_PATTERN = re.compile(
    rf"^(?P<symbol>{SYMBOL_RULE})_(?:(?P<market>{_MARKETS_RE})_)?(?P<interval>{_INTERVALS_RE})_"
    rf"(?P<stamp>\d{{8}}_\d{{6}})(?P<suffix>{_SUFFIXES_RE})$"
)


class ExportName(NamedTuple):
    """What an export name says. ``market`` comes last, so ``name[0]``/``name[1]`` stay symbol/interval."""

    symbol: str
    interval: str
    created: datetime
    market: str = SPOT


def series_key(symbol: str, interval: str, market: str = SPOT, *, single: bool = True) -> str:
    """The name of one export series (state.json, the status report, the console).

    ``single`` (one configured interval, spot): the symbol alone, the guide's keys;
    else ``{SYMBOL}_{interval}``, or ``{SYMBOL}_{market}_{interval}`` off spot.
    """
    if single and market == SPOT:
        return symbol
    return f"{symbol}_{interval}" if market == SPOT else f"{symbol}_{market}_{interval}"


SERIES_KEY_PATTERN = re.compile(
    rf"^(?P<symbol>{SYMBOL_RULE})(?:_(?:(?P<market>{_MARKETS_RE})_)?(?P<interval>{_INTERVALS_RE}))?$"
)


@dataclass(frozen=True)
class ExportFolder:
    """The paths of one export folder."""

    root: Path

    @property
    def quarantine(self) -> Path:
        return self.root / QUARANTINE_DIR_NAME

    @property
    def logs(self) -> Path:
        return self.root / LOGS_DIR_NAME

    @property
    def state(self) -> Path:
        return self.root / STATE_NAME

    @property
    def state_lock(self) -> Path:
        return self.root / STATE_LOCK_NAME

    @property
    def status_report(self) -> Path:
        return self.root / STATUS_NAME

    @property
    def status_page(self) -> Path:
        return self.root / STATUS_PAGE_NAME

    @property
    def metrics_file(self) -> Path:
        return self.root / METRICS_DIR_NAME / METRICS_FILE_NAME

    @property
    def run_lock(self) -> Path:
        return self.root / RUN_LOCK_NAME

    @property
    def service_lock(self) -> Path:
        return self.root / SERVICE_LOCK_NAME

    @property
    def pidfile(self) -> Path:
        return self.root / PIDFILE_NAME

    @property
    def export_log(self) -> Path:
        return self.root / EXPORT_LOG_NAME

    @property
    def manager_log(self) -> Path:
        return self.logs / MANAGER_LOG_NAME

    @property
    def service_log(self) -> Path:
        return self.logs / SERVICE_LOG_NAME

    @property
    def archive_cache(self) -> Path:
        return self.root / ARCHIVE_CACHE_DIR_NAME

    @property
    def backfill_partial(self) -> Path:
        return self.root / BACKFILL_PARTIAL_DIR_NAME

    @property
    def backfill(self) -> Path:
        return self.root / BACKFILL_DIR_NAME


def export_file_name(symbol: str, interval: str, created: datetime, suffix: str = ".csv", market: str = SPOT) -> str:
    """``{SYMBOL}_{INTERVAL}_{YYYYMMDD_HHMMSS}.csv`` (``suffix``: the format's) with the UTC creation time
    (``{SYMBOL}_{market}_{INTERVAL}_...`` off spot)."""
    return f"{export_name_prefix(symbol, interval, market)}{as_utc(created).strftime(STAMP_FORMAT)}{suffix}"


@functools.lru_cache(maxsize=1 << 16)
def parse_export_name(name: str) -> ExportName | None:
    """(symbol, interval, created, market) for one of our names, else None.

    Cached and parsed without ``strptime`` (4x slower): every folder scan
    parses every name, and a pass over a crowded folder scans it often.
    """
    match = EXPORT_NAME_PATTERN.fullmatch(name)
    if match is None:
        return None
    stamp = match["stamp"]  # YYYYMMDD_HHMMSS, all digits (the pattern says so)
    try:
        created = datetime(
            int(stamp[0:4]),
            int(stamp[4:6]),
            int(stamp[6:8]),
            int(stamp[9:11]),
            int(stamp[11:13]),
            int(stamp[13:15]),
            tzinfo=UTC,
        )
    except ValueError:
        return None
    return ExportName(match["symbol"], match["interval"], created, match["market"] or SPOT)


# Files of ours that are replaced atomically besides the exports: their temp leftovers are ours too.
ATOMIC_NAMES = frozenset({STATE_NAME, STATUS_NAME, PIDFILE_NAME})


def our_temp_name(name: str) -> re.Match[str] | None:
    """The temp-name match if ``name`` is a temp file of ours: ``atomic_io``'s
    pattern (with its tag) and a final name that is ours (an export or one of
    ``ATOMIC_NAMES``). A look-alike for any other name is left alone."""
    match = TEMP_NAME_PATTERN.fullmatch(name)
    if match is None:
        return None
    final = match["final"]
    return match if final in ATOMIC_NAMES or parse_export_name(final) is not None else None


def export_name_prefix(symbol: str, interval: str | None = None, market: str = SPOT) -> str:
    """The start every export name of ``symbol`` (and ``interval`` of ``market``) has.

    Symbols have no ``_``, so ``BTCUSDT_`` never matches ``BTCUSDTX_...``: a
    prefix test can drop other symbols' names before any parse or stat. No
    market name is an interval, so ``BTCUSDT_1h_`` (spot) never matches
    ``BTCUSDT_usdm_1h_...`` and the other way round. Without ``interval``
    the prefix covers every series of the symbol.
    """
    if not interval:
        return f"{symbol}_"
    return f"{symbol}_{interval}_" if market == SPOT else f"{symbol}_{market}_{interval}_"
