"""The scheduler's loop: ``schedule`` declares the cadence, a monotonic loop drives it.

The cadence is the guide's ``every(2).hours`` (EXPORT_AT is schedule's ``.at()``). schedule
plans on the wall clock, which NTP or a person may step; so at every wake-up (at most
``MAX_WAIT_SECONDS`` apart) the loop moves the planned run by any step of the wall clock
against the monotonic one: a step forward runs no cycle early or twice, a step back delays none."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import schedule

from crypto_data_export.settings.settings import cadence

logger = logging.getLogger(__name__)

# The longest single wait: a stale plan is looked at again within this (~0 % CPU).
MAX_WAIT_SECONDS = 30.0
# The two clocks disagreeing by more than this between wake-ups: the wall clock was stepped.
JUMP_SECONDS = 2.0
_NAIVE_EPOCH = datetime(1970, 1, 1)


def local_wall() -> float:
    """The wall clock as schedule reads it (naive local time), in seconds: a daylight-saving
    change is a step of this clock too, so it is followed like any other step."""
    return (datetime.now() - _NAIVE_EPOCH).total_seconds()


class CycleLoop:
    """Run ``cycle`` now, then on the cadence of ``period_hours`` / ``export_at``, until ``stop`` is set.
    ``monotonic`` and ``wall`` are the clocks in seconds (tests step them; schedule reads
    ``datetime.now()``). ``on_planned`` is told every new next run (UTC)."""

    def __init__(
        self,
        cycle: Callable[[], object],
        period_hours: float,
        export_at: str | None,
        stop: threading.Event,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = local_wall,
        on_planned: Callable[[datetime], None] | None = None,
    ) -> None:
        unit, count, at = cadence(period_hours, export_at)
        self.scheduler = schedule.Scheduler()  # our own, not schedule's module-wide default
        every = getattr(self.scheduler.every(count), unit)
        self.job = (every.at(at) if at else every).do(cycle)
        self.stop, self.monotonic, self.wall, self.on_planned = stop, monotonic, wall, on_planned
        self._readings = (monotonic(), wall())

    def run(self) -> None:
        self.scheduler.run_all()  # the default stays: a cycle now; schedule then plans the next
        self._planned()
        while not self.stop.is_set():
            idle = self.scheduler.idle_seconds or 0.0
            if self.stop.wait(min(max(idle, 0.0), MAX_WAIT_SECONDS)):
                break
            self._follow_wall_clock()
            before = self.job.next_run
            self.scheduler.run_pending()  # at most one run: schedule never catches up missed runs
            if self.job.next_run != before:
                self._planned()

    def _planned(self) -> None:
        self._readings = (self.monotonic(), self.wall())
        assert self.job.next_run is not None  # one job, always planned
        next_run = self.job.next_run.astimezone(UTC)  # schedule keeps naive local time
        logger.info("next cycle at %s", next_run.isoformat(timespec="seconds"))
        if self.on_planned is not None:
            self.on_planned(next_run)

    def _follow_wall_clock(self) -> None:
        """Move the plan by any step of the wall clock since the last reading."""
        (last_mono, last_wall), (mono, wall) = self._readings, (self.monotonic(), self.wall())
        self._readings = (mono, wall)
        step = (wall - last_wall) - (mono - last_mono)
        if abs(step) > JUMP_SECONDS and self.job.next_run is not None:
            logger.warning("the wall clock was stepped by %+.0f s: the next cycle keeps its planned moment", step)
            self.job.next_run += timedelta(seconds=step)
            self._planned()
