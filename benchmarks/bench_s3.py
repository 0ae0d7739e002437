"""A sharded backfill into a local S3 server: 1 process, then N shards as N processes.

    python -m benchmarks.bench_s3 [--symbols 100] [--months 12] [--shards 4] [--latency 0] [--quick]

``--symbols`` symbols x ``--months`` whole past months x 1m, from the sandbox's bulk archive
(``export_historical_data.py --source archive``, a whole process each, EXPORT_LAYOUT=dataset,
DATASET_URL=s3://<bucket>/crypto) into moto's S3 server (``moto_server``, its own process on
loopback). Twice, each into its own bucket: one process, then ``--shards`` processes
(``--shard i/N``) started at once, each with its own local EXPORT_DIR (a pod's emptyDir). One
sandbox process serves both runs from its archive cache, warmed before the clock starts (the
sandbox builds a zip on its first request, under one GIL: that is the sandbox's cost, not ours).

After each run the bucket is listed and read with DuckDB (httpfs, the extension from PyPI):
every (symbol, month) object exactly once and nothing else but leases, each object holding
every minute of its month, no candle twice; then the two buckets hold the same candles (per
symbol: count and a sum of row hashes; the objects' bytes differ by their write time).
Figures: wall time, candles per second per shard (its candles over its own wall time), objects.
``--quick``: 8 symbols x 2 months.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks._common import (
    ROOT,
    SandboxProcess,
    bench_symbols,
    process_env,
    report_and_save,
    stop_process,
    table,
    temp_dir,
)

KEYS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret", "AWS_REGION": "us-east-1"}
PREFIX = "crypto"
_PERIOD_KEY = re.compile(rf"{PREFIX}/market=spot/interval=1m/symbol=(\w+)/(\d{{4}}-\d{{2}})\.parquet")
_DUCKDB_ENDPOINT = "ENDPOINT '{host}', URL_STYLE 'path', USE_SSL false"


class MotoServer:
    """moto's S3 server as a subprocess on an OS-chosen loopback port (its log in a file: never a full pipe)."""

    def __init__(self) -> None:
        self.folder = temp_dir("moto")
        self.proc: subprocess.Popen | None = None
        self.endpoint = ""

    def __enter__(self) -> MotoServer:
        log = self.folder / "moto_server.log"
        with open(log, "wb") as sink:
            moto = Path(sys.executable).with_name("moto_server")
            self.proc = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", "0"], stdout=sink, stderr=sink)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.proc.poll() is None:
            found = re.search(r"Running on (http://127\.0\.0\.1:\d+)", log.read_text(errors="replace"))
            if found:
                self.endpoint = found.group(1)
                return self
            time.sleep(0.1)
        self.__exit__()
        raise RuntimeError(f"moto_server did not start: {log.read_text(errors='replace')[-500:]}")

    def __exit__(self, *exc: object) -> None:
        stop_process(self.proc)
        shutil.rmtree(self.folder, ignore_errors=True)

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=KEYS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=KEYS["AWS_SECRET_ACCESS_KEY"],
            region_name=KEYS["AWS_REGION"],
        )

    def duckdb(self) -> Any:
        """A DuckDB connection that reads this server's buckets (httpfs from the duckdb-ext-httpfs package)."""
        import duckdb
        import duckdb_ext

        con = duckdb.connect(config={"extension_directory": os.path.join(list(duckdb_ext.__path__)[0], "extensions")})
        con.sql("LOAD httpfs")
        endpoint = _DUCKDB_ENDPOINT.format(host=self.endpoint.removeprefix("http://"))
        con.sql(
            f"CREATE SECRET (TYPE s3, KEY_ID '{KEYS['AWS_ACCESS_KEY_ID']}', SECRET '{KEYS['AWS_SECRET_ACCESS_KEY']}', "
            f"REGION '{KEYS['AWS_REGION']}', {endpoint})"
        )
        con.sql("SET enable_progress_bar = false")
        return con


def month_starts(months: int) -> list[datetime]:
    """The first days of the last ``months`` whole months, and of the current one (the exclusive end)."""
    now = datetime.now(UTC)
    index = now.year * 12 + now.month - 1
    return [datetime(i // 12, i % 12 + 1, 1, tzinfo=UTC) for i in range(index - months, index + 1)]


def warm_archive(base_url: str, symbols: list[str], starts: list[datetime]) -> None:
    """Ask for every monthly zip (and checksum) of the run once, so the sandbox has built them."""
    import requests

    paths = [
        f"data/spot/monthly/klines/{s}/1m/{s}-1m-{m:%Y-%m}.zip{suffix}"
        for s in symbols
        for m in starts[:-1]
        for suffix in ("", ".CHECKSUM")
    ]
    with requests.Session() as session, ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda p: session.get(f"{base_url}/{p}", timeout=600).raise_for_status(), paths))


def run(moto: MotoServer, base_url: str, symbols: list[str], starts: list[datetime], shards: int) -> dict:
    """One backfill of every symbol into a new bucket as ``shards`` processes at once."""
    bucket = f"bench-{shards}-{uuid.uuid4().hex[:8]}"
    moto.client().create_bucket(Bucket=bucket)
    window = ["--start", f"{starts[0]:%Y-%m-%d}", "--end", f"{starts[-1]:%Y-%m-%d}", "--interval", "1m"]
    folders, procs = [], []
    started = time.perf_counter()
    for index in range(shards):
        folder = temp_dir(f"s3-shard{index}")
        env = process_env(base_url, folder, symbols)
        env = {k: v for k, v in env.items() if not k.startswith("AWS_")} | KEYS  # no developer's profile or endpoint
        env |= {"EXPORT_LAYOUT": "dataset", "DATASET_URL": f"s3://{bucket}/{PREFIX}", "LOG_LEVEL": "WARNING"}
        env |= {"DATASET_ENDPOINT_URL": moto.endpoint, "BINANCE_ARCHIVE_URL": base_url, "KLINE_INTERVAL": "1m"}
        shard = ["--shard", f"{index}/{shards}"] if shards > 1 else []
        with open(folder / "backfill.out", "wb") as out:
            command = [sys.executable, "export_historical_data.py", "--source", "archive", *window, *shard]
            procs.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT))
        folders.append(folder)
    walls: dict[int, float] = {}
    while len(walls) < shards:
        for index, proc in enumerate(procs):
            if index not in walls and proc.poll() is not None:
                walls[index] = time.perf_counter() - started
        time.sleep(0.02)
    codes = [proc.returncode for proc in procs]
    tails = [(f / "backfill.out").read_text(errors="replace").strip().splitlines()[-3:] for f in folders]
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "bucket": bucket,
        "shards": shards,
        "wall_s": max(walls.values()),
        "shard_wall_s": walls,
        "exit": codes,
        "tails": tails,
    }


def inspect(moto: MotoServer, bucket: str, symbols: list[str], starts: list[datetime]) -> dict:
    """What the bucket holds: its period objects against the (symbol, month) set, rows and a checksum per symbol."""
    pages = moto.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
    keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
    periods = Counter(m.groups() for m in map(_PERIOD_KEY.fullmatch, keys) if m)
    expected = {(s, f"{m:%Y-%m}") for s in symbols for m in starts[:-1]}
    minutes = {f"{a:%Y-%m}": int((b - a).total_seconds()) // 60 for a, b in zip(starts, starts[1:], strict=False)}
    con = moto.duckdb()
    glob = f"s3://{bucket}/{PREFIX}/**/*.parquet"
    rows = con.sql(f"SELECT file_name, num_rows FROM parquet_file_metadata('{glob}')").fetchall()
    short = [
        name
        for name, n in rows
        if (m := re.search(r"symbol=\w+/(\d{4}-\d{2})\.parquet$", name)) and n != minutes.get(m.group(1))
    ]
    per_symbol = con.sql(
        "SELECT symbol, count(*), count(DISTINCT open_time), sum(hash(open_time, open, high, low, close, volume, "
        "close_time, quote_asset_volume, number_of_trades, taker_buy_base_asset_volume, "
        f"taker_buy_quote_asset_volume)::HUGEINT)::VARCHAR FROM read_parquet('{glob}', hive_partitioning = true) "
        "GROUP BY symbol"
    ).fetchall()
    return {
        "objects": len(keys),
        "period_objects": sum(periods.values()),
        # Not a period: a lease (.lease) or a folder marker ("a/b/") is expected; anything else is stray.
        "stray_objects": sorted(k for k in keys if not _PERIOD_KEY.fullmatch(k) and not k.endswith(("/", "/.lease"))),
        "missing": sorted(expected - set(periods))[:10],
        "unexpected": sorted(set(periods) - expected)[:10],
        "duplicated": sorted(k for k, n in periods.items() if n > 1)[:10],
        "incomplete_objects": short[:10],
        "candles": sum(n for _, n, _, _ in per_symbol),
        "repeated_candles": sum(n - d for _, n, d, _ in per_symbol),
        "per_symbol": {s: (n, h) for s, n, _, h in per_symbol},
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_s3", description=__doc__.split("\n")[0])
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--months", type=int, default=12, help="whole past months of 1m candles (12)")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per sandbox answer (0: loopback)")
    parser.add_argument("--quick", action="store_true", help="8 symbols x 2 months")
    args = parser.parse_args(argv)
    if args.quick:
        args.symbols, args.months = 8, 2
    from crypto_data_export.settings.symbols import shard_of

    symbols, starts = bench_symbols(args.symbols), month_starts(args.months)
    load_before = os.getloadavg()
    cache_mb = max(512, args.symbols * args.months * 3)  # every zip of the run stays built
    with MotoServer() as moto, SandboxProcess(latency=args.latency, archive_cache_mb=cache_mb) as sandbox:
        print(f"warming the sandbox's archive: {args.symbols * args.months} monthly zips ...", flush=True)
        warm_started = time.perf_counter()
        warm_archive(sandbox.base_url, symbols, starts)
        warm_s = time.perf_counter() - warm_started
        runs = []
        for shards in (1, args.shards):
            print(f"backfill as {shards} process(es) ...", flush=True)
            result = run(moto, sandbox.base_url, symbols, starts, shards)
            result |= inspect(moto, result["bucket"], symbols, starts)
            for index, wall in result["shard_wall_s"].items():  # a shard's candles over its own wall time
                mine = [n for s, (n, _) in result["per_symbol"].items() if shards == 1 or shard_of(s, shards) == index]
                if mine:  # a shard may draw no symbol
                    result.setdefault("candles_per_s_per_shard", {})[index] = sum(mine) / wall
            runs.append(result)
    one, many = runs
    same = one["per_symbol"] == many["per_symbol"] and len(one["per_symbol"]) == args.symbols
    print(
        f"\nbench_s3: {args.symbols} symbols x {args.months} months x 1m, "
        f"sandbox latency {args.latency * 1000:.0f} ms,"
        f" load average {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after"
    )
    headers = [
        "run",
        "wall s",
        "candles/s per shard (min-max)",
        "objects",
        "period objects",
        "missing",
        "duplicated",
        "incomplete",
        "candles",
        "exit codes",
    ]
    rows = [
        [
            f"{r['shards']} process" + ("es" if r["shards"] > 1 else ""),
            r["wall_s"],
            f"{min(r['candles_per_s_per_shard'].values()):,.0f}-{max(r['candles_per_s_per_shard'].values()):,.0f}",
            r["objects"],
            r["period_objects"],
            len(r["missing"]) + len(r["unexpected"]),
            len(r["duplicated"]) + r["repeated_candles"],
            len(r["incomplete_objects"]),
            r["candles"],
            ",".join(map(str, r["exit"])),
        ]
        for r in runs
    ]
    print(table(headers, rows))
    print(
        f"{args.shards} shards / 1 process: {one['wall_s'] / many['wall_s']:.2f}x faster; "
        f"same candles per symbol: {'yes' if same else 'NO'}"
    )
    for r in runs:
        if any(r["exit"]) or r["stray_objects"]:
            print(f"{r['shards']} process(es): exit {r['exit']}, stray {r['stray_objects'][:10]}, output {r['tails']}")
    figures = {
        "args": vars(args),
        "runs": [{k: v for k, v in r.items() if k != "per_symbol"} for r in runs],
        "archive_warm_up_s": warm_s,
        "load_avg_before": load_before,
        "load_avg_after": os.getloadavg(),
    }
    expected = args.symbols * args.months
    targets = {
        "every_period_once": all(
            r["period_objects"] == expected and not (r["missing"] or r["unexpected"] or r["duplicated"]) for r in runs
        ),
        "every_minute_once": all(not r["incomplete_objects"] and r["repeated_candles"] == 0 for r in runs),
        "shards_equal_one_process": same,
        "all_exit_0": not any(one["exit"] + many["exit"]),
        "no_stray_objects": not (one["stray_objects"] or many["stray_objects"]),
    }
    return report_and_save("bench_s3", figures, targets)


if __name__ == "__main__":
    main()
