"""Benchmark of the household plan (issue 17): 10,000 households' plans for the next 12 periods.

What it measures
----------------
A seeded city of households, each a :class:`planning.plan_inputs.PlanRequest` (built before the
clock starts: the requests are the planning job's input), planned by:

- **the fast path**, :func:`planning.plan.plan_households`: every household's LP written with
  NumPy and solved by HiGHS ``--block-size`` households at a time (each block one block-diagonal
  LP), rounding, netting and limit prices included; timed over all households, once per block
  size in ``--block-sizes``;
- **the Pyomo path**, :func:`planning.plan.plan_household`: one Pyomo model per household,
  compiled and solved by the same HiGHS call; timed on a sample of ``--pyomo-sample`` households
  and extrapolated to all of them (the model building dominates and grows with the households).

The two paths are cross-checked on the sample: with a block size of 1 the fast path must give the
very same plans, and the fast path's total expected cost over the sample is printed beside the
Pyomo path's (households solved together may choose another plan of the same cost where an
optimum is not unique). The target: all households planned by the fast path in under 60 s.

The households
--------------
Seeded (``--seed``), each independently: demand 0.1 to 1.2 kWh a half hour around an evening
peak; 40% with PV (2 to 6 kWp, generation by a clear-sky-like curve times a random cloudiness);
25% with a home battery (5 to 13.5 kWh, 2.5 to 5 kW, 85 to 95% round trip, 10% minimum, a reserve
on a third of them), its state of charge anywhere in its range; 25% with an EV (3.6, 7.4 or 11 kW,
plugged in from 17:00 to 20:00, leaving 06:30 to 08:30, 5 to 30 kWh a day, some of it still
needed). Floors 3 to 8 p/kWh, ceilings 18 to 30. The periods start at 16:00 on a winter day
(Europe/London); the expected local price follows a day curve between the tariffs (24.5 / 4.1).

Usage
-----
::

    .venv/bin/python bench/plan.py                   # 10,000 households, 12 periods
    .venv/bin/python bench/plan.py --quick           # 1,000 households, a 50-household sample

Stdout carries the conditions, the table and the target check; progress goes to stderr. Exit
status 1 if a cross-check fails or the target is missed at 10,000 households.
"""

# ruff: noqa: E402 (the project's imports must come after the sys.path fix below)

from __future__ import annotations

import argparse
import sys
import time as clock
from collections.abc import Sequence
from datetime import UTC, datetime, time
from decimal import Decimal
from pathlib import Path

import numpy as np
from rich.table import Table

_BENCH = Path(__file__).resolve().parent  # run by path, bench/ heads sys.path: see bench/harness.py
sys.path[:] = [str(_BENCH.parent), *(entry for entry in sys.path if Path(entry or ".").resolve() != _BENCH)]

from bench import harness
from planning.plan import (
    DEFAULT_BLOCK_SIZE,
    HouseholdPlan,
    PlanFailure,
    PlanPeriods,
    PlanRequest,
    PriceOutlook,
    plan_household,
    plan_households,
)
from planning.strategy import ElectricVehicle, HomeBattery, PvArray, Strategy

log = harness.progress_logger()

TARGET_S = 60.0
TARGET_HOUSEHOLDS = 10_000
IMPORT_P_PER_KWH, EXPORT_P_PER_KWH = Decimal("24.5"), Decimal("4.1")
FIRST_PERIOD_UTC = datetime(2026, 1, 15, 16, 0, tzinfo=UTC)


def dec(value: float, places: int) -> Decimal:
    """A float drawn by NumPy as an exact Decimal with ``places`` decimals."""
    return Decimal(f"{value:.{places}f}")


def price_outlook(periods: PlanPeriods) -> PriceOutlook:
    """A winter evening and night: dear from 16:00 to 20:00, middling after, cheap from 23:00."""
    expected = []
    for start in periods.starts_utc:
        hour = start.hour + start.minute / 60
        position = 0.85 if 16 <= hour < 20 else 0.25 if hour >= 23 or hour < 6 else 0.55
        expected.append(
            dec(float(EXPORT_P_PER_KWH + (IMPORT_P_PER_KWH - EXPORT_P_PER_KWH) * Decimal(position)), 2)
        )
    count = periods.count
    return PriceOutlook(tuple(expected), (IMPORT_P_PER_KWH,) * count, (EXPORT_P_PER_KWH,) * count)


def generate_requests(households: int, periods: PlanPeriods, seed: int) -> list[PlanRequest]:
    """The seeded city (module docstring)."""
    rng = np.random.default_rng(seed)
    prices = price_outlook(periods)
    hours = np.array([s.hour + s.minute / 60 for s in periods.starts_utc])
    evening = np.exp(-(((hours - 18.5) / 2.5) ** 2))
    sun = np.clip(np.sin((hours - 8) / 8 * np.pi), 0, None)  # winter: little after 16:00
    requests = []
    for _ in range(households):
        demand = rng.uniform(0.1, 0.4) + evening * rng.uniform(0.2, 0.8) + rng.uniform(0, 0.1, periods.count)
        pv = battery = ev = None
        soc = still = None
        generation = np.zeros(periods.count)
        if rng.random() < 0.4:
            kwp = rng.uniform(2, 6)
            pv = PvArray(kwp=dec(kwp, 2))
            generation = kwp * 0.5 * sun * rng.uniform(0.2, 1.0)
        if rng.random() < 0.25:
            capacity = rng.uniform(5, 13.5)
            power = rng.uniform(2.5, 5)
            reserve = capacity * 0.2 if rng.random() < 1 / 3 else 0.0
            battery = HomeBattery(
                capacity_kwh=dec(capacity, 1),
                charge_kw=dec(power, 1),
                discharge_kw=dec(power, 1),
                round_trip_efficiency_percent=dec(rng.uniform(85, 95), 1),
                reserve_kwh=dec(reserve, 1),
            )
            soc = dec(rng.uniform(0.1, 1.0) * float(battery.capacity_kwh), 3)
        if rng.random() < 0.25:
            kw = Decimal(str(rng.choice([3.6, 7.4, 11.0])))
            needed = dec(rng.uniform(5, 30), 1)
            ev = ElectricVehicle(
                charge_kw=kw,
                plugged_in_from=time(int(rng.integers(17, 21)), 0),
                departure=time(int(rng.integers(6, 9)), 30),
                energy_needed_kwh=needed,
            )
            still = dec(float(needed) * rng.uniform(0.3, 1.0), 3)
        floor = dec(rng.uniform(3, 8), 2)
        ceiling = dec(rng.uniform(18, 30), 2)
        strategy = Strategy(
            sell_floor_p_per_kwh=floor, buy_ceiling_p_per_kwh=ceiling, pv=pv, battery=battery, ev=ev
        )
        requests.append(
            PlanRequest(
                periods=periods,
                prices=prices,
                strategy=strategy,
                demand_kwh=tuple(dec(v, 3) for v in demand),
                generation_kwh=tuple(dec(v, 3) for v in generation),
                battery_soc_kwh=soc,
                ev_energy_needed_kwh=still,
            )
        )
    return requests


def total_cost(plans: Sequence[HouseholdPlan | PlanFailure]) -> Decimal:
    return sum((plan.expected_cost_p for plan in plans if isinstance(plan, HouseholdPlan)), Decimal(0))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--households", type=int, default=TARGET_HOUSEHOLDS)
    parser.add_argument("--periods", type=int, default=12)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument(
        "--block-sizes",
        default=f"{DEFAULT_BLOCK_SIZE},1",
        help="fast-path block sizes to time, comma-separated; the first is the one the target is judged on",
    )
    parser.add_argument("--pyomo-sample", type=int, default=300, help="households timed on the Pyomo path")
    parser.add_argument("--quick", action="store_true", help="1,000 households, a 50-household sample")
    args = parser.parse_args(argv)
    if args.quick:
        args.households, args.pyomo_sample = 1_000, 50
    args.block_sizes = [int(size) for size in args.block_sizes.split(",")]
    args.pyomo_sample = min(args.pyomo_sample, args.households)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; the exit status is 1 if a cross-check fails or the target is missed."""
    args = parse_args(argv)
    console = harness.figures_console()
    console.print(harness.machine_notes(packages=("highspy", "Pyomo", "numpy")), soft_wrap=True)
    checks = harness.TargetChecks()
    periods = PlanPeriods.half_hours(FIRST_PERIOD_UTC, args.periods)
    started = clock.perf_counter()
    requests = generate_requests(args.households, periods, args.seed)
    log.info(f"{len(requests):,} households generated in {clock.perf_counter() - started:.1f} s")

    table = Table(title=f"Plans for {args.households:,} households x {args.periods} periods")
    for column in ("path", "households timed", "seconds", "ms per household", "for all households, s"):
        table.add_column(column, justify="right" if column != "path" else "left")
    fast_s: dict[int, float] = {}
    fast_plans: dict[int, list[HouseholdPlan | PlanFailure]] = {}
    for size in args.block_sizes:
        log.info(f"fast path, {size} households per HiGHS call")
        started = clock.perf_counter()
        fast_plans[size] = plan_households(requests, block_size=size)
        fast_s[size] = clock.perf_counter() - started
        failures = sum(isinstance(plan, PlanFailure) for plan in fast_plans[size])
        if failures:
            checks.problem(f"fast path, block {size}: {failures} households failed")
        log.info(f"  {fast_s[size]:.2f} s")
        per = fast_s[size] / len(requests)
        table.add_row(
            f"NumPy + HiGHS, {size} per call",
            f"{len(requests):,}",
            f"{fast_s[size]:.2f}",
            f"{per * 1e3:.3f}",
            f"{fast_s[size]:.1f}",
        )

    sample = requests[: args.pyomo_sample]
    log.info(f"Pyomo path on {len(sample)} households")
    started = clock.perf_counter()
    pyomo_plans = [plan_household(request) for request in sample]
    pyomo_s = clock.perf_counter() - started
    per = pyomo_s / len(sample)
    table.add_row(
        "Pyomo model per household",
        f"{len(sample):,}",
        f"{pyomo_s:.2f}",
        f"{per * 1e3:.3f}",
        f"{per * len(requests):.1f} (extrapolated)",
    )
    console.print(table)

    identical = "not run"
    if 1 in fast_plans:
        identical = "yes" if fast_plans[1][: len(sample)] == pyomo_plans else "NO"
        if identical == "NO":
            checks.problem("cross-check: the fast path with 1 household per call differs from the Pyomo path")
    first = args.block_sizes[0]
    sample_fast, sample_pyomo = total_cost(fast_plans[first][: len(sample)]), total_cost(pyomo_plans)
    checks.note(
        f"cross-check on the Pyomo sample: expected cost {sample_pyomo} p (Pyomo), {sample_fast} p"
        f" (fast, block {first}); plans identical to the fast path's with 1 per call: {identical}"
    )
    at_scale = args.households >= TARGET_HOUSEHOLDS and args.periods >= 12
    figures = (
        f"{fast_s[first]:.1f} s for {args.households:,} households x {args.periods} periods, block {first}"
    )
    if at_scale:
        checks.target(
            f"plans for {TARGET_HOUSEHOLDS:,} households < {TARGET_S:.0f} s",
            fast_s[first] < TARGET_S,
            figures,
        )
    else:
        checks.target(f"plans < {TARGET_S:.0f} s", fast_s[first] < TARGET_S, figures, binding=False)
    checks.print(console)
    return 0 if checks.passed else 1


if __name__ == "__main__":
    sys.exit(main())
