"""This project beside the tools its users would otherwise pick, whole processes, one run per tool (issue 24).

    python -m benchmarks.bench_peers [--quick] [--rows cycle,backfill,long] [--tools ours,ccxt-async-limit,...]
                                     [--latency 0.15] [--venv PATH]

Every run is a whole process against a fresh sandbox exchange started in this process (150 ms
latency, 6000 weight per SLIDING minute, 429 beyond it; it counts the 429 answers, the requests
and the most weight seen in its window):

* cycle, 400 symbols x 2 days x 1h: ours ``scheduled_data_manager.py --manual``; the peers from
  the first open time at or after now - 2 days;
* backfill, 20 symbols x 365 days x 1h: ours ``export_historical_data.py --start S --end E
  --source rest`` (S, E: whole intervals, E the open candle); the peers from S (ccxt up to E);
* long, 1 symbol x 365 days x 1m, REST only: the same with ``--interval 1m``.

The peers (columns): ccxt async with its rate limiter, ccxt async without, ccxt sync
(``benchmarks/_peer_ccxt.py``: symbols gathered under a semaphore of 30, each symbol's pages one
after another, as ``shared/reference/peers.md`` describes a careful client), and freqtrade
``download-data`` (``--timerange S-``, feather files; ``only_from_ccxt`` so it never reaches for
data.binance.vision). They live in a benchmark-only virtualenv this script makes on first use
(``python -m venv`` + ``pip install ccxt freqtrade``, by default under ``~/.cache``): they are
never dependencies of the project. If freqtrade does not install, its column says why.

Every tool's candles are checked equal: for each symbol, the open times and the five OHLCV
values as floats over the range all tools hold (freqtrade drops the newest candle it receives,
the cycle's window is the tool's own: the common range is reported). The figures go to
``benchmarks/results/bench_peers.json`` and the table to ``benchmarks/results/bench_peers.md``.

Targets (issue 24, checked for ours): long <= 8 s with 0 x 429; backfill <= 0.7x ccxt async with
its limiter; 0 x 429 everywhere; every tool's candles equal. The full run takes about 15 minutes
on an idle 2-core machine (the ccxt sync and freqtrade cycles and the four sequential 1m series
dominate; 25 minutes at a load average of 12-25), plus about 1 minute to make the virtualenv the
first time; ``--quick`` (40 symbols, 5 x 30 days, 1 x 7 days of 1m) about 1 minute.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import (
    ROOT,
    bench_symbols,
    children_cpu,
    exchange_figures,
    process_env,
    table,
    temp_dir,
    verdict,
    write_results,
)
from benchmarks.bench_pages import CachedKlines
from crypto_data_export.sandbox.fake_exchange import SandboxConfig

TOOLS = ("ours", "ccxt-async-limit", "ccxt-async-nolimit", "ccxt-sync", "freqtrade")
TITLES = {
    "ours": "this project",
    "ccxt-async-limit": "ccxt async, with its rate limiter",
    "ccxt-async-nolimit": "ccxt async, no limiter",
    "ccxt-sync": "ccxt sync",
    "freqtrade": "freqtrade `download-data`",
}
STEP_MS = {"1m": 60_000, "1h": 3_600_000}
DAY_MS = 86_400_000
DEFAULT_VENV = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "crypto_data_export" / "peers-venv"


@dataclass(frozen=True)
class Row:
    name: str
    symbols: int
    days: int
    interval: str
    title: str


def rows_for(quick: bool) -> dict[str, Row]:
    """The three rows of the issue's table (``--quick``: smaller sizes, the same shapes)."""
    sizes = {"cycle": (40, 2), "backfill": (5, 30), "long": (1, 7)} if quick else {}
    out = {}
    for key, n, days, interval, what in (
        ("cycle", 400, 2, "1h", " (a cycle)"),
        ("backfill", 20, 365, "1h", " (a backfill)"),
        ("long", 1, 365, "1m", ", REST only"),
    ):
        n, days = sizes.get(key, (n, days))
        title = f"{n} symbol{'s' if n > 1 else ''} × {days} days × {interval}{what}"
        out[key] = Row(key, n, days, interval, title)
    return out


# -- the peers' virtualenv -----------------------------------------------------------
def ensure_venv(venv: Path) -> dict[str, Any]:
    """The benchmark-only virtualenv with ccxt and freqtrade (made and installed once)."""
    marker = venv / "peers.json"
    if marker.exists():
        return json.loads(marker.read_text(encoding="utf-8"))
    print(f"making the peers' virtualenv {venv} (python -m venv, pip install ccxt freqtrade) ...", flush=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    info: dict[str, Any] = {"freqtrade_error": None}
    both = subprocess.run([*pip, "ccxt", "freqtrade"], capture_output=True, text=True)
    if both.returncode != 0:  # say why, and go on with ccxt alone
        info["freqtrade_error"] = "pip install freqtrade failed: " + " | ".join(both.stderr.strip().splitlines()[-5:])
        subprocess.run([*pip, "ccxt"], check=True)
    probe = "import json, importlib.metadata as m\nv = {}\nfor p in ('ccxt', 'freqtrade'):\n"
    probe += "    try: v[p] = m.version(p)\n    except m.PackageNotFoundError: v[p] = None\nprint(json.dumps(v))"
    versions = subprocess.run([str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True, check=True)
    info.update(json.loads(versions.stdout), python=sys.version.split()[0], made=datetime.now(UTC).isoformat())
    marker.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info


# -- one whole process ---------------------------------------------------------------
def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def command(tool: str, row: Row, symbols: list[str], url: str, folder: Path, since: int, until: int, venv: Path):
    """The argv and environment of ``tool`` for ``row``, and where its files land."""
    env = process_env(url, folder, symbols, KLINE_INTERVAL=row.interval)
    if tool == "ours":
        if row.name == "cycle":
            return [sys.executable, str(ROOT / "scheduled_data_manager.py"), "--manual"], env, folder
        script = [sys.executable, str(ROOT / "export_historical_data.py"), "--symbols", ",".join(symbols)]
        window = ["--start", _iso(since), "--end", _iso(until), "--interval", row.interval]
        return [*script, *window, "--source", "rest", "--output", str(folder / "out")], env, folder / "out"
    if tool.startswith("ccxt-"):
        argv = [str(venv / "bin" / "python"), str(ROOT / "benchmarks" / "_peer_ccxt.py"), "--mode", tool[5:]]
        argv += ["--base-url", url, "--symbols", ",".join(symbols), "--interval", row.interval]
        argv += ["--since-ms", str(since), "--until-ms", str(until), "--out", str(folder / "out")]
        return argv, env, folder / "out"
    api = {"public": url + "/api/v3", "private": url + "/api/v3", "v1": url + "/api/v1"}
    ccxt_config = {"urls": {"api": api}, "options": {"fetchMarkets": {"types": ["spot"]}}}
    config = {
        "exchange": {
            "name": "binance",
            "ccxt_config": ccxt_config,
            "ccxt_async_config": ccxt_config,
            "only_from_ccxt": True,  # its archive download has data.binance.vision hard-coded
            "pair_whitelist": [],
        },
        "trading_mode": "spot",
        "stake_currency": "USDT",
        "dry_run": True,
    }
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (folder / "pairs.json").write_text(json.dumps([f"{s[:-4]}/USDT" for s in symbols]), encoding="utf-8")
    (folder / "user_data").mkdir()
    argv = [str(venv / "bin" / "freqtrade"), "download-data", "-c", str(folder / "config.json")]
    argv += ["--userdir", str(folder / "user_data"), "--pairs-file", str(folder / "pairs.json")]
    argv += ["--timerange", f"{since // 1000}-", "-t", row.interval, "--data-format-ohlcv", "feather"]
    return argv, env, folder / "user_data" / "data" / "binance"


def window(row: Row) -> tuple[int, int]:
    """The row's range, once for every tool: ``since`` (first open time) and ``until`` (exclusive).

    ``until`` is the open candle's open time now; a backfill asks for ``days`` whole days before it,
    a cycle from the first open time at or after now - days (what the scheduler's window holds).
    """
    step = STEP_MS[row.interval]
    now = int(time.time() * 1000)
    until = now // step * step
    since = -(-(now - row.days * DAY_MS) // step) * step if row.name == "cycle" else until - row.days * DAY_MS
    return since, until


def run_tool(
    tool: str, row: Row, span: tuple[int, int], latency: float, venv: Path
) -> tuple[dict[str, Any], dict[str, tuple]]:
    """One whole process of ``tool`` against a fresh sandbox: its figures and its candles."""
    symbols = bench_symbols(row.symbols)
    since, until = span
    cfg = SandboxConfig(
        latency_seconds=latency,
        weight_limit=6000,
        weight_window="sliding",
        accept_any_symbol=True,
        extra_symbols=tuple(symbols),  # ccxt's and freqtrade's load_markets list every market
    )
    folder = temp_dir(f"peers-{tool}")
    # Each candle made once (bench_pages.CachedKlines), else the sandbox's own candle generation
    # (~20 us a candle: 11 s for a year of 1m, 3.5 s for 20 symbols x a year of 1h) is what every tool waits for.
    exchange = CachedKlines(cfg).warm(until + 2 * 3_600_000, row.days + 1, row.interval).start()
    try:
        argv, env, out = command(tool, row, symbols, exchange.base_url, folder, since, until, venv)
        load = os.getloadavg()[0]
        cpu_before = children_cpu()
        started = time.perf_counter()
        proc = subprocess.run(argv, env=env, cwd=str(folder), capture_output=True, text=True, timeout=3600)
        wall = time.perf_counter() - started
        figures = {
            "wall_s": wall,
            "cpu_s": children_cpu() - cpu_before,
            "exit_code": proc.returncode,
            "http_418": exchange.stats.banned_418,
            "load_1min_before": load,
            "since": _iso(since),
            "stderr_tail": proc.stderr.strip().splitlines()[-3:] if proc.returncode else [],
            **exchange_figures(exchange),
        }
        candles = load_candles(tool, row, symbols, out)
        figures["candles"] = sum(len(t) for t, _ in candles.values())
        return figures, candles
    finally:
        exchange.stop()
        shutil.rmtree(folder, ignore_errors=True)


# -- the candles of each tool --------------------------------------------------------
def _csv_candles(path: Path, ours: bool) -> tuple:
    times, values = [], []
    with open(path, newline="", encoding="utf-8") as fh:
        rows = csv.reader(fh)
        next(rows)
        for r in rows:
            t = int(datetime.fromisoformat(r[0]).timestamp() * 1000) if ours else int(r[0])
            times.append(t)
            values.append([float(v) for v in r[1:6]])
    return np.asarray(times, dtype=np.int64), np.asarray(values, dtype=np.float64).reshape(-1, 5)


def _feather_candles(path: Path) -> tuple:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.feather as feather

    t = feather.read_table(path)
    ms = pc.cast(pc.cast(t["date"], pa.timestamp("ms", tz="UTC")), "int64").to_numpy()
    values = np.column_stack([t[c].to_numpy() for c in ("open", "high", "low", "close", "volume")])
    return np.asarray(ms, dtype=np.int64), values.astype(np.float64)


def load_candles(tool: str, row: Row, symbols: list[str], out: Path) -> dict[str, tuple]:
    """symbol -> (open times in ms, OHLCV floats) of what ``tool`` wrote (a symbol without a file: absent)."""
    found: dict[str, tuple] = {}
    for symbol in symbols:
        if tool == "freqtrade":
            paths = [out / f"{symbol[:-4]}_USDT-{row.interval}.feather"]
        elif tool == "ours":
            paths = sorted(out.glob(f"{symbol}_{row.interval}_*.csv"))
        else:
            paths = [out / f"{symbol}.csv"]
        paths = [p for p in paths if p.exists()]
        if len(paths) == 1:
            found[symbol] = (
                _feather_candles(paths[0]) if tool == "freqtrade" else _csv_candles(paths[0], tool == "ours")
            )
    return found


def compare(row: Row, candles: dict[str, dict[str, tuple]]) -> dict[str, Any]:
    """Every tool's candles against the others', symbol by symbol, over the range all of them hold."""
    tools = list(candles)
    problems: list[str] = []
    common = 0
    wanted = row.days * DAY_MS // STEP_MS[row.interval]
    ranges: dict[str, list[str]] = {}
    for symbol in bench_symbols(row.symbols):
        held = {t: candles[t].get(symbol) for t in tools}
        missing = [t for t, c in held.items() if c is None or len(c[0]) == 0]
        if missing:
            problems.append(f"{symbol}: no candles from {', '.join(missing)}")
            continue
        lo = max(int(c[0][0]) for c in held.values())
        hi = min(int(c[0][-1]) for c in held.values())
        cut = {t: (c[0][(c[0] >= lo) & (c[0] <= hi)], c[1][(c[0] >= lo) & (c[0] <= hi)]) for t, c in held.items()}
        first, (t0, v0) = tools[0], cut[tools[0]]
        for tool in tools[1:]:
            t1, v1 = cut[tool]
            if not (np.array_equal(t0, t1) and np.array_equal(v0, v1)):
                problems.append(f"{symbol}: {tool} differs from {first} in [{_iso(lo)}, {_iso(hi)}]")
        if len(t0) < wanted - 2:  # freqtrade drops the newest; a cycle's window may move by one
            problems.append(f"{symbol}: the tools hold only {len(t0)} common candles of {wanted}")
        common += len(t0)
        if not ranges:
            ranges = {t: [_iso(int(c[0][0])), _iso(int(c[0][-1])), str(len(c[0]))] for t, c in held.items()}
    return {
        "equal": not problems,
        "tools": tools,
        "common_candles": common,
        "first_symbol_ranges": ranges,  # tool -> [first open, last open, candles]
        "problems": problems[:10],
    }


# -- the run -------------------------------------------------------------------------
def cell(r: dict[str, Any] | None) -> str:
    if r is None:
        return "—"
    if r.get("skipped"):
        return f"— ({r['skipped']})"
    text = f"{r['wall_s']:.1f} s"
    if r["http_429"]:
        text += f", {r['http_429']} × 429"
    return text + ("" if r["exit_code"] == 0 else f" (exit {r['exit_code']})")


def render(results: dict[str, dict[str, Any]], tools: list[str], latency: float) -> tuple[str, str]:
    """The markdown table of the figures and the note under it (conditions, checks, machine load)."""
    md_rows = [[results[k]["row"]["title"], *(cell(results[k]["runs"].get(t)) for t in tools)] for k in results]
    md = table(["work", *(TITLES[t] for t in tools)], md_rows)
    checks = "; ".join(
        f"{k}: {'equal' if r['check']['equal'] else 'NOT EQUAL'} over {r['check']['common_candles']:,} candles"
        for k, r in results.items()
    )
    loads = [f["load_1min_before"] for r in results.values() for f in r["runs"].values() if "load_1min_before" in f]
    load = f", 1-minute load average {min(loads):.1f}-{max(loads):.1f} before the runs" if loads else ""
    note = (
        f"Whole processes, {latency * 1000:.0f} ms latency, 6,000 weight per sliding minute, "
        f"one run per tool; 0 answers 429 unless shown. Candles checked equal ({checks}) over the range "
        "every tool holds (freqtrade drops the newest candle). Machine: "
        f"{os.cpu_count()} cores shared with other work{load}."
    )
    return md, note


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run, about 1 minute)")
    parser.add_argument("--rows", default="cycle,backfill,long", help="which rows (default: all three)")
    parser.add_argument("--tools", default=",".join(TOOLS), help="which tools (default: all five)")
    parser.add_argument("--latency", type=float, default=0.15)
    parser.add_argument(
        "--venv", type=Path, default=DEFAULT_VENV, help=f"the peers' virtualenv (default {DEFAULT_VENV})"
    )
    args = parser.parse_args(argv)
    tools = [t for t in args.tools.split(",") if t]
    unknown = sorted(set(tools) - set(TOOLS)) + sorted(set(args.rows.split(",")) - {"cycle", "backfill", "long"})
    if unknown:
        parser.error(f"unknown tool or row {', '.join(unknown)}; tools: {', '.join(TOOLS)}; rows: cycle,backfill,long")
    peers = ensure_venv(args.venv) if tools != ["ours"] else {}
    if peers.get("freqtrade_error"):
        print(f"freqtrade is left out: {peers['freqtrade_error']}", flush=True)
    started = time.perf_counter()
    rows = rows_for(args.quick)
    results: dict[str, dict[str, Any]] = {}
    for key in args.rows.split(","):
        row = rows[key]
        results[key] = {"row": row.__dict__, "runs": {}}
        candles: dict[str, dict[str, tuple]] = {}
        span = window(row)
        for tool in tools:
            if tool == "freqtrade" and not peers.get("freqtrade"):
                results[key]["runs"][tool] = {"skipped": peers.get("freqtrade_error") or "not installed"}
                continue
            figures, candles[tool] = run_tool(tool, row, span, args.latency, args.venv)
            results[key]["runs"][tool] = figures
            print(f"{key:8} {tool:18} {cell(figures)}, CPU {figures['cpu_s']:.1f} s, {figures['candles']} candles")
        results[key]["check"] = compare(row, candles)
        del candles
        print(f"{key:8} candles equal: {results[key]['check']['equal']} {results[key]['check']['problems'][:3]}")
    md, note = render(results, tools, args.latency)
    print(md)
    print(note)
    ours = {k: r["runs"].get("ours") for k, r in results.items()}
    limited = results.get("backfill", {}).get("runs", {}).get("ccxt-async-limit")
    targets: dict[str, bool | None] = {
        "candles equal": all(r["check"]["equal"] for r in results.values()),
        "ours 0 x 429": all(o["http_429"] == 0 and o["exit_code"] == 0 for o in ours.values() if o),
        "long <= 8 s": ours["long"]["wall_s"] <= 8 if ours.get("long") and not args.quick else None,
        "backfill <= 0.7x ccxt async limiter": (
            ours["backfill"]["wall_s"] <= 0.7 * limited["wall_s"] if ours.get("backfill") and limited else None
        ),
    }
    print("targets: " + ", ".join(f"{k} {verdict(v)}" for k, v in targets.items()))
    figures = {"latency_s": args.latency, "quick": args.quick, "peers": peers, "rows": results}
    figures["total_wall_s"] = time.perf_counter() - started
    path = write_results("bench_peers_quick" if args.quick else "bench_peers", figures, targets=targets)
    path.with_suffix(".md").write_text(md + "\n\n" + note + "\n", encoding="utf-8")
    print(f"results: {path} and {path.with_suffix('.md')} ({figures['total_wall_s']:.0f} s in all)")
    return figures


if __name__ == "__main__":
    main()
