"""What one export pass and one run of the scheduler did, and the exit code it means."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from crypto_data_export.core.exit_codes import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from crypto_data_export.store.cleanup_report import CleanupResult, DuplicateReport, merge_cleanups
from crypto_data_export.store.validation import FileValidation


@dataclass
class SymbolOutcome:
    """What happened to one symbol in one pass."""

    symbol: str
    ok: bool
    path: str | None = None
    rows: int = 0
    reused_rows: int = 0
    fetched_rows: int = 0
    calls: int = 0
    error: str | None = None
    error_kind: str | None = None
    warning: str | None = None  # written, but something the operator should know (a file not reused)
    seconds: float = 0.0
    # Learnt from the exchange: no candle between these open times (see SymbolExport).
    empty_from_ms: int | None = None
    data_from_ms: int | None = None
    # What this symbol's export removed or quarantined (its prune right after the write,
    # invalid files met on the way); in a dry run, what it would.
    cleanup: CleanupResult | None = field(default=None, repr=False, compare=False)
    # The checker's verdict on the file written (judged byte for byte as it was written).
    verdict: FileValidation | None = field(default=None, repr=False, compare=False)
    # The series (``series_key``): the symbol alone for one spot interval, else with interval/market.
    interval: str | None = None
    market: str | None = None
    key: str = ""


@dataclass
class ExportReport:
    """The pass as a whole: per-series outcomes (keyed by ``series_key``), a ban if one happened, a stop."""

    outcomes: dict[str, SymbolOutcome] = field(default_factory=dict)
    banned_until: datetime | None = None
    stopped: bool = False
    server_time_ms: int | None = None
    seconds: float = 0.0
    dry_run: bool = False
    # Set when the exchange failed before any symbol (host down, wrong URL, banned): one
    # cause for every symbol, reported once rather than once per symbol.
    exchange_error: str | None = None
    # What the pass asked of the exchange: requests, weight spent, 429 and 418 answers.
    calls: int = 0
    weight: int = 0
    rate_limited: int = 0
    banned_answers: int = 0

    @property
    def failed(self) -> list[SymbolOutcome]:
        return [o for o in self.outcomes.values() if not o.ok]

    @property
    def succeeded(self) -> list[SymbolOutcome]:
        return [o for o in self.outcomes.values() if o.ok]

    @property
    def ok(self) -> bool:
        return not self.failed and self.banned_until is None

    @property
    def written(self) -> dict[Path, FileValidation]:
        """The files written (in a dry run: planned) with their verdicts: the closing scan need not read them back."""
        return {Path(o.path): o.verdict for o in self.outcomes.values() if o.ok and o.path and o.verdict is not None}

    @property
    def cleanup(self) -> CleanupResult:
        """What the symbols' exports removed or quarantined (in a dry run: would have)."""
        return merge_cleanups((o.cleanup for o in self.outcomes.values()), dry_run=self.dry_run)

    @property
    def gone(self) -> set[Path]:
        cleanup = self.cleanup
        return {*cleanup.removed, *(path for path, _ in cleanup.quarantined)}


@dataclass
class CycleReport:
    """Everything one run did. ``cleanup`` is the cleanup pass after the export; ``files_changed``
    adds what the export itself removed and quarantined: the run's whole effect on the folder."""

    export: ExportReport | None = None
    cleanup: CleanupResult | None = None
    duplicates: DuplicateReport | None = None
    status: dict[str, Any] = field(default_factory=dict)
    skipped_reason: str | None = None
    dry_run: bool = False
    # The symbol universe could not be resolved, or selected nothing: the run fails (exit 1)
    # even if the listed symbols were exported.
    universe_error: str | None = None
    universe_refused: bool = False  # ... because it breaks EXPORT_MAX_SYMBOLS: exit 2
    # symbol -> the rule that selected it this cycle ("listed", "quote:USDT", ...)
    selected_by: dict[str, str] = field(default_factory=dict)

    @property
    def files_changed(self) -> CleanupResult | None:
        parts = [self.export.cleanup if self.export is not None else None, self.cleanup]
        return None if all(part is None for part in parts) else merge_cleanups(parts, dry_run=self.dry_run)

    @property
    def result(self) -> str:
        """One word for the run: ``ok`` only if every symbol was exported and nothing was quarantined;
        ``partial``: some symbols failed, ``failed``: all did, ``stopped``: a stop request ended it."""
        if self.skipped_reason is not None:
            return "skipped"
        exp = self.export
        if self.universe_error is not None:
            return "partial" if exp is not None and exp.succeeded else "failed"
        if exp is not None and exp.stopped:
            return "stopped"
        if exp is not None and (exp.failed or exp.banned_until is not None):
            return "partial" if exp.succeeded else "failed"
        changed = self.files_changed
        if changed is not None and changed.errors:
            return "partial"
        if changed is not None and changed.quarantined:
            return "quarantined"
        return "ok"

    @property
    def exit_code(self) -> int:
        exp, changed = self.export, self.files_changed
        export_failed = exp is not None and (exp.banned_until is not None or bool(exp.failed) and not exp.stopped)
        # changed.errors: e.g. a corrupt file that could not be quarantined is still there
        unclean = changed is not None and bool(changed.errors)
        failed = export_failed or unclean or self.skipped_reason is not None or self.universe_error is not None
        return EXIT_USAGE if self.universe_refused else EXIT_FAILED if failed else EXIT_OK
