"""What a cleanup did and which files are identical, as the log, the CLI and the status report show it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crypto_data_export.store.listing import FolderScan


def _human_bytes(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    power = min(3, (size.bit_length() - 1) // 10)  # 1 KB .. GB
    return f"{size / 1024**power:.1f} {('KB', 'MB', 'GB')[power - 1]}"


def _strings(paths: list[Path]) -> list[str]:
    return [str(p) for p in paths]


@dataclass
class CleanupResult:
    """What a cleanup removed (in a dry run: would remove) and why it kept the rest. ``removed``: every deleted file
    (retention, duplicates, temp leftovers), ``reasons`` why; ``stopped``: a stop request cut the scan short. Not
    reported: ``remaining`` (the folder as the cleanup left it) and ``vanished`` (candidates gone before they were
    removed)."""

    removed: list[Path] = field(default_factory=list)
    bytes_freed: int = 0
    kept: list[Path] = field(default_factory=list)
    stale_symbols: list[str] = field(default_factory=list)
    quarantined: list[tuple[Path, str]] = field(default_factory=list)
    temp_removed: list[Path] = field(default_factory=list)
    duplicates_removed: list[Path] = field(default_factory=list)
    dry_run: bool = False
    errors: list[str] = field(default_factory=list)
    reasons: dict[Path, str] = field(default_factory=dict)
    stopped: bool = False
    remaining: FolderScan | None = field(default=None, repr=False, compare=False)
    vanished: list[Path] = field(default_factory=list, repr=False, compare=False)

    def summary(self) -> str:
        """One line for the log and the CLI."""
        verb = "would remove" if self.dry_run else "removed"
        text = (
            f"{'dry run: ' if self.dry_run else ''}{verb} {len(self.removed)} file(s) "
            f"({_human_bytes(self.bytes_freed)}; {len(self.temp_removed)} temp, "
            f"{len(self.duplicates_removed)} duplicate), quarantined {len(self.quarantined)}, "
            f"kept {len(self.kept)}"
        )
        if self.stale_symbols:
            text += f"; stale: {', '.join(self.stale_symbols)}"
        if self.errors:
            text += f"; {len(self.errors)} error(s)"
        if self.stopped:
            text += "; stopped on request before every file was checked"
        return text

    @property
    def changed(self) -> bool:
        """Whether anything was (or, in a dry run, would be) removed or quarantined."""
        return bool(self.removed or self.quarantined)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "removed": _strings(self.removed),
            "bytes_freed": self.bytes_freed,
            "kept": _strings(self.kept),
            "stale_symbols": list(self.stale_symbols),
            "quarantined": [{"path": str(p), "reason": r} for p, r in self.quarantined],
            "temp_removed": _strings(self.temp_removed),
            "duplicates_removed": _strings(self.duplicates_removed),
            "reasons": {str(p): r for p, r in self.reasons.items()},
            "errors": list(self.errors),
            "stopped": self.stopped,
            "summary": self.summary(),
        }


def merge_cleanups(results: Iterable[CleanupResult | None], *, dry_run: bool) -> CleanupResult:
    """The per-symbol prunes and the cleanup pass of one run as one cleanup (without the prunes
    a summary would say "removed 0" although every cycle replaces every file)."""
    merged = CleanupResult(dry_run=dry_run)
    kept: dict[Path, None] = {}
    stale: set[str] = set()
    for result in results:
        if result is None:
            continue
        for name in ("removed", "quarantined", "temp_removed", "duplicates_removed", "errors", "vanished"):
            getattr(merged, name).extend(getattr(result, name))
        merged.bytes_freed += result.bytes_freed
        merged.reasons.update(result.reasons)
        merged.stopped = merged.stopped or result.stopped
        stale.update(result.stale_symbols)
        kept.update(dict.fromkeys(result.kept))
        merged.remaining = result.remaining
    gone = {*merged.removed, *(path for path, _ in merged.quarantined)}
    merged.kept = [path for path in kept if path not in gone]
    merged.stale_symbols = sorted(stale)
    return merged


@dataclass
class DuplicateReport:
    """Files with identical content; ``wasted_bytes`` is what keeping only the newest would free."""

    groups: list[list[Path]] = field(default_factory=list)
    wasted_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "group_count": len(self.groups),
            "groups": [_strings(group) for group in self.groups],
            "wasted_bytes": self.wasted_bytes,
        }
