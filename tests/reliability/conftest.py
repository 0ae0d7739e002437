"""Helpers of the fault-injection suite (issue 6).

Every test runs the real CLI as a separate process (``run_manager`` /
``start_manager``) against the in-process sandbox exchange on 127.0.0.1,
in its own ``tmp_path`` (also the working directory, so no stray ``.env``
is read), with the settings variables of the outer environment removed.
Processes a test starts are killed at teardown, whatever happened.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from atomic_io import TEMP_NAME_PATTERN
from config.intervals import floor_open_ms, next_open_ms
from config.settings import SETTING_VARIABLES
from csv_validation import validate_file
from export_files import CSV_HEADER, frame_to_csv_rows, parse_export_name, write_candles
from export_historical_data import rows_to_frame
from file_manager import QUARANTINE_DIR_NAME
from sandbox_exchange import generate_candle

REPO = Path(__file__).resolve().parents[2]
MANAGER = REPO / "scheduled_data_manager.py"
SERVICE = REPO / "data_export_service.py"
POLL = 0.05


def clean_environ() -> dict[str, str]:
    """The outer environment without any of our settings (hermetic runs)."""
    env = {k: v for k, v in os.environ.items() if k not in SETTING_VARIABLES}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def manager_env(export_dir: Path, base_url: str, symbols: str = "BTCUSDT,ETHUSDT", **extra: Any) -> dict[str, str]:
    """Settings for a fast, bounded run: no backoff, a short read timeout, 2 retries."""
    env = clean_environ()
    env.update({
        "EXPORT_DIR": str(export_dir),
        "BINANCE_BASE_URL": base_url,
        "EXPORT_SYMBOLS": symbols,
        "HTTP_BACKOFF_SECONDS": "0",
        "HTTP_TIMEOUT_SECONDS": "2",
        "HTTP_RETRIES": "2",
        "EXPORT_WORKERS": "4",
    })
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_manager(env: dict[str, str], *args: str, timeout: float = 20, cwd: Path | None = None,
                preexec_fn: Callable[[], None] | None = None) -> subprocess.CompletedProcess[str]:
    """One real run of scheduled_data_manager.py; killed if it outlives ``timeout``."""
    return subprocess.run([sys.executable, str(MANAGER), *args], env=env, cwd=cwd or Path(env["EXPORT_DIR"]).parent,
                          capture_output=True, text=True, timeout=timeout, preexec_fn=preexec_fn)


def run_service(env: dict[str, str], *args: str, timeout: float = 20, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SERVICE), *args], env=env, cwd=cwd or Path(env["EXPORT_DIR"]).parent,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[Any]]]:
    """Processes started by a test; any still alive at teardown is killed."""
    started: list[subprocess.Popen[Any]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)


@pytest.fixture
def start_manager(procs: list[subprocess.Popen[Any]]) -> Callable[..., subprocess.Popen[str]]:
    def start(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, str(MANAGER), *args], env=env, cwd=Path(env["EXPORT_DIR"]).parent,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        return proc
    return start


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` until it is truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(POLL)


def finish(proc: subprocess.Popen[str], timeout: float) -> tuple[int, str, str]:
    """Wait for a started process; kill it (and fail) if it hangs."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"process {proc.args} did not finish within {timeout:g} s; stderr: {err[-2000:]}")
    return proc.returncode, out, err


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- what is on disk --------------------------------------------------------------
def temp_files(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(n for n in os.listdir(folder) if TEMP_NAME_PATTERN.fullmatch(n) or n.endswith(".tmp"))


def export_files(folder: Path, symbol: str | None = None) -> list[Path]:
    """Our export files (regular files, not links), oldest first."""
    if not folder.is_dir():
        return []
    found = []
    for name in os.listdir(folder):
        parsed = parse_export_name(name)
        path = folder / name
        if parsed and not path.is_symlink() and path.is_file() and (symbol is None or parsed[0] == symbol):
            found.append(path)
    return sorted(found, key=lambda p: p.name[-19:])


def assert_folder_sound(folder: Path) -> list[Path]:
    """Every export-named file in the folder is valid (bad ones only in quarantine/), no temp file left."""
    assert temp_files(folder) == [], f"temp files left behind in {folder}"
    exports = export_files(folder)
    for path in exports:
        verdict = validate_file(path, parse_export_name(path.name)[1])
        assert verdict.valid, f"{path.name} is invalid and not quarantined: {verdict.reason}"
    quarantine = folder / QUARANTINE_DIR_NAME
    if quarantine.exists():
        assert quarantine.is_dir() and not quarantine.is_symlink()
    return exports


def snapshot(root: Path) -> dict[str, tuple[int, bytes | str | None]]:
    """Every entry under ``root`` (links not followed) with its content, to prove nothing changed."""
    found: dict[str, tuple[int, bytes | str | None]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            mode = os.lstat(path).st_mode
            if path.is_symlink():
                found[str(path.relative_to(root))] = (mode, os.readlink(path))
            elif path.is_file():
                found[str(path.relative_to(root))] = (mode, path.read_bytes())
            else:
                found[str(path.relative_to(root))] = (mode, None)
    return found


# -- the exchange's truth -------------------------------------------------------
def closed_opens(interval: str, window_start_ms: int, server_now_ms: int) -> list[int]:
    """Open times the exporter must write: opened in the window, closed at server time."""
    first = floor_open_ms(window_start_ms, interval)
    if first < window_start_ms:
        first = next_open_ms(first, interval)
    last = floor_open_ms(floor_open_ms(server_now_ms, interval) - 1, interval)
    opens, t = [], first
    while t <= last:
        opens.append(t)
        t = next_open_ms(t, interval)
    return opens


def expected_csv(symbol: str, interval: str, opens: Sequence[int]) -> str:
    """The exact file the sandbox's candles must produce."""
    rows = [generate_candle(symbol, interval, t) for t in opens]
    body = frame_to_csv_rows(rows_to_frame(rows)).to_csv(header=False, index=False, lineterminator="\n")
    return CSV_HEADER + "\n" + body


def seed_export(folder: Path, symbol: str, interval: str, opens: Sequence[int], name: str) -> Path:
    """A valid export file made of the sandbox's candles, as an earlier run would leave it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    write_candles(path, rows_to_frame([generate_candle(symbol, interval, t) for t in opens]))
    return path


def last_server_time(exchange: Any) -> int:
    """The exchange clock at the last /api/v3/time the client asked (what it must trust)."""
    times = [r.server_ms for r in exchange.requests if r.path == "/api/v3/time"]
    assert times, "the client never asked the exchange for its time"
    return times[-1]


def one_line(text: str) -> bool:
    return len([line for line in text.splitlines() if line.strip()]) == 1


def kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
