"""Settings: one typed, frozen object built once from the environment and ``.env``.

Every knob of the product lives here so that nothing else reads the
environment. A bad value is reported with the variable, the value and what
is accepted (``SettingsError``); the CLIs turn that into exit code 2.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from dotenv import dotenv_values

from config.intervals import VALID_INTERVALS
from config.symbols_config import SymbolError, resolve_symbols

T = TypeVar("T")

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_BASE_URL = "https://api.binance.com"
DEFAULT_ARCHIVE_URL = "https://data.binance.vision"
# 16 workers keep ~7.5 requests in flight at 150 ms latency, the number that
# the 6000 weight/minute budget (50 klines calls/s) needs, with headroom.
DEFAULT_WORKERS = 16


class SettingsError(ValueError):
    """A configuration value that cannot be used; the message names it."""


@dataclass(frozen=True)
class Settings:
    """Everything the exporter, the file manager and the scheduler need."""

    base_url: str = DEFAULT_BASE_URL
    export_dir: Path = Path("historical_exports")
    kline_interval: str = "1h"
    lookback_days: float = 2.0
    export_period_hours: float = 2.0
    max_files_per_symbol: int = 1
    data_retention_days: float = 7.0
    symbols: tuple[str, ...] = field(default_factory=tuple)
    workers: int = DEFAULT_WORKERS
    http_timeout_seconds: float = 20.0
    http_retries: int = 4
    http_backoff_seconds: float = 0.5
    log_level: str = "INFO"
    archive_url: str = DEFAULT_ARCHIVE_URL

    @property
    def connect_timeout_seconds(self) -> float:
        """A refused or unreachable host should fail fast; a slow answer may take longer."""
        return min(5.0, self.http_timeout_seconds)


def _number(kind: Callable[[str], T], accepted: str, check: Callable[[T], bool]) -> Callable[[str, str], T]:
    def parse(name: str, raw: str) -> T:
        try:
            value = kind(raw.strip())
        except ValueError:
            value = None
        if value is None or not check(value) or value != value:  # value != value: NaN
            raise SettingsError(f"{name}={raw!r} is not valid: expected {accepted}")
        return value

    return parse


_positive_float = _number(float, "a positive number", lambda v: 0 < v < float("inf"))
_positive_int = _number(int, "a whole number of at least 1", lambda v: v >= 1)
_workers = _number(int, "a whole number from 1 to 64", lambda v: 1 <= v <= 64)
_retries = _number(int, "a whole number from 0 to 10", lambda v: 0 <= v <= 10)
_backoff = _number(float, "a number of seconds from 0 to 60", lambda v: 0 <= v <= 60)


def _base_url(name: str, raw: str) -> str:
    url = raw.strip().rstrip("/")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise SettingsError(f"{name}={raw!r} is not valid: expected an http(s) URL such as {DEFAULT_BASE_URL}")
    return url


def _archive_url(name: str, raw: str) -> str:
    url = raw.strip().rstrip("/")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise SettingsError(f"{name}={raw!r} is not valid: expected an http(s) URL such as {DEFAULT_ARCHIVE_URL}")
    return url


def _interval(name: str, raw: str) -> str:
    if raw.strip() not in VALID_INTERVALS:
        raise SettingsError(f"{name}={raw!r} is not valid: expected one of {', '.join(VALID_INTERVALS)}")
    return raw.strip()


def _log_level(name: str, raw: str) -> str:
    level = raw.strip().upper()
    if level not in LOG_LEVELS:
        raise SettingsError(f"{name}={raw!r} is not valid: expected one of {', '.join(LOG_LEVELS)}")
    return level


def _export_dir(name: str, raw: str) -> Path:
    if not raw.strip() or "\x00" in raw:
        raise SettingsError(f"{name}={raw!r} is not valid: expected a folder path")
    return Path(raw.strip()).expanduser()


# variable -> (Settings field, parser)
_PARSERS: dict[str, tuple[str, Callable[[str, str], object]]] = {
    "BINANCE_BASE_URL": ("base_url", _base_url),
    "EXPORT_DIR": ("export_dir", _export_dir),
    "KLINE_INTERVAL": ("kline_interval", _interval),
    "EXPORT_LOOKBACK_DAYS": ("lookback_days", _positive_float),
    "EXPORT_PERIOD_HOURS": ("export_period_hours", _positive_float),
    "MAX_FILES_PER_SYMBOL": ("max_files_per_symbol", _positive_int),
    "DATA_RETENTION_DAYS": ("data_retention_days", _positive_float),
    "EXPORT_WORKERS": ("workers", _workers),
    "HTTP_TIMEOUT_SECONDS": ("http_timeout_seconds", _positive_float),
    "HTTP_RETRIES": ("http_retries", _retries),
    "HTTP_BACKOFF_SECONDS": ("http_backoff_seconds", _backoff),
    "LOG_LEVEL": ("log_level", _log_level),
    "BINANCE_ARCHIVE_URL": ("archive_url", _archive_url),
}
SETTING_VARIABLES: tuple[str, ...] = tuple(_PARSERS) + ("EXPORT_SYMBOLS", "CRYPTO_SYMBOLS")


def override(settings: Settings, variable: str, raw: str | None, *, shown_as: str) -> Settings:
    """``settings`` with one value replaced from a CLI flag, checked by the variable's own
    rule; an error names the flag (``shown_as``), not the variable. None keeps the value."""
    if raw is None:
        return settings
    field_name, parse = _PARSERS[variable]
    changes: dict[str, Any] = {field_name: parse(shown_as, raw)}
    return replace(settings, **changes)


def read_environment(
    environ: Mapping[str, str] | None = None, env_file: str | os.PathLike[str] | None = ".env"
) -> dict[str, str]:
    """Merge ``.env`` under the real environment (the environment wins)."""
    merged: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        try:
            file_values = dotenv_values(env_file)
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(f"cannot read {env_file}: {exc}; fix or remove the file") from exc
        merged.update({k: v for k, v in file_values.items() if v is not None})
    merged.update(os.environ if environ is None else environ)
    return merged


def load_settings(
    environ: Mapping[str, str] | None = None,
    env_file: str | os.PathLike[str] | None = ".env",
    symbols_override: str | None = None,
) -> Settings:
    """Build and validate Settings; ``symbols_override`` is the CLI's ``--symbols``."""
    values = read_environment(environ, env_file)
    kwargs: dict[str, object] = {}
    for variable, (field_name, parse) in _PARSERS.items():
        raw = values.get(variable)
        if raw is not None and raw.strip() != "":
            kwargs[field_name] = parse(variable, raw)
    try:
        if symbols_override is not None:
            kwargs["symbols"] = resolve_symbols(symbols_override, None)
        else:
            kwargs["symbols"] = resolve_symbols(values.get("EXPORT_SYMBOLS"), values.get("CRYPTO_SYMBOLS"))
    except SymbolError as exc:
        source = "--symbols" if symbols_override is not None else "EXPORT_SYMBOLS/CRYPTO_SYMBOLS"
        raise SettingsError(f"{source}: {exc}") from exc
    return Settings(**kwargs)  # type: ignore[arg-type]
