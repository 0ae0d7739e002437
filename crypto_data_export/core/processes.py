"""Is a PID alive, is it our scheduler, which export folder does it serve? (Linux /proc.)

PIDs are reused: whatever signals or reports a PID checks its command line, its start
time and its folder, so another program or another install's scheduler is never ours."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from dotenv import dotenv_values

MANAGER_SCRIPT = "scheduled_data_manager.py"
MANAGER_COMMAND = "scheduled-data-manager"  # the console command of an installed package
EXPORT_DIR_VARIABLE = "EXPORT_DIR"
_ENVIRON_LIMIT = 1 << 20  # /proc/<pid>/environ is at most a few hundred KiB


def pid_alive(pid: int) -> bool:
    """The one "is this process alive" check: it exists and is not a zombie (PID 1 counts: in
    a container our scheduler is PID 1)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # signal 0: existence check only, nothing is delivered
    except (ProcessLookupError, OverflowError):  # OverflowError: beyond any possible PID
        return False
    except PermissionError:
        return True  # it exists, it just is not ours to signal
    return _stat_fields(pid)[:1] != ["Z"]


def _stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat after the ")" that closes the command name (state first), [] if unreadable."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return []


def command_line(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_manager_process(pid: int) -> bool:
    """True only for a live process running our scheduler script."""
    return pid_alive(pid) and any(Path(arg).name in (MANAGER_SCRIPT, MANAGER_COMMAND) for arg in command_line(pid)[:4])


def process_start_ticks(pid: int) -> int | None:
    """When the process started, in clock ticks since boot: with the PID, an identity
    that a reused PID cannot repeat."""
    try:
        return int(_stat_fields(pid)[19])
    except (ValueError, IndexError):
        return None


def process_start_time(pid: int) -> float | None:
    """Start time (epoch seconds) from /proc, for uptime."""
    if (ticks := process_start_ticks(pid)) is None:
        return None
    try:
        boot = next(
            float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime")
        )
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def process_export_dir(pid: int, default: str) -> Path | None:
    """The export folder a live scheduler serves, resolved as it decides (``EXPORT_DIR`` from its
    environment, else its working folder's ``.env``, else ``default``); None if unknown."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            raw = handle.read(_ENVIRON_LIMIT)
    except OSError:
        return None  # another user's process: its environment is not ours to read
    pairs = (entry.split(b"=", 1) for entry in raw.split(b"\0") if b"=" in entry)
    environ = {k.decode(errors="replace"): v.decode(errors="surrogateescape") for k, v in pairs}
    try:
        cwd: Path | None = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        cwd = None
    value = environ.get(EXPORT_DIR_VARIABLE, "").strip()
    if not value and cwd is not None:
        with contextlib.suppress(OSError, UnicodeDecodeError, ValueError):
            value = (dotenv_values(cwd / ".env").get(EXPORT_DIR_VARIABLE) or "").strip()
    value = value or default
    if value.startswith("~") and environ.get("HOME"):
        value = environ["HOME"] + value[1:] if value == "~" or value.startswith("~/") else value
    path = Path(value)
    if not path.is_absolute():
        if cwd is None:
            return None
        path = cwd / path
    return Path(os.path.realpath(path))


def serves_folder(pid: int, folder: Path, default: str) -> bool | None:
    """Does the live process ``pid`` serve ``folder``? None when it cannot be told."""
    served = process_export_dir(pid, default)
    return None if served is None else served == Path(os.path.realpath(folder))
