"""Helpers shared by the tests (the one support module; fixtures live in conftest.py).

The CLIs run as real subprocesses against the in-process sandbox exchange on
127.0.0.1, in a test's own ``tmp_path`` (also the working directory, so no
stray ``.env`` is read), with the settings variables of the outer
environment removed. ``run_cli`` forks them from a warm starter
(tests/warm_start.py) that has done their imports once.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import json
import locale
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import schedule

from crypto_data_export.core.atomic_io import TEMP_NAME_PATTERN, TEMP_TAG
from crypto_data_export.core.candles import SeriesId
from crypto_data_export.core.intervals import floor_open_ms, next_open_ms
from crypto_data_export.exchange.history import HistoricalDataExporter, RestPages, SymbolExport
from crypto_data_export.exchange.klines import rows_to_frame
from crypto_data_export.sandbox.fake_exchange import generate_candle
from crypto_data_export.settings.settings import SETTING_VARIABLES
from crypto_data_export.store.formats.csv_format import CSV_HEADER, write_candles
from crypto_data_export.store.layout import QUARANTINE_DIR_NAME, export_file_name, parse_export_name
from crypto_data_export.store.scan import validate_file

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"

MANAGER = REPO / "scheduled_data_manager.py"
SERVICE = REPO / "data_export_service.py"
POLL = 0.05
# Seconds. Only ends a child or a wait that hangs on a stuck CI machine; never a timing check
# (how fast something is, is a benchmark's job). Tests assert what happened, not when.
HANG_GUARD = 120.0


def clean_environ() -> dict[str, str]:
    """The outer environment without any of our settings (hermetic runs)."""
    env = {k: v for k, v in os.environ.items() if k not in SETTING_VARIABLES}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


CLOSED_ARCHIVE_URL = "http://127.0.0.1:9"


def manager_env(export_dir: Path, base_url: str, symbols: str = "BTCUSDT,ETHUSDT", **extra: Any) -> dict[str, str]:
    """The outer environment without our settings, plus values for a fast, bounded
    run: no backoff, a short read timeout, 2 retries."""
    env = clean_environ()
    env.update(
        {
            "EXPORT_DIR": str(export_dir),
            "BINANCE_BASE_URL": base_url,
            # No test reaches the internet: the bulk archive is a closed port on loopback unless a
            # test names one (the sandbox serves it), so a backfill's "auto" falls back to REST.
            "BINANCE_ARCHIVE_URL": CLOSED_ARCHIVE_URL,
            "EXPORT_SYMBOLS": symbols,
            "HTTP_BACKOFF_SECONDS": "0",
            "HTTP_TIMEOUT_SECONDS": "2",
            "HTTP_RETRIES": "2",
            "EXPORT_WORKERS": "4",
        }
    )
    env["PYTHONUNBUFFERED"] = "1"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_manager(
    env: dict[str, str],
    *args: str,
    timeout: float = HANG_GUARD,
    cwd: Path | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """One real run of scheduled_data_manager.py; killed if it outlives ``timeout``."""
    cwd = cwd or Path(env["EXPORT_DIR"]).parent
    return run_cli(MANAGER.name, *args, env=env, cwd=cwd, timeout=timeout, preexec_fn=preexec_fn)


# Runs its arguments as a child and writes that child's peak RSS (KB, from wait4) to the file named
# first: a child forked from the test worker itself would report the worker's own peak (Linux keeps
# the pre-exec high-water mark), which grows with every in-process test the worker ran before.
_MEASURING_LAUNCHER = (
    "import os, subprocess, sys\n"
    "child = subprocess.Popen(sys.argv[2:])\n"
    "_, status, usage = os.wait4(child.pid, 0)\n"
    "open(sys.argv[1], 'w').write(str(usage.ru_maxrss))\n"
    "sys.exit(os.waitstatus_to_exitcode(status) % 256)\n"
)


def run_manager_measured(
    env: dict[str, str], *args: str, timeout: float = HANG_GUARD
) -> tuple[subprocess.CompletedProcess[str], int]:
    """``run_manager``, plus the peak resident memory (bytes) of that one run, measured by a small
    launcher process (``_MEASURING_LAUNCHER``), never by the test worker."""
    with tempfile.TemporaryDirectory() as scratch:
        peak_file = Path(scratch) / "peak_kb"
        command = [sys.executable, "-c", _MEASURING_LAUNCHER, str(peak_file), sys.executable, str(MANAGER), *args]
        proc = subprocess.Popen(
            command,
            env=env,
            cwd=Path(env["EXPORT_DIR"]).parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # the launcher and the run in one group: a hang kills both
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            pytest.fail(f"{MANAGER.name} {' '.join(args)} did not finish within {timeout:g} s")
        result = subprocess.CompletedProcess(command[4:], proc.returncode, out, err)
        return result, int(peak_file.read_text()) * 1024  # Linux reports kilobytes


def run_service(
    env: dict[str, str], *args: str, timeout: float = HANG_GUARD, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return run_cli(SERVICE.name, *args, env=env, cwd=cwd or Path(env["EXPORT_DIR"]).parent, timeout=timeout)


def cli_env(base_url: str, export_dir: Path, **settings: str) -> dict[str, str]:
    """``manager_env`` with the arguments in the other order, for the CLI tests."""
    return manager_env(export_dir, base_url, **settings)


def script(name: str) -> str:
    return str(REPO / name)


def run_cli(
    name: str,
    *args: str,
    env: dict[str, str],
    cwd: Path,
    timeout: float = HANG_GUARD,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """One real run of a root script; killed if it outlives ``timeout``. A process forked by the worker's
    warm starter (tests/warm_start.py: the imports done once) where it can stand for a fresh start."""
    if preexec_fn is None and (warm := _warm_starter()).stands_for(env):
        ran = warm.run(script(name), args, env=env, cwd=cwd, timeout=timeout)
        if ran is not None:
            return ran
    return subprocess.run(
        [sys.executable, script(name), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec_fn,
    )


# Variables a fresh interpreter reads as it starts (a forked child cannot take them over): a run whose
# environment gives them other values than the warm starter's starts a fresh interpreter.
_STARTUP_VARIABLES = re.compile(r"PYTHON(?!UNBUFFERED$|DONTWRITEBYTECODE$).*|LANG|LC_.*|TZ|.*_NUM_THREADS|ARROW_.*")


class _WarmStarter:
    """The worker's tests/warm_start.py process (started at first use, ended with the worker)."""

    def __init__(self) -> None:
        self.env = clean_environ()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.channel = ours
        self.process = subprocess.Popen(
            [sys.executable, str(REPO / "tests" / "warm_start.py"), str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            env=self.env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        theirs.close()
        self.busy = threading.Lock()

    def stands_for(self, env: dict[str, str]) -> bool:
        names = {name for name in {*env, *self.env} if _STARTUP_VARIABLES.fullmatch(name)}
        return self.process.poll() is None and all(env.get(name) == self.env.get(name) for name in names)

    def run(
        self, path: str, args: Sequence[str], *, env: dict[str, str], cwd: Path, timeout: float
    ) -> subprocess.CompletedProcess[str] | None:
        """``subprocess.run(capture_output=True, text=True)`` of ``python path args``; None if busy."""
        if not self.busy.acquire(blocking=False):  # another thread's run: that one starts afresh
            return None
        try:
            return self._run(path, args, env, cwd, timeout)
        finally:
            self.busy.release()

    def _run(
        self, path: str, args: Sequence[str], env: dict[str, str], cwd: Path, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, path, *args]
        request = {"script": path, "args": list(args), "env": env, "cwd": str(cwd)}
        (out_r, out_w), (err_r, err_w) = os.pipe(), os.pipe()
        null = os.open(os.devnull, os.O_RDONLY)
        try:
            socket.send_fds(self.channel, [json.dumps(request).encode()], [null, out_w, err_w])
        finally:
            for fd in (null, out_w, err_w):
                os.close(fd)
        pid = json.loads(self.channel.recv(1 << 16))["pid"]
        outputs: dict[int, bytearray] = {out_r: bytearray(), err_r: bytearray()}
        code: int | None = None
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as waiting:  # until the child has ended and both pipes are at their end
            for fileobj in (out_r, err_r, self.channel):
                waiting.register(fileobj, selectors.EVENT_READ)
            while waiting.get_map() and (left := deadline - time.monotonic()) > 0:
                for key, _ in waiting.select(left):
                    if key.fileobj is self.channel:
                        code = json.loads(self.channel.recv(1 << 16))["code"]
                        waiting.unregister(self.channel)
                    elif chunk := os.read(key.fd, 1 << 16):
                        outputs[key.fd] += chunk
                    else:
                        waiting.unregister(key.fd)
            finished = not waiting.get_map()
        for fd in outputs:
            os.close(fd)
        # As text=True decodes: the locale's encoding, universal newlines.
        encoding = locale.getpreferredencoding(False)
        out, err = (outputs[fd].decode(encoding).replace("\r\n", "\n").replace("\r", "\n") for fd in (out_r, err_r))
        if not finished:  # as subprocess.run does: kill the child, wait for it, raise
            if code is None:
                kill_quietly(pid)
                json.loads(self.channel.recv(1 << 16))
            raise subprocess.TimeoutExpired(command, timeout, out, err)
        assert code is not None
        return subprocess.CompletedProcess(command, code, out, err)


_WARM: list[_WarmStarter] = []


def _warm_starter() -> _WarmStarter:
    if not _WARM:
        atexit.register(_stop_warm_starter)
    if not _WARM or _WARM[0].process.poll() is not None:
        _WARM[:] = [_WarmStarter()]
    return _WARM[0]


def _stop_warm_starter() -> None:
    for warm in _WARM:
        warm.channel.close()  # the starter reads an end of file and exits
        with contextlib.suppress(subprocess.TimeoutExpired):
            warm.process.wait(timeout=5)


def start_cli(name: str, *args: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, script(name), *args],
        env=env,
        cwd=cwd,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def folder_listing(folder: Path) -> dict[str, tuple[int, int]]:
    """Every entry below ``folder`` with size and mtime: compare before/after to prove nothing changed."""
    listing = {}
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        listing[str(path.relative_to(folder))] = (info.st_size, info.st_mtime_ns)
    return listing


def export_csvs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*_*_*.csv") if not p.is_symlink())


# -- a folder of files for FileManager and cleanup tests -----------------------------
BTC_FILE = DATA / "BTCUSDT_1h_20241029_000000.csv"
NOW = datetime(2024, 11, 10, 12, 0, 0, tzinfo=UTC)


def valid_bytes(rows: int = 24, days_old: float | None = None) -> bytes:
    """The first ``rows`` candles of the real day: distinct sizes, so no accidental duplicates.

    With ``days_old`` the candles are moved in time (same bytes otherwise) so
    that the newest one opens an hour before ``NOW - days_old``, as a run at
    that moment would have written them: retention judges age and order by
    content, not by the stamp ``put`` gives the name.
    """
    lines = BTC_FILE.read_text(encoding="utf-8").splitlines()[: rows + 1]
    if days_old is not None:
        lines = [lines[0], *_moved(lines[1:], NOW - timedelta(days=days_old))]
    return ("\n".join(lines) + "\n").encode()


def _moved(rows: list[str], written_at: datetime) -> list[str]:
    """1h CSV rows moved by whole hours so that the last one opens an hour before ``written_at``."""
    target = written_at.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    shift = target - datetime.fromisoformat(rows[-1].split(",", 1)[0])

    def moved(text: str) -> str:
        when = datetime.fromisoformat(text) + shift
        fraction = f".{when.microsecond // 1000:03d}" if when.microsecond else ""
        return when.strftime("%Y-%m-%d %H:%M:%S") + fraction + "+00:00"

    out = []
    for row in rows:
        cells = row.split(",")
        cells[0], cells[6] = moved(cells[0]), moved(cells[6])
        out.append(",".join(cells))
    return out


CORRUPT = valid_bytes(24).replace(b"68116.78000000", b"1.00000000", 1)  # row 1: high < low


def put(folder: Path, symbol: str, days_old: float, data: bytes, interval: str = "1h") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / export_file_name(symbol, interval, NOW - timedelta(days=days_old))
    path.write_bytes(data)
    return path


def listing(root: Path) -> dict[str, tuple]:
    """Every entry under root (links not followed) with size, mtime and link target."""
    found: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            info = os.lstat(path)
            target = os.readlink(path) if path.is_symlink() else None
            found[str(path.relative_to(root))] = (info.st_mode, info.st_size, info.st_mtime_ns, target)
    return found


def build_scenario(root: Path) -> dict[str, Path]:
    """The 'done means' folder: see test_done_means_scenario."""
    folder = root / "exports"
    outside = root / "outside"
    outside.mkdir(parents=True)
    target = outside / "precious.csv"
    target.write_bytes(CORRUPT)  # would be quarantined if the link were followed
    paths = {
        "btc_1d": put(folder, "BTCUSDT", 1, valid_bytes(24, 1)),
        "btc_2d": put(folder, "BTCUSDT", 2, valid_bytes(23, 2)),
        "btc_3d": put(folder, "BTCUSDT", 3, valid_bytes(22, 3)),
        "btc_corrupt": put(folder, "BTCUSDT", 0.5, CORRUPT),
        "eth_10d": put(folder, "ETHUSDT", 10, valid_bytes(21, 10)),
        "target": target,
        "notes": folder / "notes.csv",
        "folder": folder,
    }
    paths["notes"].write_text("my notes\n")
    link = folder / export_file_name("SOLUSDT", "1h", NOW - timedelta(hours=1))
    link.symlink_to(target)
    paths["link"] = link
    return paths


@contextlib.contextmanager
def serving(command: Sequence[str], log: Path, ready: str | Callable[[int], Any], **popen: Any) -> Iterator[Any]:
    """A test server (moto, fake-gcs-server, Azurite) run as a process until the block ends, its output in
    ``log``; waits until it is ready: ``ready`` a regex of its log (the first group is yielded) or a function
    of its pid (its value is yielded)."""

    def is_ready() -> Any:
        if proc.poll() is not None:
            pytest.fail(f"{command[0]} exited with {proc.returncode}: {log.read_text()[-500:]}")
        if callable(ready):
            return ready(proc.pid)
        return (found := re.search(ready, log.read_text())) and found.group(1)

    with open(log, "wb") as sink:
        proc = subprocess.Popen(list(command), stdout=sink, stderr=subprocess.STDOUT, **popen)
    try:
        yield wait_until(is_ready, f"{Path(command[0]).name} ready")
    finally:
        proc.kill()
        proc.wait(timeout=5)


def wait_until(condition: Callable[[], Any], what: str, timeout: float = HANG_GUARD) -> Any:
    """Poll ``condition`` until it is truthy and return its value; fail naming ``what`` if it never is.

    The one polling loop of the tests: they wait on an event (a file, a log line, a
    request the sandbox saw), never sleep to let something happen. ``timeout`` is a
    hang guard, not a timing check.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(POLL)


def finish(proc: subprocess.Popen[str], timeout: float = HANG_GUARD) -> tuple[int, str, str]:
    """Wait for a started process; kill it (and fail) if it hangs (``timeout`` is a hang guard)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"process {proc.args} did not finish within {timeout:g} s; stderr: {err[-2000:]}")
    return proc.returncode, out, err


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def start_bystander() -> subprocess.Popen[bytes]:
    """An unrelated live program (``sleep``) standing for one that got a reused PID.

    It blocks the stop signals, so one sent to it stays pending (``pending_signals``)
    instead of killing it some time later: a test sees at once, without a sleep,
    whether anything signalled it. SIGKILL still ends it.
    """
    return subprocess.Popen(["sleep", "60"], preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS))


def pending_signals(pid: int) -> set[int]:
    """Signals sent to ``pid`` and not delivered yet (blocked), read from /proc/PID/status."""
    mask = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("SigPnd:", "ShdPnd:")):  # sent to the thread, to the process
            mask |= int(line.split()[1], 16)
    return {number for number in range(1, 65) if mask >> (number - 1) & 1}


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- what is on disk --------------------------------------------------------------
def temp_name(final: str, pid: int = 4242, token: str = "deadbeef") -> str:
    """The name ``crypto_data_export.core.atomic_io`` gives a temp file of ``final`` written by ``pid``."""
    return f".{final}.{pid}.{token}.{TEMP_TAG}.tmp"


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


def expected_csv(symbol: str, interval: str, opens: Sequence[int], market: str = "spot") -> str:
    """The exact file the sandbox's candles (of ``market``) must produce."""
    rows = [generate_candle(symbol, interval, t, market) for t in opens]
    return CSV_HEADER + "\n" + "".join(",".join(map(_csv_cell, row[:11])) + "\n" for row in rows)


def _csv_cell(value: Any) -> str:
    """A kline field as the CSV writes it, spelled out independently of the writer: int
    times as ``2024-10-28 00:59:59.999+00:00`` (whole seconds without ``.000``), text as is."""
    if isinstance(value, str) or value < 10**11:  # a decimal string or a trade count
        return str(value)
    moment = datetime.fromtimestamp(value / 1000, tz=UTC).isoformat(sep=" ", timespec="milliseconds")
    return moment.replace(".000+", "+")


def seed_export(folder: Path, symbol: str, interval: str, opens: Sequence[int], name: str) -> Path:
    """A valid export file made of the sandbox's candles, as an earlier run would leave it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    write_candles(path, rows_to_frame([generate_candle(symbol, interval, t) for t in opens]), interval)
    return path


def last_server_time(exchange: Any) -> int:
    """The exchange clock at the last /api/v3/time or exchangeInfo the client asked (what it must trust)."""
    times = [r.server_ms for r in exchange.requests if r.path in ("/api/v3/time", "/api/v3/exchangeInfo")]
    assert times, "the client never asked the exchange for its time"
    return times[-1]


def one_line(text: str) -> bool:
    return len([line for line in text.splitlines() if line.strip()]) == 1


def kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def exchange_not_usable(stderr: str) -> str | None:
    """The one line of a run whose exchange failed before any symbol, asserting it stands alone."""
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    host = [line for line in errors if line.startswith("error: exchange not usable, no symbol exported: ")]
    if not host:
        return None
    assert errors == host[:1], f"the exchange's failure is reported once, alone: {errors}"
    return host[0]


def assert_same_candles(left: Any, right: Any) -> None:
    """Two candle tables hold the same candles, both of the one candle schema."""
    from crypto_data_export.core.candles import CANDLE_SCHEMA

    assert left.schema.equals(CANDLE_SCHEMA) and right.schema.equals(CANDLE_SCHEMA), (left.schema, right.schema)
    assert left.equals(right)


def export_window(
    exporter: HistoricalDataExporter, symbol: str, previous: Any = None, **plan_options: Any
) -> SymbolExport:
    """What the export job does with one series, minus the file: plan the window against
    ``previous``, take its candles from REST pages (``RestPages``), merged into ``frame``."""
    export = exporter.plan(symbol, previous, **plan_options)
    export.frame = pa.concat_tables(RestPages().chunks(exporter, export))
    return export


def with_value(candles: Any, row: int, column: str, value: Any) -> Any:
    """A copy of a candle table with one cell replaced (0-based ``row``), any type of value."""
    import pyarrow as pa

    values = candles.column(column).to_pylist()
    values[row] = value
    index = candles.schema.get_field_index(column)
    kind = candles.schema.field(column).type if not isinstance(value, str) else pa.string()
    return candles.set_column(index, column, pa.array(values, kind))


# The scheduler loop's fake clocks (tests/scheduler/test_loop.py, tests/reliability).
LOOP_START = dt.datetime(2026, 3, 10, 10, 17, 30)  # local time, as schedule plans


class Clocks:
    """A monotonic and a wall clock (epoch seconds), moved together unless the wall is stepped."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.mono, self.wall = 1000.0, LOOP_START.timestamp()

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.wall)


def schedule_reads(monkeypatch: pytest.MonkeyPatch, clocks: Clocks) -> None:
    """Give schedule the fake wall clock: it reads ``datetime.datetime.now()`` of its module."""

    class FakeDatetime(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> dt.datetime:  # type: ignore[override]
            return dt.datetime.fromtimestamp(clocks.wall, tz)

    monkeypatch.setattr(schedule, "datetime", types.SimpleNamespace(**{**vars(dt), "datetime": FakeDatetime}))


def check_bytes(
    file_format: Any, data: bytes, interval: str, path: Path | str, *, candles_from: int | None = None
) -> Any:
    """A whole file's content judged by its format's streaming checker (as a scan reads it)."""
    check = file_format.stream_checker(interval, Path(path), candles_from=candles_from)
    check.feed(data)
    return check.finish()


# -- the dataset layout, as its contract lays it out on disk -------------------------------
HOUR_MS = 3_600_000
Y2025, Y2026, Y2027 = 1_735_689_600_000, 1_767_225_600_000, 1_798_761_600_000  # Jan 1st, UTC


def write_dataset_period(
    root: Path, series: SeriesId, start: int, end: int, opens: list[int], *, expected: int,
    complete: bool = False, gaps: list[list[int]] | None = None, name: str | None = None,
    under: SeriesId | None = None,
) -> Path:  # fmt: skip
    """A period file as the contract lays it out (columns, Hive folders, key/value metadata)."""
    import pyarrow.parquet as pq

    n, ms = len(opens), pa.timestamp("ms", tz="UTC")
    columns: dict[str, pa.Array] = {"open_time": pa.array(opens, pa.int64()).cast(ms)}
    columns.update({c: pa.array([1.0] * n) for c in ("open", "high", "low", "close", "volume")})
    columns["close_time"] = pa.array([o + HOUR_MS - 1 for o in opens], pa.int64()).cast(ms)
    columns["quote_asset_volume"] = pa.array([1.0] * n)
    columns["number_of_trades"] = pa.array([1] * n, pa.int64())
    columns["taker_buy_base_asset_volume"] = columns["taker_buy_quote_asset_volume"] = pa.array([1.0] * n)
    for key in ("symbol", "interval", "market"):
        columns[key] = pa.array([getattr(series, key)] * n).dictionary_encode()
    meta = {
        "exchange_host": series.exchange_host, "market": series.market, "symbol": series.symbol,
        "interval": series.interval, "cdx_schema_version": "2", "cdx_numbers": "float",
        "cdx_period_start": str(start), "cdx_period_end": str(end), "cdx_expected": str(expected),
        "cdx_present": str(n), "cdx_gaps": json.dumps(gaps or []), "cdx_sources": "[]",
        "cdx_complete": "true" if complete else "false", "cdx_written_at": "2026-12-07T00:00:00+00:00",
    }  # fmt: skip
    table = pa.table(columns).replace_schema_metadata(meta)
    place = under or series
    folder = root / f"market={place.market}" / f"interval={place.interval}" / f"symbol={place.symbol}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name or datetime.fromtimestamp(start / 1000, UTC).year}.parquet"  # a 1h series' period
    pq.write_table(table, path, compression="zstd")
    return path
