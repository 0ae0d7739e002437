"""What one run of the scheduler did, and the exit code it means."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from crypto_data_export.core.exit_codes import EXIT_FAILED, EXIT_OK
from crypto_data_export.store.cleanup_report import CleanupResult, DuplicateReport, merge_cleanups

if TYPE_CHECKING:  # only a type here: --status and --health must not import pandas and requests for it
    from crypto_data_export.pipeline.export_job import ExportReport


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
    # symbol -> the rule that selected it this cycle ("listed", "quote:USDT", ...)
    selected_by: dict[str, str] = field(default_factory=dict)

    @property
    def files_changed(self) -> CleanupResult | None:
        parts = [self.export.cleanup if self.export is not None else None, self.cleanup]
        if all(part is None for part in parts):
            return None
        return merge_cleanups(parts, dry_run=self.dry_run)

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
        return EXIT_FAILED if failed else EXIT_OK
