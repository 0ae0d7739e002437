"""Log files and console output, configured once by each CLI's ``main``.

``EXPORT_DIR/logs/scheduled_data_manager.log`` gets everything, ``EXPORT_DIR/export_log.log``
the exporter's events. The handlers sit on the root logger, so urllib3's retries reach the file too.
Every message is one line (control characters escaped: a value can neither colour the terminal
nor forge a log line); only a traceback, which we add ourselves, spans lines."""

from __future__ import annotations

import logging
from pathlib import Path

from crypto_data_export.core.logfiles import FILE_FORMAT, UTCFormatter, rotating_log
from crypto_data_export.core.text import printable
from crypto_data_export.store.layout import ExportFolder

PACKAGE = "crypto_data_export"
# Whose INFO records the console shows (cycle level): the scheduler, the CLIs and the reports.
CONSOLE_INFO = tuple(f"{PACKAGE}.{part}" for part in ("scheduler", "commands", "report"))
# What export_log.log holds: the exporter's events (exchange, export, backfill, resume journals).
EXPORTER = tuple(f"{PACKAGE}.{part}" for part in ("exchange", "pipeline", "backfill", "store.journal"))

QUIET = logging.CRITICAL + 1  # the console shows no log record; the CLI prints its own summary
MAX_MESSAGE_CHARS = 20_000


class OneLineFormatter(UTCFormatter):
    """Escapes control characters in the message (not in the traceback that follows it) and
    names our modules without the package prefix (``exchange.client``)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging API)
        message, name = record.message, record.name
        record.message = printable(message, MAX_MESSAGE_CHARS)
        record.name = name.removeprefix(PACKAGE + ".")
        try:
            return super().formatMessage(record)
        finally:
            record.message, record.name = message, name


def _for_console(record: logging.LogRecord) -> bool:
    """Our warnings and errors; of our INFO records only the cycle-level ones."""
    ours = record.name == PACKAGE or record.name.startswith(PACKAGE + ".")
    return ours and (record.levelno >= logging.WARNING or record.name.startswith(CONSOLE_INFO))


def configure_logging(export_dir: Path | None, level: str = "INFO", *, console_level: int = QUIET) -> None:
    """Set up handlers; ``export_dir=None`` means console only (dry runs, read-only commands). The
    console gets our records from ``console_level`` up (per-symbol INFO lines only at DEBUG): one-shot
    commands print a summary instead, the loop shows its cycle events for journald, ``-v`` everything."""
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
        root.addHandler(rotating_log(folder.manager_log, numeric, OneLineFormatter(FILE_FORMAT)))
        exporter_log = rotating_log(folder.export_log, numeric, OneLineFormatter(FILE_FORMAT))
        exporter_log.addFilter(lambda record: record.name.startswith(EXPORTER))
        root.addHandler(exporter_log)
    # urllib3 reports each transport retry, the Azure SDK each request (az:// datasets): warnings only.
    for noisy in ("urllib3", "azure"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
