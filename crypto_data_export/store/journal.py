"""Resume journals of REST backfills: completed pages kept on disk until the file is published.

``EXPORT_DIR/.backfill_partial/{SYMBOL}_{INTERVAL}_{START_MS}.journal`` holds the candles
of one REST span of one symbol, page by page, as fetched. The first line names what the
journal is for (a marker, the symbol, the interval, the span's first open time); each
further line is one page with the SHA-256 of its rows. A page is appended, flushed and
fsynced before its candles are used, so a crash or a Ctrl-C leaves whole pages plus at
most one torn line.

Nothing in a journal is trusted blindly: a foreign or unreadable header, a record whose
checksum does not match, or bad JSON discards the journal (whole, with a log line); the
caller checks the candles themselves again against the window it asks for. Only names of
the pattern below are ours; a symlink is never followed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

from crypto_data_export.core.errors import StorageError

logger = logging.getLogger(__name__)

JOURNAL_MARKER = "crypto-klines-backfill-journal/1"
MAX_JOURNAL_BYTES = 2 << 30  # a year of 1s candles is ~1.5 GiB of rows; more is not ours
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


def _digest(rows_text: str) -> str:
    return hashlib.sha256(rows_text.encode("utf-8")).hexdigest()


class PageJournal:
    """The journal of one (symbol, interval, span start): read, append, remove."""

    def __init__(self, folder: Path, symbol: str, interval: str, start_ms: int) -> None:
        self.folder, self.symbol, self.interval, self.start_ms = folder, symbol, interval, start_ms
        self.path = folder / f"{symbol}_{interval}_{start_ms}.journal"

    def header(self) -> dict[str, Any]:
        return {"marker": JOURNAL_MARKER, "symbol": self.symbol, "interval": self.interval, "start_ms": self.start_ms}

    def load(self) -> list[list[Any]]:
        """The rows of every whole page, oldest first; [] (and the journal removed) when it cannot be trusted."""
        try:
            if self.path.is_symlink() or not self.path.is_file():
                return []
            if self.path.stat().st_size > MAX_JOURNAL_BYTES:
                return self.discard("larger than any journal of ours")
            with open(self.path, encoding="utf-8") as handle:
                lines = handle.read().split("\n")
        except (OSError, UnicodeDecodeError) as exc:
            return self.discard(f"unreadable ({exc})")
        try:
            if json.loads(lines[0]) != self.header():
                return self.discard("written for another symbol, interval or range")
        except ValueError:
            return self.discard("its first line is not a journal header")
        rows: list[list[Any]] = []
        whole = lines[1:-1]  # the text after the last newline is a torn record (or empty)
        if lines[-1]:
            logger.info("%s: dropping a torn last record (an interrupted write)", self.path.name)
        for number, line in enumerate(whole, start=2):
            page = self._record(line)
            if page is None:
                return self.discard(f"record {number} is damaged (bad JSON or checksum)")
            rows.extend(page)
        return rows

    @staticmethod
    def _record(line: str) -> list[list[Any]] | None:
        try:
            record = json.loads(line)
            rows_text = record["rows"]
            if not isinstance(rows_text, str) or record.get("sha256") != _digest(rows_text):
                return None
            rows = json.loads(rows_text)
        except (ValueError, TypeError, KeyError):
            return None
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            return None
        return rows

    def append(self, rows: list[list[Any]]) -> None:
        """One page, durable before the caller uses it; the header first on a new journal."""
        rows_text = json.dumps(rows, separators=(",", ":"))
        record = json.dumps({"sha256": _digest(rows_text), "rows": rows_text}, separators=(",", ":"))
        try:
            if self.folder.is_symlink():
                raise StorageError(f"{self.folder} is a symbolic link; remove it (resume journals need a real folder)")
            self.folder.mkdir(exist_ok=True)
            new = not self.path.exists()
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
            fd = os.open(self.path, flags, 0o640)
            with os.fdopen(fd, "a", encoding="utf-8") as handle:
                if new:
                    handle.write(json.dumps(self.header()) + "\n")
                handle.write(record + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise StorageError(
                f"cannot keep a page in {self.path}: {exc.strerror or exc}; check free space and permissions"
            ) from exc

    def discard(self, why: str) -> list[list[Any]]:
        logger.warning("%s: resume journal not used (%s); its candles are fetched again", self.path.name, why)
        remove_file(self.path)
        return []


class PartialFolder:
    """``.backfill_partial/``: the journals of one backfill folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def journal(self, symbol: str, interval: str, start_ms: int) -> PageJournal:
        return PageJournal(self.folder, symbol, interval, start_ms)

    def covering(self, symbol: str, interval: str, start_ms: int) -> PageJournal:
        """The journal of this span, or of the same symbol and interval starting earlier
        (a ``--days`` rerun starts a little later); a new one if there is none."""
        earlier = [j for j in self._journals(symbol, interval) if j.start_ms <= start_ms]
        if not earlier:
            return self.journal(symbol, interval, start_ms)
        return max(earlier, key=lambda j: j.start_ms)

    def release(self, symbol: str, interval: str) -> None:
        """The symbol's file is published: its journals have served their purpose."""
        release_folder(self.folder, [journal.path for journal in self._journals(symbol, interval)])

    def _journals(self, symbol: str, interval: str) -> Iterator[PageJournal]:
        try:
            names = os.listdir(self.folder)
        except OSError:
            return
        for name in names:
            match = _JOURNAL_NAME.fullmatch(name)
            if match and match["symbol"] == symbol and match["interval"] == interval:
                yield PageJournal(self.folder, symbol, interval, int(match["start"]))
