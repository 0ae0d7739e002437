"""Shared pytest fixtures: real sandbox exchanges on 127.0.0.1, OS-chosen ports."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from crypto_data_export.sandbox.fake_exchange import SandboxConfig, SandboxExchange
from tests.support import MANAGER


@pytest.fixture
def sandbox() -> Iterator[SandboxExchange]:
    """A started exchange with default behaviour, stopped after the test."""
    with SandboxExchange(SandboxConfig()) as exchange:
        yield exchange


@pytest.fixture
def sandbox_factory() -> Iterator[Callable[..., SandboxExchange]]:
    """Start exchanges with a given config (or config fields); all stop at teardown."""
    started: list[SandboxExchange] = []

    def make(config: SandboxConfig | None = None, **fields: object) -> SandboxExchange:
        cfg = config if config is not None else SandboxConfig(**fields)  # type: ignore[arg-type]
        exchange = SandboxExchange(cfg).start()
        started.append(exchange)
        return exchange

    yield make
    for exchange in started:
        exchange.stop()


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
        proc = subprocess.Popen(
            [sys.executable, str(MANAGER), *args],
            env=env,
            cwd=Path(env["EXPORT_DIR"]).parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        return proc

    return start
