"""Where the dataset's files live: this machine's disk (``LocalStore``) or an S3 bucket (``S3Store``),
behind the same few operations ``Dataset`` uses (list, open, publish, move, remove, lock).

In the bucket the layout is the one on disk under the URL's prefix, and the guarantees are the same:
- a period is written to a local temp file and verified there (``ParquetFormat.write``: rule book), then
  uploaded in ONE ``PutObject`` (a killed upload never makes an object: the store keeps a PUT only once
  its whole body arrived), with a SHA-256 the store checks, and read back: it counts once the bytes read
  equal the verified file's;
- every object we write carries ``cdx-writer`` in its user metadata; one without it is never overwritten,
  moved or deleted (each write and delete is conditional on the ETag seen, or on no object: If-None-Match);
- one writer per series: ``<series>/.lease``, taken with ``If-None-Match: *``; one older than its lifetime
  by the store's clock (its Date header minus the lease's Last-Modified) is taken over with ``If-Match``;
  renewed (``If-Match``: our ETag) before each upload, so a holder whose lease was taken over writes nothing;
  released with a conditional delete;
- quarantine: ``<prefix>/.quarantine/<the same relative path>.quarantined``: a dot-folder and no
  ``.parquet`` suffix, so no reader's ``**/*.parquet`` or pyarrow.dataset sees it.
Objects are read with pyarrow.fs (ranges: a footer costs two small reads); written with boto3 (pyarrow's
stream can neither carry user metadata nor make a write conditional). Only ``s3://`` has leases.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import fnmatch
import hashlib
import io
import json
import logging
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import urlparse

from crypto_data_export.core.errors import StopRequested, StorageError, StoreSetupError
from crypto_data_export.core.file_lock import WAIT_FOREVER, FileLock

logger = logging.getLogger(__name__)

LOCK_NAME = ".lease"  # a series' lease object in a bucket (on disk: ``.lock``, flocked)
MARKER = "cdx-writer"  # user metadata of every object we write
LEASE_POLL_SECONDS = 0.25
Stamp = list[int]  # what tells two versions of a file apart (inode, size, mtime)


class LocalStore:
    """The dataset on this machine's disk: atomic renames, fsync, no symlink followed, ``flock``."""

    remote = False
    lock_name = ".lock"
    quarantine_suffix = ""

    def check(self, writes: bool = True) -> None:
        """Nothing to check before the first write."""

    def name(self, path: Path) -> str:
        return str(path)

    def files(self, folder: Path) -> list[tuple[Path, Stamp]]:
        """The regular files of a folder by name, each with its stamp (a symlink is never followed)."""
        try:
            with os.scandir(folder) as listing:
                entries = sorted((e for e in listing if e.is_file(follow_symlinks=False)), key=lambda e: e.name)
            return [(Path(e.path), _stamp(e.stat(follow_symlinks=False))) for e in entries]
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StorageError(f"cannot list {folder}: {exc.strerror or exc}") from exc

    def folders(self, root: Path, pattern: str) -> list[Path]:
        return [f for f in sorted(root.glob(pattern)) if f.is_dir() and not f.is_symlink()]

    def exists(self, path: Path) -> bool:
        return os.path.lexists(path)

    def open(self, path: Path, whole: bool = True) -> IO[bytes]:
        """For reading, never through a symlink; FileNotFoundError if absent."""
        return open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NOFOLLOW))

    @contextlib.contextmanager
    def publishing(self, path: Path) -> Iterator[Path]:
        """Where to write the file that replaces ``path`` (its writer renames it atomically)."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create {path.parent}: {exc.strerror or exc}") from exc
        yield path

    def move(self, path: Path, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)

    def remove(self, path: Path) -> bool:
        """Remove a regular file (False: it is not one)."""
        if not os.path.isfile(path) or os.path.islink(path):
            return False
        os.unlink(path)
        return True

    @contextlib.contextmanager
    def lock(self, folder: Path, *, wait: bool, stop: threading.Event | None = None) -> Iterator[bool]:
        """The series' ``flock`` (the kernel frees it if the process dies); False if held and not waited for."""
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create {folder}: {exc.strerror or exc}") from exc

        def cannot(path: Path, exc: OSError) -> Exception:
            return StorageError(f"cannot open the lock {path}: {exc.strerror or exc}")

        held = FileLock(folder / self.lock_name, wait_seconds=WAIT_FOREVER if wait else 0.0, on_error=cannot)
        try:
            held.acquire()
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            held.release()


def _stamp(info: os.stat_result) -> Stamp:
    return [info.st_ino, info.st_size, info.st_mtime_ns]


class S3Store:
    """The dataset under ``s3://bucket/prefix``; its paths are ``/bucket/prefix/...`` (``root``)."""

    remote = True
    lock_name = LOCK_NAME
    quarantine_suffix = ".quarantined"

    def __init__(self, url: str, endpoint: str = "", lease_seconds: float = 600.0) -> None:
        parsed = urlparse(url)
        self.bucket, self.url, self.lease_seconds = parsed.netloc, url.rstrip("/"), lease_seconds
        self.root = Path("/" + self.bucket) / parsed.path.strip("/")
        self.endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL", "")
        self.where = f"the store at {self.endpoint or 'AWS'}"
        self.writer = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"  # this run, in the objects
        self.leases: dict[Path, str] = {}  # series folder -> our lease's ETag
        try:
            import boto3
            import botocore.config
            import botocore.exceptions
            from pyarrow import fs
        except ImportError as exc:
            raise StoreSetupError(f"DATASET_URL={url} needs boto3: pip install 'crypto-data-export[s3]'") from exc
        self._errors = botocore.exceptions
        config = botocore.config.Config(retries={"max_attempts": 3}, connect_timeout=5, read_timeout=60)
        self.client = boto3.client("s3", endpoint_url=self.endpoint or None, config=config)
        scheme: Literal["http", "https"] = "http" if self.endpoint.startswith("http://") else "https"
        host, region = self.endpoint.split("://", 1)[-1] or None, self.client.meta.region_name or "us-east-1"
        self.fs = fs.S3FileSystem(endpoint_override=host, scheme=scheme, region=region, connect_timeout=5)

    def key(self, path: Path) -> str:
        return str(path.relative_to("/" + self.bucket))

    def name(self, path: Path) -> str:
        return f"s3://{self.bucket}/{self.key(path)}"

    def check(self, writes: bool = True) -> None:
        """One line (StoreSetupError, exit 2) for wrong credentials, a missing bucket, an unreachable endpoint
        or (``writes``) a store without conditional writes: a probe object written twice with If-None-Match
        (the second must be refused: 412), then removed."""
        self._call("head_bucket")
        if writes:
            probe = self.root / f".cdx-probe-{uuid.uuid4().hex}"
            first = self._call("put_object", probe, Body=b"", IfNoneMatch="*", **self._marked())
            try:
                second = self._call("put_object", probe, PRECONDITION, Body=b"", IfNoneMatch="*", **self._marked())
            finally:
                self._call("delete_object", probe, quiet=PRECONDITION, IfMatch=first["ETag"])
            if second is not None:
                raise StoreSetupError(
                    f"{self.where} accepted a second If-None-Match write of one object: it does not do conditional "
                    "writes, which the series' leases need (use S3, MinIO, Ceph or R2 with If-None-Match support)"
                )

    def _call(self, method: str, path: Path | None = None, quiet: tuple[str, ...] = (), **kwargs: Any) -> Any:
        """A boto3 call on ``path``'s object (None: the bucket); None for an error code in ``quiet``; a store
        that cannot be used (credentials, bucket, endpoint, no conditions) as StoreSetupError, naming what to
        fix; any other error as StorageError."""
        where = {"Bucket": self.bucket} | ({"Key": self.key(path)} if path is not None else {})
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
            if code == "NoSuchBucket" or code == "404" and path is None:
                raise StoreSetupError(
                    f"the bucket {self.bucket} does not exist at {self.endpoint or 'AWS'}: create it or fix DATASET_URL"
                ) from exc
            if code in ("NotImplemented", "501"):
                raise StoreSetupError(f"{self.where} does not implement {method} with conditions, which the "
                                      "series' leases need (use S3, MinIO, Ceph or R2)") from exc  # fmt: skip
            raise StorageError(f"{method} {self.name(path or self.root)}: {code or exc}") from exc

    def _marked(self, **more: str) -> dict[str, Any]:
        return {"Metadata": {MARKER: self.writer, **more}}

    def _ours(self, path: Path) -> dict[str, Any] | None:
        """The object's head (None: no object); StorageError for an object without our marker."""
        head = self._call("head_object", path, quiet=NOT_FOUND)
        if head is not None and MARKER not in head.get("Metadata", {}):
            logger.warning("%s has no %s metadata: not ours, never replaced or removed", self.name(path), MARKER)
            raise StorageError(f"{self.name(path)} was not written by this tool ({MARKER}); it is left alone")
        return head

    def files(self, folder: Path) -> list[tuple[Path, Stamp]]:
        """The objects directly in a folder by name, each with its size and Last-Modified (pyarrow.fs)."""
        try:
            infos = self.fs.get_file_info(self._selector(folder))
        except OSError as exc:
            raise StorageError(f"cannot list {self.name(folder)}: {exc}") from exc
        found = [(Path("/" + i.path), [0, i.size or 0, i.mtime_ns or 0]) for i in infos if i.is_file]
        return sorted(found, key=lambda item: item[0].name)

    def folders(self, root: Path, pattern: str) -> list[Path]:
        found = [root]
        for part in pattern.split("/"):  # level by level: one listing a folder, never every object
            infos = [i for f in found for i in self.fs.get_file_info(self._selector(f)) if not i.is_file]
            found = sorted(Path("/" + i.path) for i in infos if fnmatch.fnmatchcase(i.base_name, part))
        return found

    def _selector(self, folder: Path) -> Any:
        from pyarrow import fs

        return fs.FileSelector(str(folder)[1:], allow_not_found=True)

    def exists(self, path: Path) -> bool:
        return self._call("head_object", path, quiet=NOT_FOUND) is not None

    def open(self, path: Path, whole: bool = True) -> IO[bytes]:
        """The object for reading (``whole``: fetched in one request, else read by ranges: a footer)."""
        try:
            source = self.fs.open_input_file(str(path)[1:])
            if whole:
                with source:
                    return io.BytesIO(source.read())
        except OSError as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            raise StorageError(f"cannot read {self.name(path)}: {exc}") from exc
        return source  # type: ignore[return-value]

    @contextlib.contextmanager
    def publishing(self, path: Path) -> Iterator[Path]:
        """A local temp file to write and verify; then the lease is renewed and the file uploaded in one
        conditional PUT (If-Match the object seen, which must be ours; If-None-Match if none) with a SHA-256
        the store checks, and read back: it counts once the bytes read are the bytes verified."""
        if path.parent not in self.leases:
            raise StorageError(f"{self.name(path)}: written without its series' lease (a bug); nothing written")
        with tempfile.TemporaryDirectory(prefix="cdx-upload-") as folder:
            yield Path(folder) / path.name
            body = (Path(folder) / path.name).read_bytes()
        self.renew(path.parent)
        head, digest = self._ours(path), hashlib.sha256(body).digest()
        condition = {"IfMatch": head["ETag"]} if head else {"IfNoneMatch": "*"}
        checksum = base64.b64encode(digest).decode()
        answer = self._call(
            "put_object", path, PRECONDITION, Body=body, ChecksumSHA256=checksum, **condition, **self._marked()
        )
        read = answer and self._call("get_object", path, PRECONDITION, IfMatch=answer["ETag"])
        if not read or hashlib.sha256(read["Body"].read()).digest() != digest:
            raise StorageError(f"{self.name(path)} changed while it was uploaded; the series is written again next run")
        logger.info("uploaded %s (%d bytes, read back and verified) by %s", self.name(path), len(body), self.writer)

    def move(self, path: Path, target: Path) -> None:
        """Copy to ``target``, then delete the original if it is still the object copied (and ours)."""
        if (head := self._ours(path)) is None:
            raise FileNotFoundError(self.name(path))
        source = {"Bucket": self.bucket, "Key": self.key(path)}
        self._call("copy_object", target, CopySource=source, CopySourceIfMatch=head["ETag"])
        self._delete(path, head["ETag"])

    def remove(self, path: Path) -> bool:
        head = self._ours(path)
        return head is not None and self._delete(path, head["ETag"])

    def _delete(self, path: Path, etag: str) -> bool:
        if self._call("delete_object", path, PRECONDITION, IfMatch=etag) is None:
            raise StorageError(f"{self.name(path)} changed meanwhile; it is not removed")
        return True

    @contextlib.contextmanager
    def lock(self, folder: Path, *, wait: bool, stop: threading.Event | None = None) -> Iterator[bool]:
        """The series' lease; False if another writer's live lease is there and ``wait`` is False; waited
        for at most its lifetime (a live holder renews it) with ``wait``, then StorageError; ``stop`` ends
        the wait (StopRequested)."""
        deadline = time.monotonic() + self.lease_seconds + LEASE_POLL_SECONDS
        while (etag := self._take(folder / LOCK_NAME)) is None:
            if not wait:
                yield False
                return
            if time.monotonic() > deadline:
                raise StorageError(
                    f"{self.name(folder / LOCK_NAME)}: another writer kept its lease for {self.lease_seconds:g} s "
                    "(DATASET_LEASE_SECONDS); the series is skipped this run"
                )
            if (stop or threading.Event()).wait(LEASE_POLL_SECONDS):
                raise StopRequested("stopped on request while waiting for a series' lease")
        self.leases[folder] = etag
        try:
            yield True
        finally:
            held = self.leases.pop(folder)
            with contextlib.suppress(StorageError):  # taken over after it expired: its new holder's to remove
                self._delete(folder / LOCK_NAME, held)

    def _put_lease(self, path: Path, **condition: str) -> str | None:
        """Our lease written under ``condition``; its ETag, None if the condition failed."""
        body = json.dumps({"writer": self.writer, "lease_seconds": self.lease_seconds}).encode()
        lifetime = {"cdx-lease-seconds": f"{self.lease_seconds:g}"}
        answer = self._call("put_object", path, PRECONDITION, Body=body, **condition, **self._marked(**lifetime))
        return None if answer is None else str(answer["ETag"])

    def _take(self, path: Path) -> str | None:
        """A new lease, or the expired one taken over (its own lifetime, by the store's clock); None: held."""
        if (etag := self._put_lease(path, IfNoneMatch="*")) is not None or (head := self._ours(path)) is None:
            return etag  # (None: released in between; the next poll takes it)
        date = email.utils.parsedate_to_datetime(head["ResponseMetadata"]["HTTPHeaders"]["date"])
        age, lifetime = (date - head["LastModified"]).total_seconds(), float(head["Metadata"]["cdx-lease-seconds"])
        if age < lifetime or (etag := self._put_lease(path, IfMatch=head["ETag"])) is None:
            return None
        logger.warning(
            "took over %s: %s's lease expired %.0f s ago", self.name(path), head["Metadata"][MARKER], age - lifetime
        )
        return etag

    def renew(self, folder: Path) -> None:
        """Our lease rewritten (If-Match our ETag): StorageError if another writer took it over."""
        if (etag := self._put_lease(folder / LOCK_NAME, IfMatch=self.leases[folder])) is None:
            raise StorageError(
                f"lost the lease of {self.name(folder)}: it expired (DATASET_LEASE_SECONDS) and another writer "
                "took it; nothing more is written to the series"
            )
        self.leases[folder] = etag


PRECONDITION = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")
NOT_FOUND = ("404", "NoSuchKey", "NotFound")
Store = LocalStore | S3Store
