"""Text from outside (an exchange's headers, error messages, bodies) made safe to show.

Such text reaches exception messages, the console and the log files. Raw, it
can carry terminal escapes (``\\x1b[2J`` clears a screen, ``\\x1b]8;;`` hides a
link), carriage returns and newlines that forge a log line, bidi overrides
that reorder what is shown, or megabytes that drown the log. ``printable``
escapes all of those and cuts the text to a length, so one foreign value is
always one bounded, inert piece of one line.
"""

from __future__ import annotations

import unicodedata

DEFAULT_LIMIT = 200
# Control (Cc), format (Cf: bidi overrides, zero-width), line and paragraph separators,
# surrogates and unassigned code points: none of them is meant to be read on a terminal.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_ELLIPSIS = "..."


def _escaped(char: str) -> str:
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def printable(text: object, limit: int = DEFAULT_LIMIT) -> str:
    """``text`` as one line of at most ``limit`` characters, every unsafe character escaped.

    Escapes look like Python's (``\\x1b``, ``\\n``, ``\\u202e``); a backslash
    itself is kept, so an escape cannot be told from the same characters sent
    literally, which is harmless: neither does anything to a terminal.
    Longer text is cut and ends with ``...``.
    """
    raw = text if isinstance(text, str) else str(text)
    limit = max(len(_ELLIPSIS) + 1, limit)
    if len(raw) <= limit and raw.isascii() and raw.isprintable():
        return raw  # the usual case (a symbol, a file name, a time): nothing to escape or cut
    pieces: list[str] = []
    length = 0
    # Only look at what can still be shown: a 100 MB value costs no more than a short one.
    for char in raw[: limit + 1]:
        piece = _escaped(char) if unicodedata.category(char) in _UNSAFE_CATEGORIES else char
        pieces.append(piece)
        length += len(piece)
        if length > limit:
            break
    shown = "".join(pieces)
    if length <= limit and len(raw) <= limit:
        return shown
    return shown[: limit - len(_ELLIPSIS)] + _ELLIPSIS
