"""Run the project's CLIs as real subprocesses, with settings from a dict."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SETTING_NAMES = ("BINANCE_BASE_URL", "EXPORT_DIR", "EXPORT_SYMBOLS", "CRYPTO_SYMBOLS", "KLINE_INTERVAL",
                 "EXPORT_LOOKBACK_DAYS", "EXPORT_PERIOD_HOURS", "MAX_FILES_PER_SYMBOL", "DATA_RETENTION_DAYS",
                 "EXPORT_WORKERS", "HTTP_TIMEOUT_SECONDS", "HTTP_RETRIES", "HTTP_BACKOFF_SECONDS", "LOG_LEVEL")


def cli_env(base_url: str, export_dir: Path, **settings: str) -> dict[str, str]:
    """The parent's environment without our settings, plus fast test values."""
    env = {k: v for k, v in os.environ.items() if k not in SETTING_NAMES}
    env.update({"BINANCE_BASE_URL": base_url, "EXPORT_DIR": str(export_dir), "EXPORT_SYMBOLS": "BTCUSDT,ETHUSDT",
                "HTTP_TIMEOUT_SECONDS": "3", "HTTP_RETRIES": "2", "HTTP_BACKOFF_SECONDS": "0", "PYTHONUNBUFFERED": "1"})
    env.update(settings)
    return env


def script(name: str) -> str:
    return str(REPO / name)


def run_cli(name: str, *args: str, env: dict[str, str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, script(name), *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def start_cli(name: str, *args: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, script(name), *args], env=env, cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


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
