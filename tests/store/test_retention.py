"""retention.py without a disk: a FolderScan built by hand, the rules and a fixed time.

Each hand-made file's newest candle opens an hour before its name stamp unless
a test says otherwise: retention reads age and order from that content.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from crypto_data_export.store.exports import ExportFile
from crypto_data_export.store.layout import export_file_name
from crypto_data_export.store.listing import FolderScan
from crypto_data_export.store.retention import (
    RetentionRules,
    duplicate_removals,
    plan_cleanup,
    protected_files,
    retention_removals,
)
from crypto_data_export.store.validation import FileValidation

NOW = datetime(2024, 11, 10, 12, 0, 0, tzinfo=UTC)
RULES = RetentionRules(frozenset({("spot", "1h")}), frozenset({"BTCUSDT", "ETHUSDT"}), 2, 7)


def export(symbol: str, days_old: float, interval: str = "1h", size: int = 100) -> ExportFile:
    created = NOW - timedelta(days=days_old)
    return ExportFile(Path("/exports") / export_file_name(symbol, interval, created), symbol, interval, created, size)


def newest_candle(f: ExportFile) -> int:
    return int((f.created - timedelta(hours=1)).timestamp() * 1000)


def scan(
    *files: ExportFile,
    invalid: tuple[ExportFile, ...] = (),
    hashes: dict[ExportFile, str] | None = None,
    content: dict[ExportFile, datetime] | None = None,
) -> FolderScan:
    """A scan of ``files``; ``content`` overrides when a file's newest candle opens."""
    ordered = sorted(files + invalid, key=lambda f: (f.created, f.name))
    last = {f: newest_candle(f) for f in ordered}
    last.update({f: int(t.timestamp() * 1000) for f, t in (content or {}).items()})
    validations = {f.path: FileValidation(f.path, f not in invalid, last_open_ms=last[f]) for f in ordered}
    return FolderScan(ordered, validations, {f.path: h for f, h in (hashes or {}).items()})


def test_newest_valid_file_of_each_configured_symbol_and_interval_is_protected() -> None:
    btc_old, btc_new = export("BTCUSDT", 30), export("BTCUSDT", 20)
    btc_1d = export("BTCUSDT", 40, interval="1d")
    foreign = export("DOGEUSDT", 1)
    files = [btc_old, btc_new, btc_1d, foreign]
    assert protected_files(scan(*files), files, RULES.configured_symbols) == {btc_new.path, btc_1d.path}


def test_an_old_protected_file_is_kept_and_its_symbol_reported_stale() -> None:
    btc_old, btc_new = export("BTCUSDT", 30), export("BTCUSDT", 20)
    btc_1d = export("BTCUSDT", 40, interval="1d")  # another interval: protected, but not what "stale" is about
    valid = [btc_1d, btc_old, btc_new]
    folder = scan(*valid)
    protected = protected_files(folder, valid, RULES.configured_symbols)
    removals, stale = retention_removals(folder, valid, protected, RULES, NOW)
    assert removals == {btc_old.path: "newest candle older than 7 days"}
    assert stale == ["BTCUSDT"]


def test_beyond_the_newest_n_goes_even_when_young() -> None:
    eth = [export("ETHUSDT", days) for days in (3, 2, 1)]
    removals, stale = retention_removals(scan(*eth), eth, {eth[-1].path}, RULES, NOW)
    assert removals == {eth[0].path: "beyond the newest 2 of ETHUSDT 1h"}
    assert stale == []


def test_an_unconfigured_symbol_has_no_protection() -> None:
    doge = export("DOGEUSDT", 10)
    assert retention_removals(scan(doge), [doge], set(), RULES, NOW) == (
        {doge.path: "newest candle older than 7 days"},
        [],
    )


def test_duplicates_keep_the_newest_and_never_a_protected_file() -> None:
    newest, middle, oldest = export("BTCUSDT", 1), export("BTCUSDT", 2), export("BTCUSDT", 3)
    assert duplicate_removals([[newest, middle, oldest]], protected={oldest.path}) == {
        middle.path: f"duplicate of {newest.name}"
    }


def test_plan_removes_duplicates_only_among_what_retention_keeps() -> None:
    eth_new, eth_copy = export("ETHUSDT", 1), export("ETHUSDT", 2)
    eth_gone = export("ETHUSDT", 3)  # third of ETH: retention's, not a duplicate, though identical
    corrupt = export("BTCUSDT", 0.5)
    folder = scan(
        eth_gone, eth_copy, eth_new, invalid=(corrupt,), hashes={eth_new: "same", eth_copy: "same", eth_gone: "same"}
    )
    plan = plan_cleanup(folder, RULES, NOW)
    assert plan.removals == {
        eth_gone.path: "beyond the newest 2 of ETHUSDT 1h",
        eth_copy.path: f"duplicate of {eth_new.name}",
    }
    assert plan.duplicates == {eth_copy.path}
    assert plan.stale_symbols == []


def test_newest_is_the_newest_candle_inside_never_the_name_stamp() -> None:
    """A file named in the future (host clock ahead) with older candles is not the newest:
    it is the one retention removes, and the file with the newest candle is protected."""
    future = export("BTCUSDT", -400)  # named more than a year ahead
    today = export("BTCUSDT", 0.01)
    folder = scan(future, today, content={future: NOW - timedelta(days=1)})
    plan = plan_cleanup(folder, RetentionRules(frozenset({("spot", "1h")}), frozenset({"BTCUSDT"}), 1, 7), NOW)
    assert plan.removals == {future.path: "beyond the newest 1 of BTCUSDT 1h"}
    assert protected_files(folder, [future, today], frozenset({"BTCUSDT"})) == {today.path}


def test_age_is_the_age_of_the_newest_candle() -> None:
    """A file named today whose newest candle is 30 days old is old; one named 30 days ago
    holding yesterday's candles is young."""
    fresh_name_old_data, old_name_fresh_data = export("DOGEUSDT", 0), export("XRPUSDT", 30)
    folder = scan(
        fresh_name_old_data,
        old_name_fresh_data,
        content={fresh_name_old_data: NOW - timedelta(days=30), old_name_fresh_data: NOW - timedelta(days=1)},
    )
    removals, _ = retention_removals(folder, folder.files, set(), RULES, NOW)
    assert removals == {fresh_name_old_data.path: "newest candle older than 7 days"}


def test_a_file_just_written_wins_a_tie_with_a_future_named_twin() -> None:
    """Same newest candle: the fresh file stays, so no export is deleted right after it is written."""
    future, fresh = export("BTCUSDT", -30), export("BTCUSDT", 0)
    folder = scan(future, fresh, content={future: NOW - timedelta(hours=1)}, hashes={future: "same", fresh: "same"})
    folder.fresh = {fresh.path}
    plan = plan_cleanup(folder, RetentionRules(frozenset({("spot", "1h")}), frozenset({"BTCUSDT"}), 2, 7), NOW)
    assert plan.removals == {future.path: f"duplicate of {fresh.name}"}


def test_a_backfill_removes_only_the_files_of_its_format_whose_every_candle_it_holds() -> None:
    h = 3_600_000
    new, inside, longer, in_gap = export("BTCUSDT", 0), export("BTCUSDT", 1), export("BTCUSDT", 2), export("BTCUSDT", 3)
    parquet = ExportFile(new.path.with_suffix(".parquet"), "BTCUSDT", "1h", new.created, 100)
    spans = {new: (0, 100), inside: (10, 20), longer: (-1, 50), in_gap: (60, 70), parquet: (10, 20)}
    folder = FolderScan(list(spans), {}, {})
    for f, (first, last) in spans.items():
        folder.validations[f.path] = FileValidation(f.path, True, first_open_ms=first * h, last_open_ms=last * h)
    folder.validations[new.path].gaps = [(65 * h, 65 * h, 1)]  # the new file lacks a candle in_gap holds
    assert plan_cleanup(folder, RULES, NOW, cover=new.path).removals == {inside.path: f"every candle is in {new.name}"}
