"""export_historical_data.py --source auto|archive|rest against the sandbox's exchange and archive,
as a real subprocess: the same bytes as a REST-only backfill, no klines call for archived periods,
nothing unverified ever used, Ctrl-C and resume."""

from __future__ import annotations

import signal
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crypto_data_export.backfill.archive_backfill import RestSpan, plan_segments
from crypto_data_export.exchange.archive import ArchivePeriod
from crypto_data_export.sandbox.fake_archive import ArchiveKnobs
from crypto_data_export.sandbox.fake_exchange import SandboxConfig
from tests.support import (
    cli_env,
    closed_opens,
    expected_csv,
    export_files,
    finish,
    free_port,
    run_cli,
    start_cli,
    temp_files,
    wait_until,
)

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
SCRIPT = "export_historical_data.py"


def ms(*parts: int) -> int:
    return int(datetime(*parts, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


# 2024-11-10 12:30 UTC: 45 days back is 2024-09-26 12:30, so the window is
# Sep 26 (a partial day) .. Sep 30 daily, October monthly, Nov 1..9 daily, today by REST.
NOW = ms(2024, 11, 10, 12, 30)
DAYS = 45


def backfill(exchange, folder: Path, *args: str, days: int = DAYS, interval: str = "1h", symbols: str = "ZIPAUSDT"):
    # EXPORT_DIR is the scheduler's folder; a backfill into it is refused, so --output is another one.
    env = cli_env(exchange.base_url, folder.parent / "scheduler", BINANCE_ARCHIVE_URL=exchange.base_url)
    cmd = ("--symbols", symbols, "--days", str(days), "--interval", interval, "--output", str(folder), *args)
    return run_cli(SCRIPT, *cmd, env=env, cwd=folder.parent)


def truth(symbol: str, now_ms: int, days: int, interval: str = "1h") -> str:
    """The file the exchange's candles must give, whatever the source."""
    return expected_csv(symbol, interval, closed_opens(interval, now_ms - days * DAY_MS, now_ms))


def only_file(folder: Path, symbol: str = "ZIPAUSDT") -> str:
    files = export_files(folder, symbol)
    assert len(files) == 1, files
    return files[0].read_text()


# Symbols nothing else asks for: a scheduler loop left running elsewhere on this machine may
# reach a sandbox that got its old port, and its requests must not count as ours.
OURS = ("ZIPAUSDT", "ZIPBUSDT", "ZIPCUSDT")


def exchange_of(sandbox_factory, config: SandboxConfig | None = None, **fields):
    """A sandbox exchange that also lists our symbols (they are not in its default list)."""
    config = config or SandboxConfig(**fields)
    config.extra_symbols = OURS
    return sandbox_factory(config)


def our_klines(exchange) -> list[dict]:
    return [r for r in exchange.klines_requests() if r.get("symbol") in OURS]


def klines_starts(exchange) -> list[int]:
    return sorted(int(r["startTime"]) for r in our_klines(exchange))


def zip_downloads(exchange) -> list[str]:
    return [r.path.rsplit("/", 1)[1] for r in exchange.requests if r.path.endswith(".zip") and r.status == 200]


# -- planning (pure) -----------------------------------------------------------------------
def test_whole_past_months_are_monthly_other_past_days_daily_and_today_rest() -> None:
    segments = plan_segments("ZIPAUSDT", "1h", NOW - DAYS * DAY_MS, ms(2024, 11, 10, 12), ms(2024, 11, 10))
    kinds = [(s.kind, s.label) if isinstance(s, ArchivePeriod) else "rest" for s in segments]
    assert kinds == [
        *[("daily", f"2024-09-{d}") for d in range(26, 31)],
        ("monthly", "2024-10"),
        *[("daily", f"2024-11-{d:02d}") for d in range(1, 10)],
        "rest",
    ]
    assert segments[-1] == RestSpan(ms(2024, 11, 10), ms(2024, 11, 10, 12))
    # 8 days or more of a past month: its monthly file (rows before the start are dropped)
    longer = plan_segments("ZIPAUSDT", "1h", ms(2024, 9, 20, 9), ms(2024, 10, 2), ms(2024, 11, 10))
    assert [(s.kind, s.label) for s in longer if isinstance(s, ArchivePeriod)] == [
        ("monthly", "2024-09"),
        ("daily", "2024-10-01"),
    ]
    assert len(longer) == 2  # nothing left for REST: the range ends before today
    seconds = plan_segments("ZIPAUSDT", "1s", ms(2024, 9, 1), ms(2024, 10, 1), ms(2024, 11, 10))
    assert len(seconds) == 30 and {s.kind for s in seconds if isinstance(s, ArchivePeriod)} == {"daily"}
    assert plan_segments("ZIPAUSDT", "1w", ms(2024, 1, 1), ms(2024, 11, 1), ms(2024, 11, 10)) == [
        RestSpan(ms(2024, 1, 1), ms(2024, 11, 1))
    ]


# -- the same bytes, fewer calls ----------------------------------------------------------------
def test_auto_gives_the_rest_backfills_file_and_asks_klines_only_for_today(sandbox_factory, tmp_path: Path) -> None:
    exchange = exchange_of(sandbox_factory, now_ms=NOW)
    rest = backfill(exchange, tmp_path / "rest", "--source", "rest")
    assert rest.returncode == 0, rest.stderr
    assert len(our_klines(exchange)) == 2 and zip_downloads(exchange) == []  # 1079 candles: 1000 + 79
    exchange.reset_log()
    auto = backfill(exchange, tmp_path / "auto")  # --source auto is the default
    assert auto.returncode == 0, auto.stderr
    assert only_file(tmp_path / "auto") == only_file(tmp_path / "rest") == truth("ZIPAUSDT", NOW, DAYS)
    assert klines_starts(exchange) == [ms(2024, 11, 10)]  # today only: nothing archived was asked of REST
    assert len(our_klines(exchange)) == 1
    assert len(zip_downloads(exchange)) == 15 and "ZIPAUSDT-1h-2024-10.zip" in zip_downloads(exchange)
    assert "from 15 archive files" in auto.stdout and "1 REST calls" in auto.stdout
    assert not (tmp_path / "auto" / ".archive_cache").exists() and temp_files(tmp_path / "auto") == []


def test_archive_source_gives_the_same_file_for_several_symbols(sandbox_factory, tmp_path: Path) -> None:
    exchange = exchange_of(sandbox_factory, now_ms=NOW)
    result = backfill(exchange, tmp_path / "out", "--source", "archive", symbols="ZIPAUSDT,ZIPBUSDT,ZIPCUSDT")
    assert result.returncode == 0, result.stderr
    for symbol in ("ZIPAUSDT", "ZIPBUSDT", "ZIPCUSDT"):
        assert only_file(tmp_path / "out", symbol) == truth(symbol, NOW, DAYS)
    assert klines_starts(exchange) == [ms(2024, 11, 10)] * 3


def test_microsecond_files_from_2025_give_the_same_file_as_rest(sandbox_factory, tmp_path: Path) -> None:
    now = ms(2025, 2, 10, 7, 45)  # Nov 27 2024 .. Feb 10 2025: ms files in 2024, µs files in 2025
    exchange = exchange_of(sandbox_factory, now_ms=now)
    result = backfill(exchange, tmp_path / "out", days=75)
    assert result.returncode == 0, result.stderr
    assert only_file(tmp_path / "out") == truth("ZIPAUSDT", now, 75)
    downloads = zip_downloads(exchange)
    assert {"ZIPAUSDT-1h-2024-12.zip", "ZIPAUSDT-1h-2025-01.zip", "ZIPAUSDT-1h-2025-02-09.zip"} <= set(downloads)
    assert klines_starts(exchange) == [ms(2025, 2, 10)]


def test_a_1m_backfill_from_the_archive_is_byte_identical_too(sandbox_factory, tmp_path: Path) -> None:
    now = ms(2025, 1, 2, 0, 7, 30)  # Dec 31 00:07:30 .. Jan 2 00:07:30: a ms day, a µs day, 7 REST minutes
    exchange = exchange_of(sandbox_factory, now_ms=now)
    result = backfill(exchange, tmp_path / "out", days=2, interval="1m")
    assert result.returncode == 0, result.stderr
    assert only_file(tmp_path / "out") == truth("ZIPAUSDT", now, 2, "1m")
    assert sorted(zip_downloads(exchange)) == ["ZIPAUSDT-1m-2024-12-31.zip", "ZIPAUSDT-1m-2025-01-01.zip"]
    assert [(r["startTime"], r["limit"]) for r in our_klines(exchange)] == [(ms(2025, 1, 2), 7)]


def test_a_rerun_takes_only_what_the_existing_file_lacks(sandbox_factory, tmp_path: Path) -> None:
    exchange = exchange_of(sandbox_factory, now_ms=NOW)
    out = tmp_path / "out"
    assert backfill(exchange, out, days=20).returncode == 0
    exchange.reset_log()
    longer = backfill(exchange, out, days=DAYS)  # the look-back grew: only its head is missing
    assert longer.returncode == 0, longer.stderr
    newest = export_files(out, "ZIPAUSDT")[-1].read_text()
    assert newest == truth("ZIPAUSDT", NOW, DAYS)
    head = sorted(zip_downloads(exchange))
    assert head == [*(f"ZIPAUSDT-1h-2024-09-{d}.zip" for d in range(26, 31)), "ZIPAUSDT-1h-2024-10.zip"]
    assert [r["limit"] for r in our_klines(exchange)] == [1]  # the tail was in the file: its newest candle checked
    exchange.reset_log()
    assert backfill(exchange, out, days=DAYS).returncode == 0
    assert zip_downloads(exchange) == [] and [r["limit"] for r in our_klines(exchange)] == [1]


# -- not published: daily files, then REST --------------------------------------------------
def test_an_unpublished_month_comes_from_daily_files_and_an_unpublished_day_from_rest(
    sandbox_factory, tmp_path: Path
) -> None:
    knobs = ArchiveKnobs(unpublished=frozenset({"2024-10", "2024-10-15"}))
    exchange = exchange_of(sandbox_factory, SandboxConfig(now_ms=NOW, archive=knobs))
    result = backfill(exchange, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert only_file(tmp_path / "out") == truth("ZIPAUSDT", NOW, DAYS)
    downloads = zip_downloads(exchange)
    assert "ZIPAUSDT-1h-2024-10.zip" not in downloads and "ZIPAUSDT-1h-2024-10-14.zip" in downloads
    assert len([d for d in downloads if d.startswith("ZIPAUSDT-1h-2024-10-")]) == 30
    assert [(r["startTime"], r["limit"]) for r in our_klines(exchange)] == [
        (ms(2024, 10, 15), 24),
        (ms(2024, 11, 10), 12),
    ]


def test_an_old_month_missing_from_the_archive_comes_from_rest_without_trying_its_days(
    sandbox_factory, tmp_path: Path
) -> None:
    knobs = ArchiveKnobs(unpublished=frozenset({"2024-09"}))  # ended 40 days before "now": never coming
    exchange = exchange_of(sandbox_factory, SandboxConfig(now_ms=NOW, archive=knobs))
    result = backfill(exchange, tmp_path / "out", days=75)  # Aug 27 12:30 .. Nov 10 12:30
    assert result.returncode == 0, result.stderr
    assert only_file(tmp_path / "out") == truth("ZIPAUSDT", NOW, 75)
    assert not [d for d in zip_downloads(exchange) if d.startswith("ZIPAUSDT-1h-2024-09")]
    assert [(r["startTime"], r["limit"]) for r in our_klines(exchange)] == [
        (ms(2024, 9, 1), 720),
        (ms(2024, 11, 10), 12),
    ]


# -- nothing unverified is used ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("knobs", "refused", "reason"),
    [
        (ArchiveKnobs(bad_checksum=frozenset({"ZIPAUSDT-1h-2024-10.zip"})), "ZIPAUSDT-1h-2024-10.zip", "mismatch"),
        (ArchiveKnobs(no_checksum=frozenset({"ZIPAUSDT-1h-2024-11-05.zip"})), "ZIPAUSDT-1h-2024-11-05.zip", "CHECKSUM"),
        (ArchiveKnobs(bad_zip=frozenset({"ZIPAUSDT-1h-2024-09-28.zip"})), "ZIPAUSDT-1h-2024-09-28.zip", "zip"),
    ],
)
def test_auto_takes_a_refused_files_period_from_rest_and_names_the_file(
    sandbox_factory, tmp_path: Path, knobs: ArchiveKnobs, refused: str, reason: str
) -> None:
    exchange = exchange_of(sandbox_factory, SandboxConfig(now_ms=NOW, archive=knobs))
    result = backfill(exchange, tmp_path / "out", "--source", "auto")
    assert result.returncode == 0, result.stderr
    assert only_file(tmp_path / "out") == truth("ZIPAUSDT", NOW, DAYS)
    warning = [line for line in result.stderr.splitlines() if refused in line]
    assert len(warning) == 1 and reason in warning[0] and "REST" in warning[0]
    label = refused.removeprefix("ZIPAUSDT-1h-").removesuffix(".zip")
    first = ms(*(int(p) for p in label.split("-")), *((1,) if len(label) == 7 else ()))
    assert klines_starts(exchange) == [first, ms(2024, 11, 10)]  # that period by REST, and today
    assert "1 archive files refused" in result.stdout


def test_files_missing_candles_are_counted_against_the_grid_but_a_listing_day_is_whole(
    sandbox_factory, tmp_path: Path
) -> None:
    """Zips with a right .CHECKSUM: header only (ZIPAUSDT) and one row short (ZIPBUSDT) are taken
    from REST, saying so; a day that starts at the symbol's listing is complete (REST has nothing
    before it either) and used as it is. --source archive fails naming the short file."""
    listing = ms(2024, 11, 5, 7)  # every symbol's first candle
    short_rows = (("ZIPAUSDT-1h-2024-11-07.zip", 0, 24), ("ZIPBUSDT-1h-2024-11-08.zip", 5, 6))
    config = SandboxConfig(now_ms=NOW, listing_ms=listing, archive=ArchiveKnobs(header=True, drop_rows=short_rows))
    exchange = exchange_of(sandbox_factory, config)
    out = tmp_path / "out"
    result = backfill(exchange, out, symbols="ZIPAUSDT,ZIPBUSDT", days=6)
    assert result.returncode == 0, result.stderr
    for symbol in ("ZIPAUSDT", "ZIPBUSDT"):
        opens = [t for t in closed_opens("1h", NOW - 6 * DAY_MS, NOW) if t >= listing]
        assert only_file(out, symbol) == expected_csv(symbol, "1h", opens)
    warned = [line for line in result.stderr.splitlines() if "from the REST API instead" in line]
    assert len(warned) == 2 and "ZIPAUSDT-1h-2024-11-07.zip: holds 0 candles, 24 missing" in warned[0] + warned[1]
    assert "ZIPBUSDT-1h-2024-11-08.zip: holds 23 candles, 1 missing from 2024-11-08T05:00:00" in warned[0] + warned[1]
    assert "2024-11-05" not in result.stderr and result.stdout.count("1 archive files refused") == 2
    strict = backfill(exchange, tmp_path / "strict", "--source", "archive", symbols="ZIPBUSDT", days=6)
    assert strict.returncode == 1 and "ZIPBUSDT-1h-2024-11-08.zip: holds 23 candles" in strict.stderr
    assert export_files(tmp_path / "strict", "ZIPBUSDT") == []


def test_archive_source_fails_on_a_bad_checksum_and_writes_nothing(sandbox_factory, tmp_path: Path) -> None:
    knobs = ArchiveKnobs(bad_checksum=frozenset({"ZIPBUSDT-1h-2024-10.zip"}))
    exchange = exchange_of(sandbox_factory, SandboxConfig(now_ms=NOW, archive=knobs))
    out = tmp_path / "out"
    result = backfill(exchange, out, "--source", "archive", symbols="ZIPAUSDT,ZIPBUSDT")
    assert result.returncode == 1
    failed = [line for line in result.stderr.splitlines() if line.startswith("ZIPBUSDT: FAILED")]
    assert len(failed) == 1 and "ZIPBUSDT-1h-2024-10.zip" in failed[0] and "checksum mismatch" in failed[0]
    assert result.stderr.count("checksum mismatch") == 1  # said once, by the summary
    assert export_files(out, "ZIPBUSDT") == [] and temp_files(out) == []
    assert only_file(out, "ZIPAUSDT") == truth("ZIPAUSDT", NOW, DAYS)  # the other symbol is unaffected
    assert all(r["symbol"] == "ZIPAUSDT" or r["startTime"] >= ms(2024, 11, 10) for r in our_klines(exchange))


def test_an_unreachable_archive_is_given_up_once_and_rest_does_the_rest(sandbox_factory, tmp_path: Path) -> None:
    exchange = exchange_of(sandbox_factory, now_ms=NOW)
    dead = f"http://127.0.0.1:{free_port()}"
    out = tmp_path / "out"
    env = cli_env(exchange.base_url, tmp_path / "scheduler", BINANCE_ARCHIVE_URL=dead)
    args = ("--symbols", "ZIPAUSDT", "--days", str(DAYS), "--output", str(out))
    result = run_cli(SCRIPT, *args, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert only_file(out) == truth("ZIPAUSDT", NOW, DAYS)
    # one warning for the run (not one per file of its 15), naming the host and the setting
    warnings = result.stderr.splitlines()
    assert len(warnings) == 1 and "remaining periods from the REST API" in warnings[0], result.stderr
    assert dead in warnings[0] and "BINANCE_ARCHIVE_URL" in warnings[0]
    assert len(our_klines(exchange)) == 2  # the whole window in one span: 1000 + 79 candles
    strict_args = ("--symbols", "ZIPAUSDT", "--days", str(DAYS), "--output", str(tmp_path / "strict"))
    strict = run_cli(SCRIPT, *strict_args, "--source", "archive", env=env, cwd=tmp_path)
    assert strict.returncode == 1 and "ZIPAUSDT: FAILED" in strict.stderr and "could not be fetched" in strict.stderr
    assert "remaining periods" not in strict.stderr  # it does not, it fails


def test_a_bad_archive_url_is_a_usage_error(sandbox, tmp_path: Path) -> None:
    env = cli_env(sandbox.base_url, tmp_path / "out", BINANCE_ARCHIVE_URL="ftp://example.com")
    result = run_cli(SCRIPT, "--symbols", "ZIPAUSDT", env=env, cwd=tmp_path)
    assert result.returncode == 2 and "BINANCE_ARCHIVE_URL" in result.stderr and "data.binance.vision" in result.stderr
    assert our_klines(sandbox) == [] and not [r for r in sandbox.requests if r.path.startswith("/data/")]


# -- Ctrl-C and resume --------------------------------------------------------------------------
def test_ctrl_c_stops_within_seconds_and_a_rerun_downloads_only_what_is_missing(
    sandbox_factory, tmp_path: Path, procs: list[subprocess.Popen]
) -> None:
    # The last days' zips trickle, so the run is surely mid-download when Ctrl-C comes, however
    # loaded the machine (their deadline, with HTTP_TIMEOUT_SECONDS=30, is far beyond the test).
    slow = frozenset(f"ZIPAUSDT-1h-2024-11-0{day}.zip" for day in range(5, 10))
    exchange = exchange_of(sandbox_factory, now_ms=NOW, archive=ArchiveKnobs(trickle=slow))
    out = tmp_path / "out"
    env = cli_env(
        exchange.base_url, tmp_path / "scheduler", BINANCE_ARCHIVE_URL=exchange.base_url, EXPORT_WORKERS="2"
    ) | {"HTTP_TIMEOUT_SECONDS": "30"}
    args = ("--symbols", "ZIPAUSDT", "--days", str(DAYS), "--interval", "1h", "--output", str(out))
    proc = start_cli(SCRIPT, *args, env=env, cwd=tmp_path)
    procs.append(proc)
    cache = out / ".archive_cache"
    wait_until(lambda: cache.is_dir() and len(list(cache.glob("*.zip"))) >= 2, "two verified zips in the cache")
    proc.send_signal(signal.SIGINT)
    code, _, err = finish(proc)
    assert code == 130 and "stopped on request" in err and "Traceback" not in err
    assert export_files(out) == [] and temp_files(out) == [] and list(cache.glob("*.part")) == []
    kept = sorted(p.name for p in cache.glob("*.zip"))
    assert 2 <= len(kept) < 15
    exchange.config.archive = ArchiveKnobs()
    exchange.reset_log()
    rerun = run_cli(SCRIPT, *args, env=env, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert only_file(out) == truth("ZIPAUSDT", NOW, DAYS)
    assert set(zip_downloads(exchange)).isdisjoint(kept) and len(zip_downloads(exchange)) == 15 - len(kept)
    assert not cache.exists()
