"""Every exit code of every command, and the one function that maps an error to its code.

    0  ok                                   1  a symbol, step or service action failed
    2  usage or configuration error         3  ``data_export_service.py status``: not running (LSB)
    4  ``status``: unknown (LSB)           75  another run holds the run lock (EX_TEMPFAIL)
  130  interrupted (128 + SIGINT)          141  the reader of our output went away (128 + SIGPIPE)

``--health`` reuses 0, 1 and 2 for healthy, degraded and down.
"""

from __future__ import annotations

from crypto_data_export.core.errors import ExportError, RunLockedError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_NOT_RUNNING, EXIT_UNKNOWN = 3, 4
EXIT_LOCKED = 75
EXIT_INTERRUPTED = 128 + 2
EXIT_BROKEN_PIPE = 128 + 13


def exit_code_for(error: BaseException) -> int | None:
    """The exit code an error ends a command with; None for an error no command expects (a bug)."""
    if isinstance(error, RunLockedError):
        return EXIT_LOCKED
    if isinstance(error, ExportError):
        return EXIT_FAILED
    if isinstance(error, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(error, BrokenPipeError):
        return EXIT_BROKEN_PIPE
    return None
