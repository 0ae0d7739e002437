"""The cost of one cycle with several intervals: 3 intervals x N symbols against 1 interval x N.

    python -m benchmarks.bench_intervals [--symbols 100] [--latency 0.15] [--intervals 1m,1h,4h]

Each case is a real cycle (``ScheduledDataManager.run_cycle()``: export, cleanup,
duplicates, status) into a fresh folder against the sandbox in its own process,
first on an empty folder, then once more right away (the steady state: nothing
or one candle new). Every klines call is recorded by wrapping ``client.klines``;
its weight is what the market's profile charges the limiter for it (spot: 2 a
call; USD-M futures: by ``limit``). Both markets are measured.
"""

from __future__ import annotations

import argparse
import shutil
import time

from benchmarks._common import (
    SandboxProcess,
    bench_symbols,
    make_settings,
    quiet_logging,
    report_and_save,
    table,
    temp_dir,
)


class WeighingClient:
    """Records every klines call of a client with the weight its market charges for it."""

    def __init__(self, client) -> None:  # type: ignore[no-untyped-def]
        self.calls: list[tuple[str, int]] = []  # (interval, weight)
        self._klines = client.klines
        self._market = client.market
        client.klines = self._wrapped

    def _wrapped(self, symbol, interval, **kwargs):  # type: ignore[no-untyped-def]
        limit = max(1, min(self._market.max_klines_limit, int(kwargs.get("limit", 1000))))
        self.calls.append((interval, self._market.weight(self._market.klines_path, {"limit": limit})))
        return self._klines(symbol, interval, **kwargs)

    def take(self) -> list[tuple[str, int]]:
        calls, self.calls = self.calls, []
        return calls


def one_case(base_url: str, symbols: list[str], intervals: str, market: str) -> list[dict]:
    from crypto_data_export.exchange.client import ExchangeClient
    from crypto_data_export.scheduler.manager import ScheduledDataManager

    folder = temp_dir("intervals")
    figures = []
    try:
        settings = make_settings(base_url, folder, symbols, KLINE_INTERVALS=intervals, BINANCE_MARKET=market)
        with ExchangeClient.from_settings(settings) as client:
            recorder = WeighingClient(client)
            manager = ScheduledDataManager(settings, client=client)
            for cycle in ("1: empty folder", "2: right after"):
                started = time.perf_counter()
                report = manager.run_cycle()
                wall = time.perf_counter() - started
                calls = recorder.take()
                export = report.export
                figures.append(
                    {
                        "market": market,
                        "intervals": intervals,
                        "cycle": cycle,
                        "series": len(export.outcomes) if export else 0,
                        "failed": len(export.failed) if export else None,
                        "klines_calls": len(calls),
                        "klines_weight": sum(w for _, w in calls),
                        "wall_s": wall,
                        "export_s": export.seconds if export else None,
                    }
                )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return figures


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_intervals", description=__doc__.split("\n")[0])
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.15)
    parser.add_argument("--intervals", default="1m,1h,4h")
    parser.add_argument("--single", default="1h")
    args = parser.parse_args(argv)
    quiet_logging()
    symbols = bench_symbols(args.symbols)
    runs: list[dict] = []
    # A budget far above what one cycle needs: this measures calls, weight and time, not waits.
    with SandboxProcess(latency=args.latency, weight_limit=1_000_000) as sandbox:
        for market in ("spot", "usdm"):
            for intervals in (args.single, args.intervals):
                runs.extend(one_case(sandbox.base_url, symbols, intervals, market))
    headers = ["market", "intervals", "cycle", "series", "failed", "klines calls", "weight", "wall s", "export s"]
    rows = [
        [
            r["market"],
            r["intervals"],
            r["cycle"],
            r["series"],
            r["failed"],
            r["klines_calls"],
            r["klines_weight"],
            r["wall_s"],
            r["export_s"],
        ]
        for r in runs
    ]
    print(f"\nbench_intervals: {args.symbols} symbols, 2-day window, latency {args.latency * 1000:.0f} ms")
    print(table(headers, rows))
    steady = [r for r in runs if r["cycle"].startswith("2")]
    targets = {
        "all_series_ok": all(r["failed"] == 0 for r in runs),
        "steady_calls_per_series<=1": all(r["klines_calls"] <= r["series"] for r in steady),
    }
    figures = {"symbols": args.symbols, "latency_s": args.latency, "runs": runs}
    return report_and_save("bench_intervals", figures, targets)


if __name__ == "__main__":
    main()
