"""The service's own log, also the scheduler's stdout and stderr: ``start`` rotates it before
launching, appends its events, and shows its tail when the scheduler dies at once."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from crypto_data_export.core.clock import to_iso, utc_now
from crypto_data_export.core.logfiles import LOG_BACKUPS, MAX_LOG_BYTES, NoFollowRotatingFileHandler, open_log_append
from crypto_data_export.core.reading import iter_chunks, open_regular
from crypto_data_export.core.text import printable

LOG_TAIL_LINES = 12
_TAIL_BYTES = 16384  # enough for the last lines of a traceback without reading a large log


class ServiceLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def event(self, message: str) -> None:
        """One line in the log; a log that cannot be written must not fail the command."""
        # One event, one line: a foreign value in the message cannot forge a second one.
        line = f"{to_iso(utc_now())} INFO data_export_service: {printable(message, 2000)}\n"
        with contextlib.suppress(OSError):
            fd = open_log_append(self.path)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)

    def tail(self, lines: int = LOG_TAIL_LINES) -> list[str]:
        try:
            fd, size = open_regular(self.path)
        except OSError:
            return []
        try:
            os.lseek(fd, max(0, size - _TAIL_BYTES), os.SEEK_SET)
            text = b"".join(iter_chunks(fd)).decode(errors="replace")
        except OSError:
            return []
        finally:
            os.close(fd)
        return text.splitlines()[-lines:]

    def rotate(self) -> None:
        """Rotate at start only: the scheduler holds the log as stdout while it runs."""
        with contextlib.suppress(OSError):  # an unrotated log is better than a service that does not start
            if self.path.is_symlink() or not self.path.is_file() or self.path.stat().st_size < MAX_LOG_BYTES:
                return
            NoFollowRotatingFileHandler(self.path, backupCount=LOG_BACKUPS, delay=True).doRollover()
