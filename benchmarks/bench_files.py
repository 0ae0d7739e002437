"""Files at scale: duplicate scan vs sha256sum, 10 000-file cleanup + validation, backfill peak RSS.

    python -m benchmarks.bench_files [--dup-files 200] [--dup-mb 1] [--files 10000] [--skip-rss]

1. ``FileManager.find_duplicates()`` (one listing, sizes, a streamed SHA-256
   of the files whose size collides; no parsing) vs ``sha256sum`` over the same files, and a
   hash-only loop of ``hash_regular_file``; each run twice,
   the second (warm cache) is reported.
2. ``FileManager.cleanup()`` (validation, quarantine, retention, duplicates)
   over 10 000 48-row files in one folder, and the scheduler's maintenance
   steps ``ScheduledDataManager.run_cycle(export=False)`` (cleanup, duplicate
   scan, status report) over a fresh copy; every ``os.open``/``open`` of an
   export file is counted to show how many passes each makes.
3. Peak RSS (``wait4`` rusage, taken by a small starter interpreter so that
   this process's own RSS is not charged to the child) of ``python export_historical_data.py``
   for 50 symbols x 1 year of 1h and 1 symbol x 1 year of 1m (525 600 rows),
   against a sandbox exchange process without latency.
"""

from __future__ import annotations

import argparse
import builtins
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
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

HOUR_MS = 3_600_000
MB = 1024 * 1024


# -- making export files quickly ---------------------------------------------------------
def candle_lines(symbol: str, first_open_ms: int, count: int) -> list[str]:
    """CSV lines (no header) of ``count`` 1h candles, exactly as write_candles formats them."""
    import numpy as np

    from crypto_data_export.core.candles import format_utc_ms
    from crypto_data_export.sandbox.fake_exchange import generate_candle

    rows = [generate_candle(symbol, "1h", first_open_ms + i * HOUR_MS) for i in range(count)]
    opens = format_utc_ms(np.array([r[0] for r in rows], dtype="int64"))
    closes = format_utc_ms(np.array([r[6] for r in rows], dtype="int64"))
    return [
        f"{o},{r[1]},{r[2]},{r[3]},{r[4]},{r[5]},{c},{r[7]},{r[8]},{r[9]},{r[10]}\n"
        for o, c, r in zip(opens, closes, rows, strict=True)
    ]


def header() -> str:
    from crypto_data_export.store.formats.csv_format import CSV_HEADER

    return CSV_HEADER + "\n"


def file_name(symbol: str, created: datetime) -> str:
    from crypto_data_export.store.layout import export_file_name

    return export_file_name(symbol, "1h", created)


# -- 1. duplicate scan ---------------------------------------------------------------------
def bench_duplicates(n_files: int, mb: float) -> dict:
    from crypto_data_export.core.reading import hash_regular_file
    from crypto_data_export.store.files import FileManager

    folder = temp_dir("dups")
    try:
        rows_per_file = int(mb * MB / 200)
        n_dups = n_files // 4
        n_unique = n_files - n_dups
        base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        start_ms = (int(base.timestamp() * 1000) // HOUR_MS - rows_per_file - n_unique - 10) * HOUR_MS
        lines = candle_lines("DUPUSDT", start_ms, rows_per_file + n_unique)
        symbols = bench_symbols(n_files)
        paths: list[Path] = []
        for i in range(n_unique):  # unique content: a window sliding one candle per file
            path = folder / file_name(symbols[i], base)
            path.write_text(header() + "".join(lines[i : i + rows_per_file]), encoding="utf-8")
            paths.append(path)
        for j in range(n_dups):  # exact copies under other names
            path = folder / file_name(symbols[n_unique + j], base)
            shutil.copyfile(paths[j * 3 % n_unique], path)
            paths.append(path)
        total = sum(p.stat().st_size for p in paths)
        manager = FileManager(folder, "1h", symbols, max_files_per_symbol=1, data_retention_days=7)

        def ours() -> float:
            started = time.perf_counter()
            report = manager.find_duplicates()
            elapsed = time.perf_counter() - started
            ours.groups = len(report.groups)  # type: ignore[attr-defined]
            return elapsed

        def hash_only() -> float:
            started = time.perf_counter()
            for p in paths:
                hash_regular_file(p)
            return time.perf_counter() - started

        def sha256sum() -> float:
            started = time.perf_counter()
            subprocess.run(["sha256sum", *map(str, paths)], check=True, stdout=subprocess.DEVNULL)
            return time.perf_counter() - started

        timings = {}
        for name, fn in (("sha256sum", sha256sum), ("find_duplicates", ours), ("hash_only", hash_only)):
            fn()  # warm: page cache, imports
            timings[name] = fn()
        hashed = sum(1 for p in paths if sum(q.stat().st_size == p.stat().st_size for q in paths) > 1)
        return {
            "files": len(paths),
            "total_mb": total / MB,
            "duplicate_copies": n_dups,
            "files_hashed_by_find_duplicates": hashed,
            "groups_found": ours.groups,  # type: ignore[attr-defined]
            "sha256sum_s": timings["sha256sum"],
            "find_duplicates_s": timings["find_duplicates"],
            "hash_only_s": timings["hash_only"],
            "sha256sum_mb_s": total / MB / timings["sha256sum"],
            "find_duplicates_mb_s": total / MB / timings["find_duplicates"],
            "hash_only_mb_s": total / MB / timings["hash_only"],
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- 2. cleanup + validation of 10 000 files --------------------------------------------------
class OpenCounter:
    """Counts os.open / open calls on files inside one folder (per path)."""

    def __init__(self, folder: Path) -> None:
        self.prefix = str(folder.resolve()) + os.sep
        self.counts: Counter[str] = Counter()

    def __enter__(self) -> OpenCounter:
        self._os_open, self._open = os.open, builtins.open

        def counted_os_open(path, *args, **kwargs):  # type: ignore[no-untyped-def]
            self._note(path)
            return self._os_open(path, *args, **kwargs)

        def counted_open(file, *args, **kwargs):  # type: ignore[no-untyped-def]
            self._note(file)
            return self._open(file, *args, **kwargs)

        os.open, builtins.open = counted_os_open, counted_open
        return self

    def __exit__(self, *exc: object) -> None:
        os.open, builtins.open = self._os_open, self._open

    def _note(self, path: object) -> None:
        if isinstance(path, (str, os.PathLike)):
            text = os.path.abspath(os.fspath(path))
            if text.startswith(self.prefix) and text.endswith(".csv"):
                self.counts[os.path.basename(text)] += 1


def make_many_files(folder: Path, n_files: int, per_symbol: int = 4, corrupt: int = 20, dups: int = 20) -> list[str]:
    """``n_files`` 48-row 1h exports: n/per_symbol symbols x per_symbol daily files, a few corrupt and duplicated."""
    folder.mkdir(parents=True, exist_ok=True)
    n_symbols = n_files // per_symbol
    symbols = [f"S{i:05d}USDT" for i in range(n_symbols)]
    now = datetime.now(UTC).replace(microsecond=0, second=0)
    first_ms = (int(now.timestamp() * 1000) // HOUR_MS - 48 - per_symbol * 24) * HOUR_MS
    head = header()
    written: list[Path] = []
    for symbol in symbols:
        lines = candle_lines(symbol, first_ms, 48 + (per_symbol - 1) * 24)
        for k in range(per_symbol):  # file k was made k days ago; its window ends k days earlier
            created = now - timedelta(days=k, minutes=1)
            offset = (per_symbol - 1 - k) * 24
            path = folder / file_name(symbol, created)
            with builtins.open(path, "w", encoding="utf-8") as fh:
                fh.write(head + "".join(lines[offset : offset + 48]))
            written.append(path)
    for path in written[1 : corrupt * 7 : 7][:corrupt]:  # truncated mid-row: quarantined by cleanup
        data = path.read_bytes()
        path.write_bytes(data[: len(data) * 2 // 3])
    for i in range(dups):  # an older file that is a copy of the newest one of its symbol
        newest, older = written[i * per_symbol * 5], written[i * per_symbol * 5 + 1]
        shutil.copyfile(newest, older)
    return symbols


def bench_many_files(n_files: int) -> dict:
    from crypto_data_export.scheduler.manager import ScheduledDataManager
    from crypto_data_export.store.files import FileManager

    source = temp_dir("many-src")
    runs: dict[str, dict] = {}
    try:
        t0 = time.perf_counter()
        per_symbol = 4
        symbols = make_many_files(source / "exports", n_files, per_symbol=per_symbol)
        setup_s = time.perf_counter() - t0
        file_count = sum(1 for _ in os.scandir(source / "exports"))

        # a) FileManager.cleanup(): validation + quarantine + retention + duplicates
        folder = source / "cleanup"
        shutil.copytree(source / "exports", folder)
        manager = FileManager(folder, "1h", symbols, max_files_per_symbol=per_symbol, data_retention_days=7)
        with OpenCounter(folder) as opens:
            started = time.perf_counter()
            result = manager.cleanup()
            wall = time.perf_counter() - started
        runs["cleanup"] = {
            **_pass_figures("FileManager.cleanup()", file_count, wall, opens.counts),
            "quarantined": len(result.quarantined),
            "removed": len(result.removed),
            "duplicates_removed": len(result.duplicates_removed),
        }

        # b) the scheduler's maintenance steps: cleanup, duplicate scan, status (validation)
        folder = source / "cycle"
        shutil.copytree(source / "exports", folder)
        settings = make_settings(
            "http://127.0.0.1:9",
            folder,
            symbols,
            MAX_FILES_PER_SYMBOL=str(per_symbol),
            DATA_RETENTION_DAYS="7",
            EXPORT_MAX_SYMBOLS=str(max(len(symbols), 2000)),  # 10 000 files of 2 500 symbols: more than the default
        )
        with OpenCounter(folder) as opens:
            started = time.perf_counter()
            ScheduledDataManager(settings).run_cycle(export=False)
            wall = time.perf_counter() - started
        runs["cycle_maintenance"] = {
            **_pass_figures("ScheduledDataManager.run_cycle(export=False)", file_count, wall, opens.counts),
        }
        return {"files": file_count, "setup_s": setup_s, "runs": runs}
    finally:
        shutil.rmtree(source, ignore_errors=True)


# -- 3. peak RSS of backfills -----------------------------------------------------------------
# The backfill is started by this small interpreter, not by the benchmark itself:
# Linux charges a child's ru_maxrss with the RSS of the process it was forked
# (or vforked) from, up to its exec, so a child of this benchmark process (by
# then holding a few hundred MB) would report at least that much. Started from
# a ~10 MB interpreter, the figure is the backfill's own peak.
_RSS_WRAPPER = """
import os, resource, subprocess, sys
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with open(sys.argv[1], "w") as fh:
    fh.write(f"{usage.ru_maxrss} {floor}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def backfill_rss(base_url: str, symbols: list[str], days: int, interval: str) -> dict:
    out = temp_dir("rss")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPORT_", "KLINE_", "CRYPTO_"))}
    # The archive is a closed loopback port (never the internet): the backfill takes everything from REST.
    env.update({"BINANCE_BASE_URL": base_url, "BINANCE_ARCHIVE_URL": "http://127.0.0.1:9", "LOG_LEVEL": "WARNING"})
    args = [
        sys.executable,
        str(ROOT / "export_historical_data.py"),
        "--symbols",
        ",".join(symbols),
        "--days",
        str(days),
        "--interval",
        interval,
        "--output",
        str(out),
    ]
    try:
        started = time.perf_counter()
        # cwd: an empty folder, so no stray .env is read
        measured = out.parent / f"{out.name}.rss"
        proc = subprocess.Popen(
            [sys.executable, "-c", _RSS_WRAPPER, str(measured), *args],
            cwd=str(out),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _, stderr_bytes = proc.communicate()
        wall = time.perf_counter() - started
        stderr = stderr_bytes.decode(errors="replace")
        maxrss_kb, floor_kb = (int(x) for x in measured.read_text().split())
        measured.unlink()
        rows = 0
        size = 0
        for p in out.iterdir():
            if p.suffix == ".csv":
                size += p.stat().st_size
                with builtins.open(p, "rb") as fh:
                    rows += sum(1 for _ in fh) - 1
        return {
            "symbols": len(symbols),
            "days": days,
            "interval": interval,
            "exit_code": proc.returncode,
            "wall_s": wall,
            "peak_rss_mb": maxrss_kb / 1024,
            "starter_rss_mb": floor_kb / 1024,
            "rows_written": rows,
            "output_mb": size / MB,
            "stderr_tail": stderr.strip()[-300:],
        }
    finally:
        shutil.rmtree(out, ignore_errors=True)


def bench_rss() -> dict:
    with SandboxProcess(latency=0.0) as sandbox:
        hourly = backfill_rss(sandbox.base_url, bench_symbols(50), 365, "1h")
        minute = backfill_rss(sandbox.base_url, ["BTCUSDT"], 365, "1m")
    return {"50_symbols_1y_1h": hourly, "1_symbol_1y_1m": minute}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_files", description=__doc__.split("\n")[0])
    parser.add_argument("--dup-files", type=int, default=200)
    parser.add_argument("--dup-mb", type=float, default=1.0)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--skip-rss", action="store_true")
    args = parser.parse_args(argv)
    quiet_logging()
    import logging

    logging.getLogger("crypto_data_export.store.files").setLevel(logging.ERROR)  # the corrupt files are made on purpose

    dups = bench_duplicates(args.dup_files, args.dup_mb)
    many = bench_many_files(args.files)
    rss = None if args.skip_rss else bench_rss()

    print(
        f"\nbench_files 1: duplicate scan, {dups['files']} files, {dups['total_mb']:.0f} MB "
        f"({dups['duplicate_copies']} copies; {dups['files_hashed_by_find_duplicates']} files share a size), warm cache"
    )
    print(
        table(
            ["contender", "s", "MB/s", "x sha256sum"],
            [
                ["sha256sum (all files)", dups["sha256sum_s"], dups["sha256sum_mb_s"], "1.00x"],
                [
                    "FileManager.find_duplicates() (list, hash size-colliding files only)",
                    dups["find_duplicates_s"],
                    dups["find_duplicates_mb_s"],
                    f"{dups['find_duplicates_mb_s'] / dups['sha256sum_mb_s']:.2f}x",
                ],
                [
                    "hash_regular_file loop (hash only, all files)",
                    dups["hash_only_s"],
                    dups["hash_only_mb_s"],
                    f"{dups['hash_only_mb_s'] / dups['sha256sum_mb_s']:.2f}x",
                ],
            ],
        )
    )
    print(f"\nbench_files 2: {many['files']} files of 48 rows in one folder")
    print(
        table(
            ["operation", "wall s", "files/s", "opens per file (max)", "opens per file (mean)"],
            [
                [r["what"], r["wall_s"], r["files_per_s"], r["opens_max_per_file"], r["opens_mean_per_file"]]
                for r in many["runs"].values()
            ],
        )
    )
    if rss:
        print("\nbench_files 3: peak RSS of export_historical_data.py backfills (sandbox, no latency)")
        print(
            table(
                ["backfill", "rows", "wall s", "peak RSS MB", "exit"],
                [
                    [
                        f"{r['symbols']} symbol(s) x {r['days']} d x {r['interval']}",
                        r["rows_written"],
                        r["wall_s"],
                        r["peak_rss_mb"],
                        r["exit_code"],
                    ]
                    for r in rss.values()
                ],
            )
        )
    ratio = dups["find_duplicates_mb_s"] / dups["sha256sum_mb_s"]
    targets = {
        "dup_scan>=0.8x_sha256sum": ratio >= 0.8,
        "cleanup_one_pass": many["runs"]["cleanup"]["opens_max_per_file"] <= 1,
        "cycle_maintenance_one_pass": many["runs"]["cycle_maintenance"]["opens_max_per_file"] <= 1,
        "rss_50sym_1h<300MB": None if not rss else rss["50_symbols_1y_1h"]["peak_rss_mb"] < 300,
        "rss_1sym_1m<300MB": None if not rss else rss["1_symbol_1y_1m"]["peak_rss_mb"] < 300,
    }
    figures = {"duplicate_scan": dups, "many_files": many, "peak_rss": rss}
    return report_and_save("bench_files", figures, targets)


def _pass_figures(what: str, file_count: int, wall: float, opens: dict[str, int]) -> dict[str, object]:
    """What one pass over the folder cost: time, files per second, opens per file."""
    return {
        "what": what,
        "files": file_count,
        "wall_s": wall,
        "files_per_s": file_count / wall,
        "opens_max_per_file": max(opens.values(), default=0),
        "opens_mean_per_file": sum(opens.values()) / max(1, len(opens)),
        "files_opened": len(opens),
    }


if __name__ == "__main__":
    main()
