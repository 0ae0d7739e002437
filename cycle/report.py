"""What one run of the scheduler did, and the exit code it means."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cycle.export_job import ExportReport
from store.reports import CleanupResult, DuplicateReport

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_LOCKED = 0, 1, 2, 75


@dataclass
class CycleReport:
    """Everything one run did, for the CLI summary and the tests."""

    export: ExportReport | None = None
    cleanup: CleanupResult | None = None
    duplicates: DuplicateReport | None = None
    status: dict[str, Any] = field(default_factory=dict)
    skipped_reason: str | None = None
    dry_run: bool = False

    @property
    def exit_code(self) -> int:
        if self.export is not None and not self.export.ok and not self.export.stopped:
            return EXIT_FAILED
        if self.export is not None and self.export.banned_until is not None:
            return EXIT_FAILED
        if self.skipped_reason is not None:
            return EXIT_FAILED
        if self.cleanup is not None and self.cleanup.errors:
            return EXIT_FAILED  # e.g. a corrupt file that could not be quarantined is still there
        return EXIT_OK
