"""The export folder's names, listed once for a whole export pass.

N series each listing the folder is quadratic in a crowded folder and a lock convoy across 30 threads, so a pass lists
it once (``FolderNames``) and keeps the listing current with what this process writes, removes and quarantines. A file
another process adds is seen by the next pass; one it removes is skipped (every name is ``lstat``-ed before use).
"""

from __future__ import annotations

import bisect
import logging
import os
import stat
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from crypto_data_export.core.errors import StorageError
from crypto_data_export.core.reading import hash_regular_file
from crypto_data_export.settings.market_names import SPOT
from crypto_data_export.store.exports import ExportFile, newest_first
from crypto_data_export.store.layout import export_name_prefix, our_temp_name, parse_export_name
from crypto_data_export.store.validation import FileValidation

logger = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class TempFile:
    """A leftover of ``atomic_io`` (possibly of a writer still running)."""

    path: Path
    mtime: float


@dataclass
class FolderScan:
    """Our files, their verdicts, hashes where sizes collide, and temp leftovers. ``unreadable``
    files (and files a stopped scan did not reach) are never quarantined or removed; ``fresh``
    ones were just written by this process and win ties in the content order."""

    files: list[ExportFile] = field(default_factory=list)
    validations: dict[Path, FileValidation] = field(default_factory=dict)
    hashes: dict[Path, str] = field(default_factory=dict)
    temp_files: list[TempFile] = field(default_factory=list)
    unreadable: set[Path] = field(default_factory=set)
    fresh: set[Path] = field(default_factory=set)
    stopped: bool = False

    def valid_files(self) -> list[ExportFile]:
        return [f for f in self.files if self.validations[f.path].valid]

    def invalid_files(self) -> list[ExportFile]:
        """Readable files that break a rule (unreadable ones are not judged)."""
        return [f for f in self.files if not self.validations[f.path].valid and f.path not in self.unreadable]

    def newest_first(self, files: Iterable[ExportFile]) -> list[ExportFile]:
        return newest_first(files, self.validations, self.fresh)

    def duplicate_groups(self, among: Iterable[ExportFile] | None = None) -> list[list[ExportFile]]:
        """Groups of identical files, newest (by content) first in each, by their newest's name."""
        by_hash: dict[str, list[ExportFile]] = defaultdict(list)
        for f in self.files if among is None else among:
            if f.path in self.hashes:
                by_hash[self.hashes[f.path]].append(f)
        return sorted(
            (self.newest_first(group) for group in by_hash.values() if len(group) > 1), key=lambda g: g[0].name
        )

    def with_planned(self, planned: Mapping[ExportFile, FileValidation]) -> FolderScan:
        """This scan plus files a dry run would have written (they exist only in the plan)."""
        if not planned:
            return self
        files = sorted([*self.files, *planned], key=lambda f: (f.created, f.name))
        validations = {**self.validations, **{f.path: v for f, v in planned.items()}}
        return replace(self, files=files, validations=validations, fresh=self.fresh | {f.path for f in planned})

    def without(self, gone: Collection[Path]) -> FolderScan:
        """This scan minus files no longer there (removed or moved by a cleanup)."""
        gone = set(gone)
        if not gone:
            return self
        return replace(
            self,
            files=[f for f in self.files if f.path not in gone],
            validations={p: v for p, v in self.validations.items() if p not in gone},
            hashes={p: h for p, h in self.hashes.items() if p not in gone},
            temp_files=[t for t in self.temp_files if t.path not in gone],
            unreadable=self.unreadable - gone,
            fresh=self.fresh - gone,
        )

    def hash_size_collisions(self, stop: Callable[[], bool] | None = None) -> None:
        """Hash every readable file whose size collides and has no hash yet (a duplicate
        report, or a size changed after the listing), so duplicate groups never miss one.
        A file gone since the listing is dropped; once ``stop`` says so, the rest are unreadable."""
        gone: set[Path] = set()
        for f in size_colliding(self.files):
            if f.path in self.hashes or f.path in self.unreadable:
                continue
            if stop is not None and stop():
                self.stopped = True
                self.unreadable.add(f.path)
                continue
            try:
                self.hashes[f.path] = hash_regular_file(f.path)
            except FileNotFoundError:
                gone.add(f.path)
            except OSError as exc:
                self.unreadable.add(f.path)
                logger.warning("cannot read %s: %s", f.name, exc.strerror or exc)
        self.files = [f for f in self.files if f.path not in gone]


def size_colliding(files: Iterable[ExportFile]) -> list[ExportFile]:
    files = list(files)
    sizes = Counter(f.size for f in files)
    return [f for f in files if sizes[f.size] > 1]


def scan_exports(
    folder: Path,
    *,
    symbol: str | None = None,
    interval: str | None = None,
    market: str | None = None,
    names: FolderNames | None = None,
) -> list[ExportFile]:
    """Our export files in ``folder`` (never a symlink), oldest first; with ``symbol`` (and
    ``interval`` of ``market``) only that series' names are looked at, from ``names`` if given."""
    prefix = export_name_prefix(symbol, interval, market or SPOT) if symbol is not None else ""
    files = list_ours(Path(folder), None, (prefix,), names if prefix else None).files
    return [f for f in files if market is None or f.market == market]


def list_ours(
    export_dir: Path, wanted: frozenset[str] | None, prefixes: tuple[str, ...], names: FolderNames | None
) -> FolderScan:
    """Our files and temp files whose names start with one of ``prefixes``, oldest first: from
    ``names`` (a pass's listing) if given, else from a listing made now. Only regular files
    with one of our two name shapes are kept (``lstat``: a symlink is never followed)."""
    result = FolderScan()
    for name in (names or FolderNames.of(export_dir)).starting_with(prefixes):
        parsed = parse_export_name(name)
        temp = our_temp_name(name) if parsed is None else None
        if parsed is None and temp is None:
            continue
        owner = parsed or (parse_export_name(temp["final"]) if temp is not None else None)  # a temp's export
        if wanted is not None and (owner is None or owner.symbol not in wanted):
            continue
        path = export_dir / name
        try:
            info = os.lstat(path)
        except OSError:
            continue  # vanished or unstat-able since the listing: not a candidate
        if not stat.S_ISREG(info.st_mode):
            continue
        if parsed is not None:
            result.files.append(
                ExportFile(path, parsed.symbol, parsed.interval, parsed.created, info.st_size, parsed.market)
            )
        else:
            result.temp_files.append(TempFile(path, info.st_mtime))
    result.files.sort(key=lambda f: (f.created, f.name))
    return result
