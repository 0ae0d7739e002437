"""The guide's symbol configuration: the default symbol groups and the one symbol rule.

The definitions live in the package (``crypto_data_export.settings.symbols``) so that an
installed ``crypto-data-export`` works from any folder; this file keeps the guide's import
path, ``config.symbols_config``, for scripts and checks that use it.
"""

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
