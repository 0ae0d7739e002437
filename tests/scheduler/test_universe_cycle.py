"""The symbol universe end to end: real ``scheduled_data_manager.py`` runs against the sandbox.

EXPORT_QUOTE_ASSET=USDT with EXPORT_TOP_N=5 exports exactly the 5 TRADING USDT symbols with
the largest 24 h quote volume; after the exchange delists one, the next cycle no longer asks
for it and its file stays; an empty universe fails the run; bad settings exit 2.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from crypto_data_export.pipeline.selection import known_selection
from crypto_data_export.sandbox.fake_exchange import SandboxExchange
from crypto_data_export.settings.settings import Settings
from crypto_data_export.store.files import FileManager
from crypto_data_export.store.run_state import RunState, state_from_dict
from tests.support import (
    NOW,
    export_files,
    free_port,
    manager_env,
    one_line,
    put,
    read_json,
    run_cli,
    run_manager,
    valid_bytes,
)

# Volumes as text: "999" sorts above "1000.5" as text, below it as a number; AVAXUSDT and
# LINKUSDT tie for 5th place (AVAXUSDT wins by name); SOLUSDT has the largest volume but
# is halted; ETHBTC is quoted in BTC.
VOLUMES = {
    "BTCUSDT": "5000",
    "ETHUSDT": "4000",
    "XRPUSDT": "3000",
    "DOGEUSDT": "2000",
    "AVAXUSDT": "1000.5",
    "LINKUSDT": "1000.50",
    "UNIUSDT": "999",
    "SOLUSDT": "99999999",
    "ETHBTC": "99999999",
}
TOP_5 = ["AVAXUSDT", "BTCUSDT", "DOGEUSDT", "ETHUSDT", "XRPUSDT"]


def universe_exchange(sandbox_factory: Any) -> SandboxExchange:
    ex: SandboxExchange = sandbox_factory(symbol_status={"SOLUSDT": "HALT"}, extra_symbols=("ETHBTC",))
    ex.config.quote_volumes = {**{s: "1" for s in ex.known_symbols()}, **VOLUMES}
    return ex


def env_for(tmp_path: Path, ex: SandboxExchange, **extra: str) -> dict[str, str]:
    settings = {"EXPORT_QUOTE_ASSET": "USDT", "EXPORT_TOP_N": "5", **extra}
    return manager_env(tmp_path / "exports", ex.base_url, symbols=settings.pop("EXPORT_SYMBOLS", ""), **settings)


def exported_symbols(folder: Path) -> list[str]:
    return sorted({p.name.split("_")[0] for p in export_files(folder)})


def klines_symbols(ex: SandboxExchange) -> list[str]:
    return sorted({str(r["symbol"]) for r in ex.klines_requests()})


def test_top_5_by_volume_then_a_delisting_is_dropped_at_the_next_cycle(tmp_path: Path, sandbox_factory: Any) -> None:
    ex = universe_exchange(sandbox_factory)
    env = env_for(tmp_path, ex)
    folder = Path(env["EXPORT_DIR"])

    first = run_manager(env, "--manual")
    assert first.returncode == 0, first.stderr
    assert exported_symbols(folder) == TOP_5
    assert klines_symbols(ex) == TOP_5
    # One exchangeInfo (full, no parameters) and one 24 h ticker per cycle: weight 20 + 80.
    info_calls = [r for r in ex.requests if r.path == "/api/v3/exchangeInfo"]
    ticker_calls = [r for r in ex.requests if r.path == "/api/v3/ticker/24hr"]
    assert [r.params for r in info_calls] == [{}] and [r.params for r in ticker_calls] == [{}]
    status = read_json(folder / "status_report.json")
    assert {s: e["selected_by"] for s, e in status["symbols"].items()} == {
        s: "top:5 USDT by 24h quote volume" for s in TOP_5
    }
    assert status["universe"]["quote_asset"] == "USDT" and status["universe"]["symbols"] == 5
    doge_file = export_files(folder, "DOGEUSDT")[0]

    # The exchange delists DOGEUSDT (status BREAK): the next cycle takes LINKUSDT instead.
    ex.config.delisted = {"DOGEUSDT": ex.now_ms() - 3_600_000}
    ex.reset_log()
    second = run_manager(env, "--manual")
    assert second.returncode == 0, second.stderr
    assert "DOGEUSDT" not in klines_symbols(ex)
    # The others reuse their files (no new closed candle yet, so maybe no call); LINKUSDT is new.
    new_top = ["AVAXUSDT", "BTCUSDT", "ETHUSDT", "LINKUSDT", "XRPUSDT"]
    assert "LINKUSDT" in klines_symbols(ex) and set(klines_symbols(ex)) <= set(new_top)
    assert [r.path for r in ex.requests].count("/api/v3/exchangeInfo") == 1
    assert exported_symbols(folder) == sorted([*new_top, "DOGEUSDT"])
    assert doge_file.exists()  # its file stays until retention's normal rules remove it
    status = read_json(folder / "status_report.json")
    assert sorted(status["symbols"]) == new_top

    # --status shows the rule without asking the exchange.
    ex.reset_log()
    shown = run_manager(env, "--status")
    assert shown.returncode == 0 and ex.requests == []
    assert "top:5 USDT by 24h quote volume" in shown.stdout

    # A cleanup without the exchange (retention shortened so every file is "old"): the last
    # resolved universe (state.json) keeps its newest files protected; DOGEUSDT, which left
    # it, gets the normal rules and goes.
    ex.reset_log()
    cleanup = run_manager({**env, "DATA_RETENTION_DAYS": "0.01"}, "--cleanup-only")
    assert ex.requests == []
    assert exported_symbols(folder) == new_top, cleanup.stdout + cleanup.stderr


def test_listed_symbols_are_added_and_marked_listed(tmp_path: Path, sandbox_factory: Any) -> None:
    ex = universe_exchange(sandbox_factory)
    env = env_for(tmp_path, ex, EXPORT_TOP_N="2", EXPORT_SYMBOLS="ETHBTC,BTCUSDT")
    result = run_manager(env, "--manual")
    assert result.returncode == 0, result.stderr
    status = read_json(Path(env["EXPORT_DIR"]) / "status_report.json")
    selected = {s: e["selected_by"] for s, e in status["symbols"].items()}
    assert selected == {"ETHBTC": "listed", "BTCUSDT": "listed", "ETHUSDT": "top:2 USDT by 24h quote volume"}
    assert exported_symbols(Path(env["EXPORT_DIR"])) == ["BTCUSDT", "ETHBTC", "ETHUSDT"]


def test_list_symbols_resolves_the_universe_and_names_each_rule(tmp_path: Path, sandbox_factory: Any) -> None:
    ex = universe_exchange(sandbox_factory)
    env = env_for(tmp_path, ex, EXPORT_SYMBOLS="ETHBTC")
    result = run_manager(env, "--list-symbols")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ETHBTC", "listed"]
    assert [line.split()[0] for line in lines[1:6]] == ["BTCUSDT", "ETHUSDT", "XRPUSDT", "DOGEUSDT", "AVAXUSDT"]
    assert "6 symbols" in lines[6]
    assert not Path(env["EXPORT_DIR"]).exists()  # read-only: nothing written


def test_list_symbols_with_the_exchange_unreachable_says_so(tmp_path: Path) -> None:
    env = manager_env(tmp_path / "exports", f"http://127.0.0.1:{free_port()}", symbols="", EXPORT_QUOTE_ASSET="USDT")
    result = run_manager(env, "--list-symbols")
    assert result.returncode == 1
    assert one_line(result.stderr) and "cannot resolve the symbol universe (EXPORT_QUOTE_ASSET=USDT)" in result.stderr


def test_an_empty_universe_fails_the_run_naming_the_quote_asset(tmp_path: Path, sandbox_factory: Any) -> None:
    ex = universe_exchange(sandbox_factory)
    env = env_for(tmp_path, ex, EXPORT_QUOTE_ASSET="XYZ")
    result = run_manager(env, "--manual")
    assert result.returncode == 1
    assert "symbol universe is empty" in result.stderr and "XYZ" in result.stderr
    assert ex.klines_requests() == []
    state = read_json(Path(env["EXPORT_DIR"]) / "state.json")
    assert state["last_cycle_result"] == "failed"


def test_an_empty_universe_still_exports_the_listed_symbols_and_fails(tmp_path: Path, sandbox_factory: Any) -> None:
    ex = universe_exchange(sandbox_factory)
    env = env_for(tmp_path, ex, EXPORT_QUOTE_ASSET="XYZ", EXPORT_SYMBOLS="BTCUSDT")
    result = run_manager(env, "--manual")
    assert result.returncode == 1 and "XYZ" in result.stderr
    assert exported_symbols(Path(env["EXPORT_DIR"])) == ["BTCUSDT"]


def test_a_universe_above_export_max_symbols_is_refused_with_exit_2_and_the_listed_ones_exported(
    tmp_path: Path, sandbox_factory: Any
) -> None:
    ex = universe_exchange(sandbox_factory)
    env = env_for(tmp_path, ex, EXPORT_TOP_N="", EXPORT_MAX_SYMBOLS="3", EXPORT_SYMBOLS="ETHBTC")
    result = run_manager(env, "--manual")
    assert result.returncode == 2, result.stderr
    assert "more than EXPORT_MAX_SYMBOLS=3: set EXPORT_TOP_N, or raise EXPORT_MAX_SYMBOLS" in result.stderr
    assert exported_symbols(Path(env["EXPORT_DIR"])) == ["ETHBTC"]


def test_bad_universe_settings_exit_2_with_one_line(tmp_path: Path, sandbox_factory: Any) -> None:
    ex = universe_exchange(sandbox_factory)
    for extra, named in (
        ({"EXPORT_QUOTE_ASSET": "", "EXPORT_TOP_N": "5"}, ("EXPORT_TOP_N", "EXPORT_QUOTE_ASSET")),
        ({"EXPORT_TOP_N": "0"}, ("EXPORT_TOP_N",)),
        ({"EXPORT_QUOTE_ASSET": "US DT"}, ("EXPORT_QUOTE_ASSET",)),
    ):
        result = run_manager(env_for(tmp_path, ex, **extra), "--manual")
        assert result.returncode == 2, (extra, result.stderr)
        assert one_line(result.stderr) and all(name in result.stderr for name in named)
    assert ex.requests == []


def test_a_symbol_that_left_the_universe_keeps_its_newest_file_for_the_retention_days(tmp_path: Path) -> None:
    """Unprotected (no longer selected), its newest file goes only when its newest candle is
    older than DATA_RETENTION_DAYS, like any other file: never faster."""
    folder = tmp_path / "exports"
    recent = put(folder, "DOGEUSDT", 6, valid_bytes(24, days_old=6))
    older = put(folder, "DOGEUSDT", 6.5, valid_bytes(20, days_old=6.5))
    gone = put(folder, "LUNAUSDT", 8, valid_bytes(22, days_old=8))
    files = FileManager(folder, "1h", ["BTCUSDT"], 1, 7.0, now=lambda: NOW)
    result = files.cleanup()
    assert recent.exists()  # 6 days < 7: kept although DOGEUSDT is not selected any more
    assert not older.exists()  # beyond the newest 1 of DOGEUSDT: the normal rule
    assert not gone.exists()  # its newest candle is 8 days old
    assert sorted(p.name for p in result.removed) == sorted([older.name, gone.name])
    later = FileManager(folder, "1h", ["BTCUSDT"], 1, 7.0, now=lambda: NOW + timedelta(days=1, hours=1))
    later.cleanup()
    assert not recent.exists()  # now 7 days and an hour old


def test_state_keeps_the_last_universe_for_status_and_protection(tmp_path: Path, sandbox_factory: Any) -> None:
    ex = universe_exchange(sandbox_factory)
    env = env_for(tmp_path, ex)
    assert run_manager(env, "--manual").returncode == 0
    state = json.loads((Path(env["EXPORT_DIR"]) / "state.json").read_text())
    assert sorted(state["universe"]) == TOP_5 and state["universe_resolved_at"]


def test_an_unreachable_exchange_fails_the_cycle_with_the_universe_named(tmp_path: Path) -> None:
    env = manager_env(tmp_path / "exports", f"http://127.0.0.1:{free_port()}", symbols="", EXPORT_QUOTE_ASSET="USDT")
    result = run_manager(env, "--manual")
    assert result.returncode == 1
    assert "cannot resolve the symbol universe (EXPORT_QUOTE_ASSET=USDT)" in result.stderr


def test_self_check_exports_the_first_universe_symbol(tmp_path: Path, sandbox_factory: Any) -> None:
    ex = universe_exchange(sandbox_factory)
    env = env_for(tmp_path, ex)
    result = run_cli("test_scheduled_system.py", "--base-url", ex.base_url, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "EXPORT_QUOTE_ASSET=USDT, EXPORT_TOP_N=5 + 0 listed" in result.stdout
    assert "BTCUSDT:" in result.stdout and "exported and valid" in result.stdout


def test_a_new_listing_is_exported_at_the_next_cycle(tmp_path: Path, sandbox_factory: Any) -> None:
    ex = universe_exchange(sandbox_factory)
    env = env_for(tmp_path, ex, EXPORT_QUOTE_ASSET="BTC", EXPORT_TOP_N="")
    assert run_manager(env, "--manual").returncode == 0
    assert exported_symbols(Path(env["EXPORT_DIR"])) == ["ETHBTC"]
    ex.config.extra_symbols = ("ETHBTC", "SOLBTC")  # listed by the exchange meanwhile
    second = run_manager(env, "--manual")
    assert second.returncode == 0, second.stderr
    assert exported_symbols(Path(env["EXPORT_DIR"])) == ["ETHBTC", "SOLBTC"]
    status = read_json(Path(env["EXPORT_DIR"]) / "status_report.json")
    assert status["symbols"]["SOLBTC"]["selected_by"] == "quote:BTC"


def test_state_universe_field_is_checked_like_every_other() -> None:
    state, problems = state_from_dict({"universe": {"BTCUSDT": "quote:USDT"}, "universe_resolved_at": None})
    assert state.universe == {"BTCUSDT": "quote:USDT"} and problems == []
    state, problems = state_from_dict({"universe": {"../etc": "quote:USDT"}})
    assert state.universe == {} and problems and "universe" in problems[0]


def test_the_last_universe_counts_only_if_resolved_under_the_same_settings(tmp_path: Path) -> None:
    state = RunState(universe={"BTCUSDT": "quote:USDT", "ETHUSDT": "quote:USDT"})
    same = Settings(export_dir=tmp_path, symbols=("ETHBTC",), quote_asset="USDT")
    assert known_selection(same, state) == {"ETHBTC": "listed", "BTCUSDT": "quote:USDT", "ETHUSDT": "quote:USDT"}
    switched = Settings(export_dir=tmp_path, symbols=("ETHBTC",), quote_asset="BTC")
    assert known_selection(switched, state) == {"ETHBTC": "listed"}
    no_universe = Settings(export_dir=tmp_path, symbols=("ETHBTC",))
    assert known_selection(no_universe, state) == {"ETHBTC": "listed"}
