"""Builders for tests: orders, networks and random books (plain and as hypothesis strategies)."""

from __future__ import annotations

import asyncio
import threading
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest
from hypothesis import strategies as st

from metering.emulator import Gateway, MeterProfile, SimulatedMeter
from metering.emulator.meters import SUNSPEC_SCALE_FACTORS_BY_UNIT
from optimiser import Network, Node, Order, OrderBook, Side, Tariff

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlmodel import Session

    from market.intervals import SettlementPeriod
    from market.meter_data import StoredEnergy

GATE = datetime(2026, 11, 21, 16, 55, tzinfo=UTC)
TARIFF = Tariff(Decimal("24.5"), Decimal("4.1"))


def order(
    order_id: str,
    side: str,
    quantity_kwh: str | int,
    price: str | int,
    *,
    node: str = "GSP",
    participant: str | None = None,
    seconds: int = 0,
) -> Order:
    """One order, with values given as text so they stay exact."""
    return Order(
        order_id=order_id,
        participant_id=participant or f"HH-{order_id}",
        node=node,
        side=Side(side),
        quantity_kwh=Decimal(str(quantity_kwh)),
        price_p_per_kwh=Decimal(str(price)),
        submitted_at=GATE - timedelta(hours=1) + timedelta(seconds=seconds),
    )


def book(*orders: Order) -> OrderBook:
    return OrderBook.from_orders(orders)


def node(
    node_id: str, parent: str, import_kwh: str | int = 1000, export_kwh: str | int = 1000, fee: str | int = 0
) -> Node:
    return Node(node_id, parent, Decimal(str(import_kwh)), Decimal(str(export_kwh)), Decimal(str(fee)))


def tariff(import_p: str | int, export_p: str | int) -> Tariff:
    return Tariff(Decimal(str(import_p)), Decimal(str(export_p)))


# --- hypothesis strategies -------------------------------------------------------------------

_prices = st.integers(min_value=0, max_value=300).map(lambda tenths: Decimal(tenths) / 10)
_quantities = st.integers(min_value=1, max_value=5_000).map(lambda wh: Decimal(wh) / 1000)


@st.composite
def networks(draw: st.DrawFn, *, max_nodes: int = 6, fees: bool = True, congestion: bool = True) -> Network:
    """Random trees under a root 'GSP': capacities from zero to ample, fees in 0.1 p steps."""
    count = draw(st.integers(min_value=0, max_value=max_nodes))
    nodes = []
    ids = ["GSP"]
    capacity = st.sampled_from(["0", "0.5", "1", "2.5", "5", "1000"]) if congestion else st.just("1000000")
    for i in range(count):
        parent = draw(st.sampled_from(ids))
        fee = draw(st.integers(0, 10)) / Decimal(10) if fees else Decimal(0)
        nodes.append(node(f"N{i}", parent, draw(capacity), draw(capacity), fee))
        ids.append(f"N{i}")
    return Network(root="GSP", nodes=tuple(draw(st.permutations(nodes))))


@st.composite
def tariffs(draw: st.DrawFn) -> Tariff:
    export_p = draw(_prices)
    import_p = export_p + draw(_prices)
    return Tariff(import_p, export_p)


@st.composite
def order_books(draw: st.DrawFn, network: Network, *, max_orders: int = 25) -> OrderBook:
    """Random books on the network's nodes, with coarse prices so that ties and steps are common."""
    count = draw(st.integers(min_value=0, max_value=max_orders))
    orders = [
        Order(
            order_id=f"O{i:03d}",
            participant_id=f"HH{draw(st.integers(0, 9))}",
            node=draw(st.sampled_from(network.node_ids)),
            side=draw(st.sampled_from([Side.BUY, Side.SELL])),
            quantity_kwh=draw(_quantities),
            price_p_per_kwh=draw(_prices),
            submitted_at=GATE - timedelta(seconds=draw(st.integers(60, 3600))),
        )
        for i in range(count)
    ]
    return OrderBook.from_orders(orders)


# --- the market ------------------------------------------------------------------------------


def mpan(serial: int) -> str:
    """A valid 13-digit MPAN core (distributor 14, West Midlands) with its check digit."""
    from market.participants import mpan_with_check_digit

    return mpan_with_check_digit(f"14{serial:010d}")


def street_network() -> Network:
    """A primary and two feeders; F2's export is tight."""
    return Network(
        "GSP",
        (
            node("P1", "GSP", 500, 500, "0.4"),
            node("F1", "P1", 100, 100, "0.2"),
            node("F2", "P1", 100, 2, "0.2"),
        ),
    )


def seed_market(session, *, now: datetime, homes: dict[str, str] | None = None, effective_from=None) -> None:
    """An operator, the street network and tariff in force from ``effective_from``, and households
    (id to node; by default H1 and H2 on F1, H3 on F2)."""
    from market.network import publish_network, set_tariff
    from market.participants import register_household, register_operator

    start = effective_from or now - timedelta(days=30)
    register_operator(session, participant_id="OPS", display_name="Brum Energy", now=now)
    publish_network(session, network=street_network(), effective_from_utc=start, now=now)
    set_tariff(
        session,
        import_p_per_kwh=Decimal("24.5"),
        export_p_per_kwh=Decimal("4.1"),
        effective_from_utc=start,
        now=now,
    )
    for i, (home, feeder) in enumerate((homes or {"H1": "F1", "H2": "F1", "H3": "F2"}).items()):
        register_household(
            session,
            participant_id=home,
            display_name=f"Home {home}",
            mpan=mpan(i + 1),
            node_id=feeder,
            now=now,
        )


def seed_crossing_orders(engine, period, *, now: datetime) -> None:  # type: ignore[no-untyped-def]
    """:func:`seed_market`, then 1 kWh bought at 20 p (H1) and 1 kWh sold at 5 p (H3) for
    ``period``: a book that clears with a trade."""
    from market.database import transaction
    from market.orders import place_order
    from market.rules import MarketRules

    with transaction(engine) as session:
        seed_market(session, now=now)
        for home, side, price in (("H1", "buy", "20"), ("H3", "sell", "5")):
            place_order(
                session,
                rules=MarketRules(),
                participant_id=home,
                period=period,
                side=side,
                quantity_kwh=Decimal("1"),
                price_p_per_kwh=Decimal(price),
                now=now,
            )


# --- meters ----------------------------------------------------------------------------------


class GatewayThread:
    """A simulated gateway served from its own event loop in a background thread."""

    def __init__(self, meters: list[SimulatedMeter]) -> None:
        self.gateway = Gateway("127.0.0.1", 0, meters)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> Gateway:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.gateway.start(), self.loop).result(timeout=30)
        return self.gateway

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.gateway.stop(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()


def register_street_meters(session, *, now: datetime) -> None:  # type: ignore[no-untyped-def]
    """Meters M1..M3 for the street's households H1..H3, on one gateway (units 1 to 3)."""
    from market.participants import register_meter

    for i, home in enumerate(("H1", "H2", "H3"), start=1):
        register_meter(
            session,
            meter_id=f"M{i}",
            participant_id=home,
            host="10.0.0.1",
            port=502,
            unit_id=i,
            transport="tcp",
            model="sdm630",
            now=now,
        )


def seed_cleared_interval(engine, period, *, now: datetime) -> None:
    """The street market with meters M1..M3 for H1..H3, two crossing orders for ``period`` (H1 buys
    2 kWh at 20 p; H3 sells 3 kWh from 5 p; F2's export limit lets 2 through), and its clearing."""
    from market.clearing import clear_interval
    from market.database import transaction
    from market.orders import place_order
    from market.rules import MarketRules

    with transaction(engine) as session:
        seed_market(session, now=now)
        register_street_meters(session, now=now)
        for home, side, kwh, price in (("H1", "buy", "2", "20"), ("H3", "sell", "3", "5")):
            place_order(
                session,
                rules=MarketRules(),
                participant_id=home,
                period=period,
                side=side,
                quantity_kwh=Decimal(kwh),
                price_p_per_kwh=Decimal(price),
                now=now,
            )
    clear_interval(engine, period=period, rules=MarketRules(), now=period.start_utc, triggered_by="seed")


def seed_cleared_metered_interval(engine, period, *, now: datetime) -> None:
    """:func:`seed_cleared_interval`, and meter readings exactly at the period's boundaries
    (H1 2.4 kWh, H2 1 kWh, H3 -2.5 kWh)."""
    from market.database import transaction
    from market.meter_data import store_readings
    from metering.readings import Quality, Reading

    seed_cleared_interval(engine, period, now=now)
    counters = {"M1": ((100, 0), (102.4, 0)), "M2": ((50, 0), (51, 0)), "M3": ((10, 20), (10, 22.5))}
    with transaction(engine) as session:
        for meter, (start, end) in counters.items():
            store_readings(
                session,
                [
                    Reading(meter, at, None, {"import_kwh": imp, "export_kwh": exp}, Quality.GOOD)
                    for at, (imp, exp) in ((period.start_utc, start), (period.end_utc, end))
                ],
            )
            refresh_interval_energy(session, meter, [period], now=period.end_utc)


class FixedClock:
    """A clock that stands still until moved: for API tests."""

    def __init__(self, now: datetime) -> None:
        self.moment = now

    def now(self) -> datetime:
        return self.moment

    def real_seconds_until(self, moment: datetime) -> float:
        return (moment - self.moment).total_seconds()


def race(database_url: str, work, *, workers: int) -> list:  # type: ignore[no-untyped-def]
    """Run ``work(engine)`` in ``workers`` threads released together, each with its own engine
    (its own connections); any error fails the test. Returns what each returned."""
    from market.database import create_database_engine

    barrier = threading.Barrier(workers)
    outcomes: list = []
    errors: list[Exception] = []

    def worker() -> None:
        engine = create_database_engine(database_url)
        try:
            barrier.wait(timeout=30)
            outcomes.append(work(engine))
        except Exception as error:
            errors.append(error)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == [], errors
    return outcomes


# --- the API ---------------------------------------------------------------------------------


@contextmanager
def api_client(engine, database_url, *, now: datetime):  # type: ignore[no-untyped-def]
    """A TestClient on the app over ``engine``: the seeded market, a fixed clock at ``now``
    (``client.clock``) and tokens for OPS, H1 and H2 (``client.tokens``)."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.deps import Platform
    from api.settings import Settings
    from market.access import issue_token
    from market.database import transaction

    with transaction(engine) as session:
        seed_market(session, now=now)
        tokens = {
            who: issue_token(session, participant_id=who, now=now).secret for who in ("OPS", "H1", "H2")
        }
    clock = FixedClock(now)
    app = create_app(Platform(engine=engine, settings=Settings(database_url=database_url), clock=clock))
    with TestClient(app) as client:
        client.tokens = tokens  # type: ignore[attr-defined]
        client.clock = clock  # type: ignore[attr-defined]
        yield client


def auth(client, who: str | None) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The Authorization header of ``who``'s token (none for ``None``)."""
    return {} if who is None else {"Authorization": f"Bearer {client.tokens[who]}"}


def count_rows(engine, table) -> int:  # type: ignore[no-untyped-def]
    """How many rows ``table`` holds."""
    from sqlmodel import Session, func, select

    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(table)).one()


# --- emulated meters ---------------------------------------------------------------------------

SUMMER_NOON = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
"""A summer noon: PV exports."""


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime = SUMMER_NOON) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class ManualMonotonic:
    """A monotonic clock in seconds that moves only when told to."""

    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def tolerance(meter: SimulatedMeter, name: str, value: float) -> float:
    """How far a decoded value may be from the profile's: half a raw step, or float32 rounding."""
    q = meter.register_map.quantity(name)
    if not q.is_integer:
        return 1e-6 * max(1.0, abs(value))
    step = q.scale
    if q.scale_factor_address is not None:
        step *= 10.0 ** SUNSPEC_SCALE_FACTORS_BY_UNIT[q.unit]
    return step / 2 + 1e-9


def assert_matches(meter: SimulatedMeter, values: dict[str, float] | object, at: datetime) -> None:
    """``values`` are what ``meter`` shows at ``at``, to the precision of its registers."""
    assert isinstance(values, dict) or hasattr(values, "items")
    expected = meter.values_at(at)
    got = dict(values.items())  # type: ignore[attr-defined]
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=tolerance(meter, name, value)), name


def integrate_by_steps(profile: MeterProfile, start: datetime, end: datetime) -> tuple[float, float]:
    """Import and export between two times, walking the profile's constant-power steps."""
    imported = exported = 0.0
    moment = start
    while moment < end:
        seconds_into_day = (
            moment - moment.replace(hour=0, minute=0, second=0, microsecond=0)
        ).total_seconds()
        step_end = moment + timedelta(seconds=profile.step_s - seconds_into_day % profile.step_s)
        until = min(step_end, end)
        energy_kwh = profile.net_power_w(moment) * (until - moment).total_seconds() / 3_600_000
        imported += max(energy_kwh, 0.0)
        exported += max(-energy_kwh, 0.0)
        moment = until
    return imported, exported


# --- interval energy, one meter at a time ------------------------------------------------------


def refresh_interval_energy(
    session: Session, meter_id: str, periods: Sequence[SettlementPeriod], *, now: datetime
) -> list[StoredEnergy]:
    """Derive ``periods``' energy for one meter and store what changed as new revisions (the jobs
    do many meters at once: :func:`market.meter_data.derive_energy_of_meters`).

    Counter decreases found on the way are recorded as meter events (once each). A job refreshing
    many meters derives them all first (:func:`derive_energy_of_meters`, no write lock held) and
    stores them in one short transaction (:func:`store_energy_of_meters`).
    """
    from market.meter_data import derive_meter_energy, store_meter_energy

    if not periods:
        return []
    return store_meter_energy(session, derive_meter_energy(session, meter_id, periods), now=now)


# --- open market results (issue 18) ------------------------------------------------------------

#: What :func:`seed_open_results_day` meters in its period (import Wh, export Wh); H7 reads zero
#: (it does not contribute), H8 has a meter that was never read.
OPEN_DAY_ENERGY = {
    "H1": (2500, 0),
    "H2": (0, 1500),
    "H4": (800, 0),
    "H5": (300, 0),
    "H6": (0, 400),
    "H7": (0, 0),
    "H3": (1000, 0),
}
#: Its next period: H1..H6 read, H7's meter not (the feeder's data incomplete).
OPEN_DAY_NEXT_ENERGY = {"H1": (100, 0), "H2": (200, 0), "H4": (300, 0), "H5": (0, 50), "H6": (10, 10)}


def seed_open_results_day(engine, period, *, registered_at: datetime) -> None:  # type: ignore[no-untyped-def]
    """On :func:`seed_market`'s street (H1, H2 on F1, H3 on F2): H4..H7 on F1 and H8 on F2, a
    meter each (M1..M8, registered at ``registered_at``), H1 buying 2 kWh at 20 p and H2 selling
    3 kWh from 5 p in ``period`` (2 kWh trade: the backstop pays 4.1 p, below H2's limit), the
    period cleared, and :data:`OPEN_DAY_ENERGY` in it and :data:`OPEN_DAY_NEXT_ENERGY` in the next.

    F1 then has five contributing households in ``period`` (H7 read zero), F2 one (H8 unread).
    """
    from market.clearing import clear_interval
    from market.database import transaction
    from market.intervals import settlement_period
    from market.meter_data import DerivedEnergy, store_energy_of_meters
    from market.orders import place_order
    from market.participants import register_household, register_meter
    from market.rules import MarketRules
    from metering.energy import IntervalEnergy

    following = settlement_period(
        period.settlement_date, period.period + 1, length_minutes=period.length_minutes
    )
    with transaction(engine) as session:
        for serial, (home, feeder) in enumerate(
            (("H4", "F1"), ("H5", "F1"), ("H6", "F1"), ("H7", "F1"), ("H8", "F2")), start=4
        ):
            register_household(
                session,
                participant_id=home,
                display_name=f"Home {home}",
                mpan=mpan(serial),
                node_id=feeder,
                now=registered_at,
            )
        for unit in range(1, 9):
            register_meter(
                session,
                meter_id=f"M{unit}",
                participant_id=f"H{unit}",
                host="10.0.0.1",
                port=502,
                unit_id=unit,
                transport="tcp",
                model="sdm630",
                now=registered_at,
            )
        for home, side, kwh, price in (("H1", "buy", "2", "20"), ("H2", "sell", "3", "5")):
            place_order(
                session,
                rules=MarketRules(),
                participant_id=home,
                period=period,
                side=side,
                quantity_kwh=Decimal(kwh),
                price_p_per_kwh=Decimal(price),
                now=period.start_utc - timedelta(hours=1),
            )
    clear_interval(engine, period=period, rules=MarketRules(), now=period.start_utc, triggered_by="seed")
    with transaction(engine) as session:
        derived = [
            DerivedEnergy(
                f"M{home[1:]}",
                (interval,),
                (IntervalEnergy(interval.start_utc, interval.end_utc, imported, exported, False),),
                (),
            )
            for interval, energy in ((period, OPEN_DAY_ENERGY), (following, OPEN_DAY_NEXT_ENERGY))
            for home, (imported, exported) in energy.items()
        ]
        store_energy_of_meters(session, derived, now=following.end_utc)
