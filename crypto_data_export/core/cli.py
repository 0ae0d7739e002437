"""How every root script ends: its exit code, and two endings that are not its failures.

* The reader of our output went away (``--status | head -1``): the rest of the output has
  nowhere to go. We stop quietly with 141, the code a process killed by SIGPIPE has, as
  ``head`` users expect from any Unix tool; no traceback.
* Ctrl-C outside a handler of the script's own: one line and 130 (128 + SIGINT). Files are
  written atomically, so an interrupted run leaves the old file or the new one.

``skip_teardown``: once the script is done, the exit handlers run (log files flushed and
closed), stdout and stderr are flushed, and the process ends without the interpreter's
teardown of every module (~0.1 s with pandas and pyarrow loaded: a tenth of a cycle's own
CPU besides the network). Only when no other thread is alive, so no work is cut short.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Callable
from typing import NoReturn

EXIT_BROKEN_PIPE = 128 + 13
EXIT_INTERRUPTED = 128 + 2


def run_main(main: Callable[[], int], *, skip_teardown: bool = False) -> NoReturn:
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        code = EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print("interrupted: stopped before the end; files already written are whole", file=sys.stderr)
        code = EXIT_INTERRUPTED
    if skip_teardown and threading.active_count() == 1:
        _exit_now(code)
    sys.exit(code)


def _exit_now(code: int) -> NoReturn:
    """What ``sys.exit`` does that matters (exit handlers: logging's flush and close, weakref
    finalizers; stdout and stderr flushed), without tearing every module down."""
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        code = code or EXIT_BROKEN_PIPE
    except (OSError, ValueError):
        pass  # closed or unwritable: nothing more can be said anyway
    os._exit(code)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's own final flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
