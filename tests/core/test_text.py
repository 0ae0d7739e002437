"""crypto_data_export.core.text.printable: foreign text becomes one bounded, inert piece of a line."""

from __future__ import annotations

import pytest

from crypto_data_export.core.text import printable


@pytest.mark.parametrize(
    "raw, shown",
    [
        ("Invalid symbol.", "Invalid symbol."),
        ("\x1b[2J\x1b[31mred", "\\x1b[2J\\x1b[31mred"),
        ("a\r\nerror: forged", "a\\r\\nerror: forged"),
        ("tab\there", "tab\\there"),
        ("bell\x07 del\x7f c1\x9b", "bell\\x07 del\\x7f c1\\x9b"),
        ("rtl\u202eoverride zw\u200b", "rtl\\u202eoverride zw\\u200b"),
        ("line\u2028sep", "line\\u2028sep"),
        ("prix 1 000 € — ok", "prix 1 000 € — ok"),  # ordinary text stays readable
        (404, "404"),
    ],
)
def test_control_characters_are_escaped(raw: object, shown: str) -> None:
    assert printable(raw) == shown


def test_long_text_is_cut_whatever_its_size() -> None:
    assert printable("x" * 10, 10) == "x" * 10
    assert printable("x" * 11, 10) == "x" * 7 + "..."
    huge = printable("\x1b" * 50_000_000, 40)  # 50 MB costs as little as 40 characters
    assert len(huge) == 40 and huge.endswith("...") and "\x1b" not in huge


def test_the_result_is_always_one_line() -> None:
    # Every character below U+3100 (controls, separators, bidi marks...) and a few further ones.
    raw = "".join(chr(c) for c in range(0x3100)) + "\ufeff\ufff9\U000e0001\U0010ffff"
    text = printable(raw, 1_000_000)
    assert len(text.splitlines()) == 1 and all(c.isprintable() or c.isspace() for c in text)
