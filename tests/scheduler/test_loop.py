"""The scheduler's loop: schedule's cadence, driven by a monotonic loop that follows wall-clock steps.

Both clocks are fakes stepped by the test: the loop is given them, and schedule, which reads
``datetime.now()`` itself, is given the same wall clock (as schedule's own tests do). A wait on
the stop Event passes at once and moves both clocks by its timeout.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from crypto_data_export.scheduler.loop import MAX_WAIT_SECONDS, CycleLoop
from crypto_data_export.scheduler.manager import ScheduledDataManager
from crypto_data_export.settings.settings import Settings
from tests.support import LOOP_START as START
from tests.support import Clocks, schedule_reads

DAY = 86400.0


class FakeStop(threading.Event):
    """Waits pass instantly on the fake clocks; ``on_wait`` may step the wall clock or stop."""

    def __init__(self, clocks: Clocks, on_wait: Callable[[int], None] = lambda n: None) -> None:
        super().__init__()
        self.clocks, self.on_wait, self.waits = clocks, on_wait, []

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None and 0 <= timeout <= MAX_WAIT_SECONDS  # bounded: a step is seen soon
        self.waits.append(timeout)
        self.on_wait(len(self.waits))
        if not self.is_set():
            self.clocks.advance(timeout)
        return self.is_set()


@pytest.fixture
def clocks(monkeypatch: pytest.MonkeyPatch) -> Clocks:
    clocks = Clocks()
    schedule_reads(monkeypatch, clocks)
    return clocks


def _run(
    clocks: Clocks,
    cycles: int,
    *,
    period: float = 2.0,
    at: str | None = None,
    took: float = 60.0,
    on_wait: Callable[[int], None] = lambda n: None,
) -> tuple[list[float], list[dt.datetime], list[dt.datetime]]:
    """Run the loop until ``cycles`` cycles ran; their monotonic and wall starts, and each planned run."""
    stop = FakeStop(clocks, on_wait)
    mono_starts: list[float] = []
    wall_starts: list[dt.datetime] = []
    planned: list[dt.datetime] = []

    def cycle() -> None:
        mono_starts.append(clocks.mono)
        wall_starts.append(clocks.now())
        clocks.advance(took)
        if len(mono_starts) == cycles:
            stop.set()

    loop = CycleLoop(cycle, period, at, stop, monotonic=lambda: clocks.mono, wall=lambda: clocks.wall)
    loop.on_planned = planned.append
    loop.run()
    return mono_starts, wall_starts, planned


def test_a_cycle_now_then_one_period_after_each_cycle_and_each_plan_is_told(clocks: Clocks) -> None:
    mono, _, planned = _run(clocks, 3, period=2.0, took=60.0)
    assert mono == pytest.approx([1000.0, 1060.0 + 7200, 1120.0 + 2 * 7200])
    # Each plan is schedule's next run (UTC), told once the cycle before it ended.
    first_end = START + dt.timedelta(seconds=60)
    assert planned[0] == (first_end + dt.timedelta(hours=2)).astimezone(dt.UTC)
    assert len(planned) == 3


def test_a_fractional_period_is_whole_seconds(clocks: Clocks) -> None:
    mono, _, _ = _run(clocks, 3, period=0.001, took=0.0)  # 3.6 s -> every 4 s
    assert mono == pytest.approx([1000.0, 1004.0, 1008.0])


@pytest.mark.parametrize(
    ("period", "at", "expected"),
    [
        (1.0, ":00:05", ["11:00:05", "12:00:05", "13:00:05"]),  # 5 s past every hour
        (2.0, ":00:05", ["12:00:05", "14:00:05", "16:00:05"]),  # every 2 h, counted from the start's hour
        (24.0, "06:30", ["2026-03-11 06:30:00", "2026-03-12 06:30:00", "2026-03-13 06:30:00"]),
        (0.25, ":05", ["10:33:05", "10:48:05", "11:03:05"]),  # whole minutes, at :05 s
    ],
)
def test_export_at_aligns_the_runs_after_the_first_to_the_clock(
    clocks: Clocks, period: float, at: str, expected: list[str]
) -> None:
    _, wall, _ = _run(clocks, 4, period=period, at=at, took=30.0)
    assert wall[0] == START  # a cycle at start, aligned or not
    shown = [w.strftime("%Y-%m-%d %H:%M:%S" if period >= 24 else "%H:%M:%S") for w in wall[1:]]
    assert shown == expected


@pytest.mark.parametrize("step", [DAY, -DAY])
def test_a_wall_clock_step_of_a_day_neither_delays_the_next_cycle_nor_runs_extra_ones(
    clocks: Clocks, step: float
) -> None:
    def step_once(wait: int) -> None:
        if wait == 3:  # in the middle of the first two-hour wait
            clocks.wall += step

    mono, wall, _ = _run(clocks, 3, period=2.0, took=60.0, on_wait=step_once)
    assert mono == pytest.approx([1000.0, 1060.0 + 7200, 1120.0 + 2 * 7200])
    # After the step, schedule plans on the new wall clock: one period after the cycle's end.
    assert (wall[2] - wall[1]).total_seconds() == pytest.approx(7260.0)


@pytest.mark.parametrize("step", [DAY, -DAY])
def test_a_wall_clock_step_keeps_an_aligned_run_at_its_moment_then_aligns_to_the_new_clock(
    clocks: Clocks, step: float
) -> None:
    def step_once(wait: int) -> None:
        if wait == 2:
            clocks.wall += step

    mono, wall, _ = _run(clocks, 3, period=1.0, at=":00:05", took=30.0)
    clocks.reset()  # the same run again, with the step
    stepped_mono, stepped_wall, _ = _run(clocks, 3, period=1.0, at=":00:05", took=30.0, on_wait=step_once)
    assert stepped_mono == pytest.approx(mono)  # 11:00:05 and 12:00:05 as planned, on the monotonic clock
    assert stepped_wall[2] - stepped_wall[1] == wall[2] - wall[1]
    assert stepped_wall[2].strftime("%M:%S") == "00:05"


def test_a_cycle_longer_than_its_period_is_followed_by_one_cycle_not_a_burst(clocks: Clocks) -> None:
    mono, _, _ = _run(clocks, 3, period=1.0, took=3 * 3600.0)
    assert mono == pytest.approx([1000.0, 1000.0 + 4 * 3600, 1000.0 + 8 * 3600])


def test_the_stop_event_ends_the_wait_at_once() -> None:
    """Real clocks and a real Event: an hour's wait ends when the stop flag is set."""
    stop, ran = threading.Event(), threading.Event()
    loop = CycleLoop(ran.set, 1.0, None, stop)
    thread = threading.Thread(target=loop.run)
    thread.start()
    assert ran.wait(10)
    stop.set()
    thread.join(10)  # a safety net only: the loop is waiting for an hour
    assert not thread.is_alive()


def test_the_manager_records_schedules_next_run_in_the_status(tmp_path: Path, clocks: Clocks) -> None:
    settings = Settings(export_dir=tmp_path, symbols=("BTCUSDT",), export_period_hours=2.0, export_at="00:05")
    stop = FakeStop(clocks)
    manager = ScheduledDataManager(settings, stop_event=stop, monotonic=lambda: clocks.mono, wall=lambda: clocks.wall)
    seen: list[str | None] = []

    def cycle() -> None:
        clocks.advance(10.0)
        seen.append(manager.write_status(write=False)["next_run"])
        if len(seen) == 2:
            stop.set()

    manager._scheduled_cycle = cycle  # type: ignore[method-assign]
    assert manager.run_forever() == 0
    expected = dt.datetime(2026, 3, 10, 12, 0, 5).astimezone(dt.UTC).isoformat(timespec="seconds")
    assert seen == [None, expected]  # planned once the first cycle ended
    assert (tmp_path / "status_report.json").exists()
