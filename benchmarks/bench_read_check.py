"""Reading and checking a year of 1m candles, and the archive backfill's CPU: ours vs f7f42c8 (issue 21).

    python -m benchmarks.bench_read_check [--baseline PATH] [--repeat 3] [--days 365] [--latency 0.15]
                                          [--skip-archive]

1. **Read and check**: one export CSV holding a year of 1m candles (525 600 rows, ~60 MB,
   written once by our writer: the same bytes the baseline writes) is read and checked
   the way the store reuses a previous file: ``store.scan.check_regular_file(path, "1m",
   candles_from=0)`` (one read, hashed and checked as it streams, candles kept). Each
   tree runs in a fresh interpreter with the tree as cwd: ours, then the baseline worktree
   (the code before issue 21, ``git worktree add --detach /tmp/baseline_f7f42c8 f7f42c8``,
   made here if missing). Best of ``--repeat``, wall and CPU (process time).
   **Targets**: >= 1 M rows/s and >= 3x the baseline.
2. **Archive backfill CPU**: ``export_historical_data.py --symbols BTCUSDT --days 365
   --interval 1m --source archive`` as a whole process, against one sandbox process at
   ``--latency`` whose archive is warmed first (every zip built before the clock starts);
   user+sys CPU of the child from ``wait4``, for both trees, best of ``--repeat``. **Target**: <= 3 s of CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._common import ROOT, SandboxProcess, process_env, report_and_save, table, temp_dir

BASELINE_COMMIT = "f7f42c8"
DEFAULT_BASELINE = Path("/tmp/baseline_f7f42c8")
ROWS = 525_600
MINUTE_MS = 60_000
YEAR_START_MS = 1_704_067_200_000  # 2024-01-01 00:00 UTC

# Run in each tree (cwd = its root): the store's own read-and-check of a previous file.
CHILD = """
import json, sys, time
from pathlib import Path
# By the tree, not by what imports: an editable install finds our package from any cwd.
if Path("crypto_data_export").is_dir():
    from crypto_data_export.store.scan import check_regular_file
else:  # the baseline tree: top-level packages
    from store.scan import check_regular_file
path, repeat = Path(sys.argv[1]), int(sys.argv[2])
runs = []
for _ in range(repeat):
    wall, cpu = time.perf_counter(), time.process_time()
    checked = check_regular_file(path, "1m", candles_from=0)
    runs.append((time.perf_counter() - wall, time.process_time() - cpu))
    assert checked.validation.valid and len(checked.candles) == checked.validation.rows, checked.validation
wall, cpu = min(r[0] for r in runs), min(r[1] for r in runs)
print(json.dumps({"rows": checked.validation.rows, "wall_s": wall, "cpu_s": cpu}))
"""


def ensure_baseline(path: Path) -> Path:
    if not (path / "store" / "scan.py").exists():
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), BASELINE_COMMIT],
            check=True,
            capture_output=True,
        )
    return path


def year_file(folder: Path) -> Path:
    """A year of 1m candles as an export CSV, written by our writer (bytes the baseline writes too)."""
    import numpy as np

    from crypto_data_export.core.candles import candle_frame
    from crypto_data_export.store.formats.csv_format import write_candles

    opens = YEAR_START_MS + np.arange(ROWS, dtype=np.int64) * MINUTE_MS
    base = 40_000 + (np.arange(ROWS) % 5_000)
    text = {
        "open": [f"{b}.12345678" for b in base.tolist()],
        "high": [f"{b + 50}.00000000" for b in base.tolist()],
        "low": [f"{b - 50}.00000000" for b in base.tolist()],
        "close": [f"{b}.87654321" for b in base.tolist()],
    }
    volumes = [f"{v}.00100000" for v in (np.arange(ROWS) % 997).tolist()]
    candles = candle_frame(
        {
            "open_time": opens,
            **text,
            "volume": volumes,
            "close_time": opens + MINUTE_MS - 1,
            "quote_asset_volume": volumes,
            "number_of_trades": np.arange(ROWS) % 1000,
            "taker_buy_base_asset_volume": volumes,
            "taker_buy_quote_asset_volume": volumes,
        }
    )
    path = folder / "BTCUSDT_1m_20250101_000000.csv"
    write_candles(path, candles, "1m")
    return path


def read_check(tree: Path, path: Path, repeat: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(repeat)], cwd=tree, capture_output=True, text=True, check=True
    )
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    figures["rows_per_s_wall"] = figures["rows"] / figures["wall_s"]
    figures["rows_per_s_cpu"] = figures["rows"] / figures["cpu_s"]
    return figures


def warm(base_url: str, days: int) -> None:
    from benchmarks.bench_archive import warm_up

    warm_up(base_url, ["BTCUSDT"], "1m", days)


def backfill_cpu(tree: Path, base_url: str, days: int) -> dict:
    """One whole backfill process; its user+sys CPU from wait4, its wall time and rows."""
    folder = temp_dir("read-check-backfill")
    env = process_env(base_url, folder, ["BTCUSDT"], BINANCE_ARCHIVE_URL=base_url, LOG_LEVEL="WARNING")
    args = [sys.executable, "export_historical_data.py", "--symbols", "BTCUSDT", "--days", str(days)]
    args += ["--interval", "1m", "--source", "archive", "--output", str(folder / "backfill")]
    try:
        started = time.perf_counter()
        proc = subprocess.Popen(args, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        errors = proc.stderr.read().decode()[-500:] if proc.stderr else ""
        files = sorted((folder / "backfill").glob("BTCUSDT_1m_*.csv"))
        rows = sum(1 for _ in files[0].open()) - 1 if files else 0
        return {
            "exit_code": proc.returncode,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "user_s": usage.ru_utime,
            "sys_s": usage.ru_stime,
            "wall_s": wall,
            "rows": rows,
            "stderr_tail": errors if proc.returncode else "",
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_read_check", description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE, help="worktree of f7f42c8 (made if missing)")
    parser.add_argument("--repeat", type=int, default=3, help="read-and-check runs per tree, best kept (3)")
    parser.add_argument("--days", type=int, default=365, help="archive backfill look-back (365)")
    parser.add_argument("--latency", type=float, default=0.15, help="sandbox latency per answer (0.15)")
    parser.add_argument("--skip-archive", action="store_true", help="only the read-and-check figures")
    args = parser.parse_args(argv)
    baseline = ensure_baseline(args.baseline)
    folder = temp_dir("read-check")
    try:
        path = year_file(folder)
        os.sync()  # its write-back would otherwise overlap the reads measured
        ours = read_check(ROOT, path, args.repeat)
        before = read_check(baseline, path, args.repeat)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    figures: dict = {"read_check": {"ours": ours, "baseline_f7f42c8": before, "file_rows": ROWS}}
    figures["read_check"]["speedup_wall"] = before["wall_s"] / ours["wall_s"]
    figures["read_check"]["speedup_cpu"] = before["cpu_s"] / ours["cpu_s"]
    targets = {
        "read_check >= 1 M rows/s (wall)": ours["rows_per_s_wall"] >= 1e6,
        "read_check >= 1 M rows per CPU second": ours["rows_per_s_cpu"] >= 1e6,
        "read_check >= 3x f7f42c8 (wall)": figures["read_check"]["speedup_wall"] >= 3,
        "read_check >= 3x f7f42c8 (CPU)": figures["read_check"]["speedup_cpu"] >= 3,
    }
    rows = [
        ("read+check 1 y of 1m, ours", ours["wall_s"], ours["cpu_s"], ours["rows_per_s_wall"]),
        ("read+check 1 y of 1m, f7f42c8", before["wall_s"], before["cpu_s"], before["rows_per_s_wall"]),
    ]
    if not args.skip_archive:
        with SandboxProcess(latency=args.latency) as sandbox:
            warm(sandbox.base_url, args.days)
            # Best of --repeat, alternating the trees: a first run also compiles the tree's bytecode.
            runs: dict[Path, list[dict]] = {ROOT: [], baseline: []}
            for _ in range(args.repeat):
                for tree, done in runs.items():
                    done.append(backfill_cpu(tree, sandbox.base_url, args.days))
            archive_ours, archive_before = (min(runs[t], key=lambda r: r["cpu_s"]) for t in (ROOT, baseline))
        figures["archive_backfill"] = {"ours": archive_ours, "baseline_f7f42c8": archive_before, "days": args.days}
        targets["archive backfill 1 x 365 d x 1m <= 3 s CPU"] = (
            archive_ours["cpu_s"] <= 3.0 and args.days >= 365 and archive_ours["exit_code"] == 0
        )
        rows += [
            (f"archive backfill {args.days} d x 1m, ours", archive_ours["wall_s"], archive_ours["cpu_s"], ""),
            (f"archive backfill {args.days} d x 1m, f7f42c8", archive_before["wall_s"], archive_before["cpu_s"], ""),
        ]
    print(table(["run", "wall s", "CPU s", "rows/s (wall)"], rows))
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (wall figures wait for CPU)")
    return report_and_save("bench_read_check", figures, targets)


if __name__ == "__main__":
    main()
