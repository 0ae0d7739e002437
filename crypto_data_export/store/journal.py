"""Resume journals of REST backfills: completed pages kept on disk until the file is published.

``EXPORT_DIR/.backfill_partial/{SYMBOL}_{INTERVAL}_{START_MS}.journal`` holds the candles
of one series (``core.candles.SeriesId``: exchange host, market, symbol, interval) from one
open time on, page by page, as fetched. The first line names what the journal is for (a
marker, the series, the first open time); each further line is one page with a SHA-256 that
chains on the page before (a page lost, swapped or altered breaks the chain). A page is
appended, flushed and fsynced before its candles are used, so a crash or a Ctrl-C leaves
whole pages plus at most one torn line.

Nothing in a journal is trusted blindly, and it is read one page at a time (bounded memory,
whatever its size): a header of another series or none discards the journal (with a log
line); from a torn or damaged record on, or a page the caller finds bad (``cut``), the journal
is cut off and the rest is fetched again. Only names of the pattern below are ours; a symbolic
link (the journal or its folder) is never followed: it is left alone and the span goes unjournaled.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import logging
import os
import re
import stat
from collections.abc import Iterable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any, BinaryIO

from crypto_data_export.core.candles import SeriesId
from crypto_data_export.core.errors import StorageError
from crypto_data_export.core.text import printable

logger = logging.getLogger(__name__)

JOURNAL_MARKER = "crypto-klines-backfill-journal/2"
MAX_RECORD_BYTES = 16 << 20  # one page (at most 1500 rows of ~400 bytes) as JSON text, with room to spare
_JOURNAL_NAME = re.compile(
    r"^(?P<symbol>[A-Z0-9]{1,20})_(?P<interval>[0-9]{1,2}[smhdwM])_(?P<start>[0-9]{1,15})\.journal$"
)


def remove_file(path: Path) -> None:
    """Unlink ``path``; a failure is logged, never raised (what is left is tried again next run)."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        logger.warning("cannot remove %s: %s", path, exc.strerror or exc)


def release_folder(folder: Path, paths: Iterable[Path]) -> None:
    """Remove ``paths``, then ``folder`` only if that left it empty: other symbols may still be waiting."""
    for path in paths:
        remove_file(path)
    with suppress(OSError):
        folder.rmdir()


def _digest(chain: str, rows_text: str) -> str:
    return hashlib.sha256((chain + rows_text).encode("utf-8")).hexdigest()


class PageJournal:
    """The journal of one series from one open time: read page by page, append, cut, remove."""

    def __init__(self, folder: Path, series: SeriesId, start_ms: int) -> None:
        self.folder, self.series, self.start_ms = folder, series, start_ms
        self.path = folder / f"{series.symbol}_{series.interval}_{start_ms}.journal"
        self.writable = True  # False once found to be a symbolic link or not a file: never written
        self._end, self._chain = 0, ""  # after the last page accepted: where the next one goes, its chain

    def header(self) -> dict[str, Any]:
        return {"marker": JOURNAL_MARKER, **dataclasses.asdict(self.series), "start_ms": self.start_ms}

    def pages(self) -> Iterator[list[list[Any]]]:
        """The rows of each whole page, oldest first, one page in memory at a time. A page is
        accepted when the next one is asked for; ``cut`` drops the one last given and all after it."""
        try:
            if self.folder.is_symlink():
                raise OSError(errno.ELOOP, "its folder is a symbolic link")
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return
        except OSError as exc:
            self._set_aside(exc)
            return
        with open(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                self._set_aside(OSError(errno.ELOOP, "it is not a regular file"))
                return
            yield from self._records(handle)

    def _records(self, handle: BinaryIO) -> Iterator[list[list[Any]]]:
        line = handle.readline(MAX_RECORD_BYTES)
        with suppress(ValueError):
            if json.loads(line) == self.header():
                line = b""
        if line:
            text = printable(line.decode("utf-8", "replace").strip(), 300)
            self.discard(f"it is not for {self.series} from {self.start_ms}: its first line is {text}")
            return
        self._end, self._chain = handle.tell(), ""
        while line := handle.readline(MAX_RECORD_BYTES):
            page = self._record(line)
            if page is None:
                torn = not line.endswith(b"\n")
                self.cut("a torn last record (an interrupted write)" if torn else "a damaged record (JSON or checksum)")
                return
            end = handle.tell()
            yield page[0]
            self._end, self._chain = end, page[1]

    def _record(self, line: bytes) -> tuple[list[list[Any]], str] | None:
        """(rows, digest) of one record line; None if it is not whole or does not chain on the page before."""
        try:
            record = json.loads(line)
            rows_text = record["rows"]
            digest = _digest(self._chain, rows_text)
            if not line.endswith(b"\n") or record.get("sha256") != digest:
                return None
            rows = json.loads(rows_text)
        except (ValueError, TypeError, KeyError):
            return None
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            return None
        return rows, digest

    def append(self, rows: list[list[Any]]) -> None:
        """One page, durable before the caller uses it; the header first on a new journal."""
        if not self.writable:
            return
        rows_text = json.dumps(rows, separators=(",", ":"))
        digest = _digest(self._chain, rows_text)
        record = json.dumps({"sha256": digest, "rows": rows_text}, separators=(",", ":"))
        try:
            if self.folder.is_symlink():
                raise OSError(errno.ELOOP, "its folder is a symbolic link")
            self.folder.mkdir(exist_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
            with os.fdopen(os.open(self.path, flags, 0o640), "wb") as handle:  # an fd: "wb" does not truncate
                if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                    raise OSError(errno.ELOOP, "it is not a regular file")
                head = b"" if self._end else (json.dumps(self.header()) + "\n").encode()
                handle.truncate(self._end)  # nothing after the last page accepted (a torn write)
                handle.seek(self._end)
                handle.write(head + (record + "\n").encode())
                handle.flush()
                os.fsync(handle.fileno())
                self._end, self._chain = handle.tell(), digest
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                self._set_aside(exc)
                return
            raise StorageError(
                f"cannot keep a page in {self.path}: {exc.strerror or exc}; check free space and permissions"
            ) from exc

    def cut(self, why: str) -> None:
        """Drop the page last given by ``pages`` and every one after it: they are fetched again."""
        logger.warning("%s: %s; the journal is cut there, what followed is fetched again", self.path.name, why)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            try:
                os.ftruncate(fd, self._end)
            finally:
                os.close(fd)
        except OSError as exc:
            self.discard(f"cannot be cut ({exc.strerror or exc})")

    def discard(self, why: str) -> None:
        logger.warning("%s: resume journal not used (%s); its candles are fetched again", self.path.name, why)
        remove_file(self.path)
        self._end, self._chain = 0, ""

    def _set_aside(self, exc: OSError) -> None:
        why = "it is a symbolic link" if exc.errno == errno.ELOOP and exc.filename else exc.strerror or exc
        logger.warning("%s: left alone and not used (%s; a journal is never followed)", self.path, why)
        self.writable = False


class PartialFolder:
    """``.backfill_partial/``: the journals of one backfill folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def journal(self, series: SeriesId, start_ms: int) -> PageJournal:
        return PageJournal(self.folder, series, start_ms)

    def covering(self, series: SeriesId, start_ms: int) -> PageJournal:
        """The journal of this series that starts last at or before ``start_ms`` (a ``--days`` rerun
        starts a little later; another range's serves if its pages reach this start); else a new one."""
        try:
            names = os.listdir(self.folder)
        except OSError:
            names = []
        matches = (_JOURNAL_NAME.fullmatch(name) for name in names)
        starts = [
            int(m["start"])
            for m in matches
            if m and (m["symbol"], m["interval"]) == (series.symbol, series.interval) and int(m["start"]) <= start_ms
        ]
        return self.journal(series, max(starts, default=start_ms))
