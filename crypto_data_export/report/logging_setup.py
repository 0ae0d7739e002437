"""Log files and console output, configured once by each CLI's ``main``.

Files (10 MB x 5 rotation, UTC timestamps, one line per event):
``EXPORT_DIR/logs/scheduled_data_manager.log`` gets everything;
``EXPORT_DIR/export_log.log`` gets the exporter's events only. The console
stays short: warnings and errors, or everything with ``-v``.

Every message is one line: control characters in it (a foreign command
line, an exchange's error text, a hand-edited state file) are escaped, so a
value can neither colour the terminal nor forge a log line. Only a
traceback, which we add ourselves, spans lines.
"""

from __future__ import annotations

import logging
from pathlib import Path

from crypto_data_export.core.logfiles import FILE_FORMAT, UTCFormatter, rotating_log
from crypto_data_export.core.text import printable
from crypto_data_export.store.layout import ExportFolder

OUR_LOGGERS = ("scheduled_data_manager", "export_historical_data", "file_manager", "data_export_service")

QUIET = logging.CRITICAL + 1  # the console shows no log record; the CLI prints its own summary
MAX_MESSAGE_CHARS = 20_000


class OneLineFormatter(UTCFormatter):
    """Escapes control characters in the message (not in the traceback that follows it)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging API)
        message = record.message
        record.message = printable(message, MAX_MESSAGE_CHARS)
        try:
            return super().formatMessage(record)
        finally:
            record.message = message


def _for_console(record: logging.LogRecord) -> bool:
    """Our warnings and errors; of our INFO records only the scheduler's own (cycle level)."""
    name = record.name.split(".")[0]
    if name not in OUR_LOGGERS:
        return False
    return record.levelno >= logging.WARNING or name == "scheduled_data_manager"


def configure_logging(export_dir: Path | None, level: str = "INFO", *, console_level: int = QUIET) -> None:
    """Set up handlers; ``export_dir=None`` means console only (dry runs, read-only commands).

    The console gets our own records from ``console_level`` up (per-symbol
    INFO lines and urllib3's retry chatter only at DEBUG): one-shot commands
    print a summary instead, the loop shows its cycle events and problems for
    journald, ``-v`` shows everything. The files always get everything.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    numeric = getattr(logging, level, logging.INFO)
    root.setLevel(min(numeric, console_level))
    console = logging.StreamHandler()
    console.setLevel(console_level)
    console.setFormatter(OneLineFormatter("%(levelname)s: %(message)s"))
    if console_level > logging.DEBUG:
        console.addFilter(_for_console)
    root.addHandler(console)
    if export_dir is not None:
        folder = ExportFolder(Path(export_dir))
        logs = folder.logs
        if logs.is_symlink():
            raise OSError(f"{logs} is a symbolic link; logs are only written into a real folder")
        logs.mkdir(parents=True, exist_ok=True)
        root.addHandler(_one_line(rotating_log(folder.manager_log, numeric)))
        exporter = logging.getLogger("export_historical_data")
        for handler in list(exporter.handlers):
            exporter.removeHandler(handler)
        exporter.addHandler(_one_line(rotating_log(folder.export_log, numeric)))
    # urllib3 reports each transport retry; keep them in the file, not on the console.
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def _one_line(handler: logging.Handler) -> logging.Handler:
    handler.setFormatter(OneLineFormatter(FILE_FORMAT))
    return handler
