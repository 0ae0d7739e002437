"""What the CLIs print: short summaries for people, JSON for tools (the scheduler never prints)."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crypto_data_export.core.errors import ExportError, RunLockedError
from crypto_data_export.core.exit_codes import EXIT_FAILED, EXIT_OK, exit_code_for
from crypto_data_export.core.text import MAX_LINE, printable
from crypto_data_export.pipeline.run_summary import CycleReport
from crypto_data_export.report.status_report import HEALTH_EXIT_CODES
from crypto_data_export.store.cleanup_report import CleanupResult, DuplicateReport

# Kept lazy because a benchmark shows it matters (python -m benchmarks.bench_startup): tqdm loads
# importlib.metadata, ~0.1-0.18 s of --health and --status, which never show a bar.
if TYPE_CHECKING:
    from tqdm import tqdm


def _err(line: str) -> None:
    """One line on stderr: a foreign value in it (an exchange message, a path) is escaped."""
    print(printable(line, MAX_LINE), file=sys.stderr)


def fail(problem: object, code: int = EXIT_FAILED) -> int:
    """``error: <problem>`` as one line on stderr; the exit code the command returns."""
    _err(f"error: {problem}")
    return code


def print_notices(notices: list[str]) -> None:
    """Warnings about our own files (set aside, repaired), once each."""
    for notice in dict.fromkeys(notices):
        _err(f"warning: {notice}")


class _Bar:
    """A tqdm bar only when a person is watching (stderr is a terminal); tqdm is imported only
    then, so a cron run or --status never pays for it."""

    def __init__(self, enabled: bool, **options: Any) -> None:
        self._bar: tqdm[Any] | None = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(leave=False, **options)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class SymbolProgress(_Bar):
    """The export's bar over symbols."""

    def __init__(self, total: int, *, enabled: bool) -> None:
        super().__init__(enabled, total=total, unit="symbol", desc="export")

    def advance(self, _outcome: object = None) -> None:
        if self._bar is not None:
            self._bar.update(1)


class CandleProgress(_Bar):
    """A backfill's bar in candles (reused or fetched, all symbols), with their rate and an ETA."""

    def __init__(self, total: int | None, symbols: int, *, enabled: bool) -> None:
        super().__init__(enabled, total=total, unit="candle", unit_scale=True, desc="backfill")
        self._symbols, self._done = symbols, 0

    def candles(self, count: int) -> None:
        if self._bar is not None:
            self._bar.update(count)

    def symbol_done(self, _outcome: object = None) -> None:
        self._done += 1
        if self._bar is not None:
            self._bar.set_postfix_str(f"{self._done}/{self._symbols} symbols")


class ArchiveProgress(_Bar):
    """A backfill's archive downloads in bytes, with periods done / planned (the fetch threads
    report to it, hence the lock)."""

    def __init__(self, *, enabled: bool) -> None:
        super().__init__(enabled, unit="B", unit_scale=True, unit_divisor=1024, desc="archive", position=1)
        self._lock = threading.Lock()
        self._done = self._planned = 0

    def add_bytes(self, count: int) -> None:
        if self._bar is not None:
            with self._lock:
                self._bar.update(count)

    def count(self, *, planned: int = 0, done: int = 0) -> None:
        """Periods newly planned, periods done."""
        with self._lock:
            self._planned, self._done = self._planned + planned, self._done + done
            if self._bar is not None:
                self._bar.set_postfix_str(f"{self._done}/{self._planned} periods")


def print_cycle(cycle: CycleReport) -> None:
    prefix = "dry run: " if cycle.dry_run else ""
    for problem in (cycle.skipped_reason, cycle.universe_error):
        if problem:
            _err(f"error: {problem}")
    if (exp := cycle.export) is not None:
        fetched = sum(o.fetched_rows for o in exp.succeeded)
        calls = sum(o.calls for o in exp.succeeded)
        # One spot interval: the guide's symbols; else (symbol, interval[, market]) series by their keys.
        series = any(o.key != o.symbol for o in exp.outcomes.values())
        print(
            f"{prefix}export: {len(exp.succeeded)}/{len(exp.outcomes)} {'series' if series else 'symbols'} ok, "
            f"{fetched} new candles in {calls} calls, {exp.seconds:.1f} s"
        )
        if series:
            print("  series: " + ", ".join(exp.outcomes))
        for outcome in exp.succeeded if cycle.dry_run else ():
            print(f"  would write {Path(outcome.path or '').name} ({outcome.reused_rows} candles reused)")
        for outcome in exp.succeeded:
            if outcome.warning:
                _err(f"warning: {outcome.key}: {outcome.warning}")
        if exp.exchange_error is not None:
            _err(f"error: exchange not usable, no symbol exported: {exp.exchange_error}")
        else:
            for outcome in exp.failed:
                if outcome.error_kind != "stopped":
                    _err(f"error: {outcome.key}: {outcome.error}")
        if exp.stopped:
            print("export: stopped on request; finished symbols are saved")
    changed = cycle.files_changed  # the cleanup pass and every per-symbol prune of the export
    if changed is not None and (cycle.cleanup is not None or changed.changed or changed.errors):
        print_cleanup(changed, dry_run=cycle.dry_run)
    if cycle.duplicates is not None and cycle.duplicates.groups:
        print_duplicates(cycle.duplicates)
    if cycle.status and not cycle.dry_run:
        health = cycle.status.get("health", {}).get("status")
        print(f"status: {_stored(cycle.status)}, health {health}, cycle {cycle.result}")


def exit_code_of(action: Callable[[], int]) -> int:
    """Run a CLI's action; a held run lock or an export error becomes one line and its exit code."""
    try:
        return action()
    except ExportError as exc:
        _err(f"{'busy' if isinstance(exc, RunLockedError) else 'error'}: {exc}")
        return exit_code_for(exc) or EXIT_FAILED


def print_cleanup(cleanup: CleanupResult, *, dry_run: bool) -> None:
    print(f"cleanup: {cleanup.summary()}")
    verb = "would remove" if dry_run else "removed"
    for path in cleanup.removed:
        reason = cleanup.reasons.get(path)
        print(f"  {verb} {path}" + (f": {reason}" if reason else ""))
    for path, reason in cleanup.quarantined:
        print(f"  {'would quarantine' if dry_run else 'quarantined'} {path}: {reason}")
    for problem in cleanup.errors:
        _err(f"error: cleanup: {problem}")


def print_duplicates(duplicates: DuplicateReport) -> None:
    print(f"duplicates: {len(duplicates.groups)} groups, {duplicates.wasted_bytes} bytes reclaimable")
    for group in duplicates.groups:
        print("  " + " = ".join(path.name for path in group))


def print_selection(selected_by: dict[str, str], problem: str | None) -> int:
    """``--list-symbols``: one line per symbol with the rule that selected it; 1 if the run would fail."""
    for symbol, rule in selected_by.items():
        print(f"{symbol:<20} {printable(rule)}")
    rules = sorted(set(selected_by.values()))
    print(f"{len(selected_by)} symbols" + (f" ({', '.join(printable(r) for r in rules)})" if rules else ""))
    return EXIT_OK if problem is None else fail(problem)


def print_status(report: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, indent=2))
        return
    system, files, last = report["system_status"], report["file_statistics"], report["last_cycle"]
    # Under cron or a CronJob no scheduler is meant to run: "stopped" would read as a fault.
    service = system["service_status"] if report.get("scheduler_in_use", True) else "none (one-shot runs)"
    print(f"scheduler: {service}   exports: {system['export_count']}   cleanups: {system['cleanup_count']}")
    successful = last["last_successful"] or "never"
    print(f"last cycle: {last['started'] or 'never'} -> {last['result'] or '-'}   last successful: {successful}")
    if report.get("from_last_cycle"):
        print(f"file figures: from the last cycle's checks at {report['validated_at']} (--verify checks them now)")
    if report.get("next_run"):
        print(f"next cycle: {report['next_run']}")
    if report.get("banned_until"):
        print(f"BANNED by the exchange until {report['banned_until']}: no request is sent before then")
    if "dataset" not in report or files["total_files"]:  # the other layout's files are kept: then say so
        print(f"files: {files['total_files']} ({files['total_size_mb']} MB) for {files['symbols_count']} symbols")
    width = max([12, *(len(key) for key in report["symbols"])])
    title = "symbol" if all(key == e.get("symbol", key) for key, e in report["symbols"].items()) else "series"
    # The data's age: hours since the newest closed candle closed (the file may be newer than its data).
    head = f"{title:<{width}} {'rows':>6} {'age h':>7} {'gaps':>5} {'valid':<6} {'selected by':<12}"
    print(f"{head} latest file / problem")
    for symbol, entry in report["symbols"].items():
        age = "-" if entry.get("newest_close_age_hours") is None else f"{entry['newest_close_age_hours']:.1f}"
        problem = printable(entry.get("last_error") or (entry["reason"] if not entry["valid"] else ""))
        valid, rule = str(entry["valid"]).lower(), printable(entry.get("selected_by") or "listed")
        line = f"{symbol:<{width}} {entry['rows']:>6} {age:>7} {entry['missing_candles']:>5} {valid:<6} {rule:<12}"
        print(f"{line} {entry['latest_file'] or '-'} {problem or ''}".rstrip())
    if "dataset" in report:
        print_dataset(report["dataset"])
    print(f"health: {report['health']['status']}")


def _stored(status: dict[str, Any]) -> str:
    """What the cycle keeps: the dataset's series and candles in that layout, else the files."""
    if (dataset := status.get("dataset")) is not None:
        return f"dataset {dataset['series_count']} series, {dataset['present']} candles, {dataset['missing']} missing"
    return f"{status['file_statistics']['total_files']} files"


def print_dataset(dataset: dict[str, Any]) -> None:
    """The dataset's completeness: one line per series, then its first gap ranges if it has any."""
    print(
        f"dataset: {dataset['series_count']} series, {dataset['complete_series']} complete; "
        f"{dataset['present']} of {dataset['expected']} candles present, {dataset['missing']} missing"
    )
    width = max([12, *(len(key) for key in dataset["series"])])
    print(
        f"{'series':<{width}} {'first candle':<25} {'last candle':<25} {'periods':>7} {'present':>9} {'missing':>8} ok"
    )
    for key, entry in dataset["series"].items():
        periods = f"{entry['complete_periods']}/{entry['periods']}"
        first, last = entry["first_candle"] or "-", entry["last_candle"] or "-"
        ok = "yes" if entry["complete"] else "no"
        print(f"{key:<{width}} {first:<25} {last:<25} {periods:>7} {entry['present']:>9} {entry['missing']:>8} {ok}")
        for gap in entry["gaps"][:3]:
            print(f"  missing {gap['first_missing']} .. {gap['last_missing']} ({gap['missing']})")
        if entry["gap_ranges"] > 3:
            print(f"  and {entry['gap_ranges'] - 3} more gap ranges (status_report.json lists {len(entry['gaps'])})")
        for problem in entry["not_counted"]:
            print(f"  not counted: {printable(problem)}")


def print_health(report: dict[str, Any], *, as_json: bool) -> int:
    health = report["health"]
    if as_json:
        print(json.dumps(health, indent=2))
    else:
        for name, check in health["checks"].items():
            print(f"{'PASS' if check['passed'] else 'FAIL'} {name}: {printable(check['reason'], MAX_LINE)}")
        print(f"health: {health['status']}")
    return HEALTH_EXIT_CODES[health["status"]]
