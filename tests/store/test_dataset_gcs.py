"""The dataset in a GCS bucket (DATASET_URL=gs://..., issue 25) against a real GCS emulator on loopback
(conftest's ``gcs``: fake-gcs-server): the ``Objects`` contract of store.gcs_objects (generation conditions,
metadata, the store's clock), then the store's guarantees end to end (tested in depth for S3 in
test_dataset_s3.py: they are written once, in dataset_store.ObjectStore)."""

from __future__ import annotations

import threading
from typing import Any

import pyarrow.dataset as ds
import pytest

from crypto_data_export.backfill.archive_backfill import archive_backfill
from crypto_data_export.backfill.dataset_fill import DatasetFill
from crypto_data_export.core.errors import StorageError
from crypto_data_export.sandbox.fake_exchange import SandboxConfig
from crypto_data_export.settings.settings import load_settings
from crypto_data_export.store.dataset import Dataset
from crypto_data_export.store.dataset_store import MARKER, ObjectStore
from crypto_data_export.store.gcs_objects import GcsObjects
from tests.store.test_dataset_s3 import NOW, START, _candles, env_of, periods_in
from tests.support import cli_env, run_cli

OURS = ("ZIPDUSDT", "ZIPEUSDT")


def gs_env(exchange: Any, folder: Any, gcs: Any, **more: str) -> dict[str, str]:
    env = env_of(exchange, folder, EXPORT_SYMBOLS=",".join(OURS), **more)
    return env | {"DATASET_URL": f"gs://{gcs.bucket}/data", "DATASET_ENDPOINT_URL": gcs.endpoint} | more


def test_gcs_objects_keep_the_contract(gcs) -> None:
    objects = GcsObjects(f"gs://{gcs.bucket}/data", gcs.endpoint)
    first = objects.put("a/x", b"one", {MARKER: "me"}, None)
    assert first is not None and objects.put("a/x", b"two", {MARKER: "me"}, None) is None  # 412: it exists
    head = objects.head("a/x")
    assert head is not None and (head.version, head.metadata) == (first, {MARKER: "me"})
    assert head.modified <= head.now and head.now.tzinfo is not None  # the store's clock, whole seconds both
    second = objects.put("a/x", b"two", {MARKER: "me"}, first)
    assert second not in (None, first) and objects.put("a/x", b"three", {}, first) is None  # a stale version
    assert (objects.get("a/x", second), objects.get("a/x", first)) == (b"two", None)  # type: ignore[arg-type]
    with pytest.raises(StorageError, match="gs://"):
        objects.copy("a/x", "q/x", first)  # the source is no longer that version
    objects.copy("a/x", "q/x", second)  # type: ignore[arg-type]
    copied = objects.head("q/x")
    assert copied is not None and copied.metadata == {MARKER: "me"} and objects.get("q/x", copied.version) == b"two"
    # (A stale delete is refused by GCS (412); the emulator's bundled build does not check it yet.)
    assert objects.delete("a/x", second) and objects.head("a/x") is None  # type: ignore[arg-type]
    assert not objects.delete("a/x", second)  # type: ignore[arg-type]
    ObjectStore(f"gs://{gcs.bucket}/data", objects).check(writes=True)  # the probe: a second create refused
    assert gcs.keys() == ["q/x"]


def test_a_backfill_into_a_gcs_bucket_is_the_dataset_on_disk_with_one_writer_a_series(
    gcs, sandbox_factory, tmp_path
) -> None:
    exchange = sandbox_factory(SandboxConfig(now_ms=NOW, extra_symbols=OURS))
    env, disk_env = (
        gs_env(exchange, tmp_path / "gs", gcs),
        env_of(exchange, tmp_path / "disk", EXPORT_SYMBOLS=",".join(OURS)),
    )
    bucket = Dataset.from_settings(load_settings(env, env_file=None))
    foreign = bucket.store.key(bucket.period_path(bucket.series_of(OURS[0], "1h"), NOW))  # type: ignore[union-attr]
    gcs.client().bucket(gcs.bucket).blob(foreign).upload_from_string(b"someone else's file")  # no cdx-writer
    for run_env, dataset in ((disk_env, None), (env, bucket)):
        settings, stop = load_settings(run_env, env_file=None), threading.Event()
        fill = DatasetFill(dataset or Dataset.from_settings(settings), stop, (START, NOW))
        result = archive_backfill(settings, "auto", stop_event=stop, window=(START, NOW), fill=fill)
        assert [o.symbol for o in result.report.failed] == ([OURS[0]] if dataset else [])
    assert "not written by this tool" in str(result.report.failed[0].error)
    assert gcs.client().bucket(gcs.bucket).blob(foreign).download_as_bytes() == b"someone else's file"
    gcs.client().bucket(gcs.bucket).blob(foreign).delete()  # (a reader would set it aside: not a period)
    disk, stored = periods_in(Dataset.from_settings(load_settings(disk_env, env_file=None))), periods_in(bucket)
    assert stored and stored.keys() == {k for k in disk if OURS[1] in k}
    assert all(stored[k][0].equals(disk[k][0]) and stored[k][1:] == disk[k][1:] for k in stored)
    rows = ds.dataset(
        f"{gcs.bucket}/data",
        filesystem=bucket.store.fs,
        partitioning=ds.HivePartitioning.discover(infer_dictionary=True),
    )  # type: ignore[union-attr]
    assert rows.count_rows() == sum(v[1][3] for v in stored.values())  # a reader sees every candle once

    other = Dataset.from_settings(load_settings(env, env_file=None))
    series = bucket.series_of("BTCUSDT", "1h")
    with bucket.lock(series, wait=False) as held:
        assert held
        with other.lock(series, wait=False) as also:
            assert not also  # a live lease: the second writer skips the series
        with pytest.raises(StorageError, match="written without its series' lease"):
            other.write_period(series, NOW, _candles(), [])
    url = f"gs://{gcs.bucket}/data"
    short = Dataset(bucket.root, "h", "spot", store=ObjectStore(url, GcsObjects(url, gcs.endpoint), 0))
    with short.lock(series, wait=False) as held, other.lock(series, wait=False) as taken:
        assert held and taken  # a crashed holder's lease (over at once) is taken over, by the store's clock
    assert not [k for k in gcs.keys() if k.endswith(".lease")]  # each released by its last holder


def test_a_missing_gcs_bucket_is_one_line_and_exit_2(gcs, sandbox, tmp_path) -> None:
    env = gs_env(sandbox, tmp_path, gcs, DATASET_URL="gs://no-such-bucket/data")
    run = run_cli(
        "export_historical_data.py", "--days", "1", env=cli_env(sandbox.base_url, tmp_path, **env), cwd=tmp_path
    )
    expected = f"the bucket no-such-bucket does not exist at {gcs.endpoint}: create it or fix DATASET_URL"
    assert (run.returncode, run.stdout, run.stderr) == (2, "", f"error: {expected}\n")
    assert gcs.keys() == [] and not list(tmp_path.glob("**/*.parquet"))
