"""Which symbols a cycle exports, and which rule selected each one.

Without ``EXPORT_QUOTE_ASSET`` the list is the configured one (every symbol ``listed``).
With it, the universe is resolved at each cycle, before the export pool starts (see
``crypto_data_export.exchange.universe``): the symbols the exchange selects (``quote:USDT``, or
``top:50 USDT by 24h quote volume``) plus the symbols listed in ``EXPORT_SYMBOLS`` /
``CRYPTO_SYMBOLS``, which are added (``listed`` wins when a symbol is both). The one full
exchangeInfo the universe needs also gives the rate limits, so a cycle asks for it once.

A universe that selects nothing fails the run (exit 1) with a message naming the quote
asset; listed symbols are still exported. A symbol that leaves the universe is simply not
asked for any more: its files stay until retention's normal rules remove them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from crypto_data_export.core.errors import UniverseError
from crypto_data_export.exchange.universe import Universe, UniverseRule, fetch_universe
from crypto_data_export.settings.settings import Settings
from crypto_data_export.store.run_state import RunState

# Kept for start-up time, as a benchmark shows it matters (python -m benchmarks.bench_startup): the
# client imports requests and pandas, which --status and --health never use (0.15 s -> 0.6 s and more).
if TYPE_CHECKING:
    from crypto_data_export.exchange.client import ExchangeClient

LISTED = "listed"


@dataclass(frozen=True)
class SymbolPlan:
    """The symbols of one cycle, in order, each with the rule that selected it."""

    selected_by: dict[str, str]
    universe: Universe | None = None
    # The full exchangeInfo fetched for the universe (the rate limits come from it too).
    exchange_info: Mapping[str, Any] | None = field(default=None, repr=False)
    # Why the run fails although some symbols may be exported (an empty universe).
    problem: str | None = None

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self.selected_by)


def universe_rule(settings: Settings) -> UniverseRule | None:
    if settings.quote_asset is None:
        return None
    return UniverseRule(settings.quote_asset, settings.top_n)


def listed_plan(symbols: Sequence[str]) -> SymbolPlan:
    return SymbolPlan({s: LISTED for s in symbols})


def resolve_plan(settings: Settings, client: ExchangeClient, listed: Sequence[str]) -> SymbolPlan:
    """The cycle's symbols now; ExchangeError if the exchange cannot tell."""
    rule = universe_rule(settings)
    if rule is None:
        return listed_plan(listed)
    universe = fetch_universe(client, rule)
    selected = {s: LISTED for s in listed}
    for symbol in universe.symbols:
        selected.setdefault(symbol, rule.label)
    problem = None if universe.symbols else empty_universe_message(settings, rule)
    return SymbolPlan(selected, universe, universe.exchange_info, problem)


def empty_universe_message(settings: Settings, rule: UniverseRule) -> str:
    return (
        f"the symbol universe is empty: {settings.base_url} lists no TRADING symbol quoted in "
        f"{rule.quote_asset} ({rule.setting}); check EXPORT_QUOTE_ASSET (e.g. USDT) and BINANCE_BASE_URL"
    )


def unresolved_message(rule: UniverseRule, cause: Exception) -> str:
    return f"cannot resolve the symbol universe ({rule.setting}): {cause}"


def known_selection(settings: Settings, state: RunState) -> dict[str, str]:
    """Symbol -> rule as far as known without asking the exchange: the listed symbols, then
    the universe as last resolved (state.json), if a universe is configured."""
    selected = {s: LISTED for s in settings.symbols}
    rule = universe_rule(settings)
    if rule is not None:
        for symbol, label in state.universe.items():
            if label == rule.label:  # resolved under other settings (USDT, now BTC): not this universe
                selected.setdefault(symbol, label)
    return selected


def require_symbols(plan: SymbolPlan) -> SymbolPlan:
    """``plan``, or UniverseError if it holds no symbol at all (nothing to export is a failure)."""
    if not plan.symbols:
        raise UniverseError(plan.problem or "no symbols to export")
    return plan
