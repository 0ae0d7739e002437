"""Issue 13: a whole run over the budget of an exchange that counts weight over a sliding window."""

from __future__ import annotations

from tests.support import export_files, manager_env, run_manager

# 40 symbols: exchangeInfo (20), time (1) and 40 klines calls (80) = 101 weight against a
# published 60 per sliding 2 s (a scaled-down 1200 per minute).
SYMBOLS = ",".join(f"T{chr(65 + i // 26)}{chr(65 + i % 26)}USDT" for i in range(40))


def test_an_over_budget_export_gets_no_429_from_a_sliding_window_exchange(tmp_path, sandbox_factory):
    exchange = sandbox_factory(
        weight_limit=60, weight_window="sliding", weight_window_seconds=2, accept_any_symbol=True
    )
    folder = tmp_path / "exports"
    env = manager_env(folder, exchange.base_url, SYMBOLS, EXPORT_WORKERS="30")
    result = run_manager(env, "--export-only", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(export_files(folder)) == 40
    assert exchange.stats.rate_limited_429 == 0
    assert exchange.stats.max_used_weight_seen <= 60


def test_an_exchange_without_used_weight_headers_is_paced_by_our_own_log(tmp_path, sandbox_factory):
    exchange = sandbox_factory(
        weight_limit=60,
        weight_window="sliding",
        weight_window_seconds=2,
        weight_headers=False,
        accept_any_symbol=True,
    )
    folder = tmp_path / "exports"
    env = manager_env(folder, exchange.base_url, SYMBOLS, EXPORT_WORKERS="30")
    result = run_manager(env, "--export-only", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert exchange.stats.rate_limited_429 == 0
    assert all(not k.lower().startswith("x-mbx-used-weight") for k in exchange._weight_now())
