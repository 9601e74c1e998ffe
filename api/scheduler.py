"""The jobs that run the platform on a clock: clearing at each gate closure (with catch-up at
start), polling the meters on a cadence, deriving each period's meter energy, settling each
interval when its data is due (reconciling when it changes), and bidding for the households whose
strategy trades (automatic trading: planning after each gate closure).

One APScheduler 3.x date job per interval fires at its gate closure and clears every due interval
(normally just that one); each job schedules the next interval's. On start, intervals whose gate
closed while the service was down are cleared first, in order. Clearing is exactly once
(:mod:`market.clearing`), so a second scheduler, a retry or a restart never clears twice.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.engine import Engine
from sqlmodel import Session

from api.clock import Clock
from api.logs import log_event
from api.metrics import record_clearing, record_job_failure, record_planning, record_poll, record_settlement
from market.autotrading import PlanningReport, plan_strategies
from market.clearing import ClearingOutcome, clear_due, node_prices
from market.database import transaction
from market.intervals import SettlementPeriod, period_at
from market.meter_data import (
    derive_energy_of_meters,
    derive_revisited_estimates,
    estimates_to_revisit,
    store_energy_of_meters,
    store_readings,
)
from market.participants import list_meters
from market.rules import MarketRules
from market.settlement import (
    INITIAL,
    RECONCILE,
    SettlementConfig,
    SettlementOutcome,
    periods_due_for_settlement,
    periods_to_reconcile,
    pool_balance_cp,
    settle_periods,
)
from metering.polling import MeterEndpoint, Poller, PollResult, PollSettings

log = logging.getLogger("smartbrum.scheduler")
#: A clearing run's log names every node's price up to this many nodes (then the range only).
LOGGED_NODE_PRICES = 100
#: A polling cycle's log names the meters that failed, up to this many.
LOGGED_FAILING_METERS = 20
#: How long after a gate closure automatic trading plans again (clearing goes first).
PLANNING_AFTER_GATE = timedelta(seconds=20)
#: How far back the energy job looks for estimates that a reading since can improve.
REVISIT_ESTIMATES = timedelta(hours=24)


def _job_failed(job: str, message: str, **fields: object) -> None:
    record_job_failure(job)
    log_event(log, "job_failed", message, level=logging.ERROR, job=job, exc_info=True, **fields)


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
        self.busy_s = 0.0
        """Seconds spent clearing so far (for reports and benchmarks)."""
        self.scheduler = BackgroundScheduler(
            timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
        )

    def start(self) -> list[ClearingOutcome]:
        """Catch up on every due interval, then start the clock's jobs. Returns the catch-up."""
        now = self.clock.now()
        outcomes = self._clear_due(now, "scheduler:catch-up")
        created = [outcome.run.period.key for outcome in outcomes if outcome.created]
        log_event(
            log,
            "catch_up",
            f"clearing caught up: {len(created)} interval(s) whose gate closed while the service was down",
            job="clearing",
            runs=len(created),
            first=created[0] if created else None,
            last=created[-1] if created else None,
            now=now,
        )
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
            _job_failed(
                "clearing",
                f"clearing at the gate closure of {period.key} failed; the next gate retries",
                interval=period.key,
            )
        finally:
            if self.scheduler.running:
                self._schedule_next()

    def _clear_due(self, now: datetime, triggered_by: str) -> list[ClearingOutcome]:
        started = time.perf_counter()
        try:
            outcomes = clear_due(self.engine, rules=self.rules, now=now, triggered_by=triggered_by)
        finally:
            self.busy_s += time.perf_counter() - started
        for outcome in outcomes:
            if outcome.created:
                self._log_run(outcome)
        if outcomes and self.on_cleared is not None:
            self.on_cleared(outcomes)
        return outcomes

    def _log_run(self, outcome: ClearingOutcome) -> None:
        run = outcome.run
        record_clearing(run.total_seconds)
        with Session(self.engine) as session:
            prices = {price.node_id: price.price_p_per_kwh for price in node_prices(session, run.id)}
        listed = prices if len(prices) <= LOGGED_NODE_PRICES else None
        log_event(
            log,
            "clearing_run",
            f"cleared {run.period.key}: {run.orders} orders, {len(prices)} node prices, "
            f"{run.total_seconds:.3f} s",
            interval=run.period.key,
            run_id=run.id,
            sequence=run.sequence,
            status=run.status,
            orders=run.orders,
            excluded_orders=run.excluded_orders,
            node_prices=listed,
            price_min=min(prices.values(), default=None),
            price_max=max(prices.values(), default=None),
            welfare_p=run.welfare_p,
            seconds=round(run.total_seconds, 6),
            triggered_by=run.triggered_by,
        )


class MeterPolling:
    """Polls the registered fleet on a cadence and derives interval energy after each period.

    Every ``poll_seconds`` of market time an APScheduler job reads the active meters from the
    database, polls them (one :class:`metering.polling.Poller`, its connections kept between
    cycles, on an event loop of its own) and stores the cycle's readings in one transaction: a
    crash loses the cycle or nothing. ``meter_data_delay`` after each period ends, a second job
    derives every meter's energy for that period and the one before (a late reading may still
    change it) and stores what changed as new revisions.
    """

    def __init__(
        self,
        engine: Engine,
        rules: MarketRules,
        clock: Clock,
        *,
        poll_settings: PollSettings,
        poll_seconds: float = 60.0,
        meter_data_delay: timedelta = timedelta(minutes=2),
        map_dirs: Sequence[Path] = (),
        on_polled: Callable[[list[PollResult], int], None] | None = None,
    ) -> None:
        self.engine = engine
        self.rules = rules
        self.clock = clock
        self.poll_settings = poll_settings
        self.poll_seconds = poll_seconds
        self.meter_data_delay = meter_data_delay
        self.map_dirs = tuple(map_dirs)
        self.on_polled = on_polled
        self.poll_busy_s = 0.0
        """Seconds spent polling and storing readings so far."""
        self.energy_busy_s = 0.0
        #: Meter-periods whose estimate the latest energy job derived again.
        self.estimates_revisited = 0
        """Seconds spent deriving interval energy so far."""
        self.scheduler = BackgroundScheduler(
            timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="meter-polling", daemon=True)
        self._poller: Poller | None = None
        self._endpoints: tuple[MeterEndpoint, ...] = ()

    def start(self) -> None:
        """Start the loop and both jobs; the first poll runs at once."""
        self._thread.start()
        self.scheduler.start()
        self._schedule_poll(0.0)
        self._schedule_energy()

    def shutdown(self) -> None:
        """Stop the jobs, close the meters' connections and the loop."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        if self._poller is not None:
            asyncio.run_coroutine_threadsafe(self._poller.close(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()

    def poll_once(self) -> tuple[list[PollResult], int]:
        """One cycle: poll every active meter, store the readings; returns results and how many stored."""
        started = time.perf_counter()
        try:
            return self._poll_and_store()
        finally:
            self.poll_busy_s += time.perf_counter() - started

    def _poll_and_store(self) -> tuple[list[PollResult], int]:
        started = time.perf_counter()
        with Session(self.engine) as session:
            endpoints = tuple(
                MeterEndpoint(m.id, m.host, m.port, m.unit_id, m.model, m.transport)
                for m in list_meters(session, active=True, polled=True)
            )
        if not endpoints:
            self._log_cycle([], 0, started)
            return [], 0
        if self._poller is None or endpoints != self._endpoints:
            old, self._poller, self._endpoints = self._poller, None, ()
            if old is not None:
                asyncio.run_coroutine_threadsafe(old.close(), self._loop).result(timeout=30)
            # A meter the poller cannot build is left out and reported by it, not raised; were the
            # poller itself to fail, the next cycle builds it again.
            self._poller = Poller(
                list(endpoints), settings=self.poll_settings, clock=self.clock.now, map_dirs=self.map_dirs
            )
            self._endpoints = endpoints
        results = asyncio.run_coroutine_threadsafe(self._poller.poll_once(), self._loop).result()
        readings = [result.reading for result in results if result.reading is not None]
        with transaction(self.engine) as session:
            stored = store_readings(session, readings)
        self._log_cycle(results, stored, started)
        if self.on_polled is not None:
            self.on_polled(results, stored)
        return results, stored

    def _log_cycle(self, results: list[PollResult], stored: int, started: float) -> None:
        read = sum(1 for result in results if result.reading is not None)
        skipped = sum(1 for result in results if result.skipped)
        failed = [result.meter_id for result in results if result.reading is None and not result.skipped]
        record_poll(polled=len(results), read=read, failed=len(failed), skipped=skipped)
        log_event(
            log,
            "poll_cycle",
            f"polled {len(results)} meters: {read} read, {len(failed)} failed, {skipped} breakers open",
            meters=len(results),
            read=read,
            failed=len(failed),
            breakers_open=skipped,
            partial=sum(1 for result in results if result.reading is not None and result.error),
            stored=stored,
            failing=sorted(failed)[:LOGGED_FAILING_METERS],
            seconds=round(time.perf_counter() - started, 6),
        )

    def derive_energy(self, period: SettlementPeriod) -> int:
        """Every active meter's energy for ``period`` and the one before, and any estimate of the
        last day that a reading since can improve (:func:`estimates_to_revisit`); returns meters
        refreshed. What changed is a new revision, which the settlement job reconciles."""
        periods = [period.previous(), period]
        started = time.perf_counter()
        try:
            # Derive with no write lock held (it reads and computes); store in one short transaction.
            with Session(self.engine) as session:
                meters = [m.id for m in list_meters(session, active=True, polled=True)]
                derived = derive_energy_of_meters(session, meters, periods)
                revisit = estimates_to_revisit(
                    session, since=period.start_utc - REVISIT_ESTIMATES, before=period.previous().start_utc
                )
                derived += derive_revisited_estimates(session, revisit)
            self.estimates_revisited = sum(len(meter_ids) for meter_ids in revisit.values())
            with transaction(self.engine) as session:
                # Stamped once the write lock is held (SQLite), not when the derivation began: a
                # settlement run that read the interval before this commit is then older than the
                # stamp, and the reconciliation finds the change (periods_to_reconcile).
                store_energy_of_meters(session, derived, now=self.clock.now())
        finally:
            self.energy_busy_s += time.perf_counter() - started
        return len(meters)

    def _schedule_poll(self, delay_s: float) -> None:
        self.scheduler.add_job(
            self._poll_job,
            "date",
            run_date=datetime.now(UTC) + timedelta(seconds=delay_s),
            id="meter-poll",
            replace_existing=True,
        )

    def _poll_job(self) -> None:
        started = self.clock.now()
        try:
            self.poll_once()
        except Exception:
            _job_failed("polling", "meter polling cycle failed; the next cycle retries")
        finally:
            if self.scheduler.running:
                next_poll = started + timedelta(seconds=self.poll_seconds)
                self._schedule_poll(max(0.0, self.clock.real_seconds_until(next_poll)))

    def _schedule_energy(self, period: SettlementPeriod | None = None) -> None:
        """Derive ``period``'s energy once its data is due (first call: the latest period ended)."""
        if period is None:
            ended = self.clock.now() - self.meter_data_delay
            period = period_at(ended, length_minutes=self.rules.interval_minutes)
        due = period.end_utc + self.meter_data_delay
        self.scheduler.add_job(
            self._energy_job,
            "date",
            run_date=datetime.now(UTC) + timedelta(seconds=max(0.0, self.clock.real_seconds_until(due))),
            args=[period],
            id=f"meter-energy:{period.key}",
            replace_existing=True,
        )

    def _energy_job(self, period: SettlementPeriod) -> None:
        started = time.perf_counter()
        try:
            count = self.derive_energy(period)
            log_event(
                log,
                "energy_derived",
                f"derived {period.key}'s meter energy (and {period.previous().key}'s) for {count} meters",
                interval=period.key,
                previous=period.previous().key,
                meters=count,
                estimates_revisited=self.estimates_revisited,
                seconds=round(time.perf_counter() - started, 6),
            )
        except Exception:
            _job_failed("energy", f"deriving meter energy for {period.key} failed", interval=period.key)
        finally:
            if self.scheduler.running:
                self._schedule_energy(period.next())


class SettlementJobs:
    """Settles each interval when its meter data is due, and reconciles when its inputs change.

    ``delay`` after each period ends, an APScheduler job makes the initial run of every cleared
    interval that has none (catching up after downtime too), then reconciles every settled
    interval whose meter energy or clearing changed since its latest run. Settlement runs are
    exactly once per interval and type (:mod:`market.settlement`), so a second instance or a
    retry changes nothing.
    """

    def __init__(
        self,
        engine: Engine,
        rules: MarketRules,
        clock: Clock,
        *,
        config: SettlementConfig,
        delay: timedelta = timedelta(minutes=10),
        on_settled: Callable[[list[SettlementOutcome]], None] | None = None,
    ) -> None:
        self.engine = engine
        self.rules = rules
        self.clock = clock
        self.config = config
        self.delay = delay
        self.on_settled = on_settled
        self.busy_s = 0.0
        """Seconds spent settling so far."""
        self.scheduler = BackgroundScheduler(
            timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
        )

    def start(self) -> list[SettlementOutcome]:
        """Settle what is due now, then start the per-period job. Returns the catch-up."""
        outcomes = self.settle_due()
        log_event(
            log,
            "catch_up",
            f"settlement caught up: {len(outcomes)} run(s) for intervals due while the service was down",
            job="settlement",
            runs=len(outcomes),
            first=outcomes[0].run.period.key if outcomes else None,
            last=outcomes[-1].run.period.key if outcomes else None,
        )
        self.scheduler.start()
        self._schedule(self._next_period())
        return outcomes

    def shutdown(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)

    def settle_due(self) -> list[SettlementOutcome]:
        """Initial runs for every interval due, then reconciliations for every one that changed."""
        started = time.perf_counter()
        try:
            return self._settle_due()
        finally:
            self.busy_s += time.perf_counter() - started

    def _settle_due(self) -> list[SettlementOutcome]:
        now = self.clock.now()
        length = self.rules.interval_minutes
        with Session(self.engine) as session:
            due = periods_due_for_settlement(session, length_minutes=length, now=now, delay=self.delay)
        outcomes = self._settle(due, INITIAL, now)
        with Session(self.engine) as session:
            changed = periods_to_reconcile(session, length_minutes=length)
        outcomes += self._settle(changed, RECONCILE, now)
        created = [outcome for outcome in outcomes if outcome.created]
        for outcome in created:
            self._log_run(outcome)
        if created and self.on_settled is not None:
            self.on_settled(created)
        return created

    def _settle(
        self, periods: list[SettlementPeriod], run_type: str, now: datetime
    ) -> list[SettlementOutcome]:
        return settle_periods(
            self.engine,
            periods,
            run_type=run_type,
            config=self.config,
            now=now,
            triggered_by="scheduler",
        )

    def _log_run(self, outcome: SettlementOutcome) -> None:
        run = outcome.run
        with Session(self.engine) as session:
            pool_cp = pool_balance_cp(session, run_id=run.id)
        record_settlement(run_type=run.run_type, balanced=pool_cp == 0)
        log_event(
            log,
            "settlement_run",
            f"settled {run.period.key} ({run.run_type}, {run.status}): {run.lines} lines, "
            + (
                "balanced"
                if pool_cp == 0
                else f"NOT balanced: the pool holds {pool_cp} hundredths of a penny"
            ),
            level=logging.INFO if pool_cp == 0 else logging.ERROR,
            interval=run.period.key,
            run_id=run.id,
            run_type=run.run_type,
            sequence=run.sequence,
            status=run.status,
            lines=run.lines,
            pool_balance_cp=pool_cp,
            balanced=pool_cp == 0,
            pending=len(run.pending),
            estimated=len(run.estimated),
        )

    def _next_period(self) -> SettlementPeriod:
        """The period whose settlement time comes next."""
        return period_at(self.clock.now() - self.delay, length_minutes=self.rules.interval_minutes)

    def _schedule(self, period: SettlementPeriod) -> None:
        due = period.end_utc + self.delay
        self.scheduler.add_job(
            self._job,
            "date",
            run_date=datetime.now(UTC) + timedelta(seconds=max(0.0, self.clock.real_seconds_until(due))),
            args=[period],
            id=f"settle:{period.key}",
            replace_existing=True,
        )

    def _job(self, period: SettlementPeriod) -> None:
        try:
            self.settle_due()
        except Exception:
            _job_failed(
                "settlement",
                f"settlement after {period.key} failed; the next period retries",
                interval=period.key,
            )
        finally:
            if self.scheduler.running:
                self._schedule(period.next())


class StrategyPlanning:
    """Automatic trading: plans every household whose strategy trades and makes its orders (see
    :mod:`market.autotrading`), on start and then :data:`PLANNING_AFTER_GATE` after each gate
    closure, so that the periods ahead always hold the strategies' latest bids. Its own thread:
    clearing never waits for it, and a run stops by itself before the next gate closes.
    """

    def __init__(self, engine: Engine, rules: MarketRules, clock: Clock) -> None:
        self.engine = engine
        self.rules = rules
        self.clock = clock
        self.busy_s = 0.0
        """Seconds spent planning so far."""
        self.scheduler = BackgroundScheduler(
            timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
        )

    def start(self) -> PlanningReport | None:
        """Plan now, then after each gate closure. Returns the first run's report (None if it failed)."""
        report = self._run()
        self.scheduler.start()
        self._schedule_next()
        return report

    def shutdown(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)

    def plan_now(self) -> PlanningReport:
        """One planning run at the clock's time (raises what it raises)."""
        started = time.perf_counter()
        try:
            report = plan_strategies(
                self.engine, rules=self.rules, now=self.clock.now(), clock=self.clock.now
            )
        finally:
            self.busy_s += time.perf_counter() - started
        seconds = time.perf_counter() - started
        record_planning(
            seconds=seconds,
            planned=report.planned,
            failed=len(report.failed),
            not_reached=report.not_reached,
        )
        if report.periods:
            log_event(
                log,
                "planning_run",
                f"planned {report.planned} of {report.households} households with a strategy for "
                f"{report.periods[0].key} to {report.periods[-1].key}: {report.placed} orders placed, "
                f"{report.amended} amended, {report.cancelled} cancelled"
                + (f"; {len(report.failed)} skipped" if report.failed else "")
                + (f"; {report.not_reached} not reached before the gate" if report.not_reached else ""),
                level=logging.WARNING if report.failed or report.not_reached else logging.INFO,
                job="planning",
                first=report.periods[0].key,
                last=report.periods[-1].key,
                households=report.households,
                planned=report.planned,
                placed=report.placed,
                amended=report.amended,
                cancelled=report.cancelled,
                failed=dict(list(report.failed.items())[:LOGGED_FAILING_METERS]),
                not_reached=report.not_reached,
                seconds=round(seconds, 3),
            )
        return report

    def _run(self) -> PlanningReport | None:
        try:
            return self.plan_now()
        except Exception:
            _job_failed("planning", "planning failed; the next gate closure tries again")
            return None

    def _schedule_next(self) -> None:
        now = self.clock.now()
        period = period_at(now, length_minutes=self.rules.interval_minutes)
        while self.rules.gate_closure_utc(period) + PLANNING_AFTER_GATE <= now:
            period = period.next()
        due = self.rules.gate_closure_utc(period) + PLANNING_AFTER_GATE
        self.scheduler.add_job(
            self._job,
            "date",
            run_date=datetime.now(UTC) + timedelta(seconds=max(0.0, self.clock.real_seconds_until(due))),
            id="plan",
            replace_existing=True,
        )

    def _job(self) -> None:
        try:
            self._run()
        finally:
            if self.scheduler.running:
                self._schedule_next()
