"""The guide's symbol configuration (the default symbol groups, the one symbol rule) at the guide's
import path; the definitions live in ``crypto_data_export.settings.symbols``, so that an installed
package works from any folder."""

from crypto_data_export.settings.symbols import (
    ALTCOIN_SYMBOLS,
    DEFAULT_SYMBOLS,
    DEFI_SYMBOLS,
    PRIMARY_SYMBOLS,
    SYMBOL_PATTERN,
    SYMBOL_RULE,
    SymbolError,
    normalize_symbol,
    parse_symbol_list,
    resolve_symbols,
)

__all__ = [
    "ALTCOIN_SYMBOLS",
    "DEFAULT_SYMBOLS",
    "DEFI_SYMBOLS",
    "PRIMARY_SYMBOLS",
    "SYMBOL_PATTERN",
    "SYMBOL_RULE",
    "SymbolError",
    "normalize_symbol",
    "parse_symbol_list",
    "resolve_symbols",
]
