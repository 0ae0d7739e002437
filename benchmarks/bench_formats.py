"""File formats: size and read time of a whole export folder, Parquet vs CSV.

    python -m benchmarks.bench_formats [--symbols 50] [--days 30] [--repeat 3]

Both folders hold the same candles: ``--symbols`` x ``--days`` of 1m candles
(43 200 rows per symbol for 30 days) from the sandbox's candle generator,
written through the store layer (``CSV.write`` / ``PARQUET.write``: the
exact files the exporter writes, validated before they are published). Each
folder is then read whole, into one table, by pandas, polars and DuckDB with
the one-liners docs/data-products.md shows; the best of ``--repeat`` runs is reported
(warm page cache, so this measures parsing, not the disk).
"""

from __future__ import annotations

import argparse
import glob
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._common import bench_symbols, table, temp_dir, write_results

MINUTE_MS = 60_000
DAY_MS = 86_400_000
FIRST_OPEN_MS = 1_730_073_600_000  # 2024-10-28 00:00 UTC


def write_folders(symbols: list[str], days: int, root: Path) -> dict[str, dict[str, float]]:
    """The same candles as CSV and as Parquet, one file per symbol; write time and size per format."""
    from datetime import UTC, datetime

    from crypto_data_export.exchange.klines import rows_to_frame
    from crypto_data_export.sandbox.fake_exchange import generate_candle
    from crypto_data_export.store.formats import FORMATS
    from crypto_data_export.store.layout import export_file_name

    created = datetime(2024, 11, 27, tzinfo=UTC)
    rows = days * DAY_MS // MINUTE_MS
    written = {name: {"write_s": 0.0, "bytes": 0.0} for name in FORMATS}
    for symbol in symbols:
        frame = rows_to_frame([generate_candle(symbol, "1m", FIRST_OPEN_MS + i * MINUTE_MS) for i in range(rows)])
        for name, file_format in FORMATS.items():
            folder = root / name
            folder.mkdir(exist_ok=True)
            target = folder / export_file_name(symbol, "1m", created, file_format.suffix)
            start = time.perf_counter()
            file_format.write(target, frame, "1m")
            written[name]["write_s"] += time.perf_counter() - start
            written[name]["bytes"] += target.stat().st_size
    return written


# The one-liners of docs/data-products.md (``folder`` is the export folder); each returns one table of every file.
def pandas_csv(folder: Path) -> Any:
    import pandas as pd

    return pd.concat(pd.read_csv(f, parse_dates=["open_time", "close_time"]) for f in glob.glob(f"{folder}/*.csv"))


def pandas_parquet(folder: Path) -> Any:
    import pandas as pd

    return pd.concat(pd.read_parquet(f, dtype_backend="pyarrow") for f in glob.glob(f"{folder}/*.parquet"))


def pandas_parquet_decimal_objects(folder: Path) -> Any:
    import pandas as pd

    return pd.concat(pd.read_parquet(f) for f in glob.glob(f"{folder}/*.parquet"))


def polars_csv(folder: Path) -> Any:
    import polars as pl

    return pl.read_csv(f"{folder}/*.csv", try_parse_dates=True)


def polars_parquet(folder: Path) -> Any:
    import polars as pl

    return pl.read_parquet(f"{folder}/*.parquet")


def duckdb_csv(folder: Path) -> Any:
    import duckdb

    return duckdb.sql(f"SELECT * FROM read_csv('{folder}/*.csv', filename = true)").arrow().read_all()


def duckdb_parquet(folder: Path) -> Any:
    import duckdb

    return duckdb.sql(f"SELECT * FROM read_parquet('{folder}/*.parquet', filename = true)").arrow().read_all()


READERS: list[tuple[str, str, Callable[[Path], Any]]] = [
    ("pandas", "csv", pandas_csv),
    ("pandas", "parquet", pandas_parquet),
    ("pandas (Decimal objects)", "parquet", pandas_parquet_decimal_objects),
    ("polars", "csv", polars_csv),
    ("polars", "parquet", polars_parquet),
    ("duckdb", "csv", duckdb_csv),
    ("duckdb", "parquet", duckdb_parquet),
]


def best_of(repeat: int, read: Callable[[Path], Any], folder: Path) -> tuple[float, int]:
    """Fastest wall time of ``repeat`` reads, and the rows read."""
    best, rows = float("inf"), 0
    for _ in range(repeat):
        start = time.perf_counter()
        result = read(folder)
        best = min(best, time.perf_counter() - start)
        rows = len(result) if not hasattr(result, "num_rows") else result.num_rows
        del result
    return best, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    root = temp_dir("bench_formats_")
    symbols = bench_symbols(args.symbols)
    start = time.perf_counter()
    written = write_folders(symbols, args.days, root)
    took = time.perf_counter() - start
    print(f"wrote {args.symbols} symbols x {args.days} days of 1m in both formats ({took:.0f} s)")
    expected_rows = args.symbols * args.days * DAY_MS // MINUTE_MS

    reads = []
    for library, fmt, read in READERS:
        seconds, rows = best_of(args.repeat, read, root / fmt)
        assert rows == expected_rows, f"{library} read {rows} rows of {fmt}, expected {expected_rows}"
        reads.append({"library": library, "format": fmt, "read_s": seconds, "rows": rows})
    sizes = {fmt: w["bytes"] for fmt, w in written.items()}

    print(
        table(
            ["format", "folder size", "write (store layer)"],
            [[fmt, f"{w['bytes'] / 2**20:.1f} MiB", f"{w['write_s']:.1f} s"] for fmt, w in written.items()],
        )
    )
    print()
    print(
        table(
            ["reader", "format", "read whole folder", "rows"],
            [[r["library"], r["format"], f"{r['read_s']:.2f} s", r["rows"]] for r in reads],
        )
    )
    figures = {
        "symbols": args.symbols,
        "days": args.days,
        "interval": "1m",
        "rows": expected_rows,
        "written": written,
        "size_ratio_parquet_vs_csv": sizes["parquet"] / sizes["csv"],
        "reads": reads,
        "cpu_count": os.cpu_count(),
    }
    print(f"\nresults: {write_results('bench_formats', figures)}")


if __name__ == "__main__":
    main()
