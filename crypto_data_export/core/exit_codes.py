"""Every exit code of every command, and the one function that maps an error to its code.
``--health`` reuses 0, 1 and 2 for healthy, degraded and down."""

from __future__ import annotations

from crypto_data_export.core.errors import ExportError, RunLockedError, StoreSetupError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2  # 1: a symbol, step or service action failed; 2: usage or configuration
EXIT_NOT_RUNNING, EXIT_UNKNOWN = 3, 4  # ``data_export_service.py status`` (LSB): not running, unknown
EXIT_LOCKED = 75  # another run holds the run lock (EX_TEMPFAIL)
EXIT_INTERRUPTED = 128 + 2  # SIGINT
EXIT_BROKEN_PIPE = 128 + 13  # SIGPIPE: the reader of our output went away

# In order: the first class an error is an instance of decides (RunLockedError is an ExportError).
_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (RunLockedError, EXIT_LOCKED),
    (StoreSetupError, EXIT_USAGE),
    (ExportError, EXIT_FAILED),
    (KeyboardInterrupt, EXIT_INTERRUPTED),
    (BrokenPipeError, EXIT_BROKEN_PIPE),
)


def exit_code_for(error: BaseException) -> int | None:
    """The exit code an error ends a command with; None for an error no command expects (a bug)."""
    return next((code for kind, code in _CODES if isinstance(error, kind)), None)
