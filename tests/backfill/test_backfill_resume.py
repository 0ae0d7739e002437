"""A REST backfill interrupted by Ctrl-C resumes from its journal: fewer requests, the same bytes.

Real subprocesses of export_historical_data.py against the sandbox exchange (fixed clock,
some latency so that the run can be interrupted between pages)."""

from __future__ import annotations

import signal
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from crypto_data_export.core.candles import SeriesId
from crypto_data_export.exchange.klines import rows_text
from crypto_data_export.sandbox.fake_exchange import SandboxConfig
from crypto_data_export.store.journal import PageJournal
from tests.support import cli_env, export_files, finish, run_cli, start_cli, temp_files, wait_until

SCRIPT = "export_historical_data.py"
NOW = int(datetime(2024, 11, 10, 12, 30, tzinfo=UTC).timestamp() * 1000)
SYMBOL = "RESAUSDT"  # a symbol nothing else asks for: only our requests are counted


def klines_calls(exchange) -> int:
    return len([r for r in exchange.klines_requests() if r.get("symbol") == SYMBOL])


def args(out: Path) -> tuple[str, ...]:
    # 5 days of 1m: 7200 candles, 8 pages of 1000
    return ("--symbols", SYMBOL, "--days", "5", "--interval", "1m", "--source", "rest", "--output", str(out))


def only_file(folder: Path) -> bytes:
    files = export_files(folder, SYMBOL)
    assert len(files) == 1, files
    return files[0].read_bytes()


def journal_pages(partial: Path) -> int:
    journals = list(partial.glob("*.journal")) if partial.is_dir() else []
    return sum(max(0, j.read_text().count("\n") - 1) for j in journals)


def uninterrupted_run(sandbox_factory, tmp_path: Path):
    """A sandbox, the CLI's environment, and one uninterrupted backfill into tmp_path/fresh
    (the reference file and klines call count that a resumed run is compared with)."""
    exchange = sandbox_factory(SandboxConfig(now_ms=NOW, extra_symbols=(SYMBOL,)))
    env = cli_env(exchange.base_url, tmp_path / "scheduler")
    fresh = run_cli(SCRIPT, *args(tmp_path / "fresh"), env=env, cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    return exchange, env, klines_calls(exchange)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl_c", "sigkill"])
def test_interrupted_then_rerun_asks_only_for_missing_pages_and_writes_the_same_bytes(
    sandbox_factory, tmp_path: Path, procs: list[subprocess.Popen], sig: signal.Signals
) -> None:
    exchange, env, fresh_calls = uninterrupted_run(sandbox_factory, tmp_path)
    assert fresh_calls == 8
    exchange.reset_log()

    out = tmp_path / "out"
    partial = out / ".backfill_partial"
    start = NOW - 5 * 86_400_000
    exchange.config.hold_klines = (start + 3000 * 60_000, start + 5000 * 60_000)  # pages 4 and 5 of 8 never come
    proc = start_cli(SCRIPT, *args(out), env=env, cwd=tmp_path)
    procs.append(proc)
    wait_until(lambda: journal_pages(partial) == 6, "the six other pages in the resume journal, out of order")
    proc.send_signal(sig)
    code, _, err = finish(proc)
    exchange.config.hold_klines = None
    assert code == (130 if sig == signal.SIGINT else -signal.SIGKILL) and "Traceback" not in err, err
    assert sig == signal.SIGKILL or "stopped on request" in err
    assert export_files(out) == [] and (sig == signal.SIGKILL or temp_files(out) == [])
    assert journal_pages(partial) == 6

    exchange.reset_log()
    rerun = run_cli(SCRIPT, *args(out), env=env, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    asked = sorted(int(r["startTime"]) for r in exchange.klines_requests(SYMBOL))
    assert asked == [start + 3000 * 60_000, start + 3999 * 60_000 + 1]  # the two pages missing, nothing else
    assert only_file(out) == only_file(tmp_path / "fresh") and temp_files(out) == []
    assert not partial.exists()


def test_a_damaged_journal_is_discarded_with_a_log_line_and_the_file_is_still_right(
    sandbox_factory, tmp_path: Path
) -> None:
    exchange, env, fresh_calls = uninterrupted_run(sandbox_factory, tmp_path)

    out = tmp_path / "out"
    partial = out / ".backfill_partial"
    partial.mkdir(parents=True)
    start_ms = NOW - 5 * 86_400_000
    series = SeriesId(urlsplit(exchange.base_url).netloc, "spot", SYMBOL, "1m")
    damaged = PageJournal(partial, series, start_ms)
    damaged.append(rows_text([[1, 2]]), start_ms, start_ms)
    damaged.path.write_text(damaged.path.read_text().replace("[[1,2]]", "[[1,3]]"))
    foreign = partial / f"{SYMBOL}_1m_{start_ms - 1}.journal"  # another start: not this run's to judge
    foreign.write_text('{"marker": "crypto-klines-backfill-journal/2", "symbol": "OTHERUSDT"}\n')
    exchange.reset_log()
    rerun = run_cli(SCRIPT, *args(out), env=env, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert klines_calls(exchange) == fresh_calls
    assert "a damaged record; the journal is cut there" in rerun.stderr
    assert "Traceback" not in rerun.stderr
    assert only_file(out) == only_file(tmp_path / "fresh")
    assert [p.name for p in partial.iterdir()] == [foreign.name]
