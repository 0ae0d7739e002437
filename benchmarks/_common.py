"""Shared helpers of the benchmarks: the sandbox subprocess, Settings, a table, results.

The benchmarks are scripts, not tests: they print a table, write
``benchmarks/results/<name>.json`` with the figures, the machine and the
date, and assert nothing. The sandbox exchange runs as a separate process so
that its CPU work (HTTP parsing, candle generation) does not share the
benchmarked process's GIL.
"""

from __future__ import annotations

import atexit
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"

_LISTEN_RE = re.compile(r"listening on (http://\S+)")
_CHILDREN: list[subprocess.Popen] = []


# -- the sandbox exchange in its own process ----------------------------------------
class SandboxProcess:
    """The sandbox exchange as a subprocess (cwd: the repo root); ``base_url`` once it listens."""

    def __init__(
        self,
        *,
        latency: float = 0.0,
        weight_limit: int = 6000,
        accept_any_symbol: bool = True,
        clock_offset_ms: int = 0,
        list_symbols: int = 0,
        archive_cache_mb: int = 0,
        extra_args: Sequence[str] = (),
    ) -> None:
        # list_symbols > 0: exchangeInfo also lists SYM0001USDT..; archive_cache_mb > 0: the archive keeps
        # that many MB of built zips, instead of 512 (see _sandbox_server.py)
        module = "benchmarks._sandbox_server" if list_symbols or archive_cache_mb else "crypto_data_export.sandbox"
        self.args = [
            sys.executable,
            "-m",
            module,
            "--port",
            "0",
            "--latency",
            str(latency),
            "--weight-limit",
            str(weight_limit),
            "--clock-offset-ms",
            str(clock_offset_ms),
            *extra_args,
        ]
        if accept_any_symbol:
            self.args.append("--accept-any-symbol")
        if list_symbols:
            self.args += ["--list-symbols", str(list_symbols)]
        if archive_cache_mb:
            self.args += ["--archive-cache-mb", str(archive_cache_mb)]
        self.proc: subprocess.Popen | None = None
        self.base_url = ""

    def start(self, timeout: float = 15.0) -> SandboxProcess:
        self.proc = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(ROOT)
        )
        _CHILDREN.append(self.proc)
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            match = _LISTEN_RE.search(line)
            if match:
                self.base_url = match.group(1)
                return self
        err = self.proc.stderr.read() if self.proc.stderr else ""
        self.stop()
        raise RuntimeError(f"sandbox exchange did not start: {err.strip()[:500]}")

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_process(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Stop one child we started (by its pid), killing it if it does not leave."""
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    except ProcessLookupError:
        pass


@atexit.register
def _stop_children() -> None:
    for proc in _CHILDREN:
        stop_process(proc, timeout=3)


def children_cpu() -> float:
    """CPU seconds (user + system) of this process's waited-for children: a whole process's cost."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def exchange_figures(exchange: Any) -> dict[str, int]:
    """What an in-process sandbox counted: klines calls, requests, 429 answers, its peak window weight."""
    stats = exchange.stats
    return {
        "klines_calls": stats.klines_calls,
        "requests": stats.total,
        "http_429": stats.rate_limited_429,
        "max_window_weight": stats.max_used_weight_seen,
    }


# -- settings ------------------------------------------------------------------------
def bench_setting_values(base_url: str, export_dir: Path, symbols: Iterable[str]) -> dict[str, str]:
    """The settings every benchmark run uses: this exchange and folder, 1h candles, a 2-day window."""
    return {
        "BINANCE_BASE_URL": base_url,
        "EXPORT_DIR": str(export_dir),
        "EXPORT_SYMBOLS": ",".join(symbols),
        "KLINE_INTERVAL": "1h",
        "EXPORT_LOOKBACK_DAYS": "2",
    }


def process_env(base_url: str, export_dir: Path, symbols: Iterable[str], **extra: str) -> dict[str, str]:
    """The environment of a child process of ours: this one without any of the project's
    settings (a developer's shell must not change a figure), then the benchmark's."""
    from crypto_data_export.settings.settings import SETTING_VARIABLES

    env = {k: v for k, v in os.environ.items() if k not in SETTING_VARIABLES}
    env.update(bench_setting_values(base_url, export_dir, symbols))
    env.update(extra)
    return env


def make_settings(base_url: str, export_dir: Path, symbols: Iterable[str], **extra: str):
    """Settings for a temp folder, built from a plain dict (no .env is read)."""
    from crypto_data_export.settings.settings import load_settings

    env = {**bench_setting_values(base_url, export_dir, symbols), "LOG_LEVEL": "WARNING"}
    env.update({k: str(v) for k, v in extra.items()})
    return load_settings(env, env_file=None)


def bench_symbols(n: int) -> list[str]:
    """``SYM0001USDT`` ...: served by a sandbox started with --accept-any-symbol."""
    return [f"SYM{i:04d}USDT" for i in range(1, n + 1)]


def temp_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"bench-{prefix}-"))


def quiet_logging() -> None:
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for name in ("crypto_data_export", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)


# -- output --------------------------------------------------------------------------
def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3f}"
    if value is None:
        return "-"
    return str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, markdown: bool = True) -> str:
    """A small markdown table (readable as plain text too)."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    sep = " | " if markdown else "  "
    lines = [
        ("| " if markdown else "")
        + sep.join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
        + (" |" if markdown else "")
    ]
    if markdown:
        lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells:
        lines.append(
            ("| " if markdown else "")
            + sep.join(c.ljust(w) for c, w in zip(row, widths, strict=True))
            + (" |" if markdown else "")
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def invoked_as() -> str:
    """``python -m benchmarks.bench_x --args`` of this process (or the script name and its args)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    program = f"python -m {spec.name}" if spec is not None else f"python {Path(sys.argv[0]).name}"
    return " ".join([program, *sys.argv[1:]])


def write_results(
    name: str, figures: Mapping[str, Any], *, targets: Mapping[str, Any] | None = None, command: str | None = None
) -> Path:
    """``benchmarks/results/<name>.json``: figures, targets, machine, date, command."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command or invoked_as(),
        "machine": machine(),
        "figures": figures,
        "targets": targets or {},
    }
    path = RESULTS_DIR / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("met" if ok else "MISSED")


def report_and_save(name: str, figures: Mapping[str, Any], targets: Mapping[str, bool]) -> dict[str, Any]:
    """Print each target's verdict, save the figures (``write_results``) and return both."""
    print("targets: " + ", ".join(f"{k} {verdict(v)}" for k, v in targets.items()))
    path = write_results(name, figures, targets=targets)
    print(f"results: {path}")
    return {"figures": figures, "targets": targets}
