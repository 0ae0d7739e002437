"""The exchange's bulk archive (data.binance.vision): layout, downloads, checksums, zip -> candle frame.

Binance publishes the klines of every symbol as one zip per day and per month,
each with a ``.CHECKSUM`` beside it (``<sha256>  <name>.zip``), on a CDN with
no request weight. This module knows the URL layout, fetches checksums,
streams a zip into a binary file object *the caller opened* (this layer never
touches a file by name), verifies digests and turns a verified zip into the
candle frame of ``crypto_data_export.core.candles``: times as int64 ms (the archive switched
spot files to microseconds from 2025-01-01), decimals as the exact strings in
the file, every row on the interval grid and inside its period.

Nothing here decides which periods to take or what to do when one is
refused: the caller (``crypto_data_export.backfill.archive_backfill``) does.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import requests

from crypto_data_export.core.candles import (
    CANDLE_COLUMNS,
    DECIMAL_COLUMNS,
    INTEGER_COLUMNS,
    TIME_COLUMNS,
    candle_frame,
    empty_candle_frame,
)
from crypto_data_export.core.errors import ExchangeError
from crypto_data_export.exchange.client import USER_AGENT, build_session
from crypto_data_export.settings.intervals import DAY_MS, fixed_length_ms, grid_anchor_ms
from crypto_data_export.settings.settings import DEFAULT_ARCHIVE_URL

if TYPE_CHECKING:
    from crypto_data_export.settings.settings import Settings

SPOT_PREFIX = "data/spot"
# Intervals whose candles never straddle a day, so every daily and monthly file
# holds whole candles: the archive publishes daily files for exactly these.
DAILY_INTERVALS: tuple[str, ...] = ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d")
ARCHIVE_COLUMNS = 12  # the REST row's 12 fields, the last one unused
MICROS_THRESHOLD = 10**15  # a 16-digit epoch time is in microseconds
CHUNK_BYTES = 1 << 16
MAX_CHECKSUM_BYTES = 4096
MAX_ZIP_BYTES = 4 << 30  # a month of 1s candles is ~150 MB; anything near this is not a klines file
MAX_CSV_BYTES = 1 << 30  # a month of 1m is ~7 MB of CSV, a day of 1s ~13 MB

NO_CHECKSUM = "the archive has the zip but no .CHECKSUM for it"
_CHECKSUM_RE = re.compile(r"^([0-9a-fA-F]{64}) [ *]?(\S+)\s*$")
_DIGITS = r"[0-9]{1,19}"
_DECIMAL = r"[0-9]+(?:\.[0-9]+)?"

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


def has_daily_files(interval: str) -> bool:
    return interval in DAILY_INTERVALS


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

    def url_path(self, prefix: str = SPOT_PREFIX) -> str:
        """``data/spot/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-10.zip``."""
        return f"{prefix}/{self.kind}/klines/{self.symbol}/{archive_interval(self.interval)}/{self.zip_name}"


def month_bounds(ms: int) -> tuple[int, int]:
    """[start, end) in ms of the UTC calendar month containing ``ms``."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    start = datetime(moment.year, moment.month, 1, tzinfo=UTC)
    end = datetime(moment.year + moment.month // 12, moment.month % 12 + 1, 1, tzinfo=UTC)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def day_bounds(ms: int) -> tuple[int, int]:
    start = ms // DAY_MS * DAY_MS
    return start, start + DAY_MS


def monthly_period(symbol: str, interval: str, ms: int) -> ArchivePeriod:
    return ArchivePeriod(symbol, interval, "monthly", *month_bounds(ms))


def daily_period(symbol: str, interval: str, ms: int) -> ArchivePeriod:
    return ArchivePeriod(symbol, interval, "daily", *day_bounds(ms))


def days_of(period: ArchivePeriod) -> list[ArchivePeriod]:
    """The daily periods that make up a monthly one."""
    return [daily_period(period.symbol, period.interval, t) for t in range(period.start_ms, period.end_ms, DAY_MS)]


# -- checksums --------------------------------------------------------------------
def parse_checksum(text: bytes, zip_name: str) -> str:
    """The SHA-256 hex of a ``.CHECKSUM`` body (``sha256sum`` format) naming ``zip_name``.

    The name must be the zip's own: a checksum of another file verifies nothing.
    """
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
    """A readable zip holding exactly the period's CSV, every CRC right (decompresses once)."""
    handle.seek(0)
    try:
        with zipfile.ZipFile(handle) as archive:
            names = archive.namelist()
            if names != [period.csv_name]:
                raise ArchiveUnusable(period, f"the zip holds {names[:3]!r}, expected [{period.csv_name!r}]")
            broken = archive.testzip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        raise ArchiveUnusable(period, f"not a readable zip ({exc})") from exc
    if broken is not None:
        raise ArchiveUnusable(period, f"{broken} in the zip fails its CRC check")


def read_period_frame(handle: IO[bytes], period: ArchivePeriod) -> pd.DataFrame:
    """The candles of a verified zip as a candle frame; ArchiveUnusable if a row is wrong.

    Every value is kept as the exact string in the file (never a float), so the
    decimals reach the export byte for byte; times are normalised to ms row by
    row (16 digits = microseconds). Plain string splitting and one regex per
    column: a year of 1h is ~400 small files, where a ``read_csv`` per file costs
    more than the download.
    """
    columns = _split_columns(_csv_text(handle, period), period)
    for column in INTEGER_COLUMNS:
        _check_syntax(columns, column, _DIGITS, "a whole number", period)
    for column in DECIMAL_COLUMNS:
        _check_syntax(columns, column, _DECIMAL, "a plain decimal", period)
    if not columns["open_time"]:
        return empty_candle_frame()
    data: dict[str, object] = dict(columns)
    for column in TIME_COLUMNS:
        values = np.array(columns[column], dtype=np.int64)
        data[column] = np.where(values < MICROS_THRESHOLD, values, values // 1000)
    frame = candle_frame(data)
    _check_grid(frame, period)
    _check_prices(frame, period)
    return frame


def _csv_text(handle: IO[bytes], period: ArchivePeriod) -> str:
    handle.seek(0)
    try:
        with zipfile.ZipFile(handle) as archive:
            size = archive.getinfo(period.csv_name).file_size
            if size > MAX_CSV_BYTES:
                raise ArchiveUnusable(period, f"the CSV inside is {size} bytes; more than a klines file can be")
            return archive.read(period.csv_name).decode("ascii")
    except (zipfile.BadZipFile, KeyError, OSError, EOFError, ValueError) as exc:  # UnicodeDecodeError too
        raise ArchiveUnusable(period, f"cannot read the CSV inside the zip ({exc})") from exc


def _split_columns(text: str, period: ArchivePeriod) -> dict[str, list[str]]:
    """Lines -> the 11 columns we keep, as lists of strings (a header line is skipped).

    One split of the whole text and a slice per column: a split per line makes
    a list per row, and a month of 1m rows is then mostly garbage-collector work.
    """
    lines = text.splitlines()
    if lines and not lines[0].split(",", 1)[0].isdigit():  # futures files start with a header line
        lines = lines[1:]
    for number, line in enumerate(lines):
        if line.count(",") != ARCHIVE_COLUMNS - 1:  # a layout we do not know: better REST than a guess
            raise _refuse(period, number, f"{line.count(',') + 1} fields, expected {ARCHIVE_COLUMNS}")
    fields = ",".join(lines).split(",") if lines else []
    return {column: fields[k::ARCHIVE_COLUMNS] for k, column in enumerate(CANDLE_COLUMNS)}


def _check_syntax(columns: dict[str, list[str]], column: str, pattern: str, kind: str, period: ArchivePeriod) -> None:
    """Every value of the column is entirely ``pattern``: one regex over the joined column,
    then (only if that fails) a search for the first bad row."""
    values = columns[column]
    if re.fullmatch(f"(?:{pattern}\n)*", "\n".join(values) + "\n" if values else ""):
        return
    single = re.compile(pattern)
    row = next(i for i, value in enumerate(values) if not single.fullmatch(value))
    raise _refuse(period, row, f"{column} {values[row]!r} is not {kind}")


def _first_bad(mask: np.ndarray) -> int | None:
    bad = np.asarray(mask, dtype=bool)
    return int(np.argmax(bad)) if bad.any() else None


def _refuse(period: ArchivePeriod, row: int, what: str) -> ArchiveUnusable:
    return ArchiveUnusable(period, f"row {row + 1}: {what}")


def _check_grid(frame: pd.DataFrame, period: ArchivePeriod) -> None:
    length = fixed_length_ms(period.interval)
    if length is None:
        raise ArchiveUnusable(period, f"interval {period.interval} has no fixed length; use the REST API")
    opens = frame["open_time"].to_numpy()
    closes = frame["close_time"].to_numpy()
    checks: list[tuple[np.ndarray, str]] = [
        ((opens < period.start_ms) | (opens >= period.end_ms), f"open_time is outside {period.label}"),
        ((opens - grid_anchor_ms(period.interval)) % length != 0, f"open_time is not on the {period.interval} grid"),
        (closes != opens + length - 1, f"close_time does not end the {period.interval} candle"),
        (np.r_[False, opens[1:] <= opens[:-1]], "open_time is not after the previous row's"),
    ]
    for mask, what in checks:
        row = _first_bad(mask)
        if row is not None:
            raise _refuse(period, row, f"{what} ({int(opens[row])} ms)")


def _check_prices(frame: pd.DataFrame, period: ArchivePeriod) -> None:
    """The store's OHLC rule, compared as floats like the file validation does."""
    o, h, low, c = (np.array(frame[col], dtype=np.float64) for col in ("open", "high", "low", "close"))
    row = _first_bad((h < np.maximum(o, c)) | (low > np.minimum(o, c)) | (low > h))
    if row is not None:
        raise _refuse(period, row, "high/low do not bound open and close")


# -- HTTP ------------------------------------------------------------------------
class ArchiveClient:
    """Reads the archive over one ``requests.Session``; no rate limiter (a CDN, no weight)."""

    def __init__(
        self,
        base_url: str = DEFAULT_ARCHIVE_URL,
        *,
        prefix: str = SPOT_PREFIX,
        connect_timeout: float = 5.0,
        read_timeout: float = 20.0,
        retries: int = 4,
        backoff: float = 0.5,
        pool_size: int = 16,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.prefix = prefix
        self.timeout = (connect_timeout, read_timeout)
        self._session = build_session(retries, backoff, pool_size, base_url=self.base_url)
        self._session.headers.update({"User-Agent": USER_AGENT, "Accept": "*/*"})

    @classmethod
    def from_settings(cls, settings: Settings, *, pool_size: int | None = None) -> ArchiveClient:
        return cls(
            settings.archive_url,
            connect_timeout=settings.connect_timeout_seconds,
            read_timeout=settings.http_timeout_seconds,
            retries=settings.http_retries,
            backoff=settings.http_backoff_seconds,
            pool_size=pool_size or settings.workers,
        )

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> ArchiveClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, period: ArchivePeriod) -> str:
        return f"{self.base_url}/{period.url_path(self.prefix)}"

    def checksum(self, period: ArchivePeriod) -> str | None:
        """The SHA-256 the archive publishes for the period's zip; None if there is no ``.CHECKSUM`` (404)."""
        with self._get(period, self.url(period) + ".CHECKSUM") as response:
            if response.status_code == 404:
                return None
            body = _read_capped(response, MAX_CHECKSUM_BYTES, period)
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
        with self._get(period, self.url(period)) as response:
            if response.status_code == 404:
                raise ArchiveNotPublished(period, "not published (HTTP 404)")
            try:
                for block in response.iter_content(CHUNK_BYTES):
                    if should_stop is not None and should_stop():
                        raise DownloadStopped(period, "stopped on request")
                    received += len(block)
                    if received > MAX_ZIP_BYTES:
                        raise ArchiveUnusable(period, f"larger than {MAX_ZIP_BYTES} bytes; not a klines file")
                    digest.update(block)
                    sink.write(block)
                    if on_bytes is not None:
                        on_bytes(len(block))
            except requests.RequestException as exc:
                raise ArchiveUnavailable(period, f"the download broke off ({type(exc).__name__})") from exc
        return digest.hexdigest()

    def _get(self, period: ArchivePeriod, url: str) -> requests.Response:
        try:
            response = self._session.get(url, timeout=self.timeout, stream=True)
        except requests.RequestException as exc:
            raise ArchiveUnavailable(
                period, f"{url} could not be fetched ({type(exc).__name__}); check BINANCE_ARCHIVE_URL"
            ) from exc
        if response.status_code not in (200, 404):
            response.close()
            raise ArchiveUnavailable(period, f"{url} answered HTTP {response.status_code}")
        return response


def _read_capped(response: requests.Response, cap: int, period: ArchivePeriod) -> bytes:
    body = b""
    try:
        for block in response.iter_content(1024):
            body += block
            if len(body) > cap:
                raise ArchiveUnusable(period, f"the .CHECKSUM is larger than {cap} bytes")
    except requests.RequestException as exc:
        raise ArchiveUnavailable(period, f"the .CHECKSUM download broke off ({type(exc).__name__})") from exc
    return body
