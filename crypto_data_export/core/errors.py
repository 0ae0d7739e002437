"""The exporter's exception hierarchy: foreign errors are translated at the edge (``raise ...
from``); every message is one line saying what is wrong and what to do."""

from __future__ import annotations

from datetime import UTC, datetime


class ExportError(Exception):
    """Base of every error this product raises on purpose."""


class StopRequested(ExportError):
    """A stop was requested (SIGTERM/SIGINT) while waiting for or paging through the exchange."""


class ExchangeError(ExportError):
    """The exchange could not give a usable answer."""


class ExchangeUnavailableError(ExchangeError):
    """The exchange was unreachable, stalled or kept failing after the retries."""


class BadResponseError(ExchangeError):
    """The exchange answered, but not with the JSON we expect (HTML, truncated, wrong shape)."""


class RequestRejectedError(ExchangeError):
    """The exchange refused the request itself (HTTP 4xx with a Binance error code)."""

    def __init__(self, message: str, status: int, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class UnknownSymbolError(RequestRejectedError):
    """The exchange does not know the symbol (Binance error -1121)."""


class NoDataError(ExchangeError):
    """The symbol exists but has no closed candle in the window (delisted or halted)."""


class RateLimitedError(ExchangeError):
    """HTTP 429 kept coming after waiting as told."""


class IPBannedError(ExchangeError):
    """HTTP 418: the exchange banned this IP until ``banned_until`` (UTC)."""

    def __init__(self, banned_until: datetime, detail: str = "") -> None:
        self.banned_until = banned_until
        until = banned_until.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        message = f"the exchange banned this IP until {until} (HTTP 418); no request is sent before then"
        super().__init__(message + (f": {detail}" if detail else ""))


class LocationRestrictedError(ExchangeError):
    """HTTP 451: the host refuses requests from this location."""


class RedirectRefusedError(ExchangeError):
    """HTTP 3xx: the host sent us elsewhere; redirects are never followed."""


class ClockSkewError(ExchangeError):
    """The exchange's clock is so far ahead of ours that its candles cannot be trusted."""


class StorageError(ExportError):
    """A file or folder of the export store could not be read or written."""


class StoreSetupError(StorageError):
    """The dataset's object store cannot be used as configured (credentials, bucket, endpoint): exit 2."""


class InvalidDataError(ExportError):
    """New candles break a rule of the file format; nothing was published under an export name."""


class OlderDataError(InvalidDataError):
    """New candles end before the newest candle already kept: the window would move backwards."""


class RunLockedError(ExportError):
    """Another run holds the run lock (cron and the service overlapping)."""


class ServiceError(ExportError):
    """The background service could not be started, stopped or inspected."""


class UniverseError(ExportError):
    """The symbol universe (EXPORT_QUOTE_ASSET / EXPORT_TOP_N) could not be resolved or is empty."""
