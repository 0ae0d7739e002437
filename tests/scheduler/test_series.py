"""Several intervals (KLINE_INTERVALS) and the USD-M futures market (BINANCE_MARKET):
the export series is (market, symbol, interval). End to end through real runs of
scheduled_data_manager.py against the sandbox; the weight rules as unit tests."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from crypto_data_export.core.clock import to_iso
from crypto_data_export.core.intervals import DAY_MS, HOUR_MS
from crypto_data_export.exchange.client import ExchangeClient
from crypto_data_export.exchange.limiter import Ticket, WeightLimiter
from crypto_data_export.exchange.market_profiles import SPOT, USDM, usdm_klines_weight
from crypto_data_export.sandbox.fake_exchange import generate_candle
from crypto_data_export.scheduler.manager import ScheduledDataManager
from crypto_data_export.settings.market_names import DEFAULT_BASE_URLS
from crypto_data_export.settings.settings import SettingsError, load_settings
from crypto_data_export.store.layout import export_file_name, export_name_prefix, parse_export_name, series_key
from crypto_data_export.store.run_state import load_state
from tests.support import (
    assert_folder_sound,
    closed_opens,
    expected_csv,
    export_files,
    manager_env,
    read_json,
    run_cli,
    run_manager,
    seed_export,
)

SYMBOLS = ("BTCUSDT", "ETHUSDT")


def _fixed_now() -> int:
    """A server time in the middle of an hour, a few hours back (candles are closed by it)."""
    return int(time.time() * 1000) // (4 * HOUR_MS) * (4 * HOUR_MS) - 4 * HOUR_MS + 1_800_000


def _by_series(folder: Path) -> dict[tuple[str, str, str], list[Path]]:
    found: dict[tuple[str, str, str], list[Path]] = {}
    for path in export_files(folder):
        parsed = parse_export_name(path.name)
        assert parsed is not None
        found.setdefault((parsed.market, parsed.symbol, parsed.interval), []).append(path)
    return found


# -- names ------------------------------------------------------------------------------
def test_market_names_never_collide_with_spot_names():
    created = parse_export_name("BTCUSDT_1h_20261130_120000.csv")
    assert created is not None and created.market == "spot" and created[:2] == ("BTCUSDT", "1h")
    usdm = parse_export_name("BTCUSDT_usdm_1h_20261130_120000.csv")
    assert usdm is not None and (usdm.symbol, usdm.interval, usdm.market) == ("BTCUSDT", "1h", "usdm")
    assert export_file_name("BTCUSDT", "1h", created.created, market="usdm") == "BTCUSDT_usdm_1h_20261130_120000.csv"
    assert not "BTCUSDT_usdm_1h_20261130_120000.csv".startswith(export_name_prefix("BTCUSDT", "1h"))
    assert not "BTCUSDT_1h_20261130_120000.csv".startswith(export_name_prefix("BTCUSDT", "1h", "usdm"))
    assert parse_export_name("BTCUSDT_spot_1h_20261130_120000.csv") is None  # spot names carry no market
    assert series_key("BTCUSDT", "1h") == "BTCUSDT"
    assert series_key("BTCUSDT", "1h", single=False) == "BTCUSDT_1h"
    assert series_key("BTCUSDT", "1h", "usdm") == "BTCUSDT_usdm_1h"


# -- settings ---------------------------------------------------------------------------
def test_interval_and_market_settings():
    one = load_settings({}, env_file=None)
    assert one.kline_intervals == ("1h",) and one.market == "spot" and one.base_url == DEFAULT_BASE_URLS["spot"]
    several = load_settings({"KLINE_INTERVALS": "1h, 4h,1h"}, env_file=None)
    assert several.kline_intervals == ("1h", "4h") and several.kline_interval == "1h"
    agreeing = load_settings({"KLINE_INTERVALS": "1h,4h", "KLINE_INTERVAL": "4h"}, env_file=None)
    assert agreeing.kline_intervals == ("1h", "4h")
    usdm = load_settings({"BINANCE_MARKET": "usdm"}, env_file=None)
    assert usdm.market == "usdm" and usdm.base_url == "https://fapi.binance.com"
    mirror = load_settings({"BINANCE_MARKET": "usdm", "BINANCE_BASE_URL": "http://127.0.0.1:1"}, env_file=None)
    assert mirror.base_url == "http://127.0.0.1:1"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"BINANCE_MARKET": "coinm"}, "BINANCE_MARKET"),
        ({"BINANCE_MARKET": "usdm", "BINANCE_BASE_URL": DEFAULT_BASE_URLS["spot"]}, "BINANCE_MARKET=usdm"),
        ({"KLINE_INTERVALS": "1h,2x"}, "KLINE_INTERVALS"),
        ({"KLINE_INTERVALS": "1h,,4h"}, "KLINE_INTERVALS"),
        ({"KLINE_INTERVALS": "1h,4h", "KLINE_INTERVAL": "1d"}, "KLINE_INTERVAL="),
        ({"KLINE_INTERVALS": "1h,1w", "EXPORT_LOOKBACK_DAYS": "3"}, "1w"),
    ],
)
def test_bad_series_settings_are_refused(env, named):
    with pytest.raises(SettingsError) as caught:
        load_settings(env, env_file=None)
    assert named in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("env", [{"BINANCE_MARKET": "coinm"}, {"KLINE_INTERVALS": "1h,5h"}])
def test_bad_series_settings_exit_2_in_one_line(tmp_path, env):
    result = run_manager(manager_env(tmp_path / "exports", "http://127.0.0.1:9", **env), "--manual")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and next(iter(env)) in lines[0]
    assert not (tmp_path / "exports").exists()


# -- futures weights --------------------------------------------------------------------
def test_usdm_profile_paths_and_weights():
    assert (USDM.klines_path, USDM.exchange_info_path, USDM.time_path, USDM.ping_path) == (
        "/fapi/v1/klines",
        "/fapi/v1/exchangeInfo",
        "/fapi/v1/time",
        "/fapi/v1/ping",
    )
    assert [usdm_klines_weight(n) for n in (1, 99, 100, 499, 500, 1000, 1001, 1500)] == [1, 1, 2, 2, 5, 5, 10, 10]
    assert USDM.weight("/fapi/v1/klines", {"limit": 1000}) == 5
    assert SPOT.weight("/api/v3/klines", {"limit": 1000}) == 2
    assert USDM.max_klines_limit == 1500 and USDM.page_size == 1000


class RecordingLimiter(WeightLimiter):
    """The real limiter, remembering the weight of every acquire."""

    def __init__(self) -> None:
        super().__init__()
        self.charged: list[int] = []

    def acquire(self, weight: int) -> Ticket:
        self.charged.append(weight)
        return super().acquire(weight)


@pytest.mark.parametrize(("limit", "weight"), [(5, 1), (150, 2), (1000, 5), (1200, 10)])
def test_client_charges_the_limiter_the_futures_weight(sandbox, limit, weight):
    limiter = RecordingLimiter()
    with ExchangeClient(sandbox.base_url, market=USDM, retries=0, limiter=limiter) as client:
        rows = client.klines("BTCUSDT", "1m", start_ms=0, limit=limit)
        assert len(rows) == limit
        assert limiter.charged == [weight]  # what the limiter was charged before the request
        assert sandbox.used_weight() == weight  # what the exchange charged
        assert client.stats.last_used_weight == weight
    record = sandbox.requests[-1]
    assert record.path == "/fapi/v1/klines" and int(record.params["limit"]) == limit


# -- several intervals, end to end ------------------------------------------------------
def test_several_intervals_one_file_per_series_each_on_its_grid(tmp_path, sandbox_factory):
    now = _fixed_now()
    exchange = sandbox_factory(now_ms=now)
    folder = tmp_path / "exports"
    env = manager_env(folder, exchange.base_url, ",".join(SYMBOLS), KLINE_INTERVALS="1h,4h")
    result = run_manager(env, "--manual")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4/4 series ok" in result.stdout and "BTCUSDT_4h" in result.stdout
    files = _by_series(folder)
    assert sorted(files) == sorted(("spot", s, i) for s in SYMBOLS for i in ("1h", "4h"))
    assert_folder_sound(folder)  # each validated against the interval in its name
    for (_, symbol, interval), paths in files.items():
        assert len(paths) == 1
        assert paths[0].read_text() == expected_csv(symbol, interval, closed_opens(interval, now - 2 * DAY_MS, now))

    status = read_json(folder / "status_report.json")
    assert sorted(status["symbols"]) == ["BTCUSDT_1h", "BTCUSDT_4h", "ETHUSDT_1h", "ETHUSDT_4h"]
    entry = status["symbols"]["ETHUSDT_4h"]
    assert (entry["symbol"], entry["interval"], entry["market"], entry["valid"]) == ("ETHUSDT", "4h", "spot", True)
    assert entry["latest_file"] == files[("spot", "ETHUSDT", "4h")][0].name
    state = read_json(folder / "state.json")
    assert sorted(state["symbols"]) == sorted(status["symbols"])

    # The next cycle, one 1h candle later: at most one call per series, every file still exact.
    later = now + HOUR_MS
    exchange.config.now_ms = later
    exchange.reset_log()
    result = run_manager(env, "--manual")
    assert result.returncode == 0, result.stdout + result.stderr
    for symbol in SYMBOLS:
        calls = exchange.klines_requests(symbol)
        assert len([c for c in calls if c["interval"] == "1h"]) <= 1
        assert len([c for c in calls if c["interval"] == "4h"]) <= 1
    for (_, symbol, interval), paths in _by_series(folder).items():
        assert len(paths) == 1  # MAX_FILES_PER_SYMBOL=1 per series: the older file of each went
        expected = expected_csv(symbol, interval, closed_opens(interval, later - 2 * DAY_MS, later))
        assert paths[0].read_text() == expected


def test_retention_keeps_max_files_per_series(tmp_path, sandbox_factory):
    now = _fixed_now()
    exchange = sandbox_factory(now_ms=now)
    folder = tmp_path / "exports"
    old = now - 6 * HOUR_MS
    for interval in ("1h", "4h"):
        for n in range(3):  # three earlier files of each series, each one hour apart in name
            seed_export(
                folder,
                "BTCUSDT",
                interval,
                closed_opens(interval, old - 2 * DAY_MS - n * HOUR_MS, old - n * HOUR_MS),
                f"BTCUSDT_{interval}_2020010{n + 1}_000000.csv",
            )
    # A futures file of the same symbol and interval: another series, never ranked with these.
    futures = seed_export(
        folder,
        "BTCUSDT",
        "1h",
        closed_opens("1h", old - 3 * DAY_MS, old - DAY_MS),
        "BTCUSDT_usdm_1h_20200101_000000.csv",
    )
    env = manager_env(folder, exchange.base_url, "BTCUSDT", KLINE_INTERVALS="1h,4h", MAX_FILES_PER_SYMBOL="2")
    result = run_manager(env, "--manual")
    assert result.returncode == 0, result.stdout + result.stderr
    files = _by_series(folder)
    assert len(files[("spot", "BTCUSDT", "1h")]) == 2 and len(files[("spot", "BTCUSDT", "4h")]) == 2
    assert files[("usdm", "BTCUSDT", "1h")] == [futures]  # the newest (only) file of its series: protected
    for interval in ("1h", "4h"):
        newest = files[("spot", "BTCUSDT", interval)][-1]
        assert newest.read_text() == expected_csv("BTCUSDT", interval, closed_opens(interval, now - 2 * DAY_MS, now))


def test_state_of_the_single_interval_layout_is_kept(tmp_path, sandbox_factory):
    """An upgrade keeps what the old per-symbol state.json remembered: one spot interval
    reads it as it is; with several intervals the entry whose last file is 1h becomes BTCUSDT_1h."""
    now = _fixed_now()
    exchange = sandbox_factory(now_ms=now)
    folder = tmp_path / "exports"
    folder.mkdir()
    listing = now - DAY_MS  # known: no candle before this (a listing inside the window)
    old_state = {
        "writer": "crypto-data-export",
        "format_version": 1,
        "export_count": 7,
        "cleanup_count": 7,
        "symbols": {
            "BTCUSDT": {
                "last_success": to_iso_ms(now - HOUR_MS),
                "last_file": str(folder / "BTCUSDT_1h_20200101_000000.csv"),
                "empty_from": to_iso_ms(now - 2 * DAY_MS),
                "data_from": to_iso_ms(listing),
            }
        },
    }
    (folder / "state.json").write_text(json.dumps(old_state))
    env = manager_env(folder, exchange.base_url, "BTCUSDT")
    assert run_manager(env, "--manual").returncode == 0
    state = load_state(folder)
    assert state.export_count == 8 and list(state.symbols) == ["BTCUSDT"]
    assert state.symbols["BTCUSDT"].empty_from == old_state["symbols"]["BTCUSDT"]["empty_from"]
    assert len(exchange.klines_requests("BTCUSDT")) == 1

    exchange.reset_log()
    env = manager_env(folder, exchange.base_url, "BTCUSDT", KLINE_INTERVALS="1h,4h")
    assert run_manager(env, "--manual").returncode == 0
    state = load_state(folder)
    assert state.export_count == 9
    assert state.symbols["BTCUSDT_1h"].empty_from == old_state["symbols"]["BTCUSDT"]["empty_from"]
    assert "BTCUSDT_4h" in state.symbols and "BTCUSDT" in state.symbols  # nothing dropped
    one_h = [c for c in exchange.klines_requests("BTCUSDT") if c["interval"] == "1h"]
    assert len(one_h) <= 1  # the same server time: nothing new to ask


def to_iso_ms(ms: int) -> str:
    from crypto_data_export.core.clock import from_ms

    return to_iso(from_ms(ms), timespec="milliseconds")


# -- futures, end to end ----------------------------------------------------------------
def test_usdm_market_exports_exact_futures_candles_beside_spot(tmp_path, sandbox_factory):
    now = _fixed_now()
    exchange = sandbox_factory(now_ms=now)
    folder = tmp_path / "exports"
    spot_env = manager_env(folder, exchange.base_url, ",".join(SYMBOLS))
    assert run_manager(spot_env, "--manual").returncode == 0
    spot_files = {p.name: p.read_bytes() for p in export_files(folder)}
    assert len(spot_files) == 2

    exchange.reset_log()
    env = manager_env(folder, exchange.base_url, ",".join(SYMBOLS), BINANCE_MARKET="usdm")
    result = run_manager(env, "--manual")
    assert result.returncode == 0, result.stdout + result.stderr
    paths = {r.path for r in exchange.requests}
    assert "/fapi/v1/klines" in paths and not any(p.startswith("/api/") for p in paths)
    klines = exchange.klines_requests(path="/fapi/v1/klines")
    assert len(klines) == 2
    # 48 candles a page: the futures weight of limit < 100 is 1 (spot would charge 2).
    assert all(int(c["limit"]) < 100 for c in klines)

    files = _by_series(folder)
    for symbol in SYMBOLS:
        (futures,) = files[("usdm", symbol, "1h")]
        assert futures.name.startswith(f"{symbol}_usdm_1h_")
        expected = expected_csv(symbol, "1h", closed_opens("1h", now - 2 * DAY_MS, now), market="usdm")
        assert futures.read_text() == expected
        assert expected != expected_csv(symbol, "1h", closed_opens("1h", now - 2 * DAY_MS, now))
    # The spot files are untouched by the futures run, and its retention never counted them.
    assert {n: (folder / n).read_bytes() for n in spot_files} == spot_files
    status = read_json(folder / "status_report.json")
    assert sorted(status["symbols"]) == ["BTCUSDT_usdm_1h", "ETHUSDT_usdm_1h"]
    assert status["symbols"]["BTCUSDT_usdm_1h"]["market"] == "usdm"
    assert generate_candle("BTCUSDT", "1h", 0, "usdm") != generate_candle("BTCUSDT", "1h", 0)


def test_usdm_backfill_reads_the_futures_archive_never_the_spot_one(tmp_path, sandbox):
    folder = tmp_path / "exports"
    env = manager_env(folder, sandbox.base_url, "BTCUSDT", BINANCE_MARKET="usdm", BINANCE_ARCHIVE_URL=sandbox.base_url)
    done = run_cli("export_historical_data.py", "--source", "archive", "--days", "3", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    (path,) = export_files(folder / "backfill")
    assert path.name.startswith("BTCUSDT_usdm_1h_") and "from 3 archive files" in done.stdout
    paths = {r.path for r in sandbox.requests if not r.path.startswith("/data/futures/um/daily/klines/BTCUSDT/1h/")}
    assert paths <= {"/fapi/v1/time", "/fapi/v1/exchangeInfo", "/fapi/v1/klines"}  # no spot API, no spot archive


def test_the_guides_attributes_set_in_init_are_what_the_run_uses(tmp_path: Path) -> None:
    """The guide: "modify these settings in the ScheduledDataManager.__init__() method"."""
    manager = ScheduledDataManager(load_settings({"EXPORT_DIR": str(tmp_path)}, env_file=None))
    manager.export_period_hours, manager.max_files_per_symbol, manager.data_retention_days = 4, 3, 30
    assert (manager.files.max_files_per_symbol, manager.files.data_retention_days) == (3, 30)
    assert manager.settings.export_period_hours == 4 and manager.max_files_per_symbol == 3
