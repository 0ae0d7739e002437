"""The store's invariants on real files, without the CLI: validate before
replace, order by content, bounded memory, our own temp names, stop-aware
scans, summaries that add up. The clock is the only thing injected."""

from __future__ import annotations

import os
import threading
import tracemalloc
from datetime import timedelta
from pathlib import Path

import pytest

import crypto_data_export.store.scan as folder_scan
from crypto_data_export.core.clock import ms_to_iso
from crypto_data_export.core.errors import InvalidDataError, OlderDataError
from crypto_data_export.store.cleanup_report import CleanupResult, merge_cleanups
from crypto_data_export.store.exports import latest_per_series
from crypto_data_export.store.files import FileManager
from crypto_data_export.store.formats import CSV
from crypto_data_export.store.formats.csv_format import BLOCK_BYTES, CSV_HEADER, LINE_LIMIT, CsvCheck
from crypto_data_export.store.layout import export_file_name, our_temp_name
from crypto_data_export.store.validation import NOT_CHECKED, FileValidation
from tests.support import BTC_FILE, NOW, check_bytes, put, snapshot, temp_name, valid_bytes, with_value

HOUR_MS = 3_600_000


def manager(folder: Path, **kwargs) -> FileManager:  # type: ignore[no-untyped-def]
    return FileManager(folder, "1h", ["BTCUSDT", "ETHUSDT"], now=lambda: NOW, **kwargs)


# --- validate before replace ------------------------------------------------------------


def test_invalid_candles_are_never_published_and_the_previous_file_stays(tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    previous = put(folder, "BTCUSDT", 0.5, valid_bytes(24, 0.5))
    fm = manager(folder)
    kept = fm.newest_valid_export("BTCUSDT")
    assert kept is not None
    candles = with_value(CSV.read(BTC_FILE), 5, "high", "1.00000000")  # row 6: high below low
    before = snapshot(tmp_path)

    with pytest.raises(InvalidDataError) as caught:
        fm.write_export("BTCUSDT", candles, replacing=kept)

    message = str(caught.value)
    assert "opening 2024-10-28 05:00:00+00:00 (row 6: high 1.00000000 < low" in message
    assert f"{previous.name} is kept" in message and "\n" not in message
    assert snapshot(tmp_path) == before, "a file, temp file or quarantine appeared"


def test_older_candles_never_replace_newer_ones(tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    put(folder, "BTCUSDT", 0.5, valid_bytes(24, 0.5))
    fm = manager(folder)
    kept = fm.newest_valid_export("BTCUSDT")
    assert kept is not None
    before = snapshot(tmp_path)

    with pytest.raises(OlderDataError) as caught:
        fm.write_export("BTCUSDT", CSV.read(BTC_FILE), replacing=kept)  # the real day: two weeks older

    message = str(caught.value)
    assert "2024-10-28T23:00:00+00:00" in message and ms_to_iso(kept.newest_candle_ms) in message
    assert snapshot(tmp_path) == before


def test_a_verdict_written_equals_the_verdict_read(tmp_path: Path) -> None:
    fm = manager(tmp_path / "exports")
    path, verdict = fm.write_export("BTCUSDT", CSV.read(BTC_FILE))
    assert verdict == fm.validate_file(path) and verdict.last_open_ms is not None


# --- order by content -------------------------------------------------------------------


def test_latest_per_series_is_by_content_not_by_name() -> None:
    def verdict(name: str, valid: bool, last_open_ms: int | None = None) -> FileValidation:
        return FileValidation(Path("/x") / name, valid, None if valid else "bad", last_open_ms=last_open_ms)

    future = verdict("BTCUSDT_1h_20990101_000000.csv", True, 1_000 * HOUR_MS)
    today = verdict("BTCUSDT_1h_20241110_120000.csv", True, 2_000 * HOUR_MS)
    broken = verdict("ETHUSDT_1h_20990101_000000.csv", False)
    other_interval = verdict("ETHUSDT_4h_20241110_120000.csv", True, 3_000 * HOUR_MS)
    latest = latest_per_series([future, today, broken, other_interval])
    assert latest == {
        ("spot", "BTCUSDT", "1h"): today,
        ("spot", "ETHUSDT", "1h"): broken,
        ("spot", "ETHUSDT", "4h"): other_interval,
    }


def test_newest_valid_export_is_the_newest_content(tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    newest = put(folder, "BTCUSDT", 1, valid_bytes(24, 1))
    (folder / "BTCUSDT_1h_20990101_000000.csv").write_bytes(valid_bytes(24, 3))  # named ahead, older candles
    found = manager(folder).newest_valid_export("BTCUSDT")
    assert found is not None and found.file.path == newest


# --- bounded memory ------------------------------------------------------------------------


def test_a_large_file_streamed_gets_the_whole_files_verdict(tmp_path: Path) -> None:
    """CRLF line ends, read by pyarrow the same way streamed as whole: no layout is left undecided."""
    folder = tmp_path / "exports"
    crlf = put(folder, "BTCUSDT", 1, BTC_FILE.read_bytes().replace(b"\n", b"\r\n"))
    exact = check_bytes(CSV, crlf.read_bytes(), "1h", crlf)[0]  # judged from its whole bytes
    assert exact.valid

    verdict = folder_scan.check_regular_file(crlf, "1h").validation
    assert verdict == exact
    assert manager(folder).validate_file(crlf) == verdict


@pytest.mark.parametrize(
    "head, piece",
    [
        (b"", b"x\r" * (1 << 19)),  # no LF at all
        ((CSV_HEADER + "\n").encode(), b"9," * (1 << 19)),  # one giant row
    ],
    ids=["cr_only", "one_giant_line"],
)
def test_stream_check_holds_little_whatever_it_is_fed(head: bytes, piece: bytes) -> None:
    stream = CsvCheck("1h", "f")
    tracemalloc.start()
    try:
        stream.feed(head)
        for _ in range(40):  # 40 MB
            stream.feed(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < BLOCK_BYTES + 2 * LINE_LIMIT + 2 * len(piece), f"held {peak} bytes of 40 MB fed"
    verdict = stream.finish()[0]
    assert not verdict.valid and "over 1 MB" in (verdict.reason or "")


# --- own only what is ours ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name, ours",
    [
        (temp_name("BTCUSDT_1h_20241110_120000.csv"), True),
        (temp_name("state.json"), True),
        (temp_name("status_report.json"), True),
        (temp_name("data_export_service.pid"), True),
        (temp_name("x"), False),
        (temp_name("notes.csv"), False),
        (".x.4242.deadbeef.tmp", False),
        (".BTCUSDT_1h_20241110_120000.csv.4242.deadbeef.tmp", False),  # no tag
        (temp_name("BTCUSDT_1h_20241110_120000.csv") + ".bak", False),
    ],
)
def test_our_temp_names(name: str, ours: bool) -> None:
    assert (our_temp_name(name) is not None) is ours


def test_cleanup_leaves_foreign_temp_look_alikes_alone(tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    ours = folder / temp_name(export_file_name("BTCUSDT", "1h", NOW - timedelta(days=1)))
    foreign = [folder / ".x.4242.deadbeef.tmp", folder / temp_name("x"), folder / temp_name("ETHUSDT.csv")]
    for path in [ours, *foreign]:
        path.write_text("partial")
        stamp = (NOW - timedelta(days=2)).timestamp()
        os.utime(path, (stamp, stamp))
    result = manager(folder).cleanup()
    assert result.temp_removed == [ours] and all(p.exists() for p in foreign)


# --- stop-aware scans ----------------------------------------------------------------------


def test_a_stopped_scan_judges_nothing_more_and_cleanup_touches_nothing_it_did_not_judge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "exports"
    put(folder, "BTCUSDT", 1, valid_bytes(24, 1))
    put(folder, "BTCUSDT", 2, valid_bytes(23, 2))
    put(folder, "ETHUSDT", 0.5, b"junk")
    monkeypatch.setattr(folder_scan, "STOP_GRACE_SECONDS", 0.0)
    stop = threading.Event()
    stop.set()
    fm = manager(folder, stop_event=stop)
    before = snapshot(tmp_path)

    scan = fm.scan()
    assert scan.stopped and {v.reason for v in scan.validations.values()} == {NOT_CHECKED}
    result = fm.cleanup()
    assert result.stopped and not result.removed and not result.quarantined
    assert "stopped on request" in result.summary()
    assert snapshot(tmp_path) == before
    with pytest.raises(folder_scan.ScanStopped):
        fm.newest_valid_export("BTCUSDT")


def test_a_stop_leaves_a_short_scan_its_grace_to_finish(tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    put(folder, "BTCUSDT", 1, valid_bytes(24, 1))
    stop = threading.Event()
    stop.set()
    scan = folder_scan.scan_folder(folder, stop=stop)
    assert not scan.stopped and all(v.valid for v in scan.validations.values())


# --- summaries ------------------------------------------------------------------------------


def test_a_dry_run_prune_then_cleanup_lists_what_the_real_run_removes(tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    old = put(folder, "BTCUSDT", 1, valid_bytes(24, 1))
    fm = manager(folder)
    new = fm.export_path("BTCUSDT")
    planned = FileValidation(new, True, rows=24, last_open_ms=int(NOW.timestamp() * 1000) - HOUR_MS)
    before = snapshot(tmp_path)

    pruned = fm.cleanup(dry_run=True, symbols=["BTCUSDT"], known={new: planned})
    rest = fm.cleanup(dry_run=True, known={new: planned}, gone=pruned.removed)  # the run's plan, explicit

    assert pruned.removed == [old] and rest.removed == []
    assert merge_cleanups([pruned, rest], dry_run=True).summary().startswith("dry run: would remove 1 file(s)")
    assert snapshot(tmp_path) == before


def test_merged_cleanups_count_every_removal() -> None:
    a, b, c = Path("/x/a"), Path("/x/b"), Path("/x/c")
    first = CleanupResult(removed=[a], bytes_freed=10, kept=[b], reasons={a: "beyond the newest 1"})
    second = CleanupResult(removed=[b], bytes_freed=5, kept=[c], quarantined=[(a, "bad")], stale_symbols=["X"])
    merged = merge_cleanups([first, None, second], dry_run=False)
    assert merged.removed == [a, b] and merged.bytes_freed == 15 and merged.kept == [c]
    assert merged.reasons == {a: "beyond the newest 1"} and merged.stale_symbols == ["X"]
    assert merged.summary().startswith("removed 2 file(s)")
