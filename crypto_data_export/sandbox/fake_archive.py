"""The sandbox's bulk archive: data.binance.vision's layout, served from the exchange's own candles.

``SandboxExchange`` answers every ``/data/...`` path through ``SandboxArchive``
on the same HTTP server: daily and monthly zips of spot (``/data/spot/``) and USD-M futures
(``/data/futures/um/``) klines, each with its
``.CHECKSUM`` (``<sha256>  <name>.zip``), and 404 for a period that has not
ended yet on the server clock (or that a knob marks unpublished). The rows
come from the exchange itself (the ``rows_for`` callable, i.e.
``generate_candle`` of the market over the same listing, gaps and delistings as
its klines endpoint), so an archive backfill and a REST backfill must agree byte for byte.

Like the real archive, spot files from 2025-01-01 on carry microsecond times
(``ArchiveKnobs.micros_from_ms``); futures files keep milliseconds and start
with a header line, spot files have none unless the ``header`` knob asks for one. Other knobs corrupt a
checksum, omit one or serve a broken zip. Standard library only.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import re
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["ARCHIVE_ROOT", "MICROS_FROM_MS", "ArchiveKnobs", "SandboxArchive"]

ARCHIVE_ROOT = "/data/"
MICROS_FROM_MS = 1735689600000  # 2025-01-01 00:00 UTC: spot archive files switch to microseconds
_DAY = 86_400_000
_HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore"
)
_PATH = re.compile(
    r"^/data/(?P<market>spot|futures/um)/(?P<kind>monthly|daily)/klines/(?P<symbol>[A-Z0-9]{1,20})/(?P<interval>[0-9]{1,2}(?:[smhdw]|mo))/"
    r"(?P=symbol)-(?P=interval)-(?P<label>[0-9]{4}-[0-9]{2}(?:-[0-9]{2})?)\.zip(?P<checksum>\.CHECKSUM)?$"
)
_NOT_FOUND = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code>'
    b"<Message>The specified key does not exist.</Message></Error>"
)
_CACHE_BYTES = 512 << 20  # a year of 1m zips of a few symbols, or a year of 1h zips of hundreds

# rows_for(symbol, interval, start_ms, end_ms, market) -> the exchange's kline rows ("spot" or "usdm")
# opening in [start, end), or None when the exchange does not know the symbol.
RowsFor = Callable[[str, str, int, int, str], "list[list[Any]] | None"]


@dataclass(frozen=True)
class ArchiveKnobs:
    """Faults of the archive; names are zip names (``BTCUSDT-1h-2024-10.zip``), labels periods."""

    bad_checksum: frozenset[str] = frozenset()  # the .CHECKSUM does not match the zip
    no_checksum: frozenset[str] = frozenset()  # the zip is there, its .CHECKSUM is 404
    bad_zip: frozenset[str] = frozenset()  # a truncated zip (its .CHECKSUM matches the broken bytes)
    unpublished: frozenset[str] = frozenset()  # labels ("2024-10", "2024-10-15") answered 404
    micros_from_ms: int | None = MICROS_FROM_MS  # periods from here on have µs times (None: never)
    header: bool = False  # a header line first in spot files too (futures files always have one)
    # (zip name, first row, end row): those rows are left out of its CSV, the .CHECKSUM matching (a hole)
    drop_rows: tuple[tuple[str, int, int], ...] = ()
    trickle: frozenset[str] = frozenset()  # names (zip or .CHECKSUM) sent one byte every trickle_seconds
    trickle_seconds: float = 0.5


@dataclass
class _Answer:
    status: int
    body: bytes
    content_type: str


class SandboxArchive:
    """Builds (and caches) the zips; ``answer`` serves one ``/data/...`` path."""

    def __init__(self, rows_for: RowsFor) -> None:
        self._rows_for = rows_for
        self._cache: dict[tuple[Any, ...], bytes | None] = {}
        self._cached_bytes = 0
        self._building: dict[tuple[Any, ...], threading.Lock] = {}
        self._lock = threading.Lock()

    def answer(self, path: str, knobs: ArchiveKnobs, now_ms: int, generation: object = None) -> tuple[int, bytes, str]:
        """(status, body, content type) for one request path; ``generation`` names the
        candles' configuration, so a zip built under another one is not served from the cache."""
        match = _PATH.match(path)
        if match is None:
            return 404, _NOT_FOUND, "application/xml"
        kind, symbol, label = match["kind"], match["symbol"], match["label"]
        market = "spot" if match["market"] == "spot" else "usdm"
        interval = "1M" if match["interval"] == "1mo" else match["interval"]
        bounds = _period_bounds(kind, label)
        zip_name = f"{symbol}-{match['interval']}-{label}.zip"
        if bounds is None or bounds[1] > now_ms or label in knobs.unpublished:
            return 404, _NOT_FOUND, "application/xml"
        csv_name = f"{symbol}-{match['interval']}-{label}.csv"
        data = self._zip(market, symbol, interval, bounds, csv_name, knobs, generation)
        if data is None:
            return 404, _NOT_FOUND, "application/xml"
        if zip_name in knobs.bad_zip:
            data = data[: len(data) // 2]
        if not match["checksum"]:
            return 200, data, "application/zip"
        if zip_name in knobs.no_checksum:
            return 404, _NOT_FOUND, "application/xml"
        digest = hashlib.sha256(data + (b"tampered" if zip_name in knobs.bad_checksum else b"")).hexdigest()
        return 200, f"{digest}  {zip_name}\n".encode(), "text/plain"

    def _zip(
        self,
        market: str,
        symbol: str,
        interval: str,
        bounds: tuple[int, int],
        csv_name: str,
        knobs: ArchiveKnobs,
        generation: object,
    ) -> bytes | None:
        """The zip's bytes, built once: a .CHECKSUM and its zip asked for at the same
        moment wait for one build instead of making two."""
        drops = [(first, end) for name, first, end in knobs.drop_rows if name == csv_name.replace(".csv", ".zip")]
        key = (generation, market, symbol, interval, bounds, knobs.micros_from_ms, knobs.header, *drops)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
            building = self._building.setdefault(key, threading.Lock())
        with building:
            with self._lock:
                if key in self._cache:
                    return self._cache[key]
            rows = self._rows_for(symbol, interval, *bounds, market)
            kept = [row for i, row in enumerate(rows or ()) if not any(a <= i < b for a, b in drops)]
            data = None if not rows else _build_zip(csv_name, bounds[0], _csv_text(kept, bounds[0], knobs, market))
            with self._lock:
                self._store(key, data)
                self._building.pop(key, None)
        return data

    def _store(self, key: tuple[Any, ...], data: bytes | None) -> None:
        """Keep at most ``_CACHE_BYTES``, dropping the oldest zips first (under the lock)."""
        self._cache[key] = data
        self._cached_bytes += len(data or b"")
        while self._cached_bytes > _CACHE_BYTES and len(self._cache) > 1:
            oldest = next(iter(self._cache))
            self._cached_bytes -= len(self._cache.pop(oldest) or b"")

    def clear(self) -> None:
        """Forget built zips (after changing the candles' knobs: listing, gaps, delistings)."""
        with self._lock:
            self._cache.clear()
            self._cached_bytes = 0


def _period_bounds(kind: str, label: str) -> tuple[int, int] | None:
    """[start, end) in ms of a ``YYYY-MM`` or ``YYYY-MM-DD`` label; None if the label is no date."""
    epoch = _dt.date(1970, 1, 1)
    try:
        if kind == "monthly":
            if len(label) != 7:
                return None
            first = _dt.date(int(label[:4]), int(label[5:7]), 1)
            after = _dt.date(first.year + first.month // 12, first.month % 12 + 1, 1)
        else:
            if len(label) != 10:
                return None
            first = _dt.date.fromisoformat(label)
            after = first + _dt.timedelta(days=1)
    except ValueError:
        return None
    return (first - epoch).days * _DAY, (after - epoch).days * _DAY


def _csv_text(rows: list[list[Any]], start_ms: int, knobs: ArchiveKnobs, market: str) -> str:
    spot = market == "spot"  # futures files: a header line, times in ms
    micros = spot and knobs.micros_from_ms is not None and start_ms >= knobs.micros_from_ms
    lines = [_HEADER] if knobs.header or not spot else []
    for row in rows:
        fields = list(row)
        if micros:  # 1730073600000 -> 1730073600000000, ...999 -> ...999999
            fields[0], fields[6] = fields[0] * 1000, fields[6] * 1000 + 999
        lines.append(",".join(str(value) for value in fields))
    return "\n".join(lines) + "\n" if lines else ""


def _build_zip(csv_name: str, start_ms: int, text: str) -> bytes:
    """One deflated member, dated at the period's start, so the bytes never vary."""
    stamp = _dt.datetime(1970, 1, 1) + _dt.timedelta(milliseconds=start_ms)
    info = zipfile.ZipInfo(csv_name, date_time=(stamp.year, stamp.month, stamp.day, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(info, text)
    return buffer.getvalue()
