"""A symbol universe: which symbols the exchange itself says to export (EXPORT_QUOTE_ASSET,
EXPORT_TOP_N: docs/data-products.md). ``fetch_universe`` makes the calls; the selection is pure.
A row that breaks our rules is skipped, never a crash: one log line counts them all.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from crypto_data_export.core.errors import BadResponseError
from crypto_data_export.core.text import printable
from crypto_data_export.settings.symbols import SYMBOL_PATTERN

if TYPE_CHECKING:
    from crypto_data_export.exchange.client import ExchangeClient

logger = logging.getLogger(__name__)

TRADING = "TRADING"
# A quote volume beyond this is garbage, not a market (Decimal would take any size).
MAX_QUOTE_VOLUME = Decimal(10) ** 30


@dataclass(frozen=True)
class UniverseRule:
    """``EXPORT_QUOTE_ASSET`` and ``EXPORT_TOP_N`` (None: every matching symbol)."""

    quote_asset: str
    top_n: int | None = None

    @property
    def label(self) -> str:
        """What the status report says selected a symbol (``selected_by``)."""
        if self.top_n is None:
            return f"quote:{self.quote_asset}"
        return f"top:{self.top_n} {self.quote_asset} by 24h quote volume"

    @property
    def setting(self) -> str:
        """The settings that define the rule, for messages."""
        top = f", EXPORT_TOP_N={self.top_n}" if self.top_n is not None else ""
        return f"EXPORT_QUOTE_ASSET={self.quote_asset}{top}"


@dataclass(frozen=True)
class Universe:
    """The symbols a rule selects now, in order (largest volume first with TOP_N, else by name)."""

    rule: UniverseRule
    symbols: tuple[str, ...]
    # How many TRADING symbols matched the quote asset before TOP_N.
    matching: int
    calls: int
    weight: int
    # The full exchangeInfo answer: the caller takes the rate limits from it (one call, not two).
    exchange_info: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


def trading_symbols(info: Mapping[str, Any], quote_asset: str) -> list[str]:
    """Every TRADING symbol of ``info`` (a full exchangeInfo answer) quoted in ``quote_asset``, sorted."""
    entries = info.get("symbols")
    if not isinstance(entries, list):
        raise BadResponseError("exchangeInfo answered without a list of symbols")
    found: set[str] = set()
    skipped: list[object] = []
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("status") != TRADING or entry.get("quoteAsset") != quote_asset:
            continue
        symbol = entry.get("symbol")
        if isinstance(symbol, str) and SYMBOL_PATTERN.fullmatch(symbol):
            found.add(symbol)
        else:
            skipped.append(symbol)
    _log_skipped(f"exchangeInfo: {quote_asset} symbols", "not a usable symbol", skipped)
    return sorted(found)


def _log_skipped(where: str, why: str, skipped: Sequence[object]) -> None:
    """One line for any number of unusable entries (60 000 must not flood the log)."""
    if skipped:
        examples = ", ".join(printable(repr(item), 60) for item in skipped[:3])
        logger.warning("%s: %d skipped, %s (e.g. %s)", where, len(skipped), why, examples)


def quote_volume(row: object) -> tuple[str, Decimal] | None:
    """(symbol, quoteVolume) of one ticker row, or None if the row is not usable."""
    symbol, raw = (row.get("symbol"), row.get("quoteVolume")) if isinstance(row, dict) else (None, None)
    if not isinstance(symbol, str) or not SYMBOL_PATTERN.fullmatch(symbol) or type(raw) not in (str, int):
        return None
    try:
        volume = Decimal(str(raw).strip())
    except InvalidOperation:
        return None
    return (symbol, volume) if volume.is_finite() and 0 <= volume <= MAX_QUOTE_VOLUME else None


def top_by_quote_volume(rows: Iterable[object], candidates: Sequence[str], n: int) -> list[str]:
    """The ``n`` candidates with the largest 24 h quote volume, largest first, ties by name; a
    candidate without a usable row is not ranked, so not selected."""
    wanted = set(candidates)
    volumes: dict[str, Decimal] = {}
    skipped: list[object] = []
    for row in rows:
        if (parsed := quote_volume(row)) is None:
            skipped.append(row)
        elif parsed[0] in wanted:
            volumes[parsed[0]] = parsed[1]
    _log_skipped("24h ticker rows", "not a usable symbol and quoteVolume", skipped)
    if unranked := sorted(wanted - volumes.keys()):
        more = f" and {len(unranked) - 10} more" if len(unranked) > 10 else ""
        logger.info(
            "24h ticker has no usable row for %d symbols (not ranked): %s",
            *(len(unranked), ", ".join(unranked[:10]) + more),
        )
    return sorted(volumes, key=lambda s: (-volumes[s], s))[:n]


def fetch_universe(client: ExchangeClient, rule: UniverseRule) -> Universe:
    """Resolve ``rule`` now: one full exchangeInfo and, with TOP_N, one full 24 h ticker."""
    market = client.market
    info = client.exchange_info(None)
    calls, weight = 1, market.weight(market.exchange_info_path, {})
    matching = trading_symbols(info, rule.quote_asset)
    symbols = matching
    if rule.top_n is not None and matching:
        rows = client.ticker_24hr()
        calls, weight = calls + 1, weight + market.weight(market.ticker_24hr_path, {})
        symbols = top_by_quote_volume(rows, matching, rule.top_n)
    return Universe(rule, tuple(symbols), len(matching), calls, weight, info)
