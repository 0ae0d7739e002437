"""Log files: 10 MB x 5 rotation, UTC timestamps, never written through a symlink."""

from __future__ import annotations

import io
import logging
import os
import time
from logging.handlers import RotatingFileHandler
from pathlib import Path

MAX_LOG_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 5
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s.%(funcName)s: %(message)s"


class UTCFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 (logging API)
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


def open_log_append(path: str | os.PathLike[str]) -> int:
    """A log file opened for appending, never through a symlink planted at its path (it would
    make us write, as our user, into any file)."""
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)


class NoFollowRotatingFileHandler(RotatingFileHandler):
    """A rotating log that refuses to write through a symlink planted at its path."""

    def _open(self) -> io.TextIOWrapper:
        return open(open_log_append(self.baseFilename), "a", encoding=self.encoding, errors=self.errors)


def rotating_log(path: Path, level: int, formatter: logging.Formatter) -> RotatingFileHandler:
    handler = NoFollowRotatingFileHandler(path, maxBytes=MAX_LOG_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8")
    handler.setLevel(level)
    handler.setFormatter(formatter)
    return handler
