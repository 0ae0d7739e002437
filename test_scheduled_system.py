"""Installation self-check: is this machine ready to run the exporter?

The guide's "testing utilities". It checks, in order, and prints one
PASS/FAIL line per check:

1. settings and symbols load (the same validation the scheduler uses);
2. the export folder exists or can be created, and is writable;
3. the exchange answers ``ping`` and ``time``, and the clock skew is small;
4. one symbol exports into a temporary folder and the file validates.

Exit code 0 when every check passes, 1 otherwise (2 for bad arguments).
``--base-url`` points it at any Binance-compatible exchange, e.g. the
sandbox: ``python sandbox_exchange.py --port 8080`` then
``python test_scheduled_system.py --base-url http://127.0.0.1:8080``.
This is a tool, not a pytest module (pytest only collects ``tests/``).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from atomic_io import atomic_write_text
from config.settings import Settings, SettingsError, load_settings
from errors import ExportError
from exchange_client import ExchangeClient
from export_historical_data import build_client
from export_job import ExportJob
from file_manager import FileManager

MAX_SKEW_SECONDS = 5.0


class CheckFailed(Exception):
    """A check's one-line reason for failing."""


def check_settings(settings: Settings) -> str:
    return f"{len(settings.symbols)} symbols, interval {settings.kline_interval}, every {settings.export_period_hours:g} h, host {settings.base_url}"


def check_folder(settings: Settings) -> str:
    folder = settings.export_dir
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-probe-{os.getpid()}"
        atomic_write_text(probe, "ok\n")
        probe.unlink()
    except (OSError, ExportError) as exc:
        raise CheckFailed(f"{folder} is not writable: {exc}; set EXPORT_DIR or fix permissions") from exc
    return f"{folder.resolve()} is writable"


def check_exchange(client: ExchangeClient) -> str:
    client.ping()
    before = time.time()
    server_ms = client.server_time_ms()
    local = (before + time.time()) / 2
    skew = server_ms / 1000 - local
    if abs(skew) > MAX_SKEW_SECONDS:
        raise CheckFailed(f"clock skew {skew:+.1f} s against the exchange (limit {MAX_SKEW_SECONDS:g} s); "
                          "closed candles follow the exchange's clock, but fix NTP on this machine")
    return f"{client.base_url} answers; clock skew {skew:+.2f} s"


def check_export(settings: Settings, client: ExchangeClient) -> str:
    symbol = settings.symbols[0]
    with tempfile.TemporaryDirectory(prefix="crypto-selfcheck-") as tmp:
        trial = replace(settings, export_dir=Path(tmp), symbols=(symbol,))
        files = FileManager(trial.export_dir, trial.kline_interval, trial.symbols)
        report = ExportJob(trial, files, client).run([symbol])
        outcome = report.outcomes[symbol]
        if not outcome.ok or outcome.path is None:
            raise CheckFailed(f"{symbol}: {outcome.error}")
        validation = files.validate_file(Path(outcome.path))
        if not validation.valid:
            raise CheckFailed(f"{symbol}: the exported file is invalid: {validation.reason}")
    return f"{symbol}: {outcome.rows} closed candles exported and valid ({outcome.calls} calls)"


def run_check(name: str, check: Callable[[], str]) -> bool:
    try:
        detail = check()
    except (CheckFailed, ExportError) as exc:
        print(f"FAIL {name}: {exc}", flush=True)
        return False
    print(f"PASS {name}: {detail}", flush=True)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check that this installation can export data.")
    parser.add_argument("--base-url", help="exchange to check instead of BINANCE_BASE_URL")
    args = parser.parse_args(argv)
    environ = dict(os.environ)
    if args.base_url:
        environ["BINANCE_BASE_URL"] = args.base_url
    try:
        settings = load_settings(environ)
    except SettingsError as exc:
        print(f"FAIL settings: {exc}")
        return 1
    # A self-check must answer fast: few retries, short timeouts.
    settings = replace(settings, http_retries=min(settings.http_retries, 1), http_backoff_seconds=0.2,
                       http_timeout_seconds=min(settings.http_timeout_seconds, 10.0))
    client = build_client(settings)
    results = [
        run_check("settings", lambda: check_settings(settings)),
        run_check("export folder", lambda: check_folder(settings)),
        run_check("exchange", lambda: check_exchange(client)),
    ]
    if results[-1]:
        results.append(run_check("export", lambda: check_export(settings, client)))
    else:
        print("SKIP export: the exchange is not reachable")
        results.append(False)
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
