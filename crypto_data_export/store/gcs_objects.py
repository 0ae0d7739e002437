"""A Google Cloud Storage bucket as ``dataset_store.Objects``: google-cloud-storage for conditional writes
(generation preconditions; a CRC32C the server verifies), pyarrow's GcsFileSystem for ranged reads."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlparse

from pyarrow import fs

from crypto_data_export.core.errors import StorageError, StoreSetupError
from crypto_data_export.store.dataset_store import ObjectHead


class GcsObjects:
    """One GCS bucket; credentials from the standard environment (GOOGLE_APPLICATION_CREDENTIALS, gcloud's, the
    metadata server); with DATASET_ENDPOINT_URL (or STORAGE_EMULATOR_HOST) an emulator, without credentials."""

    scheme = "gs"

    def __init__(self, url: str, endpoint: str = "") -> None:
        self.bucket, self.url = urlparse(url).netloc, url.rstrip("/")
        self.endpoint = endpoint or os.environ.get("STORAGE_EMULATOR_HOST", "")
        self.where = f"the store at {self.endpoint or 'GCS'}"
        try:
            import google.auth.exceptions
            from google.api_core import exceptions
            from google.cloud import storage
        except ImportError as exc:
            raise StoreSetupError(f"DATASET_URL={url} needs google-cloud-storage: pip install "
                                  "'crypto-data-export[gcs]'") from exc  # fmt: skip
        self._errors = exceptions
        self._retry = storage.retry.DEFAULT_RETRY.with_timeout(20)
        options = {"client_options": {"api_endpoint": self.endpoint}, "use_auth_w_custom_endpoint": False}
        try:
            self.client = storage.Client(**options if self.endpoint else {})
        except google.auth.exceptions.DefaultCredentialsError as exc:
            raise StoreSetupError(f"no credentials for {self.url}: set GOOGLE_APPLICATION_CREDENTIALS to a key "
                                  "file, or run `gcloud auth application-default login`") from exc  # fmt: skip
        self._bucket, self._answer = self.client.bucket(self.bucket), threading.local()
        # The store's clock: the Date header of each answer (per thread), read by ``head``.
        self.client._http.hooks["response"].append(
            lambda r, *_, **__: setattr(self._answer, "date", r.headers.get("Date"))
        )

    def filesystem(self) -> fs.FileSystem:
        host = self.endpoint.split("://", 1)[-1] or None
        scheme = "http" if self.endpoint.startswith("http://") else "https"
        listing = _Listing(
            anonymous=bool(host), endpoint_override=host, scheme=scheme, retry_time_limit=timedelta(seconds=20)
        )
        listing.objects = self
        return listing

    def check_bucket(self) -> None:
        self._call(None, lambda: list(self.client.list_blobs(self.bucket, max_results=1, **self._limits())))

    def head(self, key: str) -> ObjectHead | None:
        blob = self._call(key, lambda: self._bucket.get_blob(key, **self._limits()), self._errors.NotFound)
        if blob is None:
            return None  # (the Date header has whole seconds: so does the Last-Modified it is compared with)
        now, modified = parsedate_to_datetime(self._answer.date), blob.updated.replace(microsecond=0)
        return ObjectHead(str(blob.generation), dict(blob.metadata or {}), modified, now)

    def put(self, key: str, body: bytes, metadata: dict[str, str], if_version: str | None) -> str | None:
        blob = self._bucket.blob(key)
        blob.metadata = metadata  # generation 0: only if there is no live object
        condition = {"if_generation_match": int(if_version or 0), "checksum": "crc32c"}
        call = lambda: blob.upload_from_string(body, **condition, **self._limits()) or blob  # noqa: E731
        return None if self._call(key, call, self._errors.PreconditionFailed) is None else str(blob.generation)

    def get(self, key: str, if_version: str) -> bytes | None:
        blob = self._bucket.blob(key, generation=int(if_version))
        return self._call(key, lambda: blob.download_as_bytes(if_generation_match=int(if_version), **self._limits()),
                          self._errors.NotFound, self._errors.PreconditionFailed)  # fmt: skip

    def delete(self, key: str, if_version: str) -> bool:
        condition = {"generation": int(if_version), "if_generation_match": int(if_version)}
        call = lambda: self._bucket.delete_blob(key, **condition, **self._limits()) or True  # noqa: E731
        return self._call(key, call, self._errors.NotFound, self._errors.PreconditionFailed) is not None

    def copy(self, source_key: str, target_key: str, if_version: str) -> None:
        condition = {"source_generation": int(if_version), "if_source_generation_match": int(if_version)}
        source = self._bucket.blob(source_key)
        self._call(source_key, lambda: self._bucket.copy_blob(source, self._bucket, target_key, **condition,
                                                              **self._limits()))  # fmt: skip

    def _limits(self) -> dict[str, Any]:
        return {"timeout": (5, 60), "retry": self._retry}  # (connect, read) seconds

    def _call(self, key: str | None, call: Callable[[], Any], *quiet: type[Exception]) -> Any:
        """``call`` on ``key``'s object (None: the bucket); None for an exception in ``quiet``; else its errors
        as ``Objects`` says (StoreSetupError naming what to fix, or StorageError)."""
        try:
            return call()
        except quiet:
            return None
        except (self._errors.Forbidden, self._errors.Unauthorized) as exc:
            raise StoreSetupError(f"the store refused the credentials for {self.url} ({exc.code}): check "
                                  "GOOGLE_APPLICATION_CREDENTIALS and the bucket's permissions") from exc  # fmt: skip
        except self._errors.NotFound as exc:
            if key is not None:
                raise StorageError(f"gs://{self.bucket}/{key}: no such object") from exc
            raise StoreSetupError(f"the bucket {self.bucket} does not exist at {self.endpoint or 'GCS'}: create it "
                                  "or fix DATASET_URL") from exc  # fmt: skip
        except (OSError, self._errors.RetryError) as exc:  # (requests' ConnectionError is an OSError)
            why = type(getattr(exc, "cause", None) or exc).__name__  # (a RetryError's last one)
            raise StoreSetupError(f"cannot reach {self.where} ({why}): check DATASET_ENDPOINT_URL") from exc
        except self._errors.GoogleAPIError as exc:
            raise StorageError(f"gs://{self.bucket}/{key or ''}: {exc}") from exc


class _Listing(fs.GcsFileSystem):
    """pyarrow's GcsFileSystem, whose listing of a folder also names its sub-folders: GCS has none, only the
    prefixes a delimited listing returns, which pyarrow's skips (it sees a folder only by a marker object)."""

    objects: GcsObjects

    def get_file_info(self, what: Any) -> Any:
        if not isinstance(what, fs.FileSelector) or what.recursive:
            return super().get_file_info(what)
        bucket, _, prefix = what.base_dir.strip("/").partition("/")
        options = {"prefix": prefix and prefix + "/", "delimiter": "/"} | self.objects._limits()
        listing = self.objects.client.list_blobs(bucket, **options)
        blobs = self.objects._call(None, lambda: list(listing)) or []
        files = [fs.FileInfo(f"{bucket}/{b.name}", fs.FileType.File, mtime=b.updated, size=b.size) for b in blobs]
        return files + [fs.FileInfo(f"{bucket}/{p.rstrip('/')}", fs.FileType.Directory) for p in listing.prefixes]
