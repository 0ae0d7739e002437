"""The one small interface every file format implements (like freqtrade's ``IDataHandler``).

A format knows how to write a candle frame atomically, read it back, and
judge a file: from its bytes, or fed piece by piece while it streams (so a
scan reads each file once, hashing and validating from the same read).
``write`` judges the bytes it writes with that same streaming checker before
it publishes them, so new data obeys exactly the rules files on disk obey.
Everything else (names, scans, retention, quarantine, duplicates) is the
same for every format and lives outside it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeAlias

from crypto_data_export.store.validation import FileValidation

if TYPE_CHECKING:  # a type only: naming the formats must not import pandas (see store/formats/__init__.py)
    import pandas as pd

# A whole frame, or chunks written one after the other (a long backfill never sits whole).
CandleChunks: TypeAlias = "pd.DataFrame | Iterable[pd.DataFrame]"
# The verdict on a file, and its candle frame when asked for and valid.
Verdict: TypeAlias = "tuple[FileValidation, pd.DataFrame | None]"


# Called with the verdict on the bytes just written, before they are published; raises to refuse them.
Approval = Callable[[FileValidation], None]


class StreamChecker(Protocol):
    """Judges one file fed piece by piece, in bounded memory; ``finish`` returns
    None when only the whole bytes can be judged (the caller then calls
    ``check_bytes`` if the file is small, else takes it for junk, saying
    ``undecided_because``)."""

    undecided_because: str | None

    def feed(self, piece: bytes) -> None: ...

    def finish(self) -> Verdict | None: ...


class FileFormat(ABC):
    """Name, write, read, validate: all a new format has to provide."""

    name: str  # the EXPORT_FORMAT value, e.g. "csv"
    suffix: str  # the file name ending, e.g. ".csv"

    @abstractmethod
    def write(
        self, target: Path, chunks: CandleChunks, interval: str, *, approve: Approval | None = None
    ) -> FileValidation:
        """Write candle chunks to ``target`` atomically, only if valid; return the verdict.

        The bytes are judged as they are written, by this format's own
        checker; ``approve`` (if given) sees the verdict next. Only then is
        the temp file fsynced and renamed. A failure removes the temp file and
        raises (``InvalidDataError`` naming the first bad candle, or what
        ``approve`` raised): nothing appears under ``target``.
        """

    @abstractmethod
    def read(self, path: Path) -> pd.DataFrame:
        """A file of this format as a candle frame (lenient: for tools and tests)."""

    def read_closes(self, path: Path) -> list[float]:
        """The close prices of a file, oldest first (lenient, for pictures such as the status page);
        a format may override this with something cheaper than a whole candle frame."""
        return [float(v) for v in self.read(path)["close"].astype(float).dropna().tolist()]

    @abstractmethod
    def check_bytes(self, data: bytes, interval: str, path: Path, *, want_candles: bool = False) -> Verdict:
        """Judge a whole file's content; never raises on bad content."""

    @abstractmethod
    def stream_checker(self, interval: str, path: Path, *, want_candles: bool = False) -> StreamChecker:
        """A checker for a file too large to hold whole."""

    def validate_many(self, items: Iterable[tuple[bytes, str, Path]]) -> list[FileValidation]:
        """Judge many small files (data, interval, path); a format may share work between them."""
        return [self.check_bytes(data, interval, path)[0] for data, interval, path in items]
