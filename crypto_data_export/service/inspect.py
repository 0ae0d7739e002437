"""What ``data_export_service.py status`` reports: is our scheduler running (see ``daemon`` for
what counts as ours), what did it last say. Every foreign value shown goes through ``printable``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from crypto_data_export.core.clock import from_iso
from crypto_data_export.core.owned_json import MISSING, OURS, read_owned_json
from crypto_data_export.core.processes import (
    command_line,
    is_manager_process,
    pid_alive,
    process_export_dir,
    process_start_ticks,
    process_start_time,
)
from crypto_data_export.core.text import printable
from crypto_data_export.service.pidfile import MAX_PID, Pidfile, read_pidfile
from crypto_data_export.settings.settings import DEFAULT_EXPORT_DIR

# ``service_started`` in state.json is written by the loop once it runs, a little after the process starts.
START_RECORD_SLACK_SECONDS = 300.0


@dataclass(frozen=True)
class ServiceState:
    """``running``, ``stopped`` (no pidfile), ``stale`` (dead, foreign or another folder's PID),
    ``unverified`` (cannot tell which folder it serves), ``unsafe`` or ``invalid``."""

    state: str
    pid: int | None = None
    detail: str = ""
    started_at: float | None = None

    def describe(self) -> str:
        return self.detail if self.state in ("stale", "unverified") else f"{self.state} {self.detail}"


def _same_folder(a: str | Path, b: str | Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def _not_ours(pid: int, info: Pidfile, export_dir: Path) -> ServiceState | None:
    """Why the live scheduler ``pid`` is not this folder's, or None if it is."""
    ticks, served = process_start_ticks(pid), process_export_dir(pid, DEFAULT_EXPORT_DIR)
    if info.start_ticks is not None and ticks is not None and ticks != info.start_ticks:
        why = f"PID {pid} was reused by a newer scheduler"
    elif info.export_dir is not None and not _same_folder(info.export_dir, export_dir):
        why = f"it names the scheduler of another folder ({printable(info.export_dir)})"
    elif served is not None and not _same_folder(served, export_dir):
        why = f"PID {pid} serves another folder ({printable(served)})"
    elif served is None and (info.export_dir is None or info.start_ticks is None):
        why = "which folder it serves cannot be read and the pidfile does not record it"
        return ServiceState(
            "unverified", pid, f"PID {pid} runs a scheduler, but {why}; not signalled: stop it as its owner"
        )
    else:
        return None
    return ServiceState("stale", pid, f"stale pidfile: {why}, not signalled")


def inspect_service(pidfile: Path, export_dir: Path) -> ServiceState:
    """What runs for the export folder, by the pidfile's word checked against the process."""
    info = read_pidfile(pidfile)
    if info.kind == "missing":
        return ServiceState("stopped")
    if info.kind != "ok" or info.pid is None:
        return ServiceState(info.kind, detail=f"pidfile {printable(pidfile)}: {info.detail}")
    pid = info.pid
    if not pid_alive(pid):
        return ServiceState("stale", pid, f"stale pidfile (process {pid} is not running)")
    if not is_manager_process(pid):
        program = printable(" ".join(command_line(pid)) or "unknown program", 120)
        return ServiceState("stale", pid, f"stale pidfile: PID {pid} is now another program ({program}), not signalled")
    return _not_ours(pid, info, export_dir) or ServiceState("running", pid, started_at=process_start_time(pid))


def loop_serving(export_dir: Path, state_file: Path) -> int | None:
    """The PID of a live scheduler loop that ``state.json`` names for this folder (one started by
    hand, or one whose pidfile is lost), else None; only two fields of ours are read."""
    found = read_owned_json(state_file)
    if found.verdict != OURS or found.data is None:
        return None
    pid = found.data.get("service_pid")
    if isinstance(pid, bool) or not isinstance(pid, int) or not 1 < pid <= MAX_PID or pid == os.getpid():
        return None
    if not is_manager_process(pid):
        return None
    if (served := process_export_dir(pid, DEFAULT_EXPORT_DIR)) is not None:
        return pid if _same_folder(served, export_dir) else None
    # Its folder cannot be read (another user's process): believe state.json only if the PID
    # started shortly before the loop recorded itself, i.e. it was not reused since.
    started, moment = process_start_time(pid), from_iso(found.data.get("service_started"))
    if started is None or moment is None:
        return None
    return pid if started - 2 <= moment.timestamp() <= started + START_RECORD_SLACK_SECONDS else None


def format_duration(seconds: float) -> str:
    days, rest = divmod(max(0, int(seconds)), 86400)
    clock = str(timedelta(seconds=rest))  # H:MM:SS
    return f"{days}d {clock}" if days else clock


def _shown(report: dict[str, Any], section: str, key: str, default: str = "?") -> str:
    part = report.get(section) if section else report
    value = part.get(key) if isinstance(part, dict) else None
    return default if value is None or value == "" else printable(value, 60)


def summarize_status_report(path: Path) -> list[str]:
    """The last status report in a few lines, read like any foreign file (no symlink, a size
    cap, every value checked for its type and escaped)."""
    found = read_owned_json(path)
    if found.verdict == MISSING:
        return ["  last status report: none yet"]
    if found.verdict != OURS or found.data is None:
        return [f"  last status report: {printable(path)} is not one of ours ({printable(found.problem)}); ignored"]
    data = found.data
    return [
        f"  last status report ({_shown(data, '', 'timestamp')}): "
        f"service_status={_shown(data, 'system_status', 'service_status')}, health={_shown(data, 'health', 'status')}",
        f"  exports: {_shown(data, 'system_status', 'export_count')}, last cycle: "
        f"{_shown(data, 'last_cycle', 'result', 'none')} (finished {_shown(data, 'last_cycle', 'finished', 'never')}), "
        f"total files: {_shown(data, 'file_statistics', 'total_files')}",
    ]
