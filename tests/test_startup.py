"""Start-up cost: the commands that read no candles import no pandas, numpy or pyarrow.

Each command runs in a real interpreter (the root script run as ``__main__``
by ``runpy``, as ``python script.py`` would), and the modules it loaded are
read from ``sys.modules`` once it returns. pandas, numpy and pyarrow cost
~0.4 s of start-up on their own: ``--status``, ``--health``, ``--list-symbols``
and the service commands would spend more on imports than on their work.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from crypto_data_export.store.formats import FORMATS, format_for_name
from tests.support import BTC_FILE, REPO, manager_env

# pyarrow (the candle model, imported with the formats) is no longer kept out: issue 21 removed
# the lazy format registry; what stays out is pandas, which no product path needs.
HEAVY = ("pandas",)

# Runs a root script as __main__; once it ends (its exit handlers run however it exits), writes the
# heavy modules it loaded to a file.
PROBE = """
import atexit, json, runpy, sys
repo, out, script, *args = sys.argv[1:]
sys.path.insert(0, repo)
sys.argv = [script, *args]

def report():
    loaded = sorted({name.split(".")[0] for name in sys.modules} & {"pandas", "numpy", "pyarrow", "requests"})
    with open(out, "w") as f:
        json.dump({"loaded": loaded}, f)

atexit.register(report)
runpy.run_path(script, run_name="__main__")
"""


def _probe(tmp_path: Path, env: dict[str, str], script: str, *args: str) -> tuple[int, list[str]]:
    out = tmp_path / "probe.json"
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(REPO), str(out), str(REPO / script), *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.exists(), result.stdout[-2000:] + result.stderr[-2000:]
    return result.returncode, json.loads(out.read_text())["loaded"]


def _env(tmp_path: Path) -> dict[str, str]:
    # No exchange is asked: a closed port makes any request fail at once.
    return manager_env(tmp_path / "exports", "http://127.0.0.1:9", symbols="BTCUSDT,ETHUSDT")


@pytest.mark.parametrize(
    ("script", "args", "codes"),
    [
        ("scheduled_data_manager.py", ("--health",), {2}),  # no folder yet: down
        ("scheduled_data_manager.py", ("--health", "--json"), {2}),
        ("scheduled_data_manager.py", ("--status",), {0}),
        ("scheduled_data_manager.py", ("--status", "--json"), {0}),
        ("scheduled_data_manager.py", ("--list-symbols",), {0}),
        ("data_export_service.py", ("status",), {3}),  # LSB: not running
        ("data_export_service.py", ("stop",), {0}),
        ("data_export_service.py", ("create-systemd-service", "--output", "unit.service"), {0}),
    ],
)
def test_commands_that_read_no_candles_import_no_pandas(
    tmp_path: Path, script: str, args: tuple[str, ...], codes: set[int]
) -> None:
    code, loaded = _probe(tmp_path, _env(tmp_path), script, *args)
    assert code in codes
    assert not set(loaded) & set(HEAVY), f"{script} {' '.join(args)} imported {loaded}"


def test_status_and_health_ask_no_exchange_and_import_no_http_client(tmp_path: Path) -> None:
    for args in (("--status",), ("--health",)):
        _, loaded = _probe(tmp_path, _env(tmp_path), "scheduled_data_manager.py", *args)
        assert "requests" not in loaded, f"{args} imported requests"


def test_the_probe_sees_pyarrow_where_candles_are_read(tmp_path: Path) -> None:
    """The control: a folder holding an export is validated by --status, which needs the CSV parser."""
    env = _env(tmp_path)
    folder = Path(env["EXPORT_DIR"])
    folder.mkdir()
    (folder / BTC_FILE.name).write_bytes(BTC_FILE.read_bytes())
    code, loaded = _probe(tmp_path, env, "scheduled_data_manager.py", "--status", "--json")
    assert code == 0 and "pyarrow" in loaded
    report = json.loads((folder / "status_report.json").read_text())
    assert report["file_statistics"]["total_files"] == 1


def test_each_registered_format_is_found_by_its_name_and_suffix() -> None:
    for name, file_format in FORMATS.items():
        assert file_format.name == name
        assert format_for_name(f"BTCUSDT_1h_20241029_000000{file_format.suffix}") is file_format


# A root script in miniature: prints much, logs to a file, runs exit handlers, and maybe leaves a thread working.
ENDING = """
import atexit, logging, sys, threading, time
sys.path.insert(0, sys.argv[1])
from crypto_data_export.core.cli import run_main
log_path, marker_path, mode = sys.argv[2], sys.argv[3], sys.argv[4]

def main():
    handler = logging.FileHandler(log_path)
    logging.getLogger("t").addHandler(handler)
    logging.getLogger("t").warning("last line of the log")
    atexit.register(lambda: open(marker_path, "a").write("atexit\\n"))
    if mode == "thread":
        def late():
            time.sleep(0.2)
            open(marker_path, "a").write("thread\\n")
        threading.Thread(target=late).start()
    sys.stdout.write("x" * 200_000 + "\\nend\\n")
    return 3

run_main(main, skip_teardown=True)
"""


@pytest.mark.parametrize("mode", ["alone", "thread"])
def test_an_ending_without_teardown_keeps_exit_code_output_logs_exit_handlers_and_threads(
    tmp_path: Path, mode: str
) -> None:
    log, marker = tmp_path / "run.log", tmp_path / "marker"
    result = subprocess.run(
        [sys.executable, "-c", ENDING, str(REPO), str(log), str(marker), mode],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 3, result.stderr
    assert result.stdout.endswith("x\nend\n") and len(result.stdout) == 200_005
    assert log.read_text() == "last line of the log\n"
    # A thread still working is waited for (the normal ending), then the exit handlers run.
    assert marker.read_text().splitlines() == (["thread", "atexit"] if mode == "thread" else ["atexit"])
