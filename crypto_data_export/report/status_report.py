"""``status_report.json`` and the health checks, built from state and files.

The top-level keys and their types are the guide's example, exactly
(``timestamp``, ``system_status``, ``configuration``, ``file_statistics``);
``symbols`` and ``health`` are added so an operator sees per symbol what is
there, how old it is, what is missing (gaps) and what failed, and our marker
(``writer``, ``format_version``) so that a file of that name written by
someone else is set aside, never overwritten.

Health judges the data, not the files: a symbol is fresh only if its newest
closed candle is recent enough for the interval and the export period. A
file rewritten a minute ago whose last candle is a day old (an outage at the
exchange's end, a halted market) is stale.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crypto_data_export.core.atomic_io import atomic_write_json
from crypto_data_export.core.clock import from_iso, ms_to_iso, to_iso, utc_now
from crypto_data_export.core.errors import StorageError
from crypto_data_export.core.exit_codes import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from crypto_data_export.core.owned_json import CORRUPT, MISSING, OURS, mark, read_owned_json, set_aside
from crypto_data_export.core.text import printable
from crypto_data_export.pipeline.selection import known_selection
from crypto_data_export.settings.intervals import next_open_ms
from crypto_data_export.settings.settings import Settings
from crypto_data_export.store.exports import ExportFile, latest_per_series
from crypto_data_export.store.layout import ExportFolder, parse_export_name, series_key
from crypto_data_export.store.run_state import RunState
from crypto_data_export.store.validation import FileValidation

logger = logging.getLogger(__name__)

HEALTHY, DEGRADED, DOWN = "healthy", "degraded", "down"
HEALTH_EXIT_CODES = {HEALTHY: EXIT_OK, DEGRADED: EXIT_FAILED, DOWN: EXIT_USAGE}
STATUS_FORMAT_VERSION = 1
# Beyond one interval and one period, a cycle needs time to run and the exchange's clock may lag.
FRESHNESS_GRACE_SECONDS = 300


def _number(value: float) -> int | float:
    """2 stays 2 (as in the guide's example); 0.5 stays 0.5."""
    return int(value) if float(value).is_integer() else value


def _hours_since(moment: datetime | None, now: datetime) -> float | None:
    return None if moment is None else round((now - moment).total_seconds() / 3600, 2)


def _loaded_reason(symbols: dict[str, dict[str, Any]]) -> str:
    """``11 symbols configured``, naming the series too when they are more than the symbols."""
    names = {entry.get("symbol", key) for key, entry in symbols.items()}
    series = f" ({len(symbols)} series)" if len(symbols) != len(names) else ""
    return f"{len(names)} symbols configured{series}"


def _cycle_seconds(state: RunState) -> float | None:
    """The last cycle's length: measured in ms when recorded, else from its whole-second times."""
    measured = state.last_cycle_counters.get("duration_ms")
    if measured is not None:
        return round(measured / 1000, 3)
    return _duration(state.last_cycle_start, state.last_cycle_end)


def _duration(started: str | None, finished: str | None) -> float | None:
    start, end = from_iso(started), from_iso(finished)
    return None if start is None or end is None else round((end - start).total_seconds(), 3)


def freshness_limit_seconds(settings: Settings, last_open_ms: int, interval: str | None = None) -> float:
    """How long after its close the newest candle may stay the newest: one more candle
    (its real length, so months work too), one export period, and a grace for the cycle."""
    interval = interval or settings.kline_interval
    following_open = next_open_ms(last_open_ms, interval)
    following_length = (next_open_ms(following_open, interval) - following_open) / 1000
    return following_length + settings.export_period_hours * 3600 + FRESHNESS_GRACE_SECONDS


def _freshness(settings: Settings, last_open_ms: int | None, now: datetime, interval: str) -> dict[str, Any]:
    if last_open_ms is None:
        return {"fresh": False, "newest_close_age_hours": None, "fresh_limit_hours": None}
    close = datetime.fromtimestamp(next_open_ms(last_open_ms, interval) / 1000, tz=UTC)
    age = (now - close).total_seconds()
    limit = freshness_limit_seconds(settings, last_open_ms, interval)
    return {
        "fresh": age <= limit,
        "newest_close_age_hours": round(age / 3600, 2),
        "fresh_limit_hours": round(limit / 3600, 2),
    }


def symbol_entry(
    symbol: str,
    result: FileValidation | None,
    state: RunState,
    now: datetime,
    settings: Settings,
    interval: str | None = None,
) -> dict[str, Any]:
    """The report of one series (``symbol``, ``interval`` (default: KLINE_INTERVAL), BINANCE_MARKET)."""
    interval = interval or settings.kline_interval
    key = series_key(symbol, interval, settings.market, single=settings.single_series)
    sym_state = state.find_series(key, symbol, interval, settings.market)
    entry: dict[str, Any] = {
        "symbol": symbol,
        "interval": interval,
        "market": settings.market,
        "latest_file": None,
        "rows": 0,
        "first_candle": None,
        "last_candle": None,
        "age_hours": None,
        "last_candle_age_hours": None,
        "gaps": [],
        "missing_candles": 0,
        "valid": False,
        "reason": "no export file",
        "last_success": None,
        "last_error": None,
        "fresh": False,
        "newest_close_age_hours": None,
        "fresh_limit_hours": None,
    }
    if result is not None:
        parsed = parse_export_name(Path(result.path).name)
        last_ms = result.last_open_ms
        entry.update(
            {
                "latest_file": Path(result.path).name,
                "rows": result.rows,
                "first_candle": ms_to_iso(result.first_open_ms),
                "last_candle": ms_to_iso(last_ms),
                "age_hours": _hours_since(parsed[2] if parsed else None, now),
                "last_candle_age_hours": None
                if last_ms is None
                else _hours_since(datetime.fromtimestamp(last_ms / 1000, tz=UTC), now),
                "gaps": result.to_dict()["gaps"],
                "missing_candles": result.missing_candles,
                "valid": result.valid,
                "reason": result.reason,
            }
        )
        if result.valid:
            entry.update(_freshness(settings, last_ms, now, interval))
    if sym_state is not None:
        failing = sym_state.last_error is not None
        entry.update(
            {
                "last_success": sym_state.last_success,
                "last_error": sym_state.last_error if failing else None,
                "last_error_at": sym_state.last_error_at if failing else None,
            }
        )
    return entry


@dataclass
class HealthCheck:
    name: str
    passed: bool
    reason: str
    severity: str = DOWN  # what a failure of this check makes the whole system


def health_checks(
    settings: Settings, state: RunState, symbols: dict[str, dict[str, Any]], now: datetime
) -> list[HealthCheck]:
    """The export folder, the guide's four checks, and per-symbol freshness of the data."""
    period_h = settings.export_period_hours
    # Two periods, plus the grace a cycle needs to run (the same as the candles' freshness).
    activity_limit_s = 2 * period_h * 3600 + FRESHNESS_GRACE_SECONDS
    logs = settings.export_dir / "logs"
    last_ok = from_iso(state.last_successful_cycle)
    contact = from_iso(state.last_exchange_contact)
    ban = state.ban_end()
    folder_problem = export_folder_problem(settings.export_dir)
    checks = [
        HealthCheck(
            "export_folder",
            folder_problem is None,
            f"{settings.export_dir} is a folder" if folder_problem is None else folder_problem,
        ),
        HealthCheck("logs_directory", logs.is_dir(), f"{logs} exists" if logs.is_dir() else f"{logs} is missing"),
        HealthCheck(
            "exporter_initialized",
            contact is not None and ban is None,
            f"banned by the exchange until {to_iso(ban)}"
            if ban
            else (f"exchange last answered at {to_iso(contact)}" if contact else "the exchange was never reached"),
            DEGRADED if contact is not None else DOWN,
        ),
        HealthCheck("symbols_loaded", bool(symbols), _loaded_reason(symbols)),
        HealthCheck(
            "recent_activity",
            last_ok is not None and (now - last_ok).total_seconds() <= activity_limit_s,
            f"last successful cycle {to_iso(last_ok)}, limit {activity_limit_s / 3600:.4g} h"
            if last_ok
            else "no successful cycle yet",
        ),
    ]
    stale = [_stale_reason(s, e) for s, e in symbols.items() if not (e["valid"] and e.get("fresh"))]
    failing = [s for s, e in symbols.items() if e.get("last_error")]
    checks.append(
        HealthCheck(
            "symbols_fresh",
            not stale,
            "every symbol's newest candle closed within one interval and one period"
            if not stale
            else "stale or missing: " + ", ".join(stale),
            DEGRADED,
        )
    )
    checks.append(
        HealthCheck(
            "symbols_exporting",
            not failing,
            "no symbol failing" if not failing else "failing: " + ", ".join(failing),
            DEGRADED,
        )
    )
    return checks


def _stale_reason(symbol: str, entry: dict[str, Any]) -> str:
    if not entry["valid"]:
        return f"{symbol} ({entry['reason'] or 'invalid'})"
    age, limit = entry.get("newest_close_age_hours"), entry.get("fresh_limit_hours")
    if age is None:
        return f"{symbol} (no candle)"
    return f"{symbol} (newest candle closed {age:g} h ago, limit {limit:g} h)"


def export_folder_problem(folder: Path) -> str | None:
    """None if the export folder is a folder (the operator may point EXPORT_DIR through a link);
    else what it is instead."""
    try:
        info = os.stat(folder)
    except FileNotFoundError:
        return f"{folder} does not exist"
    except OSError as exc:
        return f"{folder} cannot be inspected: {exc.strerror or exc}"
    if not stat.S_ISDIR(info.st_mode):
        return f"{folder} is not a folder"
    return None


def overall_health(checks: Sequence[HealthCheck]) -> str:
    failed = [c for c in checks if not c.passed]
    if any(c.severity == DOWN for c in failed):
        return DOWN
    return DEGRADED if failed else HEALTHY


def build_status_report(
    settings: Settings,
    state: RunState,
    validations: Sequence[FileValidation],
    file_statistics: dict[str, Any],
    service_status: str,
    now: datetime | None = None,
    validated_at: str | None = None,
) -> dict[str, Any]:
    """``validated_at``: when the verdicts were made, if not now (recorded by the last cycle)."""
    now = now or utc_now()
    latest = latest_per_series(validations)
    # The listed symbols and the universe as last resolved, each with the rule that selected it.
    symbols = {
        series_key(s, i, settings.market, single=settings.single_series): {
            **symbol_entry(s, latest.get((settings.market, s, i)), state, now, settings, i),
            "selected_by": rule,
        }
        for s, rule in known_selection(settings, state).items()
        for i in settings.kline_intervals
    }
    checks = health_checks(settings, state, symbols, now)
    with_data = sum(1 for e in symbols.values() if e["valid"] and e["rows"] > 0)
    report = {
        "timestamp": now.isoformat(timespec="seconds"),
        "system_status": {
            "service_status": service_status,
            "export_count": state.export_count,
            "cleanup_count": state.cleanup_count,
            "current_files": int(file_statistics.get("total_files", 0)),
            "symbols_with_data": with_data,
        },
        "configuration": {
            "export_interval_hours": _number(settings.export_period_hours),
            "data_retention_days": _number(settings.data_retention_days),
            "max_files_per_symbol": settings.max_files_per_symbol,
        },
        "file_statistics": {
            "total_files": int(file_statistics.get("total_files", 0)),
            "symbols_count": int(file_statistics.get("symbols_count", 0)),
            "total_size_mb": float(file_statistics.get("total_size_mb", 0.0)),
            "total_size_gb": float(file_statistics.get("total_size_gb", 0.0)),
        },
        "last_cycle": {
            "started": state.last_cycle_start,
            "finished": state.last_cycle_end,
            "result": state.last_cycle_result,
            "failed_symbols": state.last_cycle_failed_symbols,
            "last_successful": state.last_successful_cycle,
            **state.last_cycle_counters,
            "duration_seconds": _cycle_seconds(state),
        },
        "validated_at": validated_at or now.isoformat(timespec="seconds"),
        "from_last_cycle": validated_at is not None,
        "next_run": state.next_run if service_status == "running" else None,
        "banned_until": to_iso(state.ban_end()),
        "universe": _universe_summary(settings, state),
        "symbols": symbols,
        "health": {
            "status": overall_health(checks),
            "checks": {c.name: {"passed": c.passed, "reason": c.reason} for c in checks},
        },
    }
    return mark(report, STATUS_FORMAT_VERSION, first=False)


def _universe_summary(settings: Settings, state: RunState) -> dict[str, Any] | None:
    """The symbol universe's settings and its last resolution (None without EXPORT_QUOTE_ASSET)."""
    if settings.quote_asset is None:
        return None
    return {
        "quote_asset": settings.quote_asset,
        "top_n": settings.top_n,
        "resolved_at": state.universe_resolved_at,
        "symbols": len(state.universe),
    }


UNVERIFIED = "not validated since the last cycle (--verify validates it now)"
VANISHED = "recorded by the last cycle but no longer in the folder"


def _iso_ms(text: Any) -> int | None:
    moment = from_iso(text)
    return None if moment is None else round(moment.timestamp() * 1000)


def _recorded_verdict(folder: Path, entry: dict[str, Any]) -> FileValidation:
    """The verdict the last cycle recorded for a series' newest file (its report entry)."""
    gaps = [(_iso_ms(g["first_missing"]), _iso_ms(g["last_missing"]), int(g["missing"])) for g in entry["gaps"]]
    return FileValidation(
        folder / Path(entry["latest_file"]).name,  # a name in the folder, whatever the file says
        bool(entry["valid"]),
        entry.get("reason"),
        int(entry.get("rows") or 0),
        _iso_ms(entry.get("first_candle")),
        _iso_ms(entry.get("last_candle")),
        [(first, last, count) for first, last, count in gaps if first is not None and last is not None],
        int(entry.get("missing_candles") or 0),
    )


def recorded_verdicts(folder: Path, files: Sequence[ExportFile]) -> tuple[list[FileValidation], str | None]:
    """The verdicts the last written report recorded, matched against a listing of the folder
    (``files``), and when they were made; nothing is opened but the report.

    A listed file the report does not name is unverified (invalid until checked); a file the
    report names that is no longer listed is invalid too: health must not trust either.
    """
    found = read_owned_json(ExportFolder(folder).status_report)
    report = found.data if found.verdict == OURS and found.data is not None else {}
    recorded: dict[str, FileValidation] = {}
    for entry in (report.get("symbols") or {}).values():
        try:
            if isinstance(entry, dict) and entry.get("latest_file"):
                verdict = _recorded_verdict(folder, entry)
                recorded[verdict.path.name] = verdict
        except (KeyError, TypeError, ValueError, AttributeError):
            continue  # an entry we cannot read is as good as unrecorded: the file is unverified
    listed = {f.name for f in files}
    verdicts = [recorded.get(f.name) or FileValidation(f.path, False, UNVERIFIED) for f in files]
    verdicts += [replace(v, valid=False, reason=VANISHED) for name, v in recorded.items() if name not in listed]
    validated_at = report.get("validated_at") or report.get("timestamp")
    return verdicts, validated_at if isinstance(validated_at, str) else None


def recorded_statistics(files: Sequence[ExportFile], verdicts: Sequence[FileValidation]) -> dict[str, Any]:
    """Counts and sizes of the listed files not known to be invalid (the last cycle's cleanup
    quarantined the invalid ones; unverified files are counted, as they are there)."""
    bad = {v.path for v in verdicts if not v.valid and v.reason != UNVERIFIED}
    kept = [f for f in files if f.path not in bad]
    total = sum(f.size for f in kept)
    return {
        "total_files": len(kept),
        "symbols_count": len({f.symbol for f in kept}),
        "total_size_mb": round(total / 2**20, 2),
        "total_size_gb": round(total / 2**30, 2),
    }


def write_status_report(folder: Path, report: dict[str, Any], notices: list[str] | None = None) -> Path:
    """Replace the report atomically; a file of that name that is not ours is set aside first."""
    path = ExportFolder(Path(folder)).status_report
    found = read_owned_json(path)
    if found.verdict not in (OURS, MISSING):
        try:
            aside = set_aside(path, "corrupt" if found.verdict == CORRUPT else "foreign")
        except OSError as exc:
            raise StorageError(
                f"cannot set aside {path} ({found.problem}): {exc.strerror or exc}; move it away by hand"
            ) from exc
        if aside is not None:
            notice = printable(f"{path} was not written by this tool ({found.problem}); kept as {aside.name}", 1000)
            logger.warning("%s", notice)
            if notices is not None:
                notices.append(notice)
    atomic_write_json(path, report)
    return path
