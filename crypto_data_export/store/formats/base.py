"""The one small interface every file format implements (like freqtrade's ``IDataHandler``).

A format writes a candle table atomically, reads it back, and judges a file fed piece by
piece (a scan hashes and validates from the same read; ``write`` judges the bytes it writes
with that same checker, so new data obeys the rules files on disk obey). Names, scans,
retention, quarantine and duplicates are the same for every format and live outside it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol, TypeAlias

import numpy as np
import pyarrow as pa

from crypto_data_export.core.candles import SeriesId, empty_candle_frame, open_times, within
from crypto_data_export.core.intervals import is_valid_interval
from crypto_data_export.core.rules import Breach, check_candles, gaps
from crypto_data_export.store.validation import FileValidation

# A whole candle table, or chunks written one after the other (a long backfill never sits whole).
CandleChunks: TypeAlias = pa.Table | Iterable[pa.Table]
# The verdict on a file, and its candles when asked for and valid.
Verdict: TypeAlias = tuple[FileValidation, pa.Table | None]

# Called with the verdict on the bytes just written, before they are published; raises to refuse them.
Approval = Callable[[FileValidation], None]


class StreamChecker(Protocol):
    """Judges one file fed piece by piece (as a scan hashes the same read), in bounded memory."""

    def feed(self, piece: bytes) -> None: ...

    def finish(self) -> Verdict: ...


class CandleBlocks:
    """The rule book over one file's candles, block after block (CSV blocks, Parquet row groups):
    rows, first and last open time, gaps, the first breach, and the candles from ``candles_from`` if given."""

    def __init__(self, interval: str, path: Path, *, candles_from: int | None = None) -> None:
        self.interval, self.path, self.candles_from = interval, path, candles_from
        self.rows = 0
        self.first_open: int | None = None
        self.last_open: int | None = None
        self.gaps: list[tuple[int, int, int]] = []
        self.breach: Breach | None = None
        self.breach_open_ms: int | None = None  # the candle that broke a rule (for a writer's message)
        self.kept: list[pa.Table] | None = None if candles_from is None else []

    def add(self, candles: pa.Table) -> None:
        """Judge the next block (nothing more once a rule is broken or the interval is unknown)."""
        first_row = self.rows + 1
        self.rows += candles.num_rows
        if self.breach is not None or not candles.num_rows or not is_valid_interval(self.interval):
            return
        self.breach = check_candles(candles, self.interval, after_ms=self.last_open, first_row=first_row)
        if self.breach is not None:
            self.breach_open_ms = candles.column("open_time")[self.breach.row - first_row].as_py()
            self.kept = None
            return
        opens: np.ndarray = open_times(candles)
        self.gaps += gaps(opens, self.interval, self.last_open)
        self.first_open = int(opens[0]) if self.first_open is None else self.first_open
        self.last_open = int(opens[-1])
        if self.kept is not None and self.last_open >= (self.candles_from or 0):
            self.kept.append(within(candles, self.candles_from or 0, self.last_open + 1))  # never a whole huge file

    def verdict(self, rows: int | None = None) -> Verdict:
        """The verdict on every block added (``rows``: the file's row count when a breach stopped the reading)."""
        path = self.path
        if not is_valid_interval(self.interval):
            return FileValidation(path, False, f"unknown interval {self.interval!r}", rows=self.rows), None
        if self.breach is not None:
            breach = self.breach
            return FileValidation(path, False, str(breach), rows=rows or self.rows, bad_row=breach.row), None
        if self.rows == 0:
            return FileValidation(path, False, "no candles (header only)"), None
        missing = sum(g[2] for g in self.gaps)
        valid = FileValidation(path, True, None, self.rows, self.first_open, self.last_open, self.gaps, missing)
        return valid, None if self.kept is None else pa.concat_tables(self.kept or [empty_candle_frame()])


class FileFormat(ABC):
    """Name, write, read, validate: all a new format has to provide."""

    name: str  # the EXPORT_FORMAT value, e.g. "csv"
    suffix: str  # the file name ending, e.g. ".csv"

    @abstractmethod
    def write(
        self,
        target: Path,
        chunks: CandleChunks,
        interval: str,
        *,
        approve: Approval | None = None,
        series: SeriesId | None = None,
    ) -> FileValidation:
        """Write candle chunks to ``target`` atomically, only if valid; return the verdict. ``series``: whose
        candles they are, kept in the file if the format has room for it. The bytes are judged by this format's
        checker, then by ``approve`` (if given); only then is the temp file fsynced and renamed. A failure removes
        it and raises (``InvalidDataError`` naming the first bad candle, or what ``approve`` raised)."""

    @abstractmethod
    def read(self, path: Path) -> pa.Table:
        """A file of this format as a candle table (lenient: for tools and tests)."""

    def read_closes(self, path: Path) -> list[float]:
        """The close prices of a file, oldest first (lenient, for pictures such as the status page)."""
        return [float(v) for v in self.read(path).column("close").to_pylist() if v]

    @abstractmethod
    def stream_checker(self, interval: str, path: Path, *, candles_from: int | None = None) -> StreamChecker:
        """The checker of this format's files, fed piece by piece as they are read or written; if the
        file is valid, the verdict holds its candles opening from ``candles_from`` (0: all)."""
