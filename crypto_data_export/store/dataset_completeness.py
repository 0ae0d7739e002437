"""How complete the dataset is, from its period files' footers alone (no row is read): per series its
first and last candle, the expected and present candles of each period, and its gap ranges.

The history of a series starts at its first candle: a hole before it (a backfill that began inside a
period) is not counted. A period missing between two stored ones is a gap of all its candles. Read
only: a file that is not one of the series' periods is named, never moved (the next cycle's identity
check quarantines it). The footers read are kept by each file's inode, size and mtime (an object's size and
Last-Modified): a completed period is written once, so a status reads only the footers of the periods
written since (the cache is on local disk, also for a dataset in a bucket)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crypto_data_export.core.atomic_io import atomic_write_text
from crypto_data_export.core.candles import SeriesId
from crypto_data_export.core.clock import ms_to_iso
from crypto_data_export.core.intervals import first_open_from_ms, floor_open_ms, next_open_ms
from crypto_data_export.core.owned_json import MISSING, OURS, mark, read_owned_json
from crypto_data_export.core.rules import gaps, grid_steps
from crypto_data_export.store.dataset import Dataset, PeriodInfo, period_name, periods_between, read_period_info
from crypto_data_export.store.validation import FileValidation, gap_entries

Gap = tuple[int, int, int]  # first missing open, last missing open, count


class Footers:
    """The footers of a dataset, read once per version of each file (``cache``: where they are kept)."""

    def __init__(self, dataset: Dataset, cache: Path | None) -> None:
        self.root, self.store, self.cache, self.read = dataset.root, dataset.store, cache, 0
        self.new: dict[str, list[Any]] = {}
        found = read_owned_json(cache, 2**28) if cache else None
        self.old = found.data.get("footers", {}) if found and found.data and found.verdict == OURS else {}
        self.ours = found is not None and found.verdict in (OURS, MISSING)  # never replace another's file

    def __call__(self, path: Path, stamp: list[int]) -> PeriodInfo | None:
        key = str(path)[len(str(self.root)) :]
        kept, period = self.old.get(key), None
        try:
            if isinstance(kept, list) and kept[0] == stamp and kept[1]:
                period = PeriodInfo(path, kept[1][1] and SeriesId(*kept[1][1]), *kept[1][2:])
        except TypeError:  # an entry of another shape: read again
            pass
        if period is None:
            self.read, period = self.read + 1, read_period_info(path, self.store)
        fields = list(vars(period).values()) if period else []  # astuple() deep-copies: 10 times slower
        self.new[key] = [stamp, period and [None, period.series and list(vars(period.series).values()), *fields[2:]]]
        return period

    def save(self) -> None:
        if self.cache and self.ours and (self.read or self.new.keys() != self.old.keys()):
            text = json.dumps(mark({"footers": self.new}, 1), separators=(",", ":"))
            atomic_write_text(self.cache, text)


@dataclass
class PeriodCount:
    name: str
    expected: int
    present: int
    complete: bool


@dataclass
class SeriesCompleteness:
    series: SeriesId
    folder: Path
    periods: list[PeriodCount] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)  # merged across periods, in order
    first_open_ms: int | None = None
    last_open_ms: int | None = None
    unconfirmed: int = 0  # missing candles outside the periods the exchange confirmed complete
    latest: Path | None = None  # the newest period's file
    not_counted: list[str] = field(default_factory=list)  # "<file>: <why>"

    @property
    def missing(self) -> int:
        return sum(count for _, _, count in self.gaps)

    def to_dict(self, listed: int) -> dict[str, Any]:
        """The status report's entry: at most ``listed`` gap ranges and periods with missing candles
        (a full period needs no line), the rest counted."""
        short = [p for p in self.periods if p.present < p.expected]
        return {
            "symbol": self.series.symbol,
            "interval": self.series.interval,
            "market": self.series.market,
            "first_candle": ms_to_iso(self.first_open_ms),
            "last_candle": ms_to_iso(self.last_open_ms),
            "expected": (present := sum(p.present for p in self.periods)) + self.missing,
            "present": present,
            "missing": self.missing,
            "unconfirmed_missing": self.unconfirmed,
            "complete": not self.unconfirmed,
            "gap_ranges": len(self.gaps),
            "gaps": gap_entries(self.gaps[:listed]),
            "periods": len(self.periods),
            "complete_periods": sum(p.complete for p in self.periods),
            "periods_missing_candles": len(short),
            "short_periods": {
                p.name: {"expected": p.expected, "present": p.present, "complete": p.complete} for p in short[:listed]
            },
            "not_counted": self.not_counted,
        }

    def verdict(self) -> FileValidation:
        """The series as one verdict, as an export file's (the status report's ``symbols`` entry)."""
        present, latest = sum(p.present for p in self.periods), self.latest
        reason = None if latest else "no period with candles in the dataset"
        return FileValidation(
            latest or self.folder, latest is not None, reason, present, self.first_open_ms, self.last_open_ms,
            self.gaps, self.missing,
        )  # fmt: skip


def _merged(ranges: list[Gap], interval: str) -> list[Gap]:
    """Overlapping or adjacent ranges as one, counted on the grid."""
    merged: list[list[int]] = []
    for first, last, _ in sorted(map(tuple, ranges)):  # lists when cached
        if merged and first <= next_open_ms(merged[-1][1], interval):
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    if not merged:
        return []
    ends = grid_steps(np.array(merged, dtype=np.int64).ravel(), interval).reshape(-1, 2)
    return [(first, last, int(b - a + 1)) for (first, last), (a, b) in zip(merged, ends.tolist(), strict=True)]


def series_completeness(dataset: Dataset, series: SeriesId, footers: Footers) -> SeriesCompleteness:
    """One series from its footers, whatever its folder holds besides."""
    found = SeriesCompleteness(series, dataset.series_folder(series))
    infos: list[PeriodInfo] = []
    for path, stamp in dataset.store.files(found.folder):
        if not path.name.endswith(".parquet"):
            continue
        if (info := footers(path, stamp)) is None or info.series != series:
            why = "not a readable period" if info is None else f"its metadata names {info.series or 'no series'}"
            found.not_counted.append(f"{path.name}: {why}")
        else:
            infos.append(info)
    infos.sort(key=lambda info: info.start_ms)
    firsts = [i.first_open_ms for i in infos if i.present and i.first_open_ms is not None]
    if not firsts:
        return found
    interval, first = series.interval, min(firsts)
    found.first_open_ms, found.latest = first, infos[-1].path
    found.last_open_ms = max(i.last_open_ms for i in infos if i.present and i.last_open_ms is not None)
    ranges: list[Gap] = []
    for before, info in zip([None, *infos], infos, strict=False):
        held = [g for g in info.gaps if g[1] >= first]  # a hole before the first candle is not history
        expected = info.expected - sum(g[2] for g in info.gaps if g[1] < first)
        for start, end in periods_between(interval, before.end_ms, info.start_ms) if before else ():  # absent
            bounds = np.array([floor_open_ms(start - 1, interval), first_open_from_ms(end, interval)])
            absent = gaps(bounds, interval)
            ranges += absent
            found.unconfirmed += (count := sum(g[2] for g in absent))
            found.periods.append(PeriodCount(period_name(interval, start), count, 0, False))
        ranges += held
        found.unconfirmed += sum(g[2] for g in info.unconfirmed if g[1] >= first)
        found.periods.append(PeriodCount(info.path.stem, expected, info.present, info.complete))
    found.gaps = _merged(ranges, interval)
    return found


def dataset_completeness(dataset: Dataset, cache: Path | None = None, *, keep: bool = True) -> list[SeriesCompleteness]:
    """Every series stored under the dataset's root, in its order. ``cache``: the footers read before
    (rewritten only if ``keep``: --health writes nothing)."""
    footers = Footers(dataset, cache)
    found = [series_completeness(dataset, series, footers) for series in dataset.all_series()]
    if keep:
        footers.save()
    return found
