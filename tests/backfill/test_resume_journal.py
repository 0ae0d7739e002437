"""Resume journals and identity: a journal resumes only its own series (exchange host, market,
symbol, interval), never a bad page, never another range's hole, and a backfill keeps the
journals of other ranges. In-process backfills (``archive_backfill``, REST) against the sandbox;
an interruption is a stop request set after the first page, as SIGTERM sets it."""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crypto_data_export.backfill.archive_backfill import archive_backfill
from crypto_data_export.core.candles import SeriesId
from crypto_data_export.exchange.klines import rows_text
from crypto_data_export.sandbox.fake_exchange import SandboxConfig
from crypto_data_export.settings.settings import load_settings
from crypto_data_export.store.journal import PageJournal
from tests.support import cli_env, export_files

SYMBOL = "JRNLUSDT"  # a symbol nothing else asks for: only our requests are counted
DAY_MS = 86_400_000
NOW = int(datetime(2024, 11, 10, 12, 30, tzinfo=UTC).timestamp() * 1000)
RANGE_A = (NOW - 80 * DAY_MS, NOW - 20 * DAY_MS)  # 1440 hours: two pages
RANGE_B = (NOW - 30 * DAY_MS, NOW - 25 * DAY_MS)  # after the first page of A


def backfill(exchange, out: Path, window=RANGE_A, *, stop_after_first_page: bool = False, **env: str):
    settings = load_settings(
        cli_env(exchange.base_url, out, EXPORT_SYMBOLS=SYMBOL, KLINE_INTERVAL="1h", **env), env_file=None
    )
    stop = threading.Event()
    on_candles = (lambda _: stop.set()) if stop_after_first_page else None
    report = archive_backfill(settings, "rest", window=window, stop_event=stop, on_candles=on_candles).report
    assert report.stopped == stop_after_first_page, report
    return report


def calls(exchange, path: str = "/api/v3/klines") -> int:
    return len(exchange.klines_requests(SYMBOL, path=path))


def file_of(out: Path) -> bytes:
    (path,) = export_files(out, SYMBOL)
    return path.read_bytes()


def journals(out: Path) -> dict[str, bytes]:
    folder = out / ".backfill_partial"
    return {p.name: p.read_bytes() for p in folder.iterdir()} if folder.is_dir() else {}


@pytest.mark.parametrize("change", ["market", "host"])
def test_a_journal_of_another_market_or_exchange_host_is_discarded_with_a_warning(
    sandbox_factory, tmp_path: Path, caplog: pytest.LogCaptureFixture, change: str
) -> None:
    spot = sandbox_factory(SandboxConfig(now_ms=NOW, extra_symbols=(SYMBOL,)))
    other = spot if change == "market" else sandbox_factory(SandboxConfig(now_ms=NOW, extra_symbols=(SYMBOL,)))
    env = {"BINANCE_MARKET": "usdm"} if change == "market" else {}
    path = "/fapi/v1/klines" if change == "market" else "/api/v3/klines"
    backfill(other, tmp_path / "fresh", **env)
    fresh_calls = calls(other, path)

    out = tmp_path / "out"
    backfill(spot, out, stop_after_first_page=True)
    assert journals(out)
    other.reset_log()
    backfill(other, out, **env)
    assert file_of(out) == file_of(tmp_path / "fresh")
    assert calls(other, path) == fresh_calls  # nothing of the spot journal was used
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("resume journal not used" in m and "it is not for SeriesId" in m for m in warned), warned
    assert journals(out) == {}


def test_a_bad_page_is_never_journaled_and_a_kept_bad_page_cuts_the_journal_there(
    sandbox_factory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    exchange = sandbox_factory(SandboxConfig(now_ms=NOW, extra_symbols=(SYMBOL,)))
    backfill(exchange, tmp_path / "fresh")
    fresh_calls = calls(exchange)

    out = tmp_path / "out"
    exchange.config.bad_candles = {SYMBOL: "high_below_low"}
    assert backfill(exchange, out).failed
    assert journals(out) == {}  # the page was refused before it was kept
    exchange.config.bad_candles = {}

    backfill(exchange, out, stop_after_first_page=True)
    ((name, kept),) = journals(out).items()
    header, record, _ = kept.split(b"\n")
    first_page = json.loads(record)
    rows = json.loads(first_page["rows"])
    rows[700][2], rows[700][3] = rows[700][3], rows[700][2]  # high < low, in a second page whose chain is whole
    fields = json.loads(header)
    journal = PageJournal(
        out / ".backfill_partial",
        SeriesId(*(fields[k] for k in ("exchange_host", "market", "symbol", "interval"))),
        fields["start_ms"],
    )
    journal.path.unlink()
    journal.append(rows_text(rows[:500]), first_page["from"], rows[499][0])
    journal.append(rows_text(rows[500:]), rows[500][0], first_page["to"])

    exchange.reset_log()
    backfill(exchange, out)
    assert file_of(out) == file_of(tmp_path / "fresh")
    assert calls(exchange) == fresh_calls - 1  # the first 500 candles kept were used, the rest fetched again
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("a kept page fails the checks" in m and "the journal is cut there" in m for m in warned), warned
    assert journals(out) == {}


def test_a_range_keeps_other_ranges_journals_and_leaves_a_symlinked_journal_alone(
    sandbox_factory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    exchange = sandbox_factory(SandboxConfig(now_ms=NOW, extra_symbols=(SYMBOL,)))
    backfill(exchange, tmp_path / "fresh")
    fresh_calls = calls(exchange)
    backfill(exchange, tmp_path / "fresh_b", RANGE_B)

    out = tmp_path / "out"
    backfill(exchange, out, stop_after_first_page=True)
    kept = journals(out)
    assert len(kept) == 1
    # B starts after A's kept pages end (A's journal cannot serve it), then a range inside A's kept pages.
    backfill(exchange, out, RANGE_B)
    assert journals(out) == kept and file_of(out) == file_of(tmp_path / "fresh_b")
    inside = (RANGE_A[0], RANGE_A[0] + 10 * DAY_MS)  # A's journal holds more: it stays for A
    for path in export_files(out, SYMBOL):
        path.unlink()
    exchange.reset_log()
    backfill(exchange, out, inside)
    assert calls(exchange) == 0 and journals(out) == kept

    for path in export_files(out, SYMBOL):
        path.unlink()
    elsewhere = tmp_path / "elsewhere.journal"
    elsewhere.write_bytes(b"not ours")
    planted = out / ".backfill_partial" / f"{SYMBOL}_1h_{RANGE_B[0]}.journal"
    planted.symlink_to(elsewhere)
    backfill(exchange, out, RANGE_B)
    assert file_of(out) == file_of(tmp_path / "fresh_b")
    assert elsewhere.read_bytes() == b"not ours" and planted.is_symlink()
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(planted) in m and "left alone" in m for m in warned), warned

    for path in export_files(out, SYMBOL):
        path.unlink()
    exchange.reset_log()
    backfill(exchange, out)  # A resumes from its own journal
    assert file_of(out) == file_of(tmp_path / "fresh")
    assert calls(exchange) == fresh_calls - 1
    assert journals(out) == {planted.name: b"not ours"}
