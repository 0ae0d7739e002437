"""Which symbols a cycle exports, and which rule selected each one: the configured list
(``listed``), plus with ``EXPORT_QUOTE_ASSET`` the universe resolved at each cycle (``listed``
wins; docs/data-products.md). Its one full exchangeInfo also gives the rate limits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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
    exchange_info: Mapping[str, Any] | None = field(default=None, repr=False)  # fetched for the universe
    problem: str | None = None  # why the run fails although some symbols may be exported
    refused: bool = False  # the universe breaks EXPORT_MAX_SYMBOLS: a configuration error (exit 2)

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self.selected_by)


def universe_rule(settings: Settings) -> UniverseRule | None:
    return None if settings.quote_asset is None else UniverseRule(settings.quote_asset, settings.top_n)


def listed_plan(symbols: Sequence[str]) -> SymbolPlan:
    return SymbolPlan(dict.fromkeys(symbols, LISTED))


def resolve_plan(settings: Settings, client: ExchangeClient, listed: Sequence[str]) -> SymbolPlan:
    """The cycle's symbols now; ExchangeError if the exchange cannot tell."""
    if (rule := universe_rule(settings)) is None:
        return listed_plan(listed)
    universe = fetch_universe(client, rule)
    selected = dict.fromkeys(listed, LISTED) | {s: rule.label for s in universe.symbols if s not in listed}
    problem = None
    if len(selected) > settings.max_symbols:  # only the listed symbols are exported
        problem = (
            f"the symbol universe ({rule.setting}) selects {len(selected)} symbols, more than "
            f"EXPORT_MAX_SYMBOLS={settings.max_symbols}: set EXPORT_TOP_N, or raise EXPORT_MAX_SYMBOLS"
        )
        return SymbolPlan(dict.fromkeys(listed, LISTED), universe, universe.exchange_info, problem, refused=True)
    if not universe.symbols:
        problem = (
            f"the symbol universe is empty: {settings.base_url} lists no TRADING symbol quoted in "
            f"{rule.quote_asset} ({rule.setting}); check EXPORT_QUOTE_ASSET (e.g. USDT) and BINANCE_BASE_URL"
        )
    return SymbolPlan(selected, universe, universe.exchange_info, problem)


def unresolved_message(rule: UniverseRule, cause: Exception) -> str:
    return f"cannot resolve the symbol universe ({rule.setting}): {cause}"


def known_selection(settings: Settings, state: RunState) -> dict[str, str]:
    """Symbol -> rule as far as known without asking the exchange: the listed symbols, then
    the universe as last resolved (state.json), if a universe is configured."""
    rule = universe_rule(settings)
    selected = dict.fromkeys(settings.symbols, LISTED)
    if rule is not None:  # a universe resolved under other settings (USDT, now BTC) is not this one
        selected |= {s: label for s, label in state.universe.items() if label == rule.label and s not in selected}
    return selected
