"""Every fixed name in the export folder, in one place (``ExportFolder``; the map for people: docs/files.md).

Exports are ``{SYMBOL}_{INTERVAL}_{YYYYMMDD_HHMMSS}.csv`` (``{SYMBOL}_{MARKET}_{INTERVAL}_...`` off spot, e.g.
``BTCUSDT_usdm_1h_...``): one function builds the name, one regex parses it. ``.{name}.{pid}.{8 hex}.cdx.tmp`` is
a write in progress (core.atomic_io) of one of our names. A name that does not match ``EXPORT_NAME_PATTERN`` (or
``our_temp_name``) is not ours: it is never read as data, moved or deleted.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from crypto_data_export.core.atomic_io import TEMP_NAME_PATTERN
from crypto_data_export.core.clock import as_utc
from crypto_data_export.core.intervals import VALID_INTERVALS
from crypto_data_export.settings.market_names import SPOT, VALID_MARKETS
from crypto_data_export.settings.settings import EXPORT_FORMATS
from crypto_data_export.settings.symbols import SYMBOL_RULE

QUARANTINE_DIR_NAME = "quarantine"
RUN_LOCK_NAME = ".run.lock"
STATE_NAME, STATUS_NAME, PIDFILE_NAME = "state.json", "status_report.json", "data_export_service.pid"
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
    """The name of one series (state.json, the status report, the console): the symbol alone
    when ``single`` (one spot interval, the guide's keys), else ``{SYMBOL}_[{market}_]{interval}``."""
    if single and market == SPOT:
        return symbol
    return f"{symbol}_{interval}" if market == SPOT else f"{symbol}_{market}_{interval}"


SERIES_KEY_PATTERN = re.compile(
    rf"^(?P<symbol>{SYMBOL_RULE})(?:_(?:(?P<market>{_MARKETS_RE})_)?(?P<interval>{_INTERVALS_RE}))?$"
)


class ExportFolder:
    """The paths of one export folder."""

    def __init__(self, root: Path) -> None:
        self.root = root = Path(root)
        self.quarantine = root / QUARANTINE_DIR_NAME
        self.logs = root / "logs"
        self.state = root / STATE_NAME
        self.state_lock = root / ".state.lock"
        self.status_report = root / STATUS_NAME
        self.status_page = root / "status.html"
        # A subfolder (node_exporter's textfile collector reads a whole folder): scans never enter it.
        self.metrics_file = root / "metrics" / "exporter.prom"
        self.run_lock = root / RUN_LOCK_NAME
        self.service_lock = root / ".service.lock"
        self.pidfile = root / PIDFILE_NAME
        self.export_log = root / "export_log.log"
        self.manager_log = self.logs / "scheduled_data_manager.log"
        self.service_log = self.logs / "data_export_service.log"
        self.archive_cache = root / ".archive_cache"
        self.backfill_partial = root / ".backfill_partial"
        self.dataset_footers = root / ".dataset_footers.json"
        # Backfills go to a subfolder: the scheduler's scans and retention never enter subfolders.
        self.backfill = root / "backfill"


def export_file_name(symbol: str, interval: str, created: datetime, suffix: str = ".csv", market: str = SPOT) -> str:
    """``{SYMBOL}_{INTERVAL}_{YYYYMMDD_HHMMSS}.csv`` (``suffix``: the format's) with the UTC creation time
    (``{SYMBOL}_{market}_{INTERVAL}_...`` off spot)."""
    return f"{export_name_prefix(symbol, interval, market)}{as_utc(created).strftime(STAMP_FORMAT)}{suffix}"


@functools.lru_cache(maxsize=1 << 16)
def parse_export_name(name: str) -> ExportName | None:
    """(symbol, interval, created, market) for one of our names, else None; cached and without
    ``strptime`` (4x slower): every scan parses every name."""
    match = EXPORT_NAME_PATTERN.fullmatch(name)
    if match is None:
        return None
    t = match["stamp"]  # YYYYMMDD_HHMMSS, all digits (the pattern says so)
    try:
        created = datetime(int(t[:4]), int(t[4:6]), int(t[6:8]), int(t[9:11]), int(t[11:13]), int(t[13:]), tzinfo=UTC)
    except ValueError:
        return None
    return ExportName(match["symbol"], match["interval"], created, match["market"] or SPOT)


# Files of ours that are replaced atomically besides the exports: their temp leftovers are ours too.
ATOMIC_NAMES = frozenset({STATE_NAME, STATUS_NAME, PIDFILE_NAME})


def our_temp_name(name: str) -> re.Match[str] | None:
    """The temp-name match if ``name`` is a temp file of ours (``atomic_io``'s pattern and a final
    name that is an export or one of ``ATOMIC_NAMES``), else None."""
    match = TEMP_NAME_PATTERN.fullmatch(name)
    if match is None:
        return None
    final = match["final"]
    return match if final in ATOMIC_NAMES or parse_export_name(final) is not None else None


def export_name_prefix(symbol: str, interval: str | None = None, market: str = SPOT) -> str:
    """The start of every export name of ``symbol`` (every series without ``interval``). Symbols have no ``_`` and no
    market name is an interval, so ``BTCUSDT_1h_`` matches neither ``BTCUSDTX_...`` nor ``BTCUSDT_usdm_1h_...``: a
    prefix test drops other series."""
    if not interval:
        return f"{symbol}_"
    return f"{symbol}_{interval}_" if market == SPOT else f"{symbol}_{market}_{interval}_"
