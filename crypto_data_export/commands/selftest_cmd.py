"""Installation self-check (the guide's "testing utilities"), one PASS/FAIL line per check:
settings, a writable export folder, the exchange and its clock, one real export that validates.
A tool, not a pytest module."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from crypto_data_export.core.cli import console_command, script_parser
from crypto_data_export.core.errors import ExportError
from crypto_data_export.exchange.client import ExchangeClient
from crypto_data_export.scheduler.self_check import (
    CheckFailed,
    check_exchange,
    check_export,
    check_folder,
    check_settings,
)
from crypto_data_export.settings.settings import SettingsError, load_settings, override

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
EPILOG = """examples:
  python test_scheduled_system.py                      check against BINANCE_BASE_URL (default api.binance.com)
  python test_scheduled_system.py --base-url https://api.binance.us
  python -m crypto_data_export.sandbox --port 8080 &  python test_scheduled_system.py --base-url http://127.0.0.1:8080

exit codes: 0 every check passed, 1 a check failed or was skipped"""


def run_check(name: str, check: Callable[[], str]) -> str:
    try:
        result, detail = PASS, check()
    except (CheckFailed, ExportError) as exc:
        result, detail = FAIL, str(exc)
    print(f"{result} {name}: {detail}", flush=True)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = script_parser(
        "test_scheduled_system.py",
        "Check that this installation can export data: settings, folder, exchange, one real export.",
        EPILOG,
    )
    parser.add_argument("--base-url", help="exchange to check instead of BINANCE_BASE_URL")
    args = parser.parse_args(argv)
    try:
        settings = override(load_settings(), {"BINANCE_BASE_URL": (args.base_url, "--base-url")})
    except SettingsError as exc:
        print(f"FAIL settings: {exc}")
        return 1
    # A self-check must answer fast: few retries, short timeouts.
    settings = replace(
        settings,
        http_retries=min(settings.http_retries, 1),
        http_backoff_seconds=0.2,
        http_timeout_seconds=min(settings.http_timeout_seconds, 10.0),
    )
    client = ExchangeClient.from_settings(settings)
    results = [
        run_check("settings", lambda: check_settings(settings)),
        run_check("export folder", lambda: check_folder(settings)),
        run_check("exchange", lambda: check_exchange(client)),
    ]
    if results[-1] == PASS:
        results.append(run_check("export", lambda: check_export(settings, client)))
    else:
        print(f"{SKIP} export: the exchange is not reachable", flush=True)
        results.append(SKIP)
    print(f"{results.count(PASS)} passed, {results.count(FAIL)} failed, {results.count(SKIP)} skipped")
    return 0 if all(result == PASS for result in results) else 1


run = console_command(main)
