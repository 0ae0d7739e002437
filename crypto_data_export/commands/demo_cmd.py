"""An offline tour of the whole system, on the built-in sandbox exchange.

It drives the real CLI as an operator would: a manual cycle, the files and the status
report, a cleanup that finds a duplicate planted on purpose, and a short scheduled run
stopped with SIGTERM. No network is needed."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from crypto_data_export.core.cli import console_command, script_parser
from crypto_data_export.core.clock import utc_now
from crypto_data_export.sandbox.fake_exchange import SandboxConfig, SandboxExchange
from crypto_data_export.settings.settings import MIN_PERIOD_HOURS
from crypto_data_export.store.layout import export_file_name

# The scheduler as a user starts it: the guide's script in a checkout, the installed module otherwise.
CHECKOUT_SCRIPT = Path(__file__).resolve().parents[2] / "scheduled_data_manager.py"
MANAGER = [str(CHECKOUT_SCRIPT)] if CHECKOUT_SCRIPT.is_file() else ["-m", "crypto_data_export.commands.manager_cmd"]


def banner(title: str) -> None:
    print(f"\n=== {title} " + "=" * max(0, 66 - len(title)), flush=True)


# The demo shows the defaults of the guide (CSV files): the user's choices are left out.
UNSET = {"EXPORT_SYMBOLS", "CRYPTO_SYMBOLS", "KLINE_INTERVAL", "EXPORT_LOOKBACK_DAYS", "EXPORT_FORMAT"}
UNSET |= {"MAX_FILES_PER_SYMBOL", "DATA_RETENTION_DAYS"}


def manager_env(base_url: str, out: Path, period_hours: float) -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name not in UNSET} | {
        "BINANCE_BASE_URL": base_url,
        "EXPORT_DIR": str(out),
        "EXPORT_PERIOD_HOURS": f"{period_hours:.6f}",
        "HTTP_TIMEOUT_SECONDS": "5",
        "HTTP_BACKOFF_SECONDS": "0.1",
        "PYTHONUNBUFFERED": "1",
    }


def run_cli(args: Sequence[str], env: dict[str, str], cwd: Path) -> int:
    print(f"$ python scheduled_data_manager.py {' '.join(args)}", flush=True)
    completed = subprocess.run([sys.executable, *MANAGER, *args], env=env, cwd=cwd, timeout=120)
    print(f"(exit code {completed.returncode})", flush=True)
    return completed.returncode


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def scheduled_run(env: dict[str, str], out: Path, cycles: int, timeout: float) -> int:
    print(f"$ python scheduled_data_manager.py   (period {float(env['EXPORT_PERIOD_HOURS']) * 3600:.1f} s)", flush=True)
    before = read_json(out / "state.json")["export_count"]
    process = subprocess.Popen([sys.executable, *MANAGER], env=env, cwd=out)
    deadline = time.monotonic() + timeout
    count = before
    while time.monotonic() < deadline and count < before + cycles:
        time.sleep(0.25)
        with contextlib.suppress(OSError, ValueError, KeyError):
            count = read_json(out / "state.json")["export_count"]
    print(f"  {count - before} scheduled cycles ran; sending SIGTERM", flush=True)
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=30)
    service = read_json(out / "status_report.json")["system_status"]["service_status"]
    print(f"(exit code {code}; status report says service_status={service!r})")
    return code


def period_seconds(text: str) -> float:
    """--period-seconds: what EXPORT_PERIOD_HOURS accepts, up to an hour (argparse says what is wrong)."""
    seconds = float(text)  # ValueError: argparse's "invalid period_seconds value"
    if not MIN_PERIOD_HOURS * 3600 <= seconds <= 3600:
        raise argparse.ArgumentTypeError(f"{text} seconds: expected {MIN_PERIOD_HOURS * 3600:g} to 3600")
    return seconds


def main(argv: Sequence[str] | None = None) -> int:
    parser = script_parser(
        "demo_scheduled_system.py",
        __doc__.split("\n")[0],
        "examples:\n"
        "  python demo_scheduled_system.py                      the tour, in a new temporary folder\n"
        "  python demo_scheduled_system.py --output demo-out   keep the files in ./demo-out\n"
        "  python demo_scheduled_system.py --period-seconds 2  a faster scheduled run\n\n"
        "exit codes: 0 every step worked, 1 a step failed (its output says which)",
    )
    parser.add_argument("--output", help="export folder to use (default: a new temporary folder)")
    parser.add_argument("--period-seconds", type=period_seconds, default=4.0, help="period of the short scheduled run")
    args = parser.parse_args(argv)
    out = Path(args.output).resolve() if args.output else Path(tempfile.mkdtemp(prefix="crypto-demo-"))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        parser.error(f"--output {args.output}: cannot be the export folder ({exc.strerror or exc})")
    started = time.monotonic()
    with SandboxExchange(SandboxConfig(latency_seconds=0.02)) as exchange:
        env = manager_env(exchange.base_url, out, args.period_seconds / 3600)
        banner(f"sandbox exchange on {exchange.base_url}; exports in {out}")
        codes = [run_cli(["--manual"], env, out)]
        if codes[0] != 0:  # nothing to show: its own message says why
            banner(f"demo FAILED: the manual cycle exited {codes[0]}; files are in {out}")
            return 1
        banner("files written (one CSV per symbol, closed candles of the last 2 days)")
        for path in sorted(out.glob("*.csv")):
            rows = len(path.read_text().splitlines()) - 1
            print(f"  {path.name:<40} {path.stat().st_size:>7} bytes {rows:>4} candles")
        banner("status report (the guide's keys)")
        report = read_json(out / "status_report.json")
        guide_keys = ("timestamp", "system_status", "configuration", "file_statistics")
        print(json.dumps({key: report[key] for key in guide_keys}, indent=2))
        with_data = report["system_status"]["symbols_with_data"]
        print(f"  health: {report['health']['status']}; symbols with data: {with_data}")
        banner("cleanup with a duplicate planted on purpose")
        # The newest BTCUSDT file again under an older name: byte-identical content.
        source = sorted(out.glob("BTCUSDT_1h_*.csv"))[-1]
        copy = out / export_file_name("BTCUSDT", "1h", utc_now() - timedelta(hours=1))
        shutil.copyfile(source, copy)
        print(f"  planted {copy.name} (a copy of {source.name})")
        codes.append(run_cli(["--cleanup-only", "--dry-run"], env, out))
        codes.append(run_cli(["--cleanup-only"], env, out))
        banner("a short scheduled run")
        codes.append(scheduled_run(env, out, cycles=2, timeout=30))
        banner("health")
        codes.append(run_cli(["--health"], env, out))
    ok = all(code == 0 for code in codes)
    banner(f"demo {'finished' if ok else 'FAILED'} in {time.monotonic() - started:.1f} s; files are in {out}")
    return 0 if ok else 1


run = console_command(main)
