"""Issue 22, operators and their tools: the metrics file is ours only, a Pushgateway gets the
run's metrics, the stale alert follows each series' interval (promtool), sizes are exact bytes,
--status shows the data's age, the systemd unit's Python is checked for its user."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from crypto_data_export.commands import service_cmd
from crypto_data_export.core.errors import StorageError
from crypto_data_export.report.console import print_status
from crypto_data_export.report.metrics import MARKER, write_metrics
from crypto_data_export.report.status_page import render_status_page
from crypto_data_export.report.status_report import build_status_report, recorded_statistics
from crypto_data_export.scheduler.manager import ScheduledDataManager
from crypto_data_export.service.users import unreachable
from crypto_data_export.settings.settings import Settings, SettingsError, load_settings
from crypto_data_export.store.exports import ExportFile
from crypto_data_export.store.layout import export_file_name
from crypto_data_export.store.run_state import RunState
from crypto_data_export.store.validation import FileValidation
from tests.support import REPO

NOW = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)
HOUR = timedelta(hours=1)
FOREIGN = "# HELP node_other_collector_up another collector's metric\nnode_other_collector_up 1\n"


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _report(tmp_path: Path, interval: str = "1h", last_open: datetime | None = None, **files: int) -> dict[str, Any]:
    """A status report of one BTCUSDT series whose file was written a minute ago."""
    settings = Settings(export_dir=tmp_path, symbols=("BTCUSDT",), kline_interval=interval)
    last_open = last_open or NOW.replace(minute=0) - HOUR
    path = tmp_path / export_file_name("BTCUSDT", interval, NOW - timedelta(minutes=1))
    found = FileValidation(path, True, None, 48, _ms(last_open - 47 * HOUR), _ms(last_open))
    return build_status_report(settings, RunState(), [found], dict(files), "stopped", now=NOW)


def _samples(text: str) -> dict[str, list[Any]]:
    samples: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


# -- 11: the metrics file is ours only -------------------------------------------------------
def test_metrics_replace_only_a_file_carrying_our_marker(tmp_path: Path) -> None:
    report = _report(tmp_path)
    target = tmp_path / "metrics" / "exporter.prom"
    write_metrics(target, report, "1h")
    written = target.read_text(encoding="utf-8")
    assert written.startswith(MARKER) and "crypto_exporter_series_rows" in written
    assert oct(target.stat().st_mode & 0o777) == "0o644"  # node_exporter reads it as its own user
    write_metrics(target, report, "1h")  # ours: replaced
    target.write_text("# HELP crypto_exporter_health 1 for ...\n", encoding="utf-8")  # ours, from before the marker
    write_metrics(target, report, "1h")
    assert target.read_text(encoding="utf-8").startswith(MARKER)

    other = tmp_path / "metrics" / "node.prom"
    other.write_text(FOREIGN, encoding="utf-8")
    with pytest.raises(StorageError, match="another program's file"):
        write_metrics(other, report, "1h")
    assert other.read_text(encoding="utf-8") == FOREIGN


def test_metrics_are_never_written_through_a_link(tmp_path: Path) -> None:
    report = _report(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "metrics").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(StorageError, match="symbolic link"):
        write_metrics(folder / "metrics" / "exporter.prom", report, "1h")
    assert list(elsewhere.iterdir()) == []

    real = tmp_path / "textfile"
    real.mkdir()
    (real / "exporter.prom").write_text(MARKER, encoding="utf-8")  # ours, but reached by a link
    link = tmp_path / "link.prom"
    link.symlink_to(real / "exporter.prom")
    with pytest.raises(StorageError, match="symbolic link"):
        write_metrics(link, report, "1h")
    assert (real / "exporter.prom").read_text(encoding="utf-8") == MARKER and link.is_symlink()


# -- 25: the stale alert follows the series' interval ----------------------------------------
@pytest.mark.parametrize(("interval", "hours"), [("1h", 1), ("4h", 4), ("1d", 24)])
def test_the_stale_limit_metric_is_the_health_checks_limit(tmp_path: Path, interval: str, hours: int) -> None:
    """The figures deploy/prometheus-alerts.test.yml feeds promtool (two intervals + 2 h + 5 min)."""
    last_open = datetime(2026, 3, 8, tzinfo=UTC)
    report = _report(tmp_path, interval, last_open)
    samples = _samples(write_metrics(tmp_path / "m.prom", report, interval).read_text(encoding="utf-8"))
    (limit,) = samples["crypto_exporter_series_stale_after_seconds"]
    assert limit.labels == {"symbol": "BTCUSDT", "interval": interval, "market": "spot"}
    assert limit.value == 2 * hours * 3600 + 2 * 3600 + 300
    assert samples["crypto_exporter_export_period_seconds"][0].value == 2 * 3600  # the cycle alerts' unit
    entry = report["symbols"]["BTCUSDT"]
    assert limit.value == pytest.approx((entry["fresh_limit_hours"] + hours) * 3600, abs=36)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (Debian: prometheus)")
def test_promtool_checks_and_tests_the_alert_rules() -> None:
    deploy = REPO / "deploy"
    for command in (["check", "rules", "prometheus-alerts.yml"], ["test", "rules", "prometheus-alerts.test.yml"]):
        result = subprocess.run(["promtool", *command], cwd=deploy, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


# -- 26: a Pushgateway gets the run's metrics -------------------------------------------------
@pytest.fixture
def gateway() -> Iterator[dict[str, Any]]:
    """A Pushgateway stand-in on 127.0.0.1: records each PUT, answers with ``status``."""
    seen: dict[str, Any] = {"puts": [], "status": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen["puts"].append((self.path, body.decode("utf-8")))
            self.send_response(seen["status"])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    seen["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    yield seen
    server.shutdown()
    server.server_close()


def test_each_run_pushes_its_metrics_and_a_failed_push_is_only_a_warning(
    tmp_path: Path, sandbox: Any, gateway: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(
        {
            "BINANCE_BASE_URL": sandbox.base_url,
            "BINANCE_ARCHIVE_URL": "http://127.0.0.1:9",
            "EXPORT_DIR": str(tmp_path / "exports"),
            "EXPORT_SYMBOLS": "BTCUSDT",
            "METRICS_FILE": "off",
            "METRICS_PUSHGATEWAY": gateway["url"] + "/",
        },
        env_file=None,
    )
    assert ScheduledDataManager(settings).run_cycle().exit_code == 0
    ((path, body),) = gateway["puts"]
    assert path == "/metrics/job/crypto_data_export"
    samples = _samples(body)
    assert [s.labels["symbol"] for s in samples["crypto_exporter_series_rows"]] == ["BTCUSDT"]
    assert samples["crypto_exporter_last_run_success"][0].value == 1.0
    assert not (tmp_path / "exports" / "metrics").exists()

    gateway["status"] = 500
    manager = ScheduledDataManager(settings)
    with caplog.at_level(logging.WARNING):
        assert manager.run_cycle().exit_code == 0
    assert len(gateway["puts"]) == 2
    assert "cannot push the metrics" in caplog.text and "METRICS_PUSHGATEWAY" in caplog.text
    assert any("cannot push the metrics" in notice for notice in manager.notices)  # printed by a one-shot run


# -- 31: exact bytes; 29: the data's age -----------------------------------------------------
def test_file_sizes_are_exact_bytes_in_the_report_and_the_metrics(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT_1h_20260310_120000.csv"
    path.write_bytes(b"x" * 93_982)
    listed = ExportFile(path=path, symbol="BTCUSDT", interval="1h", created=NOW, size=93_982)
    statistics = recorded_statistics([listed], [FileValidation(path, True, None)])
    report = _report(tmp_path, **statistics)
    assert report["file_statistics"]["total_size_bytes"] == 93_982
    assert report["file_statistics"]["total_size_mb"] == 0.09  # the guide's key, rounded as before
    samples = _samples(write_metrics(tmp_path / "m.prom", report, "1h").read_text(encoding="utf-8"))
    assert samples["crypto_exporter_files_size_bytes"][0].value == 93_982


def test_status_shows_the_age_of_the_data_not_of_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No candle for 5 h, the file rewritten a minute ago: the age column says 5, not 0."""
    report = _report(tmp_path, last_open=NOW - 6 * HOUR)  # it closed 5 h ago
    print_status(report, as_json=False)
    lines = capsys.readouterr().out.splitlines()
    head = next(line for line in lines if line.startswith("symbol"))
    row = next(line for line in lines if line.startswith("BTCUSDT"))
    column = head.split().index("age")
    assert row.split()[column] == "5.0"


# -- 27: the systemd unit's Python must be usable by its user ------------------------------
@pytest.fixture
def open_base() -> Iterator[Path]:
    """A folder every user may enter (pytest's tmp_path sits in a private one)."""
    base = Path(tempfile.mkdtemp(prefix="g5-unit-"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base)


def test_a_python_its_user_cannot_reach_is_warned_about(
    open_base: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home, opt = open_base / "home", open_base / "opt"
    (home / "venv" / "bin").mkdir(parents=True)
    opt.mkdir()
    for folder in (home / "venv" / "bin", opt):
        (folder / "python").write_text("#!/bin/sh\n", encoding="utf-8")
        (folder / "python").chmod(0o755)
    home.chmod(0o700)  # a venv under /root
    (opt / "linked").symlink_to(home / "venv" / "bin" / "python")  # an open path leading into it
    python = home / "venv" / "bin" / "python"
    closed = f"{home} (drwx------, owner {os.getuid()}) is closed to it"
    assert unreachable("nobody", opt / "python") is None
    assert closed in (unreachable("nobody", python) or "")
    assert closed in (unreachable("nobody", opt / "linked") or "")
    monkeypatch.setattr(sys, "executable", str(python))
    monkeypatch.setenv("EXPORT_DIR", str(open_base / "exports"))
    monkeypatch.chdir(open_base)
    unit = open_base / "crypto-data-export.service"
    assert service_cmd.main(["create-systemd-service", "--output", str(unit), "--user", "nobody"]) == 0
    err = capsys.readouterr().err
    assert f"warning: nobody cannot reach {python}: {closed}" in err and "203/EXEC" in err
    assert unit.is_file()


# -- 28: the status page says what it means ----------------------------------------------
def _page_report(tmp_path: Path, state: RunState, **entry: Any) -> dict[str, Any]:
    settings = Settings(export_dir=tmp_path, symbols=("BTCUSDT",))
    last_open = NOW.replace(minute=0) - HOUR
    path = tmp_path / export_file_name("BTCUSDT", "1h", NOW)
    gaps = [(_ms(last_open - 9 * HOUR), _ms(last_open - 8 * HOUR), 2)]
    found = FileValidation(path, True, None, 46, _ms(last_open - 47 * HOUR), _ms(last_open), gaps, 2)
    report = build_status_report(settings, state, [found], {}, "stopped", now=NOW)
    report["last_cycle"].update(rate_limited=3, banned=1)
    return report


def test_the_page_marks_gaps_speaks_plainly_and_shows_a_scheduler_only_where_one_is_used(tmp_path: Path) -> None:
    cron = _page_report(tmp_path, RunState(last_cycle_end="2026-03-10T12:00:05+00:00"))
    assert cron["scheduler_in_use"] is False
    page = render_status_page(cron)
    assert '<tr class="row-gaps">' in page and '<span class="dot gaps">' in page and "0 ok" in page
    assert "rate-limit answers 3 · IP bans 1" in page and "429:" not in page and "418:" not in page
    assert "stopped" not in page and "last run <time>2026-03-10 12:00:05 UTC</time>" in page
    crashed = _page_report(tmp_path, RunState(service_pid=4_000_000))  # a loop that died without stopping
    assert crashed["scheduler_in_use"] is True and "scheduler stopped" in render_status_page(crashed)


def test_the_pushgateway_setting_must_be_a_url() -> None:
    assert (
        load_settings({"METRICS_PUSHGATEWAY": "http://gw:9091/"}, env_file=None).metrics_pushgateway == "http://gw:9091"
    )
    with pytest.raises(SettingsError, match="METRICS_PUSHGATEWAY='gw:9091' is not valid: expected an http"):
        load_settings({"METRICS_PUSHGATEWAY": "gw:9091"}, env_file=None)
