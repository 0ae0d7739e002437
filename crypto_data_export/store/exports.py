"""The export files of a folder and their order. "Newest" is the file whose newest
candle is newest (its verdict's ``last_open_ms``), never its name stamp or mtime: a file
written while the host clock was ahead must not outrank every later export."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from crypto_data_export.settings.market_names import SPOT
from crypto_data_export.store.layout import parse_export_name
from crypto_data_export.store.validation import FileValidation

# Where a file without a known newest candle (invalid, unread) sorts: before every real one.
NO_CANDLE_MS = -(2**63)


@dataclass(frozen=True)
class ExportFile:
    """One file of ours, as found by a directory scan (never a symlink)."""

    path: Path
    symbol: str
    interval: str
    created: datetime
    size: int
    market: str = SPOT

    @property
    def series(self) -> tuple[str, str, str]:
        """(market, symbol, interval): the files that retention and reuse treat as one history."""
        return self.market, self.symbol, self.interval

    @property
    def name(self) -> str:
        return self.path.name


def newest_candle_ms(validation: FileValidation | None) -> int:
    """Open time of a valid file's newest candle; ``NO_CANDLE_MS`` for anything else."""
    if validation is None or not validation.valid or validation.last_open_ms is None:
        return NO_CANDLE_MS
    return validation.last_open_ms


def content_key(f: ExportFile, validation: FileValidation | None, fresh: bool = False) -> tuple[int, bool, str]:
    """The content order: the newest candle inside; ties go to a file just written (``fresh``: a twin with a future
    name stamp must not make each new export delete itself), then to the greater name (a stable order)."""
    return newest_candle_ms(validation), fresh, f.name


def newest_first(
    files: Iterable[ExportFile], validations: Mapping[Path, FileValidation], fresh: Collection[Path] = ()
) -> list[ExportFile]:
    """Newest content first (``content_key``)."""
    return sorted(files, key=lambda f: content_key(f, validations.get(f.path), f.path in fresh), reverse=True)


def latest_per_series(validations: Iterable[FileValidation]) -> dict[tuple[str, str, str], FileValidation]:
    """Per series (market, symbol, interval), the verdict on its newest file by content; a series
    with no valid file gets its invalid file with the greatest name (a report shows what is wrong)."""
    latest: dict[tuple[str, str, str], tuple[tuple[int, str], FileValidation]] = {}
    for verdict in validations:
        name = Path(verdict.path).name
        parsed, named = parse_export_name(name), verdict.series  # a dataset's period is named by its footer
        if parsed is not None:
            series = (parsed.market, parsed.symbol, parsed.interval)
        elif named is not None:
            series = (named.market, named.symbol, named.interval)
        else:
            continue
        key = (newest_candle_ms(verdict), name)
        if series not in latest or key > latest[series][0]:
            latest[series] = (key, verdict)
    return {series: entry[1] for series, entry in latest.items()}
