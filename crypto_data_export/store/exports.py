"""The export files of a folder: listing them (one directory pass) and ordering them.

"Newest" always means the file whose newest candle is newest, read from its
content (the validation verdict's ``last_open_ms``), never the stamp in its
name or its mtime: a file written while the host clock was ahead must not
outrank every later export.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from crypto_data_export.settings.market_names import SPOT
from crypto_data_export.store.layout import export_name_prefix, parse_export_name
from crypto_data_export.store.listing import FolderNames, folder_entries
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
    """The content order: the newest candle inside; ties go to a file just written
    (``fresh``: a twin with a future name stamp must not make each new export
    delete itself), then to the greater name (a stable order)."""
    return newest_candle_ms(validation), fresh, f.name


def newest_first(
    files: Iterable[ExportFile], validations: Mapping[Path, FileValidation], fresh: Collection[Path] = ()
) -> list[ExportFile]:
    """Newest content first (``content_key``)."""
    return sorted(files, key=lambda f: content_key(f, validations.get(f.path), f.path in fresh), reverse=True)


def latest_per_symbol(
    validations: Iterable[FileValidation], interval: str, market: str = SPOT
) -> dict[str, FileValidation]:
    """Per symbol (files of ``interval`` of ``market``), the verdict on its newest file by content.

    A symbol with no valid file gets its invalid file with the greatest name,
    so that a report shows what is wrong rather than nothing.
    """
    return {
        symbol: verdict
        for (market_, symbol, interval_), verdict in latest_per_series(validations).items()
        if (market_, interval_) == (market, interval)
    }


def latest_per_series(validations: Iterable[FileValidation]) -> dict[tuple[str, str, str], FileValidation]:
    """``latest_per_symbol`` for every series at once, keyed (market, symbol, interval)."""
    latest: dict[tuple[str, str, str], tuple[tuple[int, str], FileValidation]] = {}
    for verdict in validations:
        name = Path(verdict.path).name
        parsed = parse_export_name(name)
        if parsed is None:
            continue
        series = (parsed.market, parsed.symbol, parsed.interval)
        key = (newest_candle_ms(verdict), name)
        if series not in latest or key > latest[series][0]:
            latest[series] = (key, verdict)
    return {series: entry[1] for series, entry in latest.items()}


def scan_exports(
    folder: Path,
    *,
    symbol: str | None = None,
    interval: str | None = None,
    market: str | None = None,
    names: FolderNames | None = None,
) -> list[ExportFile]:
    """Our export files in ``folder``, in one directory pass, oldest first.

    With ``symbol`` (and ``interval``, of ``market``: spot if not given) only that series' names are parsed and
    stat-ed: the cost per symbol stays with its own files in a crowded folder; ``names``: a
    listing of the folder to take them from instead of listing it (see ``crypto_data_export.store.listing``).
    Symlinks are skipped without being followed, whatever they point to.
    """
    found: list[ExportFile] = []
    base = Path(folder)
    prefix = export_name_prefix(symbol, interval, market or SPOT) if symbol is not None else ""
    entries = folder_entries(base, (prefix,), names if prefix else None)
    for entry in entries:
        parsed = parse_export_name(entry.name)
        try:
            if parsed is None or not entry.is_file(follow_symlinks=False):
                continue
        except OSError:
            continue
        symbol_, interval_, created, market_ = parsed
        if (symbol is not None and symbol_ != symbol) or (interval is not None and interval_ != interval):
            continue
        if (market is not None or interval is not None) and market_ != (market or SPOT):
            continue
        try:
            size = entry.stat(follow_symlinks=False).st_size
        except FileNotFoundError:
            continue  # removed by a concurrent prune between the listing and now
        # base / name, not Path(entry.path): only the name is parsed again (~25 % less per file)
        found.append(ExportFile(base / entry.name, symbol_, interval_, created, size, market_))
    found.sort(key=lambda f: (f.created, f.name))
    return found
