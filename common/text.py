"""Foreign text made safe to print or log: control characters escaped, length capped.

A command line read from /proc, a value from a hand-edited state file or a
message from the exchange can hold ANSI escapes, carriage returns or
newlines. Printed raw, they recolour or rewrite the operator's terminal and
forge extra lines in a log. Everything foreign that we show goes through
``printable`` first.
"""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
ELLIPSIS = "..."


def _escape(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _unsafe(char: str) -> bool:
    """C0/C1 controls, DEL, and the invisible format/separator characters that reorder or
    break lines (bidi overrides, U+2028) are unsafe; every other character prints as itself."""
    if char.isprintable():
        return False
    return char != " "


def printable(text: object, limit: int = 200) -> str:
    """``text`` (any object, via ``str``) with control characters escaped (``\\n``, ``\\x1b``,
    ``\\u202e``), cut to ``limit`` characters of the original with ``...`` appended."""
    raw = text if isinstance(text, str) else str(text)
    cut = len(raw) > limit
    if cut:
        raw = raw[: max(0, limit)]
    escaped = "".join(_escape(c) if _unsafe(c) else c for c in raw)
    return escaped + ELLIPSIS if cut else escaped
