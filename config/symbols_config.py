"""The guide's symbol configuration (the default symbol groups, the one symbol rule) at the guide's
import path; the definitions live in ``crypto_data_export.settings.symbols``, so that an installed
package works from any folder. Each name is re-exported (``name as name``)."""

from crypto_data_export.settings.symbols import ALTCOIN_SYMBOLS as ALTCOIN_SYMBOLS
from crypto_data_export.settings.symbols import DEFAULT_SYMBOLS as DEFAULT_SYMBOLS
from crypto_data_export.settings.symbols import DEFI_SYMBOLS as DEFI_SYMBOLS
from crypto_data_export.settings.symbols import PRIMARY_SYMBOLS as PRIMARY_SYMBOLS
from crypto_data_export.settings.symbols import SYMBOL_PATTERN as SYMBOL_PATTERN
from crypto_data_export.settings.symbols import SYMBOL_RULE as SYMBOL_RULE
from crypto_data_export.settings.symbols import SymbolError as SymbolError
from crypto_data_export.settings.symbols import normalize_symbol as normalize_symbol
from crypto_data_export.settings.symbols import parse_symbol_list as parse_symbol_list
from crypto_data_export.settings.symbols import resolve_symbols as resolve_symbols
