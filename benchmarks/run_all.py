"""Run the benchmarks, then print one markdown table of the figures and targets.

    python -m benchmarks.run_all [--with-ccxt] [--quick] [--only read_check,baseline,export,limiter,steady,files,...]

Each benchmark runs as its own process (fresh interpreter, fresh sandbox
exchange) and writes ``benchmarks/results/<name>.json``; the combined table is
built from those files and also written to ``benchmarks/results/summary.md``,
ready to paste into docs/performance.md ("The figures").
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from benchmarks._common import RESULTS_DIR, ROOT, machine


def load(name: str) -> dict | None:
    path = RESULTS_DIR / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def mark(ok: bool | None) -> str:
    return "-" if ok is None else ("met" if ok else "**missed**")


def rows_export(r: dict) -> list[list[str]]:
    f, t = r["figures"], r["targets"]
    runs = f["runs"]
    ours, base = runs[0], next(x for x in runs if x["name"] == f["baseline"])
    crowded = next((x for x in runs if x.get("prefilled_files")), None)
    out = [
        [
            f"export {f['symbols']} symbols, {f['latency_s'] * 1000:.0f} ms latency",
            f"{ours['wall_s']:.2f} s, {ours['calls_per_s']:.1f} calls/s, {ours['http_429']} x 429",
            f"{base['name']}: {base['wall_s']:.1f} s, {base['calls_per_s']:.1f} calls/s",
            f"rate bound {f['bound_s']:.1f} s (50 calls/s); latency bound {f.get('latency_bound_s', 0):.1f} s",
            f"{ours['pct_of_bound']:.1f} % of rate bound, {ours.get('pct_of_latency_bound', 0):.0f} % of latency "
            f"bound, {ours['speedup_vs_baseline']:.1f}x baseline",
            ", ".join(mark(t[k]) for k in ("pct_of_bound>=90", "zero_429", "speedup>=4x")),
        ],
    ]
    others = [x for x in runs[1:] if x is not base and not x.get("prefilled_files")]
    for other in others:
        out.append(["", "", f"{other['name']}: {other['wall_s']:.1f} s", "", "", ""])
    if crowded is not None:
        out.append(
            [
                f"same, folder holding {crowded['prefilled_files']} other files",
                f"{crowded['wall_s']:.2f} s, {crowded['calls_per_s']:.1f} calls/s",
                "",
                "",
                f"{crowded['pct_of_bound']:.1f} % of bound",
                mark(t.get("crowded_folder_pct_of_bound>=90")),
            ]
        )
    return out


def rows_limiter(r: dict) -> list[list[str]]:
    f, t = r["figures"], r["targets"]
    within, over = f["within"], f["over"]
    return [
        [
            f"whole --export-only process, {f['symbols']} symbols, {f['latency_s'] * 1000:.0f} ms, sliding 6000/min",
            f"{within['wall_s']:.2f} s (CPU {within.get('cpu_s', 0):.2f} s), {within['http_429']} x 429",
            f"{f['baseline']}: {(f['ccxt'] or f['paced_baseline'])['wall_s']:.1f} s",
            f"latency bound {f['latency_bound_s']:.1f} s ({f['workers']} in flight)",
            f"{f['speedup_vs_baseline']:.1f}x baseline (>= 15x)",
            ", ".join(mark(t[k]) for k in ("speedup>=15x", "within_zero_429")),
        ],
        [
            f"over budget: {f['over_symbols']} symbols, 1200 per sliding {f['over_window_s']} s",
            f"{over['wall_s']:.2f} s, {over['http_429']} x 429, at most {over['max_window_weight']} in a window",
            "",
            f"minimum {f['over_minimum_s']:.2f} s",
            f"{f['over_ratio']:.3f}x minimum (<= 1.15x)",
            ", ".join(mark(t[k]) for k in ("over_ratio<=1.15", "over_zero_429")),
        ],
    ]


def rows_steady(r: dict) -> list[list[str]]:
    f, t = r["figures"], r["targets"]
    two = f["runs"][1]
    return [
        [
            f"steady cycle, {f['symbols']} symbols, 1 new candle",
            f"{two['calls_per_symbol']:.2f} calls/symbol, {two['candles_downloaded']} candles, "
            f"{two['redownloaded_candles']} re-downloaded, limit={two['max_limit_param']}, {two['wall_s']:.1f} s",
            f"first cycle: {f['runs'][0]['candles_downloaded']} candles, {f['runs'][0]['wall_s']:.1f} s",
            "",
            "<= 1 call/symbol, 0 re-downloaded",
            ", ".join(mark(t[k]) for k in ("calls_per_symbol<=1", "zero_redownloaded")),
        ]
    ]


def rows_files(r: dict) -> list[list[str]]:
    f, t = r["figures"], r["targets"]
    d, many, rss = f["duplicate_scan"], f["many_files"], f["peak_rss"]
    cleanup, cycle = many["runs"]["cleanup"], many["runs"]["cycle_maintenance"]
    out = [
        [
            f"duplicate scan, {d['files']} files / {d['total_mb']:.0f} MB",
            f"find_duplicates {d['find_duplicates_mb_s']:.0f} MB/s (hash-only loop {d['hash_only_mb_s']:.0f} MB/s)",
            f"sha256sum {d['sha256sum_mb_s']:.0f} MB/s",
            "",
            f"{d['find_duplicates_mb_s'] / d['sha256sum_mb_s']:.2f}x sha256sum (>= 0.8x)",
            mark(t["dup_scan>=0.8x_sha256sum"]),
        ],
        [
            f"cleanup + validation, {many['files']} files",
            f"{cleanup['wall_s']:.2f} s, {cleanup['files_per_s']:.0f} files/s, "
            f"{cleanup['opens_max_per_file']} open/file",
            "",
            "",
            "one pass",
            mark(t["cleanup_one_pass"]),
        ],
        [
            "cycle maintenance (cleanup, dups, status)",
            f"{cycle['wall_s']:.2f} s, {cycle['files_per_s']:.0f} files/s, {cycle['opens_max_per_file']} opens/file",
            "",
            "",
            "one pass",
            mark(t["cycle_maintenance_one_pass"]),
        ],
    ]
    if rss:
        for key, target in (("50_symbols_1y_1h", "rss_50sym_1h<300MB"), ("1_symbol_1y_1m", "rss_1sym_1m<300MB")):
            x = rss[key]
            out.append(
                [
                    f"backfill peak RSS, {x['symbols']} symbol(s) x 1 y x {x['interval']}",
                    f"{x['peak_rss_mb']:.0f} MB ({x['rows_written']} rows, {x['wall_s']:.1f} s)",
                    "",
                    "",
                    "< 300 MB",
                    mark(t[target]),
                ]
            )
    return out


def rows_idle(r: dict) -> list[list[str]]:
    f, t = r["figures"], r["targets"]
    return [
        [
            "idle scheduler loop",
            f"{f['idle_cpu_pct']:.2f} % CPU over {f['measured_s']:.0f} s",
            "",
            "",
            "< 1 %",
            mark(t["idle_cpu<1%"]),
        ]
    ]


def rows_startup(r: dict) -> list[list[str]]:
    f, t = r["figures"], r["targets"]
    by_name = {c["command"]: c for c in f["processes"]["commands"]}
    floor, pandas = by_name["python -c pass (floor)"]["median_s"], by_name['python -c "import pandas"']["median_s"]
    out = [
        [
            f"start-up, whole process: {name}",
            f"{by_name[name]['median_s']:.2f} s" + (", imports pandas" if by_name[name]["imports_pandas"] else ""),
            f"python -c pass {floor:.2f} s; import pandas {pandas:.2f} s",
            "",
            "no pandas without candles" if not by_name[name]["imports_pandas"] else "",
            mark(t["no_pandas_without_candles"]) if not by_name[name]["imports_pandas"] else "-",
        ]
        for name in ("--health, empty folder", "data_export_service.py status", "--export-only, 1 symbol")
    ]
    after = f.get("after_export")
    if after:
        steps = after["steps_s"]
        page = steps.get("  status.html (closes + render + write)", 0.0)
        out.append(
            [
                f"after the export job, {after['symbols']} symbols (status, page, metrics, state)",
                f"{steps['after the export job']:.2f} s (status.html {page:.3f} s)",
                "",
                "",
                "",
                "-",
            ]
        )
    return out


def rows_read_check(r: dict) -> list[list[str]]:
    f, t = r["figures"], r["targets"]
    read = f["read_check"]
    ours, before = read["ours"], read["baseline_f7f42c8"]
    out = [
        [
            f"read and check a year of 1m ({read['file_rows']} rows, one CSV)",
            f"{ours['wall_s']:.2f} s ({ours['cpu_s']:.2f} s CPU), {ours['rows_per_s_wall'] / 1e6:.2f} M rows/s",
            f"f7f42c8 (before issue 21): {before['wall_s']:.2f} s ({before['cpu_s']:.2f} s CPU)",
            "",
            f"{read['speedup_wall']:.1f}x (>= 3x), >= 1 M rows/s",
            ", ".join(mark(ok) for name, ok in t.items() if not name.startswith("archive")),
        ]
    ]
    archive = f.get("archive_backfill")
    if archive:
        a_ours, a_before = archive["ours"], archive["baseline_f7f42c8"]
        out.append(
            [
                f"archive backfill, 1 symbol x {archive['days']} d x 1m, whole process",
                f"{a_ours['cpu_s']:.2f} s CPU ({a_ours['wall_s']:.1f} s wall)",
                f"f7f42c8: {a_before['cpu_s']:.2f} s CPU ({a_before['wall_s']:.1f} s wall)",
                "",
                "<= 3 s CPU",
                ", ".join(mark(ok) for name, ok in t.items() if name.startswith("archive")),
            ]
        )
    return out


def rows_baseline(r: dict) -> list[list[str]]:
    f, t = r["figures"], r["targets"]
    out = []
    for what, label in (("process", "whole --export-only process"), ("steady", "steady cycle"), ("cleanup", "cleanup")):
        figures = f[what]
        cpu = f" (CPU {figures['ours_cpu_s']:.2f} s)" if "ours_cpu_s" in figures else ""
        before = f" (CPU {figures['baseline_cpu_s']:.2f} s)" if "baseline_cpu_s" in figures else ""
        out.append(
            [
                f"{label}, ours and f7f42c8 in one run (median of {f['repeat']})",
                f"{figures['ours_wall_s']:.2f} s{cpu}",
                f"f7f42c8: {figures['baseline_wall_s']:.2f} s{before}",
                "",
                f"{figures['speedup']:.2f}x (kept or beaten)",
                mark(t[f"{what} <= f7f42c8"]),
            ]
        )
    return out


BENCHES = {
    "read_check": ("bench_read_check", rows_read_check),
    "baseline": ("bench_baseline", rows_baseline),
    "export": ("bench_export", rows_export),
    "limiter": ("bench_limiter", rows_limiter),
    "steady": ("bench_steady", rows_steady),
    "files": ("bench_files", rows_files),
    "idle": ("bench_idle", rows_idle),
    "startup": ("bench_startup", rows_startup),
}


def summary(names: list[str]) -> str:
    header = ["benchmark", "ours", "baseline", "bound", "ratio / target", "target"]
    rows: list[list[str]] = []
    dates = []
    for name in names:
        result = load(BENCHES[name][0])
        if result is None:
            rows.append([name, "no results", "", "", "", ""])
            continue
        dates.append(result["date"])
        rows.extend(BENCHES[name][1](result))
    m = machine()
    lines = [
        f"Measured {max(dates) if dates else '-'} on {m['nproc']} CPU(s) ({m.get('cpu', '?')}), "
        f"Python {m['python']}; `python -m benchmarks.run_all` (figures in benchmarks/results/).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run_all", description=__doc__.split("\n")[0])
    parser.add_argument("--with-ccxt", action="store_true", help="bench_export also runs ccxt (pip-installed to /tmp)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (100 symbols, 2 000 files)")
    parser.add_argument("--only", default=",".join(BENCHES), help="comma list of: " + ", ".join(BENCHES))
    parser.add_argument("--summary-only", action="store_true", help="only print the table of the last results")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    commands = {
        "export": [
            "--symbols",
            "100" if args.quick else "400",
            "--prefill-files",
            "2000" if args.quick else "10000",
            *(["--with-ccxt"] if args.with_ccxt else []),
        ],
        "limiter": [*(["--quick"] if args.quick else []), *(["--with-ccxt"] if args.with_ccxt else [])],
        "steady": ["--symbols", "100" if args.quick else "400"],
        "files": ["--files", "2000"] if args.quick else [],
        "idle": [],
        "startup": ["--cycle-symbols", "100" if args.quick else "400", "--runs", "3" if args.quick else "7"],
        "read_check": ["--repeat", "1" if args.quick else "3"],
        "baseline": ["--repeat", "1", "--symbols", "100", "--files", "2000"] if args.quick else ["--repeat", "3"],
    }
    failed = []
    if not args.summary_only:
        for name in names:
            command = [sys.executable, "-m", f"benchmarks.{BENCHES[name][0]}", *commands[name]]
            print(f"\n=== python {' '.join(command[1:])}", flush=True)
            started = time.perf_counter()
            code = subprocess.call(command, cwd=str(ROOT))
            print(f"=== {name}: exit {code} in {time.perf_counter() - started:.0f} s", flush=True)
            if code != 0:
                failed.append(name)
    text = summary(names)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "summary.md").write_text(text + "\n", encoding="utf-8")
    print("\n" + text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
