"""``printable`` (foreign text made one safe line) and our marked JSON files."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crypto_data_export.core.owned_json import CORRUPT, FOREIGN, MISSING, OURS, mark, read_owned_json, set_aside
from crypto_data_export.core.text import printable


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain text", "plain text"),
        ("a\nb\rc\td", "a\\nb\\rc\\td"),
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        ("\x00\x7f\x9b", "\\x00\\x7f\\x9b"),
        ("abc\u202edef\u2028", "abc\\u202edef\\u2028"),
        ("ünïcode €", "ünïcode €"),
        (12345, "12345"),
        (None, "None"),
    ],
)
def test_printable_escapes_control_characters(raw: object, shown: str) -> None:
    assert printable(raw) == shown


def test_printable_truncates_with_an_ellipsis() -> None:
    assert printable("x" * 300) == "x" * 197 + "..."
    assert printable("abcdef", limit=5) == "ab..."
    shown = printable("\n" * 10, limit=8)
    assert len(shown) <= 8 and shown.endswith("...") and "\n" not in shown
    assert printable("abc", limit=3) == "abc"


def test_marked_files_are_ours_and_others_are_not(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    assert read_owned_json(path).verdict == MISSING
    path.write_text(json.dumps(mark({"a": 1}, 1)))
    found = read_owned_json(path)
    assert found.verdict == OURS and found.data == {"writer": "crypto-data-export", "format_version": 1, "a": 1}
    for text, verdict in [
        ('{"a": 1}', FOREIGN),
        ('{"writer": "other", "format_version": 1}', FOREIGN),
        ('{"writer": "crypto-data-export", "format_version": "1"}', FOREIGN),
        ("[1]", FOREIGN),
        ("null", FOREIGN),
        ("{", CORRUPT),
        ("[" * 100_000, CORRUPT),
        ('{"a": "\udcff"}', CORRUPT),
    ]:
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
        assert read_owned_json(path).verdict == verdict, text
    path.unlink()
    os.symlink(tmp_path / "elsewhere", path)
    assert read_owned_json(path).verdict == FOREIGN


def test_oversized_files_are_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps(mark({"pad": "x" * 2000}, 1)))
    found = read_owned_json(path, max_bytes=1000)
    assert found.verdict == CORRUPT and "bytes" in found.problem


def test_set_aside_never_overwrites_and_moves_links_not_targets(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    names = []
    for content in ("first", "second", "third"):
        path.write_text(content)
        aside = set_aside(path, "corrupt", moment)
        assert aside is not None and not path.exists()
        names.append(aside.name)
    assert names == [
        "state.json.corrupt-20260102T030405Z",
        "state.json.corrupt-20260102T030405Z-2",
        "state.json.corrupt-20260102T030405Z-3",
    ]
    assert [(tmp_path / n).read_text() for n in names] == ["first", "second", "third"]
    target = tmp_path / "target"
    target.write_text("precious")
    os.symlink(target, path)
    aside = set_aside(path, "foreign", moment)
    assert aside is not None and aside.is_symlink() and target.read_text() == "precious"
    assert set_aside(path, "foreign", moment) is None  # already gone
