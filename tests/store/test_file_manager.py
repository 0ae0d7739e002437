"""FileManager on real files in tmp_path: retention, quarantine, temp files,
duplicates, symlinks and dry runs. The clock is the only thing injected."""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from pathlib import Path

import pytest

from crypto_data_export.core.errors import StorageError
from crypto_data_export.report.status_report import recorded_statistics
from crypto_data_export.store.cleanup_report import CleanupResult
from crypto_data_export.store.files import FileManager
from crypto_data_export.store.formats import CSV
from crypto_data_export.store.layout import export_file_name
from crypto_data_export.store.listing import FolderScan, scan_exports
from tests.support import BTC_FILE, CORRUPT, NOW, build_scenario, listing, put, temp_name, valid_bytes


def statistics(fm: FileManager, scan: FolderScan | None = None) -> dict[str, object]:
    """The status report's file counts, as the scheduler builds them from a scan."""
    scan = scan or fm.scan()
    return recorded_statistics(scan.files, fm.validate_all(dry_run=True, scan_result=scan))


CONFIGURED = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]


def manager(folder: Path, symbols=CONFIGURED, **kwargs) -> FileManager:
    return FileManager(folder, "1h", symbols, now=lambda: NOW, **kwargs)


def export_names(folder: Path) -> set[str]:
    return {f.name for f in scan_exports(folder)}


def test_done_means_scenario(tmp_path: Path) -> None:
    paths = build_scenario(tmp_path)
    folder = paths["folder"]
    target_before = paths["target"].read_bytes()
    notes_before = paths["notes"].read_bytes()

    result = manager(folder).cleanup()

    assert export_names(folder) == {paths["btc_1d"].name, paths["eth_10d"].name}
    assert (folder / "quarantine" / paths["btc_corrupt"].name).read_bytes() == CORRUPT
    assert [p for p, _ in result.quarantined] == [paths["btc_corrupt"]]
    assert "row 1" in result.quarantined[0][1]
    assert sorted(result.removed) == sorted([paths["btc_2d"], paths["btc_3d"]])
    assert result.bytes_freed == len(valid_bytes(23)) + len(valid_bytes(22))
    assert result.stale_symbols == ["ETHUSDT"]
    assert sorted(result.kept) == sorted([paths["btc_1d"], paths["eth_10d"]])
    assert paths["link"].is_symlink() and os.readlink(paths["link"]) == str(paths["target"])
    assert paths["target"].read_bytes() == target_before
    assert paths["notes"].read_bytes() == notes_before
    assert not result.errors
    assert "removed 2 file(s)" in result.summary() and "ETHUSDT" in result.summary()


def test_dry_run_changes_nothing_and_predicts_the_real_run(tmp_path: Path) -> None:
    paths = build_scenario(tmp_path)
    before = listing(tmp_path)

    planned = manager(paths["folder"]).cleanup(dry_run=True)

    assert listing(tmp_path) == before
    assert not (paths["folder"] / "quarantine").exists()
    assert planned.dry_run and planned.summary().startswith("dry run")
    done = manager(paths["folder"]).cleanup()
    assert sorted(planned.removed) == sorted(done.removed)
    assert planned.quarantined == done.quarantined
    assert planned.bytes_freed == done.bytes_freed
    assert planned.stale_symbols == done.stale_symbols


def test_validate_all_dry_run_then_real(tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    good = put(folder, "BTCUSDT", 1, valid_bytes())
    bad = put(folder, "BTCUSDT", 0, b"\x89PNG\r\n\x1a\n garbage")
    before = listing(tmp_path)
    results = manager(folder).validate_all(dry_run=True)
    assert listing(tmp_path) == before
    assert {r.path: r.valid for r in results} == {good: True, bad: False}
    manager(folder).validate_all()
    assert export_names(folder) == {good.name}
    assert (folder / "quarantine" / bad.name).exists()


def test_two_identical_files_are_one_duplicate_group(tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    data = valid_bytes()
    older = put(folder, "BTCUSDT", 2, data)
    newer = put(folder, "XRPUSDT", 1, data)
    same_size = put(folder, "ETHUSDT", 1, data.replace(b"68021.69", b"68021.70", 1))
    assert len(same_size.read_bytes()) == len(data)

    report = manager(folder).find_duplicates()

    assert report.groups == [[newer, older]]
    assert report.wasted_bytes == len(data)
    assert report.to_dict()["wasted_bytes"] == len(data)


def test_cleanup_removes_duplicates_but_never_a_protected_file(tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    data = valid_bytes(24, 2)
    btc_newest = put(folder, "BTCUSDT", 2, data)
    xrp_copy = put(folder, "XRPUSDT", 1, data)
    eth_new = put(folder, "ETHUSDT", 0.1, valid_bytes(20, 0.1))
    eth_copy = put(folder, "ETHUSDT", 0.2, valid_bytes(20, 0.1))

    result = manager(folder, max_files_per_symbol=3).cleanup()

    assert result.duplicates_removed == [eth_copy]
    assert export_names(folder) == {btc_newest.name, xrp_copy.name, eth_new.name}


def test_temp_files_older_than_an_hour_are_removed(tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    old = folder / temp_name("BTCUSDT_1h_20241110_100000.csv")
    young = folder / temp_name("BTCUSDT_1h_20241110_115000.csv", os.getpid(), "cafef00d")  # its writer is alive
    old_state = folder / temp_name("state.json", token="0123abcd")
    lookalike = folder / ".BTCUSDT.tmp"
    untagged = folder / ".BTCUSDT_1h_20241110_100000.csv.4242.deadbeef.tmp"  # no tag: another program's
    foreign = folder / temp_name("x")  # tagged, but "x" is no name of ours
    for path, age in (
        (old, timedelta(hours=2)),
        (young, timedelta(minutes=10)),
        (old_state, timedelta(days=1)),
        (lookalike, timedelta(days=3)),
        (untagged, timedelta(days=3)),
        (foreign, timedelta(days=3)),
    ):
        path.write_text("partial")
        stamp = (NOW - age).timestamp()
        os.utime(path, (stamp, stamp))

    result = manager(folder).cleanup()

    assert sorted(result.temp_removed) == sorted([old, old_state])
    assert young.exists() and lookalike.exists() and untagged.exists() and foreign.exists()
    assert not old.exists() and not old_state.exists()


def test_symlink_named_like_ours_pointing_outside_is_untouched(tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    outside = tmp_path / "elsewhere.csv"
    outside.write_bytes(valid_bytes())
    old_link = folder / export_file_name("DOGEUSDT", "1h", NOW - timedelta(days=30))
    old_link.symlink_to(outside)
    fm = manager(folder)

    result = fm.cleanup()
    assert old_link.is_symlink() and outside.read_bytes() == valid_bytes()
    assert result.removed == [] and result.quarantined == []
    assert fm.validate_all() == [] and fm.find_duplicates().groups == []
    with pytest.raises(StorageError):
        fm.quarantine(old_link, "test")
    assert old_link.is_symlink()


def test_files_in_subfolders_and_foreign_names_are_untouched(tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    nested = put(folder / "logs", "BTCUSDT", 30, CORRUPT)
    dir_named_like_ours = folder / export_file_name("BTCUSDT", "1h", NOW - timedelta(days=40))
    dir_named_like_ours.mkdir()
    foreign = {
        name: folder / name
        for name in (
            "notes.csv",
            "status_report.json",
            "state.json",
            ".run.lock",
            "export_log.log",
            "BTCUSDT_1h_20200101_000000.csv.bak",
        )
    }
    for path in foreign.values():
        path.write_text("x")
    os.mkfifo(folder / export_file_name("ETHUSDT", "1h", NOW - timedelta(days=50)))
    before = listing(tmp_path)

    result = manager(folder).cleanup()

    assert listing(tmp_path) == before
    assert nested.read_bytes() == CORRUPT and dir_named_like_ours.is_dir()
    assert result.removed == [] and result.quarantined == []


def test_unconfigured_symbol_old_file_is_removed(tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    doge = put(folder, "DOGEUSDT", 10, valid_bytes())
    btc = put(folder, "BTCUSDT", 10, valid_bytes(20))
    result = manager(folder).cleanup()
    assert result.removed == [doge]
    assert result.stale_symbols == ["BTCUSDT"]
    assert export_names(folder) == {btc.name}


def test_retention_keeps_newest_two(tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    files = [put(folder, "BTCUSDT", age, valid_bytes(24 - i, age)) for i, age in enumerate((0.1, 1, 2, 3))]
    sol_new = put(folder, "SOLUSDT", 1, valid_bytes(10, 1))
    sol_old = put(folder, "SOLUSDT", 8, valid_bytes(11, 8))  # among the newest two, but too old
    result = manager(folder, max_files_per_symbol=2).cleanup()
    assert export_names(folder) == {files[0].name, files[1].name, sol_new.name}
    assert sorted(result.removed) == sorted([files[2], files[3], sol_old])
    assert result.stale_symbols == []


def test_newest_valid_export_falls_back_past_corrupt_files(tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    good = put(folder, "BTCUSDT", 2, valid_bytes())
    bad = put(folder, "BTCUSDT", 1, CORRUPT)
    put(folder, "BTCUSDT", 0, valid_bytes(5), interval="4h")  # other interval: not considered
    fm = manager(folder)

    found = fm.newest_valid_export("BTCUSDT", quarantine=False)
    assert found is not None and found.file.path == good and bad.exists()
    record = CleanupResult()
    found = fm.newest_valid_export("BTCUSDT", record=record)
    assert found is not None
    assert found.file.path == good and not bad.exists()
    assert [path for path, _ in record.quarantined] == [bad]
    assert found.candles.equals(CSV.read(good))
    assert fm.newest_valid_export("ETHUSDT") is None


def test_write_export_round_trips_the_real_file_byte_for_byte(tmp_path: Path) -> None:
    folder = tmp_path / "new" / "exports"
    fm = manager(folder)
    path, verdict = fm.write_export("BTCUSDT", CSV.read(BTC_FILE))
    assert verdict.valid and verdict.rows == 24
    assert verdict == fm.validate_file(path)  # judged as written: the verdict a scan gives
    assert path == folder / "BTCUSDT_1h_20241110_120000.csv"
    assert path.read_bytes() == BTC_FILE.read_bytes()
    assert fm.validate_file(path).valid
    assert statistics(fm) == {
        "total_files": 1,
        "symbols_count": 1,
        "total_size_mb": round(len(BTC_FILE.read_bytes()) / 1024 / 1024, 2),
        "total_size_gb": 0.0,
        "total_size_bytes": len(BTC_FILE.read_bytes()),
    }


def test_file_statistics_counts_valid_files_only(tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    put(folder, "BTCUSDT", 1, valid_bytes())
    put(folder, "ETHUSDT", 1, valid_bytes(3))
    put(folder, "SOLUSDT", 1, CORRUPT)
    stats = statistics(manager(folder))
    assert stats["total_files"] == 2 and stats["symbols_count"] == 2


def test_prune_symbol_touches_only_that_symbol(tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    btc_new = put(folder, "BTCUSDT", 0, valid_bytes())
    btc_old = put(folder, "BTCUSDT", 1, valid_bytes(20))
    eth_new = put(folder, "ETHUSDT", 0, valid_bytes(15))
    eth_old = put(folder, "ETHUSDT", 1, valid_bytes(16))
    result = manager(folder).cleanup(symbols=["BTCUSDT"])
    assert result.removed == [btc_old]
    assert export_names(folder) == {btc_new.name, eth_new.name, eth_old.name}


def test_quarantine_name_clash_keeps_both(tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    fm = manager(folder)
    first = fm.quarantine(put(folder, "BTCUSDT", 1, b"one"), "first")
    second = fm.quarantine(put(folder, "BTCUSDT", 1, b"two"), "second")
    assert first != second and first.parent == second.parent == fm.folder.quarantine
    assert {first.read_bytes(), second.read_bytes()} == {b"one", b"two"}


def test_quarantine_folder_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    bad = put(folder, "BTCUSDT", 1, CORRUPT)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (folder / "quarantine").symlink_to(elsewhere)
    result = manager(folder).cleanup()
    assert bad.exists() and list(elsewhere.iterdir()) == []
    assert result.quarantined == [] and result.errors
    assert result.removed == []


def test_ensure_folder_reports_a_file_in_the_way(tmp_path: Path) -> None:
    blocker = tmp_path / "exports"
    blocker.write_text("not a folder")
    with pytest.raises(StorageError, match="cannot create export folder"):
        manager(blocker).ensure_folder()
    with pytest.raises(StorageError):
        manager(blocker / "sub").ensure_folder()


def test_removals_and_quarantines_are_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "exports"
    put(folder, "BTCUSDT", 0, valid_bytes())
    old = put(folder, "BTCUSDT", 1, valid_bytes(20))
    put(folder, "BTCUSDT", 0.5, CORRUPT)
    with caplog.at_level(logging.INFO, logger="crypto_data_export.store.files"):
        result = manager(folder).cleanup()
    assert isinstance(result, CleanupResult)
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    expected = f"removed {old.name} ({len(valid_bytes(20))} bytes): beyond the newest 1 of BTCUSDT 1h"
    assert (logging.INFO, expected) in messages
    assert any(level == logging.WARNING and "quarantined" in text and "row 1" in text for level, text in messages)


# --- cost: each operation reads only what it needs ------------------------------------


class _Opens:
    """Counts os.open calls per file name (every read goes through os.open)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.names: list[str] = []
        real = os.open

        def counted(path, *args, **kwargs):  # type: ignore[no-untyped-def]
            self.names.append(os.path.basename(os.fspath(path)))
            return real(path, *args, **kwargs)

        monkeypatch.setattr(os, "open", counted)


def test_find_duplicates_lists_once_hashes_only_colliding_sizes_and_parses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crypto_data_export.store.formats.csv_format import CsvFormat

    folder = tmp_path / "exports"
    data = valid_bytes()
    older = put(folder, "BTCUSDT", 2, data)
    newer = put(folder, "XRPUSDT", 1, data)
    same_size = put(folder, "ETHUSDT", 1, data.replace(b"68021.69", b"68021.70", 1))
    unique = put(folder, "SOLUSDT", 1, valid_bytes(10))
    bad_old = put(folder, "ADAUSDT", 3, CORRUPT + b"x")  # identical invalid files are duplicates too
    bad_new = put(folder, "ADAUSDT", 2, CORRUPT + b"x")
    expected = manager(folder).find_duplicates(scan_result=manager(folder).scan())

    def no_parsing(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("a duplicate scan must not parse or validate")

    monkeypatch.setattr(CsvFormat, "stream_checker", no_parsing)
    opens = _Opens(monkeypatch)
    report = manager(folder).find_duplicates()

    assert report == expected
    assert report.groups == [[bad_new, bad_old], [newer, older]]
    assert report.wasted_bytes == len(data) + len(CORRUPT) + 1
    assert sorted(opens.names) == sorted(p.name for p in (older, newer, same_size, bad_old, bad_new))
    assert unique.name not in opens.names


def test_scans_for_one_symbol_look_only_at_its_names(tmp_path: Path) -> None:
    from crypto_data_export.store.scan import scan_folder

    folder = tmp_path / "exports"
    mine = put(folder, "BTCUSDT", 1, valid_bytes())
    other_interval = put(folder, "BTCUSDT", 1, valid_bytes(5), interval="4h")
    put(folder, "BTCUSDT2", 1, valid_bytes(6))  # a longer symbol with the same start
    put(folder, "ETHUSDT", 1, valid_bytes(7))
    link = folder / export_file_name("BTCUSDT", "1h", NOW - timedelta(hours=1))
    link.symlink_to(mine)
    temp = folder / temp_name(mine.name)
    temp.write_text("partial")
    (folder / temp_name("ETHUSDT_1h_20241110_100000.csv")).write_text("partial")

    assert [f.path for f in scan_exports(folder, symbol="BTCUSDT", interval="1h")] == [mine]
    assert [f.path for f in scan_exports(folder, symbol="BTCUSDT")] == [mine, other_interval]
    scan = scan_folder(folder, symbols=["BTCUSDT"])
    assert {f.path for f in scan.files} == {mine, other_interval}
    assert [t.path for t in scan.temp_files] == [temp]
    assert scan.validations[mine].valid and set(scan.validations) == {mine, other_interval}


def test_prune_symbol_does_not_read_back_the_file_just_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "exports"
    old = put(folder, "BTCUSDT", 1, valid_bytes(20))
    fm = manager(folder, max_files_per_symbol=2, data_retention_days=30)  # the real day is 13 days old
    fresh, verdict = fm.write_export("BTCUSDT", CSV.read(BTC_FILE))
    put(folder, "ETHUSDT", 1, valid_bytes(15))
    opens = _Opens(monkeypatch)

    result = fm.cleanup(symbols=["BTCUSDT"], known={fresh: verdict})

    assert fresh.name not in opens.names and opens.names == [old.name]
    assert result.removed == [] and sorted(result.kept) == sorted([old, fresh])
    fm.max_files_per_symbol = 1
    assert fm.cleanup(symbols=["BTCUSDT"], known={fresh: verdict}).removed == [old]


def test_prune_symbol_still_finds_a_copy_of_the_file_just_written(tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    fm = manager(folder, max_files_per_symbol=3, data_retention_days=30)
    fresh, verdict = fm.write_export("BTCUSDT", CSV.read(BTC_FILE))
    copy = put(folder, "BTCUSDT", 1, fresh.read_bytes())
    result = fm.cleanup(symbols=["BTCUSDT"], known={fresh: verdict})
    assert result.duplicates_removed == [copy] and fresh.exists()


def _scan_view(scan) -> tuple:  # type: ignore[no-untyped-def]
    return (
        [(f.path, f.size) for f in scan.files],
        {p: v for p, v in scan.validations.items()},
        sorted(scan.temp_files, key=lambda t: t.path),
        scan.unreadable,
    )


@pytest.mark.parametrize("dry_run", [False, True])
def test_cleanup_leaves_its_scan_as_a_fresh_scan_would_see_the_folder(tmp_path: Path, dry_run: bool) -> None:
    paths = build_scenario(tmp_path)
    folder = paths["folder"]
    put(folder, "SOLUSDT", 0.2, valid_bytes(12))
    put(folder, "XRPUSDT", 0.3, valid_bytes(12))  # a duplicate of SOLUSDT's, unconfigured: removed
    old_temp = folder / temp_name("BTCUSDT_1h_20241110_100000.csv")
    old_temp.write_text("partial")
    stamp = (NOW - timedelta(hours=3)).timestamp()
    os.utime(old_temp, (stamp, stamp))
    fm = manager(folder, max_files_per_symbol=3)

    result = fm.cleanup(dry_run=dry_run)
    assert result.removed and result.quarantined
    fresh = fm.scan()

    assert result.remaining is not None
    assert _scan_view(result.remaining) == _scan_view(fresh)
    assert result.remaining.duplicate_groups() == fresh.duplicate_groups()
    assert fm.find_duplicates(scan_result=result.remaining) == fm.find_duplicates()
    assert statistics(fm, result.remaining) == statistics(fm)


def test_a_large_chunk_is_written_in_slices_byte_for_byte(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import crypto_data_export.store.formats.csv_format as csv_format

    monkeypatch.setattr(csv_format, "WRITE_ROWS", 5)  # 24 rows: slices of 5, 5, 5, 5, 4
    monkeypatch.setattr(csv_format, "GATHER_ROWS", 5)
    path, verdict = manager(tmp_path / "exports").write_export("BTCUSDT", CSV.read(BTC_FILE))
    assert verdict.rows == 24 and path.read_bytes() == BTC_FILE.read_bytes()
    formatted: list[int] = []
    lines = csv_format.csv_lines
    monkeypatch.setattr(csv_format, "csv_lines", lambda candles: formatted.append(len(candles)) or lines(candles))
    pages = [CSV.read(BTC_FILE).slice(start, 3) for start in range(0, 24, 3)]  # small chunks (REST pages) ...
    path, verdict = manager(tmp_path / "pages").write_export("BTCUSDT", iter(pages))
    assert formatted == [5, 5, 5, 5, 4] and path.read_bytes() == BTC_FILE.read_bytes()  # ... gathered up to 5 rows


# --- one listing per export pass ----------------------------------------------------------


def test_folder_names_find_prefixes_and_follow_adds_and_removals() -> None:
    from crypto_data_export.store.listing import FolderNames

    names = FolderNames(["ETHUSDT_1h_b.csv", "BTCUSDT_1h_a.csv", ".BTCUSDT_1h_t.tmp", "BTCUSDT_4h_a.csv", "X"])
    assert names.starting_with(("BTCUSDT_1h_", ".BTCUSDT_1h_")) == [".BTCUSDT_1h_t.tmp", "BTCUSDT_1h_a.csv"]
    names.add("BTCUSDT_1h_c.csv")
    names.add("BTCUSDT_1h_c.csv")
    names.discard("BTCUSDT_1h_a.csv")
    names.discard("not there")
    assert names.starting_with(("BTCUSDT_1h_", "BTCUSDT_1h_c")) == ["BTCUSDT_1h_c.csv"]
    assert names.starting_with(("ZZZ",)) == []


def test_a_pass_lists_the_folder_once_and_keeps_the_listing_current(tmp_path: Path) -> None:
    """Inside ``listed_once`` the per-series steps see this manager's own writes, removals
    and quarantines; a file another process adds meanwhile waits for the next pass, and one
    it removes is skipped without an error."""
    folder = tmp_path / "exports"
    old = put(folder, "BTCUSDT", 2, valid_bytes(20, days_old=2))
    gone = put(folder, "ETHUSDT", 2, valid_bytes(20, days_old=2))
    files = manager(folder)
    with files.listed_once():
        late = put(folder, "BTCUSDT", 0.5, valid_bytes(22, days_old=0.5))  # another process, after the listing
        gone.unlink()  # another process again
        assert files.newest_valid_export("ETHUSDT") is None
        found = files.newest_valid_export("BTCUSDT")
        assert found is not None and found.file.path == old  # the late file is not seen yet
        path, verdict = files.for_interval("1h").write_export("BTCUSDT", CSV.read(old).slice(0, 21))
        pruned = files.cleanup(symbols=["BTCUSDT"], known={path: verdict})
        assert pruned.removed == [old]  # our own write counts, the older file goes
        assert late.exists()  # not in this pass's listing: not a candidate
        assert files.newest_valid_export("BTCUSDT").file.path == path
    # The next pass lists again: the late file is seen, newest by content, and retention applies.
    after = files.newest_valid_export("BTCUSDT")
    assert after is not None and after.file.path == late
    files.cleanup(symbols=["BTCUSDT"])
    assert {p.name for p in folder.iterdir() if p.suffix == ".csv"} == {late.name}


def test_a_prune_reuses_the_verdict_of_the_file_read_moments_ago(tmp_path: Path) -> None:
    """``judged``: the previous file's verdict (read by ``newest_valid_export`` just before the
    write) is used as it is, not read again: a change made behind it in between is not seen
    (the file is older than the one just written, so retention takes it either way)."""
    folder = tmp_path / "exports"
    old = put(folder, "BTCUSDT", 2, valid_bytes(20, days_old=2))
    files = manager(folder)
    previous = files.newest_valid_export("BTCUSDT")
    assert previous is not None
    path, verdict = files.write_export("BTCUSDT", previous.candles)
    old.write_bytes(CORRUPT)  # behind the manager's back, after it was judged
    pruned = files.cleanup(symbols=["BTCUSDT"], known={path: verdict}, judged={old: previous.validation})
    assert pruned.removed == [old] and pruned.quarantined == []
    # Not judged: read again, found corrupt, quarantined (never deleted).
    again = put(folder, "BTCUSDT", 3, CORRUPT)
    pruned = files.cleanup(symbols=["BTCUSDT"], known={path: verdict})
    assert [p for p, _ in pruned.quarantined] == [again]


def test_file_manager_cli_refuses_a_missing_folder_and_says_each_problem_once(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from crypto_data_export.commands import files_cmd
    from crypto_data_export.settings.settings import SETTING_VARIABLES

    monkeypatch.chdir(tmp_path)
    for name in SETTING_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    typo = tmp_path / "exprts"
    for command in (["validate"], ["duplicates"], ["cleanup"], ["cleanup", "--dry-run"]):
        assert files_cmd.main([*command, "--dir", str(typo)]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err == f"error: {typo} does not exist; give the export folder with --dir or EXPORT_DIR\n"
    assert not typo.exists()
    bad = put(tmp_path / "exports", "BTCUSDT", 0, CORRUPT)
    with caplog.at_level(logging.WARNING):
        assert files_cmd.main(["validate", "--dir", str(bad.parent)]) == 1
    assert capsys.readouterr().out.count("INVALID") == 1 and bad.name not in caplog.text
