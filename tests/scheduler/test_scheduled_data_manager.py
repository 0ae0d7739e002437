"""The scheduler CLI end to end: real subprocesses against the sandbox exchange."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import pytest

from crypto_data_export.store.formats.csv_format import CSV_HEADER
from crypto_data_export.store.layout import EXPORT_NAME_PATTERN
from crypto_data_export.store.run_lock import RunLock
from tests.support import cli_env, export_csvs, folder_listing, read_json, run_cli, start_cli, wait_until

GUIDE_KEYS = {
    "system_status": {
        "service_status": str,
        "export_count": int,
        "cleanup_count": int,
        "current_files": int,
        "symbols_with_data": int,
    },
    "configuration": {
        "export_interval_hours": (int, float),
        "data_retention_days": (int, float),
        "max_files_per_symbol": int,
    },
    "file_statistics": {"total_files": int, "symbols_count": int, "total_size_mb": float, "total_size_gb": float},
}


def assert_guide_keys(report: dict) -> None:
    assert isinstance(report["timestamp"], str)
    for section, keys in GUIDE_KEYS.items():
        for key, kind in keys.items():
            assert isinstance(report[section][key], kind), (section, key, report[section][key])


def test_export_only_writes_one_exact_csv_per_symbol_and_reruns_fetch_nothing_stored(sandbox, tmp_path: Path) -> None:
    out = tmp_path / "exports"
    env = cli_env(sandbox.base_url, out)
    first = run_cli("scheduled_data_manager.py", "--export-only", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    files = export_csvs(out)
    assert [EXPORT_NAME_PATTERN.fullmatch(f.name)["symbol"] for f in files] == ["BTCUSDT", "ETHUSDT"]
    lines = files[0].read_text().splitlines()
    assert lines[0] == CSV_HEADER and len(lines) - 1 >= 47
    stored_last = {f.name.split("_")[0]: f.read_text().splitlines()[-1].split(",")[0] for f in files}
    sandbox.reset_log()
    second = run_cli("scheduled_data_manager.py", "--export-only", env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    for request in sandbox.klines_requests():
        stored = stored_last[request["symbol"]]
        stored_ms = int(time.mktime(time.strptime(stored[:19], "%Y-%m-%d %H:%M:%S")) - time.timezone) * 1000
        assert request["startTime"] == stored_ms  # the newest stored candle, checked, and what follows
    assert len(export_csvs(out)) == 2  # the new file superseded the old one


def test_manual_cycle_writes_a_status_report_with_the_guide_keys(sandbox, tmp_path: Path) -> None:
    out = tmp_path / "exports"
    env = cli_env(sandbox.base_url, out)
    result = run_cli("scheduled_data_manager.py", "--manual", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = read_json(out / "status_report.json")
    assert_guide_keys(report)
    assert report["system_status"]["export_count"] == 1 and report["system_status"]["cleanup_count"] == 1
    assert report["system_status"]["current_files"] == report["file_statistics"]["total_files"] == 2
    assert report["system_status"]["symbols_with_data"] == 2
    assert report["configuration"] == {"export_interval_hours": 2, "data_retention_days": 7, "max_files_per_symbol": 1}
    assert report["symbols"]["BTCUSDT"]["valid"] is True and report["symbols"]["BTCUSDT"]["rows"] == 47
    assert report["health"]["status"] == "healthy"
    assert (out / "logs" / "scheduled_data_manager.log").stat().st_size > 0
    assert "BTCUSDT" in (out / "export_log.log").read_text()
    state = read_json(out / "state.json")
    assert state["export_count"] == 1 and state["symbols"]["ETHUSDT"]["last_success"]


def test_status_json_and_health_exit_codes_follow_the_files(sandbox, tmp_path: Path) -> None:
    out = tmp_path / "exports"
    env = cli_env(sandbox.base_url, out)
    assert run_cli("scheduled_data_manager.py", "--health", env=env, cwd=tmp_path).returncode == 2  # nothing yet
    assert run_cli("scheduled_data_manager.py", "--manual", env=env, cwd=tmp_path).returncode == 0
    status = run_cli("scheduled_data_manager.py", "--status", "--json", env=env, cwd=tmp_path)
    assert status.returncode == 0
    assert_guide_keys(json.loads(status.stdout))
    text = run_cli("scheduled_data_manager.py", "--status", env=env, cwd=tmp_path).stdout
    assert "BTCUSDT" in text and "scheduler: none (one-shot runs)" in text  # a --manual run, no scheduler
    assert run_cli("scheduled_data_manager.py", "--health", env=env, cwd=tmp_path).returncode == 0
    # A third configured symbol without a file: degraded, not down.
    wider = dict(env, EXPORT_SYMBOLS="BTCUSDT,ETHUSDT,SOLUSDT")
    health = run_cli("scheduled_data_manager.py", "--health", env=wider, cwd=tmp_path)
    assert health.returncode == 1 and "SOLUSDT" in health.stdout


def test_a_second_run_exits_75_and_touches_nothing(sandbox, tmp_path: Path) -> None:
    out = tmp_path / "exports"
    env = cli_env(sandbox.base_url, out)
    assert run_cli("scheduled_data_manager.py", "--manual", env=env, cwd=tmp_path).returncode == 0
    sandbox.reset_log()
    with RunLock(out):  # as if the service were mid-cycle
        before = folder_listing(out)
        busy = run_cli("scheduled_data_manager.py", "--manual", env=env, cwd=tmp_path)
        after = folder_listing(out)
    assert busy.returncode == 75
    assert "another export run" in busy.stderr and len(busy.stderr.strip().splitlines()) == 1
    assert after == before and sandbox.requests == []


def test_two_manual_runs_at_once_one_runs_one_exits_75(sandbox_factory, tmp_path: Path) -> None:
    exchange = sandbox_factory(latency_seconds=0.3)
    out = tmp_path / "exports"
    env = cli_env(exchange.base_url, out)
    runs = [start_cli("scheduled_data_manager.py", "--manual", env=env, cwd=tmp_path) for _ in range(2)]
    codes = sorted(p.wait(timeout=60) for p in runs)
    assert codes == [0, 75]
    assert len(export_csvs(out)) == 2 and read_json(out / "state.json")["export_count"] == 1


def test_unknown_symbol_among_good_ones_is_named_and_exit_1(sandbox, tmp_path: Path) -> None:
    out = tmp_path / "exports"
    env = cli_env(sandbox.base_url, out, EXPORT_SYMBOLS="BTCUSDT,NOSUCHCOIN,ETHUSDT")
    result = run_cli("scheduled_data_manager.py", "--export-only", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "NOSUCHCOIN" in result.stderr and "-1121" in result.stderr
    assert len(export_csvs(out)) == 2
    assert len(sandbox.klines_requests("NOSUCHCOIN")) == 1


@pytest.mark.parametrize("bad", ["../etc", "BTC;rm -rf /", "A" * 500, "BTC/USDT/X", "BTC.USDT"])
def test_hostile_symbol_exits_2_before_any_request_or_file(sandbox, tmp_path: Path, bad: str) -> None:
    out = tmp_path / "exports"
    for env, args in (
        (cli_env(sandbox.base_url, out, EXPORT_SYMBOLS=f"BTCUSDT,{bad}"), ["--export-only"]),
        (cli_env(sandbox.base_url, out), ["--manual", "--symbols", bad]),
    ):
        result = run_cli("scheduled_data_manager.py", *args, env=env, cwd=tmp_path)
        assert result.returncode == 2
        assert "invalid symbol" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists() and sandbox.requests == []
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_bad_setting_exits_2_with_one_line(sandbox, tmp_path: Path) -> None:
    env = cli_env(sandbox.base_url, tmp_path / "exports", EXPORT_PERIOD_HOURS="soon")
    result = run_cli("scheduled_data_manager.py", "--manual", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: EXPORT_PERIOD_HOURS='soon' is not valid: "
        "expected a positive number from 0.0001 up to 8760 (hours, one year)"
    )


def test_dry_run_changes_nothing(sandbox, tmp_path: Path) -> None:
    out = tmp_path / "exports"
    env = cli_env(sandbox.base_url, out)
    assert run_cli("scheduled_data_manager.py", "--manual", env=env, cwd=tmp_path).returncode == 0
    (out / "BTCUSDT_1h_20200101_000000.csv").write_text("garbage\n")
    before = folder_listing(out)
    result = run_cli("scheduled_data_manager.py", "--manual", "--dry-run", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "would" in result.stdout and "BTCUSDT_1h_20200101_000000.csv" in result.stdout
    assert folder_listing(out) == before
    # A symbol the exchange does not list is not approved: the real run would fail on it.
    unknown = run_cli(
        "scheduled_data_manager.py", "--manual", "--dry-run", "--symbols", "FOOBAR,BTCUSDT", env=env, cwd=tmp_path
    )
    assert unknown.returncode == 1 and "does not list FOOBAR (exchangeInfo)" in unknown.stderr
    assert "would write FOOBAR" not in unknown.stdout and "would write BTCUSDT" in unknown.stdout


def test_symbols_flag_is_for_this_run_only(sandbox, tmp_path: Path) -> None:
    out = tmp_path / "exports"
    env = cli_env(sandbox.base_url, out)
    assert (
        run_cli("scheduled_data_manager.py", "--manual", "--symbols", "solusdt", env=env, cwd=tmp_path).returncode == 0
    )
    assert [f.name.split("_")[0] for f in export_csvs(out)] == ["SOLUSDT"]
    assert run_cli("scheduled_data_manager.py", "--manual", env=env, cwd=tmp_path).returncode == 0
    # SOLUSDT is not configured: its file follows the normal rules but was young, so it stays.
    assert [f.name.split("_")[0] for f in export_csvs(out)] == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]


def test_help_shows_examples_and_exit_codes(tmp_path: Path) -> None:
    result = run_cli("scheduled_data_manager.py", "--help", env=cli_env("http://127.0.0.1:1", tmp_path), cwd=tmp_path)
    assert result.returncode == 0
    assert "examples:" in result.stdout and "--manual" in result.stdout and "75" in result.stdout


def test_loop_runs_on_schedule_and_sigterm_stops_it_cleanly(sandbox, tmp_path: Path) -> None:
    out = tmp_path / "exports"
    env = cli_env(sandbox.base_url, out, EXPORT_PERIOD_HOURS="0.0002")  # 0.72 s
    loop = start_cli("scheduled_data_manager.py", env=env, cwd=tmp_path)
    try:
        state = out / "state.json"
        wait_until(lambda: state.exists() and read_json(state)["export_count"] >= 2, "two cycles of the loop")
        running = run_cli("scheduled_data_manager.py", "--status", "--json", env=env, cwd=tmp_path)
        assert json.loads(running.stdout)["system_status"]["service_status"] == "running"
        loop.send_signal(signal.SIGTERM)
        assert loop.wait(timeout=15) == 0
    finally:
        if loop.poll() is None:
            loop.kill()
    assert read_json(out / "status_report.json")["system_status"]["service_status"] == "stopped"
    assert not [p for p in out.iterdir() if re.match(r"^\..*\.tmp$", p.name)]


def test_ban_is_persisted_and_a_restart_sends_nothing_until_it_ends(sandbox_factory, tmp_path: Path) -> None:
    exchange = sandbox_factory(ban_seconds=300)
    out = tmp_path / "exports"
    env = cli_env(exchange.base_url, out)
    first = run_cli("scheduled_data_manager.py", "--manual", env=env, cwd=tmp_path)
    assert first.returncode == 1 and "banned" in first.stderr
    state = read_json(out / "state.json")
    assert state["banned_until"] is not None
    assert exchange.stats.by_status.get(418) == 1  # the ban stopped every other request at once
    sent = len(exchange.requests)
    again = run_cli("scheduled_data_manager.py", "--manual", env=env, cwd=tmp_path)
    assert again.returncode == 1 and "banned" in again.stderr
    assert len(exchange.requests) == sent
    status = read_json(out / "status_report.json")
    assert status["banned_until"] == state["banned_until"]
    shown = run_cli("scheduled_data_manager.py", "--status", "--json", env=env, cwd=tmp_path)
    assert json.loads(shown.stdout)["banned_until"] == state["banned_until"]
    assert len(exchange.requests) == sent


def test_cleanup_only_cli_on_the_done_means_folder(tmp_path: Path) -> None:
    from tests.support import CORRUPT, build_scenario, listing

    paths = build_scenario(tmp_path)
    folder = paths["folder"]
    env = cli_env("http://127.0.0.1:1", folder, EXPORT_SYMBOLS="BTCUSDT,ETHUSDT,SOLUSDT")
    before = listing(tmp_path)
    dry = run_cli("scheduled_data_manager.py", "--cleanup-only", "--dry-run", env=env, cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "would quarantine" in dry.stdout and paths["btc_corrupt"].name in dry.stdout
    assert listing(tmp_path) == before

    result = run_cli("scheduled_data_manager.py", "--cleanup-only", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert {p.name for p in export_csvs(folder)} == {paths["btc_1d"].name, paths["eth_10d"].name}
    assert (folder / "quarantine" / paths["btc_corrupt"].name).read_bytes() == CORRUPT
    assert paths["link"].is_symlink() and paths["target"].exists() and paths["notes"].exists()
    assert "ETHUSDT" in result.stdout  # reported as stale, not removed
    report = read_json(folder / "status_report.json")
    assert report["system_status"]["cleanup_count"] == 1 and report["system_status"]["export_count"] == 0


@pytest.mark.parametrize("dry_run", [False, True])
def test_cycle_maintenance_reads_each_file_once_and_reports_as_a_fresh_scan_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dry_run: bool
) -> None:
    """Cleanup's own scan (minus what it removed) serves the duplicate report and the
    status report: one open per export file, the same reports as a second scan gives."""
    import os

    from crypto_data_export.scheduler.manager import ScheduledDataManager
    from crypto_data_export.settings.settings import load_settings
    from tests.support import build_scenario, put, valid_bytes

    paths = build_scenario(tmp_path)
    folder = paths["folder"]
    put(folder, "XRPUSDT", 0.5, valid_bytes(24, 1))  # a copy of BTCUSDT's newest: a duplicate group
    settings = load_settings(
        {
            "BINANCE_BASE_URL": "http://127.0.0.1:1",
            "EXPORT_DIR": str(folder),
            "EXPORT_SYMBOLS": "BTCUSDT,ETHUSDT,SOLUSDT,XRPUSDT",
            "KLINE_INTERVAL": "1h",
            "MAX_FILES_PER_SYMBOL": "3",
            "LOG_LEVEL": "WARNING",
        },
        env_file=None,
    )
    manager = ScheduledDataManager(settings)
    opened: list[str] = []
    real_open = os.open

    def counted(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(path).endswith(".csv"):
            opened.append(os.path.basename(os.fspath(path)))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", counted)
    cycle = manager.run_cycle(export=False, dry_run=dry_run)
    monkeypatch.setattr(os, "open", real_open)

    assert opened and len(opened) == len(set(opened)), sorted(opened)
    assert cycle.cleanup is not None and cycle.duplicates is not None
    assert cycle.duplicates == manager.files.find_duplicates()
    assert cycle.duplicates.groups  # the XRPUSDT copy and BTCUSDT's newest
    fresh = manager.write_status(write=False, verify=True)
    assert cycle.status["file_statistics"] == fresh["file_statistics"]

    def without_ages(symbols: dict) -> dict:  # ages depend on the moment each report is built
        return {s: {k: v for k, v in e.items() if "age" not in k} for s, e in symbols.items()}

    assert without_ages(cycle.status["symbols"]) == without_ages(fresh["symbols"])


def test_console_stays_short_while_retries_happen(sandbox_factory, tmp_path: Path) -> None:
    # Failures at klines calls 3, 5, 6, 9, 10, ...: never three in a row, so one symbol's
    # three attempts (HTTP_RETRIES=2) always get through.
    exchange = sandbox_factory(fail_every_n=3, drop_every_n=5)
    out = tmp_path / "exports"
    for symbol in ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT"):  # one new symbol per run
        env = cli_env(exchange.base_url, out, EXPORT_SYMBOLS=symbol)
        result = run_cli("scheduled_data_manager.py", "--manual", env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""  # retries are in the log file, not on the console
        assert len(result.stdout.strip().splitlines()) == 3  # export, cleanup, status
    assert exchange.stats.failed_5xx >= 2 and exchange.stats.dropped >= 1
    assert "Retrying" in (out / "logs" / "scheduled_data_manager.log").read_text()


def test_a_dead_host_is_reported_once_not_once_per_symbol(tmp_path: Path) -> None:
    env = cli_env(
        "http://127.0.0.1:9", tmp_path / "exports", EXPORT_SYMBOLS="BTCUSDT,ETHUSDT,SOLUSDT", HTTP_RETRIES="1"
    )
    result = run_cli("scheduled_data_manager.py", "--manual", env=env, cwd=tmp_path)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "exchange not usable" in errors[0] and "after 1 retry;" in errors[0]
    assert "export: 0/3 symbols ok" in result.stdout


def test_a_symbol_listed_inside_the_window_costs_one_request_per_run_not_two(sandbox_factory, tmp_path: Path) -> None:
    """The head of the window before the listing is asked once; later runs remember it is empty."""
    listing = int(time.time() * 1000) - 26 * 3_600_000  # inside the 2-day look-back
    exchange = sandbox_factory(listing_ms=listing)
    env = cli_env(exchange.base_url, tmp_path / "exports", EXPORT_SYMBOLS="BTCUSDT")
    for _ in range(3):
        exchange.reset_log()
        result = run_cli("scheduled_data_manager.py", "--manual", env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    # The third run: at most the tail (one request, none when no candle closed since).
    asked = exchange.klines_requests("BTCUSDT")
    assert len(asked) <= 1, asked
    assert all(int(params["startTime"]) > listing for params in asked), asked
    state = read_json(tmp_path / "exports" / "state.json")
    assert state["symbols"]["BTCUSDT"]["data_from"] is not None


@pytest.mark.parametrize("mode", ["--status", "--health", "--cleanup-only"])
def test_symbols_is_refused_where_it_would_be_ignored(mode: str, capsys: pytest.CaptureFixture[str]) -> None:
    from crypto_data_export.commands.manager_cmd import parse_args

    with pytest.raises(SystemExit) as stopped:
        parse_args([mode, "--symbols", "BTCUSDT"])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and err.count("\n") == 1 and "--symbols does not go with" in err


def test_status_of_a_read_only_folder_only_reads_and_exits_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    from crypto_data_export.commands import manager_cmd
    from crypto_data_export.settings.settings import SETTING_VARIABLES

    folder = tmp_path / "exports"
    folder.mkdir()
    monkeypatch.chdir(tmp_path)
    for name in SETTING_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EXPORT_DIR", str(folder))
    monkeypatch.setattr(manager_cmd, "configure_logging", lambda *_args, **_kw: None)  # pytest keeps its handlers
    access = os.access  # as root a chmod does not make a folder read-only: the folder says so instead
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if path == folder else access(path, mode, **kw))
    assert manager_cmd.main(["--status"]) == 0
    assert "BTCUSDT" in capsys.readouterr().out and list(folder.iterdir()) == []
