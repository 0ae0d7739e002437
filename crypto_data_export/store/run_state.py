"""``state.json``: what the scheduler remembers between runs and restarts.

Counts, the last cycle, per-series last success and error, the loop's PID, and ``banned_until`` after a 418 (a restart
must not walk back into the ban); written atomically with our marker. Reading trusts nothing: a field of the wrong
type or range falls back to its default with one warning (losing a counter beats refusing to run). A file that is not
ours or not usable, or ours with wrong fields, is set aside under a new name (``state.json.foreign-<stamp>``,
``.corrupt-<stamp>``) before ours replaces it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from crypto_data_export.core.atomic_io import atomic_write_json
from crypto_data_export.core.clock import from_iso, iso_to_ms, utc_now
from crypto_data_export.core.errors import StorageError
from crypto_data_export.core.file_lock import WAIT_FOREVER, FileLock
from crypto_data_export.core.owned_json import CORRUPT, FOREIGN, MISSING, mark, read_owned_json, set_aside_or_fail
from crypto_data_export.core.text import printable
from crypto_data_export.settings.market_names import SPOT
from crypto_data_export.settings.symbols import SYMBOL_PATTERN
from crypto_data_export.store.layout import SERIES_KEY_PATTERN, ExportFolder, parse_export_name

logger = logging.getLogger(__name__)

STATE_FORMAT_VERSION = 1
MAX_COUNT = 10**12  # far beyond any real count; bigger is garbage, not history
MAX_PID = 4_194_304  # the kernel's upper bound for pid_max
MAX_TEXT = 2000  # an error message kept in the state file
MAX_SYMBOLS = 60_000  # series: symbols x intervals
# Binance's bans last from 2 minutes to 3 days: a ban said to end later is garbage, and
# trusting it would stop every export for good.
MAX_BAN = timedelta(days=4)
SERVICE_STATUSES = ("running", "stopped")


# -- field checks: each returns the value (maybe cut) or raises ValueError saying what it expects --
def _field(test: Callable[[Any], bool], expected: str, *, null: bool = False) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value is None and null:
            return None
        if not test(value):
            raise ValueError(expected)
        return value

    return check


def _whole(low: int, high: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


_count = _field(_whole(0, MAX_COUNT), "a whole number from 0")
_moment = _field(
    lambda v: isinstance(v, str) and len(v) <= 64 and from_iso(v) is not None, "an ISO-8601 time or null", null=True
)
_pid = _field(_whole(1, MAX_PID), "a process id or null", null=True)
_service_status = _field(lambda v: v in SERVICE_STATUSES, " or ".join(repr(s) for s in SERVICE_STATUSES))
_symbol_list = _field(
    lambda v: (
        isinstance(v, list)
        and len(v) <= MAX_SYMBOLS
        and all(isinstance(s, str) and SERIES_KEY_PATTERN.fullmatch(s) for s in v)
    ),
    "a list of symbols",
)


def _ban_end(value: Any) -> str | None:
    until = from_iso(_moment(value))
    if until is not None and until > utc_now() + MAX_BAN:
        raise ValueError(f"a ban end within {MAX_BAN.days} days")
    return value


def _text(value: Any) -> str | None:
    return None if value is None else _field(lambda v: isinstance(v, str), "a text or null")(value)[:MAX_TEXT]


# duration_ms: the stored start and end times have whole seconds, too coarse for a short cycle.
COUNTER_NAMES = ("calls", "weight", "rate_limited", "banned", "files_removed", "files_quarantined", "duration_ms")


def _counters(value: Any) -> dict[str, int]:
    if not isinstance(value, dict) or not set(value) <= set(COUNTER_NAMES):
        raise ValueError("an object of counters (" + ", ".join(COUNTER_NAMES) + ")")
    return {name: _count(number) for name, number in value.items()}


def _universe(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or len(value) > MAX_SYMBOLS:
        raise ValueError("an object of symbols and rules")
    if not all(isinstance(k, str) and SYMBOL_PATTERN.fullmatch(k) and isinstance(v, str) for k, v in value.items()):
        raise ValueError("an object of symbols and rules")
    return {k: v[:200] for k, v in value.items()}


def _read_by(check: Callable[[Any], Any], default: Any = None, *, factory: Callable[[], Any] | None = None) -> Any:
    """A field read from state.json through ``check`` (``_checked``)."""
    if factory is not None:
        return field(default_factory=factory, metadata={"check": check})
    return field(default=default, metadata={"check": check})


@dataclass
class SymbolState:
    last_success: str | None = _read_by(_moment)
    last_file: str | None = _read_by(_text)
    last_error: str | None = _read_by(_text)
    last_error_at: str | None = _read_by(_moment)
    last_error_kind: str | None = _read_by(_text)
    # The exchange had no candle from empty_from up to data_from (a listing inside the window).
    empty_from: str | None = _read_by(_moment)
    data_from: str | None = _read_by(_moment)

    def known_empty(self) -> tuple[int, int] | None:
        start, end = iso_to_ms(self.empty_from), iso_to_ms(self.data_from)
        return None if start is None or end is None or end < start else (start, end)


@dataclass
class RunState:
    export_count: int = _read_by(_count, 0)
    cleanup_count: int = _read_by(_count, 0)
    last_cycle_start: str | None = _read_by(_moment)
    last_cycle_end: str | None = _read_by(_moment)
    last_cycle_result: str | None = _read_by(_text)
    last_successful_cycle: str | None = _read_by(_moment)
    last_cycle_failed_symbols: list[str] = _read_by(_symbol_list, factory=list)
    # The last cycle's requests, weight, 429s, 418s, files removed and quarantined (COUNTER_NAMES).
    last_cycle_counters: dict[str, int] = _read_by(_counters, factory=dict)
    last_exchange_contact: str | None = _read_by(_moment)
    banned_until: str | None = _read_by(_ban_end)
    service_pid: int | None = _read_by(_pid)
    service_status: str = _read_by(_service_status, "stopped")
    service_started: str | None = _read_by(_moment)
    next_run: str | None = _read_by(_moment)  # the running loop's next cycle, as schedule planned it
    symbols: dict[str, SymbolState] = field(default_factory=dict)
    # The symbol universe as last resolved (symbol -> the rule that selected it, in order):
    # --status shows it without asking the exchange, and cleanup keeps protecting its
    # symbols' newest files while the exchange cannot be reached.
    universe: dict[str, str] = _read_by(_universe, factory=dict)
    universe_resolved_at: str | None = _read_by(_moment)
    # What reading or repairing the file found, for the CLI to show; never written.
    notices: list[str] = field(default_factory=list, compare=False, repr=False)

    def ban_end(self) -> datetime | None:
        """The end of a ban still in force, else None."""
        until = from_iso(self.banned_until)
        return until if until is not None and until > utc_now() else None

    def symbol(self, name: str) -> SymbolState:
        return self.symbols.setdefault(name, SymbolState())

    # ``symbols`` is keyed by series (``crypto_data_export.store.layout.series_key``): the symbol alone for one
    # spot interval (the layout every earlier version wrote), else SYMBOL_interval or
    # SYMBOL_market_interval. An entry under the plain symbol whose last file belongs to a
    # series is that series' memory: found and moved on the first write, never lost.
    def find_series(self, key: str, symbol: str, interval: str, market: str = SPOT) -> SymbolState | None:
        entry = self.symbols.get(key)
        if entry is not None or key == symbol:
            return entry
        legacy = self.symbols.get(symbol)
        if legacy is None or legacy.last_file is None:
            return None
        parsed = parse_export_name(Path(legacy.last_file).name)
        if parsed is None or (parsed.symbol, parsed.interval, parsed.market) != (symbol, interval, market):
            return None
        return legacy

    def series(self, key: str, symbol: str, interval: str, market: str = SPOT) -> SymbolState:
        """The entry of one series, taken over from a legacy per-symbol entry if that one is its."""
        entry = self.find_series(key, symbol, interval, market)
        if entry is None:
            return self.symbol(key)
        if key not in self.symbols:
            self.symbols[key] = SymbolState(**asdict(entry))
        return self.symbols[key]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("notices")
        return mark(data, STATE_FORMAT_VERSION)


def _shown(value: Any) -> str:
    return printable(repr(value), 40)


def _checked(data: dict[str, Any], kind: type, where: str, problems: list[str]) -> dict:
    """The fields of ``data`` that pass their check; a failing one is noted and left to its default."""
    good: dict[str, Any] = {}
    for name, check in ((f.name, f.metadata["check"]) for f in fields(kind) if "check" in f.metadata):
        if name not in data:
            continue
        try:
            good[name] = check(data[name])
        except ValueError as exc:
            problems.append(f"{where}{name} is {_shown(data[name])}, expected {exc}")
    return good


def _symbols(value: Any, problems: list[str]) -> dict[str, SymbolState]:
    if not isinstance(value, dict) or len(value) > MAX_SYMBOLS:
        problems.append(f"symbols is {_shown(value)}, expected an object of symbols")
        return {}
    symbols: dict[str, SymbolState] = {}
    for name, values in value.items():
        if not SERIES_KEY_PATTERN.fullmatch(name):
            problems.append(f"symbols has the entry {_shown(name)}, not a symbol or series")
        elif not isinstance(values, dict):
            problems.append(f"symbols.{name} is {_shown(values)}, expected an object")
        else:
            symbols[name] = SymbolState(**_checked(values, SymbolState, f"symbols.{name}.", problems))
    return symbols


def state_from_dict(data: dict[str, Any]) -> tuple[RunState, list[str]]:
    """A RunState from parsed JSON, field by field; the second item lists what was wrong."""
    problems: list[str] = []
    state = RunState(**_checked(data, RunState, "", problems))
    if "symbols" in data:
        state.symbols = _symbols(data["symbols"], problems)
    return state, problems


def _load(path: Path) -> tuple[RunState, str, str]:
    """(state, verdict, problem); verdict: MISSING, "ok", "repaired", FOREIGN or CORRUPT."""
    found = read_owned_json(path)
    if found.data is None:
        return RunState(), found.verdict, found.problem
    state, problems = state_from_dict(found.data)
    if not problems:
        return state, "ok", ""
    return state, "repaired", "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")


def _notice(verdict: str, problem: str, path: Path, aside: Path | None = None) -> str | None:
    if verdict == "repaired":
        what = f"state file {path} has wrong fields ({problem}); they start from their defaults"
    elif verdict in (FOREIGN, CORRUPT):
        owner = "is not ours" if verdict == FOREIGN else "is unusable"
        what = f"state file {path} {owner} ({problem}); starting from a fresh state"
    else:
        return None
    if aside is not None:
        what += f"; the old file was kept as {aside.name}"
    return printable(what, 1000)


def _tell(state: RunState, notice: str | None) -> None:
    if notice is not None:
        logger.warning("%s", notice)
        state.notices.append(notice)


def load_state(folder: Path, *, quiet: bool = False) -> RunState:
    """The state as it is on disk (nothing is changed); ``quiet``: the caller writes it soon
    (``update_state`` reports the problem with where the old file was kept)."""
    path = ExportFolder(Path(folder)).state
    state, verdict, problem = _load(path)
    if not quiet:
        _tell(state, _notice(verdict, problem, path))
    return state


def _cannot_open_state_lock(path: Path, exc: OSError) -> StorageError:
    return StorageError(
        f"cannot open the state lock {path}: {exc.strerror or exc}; remove it if it is a symlink or not a regular file"
    )


def update_state(folder: Path, change: Callable[[RunState], None]) -> RunState:
    """Read-modify-write of state.json under a short exclusive lock: the loop and a cron
    ``--manual`` run finishing together must not drop each other's counts. A file that is not
    ours, or not clean, is first kept under a new name."""
    paths = ExportFolder(Path(folder))
    path = paths.state
    with FileLock(paths.state_lock, wait_seconds=WAIT_FOREVER, on_error=_cannot_open_state_lock):
        state, verdict, problem = _load(path)
        if verdict not in (MISSING, "ok"):
            aside = set_aside_or_fail(path, FOREIGN if verdict == FOREIGN else CORRUPT, problem)
            _tell(state, _notice(verdict, problem, path, aside))
        change(state)
        atomic_write_json(path, state.to_dict())
        return state
