"""What ``data_export_service.py status`` reports: is our scheduler running, and what did it last say.

A PID from the pidfile counts as running only if the process behind it runs
our scheduler script (``process_info.is_manager_process``): a reused PID is
reported as stale and never taken for ours.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.processes import command_line, is_manager_process, pid_alive, process_start_time
from service.pidfile import read_pidfile


@dataclass(frozen=True)
class ServiceState:
    """``running``, ``stopped`` (no pidfile), ``stale`` (dead or foreign PID), ``unsafe`` or ``invalid``."""

    state: str
    pid: int | None = None
    detail: str = ""
    started_at: float | None = None

    def describe(self) -> str:
        return self.detail if self.state == "stale" else f"{self.state} {self.detail}"


def inspect_service(pidfile: Path) -> ServiceState:
    info = read_pidfile(pidfile)
    if info.kind == "missing":
        return ServiceState("stopped")
    if info.kind != "ok" or info.pid is None:
        return ServiceState(info.kind, detail=f"pidfile {pidfile}: {info.detail}")
    pid = info.pid
    if not pid_alive(pid):
        return ServiceState("stale", pid, f"stale pidfile (process {pid} is not running)")
    if not is_manager_process(pid):
        program = " ".join(command_line(pid)) or "unknown program"
        return ServiceState(
            "stale", pid, f"stale pidfile: PID {pid} is now another program ({program[:120]}), not signalled"
        )
    return ServiceState("running", pid, started_at=process_start_time(pid))


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{days}d {clock}" if days else clock


def summarize_status_report(path: Path) -> list[str]:
    """The last status report in a few lines (the scheduler writes it after every cycle)."""
    try:
        report: Any = json.loads(path.read_text(encoding="utf-8"))
        system, files = report.get("system_status", {}), report.get("file_statistics", {})
        cycle, health = report.get("last_cycle") or {}, report.get("health") or {}
    except FileNotFoundError:
        return ["  last status report: none yet"]
    except (OSError, ValueError, AttributeError) as exc:
        return [f"  last status report: unreadable ({path}: {exc})"]
    finished = cycle.get("finished") or "never"
    return [
        f"  last status report ({report.get('timestamp', '?')}): service_status={system.get('service_status', '?')}, "
        f"health={health.get('status', '?')}",
        f"  exports: {system.get('export_count', '?')}, last cycle: {cycle.get('result') or 'none'} "
        f"(finished {finished}), total files: {files.get('total_files', '?')}",
    ]
