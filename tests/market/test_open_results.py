"""Open market results (issue 18): each figure worked by hand, the privacy threshold, and no
suppressed cell recoverable from anything one export publishes; on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlmodel import Session

from market.database import transaction
from market.errors import MarketError
from market.intervals import periods_of_day, settlement_period
from market.open_results import (
    CELL_FIELDS,
    ENERGY_FIGURES,
    MIN_HOUSEHOLDS_FLOOR,
    OPEN_GOVERNMENT_LICENCE,
    PUBLISHED,
    SUPPRESSED,
    TOTAL_FIELDS,
    CellFigures,
    HouseholdPeriod,
    OpenResults,
    cell_figures,
    cells_csv,
    check_day_is_over,
    datapackage_descriptor,
    open_results,
    published_totals,
    results_json,
    suppress,
    totals_csv,
)
from tests.factories import seed_market, seed_open_results_day

DAY = date(2026, 11, 21)
TRADED = settlement_period(DAY, 27)
NEXT = settlement_period(DAY, 28)
REGISTERED = datetime(2026, 11, 1, tzinfo=UTC)
AFTER = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def test_a_cells_figures_by_hand():
    """A bought 1 kWh and imported 2: 1 from the backstop. B sold 2 and exported 3: 1 to the
    backstop. C imported 0.5, all from the backstop. D read zero and did not trade: not a
    contributor. E bought 0.7 with no meter data yet: counted as traded, not in the backstop.
    The feeder imported 2.5 and exported 3 at once: 2.5 of its export was used on it."""
    households = [
        HouseholdPeriod(import_wh=2000, export_wh=0, bought_wh=1000, sold_wh=0),
        HouseholdPeriod(import_wh=0, export_wh=3000, bought_wh=0, sold_wh=2000),
        HouseholdPeriod(import_wh=500, export_wh=0, bought_wh=0, sold_wh=0),
        HouseholdPeriod(import_wh=0, export_wh=0, bought_wh=0, sold_wh=0),
        HouseholdPeriod(import_wh=None, export_wh=None, bought_wh=700, sold_wh=0),
    ]
    figures = cell_figures(
        "F1", TRADED, households, price_p_per_kwh=Decimal("12.5"), meter_data_complete=False
    )
    assert figures == CellFigures(
        feeder="F1",
        period=TRADED,
        households=4,
        bought_wh=1700,
        sold_wh=2000,
        backstop_import_wh=1500,
        backstop_export_wh=1000,
        local_self_consumption_wh=2500,
        price_p_per_kwh=Decimal("12.5"),
        meter_data_complete=False,
        # A and E bought, B sold; A and C took from the backstop, B gave to it; the feeder's
        # imports (A, C) are the lesser side.
        contributors={
            "bought_wh": 2,
            "sold_wh": 1,
            "backstop_import_wh": 2,
            "backstop_export_wh": 1,
            "local_self_consumption_wh": 2,
        },
    )


def test_a_figure_few_households_make_up_is_withheld_in_a_published_cell():
    """Five homes metered, one of them bought 1.2 kWh: the cell is published, but its bought
    energy would be that one home's purchase. It is withheld, named, and left out of the totals;
    the sold energy (nobody sold) is its zero."""
    homes = [HouseholdPeriod(import_wh=1000 + i, export_wh=0, bought_wh=0, sold_wh=0) for i in range(4)]
    homes.append(HouseholdPeriod(import_wh=1500, export_wh=0, bought_wh=1200, sold_wh=0))
    figures = cell_figures("F1", TRADED, homes, price_p_per_kwh=Decimal(9), meter_data_complete=True)
    results = _results([figures, _cell("F2", 27, 6, 2000)])
    assert results.cells[0].withheld == ("bought_wh",)
    row = next(csv.DictReader(io.StringIO(cells_csv(results))))
    assert (row["status"], row["households"], row["bought_kwh"], row["sold_kwh"]) == (
        "published",
        "5",
        "",
        "0.000",
    )
    assert row["withheld"] == "bought_kwh"
    assert row["backstop_import_kwh"] == "4.306"  # 4,006 + 1,500 - 1,200 Wh: five homes' imbalances
    day = next(t for t in csv.DictReader(io.StringIO(totals_csv(results))) if t["scope"] == "day")
    assert (day["bought_kwh"], day["figures_withheld"]) == ("2.000", "1")  # F2's alone


def _cell(feeder: str, period: int, households: int, wh: int) -> CellFigures:
    return CellFigures(
        feeder=feeder,
        period=settlement_period(DAY, period),
        households=households,
        bought_wh=wh,
        sold_wh=wh + 1,
        backstop_import_wh=wh + 2,
        backstop_export_wh=wh + 3,
        local_self_consumption_wh=wh + 4,
        price_p_per_kwh=Decimal("10.25"),
        meter_data_complete=True,
    )


@pytest.mark.parametrize(
    ("households", "status"), [(4, SUPPRESSED), (5, PUBLISHED), (6, PUBLISHED), (0, SUPPRESSED)]
)
def test_a_cell_is_published_only_from_the_threshold(households, status):
    [cell] = suppress([_cell("F1", 1, households, 1000)], min_households=5)
    assert cell.status == status
    assert (cell.figures is None) == (status == SUPPRESSED)


@pytest.mark.parametrize("threshold", [-1, 0, 1, 2])
def test_a_threshold_below_the_floor_is_refused(threshold):
    with pytest.raises(MarketError) as refused:
        suppress([_cell("F1", 1, 9, 1000)], min_households=threshold)
    assert refused.value.field == "min_households"
    assert MIN_HOUSEHOLDS_FLOOR == 3


def _results(cells: list[CellFigures], threshold: int = 5) -> OpenResults:
    published = suppress(cells, min_households=threshold)
    return OpenResults(
        settlement_date=DAY,
        interval_minutes=30,
        min_households=threshold,
        generated_at=AFTER,
        licence=OPEN_GOVERNMENT_LICENCE,
        cells=published,
        totals=published_totals(published),
    )


def _everything_published(results: OpenResults) -> str:
    """Every byte one export publishes: both CSV files, the JSON and the descriptor."""
    return "\n".join(
        [
            cells_csv(results),
            totals_csv(results),
            json.dumps(results_json(results), sort_keys=True),
            json.dumps(datapackage_descriptor(results), sort_keys=True),
        ]
    )


def test_one_suppressed_cell_in_a_row_cannot_be_found_by_subtraction():
    """The differencing case: F1 published in periods 1 and 2, suppressed in 3 (4 households).
    Were the feeder's day total over all three, total minus the two published cells would be
    period 3's value; it covers the published cells only, and says it leaves one out."""
    results = _results(
        [_cell("F1", 1, 7, 1000), _cell("F1", 2, 6, 2000), _cell("F1", 3, 4, 9000), _cell("F2", 3, 8, 500)]
    )
    rows = list(csv.DictReader(io.StringIO(totals_csv(results))))
    feeder = next(row for row in rows if row["scope"] == "feeder")
    assert (feeder["cells_published"], feeder["cells_suppressed"]) == ("2", "1")
    assert feeder["bought_kwh"] == "3.000"  # 1 + 2, not 12
    cells = list(csv.DictReader(io.StringIO(cells_csv(results))))
    assert [row["status"] for row in cells] == [PUBLISHED, PUBLISHED, SUPPRESSED, PUBLISHED]
    hidden = cells[2]
    assert {name: hidden[name] for name in ("households", "bought_kwh", "price_p_per_kwh")} == dict.fromkeys(
        ("households", "bought_kwh", "price_p_per_kwh"), ""
    )
    # Across feeders: period 3's total is F2's alone, so minus F2 it leaves nothing of F1's 9 kWh.
    period_three = next(row for row in rows if row["scope"] == "period" and row["period"] == "3")
    assert (period_three["cells_published"], period_three["cells_suppressed"]) == ("1", "1")
    assert period_three["bought_kwh"] == "0.500"
    day = next(row for row in rows if row["scope"] == "day")
    assert day["bought_kwh"] == "3.500"
    assert "9" not in "".join(row["bought_kwh"] for row in rows)
    only_suppressed = _results([_cell("F1", 1, 4, 9000)])  # nothing published: totals empty, not zero
    [feeder_total, _, day_total] = list(csv.DictReader(io.StringIO(totals_csv(only_suppressed))))
    assert (feeder_total["bought_kwh"], day_total["bought_kwh"], day_total["cells_suppressed"]) == (
        "",
        "",
        "1",
    )


@st.composite
def tables(draw: st.DrawFn) -> tuple[list[CellFigures], list[CellFigures]]:
    """A day's cells on up to 4 feeders and 6 periods, and the same cells with every suppressed
    one's figures redrawn (still under the threshold of 5), and in published cells every figure
    that fewer than 5 households make up: two worlds an attacker must tell apart."""
    feeders = draw(st.integers(1, 4))
    periods = draw(st.integers(1, 6))
    wh = st.integers(0, 10**7)
    cells, others = [], []
    for f in range(feeders):
        for p in range(1, periods + 1):
            households = draw(st.integers(0, 9))
            cell = replace(
                _cell(f"F{f}", p, households, 0),
                bought_wh=draw(wh),
                sold_wh=draw(wh),
                backstop_import_wh=draw(wh),
                backstop_export_wh=draw(wh),
                local_self_consumption_wh=draw(wh),
                price_p_per_kwh=Decimal(draw(st.integers(-10_000, 100_000))) / 100,
                meter_data_complete=draw(st.booleans()),
                contributors={
                    name: draw(st.integers(1, households) if households else st.just(0))
                    for name in ENERGY_FIGURES
                },
            )
            cells.append(cell)
            if households >= 5:
                redrawn = {name: draw(wh) for name in ENERGY_FIGURES if cell.contributors[name] < 5}
                others.append(replace(cell, **redrawn))
            else:
                others.append(
                    replace(
                        cell,
                        households=draw(st.integers(0, 4)),
                        bought_wh=draw(wh),
                        sold_wh=draw(wh),
                        backstop_import_wh=draw(wh),
                        backstop_export_wh=draw(wh),
                        local_self_consumption_wh=draw(wh),
                        price_p_per_kwh=None,
                        meter_data_complete=not cell.meter_data_complete,
                    )
                )
    return cells, others


@settings(max_examples=200, deadline=None)
@given(tables())
def test_no_suppressed_cell_can_be_recovered_from_an_export(worlds):
    """Whatever the suppressed cells held, one export publishes the very same bytes: no sum, row,
    column or total of it, across feeders or across periods, can tell what they held."""
    real, other = worlds
    assert _everything_published(_results(real)) == _everything_published(_results(other))


@settings(max_examples=200, deadline=None)
@given(tables())
def test_every_total_is_its_published_cells_sum(worlds):
    """Subtracting the published cells from a total leaves exactly zero: an attacker's residual
    for the suppressed cells of any row, column or the day."""
    real, _ = worlds
    results = _results(real)
    cells = list(csv.DictReader(io.StringIO(cells_csv(results))))
    for total in csv.DictReader(io.StringIO(totals_csv(results))):
        members = [
            row
            for row in cells
            if total["scope"] == "day"
            or (total["scope"] == "feeder" and row["feeder"] == total["feeder"])
            or (total["scope"] == "period" and row["period"] == total["period"])
        ]
        published = [row for row in members if row["status"] == PUBLISHED]
        assert int(total["cells_published"]) == len(published)
        assert int(total["cells_suppressed"]) == len(members) - len(published)
        assert int(total["figures_withheld"]) == sum(len(row["withheld"].split()) for row in published)
        for name in ("bought_kwh", "sold_kwh", "backstop_import_kwh", "backstop_export_kwh"):
            shown = [Decimal(row[name]) for row in published if row[name] != ""]
            if not shown:
                assert total[name] == ""
                continue
            assert all(name not in row["withheld"].split() for row in published if row[name] != "")
            residual = Decimal(total[name]) - sum(shown)
            assert residual == 0
        for row in members:
            if row["status"] == SUPPRESSED:
                assert all(row[field.name] == "" for field in CELL_FIELDS if not field.required)


def test_the_descriptor_describes_every_column_and_no_other():
    results = _results([_cell("F1", 1, 7, 1000), _cell("F2", 1, 2, 5)])
    descriptor = datapackage_descriptor(results)
    texts = {"market-results": cells_csv(results), "market-results-totals": totals_csv(results)}
    assert descriptor["licenses"] == [
        {
            "name": "OGL-UK-3.0",
            "path": "https://www.nationalarchives.gov.uk/doc/open-government-licence/version/3/",
            "title": "Open Government Licence v3.0",
        }
    ]
    assert descriptor["profile"] == "tabular-data-package"
    for resource in descriptor["resources"]:
        header = next(csv.reader(io.StringIO(texts[resource["name"]])))
        described = [field["name"] for field in resource["schema"]["fields"]]
        assert described == header
        assert resource["path"].endswith(f"{DAY.isoformat()}.csv")
        assert (resource["format"], resource["mediatype"], resource["encoding"]) == (
            "csv",
            "text/csv",
            "utf-8",
        )
        for field in resource["schema"]["fields"]:
            assert field["type"] in ("string", "integer", "number", "boolean", "date", "datetime")
            assert field["description"]
            if field["name"].endswith("_kwh"):
                assert field["unit"] == ("p/kWh" if field["name"].endswith("_p_per_kwh") else "kWh")
    assert [f.name for f in TOTAL_FIELDS] == [
        f["name"] for f in descriptor["resources"][1]["schema"]["fields"]
    ]


def test_only_a_day_that_is_over_is_published():
    last_end = periods_of_day(DAY)[-1].end_utc
    assert len(check_day_is_over(DAY, length_minutes=30, now=last_end)) == 48
    for now in (last_end - timedelta(seconds=1), datetime(2026, 11, 21, 12, tzinfo=UTC)):
        with pytest.raises(MarketError) as refused:
            check_day_is_over(DAY, length_minutes=30, now=now)
        assert refused.value.field == "date"
        assert "not over yet" in refused.value.reason
    with pytest.raises(MarketError) as out_of_range:
        check_day_is_over(date(1999, 12, 31), length_minutes=30, now=AFTER)
    assert out_of_range.value.field == "date"


@pytest.fixture
def seeded(engine):
    with transaction(engine) as session:
        seed_market(session, now=REGISTERED)
    seed_open_results_day(engine, TRADED, registered_at=REGISTERED)
    return engine


def _day(engine, threshold: int = 5) -> OpenResults:
    with Session(engine) as session:
        return open_results(
            session,
            settlement_date=DAY,
            length_minutes=30,
            min_households=threshold,
            licence=OPEN_GOVERNMENT_LICENCE,
            now=AFTER,
        )


def test_a_day_from_the_database(seeded):
    """F1 in the traded period: H1, H2, H4, H5, H6 contributed (H7 read zero); bought 2 kWh (H1),
    sold 2 (H2); imbalances H1 +0.5, H2 +0.5 (sold 2, exported 1.5), H4 +0.8, H5 +0.3, H6 -0.4;
    F1 imported 3.6 and exported 1.9 at once. F2 had H3 alone: suppressed."""
    from market.clearing import current_run, node_prices

    results = _day(seeded)
    cells = {(cell.feeder, cell.period.period): cell for cell in results.cells}
    assert sorted({feeder for feeder, _ in cells}) == ["F1", "F2"]
    assert len(cells) == 2 * 48
    with Session(seeded) as session:
        run = current_run(session, TRADED)
        assert run is not None
        price = {p.node_id: p.price_p_per_kwh for p in node_prices(session, run.id)}["F1"]
    traded = cells[("F1", TRADED.period)]
    assert traded.status == PUBLISHED
    assert traded.figures == CellFigures(
        feeder="F1",
        period=TRADED,
        households=5,
        bought_wh=2000,
        sold_wh=2000,
        backstop_import_wh=2100,
        backstop_export_wh=400,
        local_self_consumption_wh=1900,
        price_p_per_kwh=price,
        meter_data_complete=True,
        contributors={
            "bought_wh": 1,
            "sold_wh": 1,
            "backstop_import_wh": 4,
            "backstop_export_wh": 1,
            "local_self_consumption_wh": 2,  # F1's exports (H2, H6), the lesser side
        },
    )
    # Five contributed, but each figure is fewer households' energy: every one is withheld.
    assert traded.withheld == ENERGY_FIGURES
    following = cells[("F1", NEXT.period)]  # H7's meter unread: published, but incomplete
    assert following.figures is not None
    assert (following.figures.households, following.figures.meter_data_complete) == (5, False)
    assert (following.figures.backstop_import_wh, following.figures.backstop_export_wh) == (600, 50)
    assert following.figures.price_p_per_kwh is None  # never cleared
    assert cells[("F2", TRADED.period)].status == SUPPRESSED
    assert all(cell.status == SUPPRESSED for (_, period), cell in cells.items() if period not in (27, 28))
    day = next(total for total in results.totals if total.scope == "day")
    assert (day.cells_published, day.cells_suppressed) == (2, 94)
    # Nobody bought or sold in the next period: its zeros are the only trading figures summed.
    assert day.energy_wh == {
        "bought_wh": 0,
        "sold_wh": 0,
        "backstop_import_wh": None,  # three households' (NEXT) and four's (TRADED): withheld
        "backstop_export_wh": None,
        "local_self_consumption_wh": None,
    }
    assert following.withheld == ("backstop_import_wh", "backstop_export_wh", "local_self_consumption_wh")
    assert day.figures_withheld == len(traded.withheld) + len(following.withheld) == 8
    three = _day(seeded, threshold=3)
    day3 = next(total for total in three.totals if total.scope == "day")
    assert day3.energy_wh is not None
    assert day3.energy_wh["backstop_import_wh"] == 2100 + 600  # both periods' imbalances, published at 3
    assert day3.figures_withheld == 6
    assert [cell.status for cell in _day(seeded, threshold=6).cells].count(PUBLISHED) == 0


def test_a_day_not_over_is_refused_from_the_database(seeded):
    with Session(seeded) as session, pytest.raises(MarketError) as refused:
        open_results(
            session,
            settlement_date=DAY,
            length_minutes=30,
            min_households=5,
            licence=OPEN_GOVERNMENT_LICENCE,
            now=TRADED.end_utc,
        )
    assert refused.value.field == "date"


def test_only_the_meters_a_household_had_then_are_awaited(seeded):
    """A household that joins F1 after the day, with its meter, leaves the day's F1 cells as they
    were: its meter was not there to be read. A household that trades without any meter makes its
    cell incomplete: its imbalance cannot be known (settlement waits for it too)."""
    from market.clearing import clear_interval
    from market.meter_data import DerivedEnergy, store_energy_of_meters
    from market.orders import place_order
    from market.participants import register_household, register_meter
    from market.rules import MarketRules
    from metering.energy import IntervalEnergy
    from tests.factories import mpan

    later = settlement_period(DAY, 30)
    with transaction(seeded) as session:
        register_household(
            session, participant_id="H9", display_name="Nine", mpan=mpan(9), node_id="F1", now=REGISTERED
        )
        register_household(
            session, participant_id="H10", display_name="Ten", mpan=mpan(10), node_id="F1", now=AFTER
        )
        register_meter(
            session,
            meter_id="M10",
            participant_id="H10",
            host="10.0.0.1",
            port=502,
            unit_id=10,
            transport="tcp",
            model="sdm630",
            now=AFTER,
        )
        for home, side, price in (("H9", "buy", "20"), ("H2", "sell", "5")):
            place_order(
                session,
                rules=MarketRules(),
                participant_id=home,
                period=later,
                side=side,
                quantity_kwh=Decimal(1),
                price_p_per_kwh=Decimal(price),
                now=later.start_utc - timedelta(hours=1),
            )
    clear_interval(seeded, period=later, rules=MarketRules(), now=later.start_utc, triggered_by="test")
    with transaction(seeded) as session:  # every meter on F1 read in that period: only H9 is unknown
        store_energy_of_meters(
            session,
            [
                DerivedEnergy(
                    f"M{unit}", (later,), (IntervalEnergy(later.start_utc, later.end_utc, 100, 0, False),), ()
                )
                for unit in (1, 2, 4, 5, 6, 7)
            ],
            now=AFTER,
        )
    with Session(seeded) as session:
        from market.open_results import read_cell_figures

        traded, cleared = read_cell_figures(session, [TRADED, later])[:2]
    assert (traded.period, traded.households, traded.meter_data_complete) == (TRADED, 5, True)
    assert (cleared.period, cleared.households, cleared.bought_wh, cleared.sold_wh) == (later, 7, 1000, 1000)
    assert not cleared.meter_data_complete
    # H2 imported 0.1 having sold 1: 1.1 from the backstop; five more 0.1 each; H9's is not known.
    assert (cleared.backstop_import_wh, cleared.backstop_export_wh) == (1600, 0)


def test_a_day_is_read_in_one_snapshot_on_postgresql(seeded):
    """The five reads share one repeatable-read, read-only transaction: a re-clear committed
    between them cannot mix two clearing runs in one export."""
    if seeded.dialect.name != "postgresql":
        pytest.skip("the snapshot is PostgreSQL's (production's); SQLite has no isolation levels to set")
    with Session(seeded) as session:
        open_results(
            session,
            settlement_date=DAY,
            length_minutes=30,
            min_households=5,
            licence=OPEN_GOVERNMENT_LICENCE,
            now=AFTER,
        )
        shown = session.execute(sa.text("SHOW transaction_isolation")).scalar()
        read_only = session.execute(sa.text("SHOW transaction_read_only")).scalar()
    assert (shown, read_only) == ("repeatable read", "on")
