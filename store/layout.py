"""Every fixed name in the export folder, in one place.

    historical_exports/
        {SYMBOL}_{INTERVAL}_{YYYYMMDD_HHMMSS}.csv   exports (one function builds the name, one regex parses it)
        .{name}.{pid}.{8 hex}.cdx.tmp               a write in progress (common.atomic_io) of one of our names
        quarantine/                                 invalid files, moved aside, never deleted
        state.json  .state.lock                     the scheduler's memory between runs
        status_report.json                          the guide's status report
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

from common.atomic_io import TEMP_NAME_PATTERN
from common.clock import as_utc
from config.intervals import VALID_INTERVALS
from config.symbols_config import SYMBOL_RULE
from store.formats import DEFAULT_FORMAT, FORMATS, FileFormat

QUARANTINE_DIR_NAME = "quarantine"
LOGS_DIR_NAME = "logs"
STATE_NAME = "state.json"
STATE_LOCK_NAME = ".state.lock"
STATUS_NAME = "status_report.json"
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
_SUFFIXES_RE = "|".join(re.escape(f.suffix) for f in FORMATS.values())
EXPORT_NAME_PATTERN = re.compile(
    rf"^(?P<symbol>{SYMBOL_RULE})_(?P<interval>{_INTERVALS_RE})_(?P<stamp>\d{{8}}_\d{{6}})(?P<suffix>{_SUFFIXES_RE})$"
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


def export_file_name(symbol: str, interval: str, created: datetime, file_format: FileFormat = DEFAULT_FORMAT) -> str:
    """``{SYMBOL}_{INTERVAL}_{YYYYMMDD_HHMMSS}.csv`` with the UTC creation time."""
    return f"{symbol}_{interval}_{as_utc(created).strftime(STAMP_FORMAT)}{file_format.suffix}"


@functools.lru_cache(maxsize=1 << 16)
def parse_export_name(name: str) -> tuple[str, str, datetime] | None:
    """(symbol, interval, created) for one of our names, else None.

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
    return match["symbol"], match["interval"], created


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


def export_name_prefix(symbol: str, interval: str | None = None) -> str:
    """The start every export name of ``symbol`` (and ``interval``) has.

    Symbols have no ``_``, so ``BTCUSDT_`` never matches ``BTCUSDTX_...``: a
    prefix test can drop other symbols' names before any parse or stat.
    """
    return f"{symbol}_{interval}_" if interval else f"{symbol}_"
