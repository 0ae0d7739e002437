"""Backfill: closed klines over a long look-back into one file per symbol.

    python export_historical_data.py --symbols BTCUSDT,ETHUSDT --days 365 --interval 1h

It runs the same export pass as a scheduler cycle (incremental, atomic,
validated), under the same run lock. ``HistoricalDataExporter``, the guide's
class that turns exchange answers into closed-candle frames, lives in
``exchange.history`` and is importable from here.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from common.cli import run_main
from config.settings import Settings, SettingsError, load_settings, override
from cycle.console import SymbolProgress, exit_code_of
from cycle.export_job import backfill
from cycle.report import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from exchange.history import HistoricalDataExporter

__all__ = ["HistoricalDataExporter", "main"]


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="export_historical_data.py",
        description="Backfill closed klines into one CSV per symbol (atomic writes, resumable).",
        epilog="example: python export_historical_data.py --symbols BTCUSDT,ETHUSDT --days 365 --interval 1h",
    )
    parser.add_argument("--symbols", help="comma list of symbols (default: the configured list)")
    parser.add_argument("--days", help="look-back in days (default: EXPORT_LOOKBACK_DAYS)")
    parser.add_argument("--interval", help="kline interval, e.g. 1m, 1h, 1d (default: KLINE_INTERVAL)")
    parser.add_argument("--output", help="folder for the CSVs (default: EXPORT_DIR)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run the backfill, report; exit 0 ok, 1 a symbol failed, 2 bad input, 75 locked."""
    args = _parse_args(argv)
    try:
        settings = load_settings(symbols_override=args.symbols)
        flags = {
            "KLINE_INTERVAL": (args.interval, "--interval"),
            "EXPORT_DIR": (args.output, "--output"),
            "EXPORT_LOOKBACK_DAYS": (args.days, "--days"),
        }
        settings = override(settings, flags)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # Retries and waits are normal; the console only shows what went wrong for good.
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s: %(message)s")
    return exit_code_of(lambda: _backfill(settings))


def _backfill(settings: Settings) -> int:
    progress = SymbolProgress(len(settings.symbols), enabled=True)
    try:
        report = backfill(settings, on_symbol_done=progress.advance)
    finally:
        progress.close()
    for outcome in report.outcomes.values():
        line = (
            f"{outcome.symbol}: {outcome.rows} rows -> {outcome.path}"
            if outcome.ok
            else f"{outcome.symbol}: FAILED: {outcome.error}"
        )
        print(line, file=sys.stdout if outcome.ok else sys.stderr)
    return EXIT_OK if report.ok else EXIT_FAILED


if __name__ == "__main__":
    run_main(main)
