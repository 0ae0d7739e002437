"""The ccxt contender of bench_export, in an interpreter of its own.

    PYTHONPATH=/tmp/bench-ccxt python -m benchmarks._ccxt_baseline --base-url URL --symbols SYM0001USDT,...

``bench_export`` starts this module (cwd: the repo root) against a sandbox
exchange it has started itself. ccxt is never a project dependency: when the
environment has none, it lives in a throwaway folder (``pip install --target``)
that only this child sees, through PYTHONPATH in its environment. Runs
``binance.fetch_ohlcv`` with ``enableRateLimit`` for every symbol (its spot
URLs pointed at the sandbox) and prints the figures as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter

from benchmarks.bench_export import window


def run(base_url: str, symbols: list[str]) -> dict:
    import ccxt

    statuses: Counter[int] = Counter()
    exchange = ccxt.binance(
        {
            "enableRateLimit": True,
            "timeout": 20000,
            "options": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False},
        }
    )
    # Point every spot REST root at the sandbox; futures/options roots are never called.
    for key, url in list(exchange.urls["api"].items()):
        if isinstance(url, str) and url.startswith("https://api.binance.com/api/"):
            exchange.urls["api"][key] = base_url + url[len("https://api.binance.com") :]
    exchange.session.hooks["response"].append(lambda r, *a, **k: statuses.update([r.status_code]))
    errors: Counter[str] = Counter()
    started = time.perf_counter()
    exchange.load_markets()
    markets_s = time.perf_counter() - started
    start_ms, _ = window(exchange.milliseconds())
    rows = 0
    for symbol in symbols:
        try:
            rows += len(exchange.fetch_ohlcv(f"{symbol[:-4]}/USDT", "1h", since=start_ms, limit=48))
        except ccxt.DDoSProtection:
            errors["429/418"] += 1
        except ccxt.BaseError as exc:
            errors[type(exc).__name__] += 1
    wall = time.perf_counter() - started
    return {
        "name": f"ccxt {ccxt.__version__} fetch_ohlcv (enableRateLimit)",
        "wall_s": wall,
        "load_markets_s": markets_s,
        "klines_calls": len(symbols),
        "requests": sum(statuses.values()),
        "http_429": statuses.get(429, 0),
        "statuses": dict(statuses),
        "rows": rows,
        "errors": dict(errors),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._ccxt_baseline", description=__doc__.split("\n")[0])
    parser.add_argument("--base-url", required=True, help="the sandbox exchange, e.g. http://127.0.0.1:PORT")
    parser.add_argument("--symbols", required=True, help="comma list, e.g. SYM0001USDT,SYM0002USDT")
    args = parser.parse_args(argv)
    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
    print(json.dumps(run(args.base_url, symbols)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
