"""Fault 9: hostile input — symbols, .env values, junk CSVs and symlinks in the export folder."""

from __future__ import annotations

import os

import pytest

from crypto_data_export.store.layout import QUARANTINE_DIR_NAME
from tests.support import (
    assert_folder_sound,
    clean_environ,
    closed_opens,
    export_files,
    manager_env,
    one_line,
    run_manager,
    seed_export,
    snapshot,
)

HOUR_MS = 3_600_000
HOSTILE_SYMBOLS = {
    "dot_dot_slash": "../../etc/passwd",
    "slash_and_space": "BTC/USDT X",
    "shell": "BTCUSDT;touch PWNED",
    "subshell": "$(touch PWNED)",
    "500_chars": "A" * 500,
}
CASES = [("env", name) for name in HOSTILE_SYMBOLS] + [("flag", "dot_dot_slash"), ("flag", "shell")]


@pytest.mark.parametrize("where,name", CASES, ids=[f"{w}-{n}" for w, n in CASES])
def test_hostile_symbols_exit_2_before_any_request_or_file(where, name, tmp_path, sandbox):
    """A hostile symbol: exit 2 with a one-line error, no request, no file or folder created anywhere."""
    folder = tmp_path / "exports"
    bad = HOSTILE_SYMBOLS[name]
    before = snapshot(tmp_path)
    if where == "env":
        env, args = manager_env(folder, sandbox.base_url, f"BTCUSDT,{bad}"), ["--manual"]
    else:
        env, args = manager_env(folder, sandbox.base_url, "BTCUSDT"), ["--manual", "--symbols", f"ETHUSDT,{bad}"]
    result = run_manager(env, *args, cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert one_line(result.stderr) and "invalid symbol" in result.stderr, result.stderr
    assert len(result.stderr) < 300, "the error repeats the whole hostile value"
    assert sandbox.requests == [], "a request reached the exchange"
    assert snapshot(tmp_path) == before, "something was created or changed"
    assert not os.path.lexists(tmp_path / "PWNED")


@pytest.mark.parametrize("line", ["EXPORT_PERIOD_HOURS=abc", "MAX_FILES_PER_SYMBOL=0"])
def test_env_file_with_a_bad_number(line, tmp_path, sandbox):
    """A bad number in ./.env: exit 2, the variable and the value named, nothing created, no request."""
    (tmp_path / ".env").write_text(
        f"# settings\n{line}\nEXPORT_DIR={tmp_path / 'exports'}\n"
        f"BINANCE_BASE_URL={sandbox.base_url}\nEXPORT_SYMBOLS=BTCUSDT\n"
    )
    before = snapshot(tmp_path)
    result = run_manager_in(tmp_path, "--manual")
    variable, value = line.split("=")
    assert result.returncode == 2, result.stdout + result.stderr
    assert one_line(result.stderr) and variable in result.stderr and repr(value) in result.stderr, result.stderr
    assert sandbox.requests == []
    assert snapshot(tmp_path) == before


def test_env_file_that_is_not_text(tmp_path, sandbox):
    (tmp_path / ".env").write_bytes(b"EXPORT_DIR=\xff\xfe\x00\x01garbage\n")
    result = run_manager_in(tmp_path, "--manual")
    assert result.returncode == 2, result.stdout + result.stderr
    assert one_line(result.stderr) and ".env" in result.stderr and "Traceback" not in result.stderr
    assert sandbox.requests == []


def run_manager_in(cwd, *args):
    """A run configured by ``cwd/.env`` only (nothing of ours in the environment)."""
    return run_manager(clean_environ(), *args, cwd=cwd)


JUNK = {
    "BTCUSDT_1h_20990101_000000.csv": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe binary garbage",
    "ETHUSDT_1h_20990101_000000.csv": b"",
    "SOLUSDT_1h_20990101_000000.csv": b"open_time,open,high,low,close,volume,close_time,quote_asset_volume,"
    b"number_of_trades,taker_buy_base_asset_volume,taker_buy_quote_asset_volume\n",
}


def test_junk_csvs_in_the_folder_are_quarantined_not_trusted(tmp_path, sandbox):
    """Binary garbage, an empty file and a header-only file (all named as the newest exports):
    each moved to quarantine/ unchanged, and a fresh export written for its symbol."""
    folder = tmp_path / "exports"
    folder.mkdir()
    for name, data in JUNK.items():
        (folder / name).write_bytes(data)
    result = run_manager(manager_env(folder, sandbox.base_url, "BTCUSDT,ETHUSDT,SOLUSDT"), "--manual")
    assert result.returncode == 0, result.stdout + result.stderr
    for name, data in JUNK.items():
        assert (folder / QUARANTINE_DIR_NAME / name).read_bytes() == data
    files = assert_folder_sound(folder)
    assert sorted(p.name.split("_")[0] for p in files) == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    assert all(len(p.read_text().splitlines()) > 40 for p in files), "an export was built on a junk file"


def test_symlink_named_like_an_export_is_left_alone(tmp_path, sandbox):
    """A link named like the newest export, pointing outside: the link and its target stay as they are,
    and the export does not read through it."""
    folder = tmp_path / "exports"
    outside = tmp_path / "outside"
    now = sandbox.now_ms()
    good_target = seed_export(
        outside, "BTCUSDT", "1h", closed_opens("1h", now - 48 * HOUR_MS, now - 10 * HOUR_MS), "target.csv"
    )
    junk_target = outside / "junk.csv"
    junk_target.write_bytes(b"not a csv at all\x00\xff")
    folder.mkdir()
    os.symlink(good_target, folder / "BTCUSDT_1h_20990101_000000.csv")
    os.symlink(junk_target, folder / "ETHUSDT_1h_20990101_000000.csv")
    os.symlink(tmp_path / "nowhere.csv", folder / "SOLUSDT_1h_20990101_000000.csv")  # dangling
    outside_before = snapshot(outside)

    result = run_manager(manager_env(folder, sandbox.base_url, "BTCUSDT,ETHUSDT"), "--manual")
    assert result.returncode == 0, result.stdout + result.stderr
    assert snapshot(outside) == outside_before
    for name, target in (("BTCUSDT", good_target), ("ETHUSDT", junk_target), ("SOLUSDT", tmp_path / "nowhere.csv")):
        link = folder / f"{name}_1h_20990101_000000.csv"
        assert os.path.islink(link) and os.readlink(link) == str(target)
    assert not (folder / QUARANTINE_DIR_NAME).exists() or os.listdir(folder / QUARANTINE_DIR_NAME) == []
    assert not (tmp_path / "nowhere.csv").exists()
    assert_folder_sound(folder)
    # The BTCUSDT export was fetched in full, not continued from the linked file.
    assert len(sandbox.klines_requests("BTCUSDT")) == 1
    assert sandbox.klines_requests("BTCUSDT")[0]["limit"] >= 47
    assert len(export_files(folder)) == 2


def test_quarantine_folder_planted_as_a_symlink(tmp_path, sandbox):
    """quarantine/ replaced by a link to elsewhere: nothing is moved through it; the bad file stays put."""
    folder = tmp_path / "exports"
    outside = tmp_path / "outside"
    outside.mkdir()
    folder.mkdir()
    os.symlink(outside, folder / QUARANTINE_DIR_NAME)
    junk = folder / "BTCUSDT_1h_20000101_000000.csv"
    junk.write_bytes(b"garbage\n")
    result = run_manager(manager_env(folder, sandbox.base_url, "BTCUSDT"), "--manual")
    assert os.listdir(outside) == [], "a file was moved out of the export folder through the link"
    assert junk.read_bytes() == b"garbage\n"
    assert "quarantine" in result.stderr + result.stdout
    assert result.returncode in (0, 1)


PLANTED = {
    "run_lock": ([".run.lock"], 1),
    "state_lock": ([".state.lock"], 1),
    "state_and_status": (["state.json", "status_report.json"], 0),
}


@pytest.mark.parametrize("case", list(PLANTED))
def test_planted_symlinks_for_our_own_files_are_never_followed(case, tmp_path, sandbox):
    """Links planted in place of the lock, state and status files: never written or read through."""
    names, code = PLANTED[case]
    folder = tmp_path / "exports"
    outside = tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    for name in names:
        (outside / name).write_text("precious\n")
        os.symlink(outside / name, folder / name)
    before = snapshot(outside)
    result = run_manager(manager_env(folder, sandbox.base_url, "BTCUSDT"), "--manual")
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    if code:
        assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
            result.stderr.strip().splitlines()[-1]
        ] and names[0] in result.stderr
    assert snapshot(outside) == before
    assert_folder_sound(folder)


def test_planted_symlinks_for_the_log_files_are_never_followed(tmp_path, sandbox):
    folder = tmp_path / "exports"
    outside = tmp_path / "outside"
    (folder / "logs").mkdir(parents=True)
    outside.mkdir()
    for name in ("logs/scheduled_data_manager.log", "export_log.log"):
        target = outside / name.replace("/", "_")
        target.write_text("precious\n")
        os.symlink(target, folder / name)
    before = snapshot(outside)
    result = run_manager(manager_env(folder, sandbox.base_url, "BTCUSDT"), "--manual")
    assert result.returncode == 1 and "cannot write the logs" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert snapshot(outside) == before


def test_a_logs_folder_that_is_a_symlink_is_refused(tmp_path, sandbox):
    folder = tmp_path / "exports"
    outside = tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    os.symlink(outside, folder / "logs")
    result = run_manager(manager_env(folder, sandbox.base_url, "BTCUSDT"), "--manual")
    assert result.returncode == 1 and "symbolic link" in result.stderr
    assert list(outside.iterdir()) == [] and sandbox.requests == []
