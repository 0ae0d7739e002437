"""``file_manager.py audit``: stored candles against the exchange's current ones; ``--repair``.

The exchange corrects past candles and fills archive holes later, so a file verified when written
can differ today. What is compared with what, and what a repair replaces: docs/dataset.md ("Audit").
"""

from __future__ import annotations

import functools
import os
import random
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from crypto_data_export.backfill.archive_backfill import ArchiveFetcher, plan_segments
from crypto_data_export.core.candles import (
    SeriesId,
    differing_rows,
    empty_candle_frame,
    first_open_ms,
    last_open_ms,
    open_times,
    within,
)
from crypto_data_export.core.clock import ms_to_iso, to_iso, utc_now
from crypto_data_export.core.errors import ExportError
from crypto_data_export.exchange.archive import (
    ArchiveClient,
    ArchiveError,
    ArchiveNotPublished,
    ArchivePeriod,
    ArchiveUnavailable,
    day_bounds,
    read_period_frame,
)
from crypto_data_export.exchange.client import ExchangeClient
from crypto_data_export.exchange.history import HistoricalDataExporter, SymbolExport
from crypto_data_export.report.console import ArchiveProgress
from crypto_data_export.settings.settings import Settings
from crypto_data_export.store.dataset import Dataset, PeriodInfo
from crypto_data_export.store.files import FileManager
from crypto_data_export.store.journal import remove_file
from crypto_data_export.store.run_lock import RunLock

SHOWN_PER_UNIT = 10  # finding lines printed per unit; the counts cover the rest
_PHRASES = {"missing": "missing: the exchange has it, the file not", "extra": "extra: in the file, not on the exchange"}


@dataclass(frozen=True)
class Finding:
    """One candle that differs; ``what``: a column, ``missing`` or ``extra`` (see ``_PHRASES``)."""

    open_ms: int
    what: str
    stored: str
    exchange: str
    source: str  # "rest" or the archive zip's name


@dataclass
class Stored:
    """A unit's candles as read, the open times [start, end) compared, and how to replace it."""

    path: Path
    candles: pa.Table
    start_ms: int
    end_ms: int
    replace: Callable[[pa.Table, str], Path]  # (candles, why) -> where the old file went


@dataclass
class Unit:
    """One stored unit; after its audit, what differs as counts and at most SHOWN_PER_UNIT lines
    (a period where every value differs must not hold a million findings)."""

    label: str
    series: SeriesId
    load: Callable[[], Stored | None]
    kinds: Counter[str] = field(default_factory=Counter)  # candles that differ: changed, missing, extra
    shown: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    quarantined: Path | None = None
    error: str | None = None

    def found(self, findings: list[Finding]) -> None:
        """Keep the counts and the first lines (a candle that differs from both sources alike is one line)."""
        kinds = {(f.what if f.what in _PHRASES else "changed", f.open_ms) for f in findings}
        self.kinds = Counter(kind for kind, _ in kinds)
        merged: dict[tuple[int, str, str, str], list[str]] = {}
        for f in sorted(findings, key=lambda f: f.open_ms):
            merged.setdefault((f.open_ms, f.what, f.stored, f.exchange), []).append(f.source)
        for (open_ms, what, stored, exchange), sources in list(merged.items())[:SHOWN_PER_UNIT]:
            detail = _PHRASES.get(what, f"{what}: stored {stored}, exchange {exchange}")
            self.shown.append(f"  {ms_to_iso(open_ms)} {detail} ({', '.join(sources)})")
        if len(merged) > SHOWN_PER_UNIT:
            self.shown.append(f"  ... {len(merged) - SHOWN_PER_UNIT} more")

    def report(self) -> Iterator[str]:
        if self.kinds or self.notes or self.error:
            yield f"{self.label}: " + (self.error or _counts(self.kinds) or "no difference")
        yield from self.shown
        yield from (f"  note: {note}" for note in self.notes)
        if self.quarantined is not None:
            yield f"  repaired from REST; the old file is {self.quarantined}"


@dataclass
class AuditResult:
    units: list[Unit]
    stored: int  # units in the store (before --sample)
    noun: str  # what a unit is: "periods" or "files"
    sample: int | None
    seed: int

    @property
    def ok(self) -> bool:
        return all(u.error is None and (not u.kinds or u.quarantined is not None) for u in self.units)

    def summary(self) -> str:
        differ = [unit for unit in self.units if unit.kinds]
        sampled = f" (a sample: repeat it with --sample {self.sample} --seed {self.seed})" if self.sample else ""
        counts = _counts(sum((u.kinds for u in differ), Counter()))
        return (
            f"audit: {len(self.units)} of {self.stored} stored {self.noun}{sampled}; {len(differ)} differ"
            f"{f' ({counts})' if counts else ''}, {sum(u.quarantined is not None for u in self.units)} repaired, "
            f"{sum(u.error is not None for u in self.units)} failed"
        )


def _counts(kinds: Counter[str]) -> str:
    return ", ".join(f"{kinds[k]} {k}" for k in ("changed", "missing", "extra") if kinds[k])


def compare(stored: pa.Table, theirs: pa.Table, source: str) -> list[Finding]:
    """Every difference between two candle tables of one range, by open time; values as float64."""
    mine_t, their_t = open_times(stored), open_times(theirs)
    _, mine_i, their_i = np.intersect1d(mine_t, their_t, assume_unique=True, return_indices=True)
    found = [Finding(int(t), "missing", "", "", source) for t in np.setdiff1d(their_t, mine_t)]
    found += [Finding(int(t), "extra", "", "", source) for t in np.setdiff1d(mine_t, their_t)]
    mine, their = stored.take(mine_i), theirs.take(their_i)
    for column, rows in differing_rows(mine, their).items():
        for k in rows.tolist():
            found.append(Finding(int(mine_t[mine_i[k]]), column, str(mine[column][k]), str(their[column][k]), source))
    return found


def dataset_units(dataset: Dataset, export_dir: Path, market: str) -> list[Unit]:
    """Every stored period of ``market``, in order; a series' current period is compared up to its newest candle."""
    units = []
    for series in (s for s in dataset.all_series() if s.market == market):
        periods = dataset.periods(series)
        newest = max((p.last_open_ms or -1 for p in periods), default=-1)
        for info in periods:
            load = functools.partial(_load_period, dataset, info, newest)
            name = dataset.store.name(info.path) if dataset.store.remote else os.path.relpath(info.path, export_dir)
            units.append(Unit(name, series, load))
    return units


def _load_period(dataset: Dataset, info: PeriodInfo, newest_ms: int) -> Stored | None:
    """Read under the series' lock with --repair: a cycle may have appended meanwhile."""
    series, start = info.series, info.start_ms
    assert series is not None, "Dataset.periods checks identity"
    candles = dataset.read_period(series, start)
    if candles is None or not len(candles):
        return None
    end = min(info.end_ms, max(newest_ms, last_open_ms(candles)) + 1)

    def replace(new: pa.Table, why: str) -> Path:
        old = dataset.quarantine(info.path, why)
        repair = {"kind": "audit-repair", "at": to_iso(utc_now()), "replaced": old.name}
        sources: list[dict[str, Any]] = [{"kind": "rest", "from_ms": start, "until_ms": end}, repair]
        try:  # REST served the range: its holes are confirmed empty
            dataset.write_period(series, start, new, sources, confirmed_empty=lambda a, b: start <= a <= b < end)
        except BaseException:
            dataset.store.move(old, info.path)  # nothing was written: the period keeps its old file
            raise
        return old

    return Stored(info.path, candles, start, end, replace)


def files_units(files: FileManager) -> list[Unit]:
    """The newest valid file of every series of this market in the export folder."""
    units = []
    for _, symbol, interval in sorted({f.series for f in files.scan().files if f.market == files.market}):
        manager = files.for_interval(interval)
        load = functools.partial(_load_file, manager, symbol)
        units.append(Unit(f"{symbol} {interval}", manager.series_of(symbol), load))
    return units


def _load_file(files: FileManager, symbol: str) -> Stored | None:
    if (kept := files.newest_valid_export(symbol, quarantine=False)) is None:
        return None

    def replace(candles: pa.Table, why: str) -> Path:
        path, _ = files.write_export(symbol, candles, replacing=kept)
        return files.quarantine(kept.file.path, f"{why}; {path.name} replaces it")

    candles = kept.candles
    return Stored(kept.file.path, candles, first_open_ms(candles), last_open_ms(candles) + 1, replace)


def audit_unit(unit: Unit, client: ExchangeClient, fetcher: ArchiveFetcher, server_ms: int, repair: bool) -> None:
    """Compare one unit with REST (one client) and the archive (verified zips in a temporary folder)."""
    try:
        if (stored := unit.load()) is None:
            unit.notes.append("no valid file to audit any more (quarantined or removed meanwhile)")
            return
        unit.label += "" if unit.label.endswith(stored.path.name) else f" ({stored.path.name})"
        export = SymbolExport(unit.series.symbol, empty_candle_frame(), stored.start_ms, server_ms)
        klines = HistoricalDataExporter(client, unit.series.interval)
        rest = pa.concat_tables([empty_candle_frame(), *klines.pages_of(export, stored.start_ms, stored.end_ms - 1)])
        findings = compare(stored.candles, rest, "rest")
        from_rest = bool(findings)
        for name, start, end, frame in _archive(unit, stored, fetcher, day_bounds(server_ms)[0]):
            findings += compare(within(stored.candles, start, end), frame, name)
        unit.found(findings)
        if from_rest and repair and not len(rest):
            unit.notes.append("the exchange serves none of these candles now; not repaired")
        elif from_rest and repair:
            unit.quarantined = stored.replace(rest, "audit --repair: the exchange's candles differ")
        elif findings and repair:
            unit.notes.append("only the archive differs, REST agrees with the file: not repaired")
    except ExportError as exc:
        unit.error = str(exc)


def _archive(
    unit: Unit, stored: Stored, fetcher: ArchiveFetcher, today_ms: int
) -> Iterator[tuple[str, int, int, pa.Table]]:
    """(zip name, [start, end), its candles there) of every closed archive file in the range."""
    series = unit.series
    segments = plan_segments(series.symbol, series.interval, stored.start_ms, stored.end_ms, today_ms)
    periods = [s for s in segments if isinstance(s, ArchivePeriod)]
    for period, future in fetcher.submit(periods).items():
        start, end = max(period.start_ms, stored.start_ms), min(period.end_ms, stored.end_ms)
        try:
            path, _ = future.result()
            try:
                with open(path, "rb") as handle:
                    frame = read_period_frame(handle, period)
            finally:
                remove_file(path)
        except ArchiveNotPublished:
            continue  # nothing to compare with (no candle then, or not out yet): REST covers it
        except (ArchiveError, OSError) as exc:  # an unreachable archive is named once
            if not isinstance(exc, ArchiveUnavailable) or exc is fetcher.unreachable:
                unit.notes.append(f"archive not compared: {exc}")
            continue
        yield period.zip_name, start, end, within(frame, start, end)


def audit(
    settings: Settings,
    *,
    sample: int | None = None,
    seed: int | None = None,
    repair: bool = False,
    show: Callable[[str], None] = lambda line: None,
) -> AuditResult:
    """Audit the store of ``settings`` (its layout); ``sample``: that many units at random (``seed``);
    ``show`` is given each unit's report as soon as it is audited."""
    dataset = Dataset.from_settings(settings, writes=repair) if settings.export_layout == "dataset" else None
    with ExitStack() as stack:
        if repair and dataset is None:  # the files layout's writers hold the run lock
            stack.enter_context(RunLock(settings.export_dir))
        if dataset:
            units = dataset_units(dataset, settings.export_dir, settings.market)
        else:
            units = files_units(FileManager.from_settings(settings))
        stored, seed = len(units), random.randrange(1 << 32) if seed is None else seed
        if sample is not None:
            units = [units[i] for i in sorted(random.Random(seed).sample(range(stored), min(sample, stored)))]
        client = stack.enter_context(ExchangeClient.from_settings(settings))
        archive = stack.enter_context(ArchiveClient.from_settings(settings, pool_size=2 * settings.workers))
        cache = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cdx-audit-")))
        stop = threading.Event()  # set on the way out (Ctrl-C too): downloads end at once
        fetcher = ArchiveFetcher(archive, cache, settings.workers, stop, ArchiveProgress(enabled=False))
        stack.callback(fetcher.close)
        stack.callback(stop.set)
        server_ms = client.sync_clock()
        for unit in units:  # a repair holds the series' writer lock; a held one is not waited for
            with dataset.lock(unit.series, wait=False) if dataset and repair else nullcontext(True) as free:
                if free:
                    audit_unit(unit, client, fetcher, server_ms, repair)
                else:
                    unit.error = "another writer (a cycle, a backfill) holds the series; audit it again later"
            for line in unit.report():
                show(line)
    return AuditResult(units, stored, "periods" if dataset else "files", sample, seed)
