"""The one UTC clock (``utc_now``) and the one ISO-8601 formatter (``to_iso``) of the project:
one format and one time zone for every timestamp we show or store."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def utc_now() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """Naive datetimes are taken as UTC: every name and file of ours is in UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def from_ms(ms: int) -> datetime:
    """Epoch milliseconds (the exchange's unit) -> an aware UTC datetime."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def to_iso(moment: datetime | None, *, timespec: str = "seconds") -> str | None:
    """``2026-11-29T02:00:00+00:00`` (None stays None)."""
    return None if moment is None else as_utc(moment).isoformat(timespec=timespec)


def ms_to_iso(ms: int | None) -> str | None:
    """Epoch ms -> ISO-8601 UTC, keeping a fraction when there is one (close times end in .999)."""
    return None if ms is None else to_iso(from_ms(ms), timespec="auto")


def iso_to_ms(text: Any) -> int | None:
    """``from_iso`` as epoch ms (None stays None)."""
    moment = from_iso(text)
    return None if moment is None else round(moment.timestamp() * 1000)


def from_iso(text: Any) -> datetime | None:
    """Parse what ``to_iso`` wrote; anything else (wrong type, bad text) is None."""
    if not isinstance(text, str):
        return None
    try:
        return as_utc(datetime.fromisoformat(text))
    except ValueError:
        return None
