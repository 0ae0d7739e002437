"""state.json read field by field: a wrong value falls back to its default; foreign files are kept aside."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crypto_data_export.store.run_state import RunState, load_state, state_from_dict, update_state

WRITER = {"writer": "crypto-data-export", "format_version": 1}


def test_a_clean_state_round_trips_with_the_marker(tmp_path: Path) -> None:
    def change(state: RunState) -> None:
        state.export_count = 4
        state.symbol("BTCUSDT").last_error = "boom"

    update_state(tmp_path, change)
    data = json.loads((tmp_path / "state.json").read_text())
    assert list(data)[:2] == ["writer", "format_version"] and "notices" not in data
    state, problems = state_from_dict(data)
    assert problems == [] and state.export_count == 4 and state.symbols["BTCUSDT"].last_error == "boom"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("export_count", "7"),
        ("export_count", -1),
        ("export_count", True),
        ("export_count", 10**20),
        ("export_count", 1.5),
        ("last_cycle_start", "yesterday"),
        ("last_cycle_start", 17),
        ("banned_until", "9999-01-01T00:00:00+00:00"),
        ("service_pid", "123"),
        ("service_pid", 0),
        ("service_status", "exploded"),
        ("last_cycle_failed_symbols", "BTCUSDT"),
        ("last_cycle_failed_symbols", ["../etc"]),
        ("symbols", []),
        ("symbols", None),
        ("symbols", {"BTCUSDT": [1]}),
        ("symbols", {"../x": {}}),
    ],
)
def test_a_wrong_field_falls_back_to_its_default(field: str, value: object) -> None:
    state, problems = state_from_dict({**WRITER, field: value, "cleanup_count": 3})
    assert len(problems) == 1 and problems[0].startswith(field), problems
    default = RunState()
    if field != "symbols":
        assert getattr(state, field) == getattr(default, field)
    assert state.cleanup_count == 3


def test_a_wrong_symbol_field_keeps_the_rest_of_the_symbol() -> None:
    state, problems = state_from_dict(
        {**WRITER, "symbols": {"BTCUSDT": {"last_error": {"x": 1}, "last_file": "f.csv"}}}
    )
    assert problems == ["symbols.BTCUSDT.last_error is {'x': 1}, expected a text or null"]
    assert state.symbols["BTCUSDT"].last_file == "f.csv" and state.symbols["BTCUSDT"].last_error is None


def test_reading_changes_nothing_and_writing_keeps_the_bad_file_aside(tmp_path: Path) -> None:
    raw = json.dumps({**WRITER, "export_count": "x", "cleanup_count": 2})
    (tmp_path / "state.json").write_text(raw)
    state = load_state(tmp_path)
    assert state.cleanup_count == 2 and state.export_count == 0 and len(state.notices) == 1
    assert (tmp_path / "state.json").read_text() == raw and len(list(tmp_path.iterdir())) == 1

    updated = update_state(tmp_path, lambda s: setattr(s, "export_count", s.export_count + 1))
    assert updated.export_count == 1 and updated.cleanup_count == 2
    assert "kept as state.json.corrupt-" in updated.notices[0]
    [kept] = [p for p in tmp_path.iterdir() if p.name.startswith("state.json.corrupt-")]
    assert kept.read_text() == raw
    assert json.loads((tmp_path / "state.json").read_text())["export_count"] == 1


def test_a_foreign_state_file_is_kept_under_a_foreign_name(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text('{"export_count": 9}')
    updated = update_state(tmp_path, lambda s: None)
    assert updated.export_count == 0
    [kept] = [p for p in tmp_path.iterdir() if p.name.startswith("state.json.foreign-")]
    assert kept.read_text() == '{"export_count": 9}'
