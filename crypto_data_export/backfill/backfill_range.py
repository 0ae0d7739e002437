"""``--start`` / ``--end`` of a backfill: an explicit window of open times [start, end), in UTC.

Judged before any request, against this machine's clock, so that a range the exchange cannot
serve never costs a call; each error is one line naming the flag (SettingsError, exit 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from crypto_data_export.core.clock import from_iso, to_iso
from crypto_data_export.core.intervals import DAY_MS, first_open_from_ms
from crypto_data_export.settings.settings import MAX_LOOKBACK_DAYS, Settings, SettingsError, min_lookback_days, override

# Binance's first spot candle (BTCUSDT, ETHUSDT... 2017-07-14): nothing opens before it.
FIRST_CANDLE = datetime(2017, 7, 14, tzinfo=UTC)
_FORMATS = "a UTC date or ISO time, e.g. 2024-01-01, 2024-01-01T12:00 or 2024-01-01T12:00:00Z"


@dataclass(frozen=True)
class BackfillRange:
    """Open times in [start_ms, end_ms); ``clamped``: --end was in the future and now ends it."""

    start_ms: int
    end_ms: int
    clamped: bool = False

    def describe(self) -> str:
        start, end = (to_iso(datetime.fromtimestamp(ms / 1000, tz=UTC)) for ms in (self.start_ms, self.end_ms))
        return f"[{start}, {end})"


def parse_moment(flag: str, text: str) -> datetime:
    """``2024-01-01`` / ISO time (no offset: UTC) -> aware UTC datetime; SettingsError naming ``flag`` otherwise."""
    if (moment := from_iso(text.strip())) is None:
        raise SettingsError(f"{flag} {text!r} is not {_FORMATS}")
    return moment


def resolve_range(
    start: str | None, end: str | None, days: str | None, lookback_days: float, now: datetime
) -> BackfillRange | None:
    """The window of ``--start``/``--end`` (None: neither given); ``days``: the raw ``--days``,
    ``lookback_days``: the look-back in force (``--days`` or EXPORT_LOOKBACK_DAYS)."""
    if start is None and end is None:
        return None
    if start is not None and days is not None:
        raise SettingsError("--start and --days cannot be used together: give --start (and --end), or --days")
    end_at = parse_moment("--end", end) if end is not None else now
    clamped = end_at > now
    end_at = min(end_at, now)
    if start is not None:
        start_at = parse_moment("--start", start)
        label = f"--start {to_iso(start_at)}"
    else:
        start_at = end_at - timedelta(days=lookback_days)
        label = f"--end minus --days ({lookback_days:g} days) starts at {to_iso(start_at)}, which"
    if start_at >= now:
        raise SettingsError(f"{label} is in the future; give a start before now ({to_iso(now)})")
    if start_at < FIRST_CANDLE:
        raise SettingsError(
            f"{label} is before {FIRST_CANDLE:%Y-%m-%d}, the exchange's first candle; start on or after it"
        )
    if start_at >= end_at:
        raise SettingsError(f"{label} is not before --end {to_iso(end_at)}; give a start before the end")
    if (end_at - start_at).total_seconds() * 1000 > MAX_LOOKBACK_DAYS * DAY_MS:
        raise SettingsError(
            f"{label} to --end {to_iso(end_at)} is longer than {MAX_LOOKBACK_DAYS:g} days (the --days "
            "maximum); split it into shorter ranges"
        )
    return BackfillRange(int(start_at.timestamp() * 1000), int(end_at.timestamp() * 1000), clamped)


def require_a_candle(window: BackfillRange, interval: str) -> None:
    """Refuse a range in which no candle of ``interval`` opens (``1d`` from 01:00 to 12:00)."""
    if first_open_from_ms(window.start_ms, interval) >= window.end_ms:
        raise SettingsError(
            f"--start/--end {window.describe()} holds no {interval} candle open time; widen the range "
            "or choose a shorter --interval"
        )


def days_in_force(settings: Settings, days: str | None) -> float:
    """--days (checked by its own rule) or EXPORT_LOOKBACK_DAYS: what --end alone counts back."""
    if days is None:
        return settings.lookback_days
    return override(settings, {"EXPORT_LOOKBACK_DAYS": (days, "--days")}).lookback_days


def placeholder_days(window: BackfillRange, interval: str | None, settings: Settings) -> str:
    """The look-back set while a range rules: its length, or the least the interval accepts (a setting
    the run does not use must not refuse it). An unknown --interval is refused by its own flag."""
    try:
        least = min_lookback_days(interval or settings.kline_interval)
    except (KeyError, ValueError):
        least = 0.0
    return repr(min(MAX_LOOKBACK_DAYS, max((window.end_ms - window.start_ms) / DAY_MS, least)))
