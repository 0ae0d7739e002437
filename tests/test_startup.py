"""--status and --health read what the last cycle recorded: they open no export file unless --verify.

Each command runs in a real interpreter (the root script run as ``__main__`` by ``runpy``, as
``python script.py`` would). An audit hook records every file the process opens, and once it
returns the heavy modules it loaded are read from ``sys.modules``: a status that validated
nothing has no reason to load pandas, numpy or pyarrow (~0.5 s of start-up on their own).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import BTC_FILE, REPO, manager_env

HEAVY = {"pandas", "numpy", "pyarrow"}

# Runs a root script as __main__; once it ends, writes the export files it opened and the
# heavy modules it loaded to a file.
PROBE = """
import atexit, json, os, runpy, sys
repo, out, folder, script, *args = sys.argv[1:]
sys.path.insert(0, repo)
sys.argv = [script, *args]
opened = []

def audit(event, details):
    if event == "open" and isinstance(details[0], (str, bytes, os.PathLike)):
        path = os.fsdecode(details[0])
        if os.path.dirname(os.path.abspath(path)) == folder and path.endswith((".csv", ".parquet")):
            opened.append(os.path.basename(path))

def report():
    loaded = sorted({name.split(".")[0] for name in sys.modules} & {"pandas", "numpy", "pyarrow", "requests"})
    with open(out, "w") as f:
        json.dump({"loaded": loaded, "opened": sorted(set(opened))}, f)

sys.addaudithook(audit)
atexit.register(report)
runpy.run_path(script, run_name="__main__")
"""


def _probe(tmp_path: Path, env: dict[str, str], *args: str) -> tuple[int, dict[str, Any], str]:
    out = tmp_path / "probe.json"
    folder = str(Path(env["EXPORT_DIR"]).resolve())
    script = str(REPO / "scheduled_data_manager.py")
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(REPO), str(out), folder, script, *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.exists(), result.stdout[-2000:] + result.stderr[-2000:]
    return result.returncode, json.loads(out.read_text()), result.stdout


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A folder holding one export, checked once (``--status --verify``) as a cycle would."""
    # No exchange is asked: a closed port makes any request fail at once.
    env = manager_env(tmp_path / "exports", "http://127.0.0.1:9", symbols="BTCUSDT,ETHUSDT")
    folder = Path(env["EXPORT_DIR"])
    folder.mkdir()
    shutil.copy(BTC_FILE, folder / BTC_FILE.name)
    code, probe, _ = _probe(tmp_path, env, "--status", "--verify", "--json")
    assert code == 0 and probe["opened"] == [BTC_FILE.name]  # the control: --verify reads the file
    return env


@pytest.mark.parametrize("args", [("--health",), ("--health", "--json"), ("--status",), ("--status", "--json")])
def test_status_and_health_open_no_export_file_and_load_no_pandas(
    tmp_path: Path, env: dict[str, str], args: tuple[str, ...]
) -> None:
    code, probe, _ = _probe(tmp_path, env, *args)
    assert code == (2 if "--health" in args else 0)  # health: down, the exchange was never reached
    assert probe["opened"] == []
    assert not set(probe["loaded"]) & (HEAVY | {"requests"}), f"{args} loaded {probe['loaded']}"


def test_status_shows_the_recorded_verdicts_and_says_they_are_the_last_cycles(
    tmp_path: Path, env: dict[str, str]
) -> None:
    verified = json.loads((Path(env["EXPORT_DIR"]) / "status_report.json").read_text())
    _, _, out = _probe(tmp_path, env, "--status", "--json")
    report = json.loads(out)
    assert report["from_last_cycle"] is True and report["validated_at"] == verified["validated_at"]
    # rows, candles, gaps, verdict: all recorded; only the age is computed anew (it grows between the runs)
    recorded, shown = verified["symbols"]["BTCUSDT"], report["symbols"]["BTCUSDT"]
    assert {k: v for k, v in shown.items() if "age" not in k} == {k: v for k, v in recorded.items() if "age" not in k}
    assert shown["newest_close_age_hours"] >= recorded["newest_close_age_hours"]
    assert report["file_statistics"] == verified["file_statistics"]
    _, _, text = _probe(tmp_path, env, "--status")
    assert f"from the last cycle's checks at {verified['validated_at']}" in text


def test_a_recorded_file_that_vanished_and_one_that_appeared_are_problems_until_verified(
    tmp_path: Path, env: dict[str, str]
) -> None:
    folder = Path(env["EXPORT_DIR"])
    newer = folder / BTC_FILE.name.replace("20241029", "20241030")
    (folder / BTC_FILE.name).rename(newer)
    code, probe, out = _probe(tmp_path, env, "--health", "--json")
    assert probe["opened"] == [] and code == 2
    reason = json.loads(out)["checks"]["symbols_fresh"]["reason"]
    assert "BTCUSDT (not validated since the last cycle" in reason
    newer.unlink()
    _, _, out = _probe(tmp_path, env, "--status", "--json")
    btc = json.loads(out)["symbols"]["BTCUSDT"]
    assert btc["valid"] is False and btc["reason"] == "recorded by the last cycle but no longer in the folder"
    code, probe, out = _probe(tmp_path, env, "--status", "--verify", "--json")
    assert json.loads(out)["symbols"]["BTCUSDT"]["reason"] == "no export file"
