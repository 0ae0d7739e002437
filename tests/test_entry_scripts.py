"""The demo, the installation self-check and the backfill CLI, run as an operator would."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from crypto_data_export.store.scan import validate_file
from tests.support import cli_env, export_csvs, read_json, run_cli, start_cli


def test_demo_runs_offline_and_leaves_valid_files_and_a_status_report(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    env = cli_env("http://127.0.0.1:1", out)  # the demo starts its own sandbox and ignores this
    result = run_cli("demo_scheduled_system.py", "--output", str(out), "--period-seconds", "0.5", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "demo finished" in result.stdout and "duplicates: 1 groups" in result.stdout
    files = export_csvs(out)
    assert len(files) == 11 and all(validate_file(f, "1h").valid for f in files)
    report = read_json(out / "status_report.json")
    assert report["system_status"]["service_status"] == "stopped"
    assert report["system_status"]["export_count"] >= 3 and report["health"]["status"] == "healthy"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--period-seconds", "0.1"], "argument --period-seconds: 0.1 seconds: expected 0.36 to 3600"),
        (["--output", "a-file"], "--output a-file: cannot be the export folder"),
    ],
)
def test_demo_refuses_bad_arguments_in_one_line(tmp_path: Path, args: list[str], says: str) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    result = run_cli("demo_scheduled_system.py", *args, env=cli_env("http://127.0.0.1:1", tmp_path), cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("demo_scheduled_system.py: error: ") and says in lines[0], lines


def test_self_check_passes_against_a_working_exchange(sandbox, tmp_path: Path) -> None:
    env = cli_env("https://invalid.example", tmp_path / "exports")
    result = run_cli("test_scheduled_system.py", "--base-url", sandbox.base_url, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(" ", 1)[0] for line in lines[:4]] == ["PASS"] * 4
    assert "clock skew" in result.stdout and "exported and valid" in result.stdout
    assert lines[-1] == "4 passed, 0 failed, 0 skipped"


def test_self_check_counts_a_skipped_check_apart_from_failures(tmp_path: Path) -> None:
    env = cli_env("https://invalid.example", tmp_path / "exports", HTTP_TIMEOUT_SECONDS="1")
    result = run_cli("test_scheduled_system.py", "--base-url", "http://127.0.0.1:9", env=env, cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == ["PASS", "PASS", "FAIL", "SKIP", "2"]
    assert lines[-1] == "2 passed, 1 failed, 1 skipped"


def test_self_check_fails_with_one_clear_line_when_the_exchange_is_dead(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    env = cli_env(dead, tmp_path / "exports")
    result = run_cli("test_scheduled_system.py", "--base-url", dead, env=env, cwd=tmp_path)
    assert result.returncode == 1
    failing = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failing) == 1 and "refused the connection" in failing[0] and dead in failing[0]


def test_backfill_cli_writes_the_long_window(sandbox, tmp_path: Path) -> None:
    out = tmp_path / "backfill"
    env = cli_env(sandbox.base_url, tmp_path / "unused")
    result = run_cli(
        "export_historical_data.py",
        "--symbols",
        "BTCUSDT,ethusdt",
        "--days",
        "60",
        "--interval",
        "1h",
        "--output",
        str(out),
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    files = export_csvs(out)
    assert [f.name.split("_")[0] for f in files] == ["BTCUSDT", "ETHUSDT"]
    validation = validate_file(files[0], "1h")
    assert validation.valid and validation.rows in (1439, 1440)
    assert len(sandbox.klines_requests("BTCUSDT")) == 2  # 1000 + the rest


def test_backfill_cli_refuses_a_hostile_symbol(sandbox, tmp_path: Path) -> None:
    out = tmp_path / "backfill"
    result = run_cli(
        "export_historical_data.py",
        "--symbols",
        "../../etc",
        "--output",
        str(out),
        env=cli_env(sandbox.base_url, out),
        cwd=tmp_path,
    )
    assert result.returncode == 2 and "invalid symbol" in result.stderr
    assert not out.exists() and sandbox.requests == []


@pytest.mark.parametrize(
    ("script", "args"),
    [
        ("scheduled_data_manager.py", ["--status"]),
        ("scheduled_data_manager.py", ["--status", "--json"]),
        ("data_export_service.py", ["status"]),
        ("file_manager.py", ["validate"]),
        ("test_scheduled_system.py", ["--help"]),
    ],
)
def test_a_reader_that_goes_away_ends_the_output_quietly(script: str, args: list[str], tmp_path: Path) -> None:
    """``--status | head -1``: the reader closes the pipe; no BrokenPipeError traceback."""
    env = cli_env("http://127.0.0.1:9", tmp_path / "exports")
    (tmp_path / "exports").mkdir()  # file_manager.py refuses a missing folder
    proc = start_cli(script, *args, env=env, cwd=tmp_path)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the script has written anything: every write meets a closed pipe
    code = proc.wait(timeout=60)
    err = proc.stderr.read()
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert code in (0, 3, 141), (code, err)


def test_a_default_backfill_survives_the_next_scheduler_cycle(sandbox, tmp_path: Path) -> None:
    exports = tmp_path / "exports"
    env = cli_env(sandbox.base_url, exports, EXPORT_SYMBOLS="BTCUSDT")
    backfill = run_cli("export_historical_data.py", "--days", "30", "--source", "rest", env=env, cwd=tmp_path)
    assert backfill.returncode == 0, backfill.stderr
    (written,) = export_csvs(exports / "backfill")
    before = written.read_bytes()
    assert run_cli("scheduled_data_manager.py", "--manual", env=env, cwd=tmp_path).returncode == 0
    assert written.read_bytes() == before and validate_file(written, "1h").rows >= 719
    assert len(export_csvs(exports)) == 1  # the cycle's own 2-day file beside the backfill folder


def test_a_backfill_into_export_dir_itself_is_refused(sandbox, tmp_path: Path) -> None:
    exports = tmp_path / "exports"
    env = cli_env(sandbox.base_url, exports, EXPORT_SYMBOLS="BTCUSDT")
    result = run_cli("export_historical_data.py", "--output", str(exports), env=env, cwd=tmp_path)
    assert result.returncode == 2 and "--output" in result.stderr and "EXPORT_DIR" in result.stderr
    assert sandbox.requests == [] and not exports.exists()
