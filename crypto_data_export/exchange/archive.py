"""The exchange's bulk archive (data.binance.vision): layout, downloads, checksums, zip -> candle frame.

One zip per symbol, interval and day or month, a ``.CHECKSUM`` (``<sha256>  <name>.zip``)
beside it, on a CDN with no request weight. A zip is streamed into a binary file object *the
caller opened* (this layer never touches a file by name). Which periods to take, and what to do
when one is refused, is the caller's (``crypto_data_export.backfill.archive_backfill``).
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import requests

from crypto_data_export.core.candles import (
    CANDLE_COLUMNS,
    CANDLE_SCHEMA,
    DECIMAL_COLUMNS,
    INTEGER_COLUMNS,
    TIME_COLUMNS,
)
from crypto_data_export.core.errors import ExchangeError, ExchangeUnavailableError, StopRequested
from crypto_data_export.core.intervals import DAY_MS, fixed_length_ms, floor_open_ms, next_open_ms
from crypto_data_export.core.rules import check_candles, shown
from crypto_data_export.exchange.bounded import Deadline
from crypto_data_export.exchange.client import USER_AGENT, SessionClient
from crypto_data_export.exchange.market_profiles import MARKETS, SPOT
from crypto_data_export.settings.settings import DEFAULT_ARCHIVE_URL

if TYPE_CHECKING:
    from crypto_data_export.settings.settings import Settings

# Intervals whose candles never straddle a day, so every daily and monthly file
# holds whole candles: the archive publishes daily files for exactly these.
DAILY_INTERVALS: tuple[str, ...] = ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d")
ARCHIVE_COLUMNS = 12  # the REST row's 12 fields, the last one unused
# The one header line archive files may start with (USD-M futures files do, spot files do not).
ARCHIVE_HEADER = (
    b"open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore"
)
MICROS_THRESHOLD = 10**15  # a 16-digit epoch time is in microseconds
CHUNK_BYTES = 1 << 16
MAX_CHECKSUM_BYTES = 4096
# A generous length of one CSV row (real ones are 110-190 bytes): a period's CSV may inflate to
# its candles x this and no more (a day of 1s: 22 MB), its zip be as large plus ZIP_SLACK.
ROW_BYTES = 256
ZIP_SLACK = 1 << 16

NO_CHECKSUM = "the archive has the zip but no .CHECKSUM for it"
_CHECKSUM_RE = re.compile(r"^([0-9a-fA-F]{64}) [ *]?(\S+)\s*$")
_DECIMAL = r"^[0-9]+(?:\.[0-9]+)?$"
_ARCHIVE_NAMES = [*CANDLE_COLUMNS, "ignore"]
_PARSE = pacsv.ParseOptions(quote_char=False, double_quote=False, escape_char=False, ignore_empty_lines=False)
_CONVERT = pacsv.ConvertOptions(
    column_types={c: pa.int64() if c in INTEGER_COLUMNS else pa.string() for c in _ARCHIVE_NAMES},
    include_columns=list(CANDLE_COLUMNS),
    strings_can_be_null=False,
)

Kind = Literal["monthly", "daily"]


class ArchiveError(ExchangeError):
    """One archive period could not be used; ``period`` names it."""

    def __init__(self, period: ArchivePeriod, reason: str) -> None:
        self.period = period
        self.reason = reason
        super().__init__(f"archive file {period.zip_name}: {reason}")


class ArchiveNotPublished(ArchiveError):
    """HTTP 404: the archive has no file for this period (not yet published, or never)."""


class ArchiveUnusable(ArchiveError):
    """The file is there but must not be used: checksum mismatch or missing, bad zip, bad rows."""


class ArchiveUnavailable(ArchiveError):
    """The archive could not be reached or kept failing (after the transport's retries)."""


class DownloadStopped(ArchiveError):
    """A stop was requested while the file was streaming."""


def archive_interval(interval: str) -> str:
    """The archive spells the month interval ``1mo`` (names stay unique on case-insensitive disks)."""
    return "1mo" if interval == "1M" else interval


@dataclass(frozen=True)
class ArchivePeriod:
    """One archive file: a UTC calendar month or day of one symbol and interval."""

    symbol: str
    interval: str
    kind: Kind
    start_ms: int
    end_ms: int  # exclusive

    @property
    def label(self) -> str:
        day = datetime.fromtimestamp(self.start_ms / 1000, tz=UTC)
        return f"{day:%Y-%m}" if self.kind == "monthly" else f"{day:%Y-%m-%d}"

    @property
    def stem(self) -> str:
        return f"{self.symbol}-{archive_interval(self.interval)}-{self.label}"

    @property
    def zip_name(self) -> str:
        return self.stem + ".zip"

    @property
    def csv_name(self) -> str:
        return self.stem + ".csv"

    @property
    def max_csv_bytes(self) -> int:
        """What the period's CSV can hold: its candles (and a header line) x ROW_BYTES."""
        return ((self.end_ms - self.start_ms) // (fixed_length_ms(self.interval) or DAY_MS) + 1) * ROW_BYTES

    def url_path(self, prefix: str = SPOT.archive_prefix) -> str:
        """``data/spot/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-10.zip`` (``prefix``: the market's)."""
        return f"{prefix}/{self.kind}/klines/{self.symbol}/{archive_interval(self.interval)}/{self.zip_name}"


def month_bounds(ms: int) -> tuple[int, int]:
    """[start, end) in ms of the UTC calendar month containing ``ms``."""
    start = floor_open_ms(ms, "1M")
    return start, next_open_ms(start, "1M")


def day_bounds(ms: int) -> tuple[int, int]:
    start = ms // DAY_MS * DAY_MS
    return start, start + DAY_MS


def daily_period(symbol: str, interval: str, ms: int) -> ArchivePeriod:
    return ArchivePeriod(symbol, interval, "daily", *day_bounds(ms))


def days_of(period: ArchivePeriod) -> list[ArchivePeriod]:
    """The daily periods that make up a monthly one."""
    return [daily_period(period.symbol, period.interval, t) for t in range(period.start_ms, period.end_ms, DAY_MS)]


# -- checksums --------------------------------------------------------------------
def parse_checksum(text: bytes, zip_name: str) -> str:
    """The SHA-256 hex of a ``.CHECKSUM`` body (``sha256sum`` format) naming ``zip_name``: the name
    must be the zip's own, a checksum of another file verifies nothing."""
    try:
        line = text.decode("ascii").strip()
    except UnicodeDecodeError:
        line = ""
    match = _CHECKSUM_RE.match(line) if "\n" not in line else None
    if match is None:
        raise ValueError(f"the .CHECKSUM is not one '<sha256>  {zip_name}' line ({text[:80]!r})")
    if match.group(2) != zip_name:
        raise ValueError(f"the .CHECKSUM names {match.group(2)!r}, not {zip_name!r}")
    return match.group(1).lower()


def sha256_of(handle: IO[bytes]) -> str:
    """SHA-256 of a file object from its start, streamed in chunks."""
    handle.seek(0)
    digest = hashlib.sha256()
    for block in iter(lambda: handle.read(CHUNK_BYTES), b""):
        digest.update(block)
    return digest.hexdigest()


def check_digest(period: ArchivePeriod, expected: str, actual: str) -> None:
    if actual != expected:
        raise ArchiveUnusable(period, f"checksum mismatch (the .CHECKSUM says {expected}, the zip is {actual})")


# -- zip -> candle frame -------------------------------------------------------------
def check_zip(handle: IO[bytes], period: ArchivePeriod) -> None:
    """A readable zip holding exactly the period's CSV, its CRC right, no bigger than the period can be."""
    for _ in _inflated(handle, period):
        pass


def _inflated(handle: IO[bytes], period: ArchivePeriod) -> Iterator[bytes]:
    """The period's CSV in chunks, inflated as read (never whole: a zip bomb is refused within
    ``max_csv_bytes``); the CRC is checked at its end."""
    handle.seek(0)
    cap, size = period.max_csv_bytes, 0
    try:
        with zipfile.ZipFile(handle) as archive:
            names = archive.namelist()
            if names != [period.csv_name]:
                raise ArchiveUnusable(period, f"the zip holds {names[:3]!r}, expected [{period.csv_name!r}]")
            too_big = ArchiveUnusable(period, f"the CSV inflates past {cap} bytes, more than {period.label} holds")
            if archive.getinfo(period.csv_name).file_size > cap:  # as declared, then as inflated
                raise too_big
            with archive.open(period.csv_name) as member:
                while chunk := member.read(CHUNK_BYTES):
                    size += len(chunk)
                    if size > cap:
                        raise too_big
                    yield chunk
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:  # a bad CRC too
        raise ArchiveUnusable(period, f"not a readable zip ({exc})") from exc


def read_period_frame(handle: IO[bytes], period: ArchivePeriod) -> pa.Table:
    """The candles of a verified zip; ArchiveUnusable if a row is wrong. ``pyarrow.csv`` reads
    it (times and trades int64, decimals as the exact strings, never a float); times become ms
    (spot files are in µs from 2025); plain decimals, then the rule book inside the period."""
    if fixed_length_ms(period.interval) is None:
        raise ArchiveUnusable(period, f"interval {period.interval} has no fixed length; use the REST API")
    data = b"".join(_inflated(handle, period))
    if not data.isascii():
        raise ArchiveUnusable(period, "cannot read the CSV inside the zip (it is not ASCII text)")
    header = bool(data) and not data[:1].isdigit()  # futures files start with a header line
    if header and (line := data.split(b"\n", 1)[0].rstrip(b"\r")) != ARCHIVE_HEADER:
        raise ArchiveUnusable(period, f"its first line {shown(line.decode())} is not the archive's header; refused")
    try:
        read = pacsv.ReadOptions(column_names=_ARCHIVE_NAMES, skip_rows=int(header), use_threads=False)
        table = pacsv.read_csv(io.BytesIO(data), read_options=read, parse_options=_PARSE, convert_options=_CONVERT)
    except pa.ArrowInvalid as exc:
        raise _malformed(period, data, header, exc) from None
    columns = {c: table.column(c) for c in CANDLE_COLUMNS}
    for column in TIME_COLUMNS:
        values = columns[column]
        # µs (spot from 2025) hold whole ms: an open on its ms, a close on the ms's last µs; other digits are refused.
        whole = 999 if column == "close_time" else 0
        rest = pc.subtract(values, pc.multiply(pc.divide(values, pa.scalar(1000)), pa.scalar(1000)))
        cut = pc.and_(pc.greater_equal(values, pa.scalar(MICROS_THRESHOLD)), pc.not_equal(rest, pa.scalar(whole)))
        if pc.any(cut).as_py():
            row = pc.index(cut, True).as_py()
            raise _refuse(period, row + 1, f"{column} {values[row]} (µs) is not a whole millisecond; refused, not cut")
        columns[column] = pc.if_else(
            pc.less(values, pa.scalar(MICROS_THRESHOLD)), values, pc.divide(values, pa.scalar(1000))
        )
    # Only digits and dots in the data (one C pass, a tenth of a regex per column): no sign, exponent,
    # NaN or other text; only otherwise are the columns matched one by one to name the value.
    body = data.split(b"\n", 1)[1] if header else data
    for column in DECIMAL_COLUMNS if body.translate(None, b"0123456789.,\r\n") else ():
        plain = pc.match_substring_regex(columns[column], _DECIMAL)
        if not pc.all(plain).as_py():
            row = pc.index(plain, False).as_py()
            raise _refuse(period, row + 1, f"{column} {shown(columns[column][row].as_py())} is not a plain decimal")
    candles = pa.Table.from_arrays([columns[c] for c in CANDLE_COLUMNS], schema=CANDLE_SCHEMA)
    breach = check_candles(candles, period.interval, (period.start_ms, period.end_ms))
    if breach is not None:
        outside = f"open_time is outside {period.label}"
        phrases = {"before": outside, "after": outside, "order": "open_time is not after the previous row's"}
        phrase = phrases.get(breach.rule)
        raise _refuse(period, breach.row, breach.reason if phrase is None else f"{phrase} ({breach.reason})")
    return candles


def _malformed(period: ArchivePeriod, data: bytes, header: bool, exc: pa.ArrowInvalid) -> ArchiveUnusable:
    """Which row the CSV reader refused (error path only): a layout we do not know, better REST than a guess."""
    for number, line in enumerate(data.splitlines()[int(header) :], start=1):
        fields = line.count(b",") + 1
        if fields != ARCHIVE_COLUMNS:
            return _refuse(period, number, f"{fields} fields, expected {ARCHIVE_COLUMNS}")
        if not all(v.isdigit() for k, v in enumerate(line.split(b",")) if _ARCHIVE_NAMES[k] in INTEGER_COLUMNS):
            return _refuse(period, number, "a time or trade count is not a whole number")
    return ArchiveUnusable(period, f"cannot read the CSV inside the zip ({str(exc)[:200]})")


def _refuse(period: ArchivePeriod, row: int, what: str) -> ArchiveUnusable:
    return ArchiveUnusable(period, f"row {row}: {what}")


# -- HTTP ------------------------------------------------------------------------
class ArchiveClient(SessionClient):
    """Reads the archive over one ``requests.Session``; no rate limiter (a CDN, no weight)."""

    def __init__(
        self, base_url: str = DEFAULT_ARCHIVE_URL, *, prefix: str = SPOT.archive_prefix, **options: Any
    ) -> None:
        super().__init__(base_url, **options)
        self.prefix = prefix
        self._session.headers.update({"User-Agent": USER_AGENT, "Accept": "*/*"})

    @classmethod
    def from_settings(cls, settings: Settings, *, pool_size: int | None = None) -> ArchiveClient:
        # One transport retry, not HTTP_RETRIES: a failing archive is given up for the run (REST takes over).
        options = cls.options(settings) | {"retries": min(1, settings.http_retries)}
        prefix = MARKETS[settings.market].archive_prefix
        return cls(settings.archive_url, prefix=prefix, pool_size=pool_size or settings.workers, **options)

    def url(self, period: ArchivePeriod) -> str:
        return f"{self.base_url}/{period.url_path(self.prefix)}"

    def checksum(self, period: ArchivePeriod) -> str | None:
        """The SHA-256 the archive publishes for the period's zip; None if there is no ``.CHECKSUM`` (404)."""
        with self._answer(period, self.url(period) + ".CHECKSUM") as (response, _):
            if response.status_code == 404:
                return None
            body = b""
            for block in response.iter_content(1024):
                body += block
                if len(body) > MAX_CHECKSUM_BYTES:
                    raise ArchiveUnusable(period, f"the .CHECKSUM is larger than {MAX_CHECKSUM_BYTES} bytes")
        try:
            return parse_checksum(body, period.zip_name)
        except ValueError as exc:
            raise ArchiveUnusable(period, str(exc)) from exc

    def download(
        self,
        period: ArchivePeriod,
        sink: IO[bytes],
        *,
        on_bytes: Callable[[int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> str:
        """Stream the zip into ``sink``; returns the SHA-256 hex of what was written."""
        digest = hashlib.sha256()
        received = 0
        with self._answer(period, self.url(period)) as (response, deadline):
            if response.status_code == 404:
                raise ArchiveNotPublished(period, "not published (HTTP 404)")
            for block in response.iter_content(CHUNK_BYTES):
                if should_stop is not None and should_stop():
                    raise DownloadStopped(period, "stopped on request")
                received += len(block)
                deadline.received(len(block))
                if received > period.max_csv_bytes + ZIP_SLACK:
                    raise ArchiveUnusable(period, f"larger than {period.label} of candles is; not a klines file")
                digest.update(block)
                sink.write(block)
                if on_bytes is not None:
                    on_bytes(len(block))
        return digest.hexdigest()

    @contextmanager
    def _answer(self, period: ArchivePeriod, url: str) -> Iterator[tuple[requests.Response, Deadline]]:
        """GET ``url`` (200 or 404) within its deadline: a stop, the deadline or a broken transport as our errors."""
        with self.deadline(url) as deadline:
            try:
                with self._session.get(url, timeout=self.timeout, stream=True) as response:
                    if response.status_code not in (200, 404):
                        raise ArchiveUnavailable(
                            period, f"{url}: HTTP {response.status_code}; check BINANCE_ARCHIVE_URL"
                        )
                    yield response, deadline
                deadline.check()  # a shut socket may look like the answer's end
            except (requests.RequestException, ExchangeUnavailableError, StopRequested) as exc:
                if isinstance(exc, StopRequested) or deadline.fired == "stop":
                    raise DownloadStopped(period, "stopped on request") from exc
                late = f"did not send its whole answer within {deadline.seconds:g} s"
                what = late if deadline.fired else f"could not be fetched ({type(exc).__name__})"
                raise ArchiveUnavailable(period, f"{url} {what}; check BINANCE_ARCHIVE_URL") from exc
