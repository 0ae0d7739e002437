"""Text from outside made safe to show: raw, it can carry terminal escapes, newlines that
forge a log line, bidi overrides or megabytes; ``printable`` escapes and cuts it, so one
foreign value is always one bounded, inert piece of one line."""

from __future__ import annotations

import unicodedata

DEFAULT_LIMIT = 200
MAX_LINE = 2000  # one line a CLI prints
# Control (Cc), format (Cf: bidi overrides, zero-width), line and paragraph separators,
# surrogates and unassigned code points: none of them is meant to be read on a terminal.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
_ELLIPSIS = "..."


def printable(text: object, limit: int = DEFAULT_LIMIT) -> str:
    """``text`` as one line of at most ``limit`` characters (cut text ends with ``...``), every
    unsafe character escaped as Python would (``\\x1b``, ``\\n``, ``\\u202e``)."""
    raw = text if isinstance(text, str) else str(text)
    limit = max(len(_ELLIPSIS) + 1, limit)
    if len(raw) <= limit and raw.isascii() and raw.isprintable():
        return raw  # the usual case (a symbol, a file name, a time): nothing to escape or cut
    pieces: list[str] = []
    length = 0
    # Only look at what can still be shown: a 100 MB value costs no more than a short one.
    for char in raw[: limit + 1]:
        piece = repr(char)[1:-1] if unicodedata.category(char) in _UNSAFE_CATEGORIES else char
        pieces.append(piece)
        length += len(piece)
        if length > limit:
            break
    shown = "".join(pieces)
    return shown if length <= limit and len(raw) <= limit else shown[: limit - len(_ELLIPSIS)] + _ELLIPSIS
