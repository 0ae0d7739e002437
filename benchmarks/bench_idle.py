"""CPU use of the idle scheduler loop between two cycles.

    python -m benchmarks.bench_idle [--seconds 10] [--symbols 20]

Starts ``python scheduled_data_manager.py`` (the loop) as a subprocess against
a sandbox exchange process with EXPORT_PERIOD_HOURS=1, waits until the first
cycle has written ``status_report.json``, then reads utime+stime of the
process from /proc/<pid>/stat over ``--seconds`` seconds. SIGTERM ends it;
the time it takes to exit cleanly is reported too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time

from benchmarks._common import (
    ROOT,
    SandboxProcess,
    bench_symbols,
    report_and_save,
    stop_process,
    table,
    temp_dir,
)

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (not its children), in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # fields 14 and 15 of proc(5)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_idle", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--symbols", type=int, default=20)
    args = parser.parse_args(argv)
    work = temp_dir("idle")
    export_dir = work / "exports"
    proc = None
    try:
        with SandboxProcess(latency=0.0) as sandbox:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPORT_", "KLINE_", "CRYPTO_"))}
            env.update(
                {
                    "BINANCE_BASE_URL": sandbox.base_url,
                    "EXPORT_DIR": str(export_dir),
                    "EXPORT_SYMBOLS": ",".join(bench_symbols(args.symbols)),
                    "EXPORT_PERIOD_HOURS": "1",
                    "LOG_LEVEL": "WARNING",
                }
            )
            started = time.perf_counter()
            # cwd: an empty folder, so no stray .env is read
            proc = subprocess.Popen(
                [sys.executable, str(ROOT / "scheduled_data_manager.py")],
                cwd=str(work),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            report = export_dir / "status_report.json"
            while not report.exists():
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"scheduler exited with {proc.returncode}: "
                        f"{proc.stderr.read().decode(errors='replace')[-500:] if proc.stderr else ''}"
                    )
                if time.perf_counter() - started > 120:
                    raise RuntimeError("no status_report.json after 120 s")
                time.sleep(0.05)
            first_cycle_s = time.perf_counter() - started
            time.sleep(1.0)  # let the cycle's last steps (log lines, state) finish
            cpu_before, t_before = cpu_seconds(proc.pid), time.perf_counter()
            time.sleep(args.seconds)
            cpu_after, t_after = cpu_seconds(proc.pid), time.perf_counter()
            idle_pct = 100 * (cpu_after - cpu_before) / (t_after - t_before)
            stop_started = time.perf_counter()
            proc.send_signal(signal.SIGTERM)
            try:
                exit_code = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                exit_code = None
            stop_s = time.perf_counter() - stop_started
    finally:
        stop_process(proc)
        shutil.rmtree(work, ignore_errors=True)

    figures = {
        "symbols": args.symbols,
        "first_cycle_s": first_cycle_s,
        "measured_s": t_after - t_before,
        "cpu_s": cpu_after - cpu_before,
        "idle_cpu_pct": idle_pct,
        "clock_tick_s": 1 / TICKS,
        "sigterm_exit_code": exit_code,
        "sigterm_to_exit_s": stop_s,
    }
    print(f"\nbench_idle: scheduler loop (EXPORT_PERIOD_HOURS=1, {args.symbols} symbols) after its first cycle")
    print(
        table(
            ["first cycle s", "idle window s", "CPU s used", "idle CPU %", "SIGTERM -> exit s", "exit code"],
            [[first_cycle_s, t_after - t_before, cpu_after - cpu_before, f"{idle_pct:.2f} %", stop_s, exit_code]],
        )
    )
    targets = {"idle_cpu<1%": idle_pct < 1.0, "clean_exit_on_sigterm": exit_code == 0}
    return report_and_save("bench_idle", figures, targets)


if __name__ == "__main__":
    main()
