"""The export files of a folder: listing them (one directory pass) and ordering them."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from common.errors import StorageError
from store.formats import FileFormat, format_for_name
from store.layout import export_name_prefix, parse_export_name


@dataclass(frozen=True)
class ExportFile:
    """One file of ours, as found by a directory scan (never a symlink)."""

    path: Path
    symbol: str
    interval: str
    created: datetime
    size: int

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def file_format(self) -> FileFormat:
        found = format_for_name(self.path.name)
        assert found is not None, "an ExportFile is only made from a name that parse_export_name accepts"
        return found


def newest_first(files: Iterable[ExportFile]) -> list[ExportFile]:
    """By name stamp, newest first (ties broken by name, so the order is stable)."""
    return sorted(files, key=lambda f: (f.created, f.name), reverse=True)


def scan_exports(folder: Path, *, symbol: str | None = None, interval: str | None = None) -> list[ExportFile]:
    """Our export files in ``folder``, in one directory pass, oldest first.

    With ``symbol`` (and ``interval``) only that symbol's names are parsed and
    stat-ed: the cost per symbol stays with its own files in a crowded folder.
    Symlinks are skipped without being followed, whatever they point to.
    """
    found: list[ExportFile] = []
    base = Path(folder)
    prefix = export_name_prefix(symbol, interval) if symbol is not None else ""
    try:
        with os.scandir(folder) as it:
            entries = [e for e in it if e.name.startswith(prefix)] if prefix else list(it)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StorageError(f"cannot list {folder}: {exc.strerror or exc}") from exc
    for entry in entries:
        parsed = parse_export_name(entry.name)
        try:
            if parsed is None or not entry.is_file(follow_symlinks=False):
                continue
        except OSError:
            continue
        symbol_, interval_, created = parsed
        if (symbol is not None and symbol_ != symbol) or (interval is not None and interval_ != interval):
            continue
        try:
            size = entry.stat(follow_symlinks=False).st_size
        except FileNotFoundError:
            continue  # removed by a concurrent prune between the listing and now
        # base / name, not Path(entry.path): only the name is parsed again (~25 % less per file)
        found.append(ExportFile(base / entry.name, symbol_, interval_, created, size))
    found.sort(key=lambda f: (f.created, f.name))
    return found
