"""Benchmark of the household forecasts (:mod:`planning.forecast`): their error on simulated homes
and the time to forecast 10,000 households for the next 12 periods.

What it measures
----------------
A scenario (``birmingham-street`` by default: 40 homes, 14 with PV) is simulated for ``--days``
days (CREST demand, pvlib PV under the scenario's seeded clouds, batteries, EVs, heat pumps).
Each home's meter is what the simulation's net power integrates to per period (import and export,
whole Wh). Over the last ``--eval-days`` days, every ``--every-hours`` hours, each home is
forecast for the next 12 periods from its history before that instant, cut to the windows the
database read returns (:func:`market.forecasts.forecast_windows`), with its declared PV (the
scenario's kWp, tilt, azimuth and location). The forecast is compared with what happened:

- demand against the simulated consumption (everything but the PV: appliances, heat pump, EV,
  battery charging less discharging), every home;
- generation against the simulated PV, homes with PV;
- net import (demand - generation) against the meter's import - export
  (:func:`planning.forecast.net_forecast_error`), every home.

Printed: MAE (kWh per period) and nMAE (MAE over the mean absolute actual) per period ahead for
the platform's settings; the horizon's mean error for a few other windows and weights beside it
(the reason for the defaults); and the time of :func:`planning.forecast.forecast_households` for
10,000 households x 12 periods (the simulated homes' histories repeated), best and median of
``--repeats``. The target (from issue 17) is the whole planning job for 10,000 households under
60 s; the forecast's own share is checked against 10 s.

Usage
-----
::

    .venv/bin/python bench/forecast.py                      # 31 days of birmingham-street, about 2 min
    .venv/bin/python bench/forecast.py --days 10 --eval-days 2 --quick-variants
"""

# ruff: noqa: E402 (the project's imports must come after the sys.path fix below)

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import numpy as np
from rich.table import Table

_BENCH = Path(__file__).resolve().parent  # run by path, bench/ heads sys.path: see bench/harness.py
sys.path[:] = [str(_BENCH.parent), *(entry for entry in sys.path if Path(entry or ".").resolve() != _BENCH)]

from bench import harness
from cli.scenarios import SCENARIOS
from market.forecasts import forecast_windows
from planning.forecast import (
    DEFAULT_SETTINGS,
    ForecastSettings,
    HouseholdHistory,
    MeterHistory,
    forecast_error,
    forecast_households,
    net_forecast_error,
)
from planning.strategy import PvArray
from simulation.neighbourhood import Simulation, simulate
from simulation.scenario import load_scenario

HORIZON = 12
TIMING_HOUSEHOLDS = 10_000
FORECAST_TARGET_S = 10.0
log = harness.progress_logger()

VARIANTS: dict[str, ForecastSettings] = {
    "platform (defaults)": DEFAULT_SETTINGS,
    "recent days only (weekday weight 0)": replace(DEFAULT_SETTINGS, same_weekday_weight=0.0),
    "same weekday only (weight 1)": replace(DEFAULT_SETTINGS, same_weekday_weight=1.0),
    "recent 3 days": replace(DEFAULT_SETTINGS, recent_days=3),
    "slot smoothing 1/4 each side": replace(DEFAULT_SETTINGS, neighbour_slot_weight=0.25),
    "no default blend (prior 0 days)": replace(DEFAULT_SETTINGS, prior_days=0.0),
    "cloudiness half-life 6 h": replace(DEFAULT_SETTINGS, cloudiness_half_life_hours=6.0),
    "cloudiness half-life 72 h": replace(DEFAULT_SETTINGS, cloudiness_half_life_hours=72.0),
    "persistence (same slot yesterday)": ForecastSettings(
        recent_days=1, same_weekday_weeks=0, neighbour_slot_weight=0.0, prior_days=0.0
    ),
}


def metered(simulation: Simulation) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per home and period: the meter's import and export (whole Wh), true demand and PV (Wh)."""
    count, steps = simulation.net_power_w.shape
    per_period = steps // len(simulation.periods)
    to_wh = simulation.step_s / 3600.0

    def by_period(power_w: np.ndarray) -> np.ndarray:
        return power_w.reshape(count, len(simulation.periods), per_period).sum(axis=2) * to_wh

    net = simulation.net_power_w
    import_wh = np.rint(by_period(np.clip(net, 0, None))).astype(np.int64)
    export_wh = np.rint(by_period(np.clip(-net, 0, None))).astype(np.int64)
    pv_wh = by_period(simulation.components_w["pv"])
    demand_wh = by_period(net) + pv_wh
    return import_wh, export_wh, demand_wh, pv_wh


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scenario", default="birmingham-street", help="a shipped scenario's name (birmingham-street)"
    )
    parser.add_argument(
        "--days", type=int, default=31, help="days simulated (31: four weeks of history, 3 to test)"
    )
    parser.add_argument("--eval-days", type=int, default=3, help="the last days forecast and scored (3)")
    parser.add_argument("--every-hours", type=int, default=2, help="hours between forecast times (2)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timing runs of the 10,000-household forecast (3)"
    )
    parser.add_argument("--quick-variants", action="store_true", help="only the platform's settings")
    args = parser.parse_args(argv)
    if args.eval_days >= args.days:
        parser.error("--eval-days must be fewer than --days")

    console = harness.figures_console()
    console.print(harness.machine_notes(packages=("numpy", "pvlib")), soft_wrap=True)
    scenario = load_scenario(SCENARIOS / f"{args.scenario}.toml")
    log.info(f"{args.scenario}: simulating {args.days} days")
    began = time.perf_counter()
    simulation = simulate(scenario, days=args.days)
    log.info(f"simulated in {time.perf_counter() - began:.1f} s")
    import_wh, export_wh, demand_wh, pv_wh = metered(simulation)
    starts = [p.start_utc for p in simulation.periods]
    start_s = np.array([int(s.timestamp()) for s in starts], dtype=np.int64)
    solar = scenario.solar
    arrays = [
        PvArray(
            kwp=Decimal(str(home.pv_kwp)),
            tilt_deg=Decimal(str(solar.tilt_deg)),
            azimuth_deg=Decimal(str(solar.azimuth_deg)),
            latitude=Decimal(str(scenario.location.latitude)),
            longitude=Decimal(str(scenario.location.longitude)),
        )
        if home.pv_kwp > 0
        else None
        for home in simulation.households
    ]
    has_pv = np.array([pv is not None for pv in arrays])
    ids = [home.id for home in simulation.households]
    first_origin = len(starts) - args.eval_days * 48
    origins = list(range(first_origin, len(starts) - HORIZON + 1, 2 * args.every_hours))

    def histories_at(origin: int) -> list[HouseholdHistory]:
        windows = forecast_windows(starts[origin : origin + HORIZON])
        keep = np.zeros(origin, dtype=np.bool_)
        for begin, end in windows:
            keep |= (start_s[:origin] >= begin.timestamp()) & (start_s[:origin] < end.timestamp())
        index = np.flatnonzero(keep)
        return [
            HouseholdHistory(
                ids[h],
                MeterHistory(
                    start_s[index], import_wh[h, index], export_wh[h, index], np.zeros(len(index), bool)
                ),
                arrays[h],
            )
            for h in range(len(ids))
        ]

    inputs = [(origin, histories_at(origin)) for origin in origins]
    measured = {
        ids[h]: MeterHistory(start_s, import_wh[h], export_wh[h], np.zeros(len(start_s), bool))
        for h in range(len(ids))
    }
    variants = {"platform (defaults)": DEFAULT_SETTINGS} if args.quick_variants else VARIANTS
    results = {}
    for name, settings in variants.items():
        log.info(f"forecasting {len(origins)} times x {len(ids)} homes: {name}")
        demand_rows, demand_truth, pv_rows, pv_truth, forecasts = [], [], [], [], []
        for origin, histories in inputs:
            made = forecast_households(histories, starts[origin : origin + HORIZON], settings=settings)
            forecasts += made
            span = slice(origin, origin + HORIZON)
            demand_rows += [f.demand_wh for f in made]
            demand_truth += list(demand_wh[:, span])
            pv_rows += [f.generation_wh for f, pv in zip(made, has_pv) if pv]
            pv_truth += list(pv_wh[has_pv, span])
        results[name] = (
            forecast_error(np.array(demand_rows), np.array(demand_truth)),
            forecast_error(np.array(pv_rows), np.array(pv_truth)) if pv_rows else None,
            net_forecast_error(forecasts, measured),
        )

    demand, generation, net = results["platform (defaults)"]
    table = Table(
        title=f"Forecast error per period ahead: {args.scenario}, {len(ids)} homes "
        f"({int(has_pv.sum())} with PV), {len(origins)} forecast times "
        f"over the last {args.eval_days} of {args.days} days, platform settings"
    )
    for column in (
        "ahead",
        "demand MAE kWh",
        "demand nMAE",
        "PV MAE kWh",
        "PV nMAE",
        "net MAE kWh",
        "net nMAE",
        "forecasts",
    ):
        table.add_column(column, justify="right")
    for j in range(HORIZON):
        pv_cells = (
            ("-", "-")
            if generation is None
            else (f"{generation[j].mae_kwh:.3f}", f"{generation[j].nmae:.2f}")
        )
        table.add_row(
            f"{j + 1} ({(j + 1) * 30} min)",
            f"{demand[j].mae_kwh:.3f}",
            f"{demand[j].nmae:.2f}",
            *pv_cells,
            f"{net[j].mae_kwh:.3f}",
            f"{net[j].nmae:.2f}",
            f"{demand[j].count}",
        )
    console.print(table)

    def horizon_mean(errors: list) -> tuple[float, float]:  # type: ignore[type-arg]
        mae = statistics.fmean(e.mae_kwh for e in errors)
        actual = statistics.fmean(e.mean_actual_kwh for e in errors)
        return mae, mae / actual

    if len(variants) > 1:
        compare = Table(title="Mean over the 12 periods ahead, by method (MAE kWh / nMAE)")
        for column in ("method", "demand", "PV", "net"):
            compare.add_column(column, justify="right" if column != "method" else "left")
        for name, (d, g, n) in results.items():
            cells = [horizon_mean(d), horizon_mean(g) if g else (np.nan, np.nan), horizon_mean(n)]
            compare.add_row(name, *(f"{mae:.3f} / {nmae:.3f}" for mae, nmae in cells))
        console.print(compare)

    # Timing: 10,000 households (the simulated ones repeated) for the next 12 periods.
    origin, histories = inputs[-1]
    many = [
        HouseholdHistory(
            f"{histories[i % len(histories)].household_id}-{i}",
            histories[i % len(histories)].history,
            histories[i % len(histories)].pv,
        )
        for i in range(TIMING_HOUSEHOLDS)
    ]
    periods_read = sum(len(h.history) for h in many)
    seconds = []
    for repeat in range(args.repeats):
        log.info(f"timing {TIMING_HOUSEHOLDS} households x {HORIZON} periods, run {repeat + 1}")
        began = time.perf_counter()
        forecast_households(many, starts[origin : origin + HORIZON])
        seconds.append(time.perf_counter() - began)
    console.print(
        f"forecast {TIMING_HOUSEHOLDS:,} households x {HORIZON} periods "
        f"({periods_read:,} metered periods in): "
        f"best {min(seconds):.2f} s, median {statistics.median(seconds):.2f} s of {args.repeats}",
        soft_wrap=True,
    )
    checks = harness.TargetChecks()
    checks.target(
        f"forecast of {TIMING_HOUSEHOLDS:,} households x {HORIZON} periods < {FORECAST_TARGET_S:g} s",
        statistics.median(seconds) < FORECAST_TARGET_S,
        f"median {statistics.median(seconds):.2f} s",
    )
    checks.print(console)
    return 0 if checks.passed else 1


if __name__ == "__main__":
    sys.exit(main())
