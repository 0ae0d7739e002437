"""``state.json``: what the scheduler remembers between runs and restarts.

Counts, the last cycle, per-symbol last success and last error, the scheduler
loop's PID, and ``banned_until`` after a 418, so that a restarted process
does not walk straight back into the ban. Written atomically; a state file
that cannot be parsed is kept aside (``state.json.corrupt``) and replaced by
a fresh one, because losing counters is better than refusing to run.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from common.atomic_io import atomic_write_json
from common.clock import from_iso, utc_now
from common.errors import StorageError
from common.file_lock import WAIT_FOREVER, FileLock
from common.reading import read_regular_file
from store.layout import STATE_LOCK_NAME, STATE_NAME

logger = logging.getLogger("scheduled_data_manager")


@dataclass
class SymbolState:
    last_success: str | None = None
    last_file: str | None = None
    last_error: str | None = None
    last_error_at: str | None = None
    last_error_kind: str | None = None


@dataclass
class RunState:
    export_count: int = 0
    cleanup_count: int = 0
    last_cycle_start: str | None = None
    last_cycle_end: str | None = None
    last_cycle_result: str | None = None
    last_successful_cycle: str | None = None
    last_cycle_failed_symbols: list[str] = field(default_factory=list)
    last_exchange_contact: str | None = None
    banned_until: str | None = None
    service_pid: int | None = None
    service_status: str = "stopped"
    service_started: str | None = None
    symbols: dict[str, SymbolState] = field(default_factory=dict)

    def ban_end(self) -> datetime | None:
        """The end of a ban still in force, else None."""
        until = from_iso(self.banned_until)
        return until if until is not None and until > utc_now() else None

    def symbol(self, name: str) -> SymbolState:
        return self.symbols.setdefault(name, SymbolState())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _from_dict(data: dict[str, Any]) -> RunState:
    known = {k: v for k, v in data.items() if k in RunState.__dataclass_fields__ and k != "symbols"}
    state = RunState(**known)
    for name, values in (data.get("symbols") or {}).items():
        if isinstance(values, dict):
            fields = {k: v for k, v in values.items() if k in SymbolState.__dataclass_fields__}
            state.symbols[name] = SymbolState(**fields)
    return state


def load_state(folder: Path) -> RunState:
    path = Path(folder) / STATE_NAME
    try:
        data = json.loads(_read_no_follow(path))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return _from_dict(data)
    except FileNotFoundError:
        return RunState()
    except (ValueError, TypeError, OSError) as exc:
        logger.warning("state file %s is unreadable (%s); kept as %s.corrupt, starting fresh", path, exc, path.name)
        try:
            os.replace(path, path.with_name(STATE_NAME + ".corrupt"))
        except OSError:
            pass
        return RunState()


def _read_no_follow(path: Path) -> str:
    """The file's text; a symlink planted in its place is refused (ELOOP), never read through."""
    return read_regular_file(path)[0].decode("utf-8")


def save_state(folder: Path, state: RunState) -> None:
    atomic_write_json(Path(folder) / STATE_NAME, state.to_dict())


def _cannot_open_state_lock(path: Path, exc: OSError) -> StorageError:
    return StorageError(
        f"cannot open the state lock {path}: {exc.strerror or exc}; remove it if it is a symlink or not a regular file"
    )


def update_state(folder: Path, change: Callable[[RunState], None]) -> RunState:
    """Read-modify-write of state.json under a short exclusive lock.

    The scheduler loop and a cron ``--manual`` run can both finish at nearly
    the same moment; the lock makes their updates apply one after the other
    instead of the later one silently dropping the earlier one's counts.
    """
    with FileLock(Path(folder) / STATE_LOCK_NAME, wait_seconds=WAIT_FOREVER, on_error=_cannot_open_state_lock):
        state = load_state(folder)
        change(state)
        save_state(folder, state)
        return state
