"""Backfill from the bulk archive vs the REST API: wall time and exchange weight, side by side.

    python -m benchmarks.bench_archive [--latency 0.15] [--days 365] [--symbols 20] [--quick] [--market usdm]

Two scenarios, each run three times, every run against its own fresh sandbox
process (the same latency for the REST API and the archive, which it serves
under ``/data/``, the real 6000 weight/minute budget):

* 1 symbol x ``--days`` x 1m: ~526 klines calls per symbol-year through REST;
* ``--symbols`` symbols x ``--days`` x 1h: 9 calls per symbol-year through REST.

Runs: ``--source rest``; ``--source auto`` against a *warm* archive (every
zip of the window requested once before the clock starts: data.binance.vision
serves files that exist, while the sandbox builds each zip on its first
request, in one process, under one GIL); ``--source auto`` against a *cold*
archive (the sandbox's build time included: a pessimistic bound). Each run is
``crypto_data_export.backfill.archive_backfill.archive_backfill(settings, source)`` in this process,
writing real files into a fresh temp folder. Weight is what
the exchange charges (spot: klines 2, exchangeInfo 20, time 1; USD-M: klines by page size),
counted on the client side per request; archive downloads weigh nothing (a CDN). The
two runs of a scenario start at different moments, so their windows differ
by the seconds between them: "same rows" compares the candles they share.

``--market usdm``: the same against the USD-M futures endpoints and archive
(``data/futures/um/...``, CSV files with a header line), BINANCE_MARKET=usdm.
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks._common import (
    SandboxProcess,
    bench_symbols,
    make_settings,
    quiet_logging,
    table,
    temp_dir,
    write_results,
)

WEIGHT_LIMIT = 6000
DAY_MS = 86_400_000


class PathCounter:
    """Counts every request of every ExchangeClient by path (wraps ``ClientStats.count``)."""

    def __init__(self) -> None:
        from crypto_data_export.exchange.client import ClientStats

        self.paths: Counter[str] = Counter()
        self.weights = 0
        self._cls = ClientStats
        self._original = ClientStats.count
        counter = self

        def count(stats: ClientStats, path: str, weight: int = 0) -> None:
            counter._original(stats, path, weight)
            counter.paths[path] += 1
            counter.weights += weight

        ClientStats.count = count  # type: ignore[method-assign]

    def weight(self) -> int:
        return self.weights

    def restore(self) -> None:
        self._cls.count = self._original  # type: ignore[method-assign]


def data_lines(folder: Path) -> dict[str, list[str]]:
    """Each written export's data lines (header dropped), by symbol."""
    out = {}
    for path in sorted(folder.glob("*_*_*.csv")):
        out[path.name.split("_")[0]] = path.read_text().splitlines()[1:]
    return out


def same_shared_rows(a: list[str], b: list[str]) -> bool:
    """The rows both files hold (the same open times) are byte-identical."""
    by_open_a = {line.split(",", 1)[0]: line for line in a}
    shared = [line for line in b if line.split(",", 1)[0] in by_open_a]
    return bool(shared) and all(by_open_a[line.split(",", 1)[0]] == line for line in shared)


def warm_up(base_url: str, symbols: list[str], interval: str, days: int, prefix: str) -> None:
    """Ask for every zip the run will want (and a day more on each side), so the sandbox has built them."""
    import requests

    from crypto_data_export.backfill.archive_backfill import plan_segments
    from crypto_data_export.exchange.archive import ArchivePeriod

    now = int(time.time() * 1000)
    today = now // DAY_MS * DAY_MS
    periods = [
        segment
        for symbol in symbols
        for segment in plan_segments(symbol, interval, now - (days + 1) * DAY_MS, now, today)
        if isinstance(segment, ArchivePeriod)
    ]
    with requests.Session() as session, ThreadPoolExecutor(16) as pool:
        session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=16))
        list(pool.map(lambda p: session.get(f"{base_url}/{p.url_path(prefix)}", timeout=600).content, periods))


def run(
    source: str,
    symbols: list[str],
    interval: str,
    days: int,
    latency: float,
    *,
    warm: bool = False,
    market: str = "spot",
) -> tuple[dict, dict]:
    from crypto_data_export.backfill.archive_backfill import archive_backfill
    from crypto_data_export.exchange.market_profiles import MARKETS

    profile = MARKETS[market]

    folder = temp_dir(f"archive-{source}")
    counter = PathCounter()
    try:
        with SandboxProcess(latency=latency, weight_limit=WEIGHT_LIMIT) as sandbox:
            if warm:
                warm_up(sandbox.base_url, symbols, interval, days, profile.archive_prefix)
            settings = make_settings(
                sandbox.base_url,
                folder,
                symbols,
                KLINE_INTERVAL=interval,
                EXPORT_LOOKBACK_DAYS=str(days),
                BINANCE_ARCHIVE_URL=sandbox.base_url,
                BINANCE_MARKET=market,
            )
            started = time.perf_counter()
            result = archive_backfill(settings, source)
            wall = time.perf_counter() - started
        report = result.report
        tallies = result.tallies.values() if source != "rest" else []
        figures = {
            "source": source,
            "wall_s": wall,
            "weight": counter.weight(),
            "klines_calls": counter.paths.get(profile.klines_path, 0),
            "rest_requests": sum(counter.paths.values()),
            "archive_files": sum(t.archive_files for t in tallies),
            "archive_mb": sum(t.downloaded_bytes for t in tallies) / 1e6,
            "refused_files": sum(len(t.refused) for t in tallies),
            "rows": sum(o.rows for o in report.succeeded),
            "symbols_ok": len(report.succeeded),
            "symbols_failed": len(report.failed),
            "failures": sorted({o.error or "" for o in report.failed})[:3],
        }
        return figures, data_lines(folder)
    finally:
        counter.restore()
        shutil.rmtree(folder, ignore_errors=True)


RUNS = (
    ("rest", "REST only"),
    ("archive", "archive + REST (auto), warm archive"),
    ("archive_cold", "archive + REST (auto), cold sandbox archive"),
)


def scenario(name: str, symbols: list[str], interval: str, days: int, latency: float, market: str) -> dict:
    print(f"{name}: REST ...", flush=True)
    rest, rest_lines = run("rest", symbols, interval, days, latency, market=market)
    print(f"{name}: archive (auto), warm ...", flush=True)
    archive, archive_lines = run("auto", symbols, interval, days, latency, warm=True, market=market)
    print(f"{name}: archive (auto), cold ...", flush=True)
    cold, _ = run("auto", symbols, interval, days, latency, market=market)
    same = all(same_shared_rows(rest_lines.get(s, []), archive_lines.get(s, [])) for s in symbols)
    return {
        "scenario": name,
        "symbols": len(symbols),
        "interval": interval,
        "days": days,
        "rest": rest,
        "archive": archive,
        "archive_cold": cold,
        "speedup": rest["wall_s"] / archive["wall_s"] if archive["wall_s"] else None,
        "speedup_cold": rest["wall_s"] / cold["wall_s"] if cold["wall_s"] else None,
        "weight_ratio": rest["weight"] / archive["weight"] if archive["weight"] else None,
        "same_shared_rows": same,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_archive", description=__doc__.split("\n")[0])
    parser.add_argument("--latency", type=float, default=0.15, help="seconds per answer, REST and archive (0.15)")
    parser.add_argument("--days", type=int, default=365, help="look-back of both scenarios (365)")
    parser.add_argument("--symbols", type=int, default=20, help="symbols of the 1h scenario (20)")
    parser.add_argument("--quick", action="store_true", help="60 days and 5 symbols")
    parser.add_argument("--market", choices=("spot", "usdm"), default="spot", help="BINANCE_MARKET (spot)")
    args = parser.parse_args(argv)
    if args.quick:
        args.days, args.symbols = 60, 5
    quiet_logging()
    scenarios = [
        scenario(f"1 symbol x {args.days} d x 1m", ["BTCUSDT"], "1m", args.days, args.latency, args.market),
        scenario(
            f"{args.symbols} symbols x {args.days} d x 1h",
            bench_symbols(args.symbols),
            "1h",
            args.days,
            args.latency,
            args.market,
        ),
    ]
    rows = []
    for s in scenarios:
        for key, label in RUNS:
            r = s[key]
            rows.append(
                [
                    s["scenario"],
                    label,
                    r["wall_s"],
                    r["weight"],
                    r["klines_calls"],
                    r["archive_files"],
                    f"{r['archive_mb']:.1f}",
                    r["rows"],
                    f"{r['symbols_ok']}/{s['symbols']}",
                ]
            )
    print(
        f"\nbench_archive ({args.market}): latency {args.latency * 1000:.0f} ms for REST and archive alike, "
        "weight budget 6000/min"
    )
    print(
        table(
            ["scenario", "source", "wall s", "weight", "klines calls", "zips", "zip MB", "rows", "symbols ok"],
            rows,
        )
    )
    for s in scenarios:
        ratio = f"{s['weight_ratio']:.0f}x less weight" if s["weight_ratio"] else "-"
        print(
            f"{s['scenario']}: archive {s['speedup']:.2f}x the speed of REST ({s['speedup_cold']:.2f}x cold), {ratio}; "
            f"rows shared by both files identical: {'yes' if s['same_shared_rows'] else 'NO'}"
        )
    figures = {"market": args.market, "latency_s": args.latency, "days": args.days, "scenarios": scenarios}
    path = write_results("bench_archive" if args.market == "spot" else f"bench_archive_{args.market}", figures)
    print(f"results: {path}")
    return figures


if __name__ == "__main__":
    main()
