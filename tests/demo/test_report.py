"""The report's computed figures and its page: local time and the clock change, why a clearing
point sits where it does, which feeder limit binds, the bills against their baselines.

Hand-solved cases for the pure figures; then two short runs on the whole platform (the
feeder-congestion scenario, and the autumn clock change with a few households) whose report pages
must say what the figures say. The charts' pixels are not tested; what they are drawn from is.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from cli.scenarios import SCENARIOS
from demo.report import (
    Crossing,
    PeriodFigures,
    Summary,
    busiest,
    busiest_explanation,
    clock_changes,
    curve_crossing,
    explain_clearing,
    feeder_congestion,
    local_labels,
    local_spans,
    summarise,
    write_report,
)
from demo.scenario_run import RunOptions, RunResult, run_scenario
from market.intervals import SettlementPeriod, periods_of_day
from optimiser import Network, Node

D = Decimal


# --- the Europe/London clock ---------------------------------------------------------------------


def test_the_autumn_clock_change_has_50_periods_and_its_repeated_hour_is_marked():
    periods = periods_of_day(date(2026, 10, 25))
    labels = local_labels(periods)

    assert len(labels) == 50
    assert labels[:7] == ["00:00", "00:30", "01:00 BST", "01:30 BST", "01:00 GMT", "01:30 GMT", "02:00"]
    assert labels[-1] == "23:30"
    [change] = clock_changes(periods)
    assert (change.direction, change.index, change.repeated) == ("back", 4, (4, 5))
    assert change.text == "01:00\u201302:00 again, in GMT (clocks went back at 02:00 BST)"


def test_the_spring_clock_change_has_46_periods_and_its_skipped_hour_is_marked():
    periods = periods_of_day(date(2026, 3, 29))
    labels = local_labels(periods)

    assert len(labels) == 46
    assert labels[:4] == ["00:00", "00:30", "02:00", "02:30"]
    [change] = clock_changes(periods)
    assert (change.direction, change.index, change.repeated) == ("forward", 2, ())
    assert change.text == "01:00\u201302:00 skipped (clocks went forward at 01:00 GMT)"


def test_a_summer_day_is_labelled_in_bst_not_utc():
    periods = periods_of_day(date(2026, 6, 20))

    assert periods[0].start_utc.hour == 23  # the day starts at 23:00 UTC the evening before
    assert local_labels(periods)[0] == "00:00"
    assert clock_changes(periods) == []
    spans = local_spans([periods[2], periods[3], periods[4], periods[7]])
    assert spans == "01:00\u201302:30, 03:30\u201304:00"


def test_the_time_axis_ticks_the_local_clock_and_both_passes_of_the_repeated_hour():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from demo.report import _time_axis

    fig, ax = plt.subplots()
    try:
        _time_axis(ax, periods_of_day(date(2026, 10, 25)))
        ticks = [label.get_text() for label in ax.get_xticklabels()]
        [shaded] = ax.patches
        assert ax.get_xlim() == (0, 50)
    finally:
        plt.close(fig)
    assert ticks[:4] == ["00:00", "01:00 BST", "01:00 GMT", "02:00"]
    assert ticks[-1] == "22:00"
    assert shaded.get_label() == "01:00\u201302:00 again, in GMT (clocks went back at 02:00 BST)"
    assert ax.get_xlabel() == "interval start, Europe/London (50 periods)"


# --- where the curves cross ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("buys", "sells", "expected"),
    [
        # 2 kWh at 20 and 2 of 3 at 15 meet 4 at 5 and 1 of 2 at 12; the part-filled offer at 12
        # is the margin: nothing but 12 clears 5 kWh.
        (
            [(20, 2), (15, 3), (10, 5)],
            [(5, 4), (12, 2), (18, 4)],
            Crossing(D(5), D(12), D(12)),
        ),
        # One bid and one offer of the same size: any price between them clears it.
        ([(20, 2)], [(5, 2)], Crossing(D(2), D(5), D(20))),
        # Both filled with more on each side beyond: between the next bid (9) and next offer (11).
        ([(20, 2), (9, 1)], [(5, 2), (11, 1)], Crossing(D(2), D(9), D(11))),
        # No bid reaches an offer.
        ([(5, 1)], [(10, 1)], None),
        ([], [(10, 1)], None),
    ],
)
def test_curve_crossing_hand_solved(buys, sells, expected):
    as_steps = [[(D(p), D(q)) for p, q in side] for side in (buys, sells)]

    assert curve_crossing(*as_steps) == expected


# --- why the clearing point is where it is --------------------------------------------------------

NETWORK = Network(
    root="GSP",
    nodes=(
        Node("PRI-1", "GSP", D(5000), D(4000), D("0.4")),
        Node("FDR-1", "PRI-1", D(400), D(300), D("0.2")),
        Node("FDR-3", "PRI-1", D(200), D(10), D("0.2")),
    ),
)
JUNE = periods_of_day(date(2026, 6, 24))


def figures(
    period: SettlementPeriod,
    prices: dict[str, str],
    net_import_wh: dict[str, int],
    *,
    sold: str = "0",
    grid_import: str = "0",
    grid_export: str = "0",
) -> PeriodFigures:
    return PeriodFigures(
        period=period,
        cleared_runs=1,
        prices={node: D(price) for node, price in prices.items()},
        bought_kwh=D(0),
        bought_p=D(0),
        sold_kwh=D(sold),
        grid_import_kwh=D(grid_import),
        grid_export_kwh=D(grid_export),
        imbalance_import_kwh=D(0),
        imbalance_export_kwh=D(0),
        settled=True,
        complete=True,
        net_import_wh=net_import_wh,
    )


def congested(period: SettlementPeriod, fdr3_price: str) -> PeriodFigures:
    """FDR-3 exports its 10 kWh limit; the primary sells 25 kWh to the backstop at 4.10 p/kWh,
    so PRI-1 is at 4.10 - 0.40 and FDR-1 at 3.70 - 0.20; FDR-3 falls below 3.50."""
    return figures(
        period,
        {"GSP": "4.10", "PRI-1": "3.70", "FDR-1": "3.50", "FDR-3": fdr3_price},
        {"PRI-1": -25_000, "FDR-1": -15_000, "FDR-3": -10_000},
        sold="60",
        grid_export="25",
    )


def test_a_surplus_is_explained_by_the_backstop_and_its_fees():
    period = congested(JUNE[24], "1.00")
    buys = [(D("20.00"), D(10))]
    sells = [(D("1.00"), D(30)), (D("3.00"), D(30))]

    explanation = explain_clearing(
        period, buys, sells, NETWORK, node_id="FDR-1", import_tariff=D("24.5"), export_tariff=D("4.1")
    )

    # The offer at 1.00 is part-filled: it is the margin, and sets the price the curves cross at.
    assert explanation.crossing == Crossing(D(10), D("1.00"), D("1.00"))
    assert explanation.local_kwh == D(35)
    assert explanation.price_p_per_kwh == D("3.50")
    caption = explanation.caption()
    assert "curves would cross at 10.0 kWh, 1.00 p/kWh." in caption
    assert "The market cleared 35.0 kWh between households, at 3.50 p/kWh at FDR-1." in caption
    assert "25.0 kWh offered at or below the local price found no local buyer" in caption
    assert "export tariff (4.1 p/kWh)" in caption
    assert "4.1 less the 0.6 p/kWh of network fees on the way up" in caption
    assert (
        "FDR-3's export limit (10.0 kWh per interval) binds: its price (1.00 p/kWh) separates from "
        "PRI-1's (3.70 p/kWh)" in caption
    )


def test_a_shortfall_is_explained_by_the_import_tariff_plus_fees():
    period = figures(
        JUNE[38],
        {"GSP": "24.50", "PRI-1": "24.90", "FDR-1": "25.10", "FDR-3": "25.10"},
        {"PRI-1": 8_000, "FDR-1": 5_000, "FDR-3": 3_000},
        sold="2",
        grid_import="8",
    )

    explanation = explain_clearing(
        period,
        [(D(30), D(10))],
        [(D(5), D(2))],
        NETWORK,
        node_id="FDR-1",
        import_tariff=D("24.5"),
        export_tariff=D("4.1"),
    )

    reasons = " ".join(explanation.reasons)
    assert "8.0 kWh was bought from the backstop at its import tariff (24.5 p/kWh)" in reasons
    assert "24.5 plus the 0.6 p/kWh of network fees on the way down" in reasons
    assert "binds" not in reasons


def test_a_crossing_with_nothing_in_the_way_says_so():
    single = Network(root="FDR-1")
    period = figures(JUNE[20], {"FDR-1": "12.00"}, {}, sold="2")

    explanation = explain_clearing(
        period,
        [(D(20), D(2))],
        [(D(5), D(2))],
        single,
        node_id="FDR-1",
        import_tariff=D("24.5"),
        export_tariff=D("4.1"),
    )

    assert explanation.reasons == ("It cleared where the curves cross: nothing came between them.",)

    short = explain_clearing(
        period,
        [(D(20), D(3))],
        [(D(5), D(3))],
        single,
        node_id="FDR-1",
        import_tariff=D("24.5"),
        export_tariff=D("4.1"),
    )
    assert short.reasons == (
        "Nothing else moves it: the price is the midpoint of the range that clears the crossing.",
    )


# --- feeder congestion ---------------------------------------------------------------------------


def test_feeder_congestion_names_the_feeder_its_periods_and_the_separation():
    free = figures(
        JUNE[20],
        {"GSP": "4.10", "PRI-1": "3.70", "FDR-1": "3.50", "FDR-3": "3.50"},
        {"PRI-1": -9_000, "FDR-1": -4_000, "FDR-3": -5_000},
    )
    day = [free, congested(JUNE[24], "1.00"), congested(JUNE[25], "0.50"), congested(JUNE[27], "2.00")]

    [limit] = feeder_congestion(day, NETWORK)

    assert (limit.node_id, limit.parent_id, limit.direction) == ("FDR-3", "PRI-1", "export")
    assert limit.capacity_kwh == D(10)
    assert [p.period for p in limit.periods] == [25, 26, 28]
    assert limit.separations_p_per_kwh == [D("2.70"), D("3.20"), D("1.70")]
    assert limit.max_separation_p_per_kwh == D("3.20")
    assert limit.sentence() == (
        "FDR-3's export limit (10.0 kWh per interval) binds in 3 periods, 12:00\u201313:00, "
        "13:30\u201314:00 (Europe/London): its price there is 0.50\u20132.00 p/kWh against 3.70 p/kWh "
        "at PRI-1, a separation of up to 3.20 p/kWh."
    )


def test_no_limit_binds_below_capacity():
    free = figures(JUNE[20], {"GSP": "4.10", "PRI-1": "3.70", "FDR-3": "3.50"}, {"FDR-3": -9_999})

    assert feeder_congestion([free], NETWORK) == []


# --- the report of real runs ---------------------------------------------------------------------


def run(tmp_path: Path, name: str, households: int | None) -> tuple[RunResult, Summary, str]:
    options = RunOptions(day_seconds=40.0, households=households, database=tmp_path / f"{name}.db")
    result = run_scenario(SCENARIOS / f"{name}.toml", options, var_dir=tmp_path)
    summary = summarise(result)
    page = write_report(result, summary, tmp_path / "report")
    for chart in ("prices.png", "volumes.png", "curves.png", "bills.png"):
        assert (tmp_path / "report" / chart).stat().st_size > 5_000
    return result, summary, page.read_text()


@pytest.fixture(scope="module")
def congestion_run(tmp_path_factory) -> tuple[RunResult, Summary, str]:
    return run(tmp_path_factory.mktemp("congestion"), "feeder-congestion", None)


def test_the_congestion_report_names_fdr3_its_periods_and_its_price_separation(congestion_run):
    _, summary, page = congestion_run

    [limit] = summary.congestion
    assert (limit.node_id, limit.direction, limit.parent_id) == ("FDR-3", "export", "PRI-1")
    assert all(7 <= p.start_local.hour < 19 for p in limit.periods), "the limit binds in the PV day"
    assert all(separation > 0 for separation in limit.separations_p_per_kwh), "FDR-3 is cheaper"
    for figures_ in summary.periods:
        if figures_.period in limit.periods:
            assert -figures_.net_import_wh["FDR-3"] == 10_000
    assert "<h2>Feeder congestion</h2>" in page
    assert limit.sentence() in page.replace("&#x27;", "'")
    row = dict(summary.lines())["FDR-3 export limit"]
    assert row.startswith(f"binds in {len(limit.periods)} of 48 periods")
    assert row.endswith(f"price separation up to {limit.max_separation_p_per_kwh} p/kWh from PRI-1")


def test_the_supply_and_demand_caption_explains_the_clearing_point(congestion_run):
    result, summary, page = congestion_run

    explanation = busiest_explanation(result, summary)

    assert explanation is not None
    assert explanation.period == busiest(summary).period
    assert explanation.caption() in page.replace("&#x27;", "'")
    assert "The market cleared" in explanation.caption()


def test_the_bills_are_each_households_against_its_baseline(congestion_run):
    result, summary, page = congestion_run

    assert len(summary.bills) == len(result.household_ids)
    for bill in summary.bills.values():  # the days settled on metered energy (all, unless starved)
        assert bill.saving_cp == (bill.baseline_cp - bill.total_cp if bill.final else None)
    assert "bill against its no-market baseline" in page
    assert "Europe/London" in page


def test_the_clock_change_report_has_50_periods_and_marks_the_repeated_hour(tmp_path):
    _, summary, page = run(tmp_path, "clock-change", 6)

    assert len(summary.periods) == 50
    assert local_labels([p.period for p in summary.periods])[2:6] == [
        "01:00 BST",
        "01:30 BST",
        "01:00 GMT",
        "01:30 GMT",
    ]
    assert "<h2>Clock change</h2>" in page
    assert "01:00\u201302:00 again, in GMT (clocks went back at 02:00 BST): periods 5, 6" in page
    assert "No network limit binds on this day" in page
