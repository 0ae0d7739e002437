"""An Azure Blob Storage container (``az://container/prefix``) as ``dataset_store.Objects``: azure-storage-blob
for the conditional writes (If-None-Match: * / If-Match on the ETag, a Content-MD5 the service checks), pyarrow's
AzureFileSystem for listing and reads. Metadata names are C# identifiers there: ``cdx-writer`` is ``cdx_writer``."""

from __future__ import annotations

import email.utils
import os
import time
from typing import Any
from urllib.parse import urlparse

from pyarrow import fs

from crypto_data_export.core.errors import StorageError, StoreSetupError
from crypto_data_export.store.dataset_store import ObjectHead

QUIET = ("BlobNotFound", "ConditionNotMet", "BlobAlreadyExists")  # no object; a condition failed
CREDENTIALS = "set AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY"


class AzureObjects:
    """One container; credentials from AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT_NAME with
    AZURE_STORAGE_ACCOUNT_KEY; ``endpoint``: the account's blob endpoint (Azurite
    ``http://127.0.0.1:10000/devstoreaccount1``, a sovereign cloud)."""

    scheme = "az"

    def __init__(self, url: str, endpoint: str = "") -> None:
        self.bucket, self.url, env = urlparse(url).netloc, url.rstrip("/"), os.environ
        try:
            from azure.core import MatchConditions, exceptions
            from azure.storage.blob import BlobServiceClient
        except ImportError as exc:
            raise StoreSetupError(f"DATASET_URL={url} needs azure-storage-blob: "
                                  "pip install 'crypto-data-export[azure]'") from exc  # fmt: skip
        self._match, self._errors = MatchConditions, exceptions
        # an endpoint that does not answer is a setting to fix (one line, at once); a failed answer is retried
        options: dict[str, Any] = {"retry_connect": 0, "initial_backoff": 1, "connection_timeout": 5}
        if connection := env.get("AZURE_STORAGE_CONNECTION_STRING"):
            service = BlobServiceClient.from_connection_string(connection, **options)
            account, key = service.account_name, getattr(service.credential, "account_key", None)
        else:
            account, key = env.get("AZURE_STORAGE_ACCOUNT_NAME"), env.get("AZURE_STORAGE_ACCOUNT_KEY")
        if not account or not key:
            raise StoreSetupError(f"no Azure account key for {url}: {CREDENTIALS}")
        if endpoint or not connection:
            credential = {"account_name": account, "account_key": key}
            service = BlobServiceClient(endpoint or f"https://{account}.blob.core.windows.net", credential, **options)
        self.account, self.key, self.container = account, key, service.get_container_client(self.bucket)
        self.where = f"the store at {service.url.rstrip('/')}"

    def filesystem(self) -> fs.FileSystem:
        """The account's blob endpoint in pyarrow's terms: ``host:port`` for an emulator (the account in the
        path), ``.blob.<suffix>`` for a cloud (the account in the host name)."""
        parsed = urlparse(self.container.url)
        path_style = parsed.path.strip("/") != f"{self.bucket}"
        host = parsed.netloc if path_style else parsed.netloc.removeprefix(self.account)
        return fs.AzureFileSystem(  # type: ignore[call-arg]  # pyarrow-stubs: *_schema
            self.account,
            account_key=self.key,
            blob_storage_authority=host,
            blob_storage_scheme=parsed.scheme,
            dfs_storage_authority=host if path_style else host.replace(".blob.", ".dfs.", 1),
            dfs_storage_scheme=parsed.scheme,
        )

    def check_bucket(self) -> None:
        self._call(None, "get_container_properties")

    def head(self, key: str) -> ObjectHead | None:
        dates: list[str] = []
        hook = lambda answer: dates.append(answer.http_response.headers["Date"])  # noqa: E731
        if (blob := self._call(key, "get_blob_properties", raw_response_hook=hook)) is None:
            return None
        metadata = {name.lower().replace("_", "-"): value for name, value in blob.metadata.items()}
        return ObjectHead(blob.etag, metadata, blob.last_modified, email.utils.parsedate_to_datetime(dates[-1]))

    def put(self, key: str, body: bytes, metadata: dict[str, str], if_version: str | None) -> str | None:
        condition = self._on(if_version) if if_version else {"match_condition": self._match.IfMissing}
        metadata = {name.replace("-", "_"): value for name, value in metadata.items()}
        answer = self._call(key, "upload_blob", body, overwrite=True, metadata=metadata, validate_content=True,
                            **condition)  # fmt: skip
        return None if answer is None else str(answer["etag"])

    def get(self, key: str, if_version: str) -> bytes | None:
        answer = self._call(key, "download_blob", validate_content=True, **self._on(if_version))
        try:
            return None if answer is None else bytes(answer.readall())
        except self._errors.AzureError as exc:
            raise StorageError(f"cannot read az://{self.bucket}/{key}: {exc}") from exc

    def delete(self, key: str, if_version: str) -> bool:
        return self._call(key, "delete_blob", **self._on(if_version)) is not None

    def copy(self, source_key: str, target_key: str, if_version: str) -> None:
        """Copy Blob (within the account: the target's credentials authorise it); the service copies the
        source's metadata and, across accounts, may finish later: its status is polled (a minute at most)."""
        source = self.container.get_blob_client(source_key).url
        answer = self._call(target_key, "start_copy_from_url", source, source_etag=if_version,
                            source_match_condition=self._match.IfNotModified)  # fmt: skip
        if answer is None:
            raise StorageError(f"az://{self.bucket}/{source_key} changed meanwhile; it is not copied")
        status, polls = answer["copy_status"], 120
        while status == "pending" and (polls := polls - 1):
            time.sleep(0.5)
            status = self._call(target_key, "get_blob_properties").copy.status
        if status != "success":
            raise StorageError(f"copy az://{self.bucket}/{source_key} to {target_key}: {status}")

    def _on(self, version: str) -> dict[str, Any]:
        return {"etag": version, "match_condition": self._match.IfNotModified}

    def _call(self, key: str | None, method: str, *args: Any, **kwargs: Any) -> Any:
        """A call on ``key``'s blob (None: the container); its answer (True for none), None for an error code
        in QUIET; a store that cannot be used as StoreSetupError naming what to fix; else StorageError."""
        client = self.container if key is None else self.container.get_blob_client(key)
        try:
            answer = getattr(client, method)(*args, **kwargs)
        except self._errors.HttpResponseError as exc:
            code = getattr(exc, "error_code", None)
            code = str(getattr(code, "value", code) or exc.status_code)
            if code in QUIET:
                return None
            if exc.status_code == 403 or isinstance(exc, self._errors.ClientAuthenticationError):
                raise StoreSetupError(f"{self.where} refused the credentials for {self.url} ({code}): check "
                                      f"{CREDENTIALS.removeprefix('set ')}") from exc  # fmt: skip
            if code == "ContainerNotFound":
                raise StoreSetupError(f"the container {self.bucket} does not exist in {self.where}: create it "
                                      "or fix DATASET_URL") from exc  # fmt: skip
            raise StorageError(f"{method} az://{self.bucket}/{key or ''}: {code}") from exc
        except self._errors.ServiceRequestError as exc:
            raise StoreSetupError(f"cannot reach {self.where} ({exc}): check DATASET_ENDPOINT_URL") from exc
        except self._errors.AzureError as exc:
            raise StorageError(f"{method} az://{self.bucket}/{key or ''}: {exc}") from exc
        return True if answer is None else answer
