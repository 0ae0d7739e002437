"""Settings: one typed, frozen object built once from the environment and ``.env``.

Nothing else reads the environment. A bad value is reported with the variable, the value and what is accepted
(``SettingsError``, exit code 2). Every number has an upper bound (``1e300`` hours would overflow every date), and the
export folder must be a folder of its own (cleanup acts on its entries), never a system or home folder itself."""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import pwd
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from dotenv import dotenv_values

from crypto_data_export.core.intervals import DAY_MS, VALID_INTERVALS, fixed_length_ms
from crypto_data_export.core.text import printable
from crypto_data_export.settings.market_names import DEFAULT_BASE_URLS, SPOT, VALID_MARKETS
from crypto_data_export.settings.symbols import SymbolError, listed_symbols, resolve_symbols

T = TypeVar("T")
logger = logging.getLogger(__name__)

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_BASE_URL = "https://api.binance.com"
DEFAULT_EXPORT_DIR = "historical_exports"
METRICS_OFF = "off"
DEFAULT_ARCHIVE_URL = "https://data.binance.vision"
# Requests in flight, not CPU work: 30 hide 150 ms of latency for a few hundred symbols (400 calls in about 2 s). The
# rate limiter, not the pool size, keeps us inside the exchange's budget; EXPORT_WORKERS is bounded to 1..64.
DEFAULT_WORKERS = 30
# binance.com lists about 1,500 TRADING spot symbols in all quote assets (400 in USDT); 2,000 series
# cost about 4,000 of the 6,000 weight a minute and keep a cycle's files and memory modest.
DEFAULT_MAX_SYMBOLS = 2000


class SettingsError(ValueError):
    """A configuration value that cannot be used; the message names it."""


@dataclass(frozen=True)
class Settings:
    """Everything the exporter, the file manager and the scheduler need."""

    base_url: str = DEFAULT_BASE_URL
    export_dir: Path = Path(DEFAULT_EXPORT_DIR)
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
    # Candles opening further ahead of this machine's clock are refused (a broken exchange clock).
    max_ahead_hours: float = 24.0
    log_level: str = "INFO"
    # Prometheus textfile: "" is EXPORT_DIR/metrics/exporter.prom, "off" writes none.
    metrics_file: str = ""
    metrics_pushgateway: str = ""  # a Pushgateway's URL: each run's metrics are pushed there ("" none)
    archive_url: str = DEFAULT_ARCHIVE_URL
    # Every interval exported (KLINE_INTERVALS); empty means (kline_interval,). After __post_init__ it is never empty
    # and kline_interval is one of them (the first if it was not), so code that knows one interval keeps working.
    kline_intervals: tuple[str, ...] = ()
    market: str = SPOT  # BINANCE_MARKET; an empty base_url means this market's default host
    # The file format of new exports (store.formats.FORMATS holds one class per name).
    export_format: str = "csv"
    # EXPORT_LAYOUT: the guide's rolling files, or the dataset (store.dataset) with the whole history.
    export_layout: str = "files"
    dataset_numbers: str = "float"  # Parquet numbers of both layouts: float64, or exact decimals
    dataset_retention_days: float = 0.0  # dataset periods ending longer ago are removed; 0 keeps all
    # The dataset's root in object storage (``s3://``, ``gs://``, ``az://`` bucket/prefix; "" is EXPORT_DIR/dataset
    # on disk), the store's endpoint ("" is the provider's, or AWS_ENDPOINT_URL) and a series' writer lease lifetime.
    dataset_url: str = ""
    dataset_endpoint_url: str = ""
    dataset_lease_seconds: float = 600.0

    # The symbol universe: every TRADING symbol quoted in this asset, resolved at each cycle (``symbols`` then holds
    # only the explicitly listed ones, added to it); TOP_N keeps the N with the largest 24 h quote volume.
    quote_asset: str | None = None
    top_n: int | None = None
    # EXPORT_AT: runs aligned to the clock (``cadence`` gives schedule's unit and ``.at()`` text).
    export_at: str | None = None
    # At most this many symbols a cycle (listed + universe): beyond it a typo or a huge universe, not a plan.
    max_symbols: int = DEFAULT_MAX_SYMBOLS

    def __post_init__(self) -> None:
        if len(self.symbols) + (self.top_n or 0) > self.max_symbols:
            what = f"{len(self.symbols)} listed symbols" + (f" and EXPORT_TOP_N={self.top_n}" if self.top_n else "")
            raise SettingsError(f"{what}: more than EXPORT_MAX_SYMBOLS={self.max_symbols}; export fewer, or raise it")
        if self.top_n is not None and self.quote_asset is None:
            # Quote volumes in different assets (USDT, BTC, TRY) cannot be ranked together.
            raise SettingsError(
                f"EXPORT_TOP_N={self.top_n} needs EXPORT_QUOTE_ASSET (e.g. EXPORT_QUOTE_ASSET=USDT): "
                "24 h quote volumes are only comparable within one quote asset"
            )
        # Normalised here (frozen: object.__setattr__), so dataclasses.replace normalises too.
        if not self.kline_intervals:
            object.__setattr__(self, "kline_intervals", (self.kline_interval,))
        elif self.kline_interval not in self.kline_intervals:
            object.__setattr__(self, "kline_interval", self.kline_intervals[0])
        if self.market not in VALID_MARKETS:
            raise SettingsError(f"BINANCE_MARKET={self.market!r} is not valid: expected {' or '.join(VALID_MARKETS)}")
        if not self.base_url:
            object.__setattr__(self, "base_url", DEFAULT_BASE_URLS[self.market])
        other = [m for m, url in DEFAULT_BASE_URLS.items() if url == self.base_url and m != self.market]
        if other:  # e.g. .env's BINANCE_BASE_URL=https://api.binance.com left in place for usdm
            raise SettingsError(
                f"BINANCE_BASE_URL={self.base_url} is the {other[0]} host but BINANCE_MARKET={self.market}: "
                f"remove BINANCE_BASE_URL (the default is {DEFAULT_BASE_URLS[self.market]}) or set it to that host"
            )
        # Checked here, so a CLI flag applied with dataclasses.replace is checked too: the look-back must hold
        # one closed candle of every interval (the longest decides), and the period must suit EXPORT_AT.
        longest = max(self.kline_intervals, key=min_lookback_days)
        if self.lookback_days < (shortest := min_lookback_days(longest)):
            one = len(self.kline_intervals) == 1
            raise SettingsError(
                f"EXPORT_LOOKBACK_DAYS={self.lookback_days:g} cannot hold one closed {longest} candle "
                f"({f'KLINE_INTERVAL={longest}' if one else 'KLINE_INTERVALS=' + ','.join(self.kline_intervals)}): "
                f"set EXPORT_LOOKBACK_DAYS to at least {shortest:g} or "
                + ("choose a shorter KLINE_INTERVAL" if one else f"drop {longest} from KLINE_INTERVALS")
            )
        cadence(self.export_period_hours, self.export_at)

    @property
    def single_series(self) -> bool:
        """One interval on the spot market: the guide's layout (status keys are plain symbols)."""
        return len(self.kline_intervals) == 1 and self.market == SPOT

    @property
    def connect_timeout_seconds(self) -> float:
        """A refused or unreachable host should fail fast; a slow answer may take longer."""
        return min(5.0, self.http_timeout_seconds)


def min_lookback_days(interval: str) -> float:
    """The shortest look-back that always holds a closed candle: two candle lengths
    (the current candle is still open; the one before it must fit in the window)."""
    length = fixed_length_ms(interval) or 31 * DAY_MS  # a month is at most 31 days
    return 2 * length / DAY_MS


def _rule(kind: Callable[[str], T], accepted: str, check: Callable[[Any], object]) -> Callable[[str, str], T]:
    """A parser: ``kind`` of the stripped text, refused unless ``check`` holds (the message says ``accepted``)."""

    def parse(name: str, raw: str) -> T:
        try:
            value = kind(raw.strip())
            usable = value == value and check(value)  # value != value: NaN
        except ValueError:  # not a number, or a URL urlparse refuses ("http://[")
            usable = False
        if not usable:
            raise SettingsError(f"{name}={raw!r} is not valid: expected {accepted}")
        return value

    return parse


def _between(kind: Callable[[str], float], low: float, high: float, what: str) -> Callable[[str, str], float]:
    return _rule(kind, f"{what} from {low:g} to {high:g}", lambda v: low <= v <= high)


def _positive_up_to(limit: float, what: str, least: float = 0.0) -> Callable[[str, str], float]:
    lowest = f" from {least:g}" if least else ""
    return _rule(float, f"a positive number{lowest} up to {limit:g} ({what})", lambda v: least <= v <= limit and v > 0)


# Upper bounds (here and in _PARSERS): far beyond any sensible use, well inside what dates and timers can hold.
MAX_LOOKBACK_DAYS = 3650.0  # ten years of candles
MIN_PERIOD_HOURS = 0.0001  # 0.36 s, for tests; less would be a busy loop against the exchange
MAX_FILES = 100_000


def _url(example: str) -> Callable[[str, str], str]:
    return _rule(lambda raw: raw.rstrip("/"), f"an http(s) URL such as {example}", _is_http_url)


def _is_http_url(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)


_STORE_URLS = "s3://, gs:// or az://bucket/prefix (MinIO, R2, emulators: with DATASET_ENDPOINT_URL) or file:///folder"


def _is_store_url(url: str) -> bool:
    parsed = urlparse(url)
    return not url or parsed.scheme in ("s3", "gs", "az") and bool(parsed.netloc) or url.startswith("file:///")


def _choice(choices: tuple[str, ...], normal: Callable[[str], str] = str.strip) -> Callable[[str, str], str]:
    """One of ``choices`` (after ``normal``: maybe re-cased)."""
    return _rule(normal, "one of " + ", ".join(choices), choices.__contains__)


def _intervals(name: str, raw: str) -> tuple[str, ...]:
    """A comma list of intervals, in order, each once."""
    items = [item.strip() for item in raw.split(",")]
    bad = [item for item in items if item not in VALID_INTERVALS]
    if bad or not items:
        shown = ", ".join(repr(b) for b in bad) or "nothing"
        raise SettingsError(
            f"{name}={raw!r} is not valid: {shown} is not an interval; expected a comma list of "
            f"{', '.join(VALID_INTERVALS)} (e.g. 1m,1h,4h)"
        )
    return tuple(dict.fromkeys(items))


# The names of store.formats.FORMATS (config imports nothing of store; a test checks they agree).
EXPORT_FORMATS = ("csv", "parquet")
EXPORT_LAYOUTS = ("files", "dataset")
DATASET_NUMBERS = ("float", "decimal")
MAX_TOP_N = 2000  # more than the TRADING symbols of any quote asset on binance.com
_ASSET_RULE = re.compile(r"^[A-Z0-9]{1,20}$")

# Folders that belong to the system: the export folder may be inside some of them
# (/var/lib/crypto, /srv/exports), never one of them.
SYSTEM_FOLDERS = frozenset(
    "/ /bin /boot /dev /etc /home /lib /lib32 /lib64 /libx32 /media /mnt /opt /proc /root /run /sbin "
    "/snap /srv /sys /tmp /usr /usr/bin /usr/lib /usr/local /usr/local/bin /usr/sbin /usr/share /var "
    "/var/cache /var/lib /var/log /var/mail /var/run /var/spool /var/tmp /dev/shm".split()
)
# Kernel views, not storage: nothing of ours belongs anywhere below them.
VIRTUAL_FOLDERS = ("/proc", "/sys", "/dev")


def system_folder_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot be an export folder (a system or home folder itself), or None."""
    real = os.path.realpath(folder)
    if real in SYSTEM_FOLDERS:
        return f"{real} is a system folder"
    for virtual in VIRTUAL_FOLDERS:
        if real.startswith(virtual + os.sep) and not real.startswith("/dev/shm/"):
            return f"{real} is inside {virtual}, a kernel folder"
    homes = [os.environ.get("HOME") or ""]
    with contextlib.suppress(KeyError):
        homes.append(pwd.getpwuid(os.getuid()).pw_dir)
    if real in {os.path.realpath(home) for home in homes if home.strip()}:
        return f"{real} is a home folder itself"
    return None


def _export_dir(name: str, raw: str) -> Path:
    if not raw.strip() or "\x00" in raw:
        raise SettingsError(f"{name}={raw!r} is not valid: expected a folder path")
    folder = Path(raw.strip()).expanduser()
    if (problem := system_folder_problem(folder)) is not None:
        raise SettingsError(
            f"{name}={raw!r} is not valid: {problem}; use a folder of its own, such as ~/crypto_exports"
        )
    return folder


def _metrics_file(name: str, raw: str) -> str:
    """``off`` disables the metrics; any other value is the .prom file's path."""
    value = raw.strip()
    if value.lower() == METRICS_OFF:
        return METRICS_OFF
    if "\x00" in value or not value.endswith(".prom"):
        raise SettingsError(
            f"{name}={raw!r} is not valid: expected a file path ending in .prom "
            f"(node_exporter reads only those), or {METRICS_OFF!r} to write no metrics"
        )
    return str(Path(value).expanduser())


def cadence(period_hours: float, export_at: str | None) -> tuple[str, int, str | None]:
    """The period as schedule's ``every(count).<unit>`` (whole hours, else whole seconds, at least 1)
    and EXPORT_AT as its ``.at()`` text, for a period of a whole unit schedule can align (the error
    lists them). Times are the machine's local time (UTC in the Docker image), as schedule reads it."""
    if export_at is None:
        if float(period_hours).is_integer():
            return "hours", int(period_hours), None
        return "seconds", max(1, round(period_hours * 3600)), None
    minutes = round(period_hours * 60, 6)
    if period_hours % 24 == 0 and re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?", export_at):
        return "days", int(period_hours // 24), export_at
    if period_hours < 24 and float(period_hours).is_integer():
        past_hour = re.fullmatch(r":?([0-5]\d):([0-5]\d)", export_at)  # ":MM:SS" or "MM:SS"
        if past_hour or re.fullmatch(r":[0-5]\d", export_at):  # or ":MM"
            return "hours", int(period_hours), f"{past_hour[1]}:{past_hour[2]}" if past_hour else export_at
    if period_hours < 1 and minutes.is_integer() and re.fullmatch(r":[0-5]\d", export_at):
        return "minutes", int(minutes), export_at
    raise SettingsError(
        f"EXPORT_AT={export_at!r} is not valid with EXPORT_PERIOD_HOURS={period_hours:g}: expected HH:MM[:SS] "
        "for a period of whole days, :MM:SS, MM:SS or :MM for whole hours under a day, :SS for whole minutes "
        "under an hour"
    )


# variable -> (Settings field, parser)
_PARSERS: dict[str, tuple[str, Callable[[str, str], object]]] = {
    "BINANCE_BASE_URL": ("base_url", _url(DEFAULT_BASE_URL)),
    "EXPORT_DIR": ("export_dir", _export_dir),
    "KLINE_INTERVAL": ("kline_interval", _choice(VALID_INTERVALS)),
    "EXPORT_LOOKBACK_DAYS": ("lookback_days", _positive_up_to(MAX_LOOKBACK_DAYS, "days, ten years")),
    "EXPORT_PERIOD_HOURS": ("export_period_hours", _positive_up_to(8760, "hours, one year", MIN_PERIOD_HOURS)),
    "MAX_FILES_PER_SYMBOL": ("max_files_per_symbol", _between(int, 1, MAX_FILES, "a whole number")),
    "DATA_RETENTION_DAYS": ("data_retention_days", _positive_up_to(36500, "days, a century")),
    "EXPORT_WORKERS": ("workers", _between(int, 1, 64, "a whole number")),
    "HTTP_TIMEOUT_SECONDS": ("http_timeout_seconds", _positive_up_to(600, "seconds, one request")),
    "HTTP_RETRIES": ("http_retries", _between(int, 0, 10, "a whole number")),
    "HTTP_BACKOFF_SECONDS": ("http_backoff_seconds", _between(float, 0, 60, "a number of seconds")),
    "EXCHANGE_MAX_AHEAD_HOURS": ("max_ahead_hours", _between(float, 0.1, 720, "a number of hours")),
    "LOG_LEVEL": ("log_level", _choice(LOG_LEVELS, str.upper)),
    "BINANCE_ARCHIVE_URL": ("archive_url", _url(DEFAULT_ARCHIVE_URL)),
    "KLINE_INTERVALS": ("kline_intervals", _intervals),
    "BINANCE_MARKET": ("market", _choice(VALID_MARKETS, str.lower)),
    "EXPORT_FORMAT": ("export_format", _choice(EXPORT_FORMATS, str.lower)),
    "EXPORT_LAYOUT": ("export_layout", _choice(EXPORT_LAYOUTS, str.lower)),
    "DATASET_NUMBERS": ("dataset_numbers", _choice(DATASET_NUMBERS, str.lower)),
    "DATASET_RETENTION_DAYS": ("dataset_retention_days", _between(float, 0, 36500, "days (0 keeps every period)")),
    "DATASET_URL": ("dataset_url", _rule(str.strip, _STORE_URLS, _is_store_url)),
    "DATASET_ENDPOINT_URL": ("dataset_endpoint_url", _url("http://127.0.0.1:9000")),
    "DATASET_LEASE_SECONDS": ("dataset_lease_seconds", _between(float, 1, 86400, "seconds")),
    "EXPORT_QUOTE_ASSET": (
        "quote_asset",
        _rule(str.upper, "an asset of 1 to 20 letters or digits, such as USDT", _ASSET_RULE.fullmatch),
    ),
    "EXPORT_TOP_N": ("top_n", _between(int, 1, MAX_TOP_N, "a whole number")),
    "METRICS_FILE": ("metrics_file", _metrics_file),
    "METRICS_PUSHGATEWAY": ("metrics_pushgateway", _url("http://pushgateway:9091")),
    "EXPORT_AT": ("export_at", lambda _name, raw: raw.strip()),  # checked with the period (cadence)
    "EXPORT_MAX_SYMBOLS": ("max_symbols", _between(int, 1, MAX_FILES, "a whole number")),
}
SETTING_VARIABLES: tuple[str, ...] = tuple(_PARSERS) + ("EXPORT_SYMBOLS", "CRYPTO_SYMBOLS")
# A variable named so is meant for us: one that is not a setting is a typo, reported (else silently ignored).
OUR_PREFIXES = ("BINANCE_", "EXPORT_", "KLINE_", "CRYPTO_", "EXCHANGE_", "METRICS_", "DATASET_")


def warn_unknown_variables(values: Mapping[str, str]) -> None:
    """One warning per variable with our prefixes, or a name close to a setting's (HTTP_TIMEOUT),
    that is not a setting; others' variables (HTTP_PROXY, LOG_DIR) are left alone."""
    for name in sorted(set(values) - set(SETTING_VARIABLES)):
        close = difflib.get_close_matches(name.upper(), SETTING_VARIABLES, 1, 0.75)
        if close or name.upper().startswith(OUR_PREFIXES):
            hint = close or difflib.get_close_matches(name.upper(), SETTING_VARIABLES, 1, 0.5)
            advice = f"did you mean {hint[0]}?" if hint else "the settings are listed in .env.example"
            logger.warning("warning: %s is not a setting, ignored; %s", printable(name, 80), advice)


def override(settings: Settings, flags: Mapping[str, tuple[str | None, str]]) -> Settings:
    """``settings`` with values from CLI flags, ``{variable: (raw value or None, flag)}``, each
    checked by its variable's rule (errors name the flag), all at once (a combination such
    as ``--interval 1w --days 30`` is judged as a whole)."""
    changes: dict[str, Any] = {
        _PARSERS[v][0]: _PARSERS[v][1](flag, raw) for v, (raw, flag) in flags.items() if raw is not None
    }
    if "kline_interval" in changes and "kline_intervals" not in changes:
        changes["kline_intervals"] = (changes["kline_interval"],)  # a one-interval flag means that interval only
    return _built(lambda: replace(settings, **changes), flags) if changes else settings


def _built(build: Callable[[], Settings], flags: Mapping[str, tuple[str | None, str]]) -> Settings:
    """``build()``; its error names the flags given (a value may be refused only in their company)."""
    try:
        return build()
    except SettingsError as exc:
        if not (given := [flag for raw, flag in flags.values() if raw is not None]):
            raise
        raise SettingsError(f"{exc} (with {', '.join(given)})") from exc


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
    flags: Mapping[str, tuple[str | None, str]] | None = None,
) -> Settings:
    """Build and validate Settings; ``symbols_override`` is the CLI's ``--symbols``; ``flags`` as for
    ``override``, applied BEFORE validation: a flag replaces its variable, so a combination of variables
    that the flags change (KLINE_INTERVAL=1w with EXPORT_LOOKBACK_DAYS=2, run with --interval 1h) is not
    refused for a value the run does not use."""
    values = read_environment(environ, env_file)
    warn_unknown_variables(values)
    given = {variable: pair for variable, pair in (flags or {}).items() if pair[0] is not None}
    if "KLINE_INTERVAL" in given:
        values.pop("KLINE_INTERVALS", None)  # a one-interval flag means that interval only
    kwargs: dict[str, object] = {}
    for variable, (field_name, parse) in _PARSERS.items():
        raw, name = given.get(variable, (values.get(variable), variable))
        if raw is not None and raw.strip() != "":
            kwargs[field_name] = parse(name, raw)
    # KLINE_INTERVALS wins; both set only if they agree (a disagreement means one is stale).
    single, several = ((values.get(name) or "").strip() for name in ("KLINE_INTERVAL", "KLINE_INTERVALS"))
    if single and several and single not in _intervals("KLINE_INTERVALS", several):
        raise SettingsError(
            f"KLINE_INTERVAL={single!r} and KLINE_INTERVALS={several!r} disagree: "
            "remove KLINE_INTERVAL (KLINE_INTERVALS is used alone), or make it one of KLINE_INTERVALS"
        )
    if "base_url" not in kwargs:
        kwargs["base_url"] = ""  # the market's own host (Settings.__post_init__)
    try:
        if symbols_override is not None:
            kwargs["symbols"] = resolve_symbols(symbols_override, None)
        elif "quote_asset" in kwargs:
            # With a universe, the default groups give way to it; listed symbols are added.
            kwargs["symbols"] = listed_symbols(values.get("EXPORT_SYMBOLS"), values.get("CRYPTO_SYMBOLS"))
        else:
            kwargs["symbols"] = resolve_symbols(values.get("EXPORT_SYMBOLS"), values.get("CRYPTO_SYMBOLS"))
    except SymbolError as exc:
        source = "--symbols" if symbols_override is not None else "EXPORT_SYMBOLS/CRYPTO_SYMBOLS"
        raise SettingsError(f"{source}: {exc}") from exc
    return _built(lambda: Settings(**kwargs), given)  # type: ignore[arg-type]
