"""Export of N symbols against a far exchange: ours vs ccxt vs a ccxt-paced loop vs the budget bound.

    python -m benchmarks.bench_export [--symbols 400] [--latency 0.15] [--with-ccxt]

Every contender gets its own fresh sandbox exchange process (150 ms latency,
the real 6000 weight/minute budget) so none inherits another's used weight.
A 2-day 1h window is one klines call (weight 2) per symbol, so the budget
bound is N x 2 / (6000 / 60) = N / 50 s.

* ours: ``ExportJob(settings, FileManager(...)).run(symbols)`` in-process
  (thread pool of EXPORT_WORKERS sharing one WeightLimiter), writing real
  files into a fresh temp folder;
* ccxt (``--with-ccxt``): ``binance.fetch_ohlcv`` with ``enableRateLimit``,
  its URLs pointed at the sandbox, in a child interpreter
  (``benchmarks._ccxt_baseline``); if the environment has no ccxt, it is
  pip-installed into a throwaway folder under /tmp that only that child sees,
  through its PYTHONPATH (never a project dependency);
* paced loop: sequential ``requests`` GETs spaced as ccxt spaces Binance
  klines calls (rateLimit 50 ms x cost 0.4 = 20 ms), i.e. what ccxt does
  without its own overhead; the baseline when ccxt is not used.

429 answers are counted on the client side (``client.stats.rate_limited``
for ours, status codes for the others).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from benchmarks._common import (
    ROOT,
    SandboxProcess,
    bench_symbols,
    make_settings,
    quiet_logging,
    report_and_save,
    table,
    temp_dir,
)

KLINES_WEIGHT = 2
WEIGHT_LIMIT = 6000
CCXT_DIR = Path("/tmp/bench-ccxt")
CCXT_PACE_S = 0.050 * 0.4  # ccxt binance: rateLimit 50 ms x klines cost 0.4


def window(now_ms: int) -> tuple[int, int]:
    """Start and end (open time of the newest closed candle) of a 2-day 1h window."""
    hour = 3_600_000
    last_closed = (now_ms // hour) * hour - hour
    return now_ms - 2 * 86_400_000, last_closed


# -- ours ---------------------------------------------------------------------------
def run_ours(symbols: list[str], latency: float, workers: int | None, prefill: int = 0) -> dict:
    from crypto_data_export.exchange.client import ExchangeClient
    from crypto_data_export.pipeline.export_job import ExportJob
    from crypto_data_export.store.files import FileManager

    folder = temp_dir("export")
    if prefill:  # a crowded folder: other symbols' exports every per-symbol scan lists (names only)
        from benchmarks.bench_files import make_many_files

        make_many_files(folder, prefill, per_symbol=1, corrupt=0, dups=0)
    try:
        with SandboxProcess(latency=latency, weight_limit=WEIGHT_LIMIT) as sandbox:
            extra = {"EXPORT_WORKERS": str(workers)} if workers else {}
            settings = make_settings(sandbox.base_url, folder, symbols, **extra)
            files = FileManager(
                settings.export_dir,
                settings.kline_interval,
                settings.symbols,
                settings.max_files_per_symbol,
                settings.data_retention_days,
            )
            files.ensure_folder()
            with ExchangeClient.from_settings(settings) as client:
                job = ExportJob(settings, files, client)
                started = time.perf_counter()
                report = job.run(symbols)
                wall = time.perf_counter() - started
            written = sum(1 for p in folder.iterdir() if p.suffix == ".csv") - prefill
            crowded = f", folder pre-filled with {prefill} files" if prefill else ""
            return {
                "name": f"ours (ExportJob, {settings.workers} workers{crowded})",
                "prefilled_files": prefill,
                "wall_s": wall,
                "klines_calls": client.stats.klines_calls,
                "requests": client.stats.requests,
                "http_429": client.stats.rate_limited,
                "retries": client.stats.retries,
                "symbols_ok": len(report.succeeded),
                "symbols_failed": len(report.failed),
                "files_written": written,
                "limiter_waits": client.limiter.waits,
                "workers": settings.workers,
                "failures": sorted({o.error or "" for o in report.failed})[:3],
            }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- ccxt -----------------------------------------------------------------------------
def ccxt_env() -> dict[str, str]:
    """The environment of a child interpreter that can import ccxt.

    The current environment's ccxt if it has one; else the throwaway folder
    CCXT_DIR (pip-installed into it if missing), added to the child's
    PYTHONPATH only: this process's import path is never changed.
    """
    env = dict(os.environ)
    if importlib.util.find_spec("ccxt") is not None:
        return env
    if not (CCXT_DIR / "ccxt" / "__init__.py").is_file():
        print(f"installing ccxt into the throwaway folder {CCXT_DIR} (not a project dependency) ...", flush=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
                str(CCXT_DIR),
                "ccxt",
            ],
            check=True,
        )
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH", ""), str(CCXT_DIR)) if p)
    return env


def run_ccxt(symbols: list[str], latency: float) -> dict:
    """ccxt in a child interpreter (``python -m benchmarks._ccxt_baseline``), cwd the repo root."""
    env = ccxt_env()
    with SandboxProcess(latency=latency, weight_limit=WEIGHT_LIMIT, list_symbols=len(symbols)) as sandbox:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks._ccxt_baseline",
                "--base-url",
                sandbox.base_url,
                "--symbols",
                ",".join(symbols),
            ],
            cwd=str(ROOT),
            env=env,
            stdout=subprocess.PIPE,
            text=True,
            timeout=600 + 5 * len(symbols),
        )
    if proc.returncode != 0:
        raise RuntimeError(f"python -m benchmarks._ccxt_baseline exited with {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the ccxt-paced sequential loop ----------------------------------------------------
def run_paced_loop(symbols: list[str], latency: float) -> dict:
    import requests

    statuses: Counter[int] = Counter()
    rows = 0
    with SandboxProcess(latency=latency, weight_limit=WEIGHT_LIMIT) as sandbox, requests.Session() as session:
        url = sandbox.base_url + "/api/v3/klines"
        start_ms, end_ms = window(session.get(sandbox.base_url + "/api/v3/time", timeout=10).json()["serverTime"])
        started = time.perf_counter()
        next_slot = started
        for symbol in symbols:
            pause = next_slot - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            next_slot = time.perf_counter() + CCXT_PACE_S
            response = session.get(
                url,
                params={"symbol": symbol, "interval": "1h", "startTime": start_ms, "endTime": end_ms, "limit": 48},
                timeout=20,
            )
            statuses[response.status_code] += 1
            if response.status_code == 200:
                rows += len(response.json())
        wall = time.perf_counter() - started
    return {
        "name": "sequential requests loop, ccxt pacing (20 ms)",
        "wall_s": wall,
        "klines_calls": len(symbols),
        "requests": sum(statuses.values()),
        "http_429": statuses.get(429, 0),
        "statuses": dict(statuses),
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_export", description=__doc__.split("\n")[0])
    parser.add_argument("--symbols", type=int, default=400)
    parser.add_argument("--latency", type=float, default=0.15)
    parser.add_argument("--workers", type=int, help="EXPORT_WORKERS for our run (default: Settings default)")
    parser.add_argument("--with-ccxt", action="store_true", help="also run ccxt (pip-installed to /tmp if missing)")
    parser.add_argument("--no-paced-loop", action="store_true", help="skip the ccxt-paced requests loop")
    parser.add_argument(
        "--prefill-files",
        type=int,
        default=0,
        metavar="N",
        help="also run ours into a folder already holding N other exports (a crowded folder)",
    )
    args = parser.parse_args(argv)
    quiet_logging()
    symbols = bench_symbols(args.symbols)
    # Issue 7's bound: the budget taken as a rate (6000/min = 50 calls/s). The budget is a
    # window (issue 13), so a cycle within it may beat this; what bounds it is the latency.
    bound_s = args.symbols * KLINES_WEIGHT / (WEIGHT_LIMIT / 60)

    runs = [run_ours(symbols, args.latency, args.workers)]
    latency_bound_s = args.symbols * args.latency / runs[0]["workers"]
    crowded = run_ours(symbols, args.latency, args.workers, args.prefill_files) if args.prefill_files else None
    if args.with_ccxt:
        try:
            runs.append(run_ccxt(symbols, args.latency))
        except Exception as exc:  # the fallback below still gives a baseline
            print(f"ccxt could not be run against the sandbox: {exc!r}; using the paced loop", flush=True)
    if not args.no_paced_loop or len(runs) == 1:
        runs.append(run_paced_loop(symbols, args.latency))
    baseline = runs[1]
    if crowded is not None:
        runs.insert(1, crowded)
    for run in runs:
        run["calls_per_s"] = run["klines_calls"] / run["wall_s"]
        run["pct_of_bound"] = 100 * bound_s / run["wall_s"]
        run["pct_of_latency_bound"] = 100 * latency_bound_s / run["wall_s"]
        run["speedup_vs_baseline"] = baseline["wall_s"] / run["wall_s"]

    ours = runs[0]
    rows = [
        [
            r["name"],
            r["wall_s"],
            r["klines_calls"],
            r["calls_per_s"],
            r["http_429"],
            f"{r['pct_of_bound']:.1f} %",
            f"{r['speedup_vs_baseline']:.2f}x",
        ]
        for r in runs
    ]
    rows.append(
        [
            f"weight-budget bound ({WEIGHT_LIMIT}/min, klines weight {KLINES_WEIGHT})",
            bound_s,
            args.symbols,
            args.symbols / bound_s,
            0,
            "100.0 %",
            f"{baseline['wall_s'] / bound_s:.2f}x",
        ]
    )
    print(
        f"\nbench_export: {args.symbols} symbols, 2-day 1h window (1 call each), latency {args.latency * 1000:.0f} ms;"
        f" baseline = {baseline['name']}"
    )
    print(table(["contender", "wall s", "calls", "calls/s", "429s", "% of bound", "speed-up"], rows))
    targets = {
        "pct_of_bound>=90": ours["pct_of_bound"] >= 90,
        "zero_429": ours["http_429"] == 0,
        "speedup>=4x": ours["speedup_vs_baseline"] >= 4,
        "all_symbols_ok": ours["symbols_failed"] == 0,
    }
    if crowded is not None:
        targets["crowded_folder_pct_of_bound>=90"] = crowded["pct_of_bound"] >= 90
    figures = {
        "symbols": args.symbols,
        "latency_s": args.latency,
        "bound_s": bound_s,
        "latency_bound_s": latency_bound_s,
        "baseline": baseline["name"],
        "runs": runs,
    }
    return report_and_save("bench_export", figures, targets)


if __name__ == "__main__":
    main()
