"""Shared pytest fixtures: real sandbox exchanges and a real S3-protocol server on 127.0.0.1, OS-chosen ports."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from crypto_data_export.sandbox.fake_exchange import SandboxConfig, SandboxExchange
from tests.support import MANAGER, wait_until


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


@dataclass(frozen=True)
class S3Server:
    """moto's S3 server (its server mode, a separate process) on loopback, and a fresh bucket of it."""

    endpoint: str
    bucket: str
    access_key: str = "testing"
    secret_key: str = "testing"
    region: str = "us-east-1"

    def env(self) -> dict[str, str]:
        """The standard AWS variables a child process finds its credentials and region in."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One moto_server process per test worker, on an OS-chosen loopback port; its URL."""
    log = tmp_path_factory.mktemp("moto") / "moto_server.log"
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", "0"],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        found = wait_until(
            lambda: proc.poll() is None and re.search(r"Running on (http://127\.0\.0\.1:\d+)", log.read_text()),
            "moto_server listening",
        )
        yield found.group(1)
    finally:
        proc.kill()
        proc.wait(timeout=5)


@pytest.fixture
def s3(s3_endpoint: str) -> S3Server:
    """A new empty bucket on the worker's S3 server (tests never share one)."""
    server = S3Server(s3_endpoint, f"test-{uuid.uuid4().hex[:16]}")
    server.client().create_bucket(Bucket=server.bucket)
    return server
