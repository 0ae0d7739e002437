"""Resume journals of REST backfills: completed pages kept on disk until the file is published.

``EXPORT_DIR/.backfill_partial/{SYMBOL}_{INTERVAL}_{START_MS}.journal``: the candles of one series (``SeriesId``) from
one open time on. Its first line names the series and the start; each further line is one page, in the order pages
arrived (parallel pages arrive out of order): the open times [from, to] it holds every candle of, its rows and a
SHA-256 chained on the page before, fsynced before its candles are used. It is read one page at a time and trusted in
nothing: another series' header (or an older journal version) discards it (logged); at a torn, damaged or refused
(``cut``) page it is cut and the rest fetched again. Only names of the pattern below are ours; a symbolic link is
never followed, but left alone.
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
import threading
from collections.abc import Iterable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any, BinaryIO

from crypto_data_export.core.candles import SeriesId
from crypto_data_export.core.errors import StorageError
from crypto_data_export.core.text import printable

logger = logging.getLogger(__name__)

JOURNAL_MARKER = "crypto-klines-backfill-journal/3"
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


def _digest(chain: str, span: tuple[int, int], rows_text: bytes) -> str:
    digest = hashlib.sha256(f"{chain}{span[0]}:{span[1]}:".encode())
    digest.update(rows_text)
    return digest.hexdigest()


class PageJournal:
    """The journal of one series from one open time: read page by page, append, cut, remove."""

    def __init__(self, folder: Path, series: SeriesId, start_ms: int) -> None:
        self.folder, self.series, self.start_ms = folder, series, start_ms
        self.path = folder / f"{series.symbol}_{series.interval}_{start_ms}.journal"
        self.writable = True  # False once found to be a symbolic link or not a file: never written
        self._end, self._chain = 0, ""  # after the last page accepted: where the next one goes, its chain
        self._handle: BinaryIO | None = None  # open while ``pages`` reads
        self._lock, self._sync_lock = threading.Lock(), threading.Lock()  # pages arrive on several threads
        self._synced = 0  # the bytes known to be on disk

    def header(self) -> dict[str, Any]:
        return {"marker": JOURNAL_MARKER, **dataclasses.asdict(self.series), "start_ms": self.start_ms}

    def _open(self, flags: int) -> BinaryIO:
        """The journal itself, never through a symbolic link nor waiting on a FIFO (OSError ELOOP)."""
        if self.folder.is_symlink():
            raise OSError(errno.ELOOP, "its folder is a symbolic link")
        if flags & os.O_CREAT:
            self.folder.mkdir(exist_ok=True)
        handle = open(os.open(self.path, flags | os.O_NOFOLLOW | os.O_NONBLOCK, 0o640), "r+b")  # an fd: no truncation
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            handle.close()
            raise OSError(errno.ELOOP, "it is not a regular file")
        return handle

    def pages(self) -> Iterator[tuple[int, int, list[list[Any]], tuple[int, str]]]:
        """(from, to, rows, where: for ``rows_at``) of each whole page, in the order they were kept, one in memory at
        a time. A page is accepted when the next one is asked for; ``cut`` drops the one last given and all after it."""
        try:
            handle = self._open(os.O_RDWR)
        except FileNotFoundError:
            return
        except OSError as exc:
            return self._set_aside(exc)
        with handle:
            self._handle, line = handle, handle.readline(MAX_RECORD_BYTES)
            with suppress(ValueError):
                line = b"" if json.loads(line) == self.header() else line
            if line:
                text = printable(line.decode("utf-8", "replace").strip(), 300)
                return self.discard(f"it is not for {self.series} from {self.start_ms}: its first line is {text}")
            self._end, self._chain = handle.tell(), ""
            while line := handle.readline(MAX_RECORD_BYTES):
                if (page := self._record(line, self._chain)) is None:
                    torn = not line.endswith(b"\n")
                    return self.cut("a torn last record (an interrupted write)" if torn else "a damaged record")
                end = handle.tell()
                yield *page[:3], (self._end, self._chain)
                self._end, self._chain = end, page[3]

    def rows_at(self, where: tuple[int, str]) -> list[list[Any]]:
        """The rows of the page ``pages`` found at ``where``, read and verified again."""
        with self._open(os.O_RDWR) as handle:
            handle.seek(where[0])
            page = self._record(handle.readline(MAX_RECORD_BYTES), where[1])
        if page is None:
            raise StorageError(f"{self.path} changed while in use; run the backfill again")
        return page[2]

    @staticmethod
    def _record(line: bytes, chain: str) -> tuple[int, int, list[list[Any]], str] | None:
        """(from, to, rows, digest) of a whole record chained on ``chain``; None if it is not one."""
        with suppress(ValueError, TypeError, KeyError):
            record = json.loads(line)
            span, rows = (int(record["from"]), int(record["to"])), json.loads(record["rows"])
            digest = _digest(chain, span, record["rows"].encode())
            if line.endswith(b"\n") and record["sha256"] == digest and all(isinstance(r, list) for r in rows):
                return *span, rows, digest
        return None

    def append(self, rows_text: bytes, start_ms: int, last_ms: int) -> None:
        """One page (its rows as ASCII JSON text, kept as given: the exchange's) holding every candle
        opening in [start_ms, last_ms], durable before the caller uses it (one fsync serves every page
        written meanwhile); the header first on a new journal."""
        if not self.writable:
            return
        # The record's JSON by hand (no str copies of a page): in ASCII JSON text only \\ and " need escaping.
        rows = rows_text.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
        try:
            with self._lock:
                digest = _digest(self._chain, (start_ms, last_ms), rows_text)
                record = b'{"sha256":"%s","from":%d,"to":%d,"rows":"%s"}\n' % (digest.encode(), start_ms, last_ms, rows)
                with self._open(os.O_RDWR | os.O_CREAT) as handle:
                    head = b"" if self._end else (json.dumps(self.header()) + "\n").encode()
                    handle.truncate(self._end)  # nothing after the last page accepted (a torn write)
                    handle.seek(self._end)
                    handle.write(head + record)
                    self._end, self._chain, written = handle.tell(), digest, handle.tell()
            with self._sync_lock:
                if self._synced < written:
                    synced = self._end
                    with self._open(os.O_RDWR) as handle:
                        os.fsync(handle.fileno())
                    self._synced = synced
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise StorageError(f"cannot keep a page in {self.path}: {exc.strerror}; check the disk") from exc
            self._set_aside(exc)

    def cut(self, why: str) -> None:
        """Drop the page last given by ``pages`` and every one after it: they are fetched again."""
        logger.warning("%s: %s; the journal is cut there, what followed is fetched again", self.path.name, why)
        assert self._handle is not None, "cut while reading"
        with suppress(OSError):  # else the next append cuts there
            self._handle.truncate(self._end)

    def discard(self, why: str) -> None:
        logger.warning("%s: resume journal not used (%s); its candles are fetched again", self.path.name, why)
        remove_file(self.path)
        self._end, self._chain = 0, ""

    def _set_aside(self, exc: OSError) -> None:
        why = "it is a symbolic link" if exc.errno == errno.ELOOP and exc.filename else exc.strerror or exc
        logger.warning("%s: left alone (%s, never followed); no resume journal is kept in its place", self.path, why)
        self.writable = False


def covering(folder: Path, series: SeriesId, start_ms: int) -> PageJournal:
    """The journal of ``series`` in ``folder`` that starts last at or before ``start_ms`` (a ``--days``
    rerun starts a little later; another range's serves if its pages reach this start); else a new one."""
    names: list[str] = []
    with suppress(OSError):
        names = os.listdir(folder)
    found = [m for m in map(_JOURNAL_NAME.fullmatch, names) if m and m["symbol"] == series.symbol]
    starts = [int(m["start"]) for m in found if m["interval"] == series.interval and int(m["start"]) <= start_ms]
    return PageJournal(folder, series, max(starts, default=start_ms))
