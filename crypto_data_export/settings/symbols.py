"""Which symbols the exporter serves, and the rule every symbol passes before it reaches a URL
or a file name (``../etc`` or ``BTC;rm -rf`` never do)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from crypto_data_export.core.text import printable

PRIMARY_SYMBOLS: tuple[str, ...] = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
DEFI_SYMBOLS: tuple[str, ...] = ("UNIUSDT", "LINKUSDT", "DOTUSDT", "AVAXUSDT", "AAVEUSDT")
ALTCOIN_SYMBOLS: tuple[str, ...] = ("DOGEUSDT", "SHIBUSDT", "XRPUSDT")

DEFAULT_SYMBOLS: tuple[str, ...] = PRIMARY_SYMBOLS + DEFI_SYMBOLS + ALTCOIN_SYMBOLS

# The one symbol rule: exchange symbols, file names and the sandbox all use it.
SYMBOL_RULE = "[A-Z0-9]{2,20}"
SYMBOL_PATTERN = re.compile(rf"^{SYMBOL_RULE}$")


class SymbolError(ValueError):
    """A symbol that cannot be used as an exchange symbol or in a file name."""


# How ccxt, freqtrade and exchanges' web pages write a pair: BTC/USDT, btc-usdt, BTC_USDT.
_PAIR_SEPARATORS = re.compile(r"(?<=[A-Z0-9])[/_-](?=[A-Z0-9])")


def normalize_symbol(raw: str) -> str:
    """Upper-case one symbol, join a pair written ``BTC/USDT``, ``btc-usdt`` or ``BTC_USDT``,
    and refuse anything but 2-20 letters and digits."""
    symbol = _PAIR_SEPARATORS.sub("", raw.strip().upper(), count=1)
    if not SYMBOL_PATTERN.fullmatch(symbol):
        raise SymbolError(
            f"invalid symbol {printable(raw, 40)!r}: a symbol is 2 to 20 letters or digits, like BTCUSDT "
            "(BTC/USDT, BTC-USDT and BTC_USDT are read as BTCUSDT)"
        )
    return symbol


def parse_symbol_list(text: str) -> list[str]:
    """Split a comma list (``"btcusdt, ETHUSDT"``) into validated symbols; an empty item
    (``"BTCUSDT,,ETHUSDT"``) is an error: it usually means a typo."""
    return [normalize_symbol(item) for item in text.split(",")] if text.strip() else []


def unique_in_order(symbols: Iterable[str]) -> tuple[str, ...]:
    """Drop repeats, keeping the first position of each symbol."""
    return tuple(dict.fromkeys(symbols))


def resolve_symbols(export_symbols: str | None, crypto_symbols: str | None) -> tuple[str, ...]:
    """``EXPORT_SYMBOLS`` (blank: the default groups), plus ``CRYPTO_SYMBOLS`` (the guide's
    "Additional" symbols)."""
    symbols = listed_symbols(export_symbols, crypto_symbols)
    if not (export_symbols and export_symbols.strip()):
        symbols = unique_in_order(DEFAULT_SYMBOLS + symbols)
    if not symbols:
        raise SymbolError("no symbols configured: set EXPORT_SYMBOLS or CRYPTO_SYMBOLS")
    return symbols


def listed_symbols(export_symbols: str | None, crypto_symbols: str | None) -> tuple[str, ...]:
    """The symbols listed by hand (``EXPORT_SYMBOLS`` then ``CRYPTO_SYMBOLS``), without the
    default groups: with a symbol universe (``EXPORT_QUOTE_ASSET``) these are added to it,
    and the list may be empty."""
    return unique_in_order(parse_symbol_list(export_symbols or "") + parse_symbol_list(crypto_symbols or ""))


def shard_of(symbol: str, count: int) -> int:
    """The share (0 to count-1) that takes ``symbol`` when ``count`` workers split a universe: the first
    8 bytes of its name's SHA-256, so every process, machine and Python version agrees (hash() is salted)."""
    return int.from_bytes(hashlib.sha256(symbol.encode()).digest()[:8], "big") % count
