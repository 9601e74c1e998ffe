"""The jobs that run the market on a clock: clearing at each gate closure, catch-up at start.

One APScheduler 3.x date job per interval fires at its gate closure and clears every due interval
(normally just that one); each job schedules the next interval's. On start, intervals whose gate
closed while the service was down are cleared first, in order. Clearing is exactly once
(:mod:`market.clearing`), so a second scheduler, a retry or a restart never clears twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.engine import Engine

from api.clock import Clock
from market.clearing import ClearingOutcome, clear_due
from market.intervals import SettlementPeriod, period_at
from market.rules import MarketRules

log = logging.getLogger("smartbrum.scheduler")


class MarketScheduler:
    """Clears the market at every gate closure; see the module docstring.

    ``on_cleared`` is called with each batch of outcomes (from the job's thread).
    """

    def __init__(
        self,
        engine: Engine,
        rules: MarketRules,
        clock: Clock,
        *,
        on_cleared: Callable[[list[ClearingOutcome]], None] | None = None,
    ) -> None:
        self.engine = engine
        self.rules = rules
        self.clock = clock
        self.on_cleared = on_cleared
        self.scheduler = BackgroundScheduler(
            timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
        )

    def start(self) -> list[ClearingOutcome]:
        """Catch up on every due interval, then start the clock's jobs. Returns the catch-up."""
        outcomes = self._clear_due(self.clock.now(), "scheduler:catch-up")
        self.scheduler.start()
        self._schedule_next()
        return outcomes

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop the jobs; with ``wait``, let a running one finish first."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=wait)

    def next_gate_closure(self, now: datetime) -> tuple[SettlementPeriod, datetime]:
        """The first interval whose gate closes after ``now``, and when."""
        offset = timedelta(minutes=self.rules.gate_closure_minutes)
        period = period_at(now + offset, length_minutes=self.rules.interval_minutes)
        while self.rules.gate_closure_utc(period) <= now:
            period = period.next()
        return period, self.rules.gate_closure_utc(period)

    def _schedule_next(self) -> None:
        period, gate = self.next_gate_closure(self.clock.now())
        delay = max(0.0, self.clock.real_seconds_until(gate))
        self.scheduler.add_job(
            self._clear_at_gate,
            "date",
            run_date=datetime.now(UTC) + timedelta(seconds=delay),
            args=[period],
            id=f"clear:{period.key}",
            replace_existing=True,
        )

    def _clear_at_gate(self, period: SettlementPeriod) -> None:
        try:
            # The job is the gate closing: a timer that fires a moment early still means "now".
            now = max(self.clock.now(), self.rules.gate_closure_utc(period))
            self._clear_due(now, "scheduler")
        except Exception:
            log.exception("clearing at the gate closure of %s failed; the next gate retries", period.key)
        finally:
            if self.scheduler.running:
                self._schedule_next()

    def _clear_due(self, now: datetime, triggered_by: str) -> list[ClearingOutcome]:
        outcomes = clear_due(self.engine, rules=self.rules, now=now, triggered_by=triggered_by)
        for outcome in outcomes:
            run = outcome.run
            log.info("cleared %s: %d orders, welfare %s p", run.period.key, run.orders, run.welfare_p)
        if outcomes and self.on_cleared is not None:
            self.on_cleared(outcomes)
        return outcomes
