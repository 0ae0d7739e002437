"""An S3 bucket (AWS, MinIO, Ceph, R2) as ``dataset_store.Objects``: boto3 for conditional writes
(If-None-Match / If-Match on the ETag, a SHA-256 the store checks), pyarrow's S3FileSystem for reads."""

from __future__ import annotations

import base64
import email.utils
import hashlib
import os
from typing import Any, Literal
from urllib.parse import urlparse

from pyarrow import fs

from crypto_data_export.core.errors import StorageError, StoreSetupError
from crypto_data_export.store.dataset_store import ObjectHead

PRECONDITION = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")
NOT_FOUND = ("404", "NoSuchKey", "NotFound")


class S3Objects:
    """One S3 bucket; credentials from the standard AWS environment (AWS_* variables, profiles)."""

    scheme = "s3"

    def __init__(self, url: str, endpoint: str = "") -> None:
        self.bucket, self.url = urlparse(url).netloc, url.rstrip("/")
        self.endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL", "")
        self.where = f"the store at {self.endpoint or 'AWS'}"
        try:
            import boto3
            import botocore.config
            import botocore.exceptions
        except ImportError as exc:
            raise StoreSetupError(f"DATASET_URL={url} needs boto3: pip install 'crypto-data-export[s3]'") from exc
        self._errors = botocore.exceptions
        config = botocore.config.Config(retries={"max_attempts": 3}, connect_timeout=5, read_timeout=60)
        self.client = boto3.client("s3", endpoint_url=self.endpoint or None, config=config)

    def filesystem(self) -> fs.FileSystem:
        scheme: Literal["http", "https"] = "http" if self.endpoint.startswith("http://") else "https"
        host, region = self.endpoint.split("://", 1)[-1] or None, self.client.meta.region_name or "us-east-1"
        return fs.S3FileSystem(endpoint_override=host, scheme=scheme, region=region, connect_timeout=5)

    def check_bucket(self) -> None:
        self._call("head_bucket", None)

    def head(self, key: str) -> ObjectHead | None:
        head = self._call("head_object", key, NOT_FOUND)
        if head is None:
            return None
        now = email.utils.parsedate_to_datetime(head["ResponseMetadata"]["HTTPHeaders"]["date"])
        return ObjectHead(head["ETag"], head.get("Metadata", {}), head["LastModified"], now)

    def put(self, key: str, body: bytes, metadata: dict[str, str], if_version: str | None) -> str | None:
        condition = {"IfMatch": if_version} if if_version else {"IfNoneMatch": "*"}
        checksum = base64.b64encode(hashlib.sha256(body).digest()).decode()
        answer = self._call(
            "put_object", key, PRECONDITION, Body=body, ChecksumSHA256=checksum, Metadata=metadata, **condition
        )
        return None if answer is None else str(answer["ETag"])

    def get(self, key: str, if_version: str) -> bytes | None:
        answer = self._call("get_object", key, PRECONDITION + NOT_FOUND, IfMatch=if_version)
        return None if answer is None else bytes(answer["Body"].read())

    def delete(self, key: str, if_version: str) -> bool:
        return self._call("delete_object", key, PRECONDITION + NOT_FOUND, IfMatch=if_version) is not None

    def copy(self, source_key: str, target_key: str, if_version: str) -> None:
        source = {"Bucket": self.bucket, "Key": source_key}
        self._call("copy_object", target_key, CopySource=source, CopySourceIfMatch=if_version)

    def _call(self, method: str, key: str | None, quiet: tuple[str, ...] = (), **kwargs: Any) -> Any:
        """A boto3 call on ``key``'s object (None: the bucket); None for an error code in ``quiet``; else
        its errors as ``Objects`` says (StoreSetupError naming what to fix, or StorageError)."""
        where = {"Bucket": self.bucket} | ({"Key": key} if key is not None else {})
        try:
            return getattr(self.client, method)(**where, **kwargs)
        except (self._errors.EndpointConnectionError, self._errors.ConnectTimeoutError) as exc:
            raise StoreSetupError(f"cannot reach {self.where} ({exc}): check DATASET_ENDPOINT_URL") from exc
        except self._errors.NoCredentialsError as exc:
            raise StoreSetupError(f"no credentials for {self.url}: set AWS_ACCESS_KEY_ID and "
                                  "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE") from exc  # fmt: skip
        except self._errors.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in quiet:
                return None
            if code in ("403", "Forbidden", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise StoreSetupError(
                    f"the store refused the credentials for {self.url} ({code}): check AWS_ACCESS_KEY_ID, "
                    "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and the bucket's permissions"
                ) from exc
            if code == "NoSuchBucket" or code == "404" and key is None:
                raise StoreSetupError(
                    f"the bucket {self.bucket} does not exist at {self.endpoint or 'AWS'}: create it or fix DATASET_URL"
                ) from exc
            if code in ("NotImplemented", "501"):
                raise StoreSetupError(f"{self.where} does not implement {method} with conditions, which the "
                                      "series' leases need (use S3, MinIO, Ceph or R2)") from exc  # fmt: skip
            raise StorageError(f"{method} s3://{self.bucket}/{key or ''}: {code or exc}") from exc
