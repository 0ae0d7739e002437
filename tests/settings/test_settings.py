"""Settings and symbols: defaults, overrides, and one clear error per bad value."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from crypto_data_export.settings.settings import (
    DEFAULT_BASE_URL,
    Settings,
    SettingsError,
    cadence,
    load_settings,
    override,
)
from crypto_data_export.settings.symbols import DEFAULT_SYMBOLS, SymbolError, normalize_symbol, resolve_symbols
from tests.support import REPO, clean_environ


def test_defaults_match_the_guide() -> None:
    settings = load_settings({}, env_file=None)
    # The default host is the guide's; the tests never contact it.
    assert settings.base_url == DEFAULT_BASE_URL and DEFAULT_BASE_URL.endswith("//api.binance" + ".com")
    assert settings.export_dir == Path("historical_exports")
    assert (settings.kline_interval, settings.lookback_days, settings.export_period_hours) == ("1h", 2.0, 2.0)
    assert (settings.max_files_per_symbol, settings.data_retention_days) == (1, 7.0)
    assert settings.symbols == DEFAULT_SYMBOLS
    assert settings.symbols[:3] == ("BTCUSDT", "ETHUSDT", "SOLUSDT")
    assert "AAVEUSDT" in settings.symbols and "XRPUSDT" in settings.symbols


def test_dotenv_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("EXPORT_PERIOD_HOURS=4\nDATA_RETENTION_DAYS=3\n")
    settings = load_settings({"EXPORT_PERIOD_HOURS": "0.5"}, env_file=env_file)
    assert settings.export_period_hours == 0.5
    assert settings.data_retention_days == 3.0


def test_export_symbols_replace_and_crypto_symbols_add() -> None:
    settings = load_settings({"EXPORT_SYMBOLS": "btcusdt, ETHUSDT", "CRYPTO_SYMBOLS": "bnbusdt,BTCUSDT"}, env_file=None)
    assert settings.symbols == ("BTCUSDT", "ETHUSDT", "BNBUSDT")
    added = load_settings({"CRYPTO_SYMBOLS": "ADAUSDT"}, env_file=None)
    assert added.symbols == DEFAULT_SYMBOLS + ("ADAUSDT",)


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("EXPORT_PERIOD_HOURS", "abc", "positive number"),
        ("EXPORT_PERIOD_HOURS", "-1", "positive number"),
        ("EXCHANGE_MAX_AHEAD_HOURS", "0", "hours from 0.1 to 720"),
        ("EXCHANGE_MAX_AHEAD_HOURS", "1e300", "hours from 0.1 to 720"),
        ("EXPORT_PERIOD_HOURS", "nan", "positive number"),
        ("MAX_FILES_PER_SYMBOL", "0", "from 1 to 100000"),
        ("MAX_FILES_PER_SYMBOL", "1.5", "from 1 to 100000"),
        ("EXPORT_WORKERS", "1000", "1 to 64"),
        ("KLINE_INTERVAL", "1H", "one of 1s"),
        ("BINANCE_BASE_URL", "ftp://example", "http(s) URL"),
        ("LOG_LEVEL", "LOUD", "one of DEBUG"),
        ("HTTP_TIMEOUT_SECONDS", "0", "positive number"),
    ],
)
def test_bad_values_name_variable_value_and_what_is_accepted(variable: str, value: str, expected: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({variable: value}, env_file=None)
    message = str(caught.value)
    assert variable in message and repr(value) in message and expected in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "bad", ["../etc", "BTC;rm -rf", "", "B", "BTC//USDT", "/BTCUSDT", "BTC/", "A" * 500, "btc usdt", "BTC\x00", "B.TC"]
)
def test_hostile_symbols_are_refused(bad: str) -> None:
    with pytest.raises(SymbolError):
        normalize_symbol(bad)
    with pytest.raises(SettingsError):
        load_settings({"EXPORT_SYMBOLS": f"BTCUSDT,{bad}"}, env_file=None)


@pytest.mark.parametrize("written", ["BTC/USDT", "btc-usdt", "BTC_USDT", " btc/usdt ", "BTCUSDT"])
def test_a_pair_written_as_ccxt_or_freqtrade_users_do_is_read_as_the_exchange_symbol(written: str) -> None:
    assert normalize_symbol(written) == "BTCUSDT"
    assert load_settings({"EXPORT_SYMBOLS": f"ETH/USDT,{written}"}, env_file=None).symbols == ("ETHUSDT", "BTCUSDT")


@pytest.mark.parametrize("empty", ["", " ", "  \t"])
def test_an_empty_or_blank_export_symbols_means_the_default_list(empty: str) -> None:
    assert load_settings({"EXPORT_SYMBOLS": empty}, env_file=None).symbols == DEFAULT_SYMBOLS


def test_symbols_are_upper_cased_and_deduplicated_in_order() -> None:
    assert resolve_symbols("ethusdt,BTCUSDT,ETHUSDT", "btcusdt,SOLUSDT") == ("ETHUSDT", "BTCUSDT", "SOLUSDT")


def test_symbols_override_replaces_the_configured_list() -> None:
    settings = load_settings({"CRYPTO_SYMBOLS": "ADAUSDT"}, env_file=None, symbols_override="xrpusdt")
    assert settings.symbols == ("XRPUSDT",)


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(AttributeError):
        settings.workers = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("variable", "limit"),
    [
        ("EXPORT_PERIOD_HOURS", "0.0001 up to 8760"),
        ("EXPORT_LOOKBACK_DAYS", "3650"),
        ("DATA_RETENTION_DAYS", "36500"),
        ("HTTP_TIMEOUT_SECONDS", "600"),
        ("MAX_FILES_PER_SYMBOL", "100000"),
    ],
)
@pytest.mark.parametrize("value", ["1e300", "1e309", "99999999999999999999999999"])
def test_every_number_has_an_upper_bound_named_in_the_error(variable: str, limit: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({variable: value}, env_file=None)
    message = str(caught.value)
    assert variable in message and repr(value) in message and limit in message and "\n" not in message


def test_the_largest_accepted_values_are_accepted() -> None:
    settings = load_settings(
        {
            "EXPORT_PERIOD_HOURS": "8760",
            "EXPORT_LOOKBACK_DAYS": "3650",
            "DATA_RETENTION_DAYS": "36500",
            "HTTP_TIMEOUT_SECONDS": "600",
            "MAX_FILES_PER_SYMBOL": "100000",
        },
        env_file=None,
    )
    assert settings.export_period_hours == 8760 and settings.max_files_per_symbol == 100000


@pytest.mark.parametrize(
    "folder", ["/", "/etc", "/etc/", "/usr", "/usr/local", "/var", "/var/lib", "/tmp", "/root", "/home", "/proc/1"]
)
def test_system_folders_are_refused_as_the_export_folder(folder: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"EXPORT_DIR": folder}, env_file=None)
    message = str(caught.value)
    assert message.startswith(f"EXPORT_DIR={folder!r} is not valid:") and "\n" not in message


def test_the_home_folder_itself_is_refused_but_a_folder_inside_it_is_fine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for home in (str(tmp_path), "~", str(tmp_path / "link" / "..")):
        with pytest.raises(SettingsError, match="home folder"):
            load_settings({"EXPORT_DIR": home}, env_file=None)
    assert load_settings({"EXPORT_DIR": "~/exports"}, env_file=None).export_dir == tmp_path / "exports"
    assert load_settings({"EXPORT_DIR": "/var/lib/crypto"}, env_file=None).export_dir == Path("/var/lib/crypto")


def test_a_link_to_a_system_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "exports").symlink_to("/etc")
    with pytest.raises(SettingsError, match="/etc is a system folder"):
        load_settings({"EXPORT_DIR": str(tmp_path / "exports")}, env_file=None)


def test_the_period_has_a_floor_against_a_busy_loop() -> None:
    with pytest.raises(SettingsError, match="from 0.0001"):
        load_settings({"EXPORT_PERIOD_HOURS": "1e-300"}, env_file=None)
    assert load_settings({"EXPORT_PERIOD_HOURS": "0.0002"}, env_file=None).export_period_hours == 0.0002


@pytest.mark.parametrize(("interval", "days"), [("1w", "2"), ("1d", "1"), ("1M", "30"), ("3d", "5.9")])
def test_a_lookback_that_cannot_hold_one_closed_candle_is_refused_naming_both(interval: str, days: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"KLINE_INTERVAL": interval, "EXPORT_LOOKBACK_DAYS": days}, env_file=None)
    assert "EXPORT_LOOKBACK_DAYS" in str(caught.value) and f"KLINE_INTERVAL={interval}" in str(caught.value)


@pytest.mark.parametrize(("interval", "days"), [("1w", "14"), ("1d", "2"), ("1M", "62"), ("1h", "0.1")])
def test_a_lookback_of_two_candles_is_enough(interval: str, days: str) -> None:
    assert load_settings({"KLINE_INTERVAL": interval, "EXPORT_LOOKBACK_DAYS": days}, env_file=None).lookback_days


def test_flags_are_applied_together_and_named_in_errors() -> None:
    settings = load_settings({}, env_file=None)
    weekly = override(settings, {"KLINE_INTERVAL": ("1w", "--interval"), "EXPORT_LOOKBACK_DAYS": ("30", "--days")})
    assert (weekly.kline_interval, weekly.lookback_days) == ("1w", 30)
    with pytest.raises(SettingsError, match="--interval='1hr'"):
        override(settings, {"KLINE_INTERVAL": ("1hr", "--interval")})
    with pytest.raises(SettingsError, match="--days='100000'"):
        override(settings, {"EXPORT_LOOKBACK_DAYS": ("100000", "--days")})
    with pytest.raises(SettingsError, match=r"\(with --interval\)"):
        override(settings, {"KLINE_INTERVAL": ("1w", "--interval")})


@pytest.mark.parametrize(
    ("period", "export_at", "declared"),
    [
        ("2", None, ("hours", 2, None)),  # the guide's every(2).hours
        ("0.001", None, ("seconds", 4, None)),  # 3.6 s: whole seconds
        ("1", ":00:05", ("hours", 1, "00:05")),  # 5 s past every hour
        ("2", "00:05", ("hours", 2, "00:05")),
        ("4", ":30", ("hours", 4, ":30")),  # half past
        ("24", "06:30", ("days", 1, "06:30")),
        ("48", "23:59:59", ("days", 2, "23:59:59")),
        ("0.25", ":05", ("minutes", 15, ":05")),
    ],
)
def test_the_cadence_is_schedules_unit_count_and_at(period: str, export_at: str | None, declared: tuple) -> None:
    env = {"EXPORT_PERIOD_HOURS": period, **({"EXPORT_AT": export_at} if export_at else {})}
    settings = load_settings(env, env_file=None)
    assert settings.export_at == export_at
    assert cadence(settings.export_period_hours, settings.export_at) == declared


@pytest.mark.parametrize(
    ("period", "export_at"),
    [
        ("2", "12:00:00"),
        ("24", ":00:05"),
        ("1.5", ":00:05"),
        ("2", "::05"),
        ("2", "1:5"),
        ("1", ":60"),
        ("24", "24:00"),
    ],
)
def test_an_export_at_the_period_cannot_align_is_refused_naming_both(period: str, export_at: str) -> None:
    with pytest.raises(
        SettingsError, match=rf"^EXPORT_AT='{export_at}' is not valid with EXPORT_PERIOD_HOURS={period}"
    ):
        load_settings({"EXPORT_PERIOD_HOURS": period, "EXPORT_AT": export_at}, env_file=None)


def test_a_bad_export_at_exits_2_with_one_line_naming_it(tmp_path: Path) -> None:
    env = {**clean_environ(), "EXPORT_DIR": str(tmp_path / "exports"), "EXPORT_AT": "noon"}
    result = subprocess.run(
        [sys.executable, str(REPO / "scheduled_data_manager.py"), "--status"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: EXPORT_AT='noon' is not valid") and result.stderr.count("\n") == 1


def test_a_misspelt_variable_is_named_with_the_closest_setting(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    env_file = tmp_path / ".env"
    env_file.write_text("EXPORT_SYMBOL=ETHUSDT\nKLINE_INTERVALL=4h\nLOG_LEVEL=INFO\n")
    with caplog.at_level(logging.WARNING):
        settings = load_settings({"HTTP_TIMEOUT": "5", "HTTP_PROXY": "http://proxy:3128", "EXPORT_X": "1"}, env_file)
    assert settings.kline_interval == "1h"  # ignored, but now said
    warned = [r.getMessage() for r in caplog.records]
    assert "warning: KLINE_INTERVALL is not a setting, ignored; did you mean KLINE_INTERVAL?" in warned
    assert "warning: EXPORT_SYMBOL is not a setting, ignored; did you mean EXPORT_SYMBOLS?" in warned
    assert any(m.startswith("warning: HTTP_TIMEOUT is not") and "HTTP_TIMEOUT_SECONDS?" in m for m in warned)
    assert any(m.startswith("warning: EXPORT_X is not a setting") for m in warned)
    assert len(warned) == 4  # HTTP_PROXY and LOG_LEVEL: not ours, and a setting


def test_env_example_is_all_settings_and_kline_intervals_can_be_uncommented(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = (REPO / ".env.example").read_text(encoding="utf-8")
    (tmp_path / ".env").write_text(text.replace("# KLINE_INTERVALS=", "KLINE_INTERVALS="))
    with caplog.at_level(logging.WARNING):
        settings = load_settings({}, tmp_path / ".env")
    assert settings.kline_intervals == ("1m", "1h", "4h") and caplog.records == []
    with pytest.raises(SettingsError) as caught:
        load_settings({"KLINE_INTERVAL": "1d", "KLINE_INTERVALS": "1m,1h"}, env_file=None)
    assert "wins" not in str(caught.value) and "remove KLINE_INTERVAL" in str(caught.value)


def test_dataset_settings_default_off_and_refuse_bad_values(caplog) -> None:
    default = load_settings({}, env_file=None)
    assert (default.export_layout, default.dataset_numbers, default.dataset_retention_days) == ("files", "float", 0.0)
    chosen = load_settings(
        {"EXPORT_LAYOUT": "Dataset", "DATASET_NUMBERS": "DECIMAL", "DATASET_RETENTION_DAYS": "365"}, env_file=None
    )
    assert (chosen.export_layout, chosen.dataset_numbers, chosen.dataset_retention_days) == ("dataset", "decimal", 365)
    with pytest.raises(SettingsError, match=r"^EXPORT_LAYOUT='rolling' is not valid: expected one of files, dataset$"):
        load_settings({"EXPORT_LAYOUT": "rolling"}, env_file=None)
    with pytest.raises(SettingsError, match=r"^DATASET_NUMBERS='double' is not valid: expected one of float, decimal$"):
        load_settings({"DATASET_NUMBERS": "double"}, env_file=None)
    with caplog.at_level(logging.WARNING):
        load_settings({"DATASET_NUMBER": "float"}, env_file=None)
    assert "DATASET_NUMBER is not a setting, ignored; did you mean DATASET_NUMBERS?" in caplog.text
