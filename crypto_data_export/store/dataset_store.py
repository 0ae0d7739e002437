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

from crypto_data_export.core.errors import StorageError, StoreSetupError
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
    def lock(self, folder: Path, *, wait: bool) -> Iterator[bool]:
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
        self.bucket, self.url = parsed.netloc, url.rstrip("/")
        self.root = Path("/" + self.bucket) / parsed.path.strip("/")
        self.endpoint, self.lease_seconds = endpoint or os.environ.get("AWS_ENDPOINT_URL", ""), lease_seconds
        self.writer = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"  # this run, in the objects
        self.leases: dict[Path, str] = {}  # series folder -> our lease's ETag
        self._local = threading.local()
        try:
            import boto3
            import botocore.config
            import botocore.exceptions
            from pyarrow import fs
        except ImportError as exc:
            raise StoreSetupError(
                f"DATASET_URL={url} needs boto3: pip install 'crypto-data-export[s3]' ({exc})"
            ) from exc
        self._errors = botocore.exceptions
        config = botocore.config.Config(retries={"max_attempts": 3}, connect_timeout=5, read_timeout=60)
        self.client = boto3.client("s3", endpoint_url=self.endpoint or None, config=config)
        region = self.client.meta.region_name or "us-east-1"
        host = self.endpoint.split("://", 1)[-1] or None
        scheme: Literal["http", "https"] = "http" if self.endpoint.startswith("http://") else "https"
        self.fs = fs.S3FileSystem(endpoint_override=host, scheme=scheme, region=region, connect_timeout=5)

    # --- paths

    def key(self, path: Path) -> str:
        return str(path.relative_to("/" + self.bucket))

    def name(self, path: Path) -> str:
        return f"s3://{self.bucket}/{self.key(path)}"

    # --- the check at start

    def check(self, writes: bool = True) -> None:
        """One line (StoreSetupError, exit 2) for wrong credentials, a missing bucket, an unreachable endpoint
        or (``writes``) a store that ignores conditional writes: a probe object, written twice with
        If-None-Match (the second must be refused) and removed at once."""
        self._call("head_bucket", Bucket=self.bucket)
        if not writes:
            return
        probe = self.key(self.root / f".cdx-probe-{uuid.uuid4().hex}")
        first = self._call("put_object", Bucket=self.bucket, Key=probe, Body=b"", IfNoneMatch="*", **self._marked())
        try:
            self._call("put_object", Bucket=self.bucket, Key=probe, Body=b"", IfNoneMatch="*", **self._marked())
            refused: str | None = "accepted a second If-None-Match write of one object"
        except self._errors.ClientError as exc:
            refused = None if _code(exc) in ("PreconditionFailed", "412") else f"answered {_code(exc)}"
        finally:
            with contextlib.suppress(self._errors.ClientError):
                self.client.delete_object(Bucket=self.bucket, Key=probe, IfMatch=first["ETag"])
        if refused:
            raise StoreSetupError(
                f"the store at {self.endpoint or 'AWS'} {refused}: it does not do conditional writes, which the "
                "series' leases need (use S3, MinIO, Ceph or R2 with If-None-Match support)"
            )

    def _call(self, method: str, **kwargs: Any) -> Any:
        """A boto3 call; credentials, bucket and endpoint errors as one line naming what to fix."""
        try:
            return getattr(self.client, method)(**kwargs)
        except self._errors.NoCredentialsError as exc:
            raise StoreSetupError(f"no credentials for {self.url}: set AWS_ACCESS_KEY_ID and "
                                  f"AWS_SECRET_ACCESS_KEY, or AWS_PROFILE ({exc})") from exc  # fmt: skip
        except (self._errors.EndpointConnectionError, self._errors.ConnectTimeoutError) as exc:
            raise StoreSetupError(
                f"cannot reach the store at {self.endpoint or 'AWS'} ({exc}): check DATASET_ENDPOINT_URL"
            ) from exc
        except self._errors.ClientError as exc:
            code = _code(exc)
            if code in ("403", "Forbidden", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise StoreSetupError(
                    f"the store refused the credentials for {self.url} ({code}): check AWS_ACCESS_KEY_ID, "
                    "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and the bucket's permissions"
                ) from exc
            if code in ("404", "NoSuchBucket") and method == "head_bucket" or code == "NoSuchBucket":
                raise StoreSetupError(
                    f"the bucket {self.bucket} does not exist at {self.endpoint or 'AWS'}: create it or fix DATASET_URL"
                ) from exc
            if code in ("NotImplemented", "501"):
                raise StoreSetupError(
                    f"the store at {self.endpoint or 'AWS'} does not implement {method} with its conditions "
                    "(conditional writes): the series' leases need them"
                ) from exc
            raise

    def _marked(self, **more: str) -> dict[str, Any]:
        return {"Metadata": {MARKER: self.writer, **more}}

    def _head(self, path: Path) -> dict[str, Any] | None:
        try:
            return dict(self._call("head_object", Bucket=self.bucket, Key=self.key(path)))
        except self._errors.ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise StorageError(f"cannot read {self.name(path)}: {exc}") from exc

    def _ours(self, path: Path) -> dict[str, Any] | None:
        """The object's head (None: no object); StorageError for an object without our marker."""
        head = self._head(path)
        if head is not None and MARKER not in head.get("Metadata", {}):
            logger.warning("%s has no %s metadata: not ours, never replaced or removed", self.name(path), MARKER)
            raise StorageError(f"{self.name(path)} was not written by this tool ({MARKER}); it is left alone")
        return head

    # --- reading (pyarrow.fs)

    def files(self, folder: Path) -> list[tuple[Path, Stamp]]:
        from pyarrow import fs

        try:
            infos = self.fs.get_file_info(fs.FileSelector(str(folder)[1:], allow_not_found=True))
        except OSError as exc:
            raise StorageError(f"cannot list {self.name(folder)}: {exc}") from exc
        found = [(Path("/" + i.path), [0, i.size or 0, i.mtime_ns or 0]) for i in infos if i.type == fs.FileType.File]
        return sorted(found, key=lambda item: item[0].name)

    def folders(self, root: Path, pattern: str) -> list[Path]:
        from pyarrow import fs

        found = [root]
        for part in pattern.split("/"):
            selectors = [fs.FileSelector(str(f)[1:], allow_not_found=True) for f in found]
            infos = [i for s in selectors for i in self.fs.get_file_info(s) if i.type == fs.FileType.Directory]
            found = sorted(Path("/" + i.path) for i in infos if fnmatch.fnmatchcase(i.base_name, part))
        return found

    def exists(self, path: Path) -> bool:
        return self._head(path) is not None

    def open(self, path: Path, whole: bool = True) -> IO[bytes]:
        """The object for reading (``whole``: fetched in one request, else read by ranges: a footer)."""
        try:
            source = self.fs.open_input_file(str(path)[1:])
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise StorageError(f"cannot read {self.name(path)}: {exc}") from exc
        if not whole:
            return source  # type: ignore[return-value]
        with source:
            return io.BytesIO(source.read())

    # --- writing (boto3: conditional, marked)

    @contextlib.contextmanager
    def publishing(self, path: Path) -> Iterator[Path]:
        """A local temp file to write and verify; then the lease is renewed and the file uploaded in one
        conditional PUT (If-Match the object seen, which must be ours; If-None-Match if none), its SHA-256
        checked by the store, and read back: it counts once the bytes read are the bytes verified."""
        if path.parent not in self.leases:
            raise StorageError(f"{self.name(path)}: written without its series' lease (a bug); nothing written")
        with tempfile.TemporaryDirectory(prefix="cdx-upload-") as folder:
            yield Path(folder) / path.name
            body = (Path(folder) / path.name).read_bytes()
        self.renew(path.parent)
        head = self._ours(path)
        condition = {"IfMatch": head["ETag"]} if head else {"IfNoneMatch": "*"}
        digest = hashlib.sha256(body).digest()
        checksum = base64.b64encode(digest).decode()
        try:
            answer = self._call(
                "put_object", Bucket=self.bucket, Key=self.key(path), Body=body, ChecksumSHA256=checksum,
                **condition, **self._marked(),
            )  # fmt: skip
            read = self._call("get_object", Bucket=self.bucket, Key=self.key(path), IfMatch=answer["ETag"])
            if hashlib.sha256(read["Body"].read()).digest() != digest:
                raise StorageError(f"{self.name(path)} read back differs from the file uploaded")
        except self._errors.ClientError as exc:
            raise StorageError(f"cannot upload {self.name(path)}: {exc}; the series is written again next run") from exc
        logger.info("uploaded %s (%d bytes, read back and verified) by %s", self.name(path), len(body), self.writer)

    def move(self, path: Path, target: Path) -> None:
        """Copy to ``target``, then delete the original if it is still the object copied (and ours)."""
        head = self._ours(path)
        if head is None:
            raise FileNotFoundError(self.name(path))
        source = {"Bucket": self.bucket, "Key": self.key(path)}
        self._call(
            "copy_object", Bucket=self.bucket, Key=self.key(target), CopySource=source, CopySourceIfMatch=head["ETag"]
        )
        self._delete(path, head["ETag"])

    def remove(self, path: Path) -> bool:
        head = self._ours(path)
        return head is not None and self._delete(path, head["ETag"])

    def _delete(self, path: Path, etag: str) -> bool:
        try:
            self._call("delete_object", Bucket=self.bucket, Key=self.key(path), IfMatch=etag)
            return True
        except self._errors.ClientError as exc:
            raise StorageError(f"cannot remove {self.name(path)}: {exc}") from exc

    # --- the series' lease

    @contextlib.contextmanager
    def lock(self, folder: Path, *, wait: bool) -> Iterator[bool]:
        """The series' lease; False if another writer's live lease is there and ``wait`` is False; waited
        for at most its lifetime (a live holder renews it) with ``wait``, then StorageError."""
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
            time.sleep(LEASE_POLL_SECONDS)
        self.leases[folder] = etag
        try:
            yield True
        finally:
            held = self.leases.pop(folder)
            try:
                self._delete(folder / LOCK_NAME, held)
            except StorageError as exc:  # taken over after it expired: the new holder's to remove
                logger.warning("lease of %s not released: %s", self.name(folder), exc)

    def _put_lease(self, path: Path, **condition: str) -> str | None:
        """Our lease written under ``condition``; its ETag, None if the condition failed."""
        body = json.dumps({"writer": self.writer, "lease_seconds": self.lease_seconds}).encode()
        try:
            answer = self._call(
                "put_object", Bucket=self.bucket, Key=self.key(path), Body=body, **condition,
                **self._marked(**{"cdx-lease-seconds": f"{self.lease_seconds:g}"}),
            )  # fmt: skip
        except self._errors.ClientError as exc:
            if _code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                return None
            raise StorageError(f"cannot write the lease {self.name(path)}: {exc}") from exc
        return str(answer["ETag"])

    def _take(self, path: Path) -> str | None:
        """A new lease, or the expired one taken over (its own lifetime, by the store's clock); None: held."""
        if (etag := self._put_lease(path, IfNoneMatch="*")) is not None:
            return etag
        head = self._ours(path)
        if head is None:  # released in between: the next poll takes it
            return None
        headers = head["ResponseMetadata"]["HTTPHeaders"]
        age = (email.utils.parsedate_to_datetime(headers["date"]) - head["LastModified"]).total_seconds()
        lifetime = float(head["Metadata"].get("cdx-lease-seconds", self.lease_seconds))
        if age < lifetime:
            return None
        etag = self._put_lease(path, IfMatch=head["ETag"])
        if etag is not None:
            holder = head["Metadata"][MARKER]
            logger.warning("took over %s: %s's lease expired %.0f s ago", self.name(path), holder, age - lifetime)
        return etag

    def renew(self, folder: Path) -> None:
        """Our lease rewritten (If-Match our ETag): StorageError if another writer took it over."""
        etag = self._put_lease(folder / LOCK_NAME, IfMatch=self.leases[folder])
        if etag is None:
            raise StorageError(
                f"lost the lease of {self.name(folder)}: it expired (DATASET_LEASE_SECONDS) and another writer "
                "took it; nothing more is written to the series"
            )
        self.leases[folder] = etag


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


Store = LocalStore | S3Store


def open_store(url: str, endpoint: str = "", lease_seconds: float = 600.0, writes: bool = True) -> S3Store:
    """The store of ``DATASET_URL`` (s3://), checked once; StoreSetupError: one line, exit 2."""
    store = S3Store(url, endpoint, lease_seconds)
    store.check(writes)
    return store
