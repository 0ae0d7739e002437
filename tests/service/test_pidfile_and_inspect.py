"""The pidfile names its process, the folder it serves and its start time; nothing else is trusted."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from crypto_data_export.core.processes import command_line, process_export_dir, process_start_ticks, serves_folder
from crypto_data_export.service.inspect import inspect_service, summarize_status_report
from crypto_data_export.service.pidfile import read_pidfile, write_pidfile
from tests.support import wait_until


def test_a_written_pidfile_reads_back(tmp_path: Path) -> None:
    pidfile = tmp_path / "data_export_service.pid"
    write_pidfile(pidfile, 4242, tmp_path / "exports\nodd", 123)
    info = read_pidfile(pidfile)
    assert (info.kind, info.pid, info.export_dir, info.start_ticks) == ("ok", 4242, str(tmp_path / "exports\nodd"), 123)
    assert pidfile.read_text().splitlines()[0] == "4242"


@pytest.mark.parametrize(
    "text",
    [
        "12\nexport_dir=/no/quotes\n",
        "12\nstart_ticks=soon\n",
        "12\nsomething=else\n",
        '12\nexport_dir="/a"\nexport_dir="/b"\n',
        "12\nexport_dir=[1]\n",
        "x" * 70000,
        "\x1b[31m1\n",
    ],
)
def test_a_garbled_pidfile_is_invalid(tmp_path: Path, text: str) -> None:
    pidfile = tmp_path / "data_export_service.pid"
    pidfile.write_text(text)
    info = read_pidfile(pidfile)
    assert info.kind == "invalid" and info.pid is None
    assert "\x1b" not in info.detail


def test_a_bare_pid_from_an_older_version_still_reads(tmp_path: Path) -> None:
    pidfile = tmp_path / "data_export_service.pid"
    pidfile.write_text("4242\n")
    info = read_pidfile(pidfile)
    assert (info.kind, info.pid, info.export_dir, info.start_ticks) == ("ok", 4242, None, None)


def test_which_folder_a_process_serves(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "EXPORT_DIR"}
    (tmp_path / "a").mkdir()
    (tmp_path / ".env").write_text("EXPORT_DIR=from_dotenv\n")
    cases = [
        ({**env, "EXPORT_DIR": str(tmp_path / "a")}, tmp_path / "a"),
        ({**env, "EXPORT_DIR": "a"}, tmp_path / "a"),  # relative to its working folder
        (env, tmp_path / "from_dotenv"),  # its working folder's .env
    ]
    for environ, expected in cases:
        proc = subprocess.Popen(["sleep", "30"], env=environ, cwd=tmp_path)
        try:
            # Popen may return while the child is still inside execve (vfork): its /proc entries
            # are empty until then.
            wait_until(lambda pid=proc.pid: command_line(pid) == ["sleep", "30"], "the child to exec")
            assert process_export_dir(proc.pid, "historical_exports") == Path(os.path.realpath(expected))
            assert serves_folder(proc.pid, expected, "historical_exports") is True
            assert serves_folder(proc.pid, tmp_path / "other", "historical_exports") is False
            assert process_start_ticks(proc.pid) is not None
        finally:
            proc.kill()
            proc.wait()


def test_a_pid_reused_by_another_program_is_stale(tmp_path: Path) -> None:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        pidfile = tmp_path / "data_export_service.pid"
        write_pidfile(pidfile, proc.pid, tmp_path, 1)
        state = inspect_service(pidfile, tmp_path)
        assert state.state == "stale" and "another program" in state.detail
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize(
    "content",
    [
        {"writer": "crypto-data-export", "format_version": 1, "system_status": [], "health": "x", "timestamp": 5},
        {"writer": "crypto-data-export", "format_version": 1, "last_cycle": {"result": "\x1b[2Jok\nforged"}},
    ],
)
def test_a_status_report_of_any_shape_gives_two_plain_lines(tmp_path: Path, content: dict) -> None:
    path = tmp_path / "status_report.json"
    path.write_text(json.dumps(content))
    lines = summarize_status_report(path)
    assert len(lines) == 2 and not any("\x1b" in line or "\n" in line for line in lines)
