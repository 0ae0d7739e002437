"""Resume journals (crypto_data_export.store.journal) on real files: whole pages kept, read one at a
time, anything doubtful cut off or discarded, another series' journal never used, a link never followed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from crypto_data_export.core.candles import SeriesId
from crypto_data_export.exchange.klines import rows_text
from crypto_data_export.store.journal import PageJournal, covering

ROW = [1_700_000_000_000, "1.0", "2.0", "0.5", "1.5", "10", 1_700_000_059_999, "15", 3, "5", "7.5"]
SERIES = SeriesId("api.binance.com", "spot", "BTCUSDT", "1m")


def rows_of(journal: PageJournal) -> list[list[list[object]]]:
    return [rows for _, _, rows, _ in journal.pages()]


def test_pages_come_back_in_order_and_a_torn_last_record_is_cut_before_the_next_page(tmp_path: Path) -> None:
    folder = tmp_path / ".backfill_partial"
    journal = PageJournal(folder, SERIES, 5)
    journal.append(rows_text([ROW]), 5, 9)
    journal.append(rows_text([ROW, ROW]), 10, 19)
    with open(journal.path, "a") as handle:
        handle.write('{"sha256": "ab", "from": 1, "to": 2, "rows": "[[')  # a crash in the middle of a write
    again = PageJournal(folder, SERIES, 5)
    assert rows_of(again) == [[ROW], [ROW, ROW]]
    assert rows_of(again) == [[ROW], [ROW, ROW]]  # read twice: the same pages
    again.append(rows_text([ROW]), 2, 4)  # after the whole pages, not after the torn text; pages come in any order
    assert [(first, last) for first, last, *_ in PageJournal(folder, SERIES, 5).pages()] == [(5, 9), (10, 19), (2, 4)]
    (*_, where), *_ = PageJournal(folder, SERIES, 5).pages()
    assert again.rows_at(where) == [ROW]  # a page read again where it was found


def test_a_damaged_or_missing_page_cuts_the_journal_and_a_foreign_header_discards_it(tmp_path: Path) -> None:
    folder = tmp_path / ".backfill_partial"
    damaged = PageJournal(folder, SERIES, 5)
    for page in ([ROW], [ROW, ROW], [ROW]):
        damaged.append(rows_text(page), 5, 9)
    lines = damaged.path.read_text().splitlines(keepends=True)
    damaged.path.write_text("".join([lines[0], lines[1], lines[3]]))  # the second page lost: the chain breaks
    assert rows_of(PageJournal(folder, SERIES, 5)) == [[ROW]]
    assert damaged.path.read_text() == lines[0] + lines[1]  # cut after the last good page

    for other in (dataclasses.replace(SERIES, market="usdm"), dataclasses.replace(SERIES, exchange_host="testnet")):
        PageJournal(folder, other, 6).append(rows_text([ROW]), 5, 9)
        assert rows_of(PageJournal(folder, SERIES, 6)) == []
        assert not PageJournal(folder, SERIES, 6).path.exists()


def test_a_journal_given_back_is_cut_there(tmp_path: Path) -> None:
    folder = tmp_path / ".backfill_partial"
    journal = PageJournal(folder, SERIES, 5)
    journal.append(rows_text([ROW]), 5, 9)
    journal.append(rows_text([ROW, ROW]), 10, 19)
    reader = PageJournal(folder, SERIES, 5)
    pages = reader.pages()
    assert next(pages)[2] == [ROW] and next(pages)[:3] == (10, 19, [ROW, ROW])
    reader.cut("the caller's checks refuse it")
    assert rows_of(PageJournal(folder, SERIES, 5)) == [[ROW]]


def test_a_symlinked_journal_is_left_alone_and_never_written(tmp_path: Path) -> None:
    folder = tmp_path / ".backfill_partial"
    folder.mkdir()
    target = tmp_path / "elsewhere"
    target.write_text("not ours")
    journal = PageJournal(folder, SERIES, 5)
    journal.path.symlink_to(target)
    assert rows_of(journal) == [] and not journal.writable
    journal.append(rows_text([ROW]), 5, 9)
    fresh = PageJournal(folder, SERIES, 5)
    fresh.append(rows_text([ROW]), 5, 9)  # not through a link it did not look at either
    assert target.read_text() == "not ours" and journal.path.is_symlink() and not fresh.writable


def test_the_journal_that_starts_last_at_or_before_a_span_covers_it(tmp_path: Path) -> None:
    folder = tmp_path / ".backfill_partial"
    PageJournal(folder, SERIES, 100).append(rows_text([ROW]), 5, 9)
    PageJournal(folder, SERIES, 120).append(rows_text([ROW]), 5, 9)
    PageJournal(folder, dataclasses.replace(SERIES, interval="1h"), 130).append(rows_text([ROW]), 5, 9)
    assert covering(folder, SERIES, 150).start_ms == 120
    assert covering(folder, SERIES, 110).start_ms == 100
    assert covering(folder, SERIES, 99).start_ms == 99  # nothing earlier: a new journal
