"""Which valid export files a cleanup removes, and why: pure functions, no disk, no clock.

"Newest" and "age" come from each file's newest candle, never its name stamp or mtime.

* a series is (market, symbol, interval) in one format: never ranked against another series,
  and a change of ``EXPORT_FORMAT`` never removes the other format's files;
* the newest valid file of each series of a configured symbol is never removed, however
  old (an outage must not empty the folder); a configured series is reported as stale;
* beyond that, a file goes if it is not among the newest ``max_files_per_symbol`` of its
  series, or if its newest candle is older than ``retention_days``;
* of identical files that survive, all but the newest go, under the same protection;
* a backfill's cleanup (``cover``) removes only files of its series whose every candle its
  new file holds: a range it did not cover stays, whatever ``max_files_per_symbol`` says.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from crypto_data_export.settings.market_names import SPOT
from crypto_data_export.store.exports import ExportFile, newest_candle_ms
from crypto_data_export.store.layout import series_key
from crypto_data_export.store.listing import FolderScan


@dataclass(frozen=True)
class RetentionRules:
    # The configured (market, interval) pairs: only their files make a symbol's series "stale".
    series: frozenset[tuple[str, str]]
    configured_symbols: frozenset[str]  # whose newest valid file (per series) is protected
    max_files_per_symbol: int  # per series
    retention_days: float


@dataclass
class CleanupPlan:
    """``removals`` maps each valid file to remove to its reason (duplicates included)."""

    removals: dict[Path, str] = field(default_factory=dict)
    duplicates: set[Path] = field(default_factory=set)
    stale_symbols: list[str] = field(default_factory=list)


def _by_series(files: Iterable[ExportFile]) -> dict[tuple[str, str, str, str], list[ExportFile]]:
    """Files per series and format (its suffix): each format keeps its own newest files."""
    groups: dict[tuple[str, str, str, str], list[ExportFile]] = defaultdict(list)
    for f in files:
        groups[(*f.series, f.path.suffix)].append(f)
    return groups


def protected_files(folder: FolderScan, valid: Iterable[ExportFile], configured_symbols: frozenset[str]) -> set[Path]:
    """The newest valid file by content of each series (and format) of a configured symbol: never removed."""
    mine = (f for f in valid if f.symbol in configured_symbols)
    return {folder.newest_first(files)[0].path for files in _by_series(mine).values()}


def retention_removals(
    folder: FolderScan, valid: Sequence[ExportFile], protected: set[Path], rules: RetentionRules, now: datetime
) -> tuple[dict[Path, str], list[str]]:
    """(path -> reason for every valid file retention removes, stale series names sorted)."""
    cutoff_ms = int((now - timedelta(days=rules.retention_days)).timestamp() * 1000)
    removals: dict[Path, str] = {}
    stale: set[str] = set()
    single = len(rules.series) == 1 and next(iter(rules.series))[0] == SPOT  # the guide's set-up: stale symbols alone
    for (market, symbol, interval, suffix), files in _by_series(valid).items():
        shown = f"{symbol} {interval}" if market == SPOT else f"{symbol} {market} {interval}"
        shown += f" {suffix[1:]}" if suffix != ".csv" else ""
        for rank, f in enumerate(folder.newest_first(files)):
            too_old = newest_candle_ms(folder.validations.get(f.path)) < cutoff_ms
            if f.path in protected:
                if too_old and (market, interval) in rules.series:
                    stale.add(series_key(symbol, interval, market, single=single))
            elif rank >= rules.max_files_per_symbol:
                removals[f.path] = f"beyond the newest {rules.max_files_per_symbol} of {shown}"
            elif too_old:
                removals[f.path] = f"newest candle older than {rules.retention_days:g} days"
    return removals, sorted(stale)


def duplicate_removals(groups: Iterable[Sequence[ExportFile]], protected: set[Path]) -> dict[Path, str]:
    """All but the newest of each identical group (newest first), under the same protection."""
    return {f.path: f"duplicate of {group[0].name}" for group in groups for f in group[1:] if f.path not in protected}


def covered_removals(folder: FolderScan, valid: Sequence[ExportFile], cover: Path) -> dict[Path, str]:
    """The files of ``cover``'s series and format whose every candle ``cover`` holds: inside its span, off its gaps."""
    new, held = next(f for f in valid if f.path == cover), folder.validations[cover]
    removals: dict[Path, str] = {}
    for f in _by_series(valid)[(*new.series, cover.suffix)]:
        old = folder.validations[f.path]  # valid: its span is set, as the new file's
        first, last = old.first_open_ms or 0, old.last_open_ms or 0
        inside = (held.first_open_ms or 0) <= first and last <= (held.last_open_ms or 0) and f.path != cover
        if inside and not any(gap_first <= last and gap_last >= first for gap_first, gap_last, _ in held.gaps):
            removals[f.path] = f"every candle is in {cover.name}"
    return removals


def plan_cleanup(folder: FolderScan, rules: RetentionRules, now: datetime, cover: Path | None = None) -> CleanupPlan:
    """Retention first, then duplicates among what retention keeps; with ``cover`` (a backfill's
    new file), only the files it covers."""
    valid = folder.valid_files()
    if cover is not None:
        return CleanupPlan(covered_removals(folder, valid, cover))
    protected = protected_files(folder, valid, rules.configured_symbols)
    removals, stale = retention_removals(folder, valid, protected, rules, now)
    remaining = [f for f in valid if f.path not in removals]
    duplicates = duplicate_removals(folder.duplicate_groups(remaining), protected)
    removals.update(duplicates)
    return CleanupPlan(removals, set(duplicates), stale)
