"""The dataset layout: a cycle's append, a DuckDB query over the history, and its size.

    python -m benchmarks.bench_dataset [--symbols 400] [--latency 0.15]
                                       [--query-symbols 50] [--query-days 365]

1. **Append.** The steady cycle of ``bench_steady`` (cycle 1 fills, cycle 2 runs once one new
   1h candle has closed: ``ScheduledDataManager.run_cycle()``, the real cycle) twice in the
   same run: the files layout (the guide's rolling files, the baseline) and
   ``EXPORT_LAYOUT=dataset`` on a dataset already holding a year of 1h per symbol. Target:
   the dataset's cycle 2 at most 1.2x the files layout's, writing only each series' current
   period file. The year is written before the clock starts, through ``Dataset.merge``: its
   older candles are one generated series copied under every symbol (what an append costs
   does not depend on the values); the newest day is each symbol's own, so the cycle's
   overlap check holds. The pair runs ``--append-repeat`` times, interleaved (files, dataset, files,
   ...): this 2-CPU machine shares its host, and one pair's ratio moves by a third from run to run;
   the target is judged on the median pair's ratio (every pair is printed and saved).
2. **Query.** ``--query-symbols`` x ``--query-days`` of 1m candles (random walks obeying the
   rule book), written once as the dataset (``Dataset.write_period``, period by period) and
   once as one CSV file per symbol (``CSV.write``, the files layout's format). The same
   DuckDB query (``SELECT symbol, max(high) ... GROUP BY symbol``) runs over each, as a
   whole ``python -c`` process (import, read, answer), best of ``--repeat``.
3. **Size** of both folders on disk.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks._common import (
    SandboxProcess,
    bench_symbols,
    make_settings,
    quiet_logging,
    report_and_save,
    table,
    temp_dir,
)

HOUR_MS = 3_600_000
MINUTE_MS = 60_000
DAY_MS = 86_400_000


# -- 1. the append ---------------------------------------------------------------------
def prefill(dataset_dir: Path, host: str, symbols: list[str], end_ms: int) -> int:
    """A year of 1h candles per symbol, ending at ``end_ms`` (exclusive), into the dataset."""
    import pyarrow as pa

    from crypto_data_export.exchange.klines import rows_to_frame
    from crypto_data_export.sandbox.fake_exchange import generate_candle
    from crypto_data_export.store.dataset import Dataset

    first = end_ms - 365 * DAY_MS
    template = rows_to_frame([generate_candle("SYM0000USDT", "1h", t) for t in range(first, end_ms - DAY_MS, HOUR_MS)])
    dataset = Dataset(dataset_dir, host, "spot")
    for symbol in symbols:
        own = rows_to_frame([generate_candle(symbol, "1h", t) for t in range(end_ms - DAY_MS, end_ms, HOUR_MS)])
        dataset.merge(
            dataset.series_of(symbol, "1h"),
            pa.concat_tables([template, own]),
            {"kind": "rest", "from_ms": 0, "until_ms": 0},
        )
    return len(template) + 24


def period_files(folder: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*.parquet")}


def steady_cycle(layout: str, symbols: list[str], latency: float) -> dict:
    """Cycle 1 then, once a new 1h candle has closed on the sandbox's clock, cycle 2."""
    from crypto_data_export.exchange.client import ExchangeClient
    from crypto_data_export.scheduler.manager import ScheduledDataManager

    folder = temp_dir(f"dataset-{layout}")
    try:
        # The dataset's year is written first, untimed: it names the sandbox's host and port, so the
        # port is chosen before the sandbox starts. The sandbox's next hour boundary then comes this
        # long after it starts: cycle 1 runs before it.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        boundary = (int(time.time() * 1000) // HOUR_MS + 2) * HOUR_MS
        prefilled = 0
        if layout == "dataset":
            prefilled = prefill(folder / "dataset", f"127.0.0.1:{port}", symbols, boundary - 2 * HOUR_MS)
        lead_ms = 10_000 + 40 * len(symbols) * (2 if layout == "dataset" else 1)  # a loaded machine is slow
        now_ms = int(time.time() * 1000)
        offset_ms = boundary - lead_ms - now_ms
        with SandboxProcess(latency=latency, clock_offset_ms=offset_ms, extra_args=["--port", str(port)]) as sandbox:
            settings = make_settings(sandbox.base_url, folder, symbols, EXPORT_LAYOUT=layout)
            with ExchangeClient.from_settings(settings) as client:
                manager = ScheduledDataManager(settings, client=client)
                if manager.dataset is not None:  # as run_forever does: the two cycles are the scheduler loop's
                    manager.dataset.keeps_current = True
                started = time.perf_counter()
                first = manager.run_cycle()
                wall1 = time.perf_counter() - started
                before = period_files(folder / "dataset")
                if int(time.time() * 1000) + offset_ms >= boundary:
                    raise RuntimeError("cycle 1 ended after the hour boundary: raise lead_ms")
                while int(time.time() * 1000) + offset_ms < boundary + 500:
                    time.sleep(0.05)
                started, cpu = time.perf_counter(), time.process_time()
                second = manager.run_cycle()
                wall2, cpu2 = time.perf_counter() - started, time.process_time() - cpu
        after = period_files(folder / "dataset")
        rewritten = sum(1 for p, m in after.items() if before.get(p) != m)
        failed = [len(r.export.failed) if r.export else len(symbols) for r in (first, second)]
        return {
            "layout": layout,
            "prefilled_candles_per_symbol": prefilled,
            "cycle1_s": wall1,
            "cycle2_s": wall2,
            "cycle2_cpu_s": cpu2,  # this process's (the sandbox runs in its own): less noisy on a shared machine
            "period_files": len(after),
            "period_files_rewritten_by_cycle2": rewritten,
            "failed": sum(failed),
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- 2. and 3. the query and the size --------------------------------------------------
def random_walk(symbol_index: int, first_ms: int, rows: int):
    """1m candles obeying the rule book: a random walk, prices with 2 decimals."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from crypto_data_export.core.candles import CANDLE_SCHEMA, DECIMAL_COLUMNS

    rng = np.random.default_rng(symbol_index)
    close = np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.001, rows))), 2) + 0.01
    open_ = np.concatenate([[close[0]], close[:-1]])
    spread = np.round(np.abs(rng.normal(0, 0.05, rows)), 2)
    high, low = np.maximum(open_, close) + spread, np.maximum(np.minimum(open_, close) - spread, 0.01)
    volume = np.round(rng.exponential(10, rows), 4)
    opens = first_ms + MINUTE_MS * np.arange(rows, dtype=np.int64)
    values = {"open": open_, "high": high, "low": low, "close": close, "volume": volume}
    values |= {"quote_asset_volume": volume * close, "taker_buy_base_asset_volume": volume / 2}
    values["taker_buy_quote_asset_volume"] = volume * close / 2
    arrays = {c: pc.cast(pa.array(np.round(values[c], 8)), pa.string()) for c in DECIMAL_COLUMNS}
    arrays |= {"open_time": pa.array(opens), "close_time": pa.array(opens + MINUTE_MS - 1)}
    arrays["number_of_trades"] = pa.array(rng.integers(1, 500, rows))
    return pa.Table.from_arrays([arrays[f.name] for f in CANDLE_SCHEMA], schema=CANDLE_SCHEMA)


def write_history(root: Path, n_symbols: int, days: int) -> int:
    from crypto_data_export.core.candles import within
    from crypto_data_export.store.dataset import Dataset, periods_between
    from crypto_data_export.store.formats import CSV

    first_ms = (int(time.time() * 1000) // DAY_MS - days - 1) * DAY_MS
    rows = days * 1440
    dataset = Dataset(root / "dataset", "127.0.0.1", "spot")
    (root / "csv").mkdir(parents=True)
    for index, symbol in enumerate(bench_symbols(n_symbols)):
        candles = random_walk(index, first_ms, rows)
        series = dataset.series_of(symbol, "1m")
        for start, end in periods_between("1m", first_ms, first_ms + rows * MINUTE_MS):
            dataset.write_period(
                series, start, within(candles, start, end), [{"kind": "rest", "from_ms": 0, "until_ms": 0}]
            )
        CSV.write(root / "csv" / f"{symbol}_1m.csv", candles, "1m")
    return rows * n_symbols


QUERY = "SELECT symbol, max(high) AS high FROM {source} GROUP BY symbol ORDER BY symbol"
SOURCES = {
    "dataset": "read_parquet('{root}/dataset/**/*.parquet', hive_partitioning = true)",
    # The files layout's rows name no symbol: it comes from the file name.
    "csv": "(SELECT split_part(parse_filename(filename), '_', 1) AS symbol, high "
    "FROM read_csv('{root}/csv/*.csv', filename = true))",
}


def query_seconds(root: Path, kind: str, repeat: int) -> tuple[float, int]:
    sql = QUERY.format(source=SOURCES[kind].format(root=root))
    # No progress bar: a long query would print it to stdout (and draw it while timed).
    program = (
        f"import duckdb; duckdb.sql('SET enable_progress_bar = false'); print(len(duckdb.sql({sql!r}).fetchall()))"
    )
    best, answered = float("inf"), 0
    for _ in range(repeat):
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True).stdout
        best, answered = min(best, time.perf_counter() - started), int(out.strip())
    return best, answered


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_dataset", description=__doc__.split("\n")[0])
    parser.add_argument("--symbols", type=int, default=400)
    parser.add_argument("--latency", type=float, default=0.15)
    parser.add_argument("--query-symbols", type=int, default=50)
    parser.add_argument("--query-days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--append-repeat", type=int, default=3, help="pairs of append runs (the median is judged)")
    args = parser.parse_args(argv)
    quiet_logging()
    symbols = bench_symbols(args.symbols)
    pairs = []
    for _ in range(args.append_repeat):
        files, dataset = steady_cycle("files", symbols, args.latency), steady_cycle("dataset", symbols, args.latency)
        ratio, cpu_ratio = dataset["cycle2_s"] / files["cycle2_s"], dataset["cycle2_cpu_s"] / files["cycle2_cpu_s"]
        pairs.append({"files": files, "dataset": dataset, "ratio": ratio, "cpu_ratio": cpu_ratio})
    print(f"\nbench_dataset: append, {args.symbols} symbols, 1h, latency {args.latency * 1000:.0f} ms")
    headers = ["pair", "layout", "candles held/symbol", "cycle 1 s", "cycle 2 s", "cycle 2 CPU s", "period files"]
    headers += ["rewritten by cycle 2", "ratio"]
    keys = ["layout", "prefilled_candles_per_symbol", "cycle1_s", "cycle2_s", "cycle2_cpu_s", "period_files"]
    rows = []
    for index, pair in enumerate(pairs, 1):
        for run in (pair["files"], pair["dataset"]):
            ratio_cell = f"{pair['ratio']:.2f}x" if run is pair["dataset"] else ""
            rows.append([index] + [run[k] for k in keys] + [run["period_files_rewritten_by_cycle2"], ratio_cell])
    print(table(headers, rows))
    median = sorted(pairs, key=lambda pair: pair["ratio"])[len(pairs) // 2]
    ratio, cpu_ratio = median["ratio"], median["cpu_ratio"]
    all_pairs = ", ".join(f"{pair['ratio']:.2f}x" for pair in pairs)
    print(f"dataset cycle 2 / files cycle 2, median of {len(pairs)} pairs: {ratio:.2f}x (CPU in this process:")
    print(f"{cpu_ratio:.2f}x); all pairs: {all_pairs}")

    root = temp_dir("dataset-query")
    try:
        candles = write_history(root, args.query_symbols, args.query_days)
        timing = {kind: query_seconds(root, kind, args.repeat) for kind in SOURCES}
        sizes = {"dataset": folder_bytes(root / "dataset"), "csv": folder_bytes(root / "csv")}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\nquery and size: {args.query_symbols} symbols x {args.query_days} days x 1m ({candles:,} candles)")
    rows = [[kind, timing[kind][0], timing[kind][1], sizes[kind] / 1e6] for kind in SOURCES]
    print(table(["folder", "DuckDB query s (whole process)", "groups", "MB on disk"], rows))
    figures = {
        "append": {**median, "pairs": pairs},  # the median pair's figures, then every pair's
        "query": {k: {"seconds": v[0], "groups": v[1]} for k, v in timing.items()},
        "bytes": sizes,
        "candles": candles,
        "args": vars(args),
        "cpus": os.cpu_count(),
    }
    targets = {
        "append<=1.2x_files": ratio <= 1.2,
        "only_current_period_rewritten": all(
            p["dataset"]["period_files_rewritten_by_cycle2"] <= args.symbols for p in pairs
        ),
        "no_failures": all(p["files"]["failed"] == p["dataset"]["failed"] == 0 for p in pairs),
        "every_symbol_answered": all(v[1] == args.query_symbols for v in timing.values()),
    }
    return report_and_save("bench_dataset", figures, targets)


if __name__ == "__main__":
    main()
