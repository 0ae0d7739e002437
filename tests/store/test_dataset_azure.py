"""The dataset in an Azure Blob container (``az://container/prefix``, issue 25) against Azurite, the Azure
Storage emulator from the npm registry, started here on loopback (one per test worker, an OS-chosen port):
the ``Objects`` contract of ``store.azure_objects`` (conditional create, replace, read, delete and copy on
the ETag, metadata kept, the store's clock) and one line naming what to fix for a store that cannot be used."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.dataset as pads
import pytest
from azure.storage.blob import ContainerClient
from pyarrow import fs

from crypto_data_export.core.errors import StorageError, StoreSetupError
from crypto_data_export.core.exit_codes import EXIT_USAGE
from crypto_data_export.settings.settings import load_settings
from crypto_data_export.store.azure_objects import AzureObjects
from crypto_data_export.store.dataset import Dataset
from crypto_data_export.store.dataset_store import LOCK_NAME, MARKER, ObjectStore
from tests.scheduler.test_dataset_bucket import _offline_duckdb
from tests.store.test_dataset_s3 import NOW, _candles
from tests.support import cli_env, free_port, run_cli, serving

AZURITE = "3.35.0"
ACCOUNT = "devstoreaccount1"  # Azurite's development account and its published key
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
AZURITE_HOME = Path.home() / ".cache" / "crypto_data_export" / f"azurite-{AZURITE}"


def install_azurite() -> None:
    """Azurite from the npm registry into the user's cache: a set-up step (``.ci/run`` calls it), never a
    test's, so no test touches the network."""
    AZURITE_HOME.mkdir(parents=True, exist_ok=True)
    npm = ["npm", "install", "--prefix", str(AZURITE_HOME), "--no-audit", "--no-fund", f"azurite@{AZURITE}"]
    subprocess.run(npm, check=True, stdout=subprocess.DEVNULL, timeout=600)


def azurite_command() -> Path:
    """Azurite's blob server as ``install_azurite`` left it; the tests are skipped, saying how to install it,
    where it is not (a machine without Node.js)."""
    command = AZURITE_HOME / "node_modules" / ".bin" / "azurite-blob"
    if shutil.which("node") is None or not command.exists():
        pytest.skip(
            "the Azure tests need Azurite: apt-get install nodejs npm, then python -c "
            "'from tests.store.test_dataset_azure import install_azurite; install_azurite()' (.ci/run does)"
        )
    return command


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Azurite per test worker, in memory, no telemetry; the account's blob endpoint."""
    command, folder = azurite_command(), tmp_path_factory.mktemp("azurite")
    flags = ["--blobHost", "127.0.0.1", "--blobPort", "0", "--inMemoryPersistence", "--extentMemoryLimit", "64"]
    command = [str(command), *flags, "--skipApiVersionCheck", "--disableTelemetry", "--silent"]
    with serving(command, folder / "azurite.log", r"listens on (http://127\.0\.0\.1:\d+)", cwd=folder) as url:
        yield f"{url}/{ACCOUNT}"


def connection(endpoint: str, key: str = KEY) -> str:
    return f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={key};BlobEndpoint={endpoint};"


@pytest.fixture
def objects(azurite: str, monkeypatch: pytest.MonkeyPatch) -> AzureObjects:
    """A new empty container of the worker's Azurite (tests never share one), credentials in the standard
    variable."""
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", connection(azurite))
    store = AzureObjects(f"az://test-{uuid.uuid4().hex[:16]}/data")
    store.container.create_container()
    return store


def test_conditional_create_replace_read_delete_on_the_etag(objects: AzureObjects) -> None:
    first = objects.put("data/a.parquet", b"one", {"cdx-writer": "me", "cdx-lease-seconds": "600"}, None)
    assert first and objects.put("data/a.parquet", b"two", {"cdx-writer": "other"}, None) is None
    head = objects.head("data/a.parquet")
    assert head is not None and head.version == first
    assert head.metadata == {"cdx-writer": "me", "cdx-lease-seconds": "600"}  # as written, in Azure's names
    assert head.modified.tzinfo is not None and head.now.tzinfo is not None and head.modified <= head.now

    second = objects.put("data/a.parquet", b"two", {"cdx-writer": "me"}, first)
    assert second and second != first
    assert objects.put("data/a.parquet", b"three", {"cdx-writer": "me"}, first) is None  # stale version
    assert objects.get("data/a.parquet", first) is None
    assert objects.get("data/a.parquet", second) == b"two"

    assert objects.delete("data/a.parquet", first) is False
    assert objects.get("data/a.parquet", second) == b"two"
    assert objects.delete("data/a.parquet", second) is True
    assert objects.head("data/a.parquet") is None and objects.get("data/a.parquet", second) is None
    assert objects.delete("data/a.parquet", second) is False


def test_copy_only_of_the_version_seen_keeping_metadata(objects: AzureObjects) -> None:
    version = objects.put("data/a.parquet", b"one", {"cdx-writer": "me"}, None)
    assert version
    objects.copy("data/a.parquet", "data/.quarantine/a.parquet.quarantined", version)
    copied = objects.head("data/.quarantine/a.parquet.quarantined")
    assert copied is not None and copied.metadata == {"cdx-writer": "me"}
    assert objects.get("data/.quarantine/a.parquet.quarantined", copied.version) == b"one"

    newer = objects.put("data/a.parquet", b"two", {"cdx-writer": "me"}, version)
    assert newer
    with pytest.raises(StorageError, match="changed meanwhile"):
        objects.copy("data/a.parquet", "data/b.parquet", version)
    assert objects.head("data/b.parquet") is None


def test_a_body_changed_on_its_way_is_refused_by_the_service(objects: AzureObjects, azurite: str) -> None:
    """The put's Content-MD5: the service keeps no body other than the one the checksum was made of."""

    def corrupt(request: Any) -> None:
        if request.http_request.method == "PUT" and request.http_request.data:
            request.http_request.data = b"X" + request.http_request.data[1:]

    objects.container = ContainerClient.from_connection_string(
        connection(azurite), objects.bucket, raw_request_hook=corrupt
    )
    with pytest.raises(StorageError, match="upload_blob"):
        objects.put("data/a.parquet", b"the period", {"cdx-writer": "me"}, None)
    assert objects.head("data/a.parquet") is None


def test_pyarrow_lists_and_reads_the_container(objects: AzureObjects) -> None:
    objects.put("data/BTCUSDT/1h/2024-01.parquet", b"x" * 1000, {"cdx-writer": "me"}, None)
    filesystem = objects.filesystem()
    found = filesystem.get_file_info(fs.FileSelector(f"{objects.bucket}/data", recursive=True))
    assert [(i.path, i.size) for i in found if i.is_file] == [
        (f"{objects.bucket}/data/BTCUSDT/1h/2024-01.parquet", 1000)
    ]
    with filesystem.open_input_file(f"{objects.bucket}/data/BTCUSDT/1h/2024-01.parquet") as source:
        source.seek(990)
        assert source.read() == b"x" * 10


def test_a_store_that_cannot_be_used_says_what_to_fix(
    objects: AzureObjects, azurite: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects.check_bucket()
    cases = {
        "does not exist": connection(azurite),
        "refused the credentials": connection(azurite, key=base64.b64encode(b"wrong" * 12).decode()),
        "cannot reach": connection(f"http://127.0.0.1:{free_port()}/{ACCOUNT}"),
    }
    for what, setting in cases.items():
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", setting)
        bucket = "no-such-container" if what == "does not exist" else objects.bucket
        with pytest.raises(StoreSetupError, match=what) as raised:
            AzureObjects(f"az://{bucket}/data").check_bucket()
        assert "\n" not in str(raised.value)
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING")
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_NAME", raising=False)
    with pytest.raises(StoreSetupError, match="AZURE_STORAGE_CONNECTION_STRING"):
        AzureObjects(f"az://{objects.bucket}/data")


def test_a_series_written_to_a_container_through_the_dataset(objects: AzureObjects, azurite: str, monkeypatch) -> None:
    """DATASET_URL=az://... (the account and key variables, DATASET_ENDPOINT_URL for Azurite): the store is
    probed for conditional writes, a series is written under its lease, marked, and pyarrow.dataset and DuckDB
    read it back from the container; a live lease refuses a second writer, an expired one is taken over."""
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", ACCOUNT)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", KEY)
    env = {"EXPORT_DIR": "/nonexistent", "EXPORT_LAYOUT": "dataset", "DATASET_ENDPOINT_URL": azurite}
    settings = load_settings(env | {"DATASET_URL": f"az://{objects.bucket}/data"}, env_file=None)
    dataset, other = Dataset.from_settings(settings), Dataset.from_settings(settings)
    assert isinstance(dataset.store, ObjectStore) and dataset.store.name(dataset.root) == f"az://{objects.bucket}/data"
    series, candles = dataset.series_of("BTCUSDT", "1h"), _candles()
    lease = f"{dataset.store.key(dataset.series_folder(series))}/{LOCK_NAME}"
    with dataset.lock(series, wait=False) as held:
        assert held and (head := objects.head(lease)) is not None and head.metadata[MARKER] == dataset.store.writer
        with other.lock(series, wait=False) as also:
            assert not also
        dataset.write_period(series, NOW, candles, [])
    assert objects.head(lease) is None  # released
    period = objects.head(dataset.store.key(dataset.period_path(series, NOW)))  # marked
    assert period is not None and period.metadata[MARKER] == dataset.store.writer

    hive = pads.HivePartitioning.discover(infer_dictionary=True)  # as the README reads the dataset
    read = pads.dataset(f"{objects.bucket}/data", filesystem=objects.filesystem(), partitioning=hive).to_table()
    assert read.num_rows == len(candles) and set(read.column("symbol").to_pylist()) == {"BTCUSDT"}
    duckdb = _offline_duckdb().connect()  # and DuckDB, through its azure extension (PyPI: duckdb-ext-azure)
    duckdb.sql("LOAD azure")
    duckdb.sql(f"CREATE SECRET (TYPE AZURE, CONNECTION_STRING '{connection(azurite)}')")
    query = f"SELECT count(*), count(DISTINCT open_time) FROM read_parquet('az://{objects.bucket}/data/**/*.parquet')"
    assert duckdb.sql(query).fetchone() == (len(candles), len(candles))

    expired = ObjectStore(f"az://{objects.bucket}/data", AzureObjects(f"az://{objects.bucket}/data", azurite), 0)
    with Dataset(expired.root, "api.binance.com", "spot", store=expired).lock(series, wait=False) as held:
        assert held  # a crashed holder's lease: over as soon as written (its lifetime in it, the store's clock)
        with other.lock(series, wait=False) as taken:
            assert taken
    left = objects.filesystem().get_file_info(fs.FileSelector(objects.bucket, recursive=True))
    period_key = dataset.store.key(dataset.period_path(series, NOW))
    assert [i.path for i in left if i.is_file] == [f"{objects.bucket}/{period_key}"]  # no lease or probe left


def test_wrong_credentials_are_one_line_and_exit_2_with_nothing_written(
    objects: AzureObjects, azurite: str, sandbox, tmp_path
) -> None:
    wrong = connection(azurite, key=base64.b64encode(b"wrong" * 12).decode())
    env = cli_env(sandbox.base_url, tmp_path, EXPORT_LAYOUT="dataset", DATASET_URL=f"az://{objects.bucket}/data",
                  AZURE_STORAGE_CONNECTION_STRING=wrong)  # fmt: skip
    run = run_cli("export_historical_data.py", "--days", "1", env=env, cwd=tmp_path)
    assert (run.returncode, run.stdout) == (EXIT_USAGE, "")
    assert re.fullmatch(r"error: the store at \S+ refused the credentials for az://\S+ \(\w+\): check .*\n", run.stderr)
    assert not list(objects.container.list_blobs()) and not list(tmp_path.glob("**/*.parquet"))


def test_a_cloud_account_is_read_through_its_own_blob_and_dfs_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    """No emulator: the account in the host name (Azure, or a sovereign cloud's DATASET_ENDPOINT_URL)."""
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "acct")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", KEY)
    for endpoint, suffix in (
        ("", "core.windows.net"),
        ("https://acct.blob.core.chinacloudapi.cn", "core.chinacloudapi.cn"),
    ):
        objects = AzureObjects("az://market-data/crypto", endpoint)
        options = objects.filesystem().__reduce__()[1][0]  # what pyarrow pickles: its options
        assert objects.where == f"the store at https://acct.blob.{suffix}"
        assert (options["blob_storage_authority"], options["dfs_storage_authority"]) == (
            f".blob.{suffix}",
            f".dfs.{suffix}",
        )
