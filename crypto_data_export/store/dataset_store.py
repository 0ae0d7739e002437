"""Where the dataset's files live: this machine's disk (``LocalStore``) or a bucket of an object store
(``ObjectStore`` over one ``Objects``: store.s3_objects, store.gcs_objects, store.azure_objects), behind the same
few operations ``Dataset`` uses (list, open, publish, move, remove, lock).

In a bucket the layout is the one on disk under the URL's prefix, with the same guarantees (docs/dataset.md): a
period is verified in a local temp file, uploaded in ONE conditional put with a checksum the store checks, and
read back; an object without our ``cdx-writer`` metadata is never overwritten, moved or deleted; one writer per
series holds ``<series>/.lease``; quarantine is ``<prefix>/.quarantine/<path>.quarantined`` (a dot-folder, no
``.parquet`` suffix: no reader's ``**/*.parquet`` sees it). pyarrow.fs lists and reads (a footer costs two
ranged reads); the store's own client writes (pyarrow's stream can neither carry user metadata nor be conditional).
"""

from __future__ import annotations

import contextlib
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
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Protocol
from urllib.parse import urlparse

from pyarrow import fs

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
        _make_folder(path.parent)
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
        _make_folder(folder)

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


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create {folder}: {exc.strerror or exc}") from exc


@dataclass(frozen=True)
class ObjectHead:
    version: str  # what a condition names: S3/Azure ETag, GCS generation (as text)
    metadata: dict[str, str]  # its user metadata (keys lower case)
    modified: datetime  # Last-Modified, aware UTC, by the store's clock
    now: datetime  # the store's clock when it answered (its Date header), aware UTC


class Objects(Protocol):
    """One bucket (S3, GCS) or container (Azure) of one kind of store: whole objects, conditional writes
    (``if_version`` None: only if there is no object; else only if it is still that version), each put with a
    checksum the store verifies. Other failures: StorageError naming the object; a store that cannot be used
    (credentials, no bucket, unreachable endpoint): StoreSetupError saying what to fix, from ``check_bucket``."""

    scheme: str  # the URL's scheme: "s3", "gs", "az"
    bucket: str
    where: str  # "the store at <endpoint or the provider>", for messages

    def filesystem(self) -> fs.FileSystem: ...  # for listing and ranged reads; its paths are "bucket/key"
    def check_bucket(self) -> None: ...
    def head(self, key: str) -> ObjectHead | None: ...  # None: no object
    def put(self, key: str, body: bytes, metadata: dict[str, str], if_version: str | None) -> str | None: ...
    def get(self, key: str, if_version: str) -> bytes | None: ...  # put, get: None if the condition failed
    def delete(self, key: str, if_version: str) -> bool: ...  # False: the condition failed
    def copy(self, source_key: str, target_key: str, if_version: str) -> None: ...  # metadata kept


class ObjectStore:
    """The dataset under ``scheme://bucket/prefix`` in ``objects``; its paths are ``/bucket/prefix/...``."""

    remote = True
    lock_name = LOCK_NAME
    quarantine_suffix = ".quarantined"

    def __init__(self, url: str, objects: Objects, lease_seconds: float = 600.0) -> None:
        self.objects, self.lease_seconds = objects, lease_seconds
        self.root = Path("/" + objects.bucket) / urlparse(url).path.strip("/")
        self.writer = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"  # this run, in the objects
        self.leases: dict[Path, str] = {}  # series folder -> our lease's version
        self.fs = objects.filesystem()

    def key(self, path: Path) -> str:
        return str(path.relative_to("/" + self.objects.bucket))

    def name(self, path: Path) -> str:
        return f"{self.objects.scheme}://{self.objects.bucket}/{self.key(path)}"

    def check(self, writes: bool = True) -> None:
        """One line (StoreSetupError, exit 2) for wrong credentials, a missing bucket, an unreachable endpoint
        or (``writes``) a store without conditional writes: a probe object created twice (the second must be
        refused), then removed."""
        self.objects.check_bucket()
        if writes:
            probe = self.key(self.root / f".cdx-probe-{uuid.uuid4().hex}")
            first = self.objects.put(probe, b"", self._marked(), None)
            try:
                second = self.objects.put(probe, b"", self._marked(), None)
            finally:
                if (version := second or first) is not None:
                    self.objects.delete(probe, version)
            if second is not None:
                raise StoreSetupError(
                    f"{self.objects.where} accepted a second create-only write of one object: it does not do "
                    "conditional writes, which the series' leases need (use a store or version that does: S3, "
                    "MinIO, Ceph, R2, GCS, Azure)"
                )

    def _marked(self, **more: str) -> dict[str, str]:
        return {MARKER: self.writer, **more}

    def _ours(self, path: Path) -> ObjectHead | None:
        """The object's head (None: no object); StorageError for an object without our marker."""
        head = self.objects.head(self.key(path))
        if head is not None and MARKER not in head.metadata:
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

    def _selector(self, folder: Path) -> fs.FileSelector:
        return fs.FileSelector(str(folder)[1:], allow_not_found=True)

    def exists(self, path: Path) -> bool:
        return self.objects.head(self.key(path)) is not None

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
        conditional put (on the version seen, which must be ours; on no object if none) with a checksum the
        store verifies, and read back: it counts once the bytes read are the bytes verified (SHA-256)."""
        if path.parent not in self.leases:
            raise StorageError(f"{self.name(path)}: written without its series' lease (a bug); nothing written")
        with tempfile.TemporaryDirectory(prefix="cdx-upload-") as folder:
            yield Path(folder) / path.name
            body = (Path(folder) / path.name).read_bytes()
        self.renew(path.parent)
        head, digest = self._ours(path), hashlib.sha256(body).digest()
        version = self.objects.put(self.key(path), body, self._marked(), head.version if head else None)
        read = None if version is None else self.objects.get(self.key(path), version)
        if read is None or hashlib.sha256(read).digest() != digest:
            raise StorageError(f"{self.name(path)} changed while it was uploaded; the series is written again next run")
        logger.info("uploaded %s (%d bytes, read back and verified) by %s", self.name(path), len(body), self.writer)

    def move(self, path: Path, target: Path) -> None:
        """Copy to ``target``, then delete the original if it is still the object copied (and ours)."""
        if (head := self._ours(path)) is None:
            raise FileNotFoundError(self.name(path))
        self.objects.copy(self.key(path), self.key(target), head.version)
        self._delete(path, head.version)

    def remove(self, path: Path) -> bool:
        head = self._ours(path)
        return head is not None and self._delete(path, head.version)

    def _delete(self, path: Path, version: str) -> bool:
        if not self.objects.delete(self.key(path), version):
            raise StorageError(f"{self.name(path)} changed meanwhile; it is not removed")
        return True

    @contextlib.contextmanager
    def lock(self, folder: Path, *, wait: bool, stop: threading.Event | None = None) -> Iterator[bool]:
        """The series' lease; False if another writer's live lease is there and ``wait`` is False; waited
        for at most its lifetime (a live holder renews it) with ``wait``, then StorageError; ``stop`` ends
        the wait (StopRequested)."""
        deadline = time.monotonic() + self.lease_seconds + LEASE_POLL_SECONDS
        while (version := self._take(folder / LOCK_NAME)) is None:
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
        self.leases[folder] = version
        try:
            yield True
        finally:
            held = self.leases.pop(folder)
            with contextlib.suppress(StorageError):  # taken over after it expired: its new holder's to remove
                self._delete(folder / LOCK_NAME, held)

    def _put_lease(self, path: Path, if_version: str | None) -> str | None:
        """Our lease written under the condition; its version, None if the condition failed."""
        body = json.dumps({"writer": self.writer, "lease_seconds": self.lease_seconds}).encode()
        lifetime = {"cdx-lease-seconds": f"{self.lease_seconds:g}"}
        return self.objects.put(self.key(path), body, self._marked(**lifetime), if_version)

    def _take(self, path: Path) -> str | None:
        """A new lease, or the expired one taken over (its own lifetime, by the store's clock); None: held."""
        if (version := self._put_lease(path, None)) is not None or (head := self._ours(path)) is None:
            return version  # (None: released in between; the next poll takes it)
        age, lifetime = (head.now - head.modified).total_seconds(), float(head.metadata["cdx-lease-seconds"])
        if age < lifetime or (version := self._put_lease(path, head.version)) is None:
            return None
        logger.warning(
            "took over %s: %s's lease expired %.0f s ago", self.name(path), head.metadata[MARKER], age - lifetime
        )
        return version

    def renew(self, folder: Path) -> None:
        """Our lease rewritten (on our version): StorageError if another writer took it over."""
        if (version := self._put_lease(folder / LOCK_NAME, self.leases[folder])) is None:
            raise StorageError(
                f"lost the lease of {self.name(folder)}: it expired (DATASET_LEASE_SECONDS) and another writer "
                "took it; nothing more is written to the series"
            )
        self.leases[folder] = version


Store = LocalStore | ObjectStore
