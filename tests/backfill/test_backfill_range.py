"""export_historical_data.py --start/--end: an explicit UTC range, as a real subprocess against the
sandbox (fixed clock). The file holds exactly the closed candles that open in [start, end), from
every source; a bad range is one line naming the flag, exit 2, and not a single request."""

from __future__ import annotations

import signal
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crypto_data_export.sandbox.fake_exchange import SandboxConfig
from tests.support import (
    cli_env,
    closed_opens,
    expected_csv,
    export_files,
    finish,
    one_line,
    run_cli,
    seed_export,
    start_cli,
    wait_until,
)

SCRIPT = "export_historical_data.py"
HOUR_MS = 3_600_000
SYMBOL = "RNGAUSDT"  # a symbol nothing else asks for: only our requests are counted


def ms(*parts: int) -> int:
    return int(datetime(*parts, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


NOW = ms(2024, 11, 10, 12, 30)


def exchange_of(sandbox_factory):
    return sandbox_factory(SandboxConfig(now_ms=NOW, extra_symbols=(SYMBOL,)))


def backfill(exchange, folder: Path, *args: str, interval: str = "1h"):
    env = cli_env(exchange.base_url, folder.parent / "scheduler", BINANCE_ARCHIVE_URL=exchange.base_url)
    cmd = ("--symbols", SYMBOL, "--interval", interval, "--output", str(folder), *args)
    return run_cli(SCRIPT, *cmd, env=env, cwd=folder.parent)


def truth(start_ms: int, end_ms: int, interval: str = "1h") -> str:
    """The closed candles that open in [start_ms, end_ms), as the file must hold them."""
    opens = [t for t in closed_opens(interval, start_ms, NOW) if t < end_ms]
    return expected_csv(SYMBOL, interval, opens)


def only_file(folder: Path) -> str:
    files = export_files(folder, SYMBOL)
    assert len(files) == 1, files
    return files[0].read_text()


@pytest.mark.parametrize("source", ["rest", "archive", "auto"])
def test_a_range_gives_exactly_the_candles_that_open_in_it(sandbox_factory, tmp_path: Path, source: str) -> None:
    exchange = exchange_of(sandbox_factory)
    out = tmp_path / "out"
    result = backfill(exchange, out, "--start", "2024-09-28T06:00", "--end", "2024-10-03T00:00:00Z", "--source", source)
    assert result.returncode == 0, result.stderr
    assert only_file(out) == truth(ms(2024, 9, 28, 6), ms(2024, 10, 3))
    rest_calls = exchange.klines_requests(SYMBOL)
    zips = [r for r in exchange.requests if r.path.endswith(".zip") and SYMBOL in r.path]
    if source == "rest":
        assert rest_calls and not zips
    else:  # days long published: the archive serves them all
        assert zips and rest_calls == [], rest_calls


def test_offsets_are_converted_to_utc_and_a_range_up_to_now_stops_at_the_last_closed_candle(
    sandbox_factory, tmp_path: Path
) -> None:
    exchange = exchange_of(sandbox_factory)
    out = tmp_path / "out"
    # 2024-11-10T10:00+02:00 is 08:00 UTC; no --end: up to the exchange's last closed candle (11:00).
    result = backfill(exchange, out, "--start", "2024-11-10T10:00+02:00", "--source", "rest")
    assert result.returncode == 0, result.stderr
    assert only_file(out) == truth(ms(2024, 11, 10, 8), NOW)
    assert only_file(out).count("\n") == 1 + 4  # header + 08:00, 09:00, 10:00, 11:00


def test_end_alone_counts_days_back_from_it(sandbox_factory, tmp_path: Path) -> None:
    exchange = exchange_of(sandbox_factory)
    out = tmp_path / "out"
    result = backfill(exchange, out, "--end", "2024-11-01", "--days", "2", "--source", "rest")
    assert result.returncode == 0, result.stderr
    assert only_file(out) == truth(ms(2024, 10, 30), ms(2024, 11, 1))


def test_a_future_end_is_cut_to_now_with_a_note(sandbox_factory, tmp_path: Path) -> None:
    exchange = exchange_of(sandbox_factory)
    out = tmp_path / "out"
    result = backfill(exchange, out, "--start", "2024-11-10", "--end", "2999-01-01", "--source", "rest")
    assert result.returncode == 0, result.stderr
    assert "--end is in the future" in result.stdout
    assert only_file(out) == truth(ms(2024, 11, 10), NOW)


def test_an_older_range_writes_its_own_file_and_keeps_the_newer_one(sandbox_factory, tmp_path: Path) -> None:
    exchange = exchange_of(sandbox_factory)
    out = tmp_path / "out"
    newer_opens = closed_opens("1h", NOW - 2 * 24 * HOUR_MS, NOW)
    newer = seed_export(out, SYMBOL, "1h", newer_opens, f"{SYMBOL}_1h_20241110_120000.csv")
    newer_bytes = newer.read_bytes()
    result = backfill(exchange, out, "--start", "2024-10-01", "--end", "2024-10-02", "--source", "rest")
    assert result.returncode == 0, result.stderr
    files = export_files(out, SYMBOL)
    assert newer in files and newer.read_bytes() == newer_bytes
    (written,) = [f for f in files if f != newer]
    assert written.read_text() == truth(ms(2024, 10, 1), ms(2024, 10, 2))


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (("--start", "2024-13-01"), "--start"),
        (("--start", "yesterday"), "--start"),
        (("--start", "2024-01-01", "--end", "2024/02/01"), "--end"),
        (("--start", "2024-02-01", "--end", "2024-01-01"), "--start"),
        (("--start", "2024-01-01", "--end", "2024-01-01"), "--start"),
        (("--start", "2999-01-01"), "--start"),
        (("--start", "2017-07-13"), "--start"),
        (("--end", "2017-08-01", "--days", "30"), "--end"),
        (("--start", "2024-01-01", "--days", "3"), "--days"),
        (("--days", "100000"), "--days"),
        (("--start", "2024-01-01T01:00", "--end", "2024-01-01T12:00", "--interval", "1d"), "--start/--end"),
    ],
)
def test_a_bad_range_is_one_line_naming_the_flag_exit_2_and_no_request(
    sandbox_factory, tmp_path: Path, args: tuple[str, ...], flag: str
) -> None:
    exchange = exchange_of(sandbox_factory)
    out = tmp_path / "out"
    result = backfill(exchange, out, *args, "--source", "auto")
    assert result.returncode == 2, result.stderr
    assert one_line(result.stderr) and flag in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert exchange.requests == []
    assert not out.exists() or export_files(out) == []


def test_start_with_days_names_both_flags(sandbox_factory, tmp_path: Path) -> None:
    exchange = exchange_of(sandbox_factory)
    result = backfill(exchange, tmp_path / "out", "--start", "2024-01-01", "--days", "3")
    assert result.returncode == 2
    assert "--start" in result.stderr and "--days" in result.stderr and one_line(result.stderr)
    assert exchange.requests == []


@pytest.mark.parametrize("args", [("--days", "2"), ("--start", "2024-11-09", "--end", "2024-11-10")])
def test_flags_replace_their_variables_before_the_settings_are_judged(
    sandbox_factory, tmp_path: Path, args: tuple[str, ...]
) -> None:
    """KLINE_INTERVAL=1w with EXPORT_LOOKBACK_DAYS=2 cannot hold a candle, but the run asks for 1h."""
    exchange = exchange_of(sandbox_factory)
    out = tmp_path / "out"
    env = cli_env(exchange.base_url, tmp_path / "scheduler", KLINE_INTERVAL="1w", EXPORT_LOOKBACK_DAYS="2")
    result = run_cli(
        SCRIPT, "--symbols", SYMBOL, "--interval", "1h", "--output", str(out), *args, env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "_1h_" in export_files(out, SYMBOL)[0].name


def test_help_shows_start_and_end_examples() -> None:
    result = run_cli(SCRIPT, "--help", env={"PATH": "/usr/bin:/bin"}, cwd=Path.cwd())
    assert result.returncode == 0
    assert "--start 2024-01-01 --end 2024-02-01" in result.stdout


def test_a_range_reuses_the_candles_of_a_file_that_covers_part_of_it(sandbox_factory, tmp_path: Path) -> None:
    exchange = exchange_of(sandbox_factory)
    out = tmp_path / "out"
    kept_opens = closed_opens("1h", ms(2024, 11, 8), NOW)
    kept = seed_export(out, SYMBOL, "1h", kept_opens, f"{SYMBOL}_1h_20241110_120000.csv")
    result = backfill(exchange, out, "--start", "2024-11-07", "--end", "2024-11-09", "--source", "rest")
    assert result.returncode == 0, result.stderr
    (written,) = [f for f in export_files(out, SYMBOL) if f != kept]
    assert written.read_text() == truth(ms(2024, 11, 7), ms(2024, 11, 9))
    # Only the day the kept file lacks is asked for (one page of 24 candles, none of Nov 8),
    # and the newest kept candle, to check it is the exchange's.
    calls = exchange.klines_requests(SYMBOL)
    assert len(calls) == 2 and int(calls[0]["endTime"]) < ms(2024, 11, 8), calls
    assert (calls[1]["startTime"], calls[1]["limit"]) == (ms(2024, 11, 8, 23), 1)


def journal_pages(partial: Path) -> int:
    journals = list(partial.glob("*.journal")) if partial.is_dir() else []
    return sum(max(0, j.read_text().count("\n") - 1) for j in journals)


def test_an_interrupted_range_resumes_from_its_journal(
    sandbox_factory, tmp_path: Path, procs: list[subprocess.Popen]
) -> None:
    """Ctrl-C, then the same command: fewer requests, the same file (the journal is keyed by --start)."""
    exchange = sandbox_factory(SandboxConfig(now_ms=NOW, extra_symbols=(SYMBOL,)))
    span = ("--start", "2024-10-01T00:00", "--end", "2024-10-06", "--source", "rest")  # 7200 1m candles, 8 pages
    fresh = backfill(exchange, tmp_path / "fresh", *span, interval="1m")
    assert fresh.returncode == 0, fresh.stderr
    fresh_calls = len(exchange.klines_requests(SYMBOL))
    assert fresh_calls >= 8
    exchange.reset_log()

    out = tmp_path / "out"
    env = cli_env(exchange.base_url, tmp_path / "scheduler")
    cmd = ("--symbols", SYMBOL, "--interval", "1m", "--output", str(out), *span)
    start = ms(2024, 10, 1)
    exchange.config.hold_klines = (start + 3000 * 60_000, start + 5000 * 60_000)  # two pages never come
    proc = start_cli(SCRIPT, *cmd, env=env, cwd=tmp_path)
    procs.append(proc)
    wait_until(lambda: journal_pages(out / ".backfill_partial") == 6, "the other pages in the resume journal")
    proc.send_signal(signal.SIGINT)
    code, _, err = finish(proc)
    exchange.config.hold_klines = None
    assert code == 130 and "Traceback" not in err, err
    kept_pages = journal_pages(out / ".backfill_partial")

    exchange.reset_log()
    rerun = backfill(exchange, out, *span, interval="1m")
    assert rerun.returncode == 0, rerun.stderr
    assert len(exchange.klines_requests(SYMBOL)) == fresh_calls - kept_pages == 2
    assert only_file(out) == only_file(tmp_path / "fresh") == truth(ms(2024, 10, 1), ms(2024, 10, 6), "1m")
