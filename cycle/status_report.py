"""``status_report.json`` and the health checks, built from state and files.

The top-level keys and their types are the guide's example, exactly
(``timestamp``, ``system_status``, ``configuration``, ``file_statistics``);
``symbols`` and ``health`` are added so an operator sees per symbol what is
there, how old it is, what is missing (gaps) and what failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common.atomic_io import atomic_write_json
from common.clock import from_iso, ms_to_iso, to_iso, utc_now
from config.settings import Settings
from cycle.run_state import RunState
from store.exports import latest_per_symbol
from store.layout import STATUS_NAME, parse_export_name
from store.validation import FileValidation

HEALTHY, DEGRADED, DOWN = "healthy", "degraded", "down"
HEALTH_EXIT_CODES = {HEALTHY: 0, DEGRADED: 1, DOWN: 2}


def _number(value: float) -> int | float:
    """2 stays 2 (as in the guide's example); 0.5 stays 0.5."""
    return int(value) if float(value).is_integer() else value


def _hours_since(moment: datetime | None, now: datetime) -> float | None:
    return None if moment is None else round((now - moment).total_seconds() / 3600, 2)


def symbol_entry(symbol: str, result: FileValidation | None, state: RunState, now: datetime) -> dict[str, Any]:
    sym_state = state.symbols.get(symbol)
    entry: dict[str, Any] = {
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
    """The guide's four checks plus per-symbol freshness."""
    period_h = settings.export_period_hours
    logs = settings.export_dir / "logs"
    last_ok = from_iso(state.last_successful_cycle)
    contact = from_iso(state.last_exchange_contact)
    ban = state.ban_end()
    checks = [
        HealthCheck("logs_directory", logs.is_dir(), f"{logs} exists" if logs.is_dir() else f"{logs} is missing"),
        HealthCheck(
            "exporter_initialized",
            contact is not None and ban is None,
            f"banned by the exchange until {to_iso(ban)}"
            if ban
            else (f"exchange last answered at {to_iso(contact)}" if contact else "the exchange was never reached"),
            DEGRADED if contact is not None else DOWN,
        ),
        HealthCheck("symbols_loaded", bool(settings.symbols), f"{len(settings.symbols)} symbols configured"),
        HealthCheck(
            "recent_activity",
            last_ok is not None and (now - last_ok).total_seconds() <= 2 * period_h * 3600,
            f"last successful cycle {to_iso(last_ok)}, limit {2 * period_h:g} h"
            if last_ok
            else "no successful cycle yet",
        ),
    ]
    stale = [s for s, e in symbols.items() if not e["valid"] or e["age_hours"] is None or e["age_hours"] > 2 * period_h]
    failing = [s for s, e in symbols.items() if e.get("last_error")]
    checks.append(
        HealthCheck(
            "symbols_fresh",
            not stale,
            "every symbol has a valid file younger than 2 periods"
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
) -> dict[str, Any]:
    now = now or utc_now()
    latest = latest_per_symbol(validations, settings.kline_interval)
    symbols = {s: symbol_entry(s, latest.get(s), state, now) for s in settings.symbols}
    checks = health_checks(settings, state, symbols, now)
    with_data = sum(1 for e in symbols.values() if e["valid"] and e["rows"] > 0)
    return {
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
        },
        "banned_until": to_iso(state.ban_end()),
        "symbols": symbols,
        "health": {
            "status": overall_health(checks),
            "checks": {c.name: {"passed": c.passed, "reason": c.reason} for c in checks},
        },
    }


def write_status_report(folder: Path, report: dict[str, Any]) -> Path:
    path = Path(folder) / STATUS_NAME
    atomic_write_json(path, report)
    return path
