"""Is a PID alive, and is it really our scheduler? (Linux /proc, psutil-free.)

PIDs are reused: a pidfile or state entry can name a PID that now belongs to
an unrelated program. Anything that signals or reports a PID checks its
command line first, so another program is never mistaken for ours.
"""

from __future__ import annotations

import os
from pathlib import Path

MANAGER_SCRIPT = "scheduled_data_manager.py"


def pid_alive(pid: int) -> bool:
    """The one "is this process alive" check: it exists and is not a zombie.

    PID 1 counts (in a container our scheduler is PID 1); callers that
    signal a PID also check with ``is_manager_process`` that it is ours.
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # signal 0: existence check only, nothing is delivered
    except (ProcessLookupError, OverflowError):  # OverflowError: beyond any possible PID
        return False
    except PermissionError:
        return True  # it exists, it just is not ours to signal
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the ")" that closes the command name.
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def command_line(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_manager_process(pid: int) -> bool:
    """True only for a live process running our scheduler script."""
    if not pid_alive(pid):
        return False
    return any(Path(arg).name == MANAGER_SCRIPT for arg in command_line(pid)[:4])


def process_start_time(pid: int) -> float | None:
    """Start time (epoch seconds) from /proc, for uptime."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
        ticks = int(fields[19])
        boot = next(
            float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime")
        )
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")
