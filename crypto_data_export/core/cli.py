"""How every root script starts (its parser) and ends: its exit code, and two endings that are not its failures.

* The reader of our output went away (``--status | head -1``): the rest of the output has
  nowhere to go. We stop quietly with 141, the code a process killed by SIGPIPE has, as
  ``head`` users expect from any Unix tool; no traceback.
* Ctrl-C outside a handler of the script's own: one line and 130 (128 + SIGINT). Files are
  written atomically, so an interrupted run leaves the old file or the new one."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import sys
from collections.abc import Callable
from typing import NoReturn

from crypto_data_export.core.exit_codes import EXIT_USAGE, exit_code_for


class _OneLineErrors(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """What is wrong in one line, exit 2 (the usage block would bury it; --help has it)."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def script_parser(prog: str, description: str, epilog: str) -> argparse.ArgumentParser:
    """A root script's parser; its epilog (examples, exit codes) is printed as written."""
    return _OneLineErrors(
        prog=prog, description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def console_command(main: Callable[[], int]) -> Callable[[], NoReturn]:
    """The console command (and ``__main__`` entry) that runs ``main`` and exits with its code."""

    def run() -> NoReturn:
        try:
            code = main()
            sys.stdout.flush()
        except BrokenPipeError as exc:
            # stdout to /dev/null, so that the interpreter's own final flush cannot fail again.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            code = exit_code_for(exc) or 1
        except KeyboardInterrupt as exc:
            print("interrupted: stopped before the end; files already written are whole", file=sys.stderr)
            code = exit_code_for(exc) or 1
        sys.exit(code)

    return run


def return_large_buffers_to_the_os() -> None:
    """glibc raises its mmap threshold whenever a large block is freed, so a backfill's archive
    buffers (~10 MB each, on many threads) end in heaps that never shrink: four 1s series peaked
    at 560 MB instead of 300 MB. A fixed threshold keeps each such buffer an mmap, freed at once."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc (musl, macOS): another allocator, nothing to set
        ctypes.CDLL("libc.so.6").mallopt(-3, 128 * 1024)  # -3: M_MMAP_THRESHOLD
