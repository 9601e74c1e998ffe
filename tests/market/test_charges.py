"""The settlement rules: the documented worked example, hand cases, and invariants (hypothesis)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from decimal import ROUND_HALF_EVEN, Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from market.charges import POOL, EdgeInput, IntervalInputs, SettlementTerms, TradeInput, settle_interval
from market.settlement import line_totals, reconciling_lines
from market.units import money_cp, scale_cp

D = Decimal
TERMS = SettlementTerms(D("24.5"), D("4.1"), vat_rate=D("0.05"), platform_fee_p_per_kwh=D("0.1"))


def balances(lines) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for line in lines:
        totals[line.debit] -= line.amount_cp
        totals[line.credit] += line.amount_cp
    return dict(totals)


def worked_example() -> IntervalInputs:
    return IntervalInputs(
        trades=[
            TradeInput("H1", "GSP", "buy", 2000, D("12.5")),
            TradeInput("H2", "F1", "sell", 2000, D("12.3")),
        ],
        edges=[EdgeInput("F1", "GSP", -2000, D("12.3"), D("12.5"), D("0.2"))],
        grid_import_wh=0,
        grid_export_wh=0,
        metered_wh={"H1": 2500, "H2": -1500},
        estimated=frozenset(),
        terms=TERMS,
    )


def test_the_documented_worked_example():
    settled = settle_interval(worked_example())
    assert {(line.kind, line.debit, line.credit, line.amount_cp) for line in settled.lines} == {
        ("trade_buy", "household:H1", POOL, 2500),
        ("trade_sell", POOL, "household:H2", 2460),
        ("platform_fee", "household:H1", "platform", 20),
        ("platform_fee", "household:H2", "platform", 20),
        ("network_fee", POOL, "network", 40),
        ("imbalance_import", "household:H1", "supplier", 1225),
        ("imbalance_import", "household:H2", "supplier", 1225),
        ("vat", "household:H1", "vat", 187),
        ("vat", "household:H2", "vat", 62),
    }
    assert balances(settled.lines) == {
        "household:H1": -3932,
        "household:H2": 1153,
        POOL: 0,
        "supplier": 2450,
        "platform": 40,
        "network": 40,
        "vat": 249,
    }


def one_household(trades, metered_wh, *, grid_import_wh=0, grid_export_wh=0) -> dict[str, int]:
    terms = SettlementTerms(D("24.5"), D("4.1"), vat_rate=D("0.05"))
    settled = settle_interval(
        IntervalInputs(trades, [], grid_import_wh, grid_export_wh, {"H": metered_wh}, frozenset(), terms)
    )
    totals = balances(settled.lines)
    assert sum(totals.values()) == 0
    assert totals.get(POOL, 0) == 0
    return {
        kind: sum(line.amount_cp for line in settled.lines if line.kind == kind)
        for kind in {line.kind for line in settled.lines}
    }


def test_a_buyer_who_used_less_than_bought_sells_the_rest_back_at_the_export_tariff():
    """Bought 2 kWh at 10 p from the backstop-free pool, used 1.2: 0.8 kWh back at 4.1 p."""
    kinds = one_household([TradeInput("H", "GSP", "buy", 2000, D(10))], 1200, grid_export_wh=0)
    assert kinds["trade_buy"] == 2000  # 20.00 p
    assert kinds["imbalance_export"] == 328  # 0.8 x 4.1 = 3.28 p
    assert kinds["vat"] == 100  # 5% of 20.00 p


def test_a_seller_who_produced_less_than_sold_buys_the_shortfall_at_the_import_tariff():
    """Sold 3 kWh at 8 p, exported 2: the missing 1 kWh is bought at 24.5 p (plus VAT)."""
    kinds = one_household([TradeInput("H", "GSP", "sell", 3000, D(8))], -2000)
    assert kinds["trade_sell"] == 2400
    assert kinds["imbalance_import"] == 2450
    assert kinds["vat"] == 122  # 5% of 24.50 p = 1.225 p, half to even: 1.22 p


def test_a_household_with_no_trades_is_on_the_tariffs():
    assert one_household([], 1500) == {"imbalance_import": 3675, "vat": 184}  # 36.75 p, VAT 1.8375 p
    assert one_household([], -1500) == {"imbalance_export": 615}  # 6.15 p, no VAT on what it is paid
    assert one_household([], 0) == {}


def test_missing_meter_data_is_pending_never_zero():
    inputs = worked_example()
    settled = settle_interval(
        IntervalInputs(inputs.trades, inputs.edges, 0, 0, {"H1": 2500, "H2": None}, frozenset(), TERMS)
    )
    assert "H2" in settled.pending
    assert not [
        line for line in settled.lines if line.kind.startswith("imbalance") and line.participant_id == "H2"
    ]
    assert any(line.kind == "trade_sell" and line.participant_id == "H2" for line in settled.lines)


def test_money_rounds_half_to_even_once_per_line():
    assert money_cp(1, D("0.5")) == 0  # 0.05 cp
    assert money_cp(15, D("1")) == 2  # 1.5 cp -> 2
    assert money_cp(25, D("1")) == 2  # 2.5 cp -> 2
    assert money_cp(1000, D("-3")) == -300
    assert money_cp(-15, D("1")) == -2  # -1.5 cp -> -2
    assert money_cp(-25, D("1")) == -2  # -2.5 cp -> -2
    assert scale_cp(3745, D("0.05")) == 187  # 187.25
    assert scale_cp(1250, D("0.05")) == 62  # 62.5 -> 62
    assert scale_cp(1270, D("0.05")) == 64  # 63.5 -> 64


@given(
    energy=st.integers(-(10**12), 10**12),
    price=st.decimals(min_value=-1000, max_value=1000, places=6, allow_nan=False, allow_infinity=False),
)
def test_integer_money_equals_decimal_arithmetic_rounded_half_to_even(energy, price):
    # The ledger's integer arithmetic gives what exact Decimal arithmetic and the documented rule give.
    exact = (D(energy) * price / 10).to_integral_value(rounding=ROUND_HALF_EVEN)
    assert money_cp(energy, price) == int(exact)
    assert scale_cp(energy, price) == int((D(energy) * price).to_integral_value(rounding=ROUND_HALF_EVEN))


def test_the_platform_fee_is_one_line_per_household_on_all_it_traded():
    # H1 buys twice and sells once in the interval: one fee line on 0.7 + 0.5 + 0.3 kWh.
    inputs = IntervalInputs(
        trades=[
            TradeInput("H1", "GSP", "buy", 700, D("12.5")),
            TradeInput("H1", "GSP", "buy", 500, D("12.5")),
            TradeInput("H1", "GSP", "sell", 300, D("12.5")),
            TradeInput("H2", "GSP", "sell", 900, D("12.5")),
        ],
        edges=[],
        grid_import_wh=0,
        grid_export_wh=0,
        metered_wh={"H1": 900, "H2": -900},
        estimated=frozenset(),
        terms=SettlementTerms(D("24.5"), D("4.1"), vat_rate=D("0.05"), platform_fee_p_per_kwh=D("0.15")),
    )
    fees = [line for line in settle_interval(inputs).lines if line.kind == "platform_fee"]
    assert [(line.participant_id, line.energy_wh, line.amount_cp) for line in fees] == [
        ("H1", 1500, 22),  # 1.5 kWh x 0.15 p = 0.225 p = 22.5 cp -> 22
        ("H2", 900, 14),  # 0.135 p = 13.5 cp -> 14
    ]
    free = replace(inputs, terms=replace(inputs.terms, platform_fee_p_per_kwh=D(0)))
    assert not [line for line in settle_interval(free).lines if line.kind == "platform_fee"]


@st.composite
def intervals(draw):
    """A single-node or one-feeder clearing built to be consistent (the pool's rent is the edge's)."""
    prices = st.integers(0, 3000).map(lambda ticks: D(ticks) / 100)
    homes = [f"H{i}" for i in range(draw(st.integers(1, 6)))]
    trades = [
        TradeInput(
            draw(st.sampled_from(homes)),
            "GSP",
            draw(st.sampled_from(["buy", "sell"])),
            draw(st.integers(1, 5000)),
            draw(prices),
        )
        for _ in range(draw(st.integers(0, 8)))
    ]
    price = draw(prices)
    trades = [TradeInput(t.participant_id, t.node_id, t.side, t.energy_wh, price) for t in trades]
    bought = sum(t.energy_wh for t in trades if t.side == "buy")
    sold = sum(t.energy_wh for t in trades if t.side == "sell")
    metered = {
        home: draw(st.one_of(st.none(), st.integers(-8000, 8000)))
        if draw(st.booleans())
        else draw(st.integers(-8000, 8000))
        for home in homes
    }
    terms = SettlementTerms(
        import_p_per_kwh=D("24.5"),
        export_p_per_kwh=D("4.1"),
        vat_rate=draw(st.sampled_from([D(0), D("0.05"), D("0.2")])),
        platform_fee_p_per_kwh=draw(st.sampled_from([D(0), D("0.1"), D("0.37")])),
    )
    return IntervalInputs(
        trades, [], max(bought - sold, 0), max(sold - bought, 0), metered, frozenset(), terms
    ), price


@settings(max_examples=300, deadline=None)
@given(intervals())
def test_every_interval_balances_to_zero_and_the_pool_is_empty(drawn):
    inputs, price = drawn
    # The backstop trades at the tariffs, the market at `price`: make them the same clearing.
    terms = SettlementTerms(
        price + 1,
        price - 1 if price >= 1 else D(0),
        inputs.terms.vat_rate,
        inputs.terms.platform_fee_p_per_kwh,
    )
    inputs = IntervalInputs(
        inputs.trades, [], inputs.grid_import_wh, inputs.grid_export_wh, inputs.metered_wh, frozenset(), terms
    )
    settled = settle_interval(inputs)
    totals = balances(settled.lines)
    assert sum(totals.values()) == 0
    assert all(line.amount_cp > 0 or line.energy_wh > 0 for line in settled.lines)
    assert set(settled.pending) == {home for home, wh in inputs.metered_wh.items() if wh is None}
    # Each household's imbalance energy is exactly metered minus traded.
    for home, metered in inputs.metered_wh.items():
        if metered is None:
            continue
        traded = sum(
            t.energy_wh if t.side == "buy" else -t.energy_wh
            for t in inputs.trades
            if t.participant_id == home
        )
        imbalance = sum(
            line.energy_wh if line.kind == "imbalance_import" else -line.energy_wh
            for line in settled.lines
            if line.participant_id == home and line.kind.startswith("imbalance")
        )
        assert imbalance == metered - traded


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_initial_plus_reconciliations_equal_a_fresh_settlement_of_the_final_data(data):
    """Meter data revised again and again (estimates replaced, late readings, a household's data
    arriving): after each reconciliation the posted totals equal a fresh settlement of the latest
    data, and every run balances to zero on its own."""
    inputs = data.draw(intervals())[0]
    homes = sorted(inputs.metered_wh)
    posted: list = []
    for revision in range(data.draw(st.integers(1, 4))):
        metered = {
            home: data.draw(st.one_of(st.none(), st.integers(-8000, 8000)), label=f"{home} r{revision}")
            for home in homes
        }
        fresh = settle_interval(
            IntervalInputs(
                inputs.trades,
                [],
                inputs.grid_import_wh,
                inputs.grid_export_wh,
                metered,
                frozenset(),
                inputs.terms,
            )
        ).lines
        run_lines = list(fresh) if revision == 0 else reconciling_lines(line_totals(posted), fresh)
        assert sum(balances(run_lines).values()) == 0
        posted += run_lines
        nonzero = lambda totals: {k: v[:2] for k, v in totals.items() if v[:2] != (0, 0)}  # noqa: E731
        assert nonzero(line_totals(posted)) == nonzero(line_totals(fresh))
