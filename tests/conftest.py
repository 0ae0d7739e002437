"""Shared pytest fixtures: real sandbox exchanges on 127.0.0.1, OS-chosen ports."""

from __future__ import annotations

from typing import Callable, Iterator

import pytest

from sandbox_exchange import SandboxConfig, SandboxExchange


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
