"""The dataset in an S3 bucket (DATASET_URL, issue 25) against a real S3-protocol server (conftest's ``s3``:
moto_server on loopback): the same dataset as on disk, marked conditional uploads, the series' lease, and
one line with exit 2 for a store that cannot be used. A small front (``StoreFront``, this module) stands
between the tool and moto only where a test needs a store moto is not: one that refuses the credentials,
ignores conditional writes, or takes an upload slowly enough to SIGKILL its writer in the middle."""

from __future__ import annotations

import http.client
import logging
import re
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from crypto_data_export.backfill.archive_backfill import archive_backfill
from crypto_data_export.backfill.dataset_fill import DatasetFill
from crypto_data_export.core.clock import ms_to_iso
from crypto_data_export.core.errors import StopRequested, StorageError, StoreSetupError
from crypto_data_export.core.exit_codes import EXIT_USAGE, exit_code_for
from crypto_data_export.core.intervals import HOUR_MS
from crypto_data_export.sandbox.fake_exchange import SandboxConfig
from crypto_data_export.scheduler.manager import ScheduledDataManager
from crypto_data_export.settings.settings import load_settings
from crypto_data_export.store.dataset import Dataset
from crypto_data_export.store.dataset_store import MARKER, ObjectStore
from crypto_data_export.store.freqtrade_export import export_freqtrade, export_sources
from crypto_data_export.store.s3_objects import S3Objects
from tests.support import HANG_GUARD, cli_env, free_port, run_cli, start_cli, wait_until

OURS = ("ZIPDUSDT", "ZIPEUSDT")
NOW = int(time.time() * 1000) // HOUR_MS * HOUR_MS - 4 * HOUR_MS + HOUR_MS // 2  # as test_dataset_cycle's
START = NOW // HOUR_MS * HOUR_MS - 50 * HOUR_MS
UPLOADED = re.compile(r"^uploaded s3://[^/]+/(\S+) .* by (\S+)$")


def iso(ms: int) -> str:
    return str(ms_to_iso(ms))[:19].replace(" ", "T")


def env_of(exchange: Any, folder: Path, s3: Any = None, **more: str) -> dict[str, str]:
    env = {"BINANCE_BASE_URL": exchange.base_url, "BINANCE_ARCHIVE_URL": exchange.base_url, "EXPORT_DIR": str(folder)}
    env |= {"EXPORT_LAYOUT": "dataset", "EXPORT_SYMBOLS": ",".join(OURS), "KLINE_INTERVAL": "1h"}
    env |= {"EXPORT_LOOKBACK_DAYS": "1", "LOG_LEVEL": "WARNING"}
    if s3 is not None:
        env |= {"DATASET_URL": f"s3://{s3.bucket}/data", "DATASET_ENDPOINT_URL": s3.endpoint}
    return env | more


def backfill(env: dict[str, str], dataset: Dataset | None = None) -> DatasetFill:
    settings = load_settings(env, env_file=None)
    stop = threading.Event()
    fill = DatasetFill(dataset or Dataset.from_settings(settings), stop, (START, NOW))
    result = archive_backfill(settings, "auto", stop_event=stop, window=(START, NOW), fill=fill)
    assert result.report.ok, [o.error for o in result.report.failed]
    return fill


def uploads(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [m[1] for r in caplog.records if (m := UPLOADED.match(r.getMessage()))]


def periods_in(dataset: Dataset) -> dict[str, tuple[Any, ...]]:
    """Each period: its rows and footer, by its path under the root (what a reader sees)."""
    found = {}
    for series in dataset.all_series():
        for info in dataset.periods(series):
            with dataset.store.open(info.path) as source:
                table = pq.read_table(source).replace_schema_metadata(None)
            footer = (info.series, info.start_ms, info.expected, info.present, info.gaps, info.complete)
            found[str(info.path.relative_to(dataset.root))] = (table, footer, info.sources)
    return found


@pytest.fixture
def aws(s3: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    return s3


def test_a_backfill_and_a_cycle_into_a_bucket_make_the_dataset_they_make_on_disk(
    aws, sandbox_factory, tmp_path, caplog
) -> None:
    exchange = sandbox_factory(SandboxConfig(now_ms=NOW, extra_symbols=OURS))
    caplog.set_level(logging.INFO, logger="crypto_data_export.store.dataset_store")
    for env in (env_of(exchange, tmp_path / "disk"), env_of(exchange, tmp_path / "bucket", aws)):
        backfill(env)
        report = ScheduledDataManager(load_settings(env, env_file=None)).run_cycle()
        assert report.exit_code == 0, [o.error for o in report.export.outcomes.values()]
    disk = Dataset.from_settings(load_settings(env_of(exchange, tmp_path / "disk"), env_file=None))
    bucket = Dataset.from_settings(load_settings(env_of(exchange, tmp_path / "bucket", aws), env_file=None))
    stored = periods_in(bucket)
    assert stored.keys() == periods_in(disk).keys() and len(stored) >= len(OURS)
    assert all(stored[k][0].equals(v[0]) and stored[k][1:] == v[1:] for k, v in periods_in(disk).items())
    keys = aws.keys()
    assert [k for k in keys if k.endswith(".parquet")] == sorted(f"data/{k}" for k in stored)
    assert keys == [k for k in keys if k.endswith(".parquet")]  # no lease, probe or temp object is left
    assert all(MARKER in aws.client().head_object(Bucket=aws.bucket, Key=k)["Metadata"] for k in keys)
    assert not list((tmp_path / "bucket").glob("**/*.parquet"))  # nothing of the dataset on local disk

    status = [  # --status: completeness from the footers (of the objects: by ranges), kept on local disk
        ScheduledDataManager(load_settings(env_of(exchange, tmp_path / place, *more), env_file=None)).write_status()
        for place, more in (("disk", ()), ("bucket", (aws,)))
    ]
    assert status[0]["dataset"] == status[1]["dataset"] and len(status[1]["dataset"]["series"]) == len(OURS)
    assert (tmp_path / "bucket" / ".dataset_footers.json").is_file()
    for place, more in (("disk", ()), ("bucket", (aws,))):  # file_manager.py export-freqtrade
        export_freqtrade(
            export_sources(load_settings(env_of(exchange, tmp_path / place, *more), env_file=None))[1],
            tmp_path / place / "ft",
        )
    pairs = sorted(p.name for p in (tmp_path / "bucket" / "ft").iterdir())
    assert pairs == ["ZIPD_USDT-1h.feather", "ZIPE_USDT-1h.feather"]
    assert all(feather.read_table(tmp_path / p / "ft" / pairs[0]).num_rows > 40 for p in ("disk", "bucket"))
    assert all(
        feather.read_table(tmp_path / "disk" / "ft" / n).equals(feather.read_table(tmp_path / "bucket" / "ft" / n))
        for n in pairs
    )

    caplog.clear()  # the same backfill again: every period is there, nothing is uploaded
    backfill(env_of(exchange, tmp_path / "bucket", aws))
    assert uploads(caplog) == []


def test_an_object_without_our_marker_is_never_replaced_and_a_bad_one_of_ours_is_set_aside(
    aws, sandbox_factory, tmp_path, caplog
) -> None:
    exchange = sandbox_factory(SandboxConfig(now_ms=NOW, extra_symbols=OURS))
    env = env_of(exchange, tmp_path, aws)
    dataset = Dataset.from_settings(load_settings(env, env_file=None))
    key, ours = (dataset.store.key(dataset.period_path(dataset.series_of(s, "1h"), NOW)) for s in OURS)
    aws.client().put_object(Bucket=aws.bucket, Key=key, Body=b"someone else's file")  # no cdx-writer
    aws.client().put_object(Bucket=aws.bucket, Key=ours, Body=b"torn", Metadata={MARKER: "an earlier run"})
    settings = load_settings(env, env_file=None)
    result = archive_backfill(settings, "auto", window=(START, NOW), fill=DatasetFill(dataset, threading.Event()))
    assert [o.symbol for o in result.report.failed] == [OURS[0]]
    assert "not written by this tool" in str(result.report.failed[0].error)
    assert aws.client().get_object(Bucket=aws.bucket, Key=key)["Body"].read() == b"someone else's file"
    assert [r.getMessage() for r in caplog.records if "has no cdx-writer" in r.getMessage()] == [
        f"s3://{aws.bucket}/{key} has no cdx-writer metadata: not ours, never replaced or removed"
    ]
    # Ours but not a period: moved out of every reader's glob (a dot-folder, no .parquet suffix), then written.
    assert [k for k in aws.keys() if OURS[1] in k] == [f"data/.quarantine/{ours[5:]}.quarantined", ours]
    assert (
        aws.client().get_object(Bucket=aws.bucket, Key=f"data/.quarantine/{ours[5:]}.quarantined")["Body"].read()
        == b"torn"
    )
    assert dataset.read_period(dataset.series_of(OURS[1], "1h"), NOW) is not None


def test_a_live_lease_refuses_a_second_writer_and_an_expired_one_is_taken_over(aws, tmp_path) -> None:
    def store(lease_seconds: float) -> Dataset:
        url = f"s3://{aws.bucket}/data"
        bucket = ObjectStore(url, S3Objects(url, aws.endpoint), lease_seconds)
        return Dataset(bucket.root, "api.binance.com", "spot", store=bucket)

    first, second = store(600), store(600)
    series = first.series_of("BTCUSDT", "1h")
    with first.lock(series, wait=False) as held:
        assert held
        with second.lock(series, wait=False) as also:
            assert not also  # the cycle skips the series
        with pytest.raises(StorageError, match="written without its series' lease"):
            second.write_period(series, NOW, _candles(), [])
        stop = threading.Event()
        stop.set()  # SIGTERM: a backfill waiting for the lease ends at once
        with pytest.raises(StopRequested), second.lock(series, wait=True, stop=stop):
            pass
    with second.lock(series, wait=False) as held:  # released: free again
        assert held
    short = store(0)  # a lease whose lifetime is over as soon as it is written (a crashed holder's)
    with short.lock(series, wait=False) as held:
        assert held
        with second.lock(series, wait=False) as taken:
            assert taken  # by the store's clock, its lifetime written in the lease
            with pytest.raises(StorageError, match="lost the lease"):
                short.write_period(series, NOW, _candles(), [])  # renewed before the upload: refused
            assert not [k for k in aws.keys() if k.endswith(".parquet")]
    assert aws.keys() == []  # each lease removed by its holder; the one taken over only by its new holder


def _candles() -> Any:
    from crypto_data_export.exchange.klines import rows_to_frame
    from crypto_data_export.sandbox.fake_exchange import generate_candle

    opens = [NOW // HOUR_MS * HOUR_MS - 2 * HOUR_MS]
    return rows_to_frame([generate_candle("BTCUSDT", "1h", t) for t in opens])


def test_two_backfills_at_once_never_write_the_same_series(aws, sandbox_factory, tmp_path, caplog) -> None:
    symbols = ("ZIPDUSDT", "ZIPEUSDT", "ZIPFUSDT", "ZIPGUSDT")
    exchange = sandbox_factory(SandboxConfig(now_ms=NOW, extra_symbols=symbols))
    caplog.set_level(logging.INFO, logger="crypto_data_export.store.dataset_store")
    done: list[DatasetFill] = []
    envs = [env_of(exchange, tmp_path / f"host{i}", aws, EXPORT_SYMBOLS=",".join(symbols)) for i in range(2)]
    runs = [threading.Thread(target=lambda env=env: done.append(backfill(env))) for env in envs]  # two hosts
    for run in runs:
        run.start()
    for run in runs:
        run.join(HANG_GUARD)
    assert len(done) == 2  # both succeeded: the second waited for each series' lease, then found it stored
    writers: dict[str, set[str]] = {}  # series folder -> the runs that uploaded to it
    for record in caplog.records:
        if match := UPLOADED.match(record.getMessage()):
            writers.setdefault(match[1].rsplit("/", 1)[0], set()).add(match[2])
    assert len(writers) == len(symbols) and all(len(w) == 1 for w in writers.values()), writers


class StoreFront:
    """An HTTP front of the S3 server on loopback: every request is passed on as it came, except that
    ``mode`` "refuse-credentials" answers 403 InvalidAccessKeyId (as AWS does for an unknown key),
    "ignore-conditions" drops If-None-Match/If-Match (a store without conditional writes), "refuse-conditions"
    answers 501 NotImplemented to them, and
    "stall-upload" passes on only half of a period's upload body, then waits for its writer to die."""

    def __init__(self, upstream: str, mode: str) -> None:
        self.upstream, self.mode = upstream.split("://", 1)[1], mode
        self.stalled, self.cut = threading.Event(), threading.Event()
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def do_any(self) -> None:
                front.handle(self)

            do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = do_any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        size = int(request.headers.get("Content-Length") or 0)
        headers = {k: v for k, v in request.headers.items() if k.lower() != "connection"}
        conditional = "if-none-match" in {k.lower() for k in headers}
        if self.mode == "refuse-credentials" or self.mode == "refuse-conditions" and conditional:
            code = "InvalidAccessKeyId" if self.mode == "refuse-credentials" else "NotImplemented"
            body = f"<Error><Code>{code}</Code><Message>Not for you.</Message></Error>".encode()
            request.rfile.read(size)
            request.send_response(403 if code == "InvalidAccessKeyId" else 501)
            request.send_header("Content-Length", str(len(body) if request.command != "HEAD" else 0))
            request.send_header("Connection", "close")
            request.end_headers()
            request.wfile.write(body if request.command != "HEAD" else b"")
            return
        if self.mode == "ignore-conditions":
            headers = {k: v for k, v in headers.items() if k.lower() not in ("if-none-match", "if-match")}
        upstream = http.client.HTTPConnection(self.upstream, timeout=HANG_GUARD)
        if self.mode == "stall-upload" and request.command == "PUT" and request.path.split("?")[0].endswith(".parquet"):
            upstream.putrequest("PUT", request.path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers.items():
                upstream.putheader(name, value)
            upstream.endheaders(request.rfile.read(size // 2))  # half of the body reaches the store
            self.stalled.set()
            request.rfile.read(size - size // 2)  # returns at the writer's death (its socket closes)
            upstream.close()  # the store sees its client go away mid-body
            self.cut.set()
            return
        upstream.request(request.command, request.path, request.rfile.read(size), headers)
        answer = upstream.getresponse()
        body = answer.read()
        request.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("connection", "transfer-encoding", "content-length", "server", "date"):
                request.send_header(name, value)
        request.send_header("Content-Length", str(len(body) if request.command != "HEAD" else answer.length or 0))
        request.send_header("Connection", "close")
        request.end_headers()
        request.wfile.write(body)
        upstream.close()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def front(s3: Any) -> Any:
    fronts: list[StoreFront] = []

    def make(mode: str) -> StoreFront:
        fronts.append(StoreFront(s3.endpoint, mode))
        return fronts[-1]

    yield make
    for made in fronts:
        made.close()


@pytest.mark.parametrize("fault", ["credentials", "bucket", "conditions", "refused-conditions", "endpoint"])
def test_a_store_that_cannot_be_used_is_one_line_and_exit_2_with_nothing_written(
    fault, aws, front, sandbox_factory, tmp_path
) -> None:
    exchange = sandbox_factory(SandboxConfig(now_ms=NOW, extra_symbols=OURS))
    env = env_of(exchange, tmp_path, aws)
    endpoint = {
        "credentials": lambda: front("refuse-credentials").url,
        "conditions": lambda: front("ignore-conditions").url,
        "refused-conditions": lambda: front("refuse-conditions").url,
        "endpoint": lambda: f"http://127.0.0.1:{free_port()}",
        "bucket": lambda: aws.endpoint,
    }[fault]()
    env |= {"DATASET_ENDPOINT_URL": endpoint} | (
        {"DATASET_URL": "s3://no-such-bucket/data"} if fault == "bucket" else {}
    )
    expected = {
        "credentials": f"the store refused the credentials for s3://{aws.bucket}/data (403): "
        "check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and the bucket's permissions",
        "bucket": f"the bucket no-such-bucket does not exist at {endpoint}: create it or fix DATASET_URL",
        "conditions": f"the store at {endpoint} accepted a second create-only write of one object: it does not do "
        "conditional writes, which the series' leases need (use a store or version that does: S3, MinIO, Ceph, R2, "
        "GCS, Azure)",
        "refused-conditions": f"the store at {endpoint} does not implement put_object with conditions, which the "
        "series' leases need (use S3, MinIO, Ceph or R2)",
        "endpoint": f"cannot reach the store at {endpoint} (",
    }[fault]
    if fault == "credentials":  # the command: one line, exit 2
        run = run_cli("export_historical_data.py", "--days", "1", env=cli_env(exchange.base_url, tmp_path, **env,
                      **aws.env()), cwd=tmp_path)  # fmt: skip
        assert (run.returncode, run.stdout, run.stderr) == (2, "", f"error: {expected}\n")
    else:  # the same check in process (each command calls it before anything else)
        with pytest.raises(StoreSetupError) as caught:
            Dataset.from_settings(load_settings(env, env_file=None))
        assert str(caught.value).startswith(expected) and "\n" not in str(caught.value)
        assert exit_code_for(caught.value) == EXIT_USAGE
    assert aws.keys() == [] and not list(tmp_path.glob("**/*.parquet"))


def test_a_writer_killed_during_an_upload_leaves_no_object_and_the_rerun_completes(
    s3, front, sandbox_factory, tmp_path, monkeypatch
) -> None:
    exchange = sandbox_factory(SandboxConfig(now_ms=NOW, extra_symbols=OURS))
    stall = front("stall-upload")
    env = env_of(
        exchange, tmp_path, s3, DATASET_ENDPOINT_URL=stall.url, DATASET_LEASE_SECONDS="1", EXPORT_SYMBOLS=OURS[0]
    )
    env = cli_env(exchange.base_url, tmp_path, **env, **s3.env())
    child = start_cli("export_historical_data.py", "--start", iso(START), "--end", iso(NOW), env=env, cwd=tmp_path)
    try:
        wait_until(lambda: stall.stalled.is_set() or child.poll() is not None, "an upload under way")
        assert child.poll() is None, child.communicate()
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.communicate()
    wait_until(stall.cut.is_set, "the store to see the upload cut")
    assert [k for k in s3.keys() if not k.endswith("/.lease")] == []  # no object, whole or partial
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    backfill(env_of(exchange, tmp_path, s3, EXPORT_SYMBOLS=OURS[0]))  # waits out the dead writer's lease (1 s)
    assert s3.keys() and all(k.endswith(".parquet") and f"/symbol={OURS[0]}/" in k for k in s3.keys())
