"""The store's invariants, each under a hostile input, through the real CLI.

1. Validate before replace: bad candles from the exchange fail their symbol
   (exit 1, one line); the previous file stays byte for byte; quarantine
   does not grow run after run.
2. Order by content: a valid file named in the future neither outranks nor
   deletes the exports written after it.
3. The window only moves forward: an exchange serving older data (its clock
   three years back) replaces and removes nothing.
4. Junk named like an export is validated in bounded memory (a 300 MB file
   with CR-only line ends or one giant line, under a 1 GB address-space cap).
5. Own only what is ours: only our own temp leftovers are removed.
6. Summaries count what happened: every removal (the prune after each write
   too), a dry run listing exactly what the real run does, "quarantined" is
   not "ok", duplicates named.
7. Every wait is interruptible: SIGTERM during a long validation ends the run
   within seconds, leaving the files it did not reach untouched.

The exchange clock is pinned (``now_ms``) so every expected candle is known.
"""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crypto_data_export.core.clock import from_ms, ms_to_iso
from crypto_data_export.sandbox.fake_exchange import BAD_CANDLE_KINDS
from crypto_data_export.store.formats.csv_format import CSV_HEADER
from crypto_data_export.store.layout import QUARANTINE_DIR_NAME, export_file_name
from tests.support import (
    assert_folder_sound,
    closed_opens,
    expected_csv,
    export_files,
    finish,
    manager_env,
    read_json,
    run_manager,
    seed_export,
    snapshot,
    temp_name,
    valid_bytes,
    wait_until,
)

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
JUNK_BYTES = 300 << 20
ADDRESS_SPACE_CAP = 1 << 30


def pinned_now() -> int:
    """Half past an hour, two hours ago: later runs can step an hour ahead without
    their candles being in our own future."""
    return int(time.time() * 1000) // HOUR_MS * HOUR_MS - 2 * HOUR_MS + 1_800_000


def quarantined(folder: Path) -> list[str]:
    quarantine = folder / QUARANTINE_DIR_NAME
    return sorted(os.listdir(quarantine)) if quarantine.is_dir() else []


def contents(files: list[Path]) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in files}


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def listed(stdout: str, verb: str) -> set[str]:
    """File names on the summary's ``  <verb> <path>: reason`` lines."""
    prefix = f"  {verb} "
    return {Path(line[len(prefix) :].split(": ", 1)[0]).name for line in stdout.splitlines() if line.startswith(prefix)}


# --- 1. validate before replace ------------------------------------------------------


def test_bad_candles_fail_their_symbol_and_leave_the_previous_file_untouched(tmp_path, sandbox_factory):
    t = pinned_now()
    exchange = sandbox_factory(now_ms=t)
    folder = tmp_path / "exports"
    env = manager_env(folder, exchange.base_url, "BTCUSDT,ETHUSDT")
    first = run_manager(env, "--manual")
    assert first.returncode == 0, first.stdout + first.stderr
    btc_before = contents(export_files(folder, "BTCUSDT"))
    assert len(btc_before) == 1

    # Three cycles, an hour apart, each with another kind of bad newest candle in every answer
    # (one cycle per kind rather than three runs per kind: the same checks, a third of the runs).
    for kind in BAD_CANDLE_KINDS:
        exchange.config.bad_candles = {"BTCUSDT": kind}
        t += HOUR_MS
        exchange.config.now_ms = t
        result = run_manager(env, "--manual")
        assert result.returncode == 1, (kind, result.stdout + result.stderr)
        lines = error_lines(result.stderr)
        assert len(lines) == 1 and lines[0].startswith("error: BTCUSDT: "), (kind, result.stderr)
        assert contents(export_files(folder, "BTCUSDT")) == btc_before, f"{kind}: the previous file was touched"
        assert quarantined(folder) == [], f"{kind}: bad data from the exchange must not fill quarantine/"
        (eth,) = export_files(folder, "ETHUSDT")  # the other symbol goes on
        assert eth.read_text() == expected_csv("ETHUSDT", "1h", closed_opens("1h", t - 2 * DAY_MS, t))
        assert_folder_sound(folder)
        state = read_json(folder / "state.json")
        # exchange/ may refuse a malformed page before the store sees it; either way it is this symbol's failure
        assert state["symbols"]["BTCUSDT"]["last_error_kind"] in ("invalid_data", "exchange"), kind
        if state["symbols"]["BTCUSDT"]["last_error_kind"] == "invalid_data":
            assert "fail validation at the candle opening" in lines[0] and "row " in lines[0], (kind, lines[0])
        assert state["last_cycle_result"] == "partial", kind


# --- 2. order by content -------------------------------------------------------------


def test_a_file_named_in_the_future_neither_outranks_nor_deletes_new_exports(tmp_path, sandbox_factory):
    t = pinned_now()
    exchange = sandbox_factory(now_ms=t)
    folder = tmp_path / "exports"
    env = manager_env(folder, exchange.base_url, "BTCUSDT")
    # Written while the host clock was 70 years ahead; its newest candle is a day old.
    future = seed_export(
        folder, "BTCUSDT", "1h", closed_opens("1h", t - 3 * DAY_MS, t - DAY_MS), "BTCUSDT_1h_20990101_000000.csv"
    )
    # Named correctly, holding the newest candles (all but the last one closed by now).
    recent_opens = closed_opens("1h", t - 2 * DAY_MS - HOUR_MS, t - HOUR_MS)
    recent = seed_export(folder, "BTCUSDT", "1h", recent_opens, export_file_name("BTCUSDT", "1h", from_ms(t - HOUR_MS)))

    result = run_manager(env, "--manual")
    assert result.returncode == 0, result.stdout + result.stderr
    calls = exchange.klines_requests("BTCUSDT")
    assert len(calls) == 1 and calls[0]["startTime"] == recent_opens[-1], "did not build on the newest content"
    (written,) = assert_folder_sound(folder)
    assert written not in (future, recent)
    assert written.read_text() == expected_csv("BTCUSDT", "1h", closed_opens("1h", t - 2 * DAY_MS, t))
    status = read_json(folder / "status_report.json")["symbols"]["BTCUSDT"]
    assert status["latest_file"] == written.name and status["valid"]

    # The next cycle replaces it normally: nothing stays "newest" forever.
    exchange.config.now_ms = t + HOUR_MS
    second = run_manager(env, "--manual")
    assert second.returncode == 0, second.stdout + second.stderr
    (latest,) = assert_folder_sound(folder)
    assert latest.read_text() == expected_csv(
        "BTCUSDT", "1h", closed_opens("1h", t + HOUR_MS - 2 * DAY_MS, t + HOUR_MS)
    )


def test_a_future_named_copy_of_the_newest_content_does_not_delete_each_new_export(tmp_path, sandbox_factory):
    """No new candle since the last run, and a future-named twin of the newest file:
    the file just written wins the tie and stays."""
    t = pinned_now()
    exchange = sandbox_factory(now_ms=t)
    folder = tmp_path / "exports"
    env = manager_env(folder, exchange.base_url, "BTCUSDT")
    assert run_manager(env, "--manual").returncode == 0
    (first,) = export_files(folder)
    twin = folder / "BTCUSDT_1h_20990101_000000.csv"
    data = first.read_bytes()
    first.rename(twin)

    for _ in range(2):  # same exchange time: the same candles again, twice
        result = run_manager(env, "--manual")
        assert result.returncode == 0, result.stdout + result.stderr
        (kept,) = assert_folder_sound(folder)
        assert kept != twin and kept.read_bytes() == data


# --- 3. the window only moves forward ---------------------------------------------------


def test_an_exchange_serving_older_data_replaces_nothing(tmp_path, sandbox_factory):
    t = pinned_now()
    exchange = sandbox_factory(now_ms=t)
    folder = tmp_path / "exports"
    env = manager_env(folder, exchange.base_url, "BTCUSDT")
    assert run_manager(env, "--manual").returncode == 0
    before = contents(export_files(folder))
    newest_kept = closed_opens("1h", t - 2 * DAY_MS, t)[-1]

    back = t - 3 * 365 * DAY_MS  # the exchange's clock three years back
    exchange.config.now_ms = back
    exchange.reset_log()
    for _ in range(2):
        result = run_manager(env, "--manual")
        assert result.returncode == 1, result.stdout + result.stderr
        lines = error_lines(result.stderr)
        assert len(lines) == 1 and lines[0].startswith("error: BTCUSDT: "), result.stderr
        years = (str(from_ms(newest_kept).year), str(from_ms(back).year))
        assert all(year in lines[0] for year in years), f"the message must name both times: {lines[0]}"
        assert contents(export_files(folder)) == before
        assert quarantined(folder) == []
    assert exchange.klines_requests("BTCUSDT") == [], "older data was fetched although it cannot be used"
    assert ms_to_iso(newest_kept) in lines[0] or "clock" in lines[0]


# --- 4. bounded memory for junk named like an export ---------------------------------------


def _write_junk(path: Path, layout: str) -> str:
    """300 MB named like an export: CR-only line ends, or one giant line after the header. Returns its SHA-256."""
    row = b"2024-01-01 00:00:00+00:00,1.0,2.0,0.5,1.5,10,2024-01-01 00:59:59.999+00:00,10,5,5,5"
    separator, head_end = (b"\r", b"\r") if layout == "cr_only" else (b",", b"\n")
    block = (row + separator) * 8192
    digest = hashlib.sha256()
    with open(path, "wb") as handle:
        for piece in (CSV_HEADER.encode() + head_end, *(block for _ in range(JUNK_BYTES // len(block) + 1))):
            handle.write(piece)
            digest.update(piece)
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _cap_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_CAP, ADDRESS_SPACE_CAP))


@pytest.mark.parametrize("layout", ["cr_only", "one_giant_line"])
def test_huge_junk_named_like_an_export_is_quarantined_in_bounded_memory(layout, tmp_path, sandbox_factory):
    t = pinned_now()
    exchange = sandbox_factory(now_ms=t)
    folder = tmp_path / "exports"
    folder.mkdir()
    junk = folder / export_file_name("BTCUSDT", "1h", from_ms(t - DAY_MS))
    digest = _write_junk(junk, layout)
    env = manager_env(folder, exchange.base_url, "BTCUSDT")

    for _ in range(2):
        result = run_manager(env, "--manual", preexec_fn=_cap_address_space, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert quarantined(folder) == [junk.name], "junk was not quarantined exactly once"
    moved = folder / QUARANTINE_DIR_NAME / junk.name
    assert moved.stat().st_size >= JUNK_BYTES and _sha256(moved) == digest, "junk was changed on its way aside"
    (written,) = assert_folder_sound(folder)
    assert written.read_text() == expected_csv("BTCUSDT", "1h", closed_opens("1h", t - 2 * DAY_MS, t))


# --- 5. own only what is ours ---------------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_only_our_own_temp_leftovers_are_removed(tmp_path, sandbox_factory):
    t = pinned_now()
    exchange = sandbox_factory(now_ms=t)
    folder = tmp_path / "exports"
    folder.mkdir()
    dead = _dead_pid()
    export_name = export_file_name("BTCUSDT", "1h", from_ms(t - DAY_MS))
    ours = [folder / temp_name(export_name, dead), folder / temp_name("state.json", dead, "0123abcd")]
    foreign = [
        folder / f".x.{dead}.deadbeef.tmp",  # the old shape, for no name of ours
        folder / f".{export_name}.{dead}.cafef00d.tmp",  # the old shape without our tag
        folder / temp_name("x", dead),  # our tag, but "x" is no name of ours
        folder / temp_name("notes.csv", dead),
        folder / temp_name("ETHUSDT_1h_20240101_000000.csv.bak", dead),
    ]
    two_hours_ago = time.time() - 7200
    for path in ours + foreign:
        path.write_text("partial\n")
        os.utime(path, (two_hours_ago, two_hours_ago))
    foreign_before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in foreign}

    result = run_manager(manager_env(folder, exchange.base_url, "BTCUSDT"), "--manual")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not any(p.exists() for p in ours), "our own leftovers of a dead writer must go"
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in foreign} == foreign_before
    assert listed(result.stdout, "removed") >= {p.name for p in ours}


# --- 6. summaries count what happened ----------------------------------------------------


def test_every_removal_is_counted_and_a_dry_run_lists_exactly_what_the_run_does(tmp_path, sandbox_factory):
    t = pinned_now()
    exchange = sandbox_factory(now_ms=t)
    folder = tmp_path / "exports"
    env = manager_env(folder, exchange.base_url, "BTCUSDT,ETHUSDT")
    assert run_manager(env, "--manual").returncode == 0
    replaced = {p.name for p in export_files(folder)}  # every cycle replaces each symbol's file
    # Names carry the local second: let it turn, so the next cycle's files get new names
    # (a cycle within the same second overwrites its own name instead of removing it).
    first_second = int(time.time())
    wait_until(lambda: int(time.time()) > first_second, "the next second of the local clock")

    # What else the next cycle finds: an old file of a symbol no longer configured, two
    # identical files of other symbols, a corrupt newer ETHUSDT file, a leftover of a dead writer.
    old = folder / export_file_name("DOGEUSDT", "1h", from_ms(t - 10 * DAY_MS))
    old.write_bytes(valid_bytes(24))  # its newest candle is weeks old
    link = folder / export_file_name("LINKUSDT", "1h", from_ms(t - HOUR_MS))
    dot = folder / export_file_name("DOTUSDT", "1h", from_ms(t - HOUR_MS))
    seed_export(folder, "LINKUSDT", "1h", closed_opens("1h", t - DAY_MS, t), link.name)
    dot.write_bytes(link.read_bytes())
    corrupt = folder / export_file_name("ETHUSDT", "1h", from_ms(t - 60_000))
    corrupt.write_bytes(b"open_time,garbage\n1,2\n")
    leftover = folder / temp_name(export_file_name("BTCUSDT", "1h", from_ms(t - DAY_MS)), _dead_pid())
    leftover.write_text("partial")

    exchange.config.now_ms = t + HOUR_MS
    before = snapshot(folder)
    planned = run_manager(env, "--manual", "--dry-run")
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert snapshot(folder) == before, "a dry run changed the folder"
    done = run_manager(env, "--manual")
    assert done.returncode == 0, done.stdout + done.stderr

    removed = listed(done.stdout, "removed")
    assert removed == replaced | {old.name, dot.name, leftover.name}
    assert listed(done.stdout, "quarantined") == {corrupt.name}
    assert listed(planned.stdout, "would remove") == removed
    assert listed(planned.stdout, "would quarantine") == {corrupt.name}
    assert f"cleanup: removed {len(removed)} file(s)" in done.stdout
    assert f"cleanup: dry run: would remove {len(removed)} file(s)" in planned.stdout
    assert f"{dot.name}: duplicate of {link.name}" in done.stdout, "a duplicate must name the file it duplicates"
    assert "cycle quarantined" in done.stdout
    assert read_json(folder / "state.json")["last_cycle_result"] == "quarantined"
    assert read_json(folder / "status_report.json")["last_cycle"]["result"] == "quarantined"


# --- 7. every wait is interruptible ------------------------------------------------------


def test_sigterm_during_a_long_validation_ends_the_run_within_seconds(tmp_path, sandbox_factory, start_manager):
    """Forty 256 MB junk files (sparse: no disk is written) take half a minute or more to
    validate; a stop request ends the run within its grace of seconds, and the
    files it did not reach stay exactly as they were. (Small files: the first is judged soon.)"""
    t = pinned_now()
    exchange = sandbox_factory(now_ms=t)
    folder = tmp_path / "exports"
    folder.mkdir()
    junk = []
    for day in range(1, 41):
        path = folder / export_file_name("BTCUSDT", "1h", from_ms(t - day * DAY_MS))
        with open(path, "wb") as handle:
            handle.truncate(1 << 28)
        junk.append(path)
    proc = start_manager(manager_env(folder, exchange.base_url, "BTCUSDT"), "--manual")
    wait_until(lambda: quarantined(folder), "the first junk file to be judged and quarantined")
    untouched = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in junk if p.exists()}
    proc.send_signal(signal.SIGTERM)

    code, out, err = finish(proc)
    assert code == 130, out + err  # interrupted
    assert "stopped on request" in out
    moved = quarantined(folder)
    assert 1 <= len(moved) <= len(junk) // 2, f"the run did not stop: {len(moved)} of {len(junk)} files judged"
    left = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in junk if p.exists()}
    assert len(left) + len(moved) == len(junk)
    assert all(untouched[name] == info for name, info in left.items()), "a file not judged was changed"
