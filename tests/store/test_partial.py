"""Resume journals (crypto_data_export.store.journal) on real files: whole pages kept, anything doubtful discarded."""

from __future__ import annotations

from pathlib import Path

from crypto_data_export.store.journal import PartialFolder

ROW = [1_700_000_000_000, "1.0", "2.0", "0.5", "1.5", "10", 1_700_000_059_999, "15", 3, "5", "7.5"]


def test_pages_come_back_in_order_and_a_torn_last_record_is_dropped(tmp_path: Path) -> None:
    journal = PartialFolder(tmp_path / ".backfill_partial").journal("BTCUSDT", "1m", 5)
    journal.append([ROW])
    journal.append([ROW, ROW])
    with open(journal.path, "a") as handle:
        handle.write('{"sha256": "ab", "rows": "[[')  # a crash in the middle of a write
    assert journal.load() == [ROW, ROW, ROW]


def test_a_damaged_record_or_a_foreign_header_discards_the_journal(tmp_path: Path) -> None:
    folder = PartialFolder(tmp_path / ".backfill_partial")
    damaged = folder.journal("BTCUSDT", "1m", 5)
    damaged.append([ROW])
    damaged.path.write_text(damaged.path.read_text().replace("1.5", "9.5"))
    assert damaged.load() == [] and not damaged.path.exists()
    foreign = folder.journal("BTCUSDT", "1m", 6)
    folder.journal("ETHUSDT", "1m", 6).append([ROW])
    (folder.folder / "ETHUSDT_1m_6.journal").rename(foreign.path)
    assert foreign.load() == [] and not foreign.path.exists()


def test_a_later_span_uses_the_journal_that_starts_earlier_and_release_removes_all(tmp_path: Path) -> None:
    folder = PartialFolder(tmp_path / ".backfill_partial")
    folder.journal("BTCUSDT", "1m", 100).append([ROW])
    folder.journal("BTCUSDT", "1h", 50).append([ROW])
    assert folder.covering("BTCUSDT", "1m", 150).start_ms == 100
    assert folder.covering("BTCUSDT", "1m", 99).start_ms == 99  # nothing earlier: a new journal
    folder.release("BTCUSDT", "1m")
    assert [p.name for p in folder.folder.iterdir()] == ["BTCUSDT_1h_50.journal"]
    folder.release("BTCUSDT", "1h")
    assert not folder.folder.exists()
