"""Backfill: closed klines over a long look-back (or ``--start``/``--end``) into one file per symbol.

The same export pass as a scheduler cycle, under the same run lock; ``--help`` gives examples, the
sources, the range rules and the exit codes. The guide's ``HistoricalDataExporter`` is importable from here."""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
import threading
from collections.abc import Sequence
from contextlib import closing
from dataclasses import replace
from pathlib import Path

from crypto_data_export.backfill.archive_backfill import SOURCES, ArchiveBackfillResult, archive_backfill
from crypto_data_export.backfill.backfill_range import (
    BackfillRange,
    days_in_force,
    placeholder_days,
    require_a_candle,
    resolve_range,
)
from crypto_data_export.backfill.dataset_fill import DatasetFill
from crypto_data_export.core.cli import console_command, return_large_buffers_to_the_os, script_parser
from crypto_data_export.core.clock import utc_now
from crypto_data_export.core.exit_codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from crypto_data_export.core.intervals import DAY_MS, fixed_length_ms
from crypto_data_export.core.text import printable
from crypto_data_export.exchange.history import HistoricalDataExporter
from crypto_data_export.report.console import ArchiveProgress, CandleProgress, exit_code_of, fail
from crypto_data_export.settings.settings import MAX_LOOKBACK_DAYS, Settings, SettingsError, load_settings, override
from crypto_data_export.settings.symbols import shard_of
from crypto_data_export.store.cleanup_report import CleanupResult
from crypto_data_export.store.dataset import Dataset
from crypto_data_export.store.layout import ExportFolder

__all__ = ["HistoricalDataExporter", "main"]


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = script_parser(
        "export_historical_data.py",
        "Backfill closed klines into one CSV per symbol (atomic writes, resumable).",
        "examples:\n"
        "  python export_historical_data.py --symbols BTCUSDT,ETHUSDT --days 365 --interval 1h\n"
        "  python export_historical_data.py --symbols BTCUSDT --days 730 --interval 1m --source archive\n"
        "  python export_historical_data.py --days 30 --source rest     the REST API only\n"
        "  python export_historical_data.py --symbols BTCUSDT --start 2024-01-01 --end 2024-02-01 --interval 1h\n"
        "  python export_historical_data.py --start 2024-03-01T12:00 --interval 1m      from then to now\n"
        "  python export_historical_data.py --end 2024-06-01T00:00:00Z --days 7         7 days before --end\n\n"
        "--start/--end: UTC dates or ISO times (2024-01-01, 2024-01-01T12:00, ...Z, ...+02:00 converted to UTC);\n"
        "the file holds the closed candles that open in [start, end). --end defaults to now (a future --end is\n"
        "cut to now); --end alone counts --days (or EXPORT_LOOKBACK_DAYS) back from it; --start with --days is\n"
        "an error. A range's file replaces and removes no other file in the folder.\n\n"
        "--source auto (default): whole past months and days from the bulk archive (BINANCE_ARCHIVE_URL,\n"
        "each zip verified by its .CHECKSUM), today and anything unpublished or refused from the REST API.\n"
        "--source archive: as auto, but a refused archive file fails the symbol (exit 1).\n\n"
        "EXPORT_LAYOUT=dataset: fills the scheduler's dataset (EXPORT_DIR/dataset, or --output's) with only the\n"
        "periods it lacks, archive first, then REST; a rerun fetches nothing; safe while the scheduler runs.\n"
        "--shard I/N: this run takes share I (0 to N-1) of the symbols, by a hash of each name: N runs with\n"
        "0/N .. N-1/N do every symbol once. With EXPORT_LAYOUT=dataset they may run at once on one folder\n"
        "(each keeps its resume files in backfill/shard-I-of-N); in the CSV layout, give each its --output.\n\n"
        "exit codes: 0 ok, 1 a symbol failed, 2 bad input, 75 a run holds the folder's lock,\n"
        "130 stopped by Ctrl-C or SIGTERM (what was finished is written; the same command resumes).",
    )
    parser.add_argument("--symbols", help="comma list of symbols (default: the configured list)")
    parser.add_argument("--days", help="look-back in days (default: EXPORT_LOOKBACK_DAYS)")
    parser.add_argument("--start", help="first open time, UTC date or ISO time (instead of --days)")
    parser.add_argument("--end", help="end of the range, exclusive (default: now, the last closed candle)")
    parser.add_argument("--interval", help="kline interval, e.g. 1m, 1h, 1d (default: KLINE_INTERVAL)")
    parser.add_argument("--output", help="folder (default: EXPORT_DIR/backfill; dataset layout: EXPORT_DIR)")
    parser.add_argument("--format", help="file format: csv or parquet (default: EXPORT_FORMAT, else csv)")
    parser.add_argument(
        "--source", choices=SOURCES, default="auto", help="auto (archive + REST), archive (strict), rest"
    )
    parser.add_argument("--shard", metavar="I/N", help="take share I (0 <= I < N) of the symbols, e.g. 0/4")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        # The flags replace their variables before the settings are judged as a whole; with --start the
        # look-back is not used, so EXPORT_LOOKBACK_DAYS must not refuse the run (the range decides below).
        unused = args.start is not None and args.days is None
        flags = {
            "KLINE_INTERVAL": (args.interval, "--interval"),
            "EXPORT_LOOKBACK_DAYS": (repr(MAX_LOOKBACK_DAYS), "--start") if unused else (args.days, "--days"),
            "EXPORT_FORMAT": (args.format, "--format"),
        }
        settings = load_settings(symbols_override=args.symbols, flags=flags)
        scheduler_folder = settings.export_dir
        window = resolve_range(args.start, args.end, args.days, days_in_force(settings, args.days), utc_now())
        later = {"EXPORT_DIR": (args.output, "--output")}
        if window is not None:
            # The look-back is not used with an explicit range: judge the interval against the range.
            later["EXPORT_LOOKBACK_DAYS"] = (placeholder_days(window, args.interval, settings), "--start/--end")
        settings = override(settings, later)
        if window is not None:
            require_a_candle(window, settings.kline_interval)
        settings = _backfill_folder(settings, scheduler_folder, args.output)
        shard = None if args.shard is None else _parse_shard(args.shard)
    except SettingsError as exc:
        return fail(exc, EXIT_USAGE)
    workspace = None
    if shard is not None:
        index, count = shard
        symbols = tuple(s for s in settings.symbols if shard_of(s, count) == index)
        nothing = "" if symbols else "; nothing to do"
        print(f"shard {index}/{count}: {len(symbols)} of {len(settings.symbols)} symbols{nothing}")
        if not symbols:
            return EXIT_OK
        settings = replace(settings, symbols=symbols)
        workspace = ExportFolder(settings.export_dir).backfill / f"shard-{index}-of-{count}"
    if window is not None and window.clamped:
        print(f"info: --end is in the future; the backfill ends at the last closed candle ({window.describe()})")
    # Retries and waits are normal; the console only shows what went wrong for good,
    # and which archive file was refused (a checksum that does not match is news).
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s: %(message)s")
    logging.getLogger("crypto_data_export.backfill.archive_backfill").setLevel(logging.WARNING)
    logging.getLogger("crypto_data_export.store.journal").setLevel(logging.WARNING)  # a resume journal not used
    # A series' failure is printed once, by the summary (FAILED); only an unexpected error's traceback is shown too.
    logging.getLogger("crypto_data_export.pipeline.export_job").addFilter(lambda record: record.exc_info is not None)
    return_large_buffers_to_the_os()
    return exit_code_of(lambda: _backfill(settings, args.source, window, workspace))


def _backfill_folder(settings: Settings, scheduler_folder: Path, output: str | None) -> Settings:
    """``--output``, else ``EXPORT_DIR/backfill``; never ``EXPORT_DIR``, whose retention would cut a year to days.
    The dataset layout fills the scheduler's dataset (its retention never cuts one): ``--output``, else EXPORT_DIR."""
    if settings.export_layout == "dataset":
        return settings if output is None else replace(settings, export_dir=Path(output))
    if output is None:
        return replace(settings, export_dir=ExportFolder(scheduler_folder).backfill)
    if Path(output).resolve() == scheduler_folder.resolve():
        raise SettingsError(
            f"--output {output} is EXPORT_DIR, where the next scheduler cycle would cut the backfill down to "
            f"EXPORT_LOOKBACK_DAYS; use another folder (the default is {ExportFolder(scheduler_folder).backfill})"
        )
    return settings


def _parse_shard(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"([0-9]{1,6})/([0-9]{1,6})", text)
    if match is None or int(match[1]) >= int(match[2]):
        raise SettingsError(
            f"--shard {printable(text, 40)!r}: give I/N with 0 <= I < N, e.g. --shard 0/4 (in a Kubernetes "
            "Indexed Job: --shard $(JOB_COMPLETION_INDEX)/N, N its completions)"
        )
    return int(match[1]), int(match[2])


def _backfill(
    settings: Settings, source: str, window: BackfillRange | None = None, workspace: Path | None = None
) -> int:
    stop_event = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda _signum, _frame: stop_event.set())
    length = fixed_length_ms(settings.kline_interval)  # None for months: the bar's total is unknown
    span_ms = settings.lookback_days * DAY_MS if window is None else window.end_ms - window.start_ms
    expected = None if length is None else len(settings.symbols) * int(span_ms // length)
    span = None if window is None else (window.start_ms, window.end_ms)
    dataset = Dataset.from_settings(settings) if settings.export_layout == "dataset" else None  # checked first
    with closing(CandleProgress(expected, len(settings.symbols), enabled=True)) as progress:
        fill = None if dataset is None else DatasetFill(dataset, stop_event, span, progress.candles)
        with closing(ArchiveProgress(enabled=source != "rest")) as downloads:
            result = archive_backfill(
                settings,
                source,
                stop_event=stop_event,
                on_symbol_done=progress.symbol_done,
                progress=downloads,
                on_candles=progress.candles,
                window=span,
                fill=fill,
                workspace=workspace,
            )
    _print_outcomes(result, fill)
    if stop_event.is_set():
        print("stopped on request; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK if result.report.ok else EXIT_FAILED


def _print_outcomes(result: ArchiveBackfillResult, fill: DatasetFill | None = None) -> None:
    for outcome in result.report.outcomes.values():
        cleanup = outcome.cleanup or CleanupResult()
        for path, reason in cleanup.reasons.items():  # whatever the backfill removed or quarantined
            print(f"{outcome.symbol}: {'removed' if path in cleanup.removed else 'quarantined'} {path.name}: {reason}")
        if not outcome.ok:  # a stop that was asked for is no failure
            failed = "" if outcome.error_kind == "stopped" else "FAILED: "
            print(f"{outcome.symbol}: {failed}{outcome.error}", file=sys.stderr)
            continue
        line = f"{outcome.symbol}: {outcome.rows} rows -> {outcome.path}"
        if fill is not None and (periods := fill.tallies.get(outcome.symbol)) is not None:
            line += (
                f" ({periods.periods} periods: {periods.present} present, {periods.archive} from the archive, "
                f"{periods.rest} by REST; {outcome.fetched_rows} candles fetched, {outcome.calls} REST calls)"
            )
        elif (tally := result.tallies.get(outcome.symbol)) is not None:
            line += (
                f" ({tally.archive_rows} from {tally.archive_files} archive files, "
                f"{outcome.fetched_rows - tally.archive_rows} from {outcome.calls} REST calls"
                + (f", {len(tally.refused)} archive files refused" if tally.refused else "")
                + ")"
            )
        print(line)
        if outcome.warning:
            print(f"{outcome.symbol}: warning: {outcome.warning}", file=sys.stderr)


run = console_command(main)
