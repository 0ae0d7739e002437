"""``status_report.json`` and the health checks, built from state and files.

The top-level keys are the guide's example exactly; ``symbols`` and ``health`` are added, and
our marker (``writer``, ``format_version``) so that a file of that name written by someone else
is set aside, never overwritten. Health judges the data, not the files: a symbol is fresh only
if its newest closed candle is recent enough for the interval and the export period."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crypto_data_export.core.atomic_io import atomic_write_json
from crypto_data_export.core.clock import from_iso, from_ms, iso_to_ms, ms_to_iso, to_iso, utc_now
from crypto_data_export.core.exit_codes import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from crypto_data_export.core.intervals import next_open_ms
from crypto_data_export.core.owned_json import MISSING, OURS, mark, read_owned_json, set_aside_or_fail
from crypto_data_export.core.text import printable
from crypto_data_export.pipeline.selection import known_selection
from crypto_data_export.settings.settings import Settings
from crypto_data_export.store.exports import ExportFile, latest_per_series
from crypto_data_export.store.layout import ExportFolder, parse_export_name, series_key
from crypto_data_export.store.run_state import RunState
from crypto_data_export.store.validation import FileValidation

if TYPE_CHECKING:  # --status in the files layout never loads pyarrow
    from crypto_data_export.store.dataset_completeness import SeriesCompleteness

logger = logging.getLogger(__name__)

HEALTHY, DEGRADED, DOWN = "healthy", "degraded", "down"
HEALTH_EXIT_CODES = {HEALTHY: EXIT_OK, DEGRADED: EXIT_FAILED, DOWN: EXIT_USAGE}
STATUS_FORMAT_VERSION = 1
# Beyond one interval and one period, a cycle needs time to run and the exchange's clock may lag.
FRESHNESS_GRACE_SECONDS = 300
UNVERIFIED = "not validated since the last cycle (--verify validates it now)"
VANISHED = "recorded by the last cycle but no longer in the folder"
MAX_LISTED = 20  # gap ranges and periods with missing candles per dataset series; the rest are counted


def _number(value: float) -> int | float:
    """2 stays 2 (as in the guide's example); 0.5 stays 0.5."""
    return int(value) if float(value).is_integer() else value


def _hours_since(moment: datetime | None, now: datetime) -> float | None:
    return None if moment is None else round((now - moment).total_seconds() / 3600, 2)


def _cycle_seconds(state: RunState) -> float | None:
    """The last cycle's length: measured in ms when recorded, else from its whole-second times."""
    if (measured := state.last_cycle_counters.get("duration_ms")) is not None:
        return round(measured / 1000, 3)
    start, end = from_iso(state.last_cycle_start), from_iso(state.last_cycle_end)
    return None if start is None or end is None else round((end - start).total_seconds(), 3)


def _freshness(settings: Settings, last_open_ms: int | None, now: datetime, interval: str) -> dict[str, Any]:
    """The newest candle may stay the newest for one more candle (its real length, so months
    work too), one export period, and a grace for the cycle."""
    if last_open_ms is None:
        return {"fresh": False, "newest_close_age_hours": None, "fresh_limit_hours": None, "stale_after": None}
    close_ms = next_open_ms(last_open_ms, interval)
    age = (now - from_ms(close_ms)).total_seconds()
    limit = (next_open_ms(close_ms, interval) - close_ms) / 1000
    limit += settings.export_period_hours * 3600 + FRESHNESS_GRACE_SECONDS
    return {
        "fresh": age <= limit,
        "newest_close_age_hours": round(age / 3600, 2),
        "fresh_limit_hours": round(limit / 3600, 2),
        "stale_after": ms_to_iso(close_ms + round(limit * 1000)),
    }


def symbol_entry(
    symbol: str, result: FileValidation | None, state: RunState, now: datetime, settings: Settings, interval: str
) -> dict[str, Any]:
    """The report of one series (``symbol``, ``interval``, BINANCE_MARKET)."""
    found = result or FileValidation(Path(), False, "no export file")
    last_ms, parsed = found.last_open_ms, parse_export_name(found.path.name)
    key = series_key(symbol, interval, settings.market, single=settings.single_series)
    recorded = state.find_series(key, symbol, interval, settings.market)
    last_error = recorded.last_error if recorded else None
    entry: dict[str, Any] = {
        "symbol": symbol,
        "interval": interval,
        "market": settings.market,
        "latest_file": found.path.name if result else None,
        "rows": found.rows,
        "first_candle": ms_to_iso(found.first_open_ms),
        "last_candle": ms_to_iso(last_ms),
        "age_hours": _hours_since(parsed[2] if parsed else None, now),
        "last_candle_age_hours": None if last_ms is None else _hours_since(from_ms(last_ms), now),
        "gaps": found.to_dict()["gaps"],
        "missing_candles": found.missing_candles,
        "valid": found.valid,
        "reason": found.reason,
        "last_success": recorded.last_success if recorded else None,
        "last_error": last_error,
        **_freshness(settings, last_ms if found.valid else None, now, interval),
    }
    if recorded is not None:
        entry["last_error_at"] = recorded.last_error_at if last_error is not None else None
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
    # Two periods, plus the grace a cycle needs to run (the same as the candles' freshness).
    activity_limit_s = 2 * settings.export_period_hours * 3600 + FRESHNESS_GRACE_SECONDS
    logs = settings.export_dir / "logs"
    last_ok, contact = from_iso(state.last_successful_cycle), from_iso(state.last_exchange_contact)
    ban = state.ban_end()
    folder_problem = export_folder_problem(settings.export_dir)
    names = {entry.get("symbol", key) for key, entry in symbols.items()}
    series = f" ({len(symbols)} series)" if len(symbols) != len(names) else ""
    stale = [_stale_reason(s, e) for s, e in symbols.items() if not (e["valid"] and e.get("fresh"))]
    failing = [s for s, e in symbols.items() if e.get("last_error")]
    return [
        HealthCheck("export_folder", folder_problem is None, folder_problem or f"{settings.export_dir} is a folder"),
        HealthCheck("logs_directory", logs.is_dir(), f"{logs} exists" if logs.is_dir() else f"{logs} is missing"),
        HealthCheck(
            "exporter_initialized",
            contact is not None and ban is None,
            f"banned by the exchange until {to_iso(ban)}"
            if ban
            else (f"exchange last answered at {to_iso(contact)}" if contact else "the exchange was never reached"),
            DEGRADED if contact is not None else DOWN,
        ),
        HealthCheck("symbols_loaded", bool(symbols), f"{len(names)} symbols configured{series}"),
        HealthCheck(
            "recent_activity",
            last_ok is not None and (now - last_ok).total_seconds() <= activity_limit_s,
            f"last successful cycle {to_iso(last_ok)}, limit {activity_limit_s / 3600:.4g} h"
            if last_ok
            else "no successful cycle yet",
        ),
        HealthCheck(
            "symbols_fresh",
            not stale,
            "stale or missing: " + ", ".join(stale)
            if stale
            else "every symbol's newest candle closed within one interval and one period",
            DEGRADED,
        ),
        HealthCheck(
            "symbols_exporting",
            not failing,
            "failing: " + ", ".join(failing) if failing else "no symbol failing",
            DEGRADED,
        ),
    ]


def _stale_reason(symbol: str, entry: dict[str, Any]) -> str:
    if not entry["valid"]:
        return f"{symbol} ({entry['reason'] or 'invalid'})"
    age, limit = entry.get("newest_close_age_hours"), entry.get("fresh_limit_hours")
    if age is None:
        return f"{symbol} (no candle)"
    return f"{symbol} (newest candle closed {age:g} h ago, limit {limit:g} h)"


def export_folder_problem(folder: Path) -> str | None:
    """None if the export folder is a folder (EXPORT_DIR may be a link to one); else what it is instead."""
    try:
        info = os.stat(folder)
    except FileNotFoundError:
        return f"{folder} does not exist"
    except OSError as exc:
        return f"{folder} cannot be inspected: {exc.strerror or exc}"
    return None if stat.S_ISDIR(info.st_mode) else f"{folder} is not a folder"


def build_status_report(
    settings: Settings,
    state: RunState,
    validations: Sequence[FileValidation],
    file_statistics: dict[str, Any],
    service_status: str,
    now: datetime | None = None,
    validated_at: str | None = None,
    dataset: Sequence[SeriesCompleteness] | None = None,
) -> dict[str, Any]:
    """``validated_at``: when the verdicts were made, if not now (recorded by the last cycle).
    ``dataset`` (EXPORT_LAYOUT=dataset): its series judge the symbols and fill the ``dataset`` key."""
    now = now or utc_now()
    latest = latest_per_series(validations)
    if dataset is not None:
        latest = {(c.series.market, c.series.symbol, c.series.interval): c.verdict() for c in dataset}
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
    failed = {c.severity for c in checks if not c.passed}
    report = {
        "timestamp": now.isoformat(timespec="seconds"),
        "system_status": {
            "service_status": service_status,
            "export_count": state.export_count,
            "cleanup_count": state.cleanup_count,
            "current_files": int(file_statistics.get("total_files", 0)),
            "symbols_with_data": sum(1 for e in symbols.values() if e["valid"] and e["rows"] > 0),
        },
        "configuration": {
            "export_interval_hours": _number(settings.export_period_hours),
            "data_retention_days": _number(settings.data_retention_days),
            "max_files_per_symbol": settings.max_files_per_symbol,
        },
        # The guide's keys, and total_size_bytes: exact, where the MB and GB figures are rounded.
        "file_statistics": {**recorded_statistics([], []), **file_statistics},
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
        # A scheduler loop serves this folder (or died without stopping); False under cron or a CronJob.
        "scheduler_in_use": state.service_pid is not None,
        "banned_until": to_iso(state.ban_end()),
        # The symbol universe's settings and its last resolution (None without EXPORT_QUOTE_ASSET).
        "universe": None
        if settings.quote_asset is None
        else {
            "quote_asset": settings.quote_asset,
            "top_n": settings.top_n,
            "resolved_at": state.universe_resolved_at,
            "symbols": len(state.universe),
        },
        "symbols": symbols,
        **({} if dataset is None else {"dataset": dataset_section(dataset)}),
        "health": {
            "status": DOWN if DOWN in failed else (DEGRADED if failed else HEALTHY),
            "checks": {c.name: {"passed": c.passed, "reason": c.reason} for c in checks},
        },
    }
    return mark(report, STATUS_FORMAT_VERSION, first=False)


def dataset_section(dataset: Sequence[SeriesCompleteness]) -> dict[str, Any]:
    """The dataset's completeness: totals, then per series (``SYMBOL_interval``) its figures."""
    series = {
        series_key(c.series.symbol, c.series.interval, c.series.market, single=False): c.to_dict(MAX_LISTED)
        for c in dataset
    }
    return {
        "series_count": len(series),
        "complete_series": sum(1 for e in series.values() if e["complete"]),
        **{
            key: sum(e[key] for e in series.values())
            for key in ("expected", "present", "missing", "unconfirmed_missing")
        },
        "series": series,
    }


def _recorded_verdict(folder: Path, entry: dict[str, Any]) -> FileValidation:
    """The verdict the last cycle recorded for a series' newest file (its report entry)."""
    gaps = [(iso_to_ms(g["first_missing"]), iso_to_ms(g["last_missing"]), int(g["missing"])) for g in entry["gaps"]]
    return FileValidation(
        folder / Path(entry["latest_file"]).name,  # a name in the folder, whatever the file says
        bool(entry["valid"]),
        entry.get("reason"),
        int(entry.get("rows") or 0),
        iso_to_ms(entry.get("first_candle")),
        iso_to_ms(entry.get("last_candle")),
        [(first, last, count) for first, last, count in gaps if first is not None and last is not None],
        int(entry.get("missing_candles") or 0),
    )


def recorded_verdicts(folder: Path, files: Sequence[ExportFile]) -> tuple[list[FileValidation], str | None]:
    """The verdicts the last written report recorded, matched against a listing of the folder
    (``files``), and when they were made; nothing is opened but the report. A listed file the report
    does not name is unverified, one it names that is no longer listed is invalid: health trusts neither."""
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
        "total_size_bytes": total,
    }


def write_status_report(folder: Path, report: dict[str, Any], notices: list[str]) -> None:
    """Replace the report atomically; a file of that name that is not ours is set aside first (added to ``notices``)."""
    path = ExportFolder(Path(folder)).status_report
    found = read_owned_json(path)
    if found.verdict not in (OURS, MISSING):
        if (aside := set_aside_or_fail(path, found.verdict, found.problem)) is not None:
            notice = printable(f"{path} was not written by this tool ({found.problem}); kept as {aside.name}", 1000)
            notices.append(notice)
            logger.warning("%s", notice)
    atomic_write_json(path, report)
