"""export_historical_data.py with EXPORT_LAYOUT=dataset against the sandbox's exchange and archive: every
closed candle of the range exactly once (DuckDB), nothing fetched twice, identity held, the series lock."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.request import urlopen

import duckdb
import pytest

from crypto_data_export.backfill.archive_backfill import archive_backfill
from crypto_data_export.backfill.dataset_fill import DatasetFill, first_missing
from crypto_data_export.sandbox.fake_exchange import SandboxConfig, generate_candle
from crypto_data_export.settings.settings import load_settings
from crypto_data_export.store.dataset import Dataset, PeriodInfo
from tests.support import HANG_GUARD, cli_env, closed_opens, run_cli, wait_until

HOUR_MS = 3_600_000
OURS = ("ZIPDUSDT", "ZIPEUSDT")  # symbols nothing else asks for (see test_archive_backfill)


def ms(*parts: int) -> int:
    return int(datetime(*parts, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


# Two periods of 1h (2023, 2024): December's and January's monthly zips, Feb 1-2 daily, Feb 3 by REST.
NOW = ms(2024, 2, 3, 12, 30)
START = ms(2023, 12, 1)
# An outage: the exchange (REST and archive) has no candle in it; only its one probe of the hole asks REST.
OUTAGE = (ms(2024, 1, 10), ms(2024, 1, 10, 3))
COLUMNS = ("open", "high", "low", "close", "volume", "quote_asset_volume")


def settings_of(exchange, root: Path, symbols: tuple[str, ...] = OURS):
    env = {"BINANCE_BASE_URL": exchange.base_url, "BINANCE_ARCHIVE_URL": exchange.base_url, "EXPORT_DIR": str(root)}
    env |= {"EXPORT_LAYOUT": "dataset", "EXPORT_SYMBOLS": ",".join(symbols), "KLINE_INTERVAL": "1h"}
    return load_settings(env, env_file=None)


def backfill(exchange, root: Path, dataset: Dataset | None = None, symbols: tuple[str, ...] = OURS, end: int = NOW):
    settings = settings_of(exchange, root, symbols)
    stop = threading.Event()
    fill = DatasetFill(dataset or Dataset.from_settings(settings), stop, (START, end))
    result = archive_backfill(settings, "auto", stop_event=stop, window=(START, end), fill=fill)
    assert result.report.ok, [o.error for o in result.report.failed]
    return fill


def requests_of(exchange) -> tuple[list[dict], list[str]]:
    """Our klines requests and zip downloads since the last reset."""
    klines = [r for r in exchange.klines_requests() if r.get("symbol") in OURS]
    zips = [r.path.rsplit("/", 1)[1] for r in exchange.requests if r.path.endswith(".zip") and r.status == 200]
    return klines, zips


def assert_every_candle_once(root: Path) -> None:
    """DuckDB over the dataset, the README's way: each closed candle of the range once, the exchange's values."""
    rows = duckdb.sql(
        f"SELECT symbol, interval, epoch_ms(open_time), {', '.join(COLUMNS)} "
        f"FROM read_parquet('{root}/dataset/**/*.parquet', hive_partitioning = true) ORDER BY symbol, open_time"
    ).fetchall()
    opens = closed_opens("1h", START, NOW)
    expected = [
        (symbol, "1h", t, *(float(generate_candle(symbol, "1h", t)[i]) for i in (1, 2, 3, 4, 5, 7)))
        for symbol in OURS
        for t in opens
        if not (symbol == OURS[0] and OUTAGE[0] <= t < OUTAGE[1])
    ]
    assert rows == expected


def test_a_dataset_backfill_has_every_candle_once_a_rerun_fetches_nothing_and_identity_holds(
    sandbox_factory, tmp_path
) -> None:
    exchange = sandbox_factory(SandboxConfig(now_ms=NOW, extra_symbols=OURS, gaps={OURS[0]: [OUTAGE]}))
    fill = backfill(exchange, tmp_path)
    assert_every_candle_once(tmp_path)
    klines, zips = requests_of(exchange)
    assert sorted(zips) == sorted(
        f"{s}-1h-{label}.zip" for s in OURS for label in ("2023-12", "2024-01", "2024-02-01", "2024-02-02")
    )
    assert {(r["symbol"], int(r["startTime"])) for r in klines} == {(s, ms(2024, 2, 3)) for s in OURS} | {
        (OURS[0], OUTAGE[0])
    }
    assert {s: (t.periods, t.present, t.archive, t.rest) for s, t in fill.tallies.items()} == {
        s: (2, 0, 2, 1) for s in OURS
    }
    dataset = Dataset.from_settings(settings_of(exchange, tmp_path))
    december, current = dataset.periods(dataset.series_of(OURS[0], "1h"))
    zip_name, sha256 = f"{OURS[0]}-1h-2023-12.zip", december.sources[0]["sha256"]
    assert december.sources == [
        {"kind": "archive", "file": zip_name, "sha256": sha256, "from_ms": START, "until_ms": ms(2023, 12, 31, 23)}
    ]
    with urlopen(f"{exchange.base_url}/data/spot/monthly/klines/{OURS[0]}/1h/{zip_name}.CHECKSUM") as answer:
        assert answer.read().decode().split() == [sha256, zip_name]  # the verified .CHECKSUM's
    assert [s["kind"] for s in current.sources] == ["archive", "archive", "archive", "rest"]
    assert current.sources[-1] == {"kind": "rest", "from_ms": ms(2024, 2, 3), "until_ms": ms(2024, 2, 3, 11)}
    assert not current.complete  # 2024 is not over
    assert current.gaps[0] == (OUTAGE[0], OUTAGE[1] - HOUR_MS, 3)  # confirmed empty: not asked for again

    exchange.reset_log()  # the same command again: nothing to fetch, said per series
    env = cli_env(exchange.base_url, tmp_path, BINANCE_ARCHIVE_URL=exchange.base_url, EXPORT_LAYOUT="dataset")
    again = run_cli(
        "export_historical_data.py",
        *("--symbols", ",".join(OURS), "--interval", "1h", "--start", "2023-12-01", "--end", "2024-02-03T12:30"),
        env=env,
        cwd=tmp_path,
    )
    assert again.returncode == 0, again.stderr
    assert requests_of(exchange) == ([], [])
    candles = len(closed_opens("1h", START, NOW))
    assert f"{OURS[0]}: {candles - 3} rows -> " in again.stdout and f"{OURS[1]}: {candles} rows -> " in again.stdout
    assert again.stdout.count("(2 periods: 2 present, 0 from the archive, 0 by REST;") == len(OURS)

    # A period file copied in under another symbol's partition: set aside, its period fetched again.
    series = tmp_path / "dataset" / "market=spot" / "interval=1h"
    theirs = series / f"symbol={OURS[1]}" / "2023.parquet"
    theirs.write_bytes((series / f"symbol={OURS[0]}" / "2023.parquet").read_bytes())
    backfill(exchange, tmp_path)
    assert requests_of(exchange) == ([], [f"{OURS[1]}-1h-2023-12.zip"])
    assert (tmp_path / "quarantine" / "dataset" / theirs.relative_to(tmp_path / "dataset")).is_file()
    assert_every_candle_once(tmp_path)


def test_a_backfill_waits_for_a_series_held_by_the_cycle(sandbox_factory, tmp_path) -> None:
    exchange = sandbox_factory(SandboxConfig(now_ms=NOW, extra_symbols=OURS))
    dataset = Dataset.from_settings(settings_of(exchange, tmp_path))
    held = dataset.series_of(OURS[0], "1h")
    asked, still_held, writes_while_held = threading.Event(), threading.Event(), []
    still_held.set()
    lock, merge = dataset.lock, dataset.merge

    @contextmanager
    def watched_lock(series, *, wait, stop=None):
        asked.set()
        with lock(series, wait=wait, stop=stop) as got:
            yield got

    def watched_merge(series, *args, **kwargs):
        if still_held.is_set():
            writes_while_held.append(series)
        return merge(series, *args, **kwargs)

    dataset.lock, dataset.merge = watched_lock, watched_merge  # type: ignore[method-assign]
    with lock(held, wait=False) as got:  # a cycle's hold
        assert got
        worker = threading.Thread(target=backfill, args=(exchange, tmp_path, dataset, OURS[:1], ms(2024, 1, 1)))
        worker.start()
        wait_until(asked.is_set, "the backfill to ask for the held series' lock")
        still_held.clear()
    worker.join(HANG_GUARD)
    assert not worker.is_alive() and writes_while_held == []
    assert [p.path.name for p in dataset.periods(held)] == ["2023.parquet"]


def test_periods_before_a_listing_are_not_asked_for_again(sandbox_factory, tmp_path) -> None:
    listed = ms(2024, 1, 15)
    exchange = sandbox_factory(SandboxConfig(now_ms=NOW, extra_symbols=OURS, listing_ms=listed))
    settings, before = settings_of(exchange, tmp_path, OURS[:1]), (START, ms(2024, 1, 1))
    fill = DatasetFill(Dataset.from_settings(settings), threading.Event(), before)
    nothing = archive_backfill(settings, window=before, fill=fill)  # as the files backfill: no data is a failure
    assert [o.error_kind for o in nothing.report.failed] == ["no_data"]
    fill = backfill(exchange, tmp_path, symbols=OURS[:1])
    assert (fill.tallies[OURS[0]].periods, fill.tallies[OURS[0]].present) == (2, 0)
    dataset = Dataset.from_settings(settings_of(exchange, tmp_path))
    (stored,) = dataset.periods(dataset.series_of(OURS[0], "1h"))  # a file holds at least one candle
    assert (stored.first_open_ms, stored.sources[0]) == (
        listed,
        {"kind": "rest", "from_ms": START, "until_ms": ms(2023, 12, 31, 23)},
    )
    exchange.reset_log()
    fill = backfill(exchange, tmp_path, symbols=OURS[:1])
    assert requests_of(exchange) == ([], []) and fill.tallies[OURS[0]].present == 2


def info(start: int, end: int, first: int | None, last: int | None, gaps=(), sources=(), complete=False) -> PeriodInfo:
    return PeriodInfo(Path("p"), None, start, end, 0, 0, list(gaps), list(sources), complete, "", first, last)


LAST = ms(2024, 2, 3, 11)  # the newest closed candle at NOW


@pytest.mark.parametrize(
    ("stored", "wanted"),
    [
        (None, START),
        (info(START, NOW, None, None, complete=True), None),
        (info(START, NOW, START, LAST), None),  # all of the range there
        (info(START, NOW, START, LAST - 2 * HOUR_MS), LAST - HOUR_MS),  # written while open: the tail
        (info(START, NOW, START + HOUR_MS, LAST), START),  # the head
        (info(START, NOW, START, LAST, gaps=[(START + HOUR_MS, START + HOUR_MS, 1)]), START + HOUR_MS),
        # a hole that a source of the period (a REST range, a verified archive file) covered is not asked again
        *(
            (info(START, NOW, START, LAST, [(START + HOUR_MS, START + HOUR_MS, 1)], [{**kind, **served}]), None)
            for kind in ({"kind": "rest"}, {"kind": "archive", "file": "Z-1h-2023-12.zip", "sha256": "0"})
            for served in ({"from_ms": START, "until_ms": LAST},)
        ),
        # a hole before the range is not the range's
        (
            info(START - 9 * HOUR_MS, NOW, START - 9 * HOUR_MS, LAST, gaps=[(START - 5 * HOUR_MS, START - HOUR_MS, 5)]),
            None,
        ),
    ],
)
def test_first_missing(stored: PeriodInfo | None, wanted: int | None) -> None:
    assert first_missing(stored, START, LAST + 1, "1h") == wanted
    # whatever is stored, a range the exchange served covers it all (e.g. before a listing): nothing missing
    assert first_missing(stored, START, LAST + 1, "1h", [(START - HOUR_MS, LAST)]) is None
