"""The verdict on one export file, whatever its format."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crypto_data_export.core.clock import ms_to_iso

if TYPE_CHECKING:  # a status report reads verdicts without pyarrow
    from crypto_data_export.core.candles import SeriesId


@dataclass
class FileValidation:
    """The verdict on one file, with enough detail to act on or report it."""

    path: Path
    valid: bool
    reason: str | None = None
    rows: int = 0
    first_open_ms: int | None = None
    last_open_ms: int | None = None
    gaps: list[tuple[int, int, int]] = field(default_factory=list)
    missing_candles: int = 0
    # The 1-based data row of ``reason`` when a row broke a rule (None for whole-file problems),
    # so that a writer can name the candle behind it.
    bad_row: int | None = None
    # Whose candles the file says it holds (Parquet's key/value metadata), if it says.
    series: SeriesId | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form for the status report (times as ISO UTC text)."""
        return {
            "path": str(self.path),
            "valid": self.valid,
            "reason": self.reason,
            "rows": self.rows,
            "first_open": ms_to_iso(self.first_open_ms),
            "last_open": ms_to_iso(self.last_open_ms),
            "gaps": gap_entries(self.gaps),
            "missing_candles": self.missing_candles,
        }


def gap_entries(gaps: Iterable[tuple[int, int, int]]) -> list[dict[str, Any]]:
    """Gap ranges (first missing open, last missing open, count) as the status report lists them."""
    return [{"first_missing": ms_to_iso(a), "last_missing": ms_to_iso(b), "missing": count} for a, b, count in gaps]


# The reason of a file a stopped scan did not reach: unknown, so never trusted, moved or removed.
NOT_CHECKED = "not checked: stop requested"


def cannot_read(path: Path, exc: OSError) -> FileValidation:
    return FileValidation(path, False, f"cannot read: {exc.strerror or exc}")
