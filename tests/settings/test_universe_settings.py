"""EXPORT_QUOTE_ASSET and EXPORT_TOP_N: parsing, bounds, and how listed symbols combine."""

from __future__ import annotations

import pytest

from crypto_data_export.settings.settings import SETTING_VARIABLES, SettingsError, load_settings
from crypto_data_export.settings.symbols import DEFAULT_SYMBOLS


def load(**env: str):  # type: ignore[no-untyped-def]
    return load_settings(environ=env, env_file=None)


def test_quote_asset_is_upper_cased_and_replaces_the_default_groups() -> None:
    settings = load(EXPORT_QUOTE_ASSET=" usdt ", EXPORT_TOP_N="50")
    assert (settings.quote_asset, settings.top_n) == ("USDT", 50)
    assert settings.symbols == ()  # the universe replaces the default groups


def test_listed_symbols_are_added_to_the_universe() -> None:
    settings = load(EXPORT_QUOTE_ASSET="USDT", EXPORT_SYMBOLS="ethbtc", CRYPTO_SYMBOLS="BNB/EUR,ETHBTC")
    assert settings.symbols == ("ETHBTC", "BNBEUR")


def test_without_a_quote_asset_the_list_is_unchanged() -> None:
    assert load().symbols == DEFAULT_SYMBOLS
    assert (load().quote_asset, load().top_n) == (None, None)


def test_top_n_without_a_quote_asset_names_both_settings() -> None:
    with pytest.raises(SettingsError) as caught:
        load(EXPORT_TOP_N="5")
    assert "EXPORT_TOP_N=5" in str(caught.value) and "EXPORT_QUOTE_ASSET" in str(caught.value)


@pytest.mark.parametrize("raw", ["0", "-3", "2001", "five", "1.5", "1e3"])
def test_top_n_is_a_bounded_positive_whole_number(raw: str) -> None:
    with pytest.raises(SettingsError, match="EXPORT_TOP_N"):
        load(EXPORT_QUOTE_ASSET="USDT", EXPORT_TOP_N=raw)


@pytest.mark.parametrize("raw", ["US DT", "USDT;rm", "../x", "A" * 21, "US-DT"])
def test_quote_asset_is_letters_and_digits(raw: str) -> None:
    with pytest.raises(SettingsError, match="EXPORT_QUOTE_ASSET"):
        load(EXPORT_QUOTE_ASSET=raw)


def test_new_variables_are_known_settings() -> None:
    assert {"EXPORT_QUOTE_ASSET", "EXPORT_TOP_N"} <= set(SETTING_VARIABLES)


def test_more_symbols_than_export_max_symbols_are_refused_naming_it() -> None:
    assert load(EXPORT_MAX_SYMBOLS="2", EXPORT_SYMBOLS="BTCUSDT,ETHUSDT").max_symbols == 2
    with pytest.raises(SettingsError, match="3 listed symbols: more than EXPORT_MAX_SYMBOLS=2; export fewer"):
        load(EXPORT_MAX_SYMBOLS="2", EXPORT_SYMBOLS="BTCUSDT,ETHUSDT,SOLUSDT")
    with pytest.raises(SettingsError, match="0 listed symbols and EXPORT_TOP_N=50: more than EXPORT_MAX_SYMBOLS=10"):
        load(EXPORT_MAX_SYMBOLS="10", EXPORT_QUOTE_ASSET="USDT", EXPORT_TOP_N="50")
