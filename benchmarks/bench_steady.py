"""Steady state: a second scheduled cycle once exactly one new candle has closed.

    python -m benchmarks.bench_steady [--symbols 400] [--latency 0.15]

The sandbox runs as its own process with a clock offset that puts its next
hour boundary a few seconds after cycle 1 starts. Cycle 1
(``ScheduledDataManager(settings).run_cycle()``, the real cycle: export,
cleanup, duplicate scan, status) fills a fresh folder; once the sandbox's
clock has passed the boundary, cycle 2 runs the same way. Every klines call
is recorded by wrapping ``client.klines``; "re-downloaded" candles are
fetched rows whose open_time was already stored in the folder after cycle 1.
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections import defaultdict
from pathlib import Path

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


class RecordingClient:
    """Records every klines call of a client: symbol, limit, open times returned."""

    def __init__(self, client) -> None:  # type: ignore[no-untyped-def]
        self.calls: list[tuple[str, int, list[int]]] = []
        self._klines = client.klines
        client.klines = self._wrapped

    def _wrapped(self, symbol, interval, **kwargs):  # type: ignore[no-untyped-def]
        rows = self._klines(symbol, interval, **kwargs)
        self.calls.append((symbol, int(kwargs.get("limit", 1000)), [int(r[0]) for r in rows]))
        return rows

    def take(self) -> list[tuple[str, int, list[int]]]:
        calls, self.calls = self.calls, []
        return calls


def stored_open_times(folder: Path) -> dict[str, set[int]]:
    from crypto_data_export.store.formats import CSV
    from crypto_data_export.store.listing import scan_exports

    stored: dict[str, set[int]] = defaultdict(set)
    for f in scan_exports(folder):
        stored[f.symbol].update(int(t) for t in CSV.read(f.path)["open_time"])
    return stored


def cycle_figures(name: str, report, calls, stored, wall: float, n: int) -> dict:  # type: ignore[no-untyped-def]
    fetched = sum(len(times) for _, _, times in calls)
    redownloaded = sum(1 for symbol, _, times in calls for t in times if t in stored.get(symbol, ()))
    export = report.export
    return {
        "cycle": name,
        "wall_s": wall,
        "export_s": export.seconds if export else None,
        "klines_calls": len(calls),
        "calls_per_symbol": len(calls) / n,
        "candles_downloaded": fetched,
        "redownloaded_candles": redownloaded,
        "max_limit_param": max((limit for _, limit, _ in calls), default=0),
        "reused_rows": sum(o.reused_rows for o in export.outcomes.values()) if export else 0,
        "symbols_ok": len(export.succeeded) if export else 0,
        "symbols_failed": len(export.failed) if export else n,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_steady", description=__doc__.split("\n")[0])
    parser.add_argument("--symbols", type=int, default=400)
    parser.add_argument("--latency", type=float, default=0.15)
    args = parser.parse_args(argv)
    quiet_logging()
    from crypto_data_export.exchange.client import ExchangeClient
    from crypto_data_export.scheduler.manager import ScheduledDataManager

    symbols = bench_symbols(args.symbols)
    folder = temp_dir("steady")
    # Put the sandbox's clock 4 s before an hour boundary: cycle 1 captures the
    # server time before it, cycle 2 runs once the boundary has passed.
    lead_ms = 4000
    now_ms = int(time.time() * 1000)
    boundary = (now_ms // HOUR_MS + 2) * HOUR_MS
    offset_ms = boundary - lead_ms - now_ms
    try:
        with SandboxProcess(latency=args.latency, clock_offset_ms=offset_ms) as sandbox:
            settings = make_settings(sandbox.base_url, folder, symbols)
            with ExchangeClient.from_settings(settings) as client:
                recorder = RecordingClient(client)
                manager = ScheduledDataManager(settings, client=client)
                started = time.perf_counter()
                first = manager.run_cycle()
                wall1 = time.perf_counter() - started
                one = cycle_figures("1: first (empty folder)", first, recorder.take(), {}, wall1, args.symbols)
                stored = stored_open_times(folder)
                # Wait for the sandbox clock to pass the boundary (+0.5 s).
                while int(time.time() * 1000) + offset_ms < boundary + 500:
                    time.sleep(0.05)
                started = time.perf_counter()
                second = manager.run_cycle()
                wall2 = time.perf_counter() - started
                two = cycle_figures("2: one new candle", second, recorder.take(), stored, wall2, args.symbols)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    runs = [one, two]
    headers = [
        "cycle",
        "wall s",
        "export s",
        "calls",
        "calls/symbol",
        "candles downloaded",
        "re-downloaded",
        "max limit",
        "reused rows",
        "failed",
    ]
    rows = [
        [
            r["cycle"],
            r["wall_s"],
            r["export_s"],
            r["klines_calls"],
            r["calls_per_symbol"],
            r["candles_downloaded"],
            r["redownloaded_candles"],
            r["max_limit_param"],
            r["reused_rows"],
            r["symbols_failed"],
        ]
        for r in runs
    ]
    print(f"\nbench_steady: {args.symbols} symbols, 1h candles, 2-day window, latency {args.latency * 1000:.0f} ms")
    print(table(headers, rows))
    targets = {
        "calls_per_symbol<=1": two["calls_per_symbol"] <= 1,
        "zero_redownloaded": two["redownloaded_candles"] == 0,
        "one_candle_per_symbol": two["candles_downloaded"] == args.symbols,
        "all_symbols_ok": two["symbols_failed"] == 0 and one["symbols_failed"] == 0,
    }
    figures = {"symbols": args.symbols, "latency_s": args.latency, "runs": runs}
    return report_and_save("bench_steady", figures, targets)


if __name__ == "__main__":
    main()
