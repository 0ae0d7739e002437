"""The export folder's names, listed once for a whole export pass.

N series each listing the folder is quadratic in a crowded folder and a lock convoy
across 30 threads, so a pass lists it once (``FolderNames``) and keeps the listing current
with what this process writes, removes and quarantines. A file another process adds is
seen by the next pass; one it removes is skipped (every name is ``lstat``-ed before use).
"""

from __future__ import annotations

import bisect
import os
import stat
import threading
from collections.abc import Iterable
from pathlib import Path

from crypto_data_export.core.errors import StorageError


class FolderNames:
    """A sorted listing of one folder's names, shared by threads; prefix lookups by bisection."""

    def __init__(self, names: Iterable[str]) -> None:
        self._names = sorted(names)
        self._lock = threading.Lock()

    @classmethod
    def of(cls, folder: Path) -> FolderNames:
        """The names in ``folder`` now (none if it does not exist)."""
        try:
            return cls(os.listdir(folder))
        except FileNotFoundError:
            return cls(())
        except OSError as exc:
            raise StorageError(f"cannot list {folder}: {exc.strerror or exc}") from exc

    def starting_with(self, prefixes: Iterable[str]) -> list[str]:
        """Every name that starts with one of ``prefixes``, each once, in name order."""
        found: set[str] = set()
        with self._lock:
            names = self._names
            for prefix in prefixes:
                index = bisect.bisect_left(names, prefix)
                while index < len(names) and names[index].startswith(prefix):
                    found.add(names[index])
                    index += 1
        return sorted(found)

    def add(self, name: str) -> None:
        with self._lock:
            index = bisect.bisect_left(self._names, name)
            if index == len(self._names) or self._names[index] != name:
                self._names.insert(index, name)

    def discard(self, name: str) -> None:
        with self._lock:
            index = bisect.bisect_left(self._names, name)
            if index < len(self._names) and self._names[index] == name:
                del self._names[index]


class NamedEntry:
    """A listed name with what the scans use of an ``os.DirEntry``, from one ``lstat`` (never
    following a symlink, whatever ``follow_symlinks`` says: the scans never do)."""

    __slots__ = ("_info", "name", "path")

    def __init__(self, folder: Path, name: str) -> None:
        self.name = name
        self.path = os.path.join(folder, name)
        self._info: os.stat_result | None = None

    def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
        """Raises FileNotFoundError if the name is gone since the listing."""
        if self._info is None:
            self._info = os.lstat(self.path)
        return self._info

    def is_file(self, *, follow_symlinks: bool = True) -> bool:
        try:
            return stat.S_ISREG(self.stat().st_mode)
        except FileNotFoundError:
            return False  # gone since the listing


FolderEntry = os.DirEntry[str] | NamedEntry


def folder_entries(folder: Path, prefixes: tuple[str, ...], names: FolderNames | None) -> list[FolderEntry]:
    """The folder's entries whose names start with one of ``prefixes``: from ``names`` (a
    pass's listing) if given, else from a listing made now."""
    if names is not None:
        return [NamedEntry(folder, name) for name in names.starting_with(prefixes)]
    try:
        with os.scandir(folder) as it:
            return [entry for entry in it if entry.name.startswith(prefixes)]
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StorageError(f"cannot list {folder}: {exc.strerror or exc}") from exc
