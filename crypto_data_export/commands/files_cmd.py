"""``file_manager.py``: validate, find duplicates, clean up, audit the export folder by hand.

The work is done by ``FileManager`` (importable from here), the only code that removes or moves
files in the export folder."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from crypto_data_export.backfill.audit import audit
from crypto_data_export.core.cli import console_command, script_parser
from crypto_data_export.core.clock import ms_to_iso
from crypto_data_export.core.exit_codes import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from crypto_data_export.report.console import exit_code_of, fail, print_cleanup, print_duplicates
from crypto_data_export.report.status_report import export_folder_problem
from crypto_data_export.settings.settings import Settings, SettingsError, load_settings, override
from crypto_data_export.store.files import FileManager
from crypto_data_export.store.freqtrade_export import FREQTRADE_FORMATS, export_freqtrade, export_sources
from crypto_data_export.store.run_lock import RunLock

__all__ = ["FileManager", "main"]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = script_parser(
        "file_manager.py",
        "Validate, deduplicate, clean and audit the export folder (settings from the environment or .env).",
        "examples:\n"
        "  python file_manager.py validate                   every file's verdict and gaps\n"
        "  python file_manager.py duplicates --json          identical files, for a script\n"
        "  python file_manager.py cleanup --dry-run          what cleanup would remove or quarantine\n"
        "  python file_manager.py cleanup --dir /data/klines another export folder\n"
        "  python file_manager.py audit --sample 20          20 stored periods (files) against the exchange\n"
        "  python file_manager.py audit --repair             and replace what the exchange has changed\n"
        "  python file_manager.py export-freqtrade --datadir user_data/data/binance   freqtrade's files\n\n"
        "exit codes: 0 ok (audit: no difference, or all repaired), 1 invalid files, a failed step or (audit)\n"
        "differences not repaired, 2 usage/config error, 75 a run holds the lock",
    )
    commands = ("validate", "duplicates", "cleanup", "audit", "export-freqtrade")
    parser.add_argument("command", choices=commands, help="what to do")
    parser.add_argument("--dir", help="the export folder (default: EXPORT_DIR)")
    parser.add_argument("--dry-run", action="store_true", help="with cleanup: change nothing, show what would happen")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--sample", type=_positive, metavar="N", help="with audit: N stored periods (files) at random")
    parser.add_argument("--seed", type=int, help="with audit --sample: the seed a run printed, to repeat its sample")
    parser.add_argument(
        "--repair",
        action="store_true",
        help="with audit: replace what differs from the exchange's "
        "current candles (REST); the old file goes to quarantine",
    )
    parser.add_argument(
        "--datadir", type=Path, help="with export-freqtrade: freqtrade's data folder (created if missing)"
    )
    parser.add_argument("--format", choices=FREQTRADE_FORMATS, default="feather", help="with export-freqtrade")
    args = parser.parse_args(argv)
    if args.dry_run and args.command != "cleanup":
        parser.error("--dry-run goes with cleanup")
    if args.command != "audit" and (args.sample or args.seed is not None or args.repair):
        parser.error("--sample, --seed and --repair go with audit")
    if args.command == "audit" and (args.json or (args.seed is not None and not args.sample)):
        parser.error("audit prints text only; --seed goes with --sample")
    if (args.datadir is None) == (args.command == "export-freqtrade") or (args.json and args.datadir):
        parser.error("--datadir goes with export-freqtrade, which needs it (and prints no JSON)")
    return args


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def _audit(settings: Settings, args: argparse.Namespace) -> int:
    result = audit(settings, sample=args.sample, seed=args.seed, repair=args.repair, show=print)
    print(result.summary())
    return EXIT_OK if result.ok else EXIT_FAILED


def _export_freqtrade(settings: Settings, datadir: Path, file_format: str) -> int:
    layout, sources = export_sources(settings)
    print(f"{layout} layout of {settings.export_dir} -> {datadir} (each pair/timeframe file is replaced)")
    written = export_freqtrade(sources, datadir, file_format)
    for pair in written:
        name = f"  {pair.series.symbol} {pair.series.interval}"
        if not pair.rows:
            print(f"{name}: no valid candles, nothing written")
            continue
        span = f"{pair.rows} candles, {ms_to_iso(pair.first_ms)} .. {ms_to_iso(pair.last_ms)}"
        print(f"{name}: {'replaced' if pair.replaced else 'wrote'} {pair.path} ({span})")
    if not written:
        print(f"  no series of the {settings.market} market: nothing written")
    return EXIT_OK if written and all(pair.rows for pair in written) else EXIT_FAILED


def _run(files: FileManager, args: argparse.Namespace) -> int:
    if args.command == "validate":  # verdicts only: no "would quarantine" log line repeating each problem
        scan = files.scan()
        verdicts = [scan.validations[f.path] for f in scan.files]
        if args.json:
            print(json.dumps([v.to_dict() for v in verdicts], indent=2))
        elif not verdicts:
            print(f"no export files in {files.export_dir}")
        for verdict in () if args.json else verdicts:
            line = f"{verdict.path.name}: " + ("ok" if verdict.valid else f"INVALID: {verdict.reason}")
            if verdict.valid and verdict.missing_candles:
                line += f" ({verdict.missing_candles} candles missing in {len(verdict.gaps)} gap(s))"
            print(line)
        return EXIT_OK if all(v.valid for v in verdicts) else EXIT_FAILED
    if args.command == "duplicates":
        report = files.find_duplicates()
        if args.json:
            print(json.dumps(report.to_dict(), indent=2))
        else:
            print_duplicates(report)
        return EXIT_OK
    if args.dry_run:
        result = files.cleanup(dry_run=True)
    else:
        files.ensure_folder()
        with RunLock(files.export_dir):
            result = files.cleanup()
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print_cleanup(result, dry_run=args.dry_run)
    return EXIT_FAILED if result.errors else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = override(load_settings(), {"EXPORT_DIR": (args.dir, "--dir")})
    except SettingsError as exc:
        return fail(exc, EXIT_USAGE)
    problem = export_folder_problem(settings.export_dir)
    if problem is not None:  # a typo in --dir must not pass as an empty folder (nor create one)
        return fail(f"{problem}; give the export folder with --dir or EXPORT_DIR", EXIT_USAGE)
    # Results are printed below; the log shows only warnings (stale symbols, unreadable files).
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    if args.command == "audit":
        return exit_code_of(lambda: _audit(settings, args))
    if args.command == "export-freqtrade":
        try:
            return exit_code_of(lambda: _export_freqtrade(settings, args.datadir, args.format))
        except SettingsError as exc:  # a symbol freqtrade cannot name, a --datadir that is a file
            return fail(exc, EXIT_USAGE)
    files = FileManager.from_settings(settings)
    return exit_code_of(lambda: _run(files, args))


run = console_command(main)
