"""retention.py without a disk: a FolderScan built by hand, the rules and a fixed time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from store.exports import ExportFile
from store.layout import export_file_name
from store.retention import RetentionRules, duplicate_removals, plan_cleanup, protected_files, retention_removals
from store.scan import FolderScan
from store.validation import FileValidation

NOW = datetime(2024, 11, 10, 12, 0, 0, tzinfo=UTC)
RULES = RetentionRules("1h", frozenset({"BTCUSDT", "ETHUSDT"}), max_files_per_symbol=2, retention_days=7)


def export(symbol: str, days_old: float, interval: str = "1h", size: int = 100) -> ExportFile:
    created = NOW - timedelta(days=days_old)
    return ExportFile(Path("/exports") / export_file_name(symbol, interval, created), symbol, interval, created, size)


def scan(
    *files: ExportFile, invalid: tuple[ExportFile, ...] = (), hashes: dict[ExportFile, str] | None = None
) -> FolderScan:
    ordered = sorted(files + invalid, key=lambda f: (f.created, f.name))
    validations = {f.path: FileValidation(f.path, f not in invalid) for f in ordered}
    return FolderScan(ordered, validations, {f.path: h for f, h in (hashes or {}).items()})


def test_newest_valid_file_of_each_configured_symbol_and_interval_is_protected() -> None:
    btc_old, btc_new = export("BTCUSDT", 30), export("BTCUSDT", 20)
    btc_1d = export("BTCUSDT", 40, interval="1d")
    foreign = export("DOGEUSDT", 1)
    assert protected_files([btc_old, btc_new, btc_1d, foreign], RULES.configured_symbols) == {btc_new.path, btc_1d.path}


def test_an_old_protected_file_is_kept_and_its_symbol_reported_stale() -> None:
    btc_old, btc_new = export("BTCUSDT", 30), export("BTCUSDT", 20)
    btc_1d = export("BTCUSDT", 40, interval="1d")  # another interval: protected, but not what "stale" is about
    valid = [btc_1d, btc_old, btc_new]
    removals, stale = retention_removals(valid, protected_files(valid, RULES.configured_symbols), RULES, NOW)
    assert removals == {btc_old.path: "older than 7 days"}
    assert stale == ["BTCUSDT"]


def test_beyond_the_newest_n_goes_even_when_young() -> None:
    eth = [export("ETHUSDT", days) for days in (3, 2, 1)]
    removals, stale = retention_removals(eth, {eth[-1].path}, RULES, NOW)
    assert removals == {eth[0].path: "beyond the newest 2 of ETHUSDT 1h"}
    assert stale == []


def test_an_unconfigured_symbol_has_no_protection() -> None:
    doge = export("DOGEUSDT", 10)
    assert retention_removals([doge], set(), RULES, NOW) == ({doge.path: "older than 7 days"}, [])


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
