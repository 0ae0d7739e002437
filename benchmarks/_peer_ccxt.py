"""The ccxt contenders of bench_peers: one whole process each, in the peers' virtualenv.

    PEERS_VENV/bin/python benchmarks/_peer_ccxt.py --mode async-limit|async-nolimit|sync \
        --base-url URL --symbols SYM0001USDT,... --interval 1h --since-ms MS --until-ms MS --out DIR

Run as a file (not ``-m``) by the interpreter of the benchmark-only virtualenv, which holds ccxt
and none of this project: it imports nothing from the repo. Written as a careful engineer would:

* ``async-limit``: ``ccxt.async_support.binance`` with ``enableRateLimit`` (its own pacing,
  20 ms per klines call on Binance), symbols gathered under a semaphore of ``--concurrency``;
* ``async-nolimit``: the same with ``enableRateLimit=False``;
* ``sync``: ``ccxt.binance`` (requests), one symbol after another.

Each symbol's pages go one after another (``fetch_ohlcv(since=..., limit=1000)``, the next page
from the last open time + 1 interval) until a page ends at or past ``--until-ms`` (exclusive:
the first open time not wanted) or comes back short. Candles opening at or after it are dropped
(ccxt also returns the open candle). Each symbol is written as ``DIR/SYMBOL.csv``
(``open_time_ms,open,high,low,close,volume``, floats as ``repr``: exact). The figures are
printed as one JSON line last.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
import time
from collections import Counter
from pathlib import Path

LIMIT = 1000


def configure(exchange, base_url: str) -> None:
    """Every spot REST root of ccxt's Binance pointed at the local exchange."""
    for key, url in list(exchange.urls["api"].items()):
        if isinstance(url, str) and url.startswith("https://api.binance.com"):
            exchange.urls["api"][key] = base_url + url[len("https://api.binance.com") :]


def options(rate_limit: bool) -> dict:
    return {
        "enableRateLimit": rate_limit,
        "timeout": 30000,
        "options": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False},
    }


def write(out: Path, symbol: str, rows: list[list], until_ms: int) -> int:
    kept = [r for r in rows if r[0] < until_ms]
    with open(out / f"{symbol}.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["open_time_ms", "open", "high", "low", "close", "volume"])
        w.writerows([int(r[0]), *(repr(float(v)) for v in r[1:6])] for r in kept)
    return len(kept)


def next_since(page: list[list], step_ms: int, until_ms: int) -> int | None:
    """The next page's start, or None when this page was the last."""
    if len(page) < LIMIT or page[-1][0] + step_ms >= until_ms:
        return None
    return int(page[-1][0]) + step_ms


async def run_async(args, symbols: list[str], out: Path) -> dict:
    import ccxt.async_support as ccxt

    exchange = ccxt.binance(options(args.mode == "async-limit"))
    configure(exchange, args.base_url)
    semaphore = asyncio.Semaphore(args.concurrency)
    errors: Counter[str] = Counter()
    rows = 0
    calls = 0

    async def one(symbol: str) -> None:
        nonlocal rows, calls
        candles: list[list] = []
        since: int | None = args.since_ms
        async with semaphore:
            try:
                while since is not None:
                    page = await exchange.fetch_ohlcv(f"{symbol[:-4]}/USDT", args.interval, since=since, limit=LIMIT)
                    calls += 1
                    candles += page
                    since = next_since(page, step, args.until_ms)
            except ccxt.BaseError as exc:
                errors[type(exc).__name__] += 1
                return
        rows += write(out, symbol, candles, args.until_ms)

    try:
        await exchange.load_markets()
        step = exchange.parse_timeframe(args.interval) * 1000
        await asyncio.gather(*(one(s) for s in symbols))
    finally:
        await exchange.close()
    return {"ccxt": ccxt.__version__, "rows": rows, "klines_calls": calls, "errors": dict(errors)}


def run_sync(args, symbols: list[str], out: Path) -> dict:
    import ccxt

    exchange = ccxt.binance(options(True))
    configure(exchange, args.base_url)
    exchange.load_markets()
    step = exchange.parse_timeframe(args.interval) * 1000
    errors: Counter[str] = Counter()
    rows = calls = 0
    for symbol in symbols:
        candles: list[list] = []
        since: int | None = args.since_ms
        try:
            while since is not None:
                page = exchange.fetch_ohlcv(f"{symbol[:-4]}/USDT", args.interval, since=since, limit=LIMIT)
                calls += 1
                candles += page
                since = next_since(page, step, args.until_ms)
        except ccxt.BaseError as exc:
            errors[type(exc).__name__] += 1
            continue
        rows += write(out, symbol, candles, args.until_ms)
    return {"ccxt": ccxt.__version__, "rows": rows, "klines_calls": calls, "errors": dict(errors)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=("async-limit", "async-nolimit", "sync"), required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--symbols", required=True, help="comma list, e.g. SYM0001USDT,SYM0002USDT")
    parser.add_argument("--interval", default="1h")
    parser.add_argument("--since-ms", type=int, required=True, help="open time of the first candle wanted")
    parser.add_argument("--until-ms", type=int, required=True, help="first open time not wanted (exclusive)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=30, help="async: symbols in flight (default 30)")
    args = parser.parse_args(argv)
    symbols = [s for s in args.symbols.split(",") if s]
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.mode == "sync":
        figures = run_sync(args, symbols, args.out)
    else:
        figures = asyncio.run(run_async(args, symbols, args.out))
    figures["in_process_s"] = time.perf_counter() - started
    print(json.dumps(figures), flush=True)
    return 0 if not figures["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
