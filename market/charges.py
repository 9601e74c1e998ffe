"""The settlement rules, in one place: what each party is charged or paid for one interval.

Pure: an interval's cleared trades and measured energy in, ledger lines out.

Accounts
--------
``household:<id>``
    A household.
``supplier``
    The energy company: the backstop that sells at the import tariff and buys at the export tariff.
``network``
    The network operator: network fees and congestion rent.
``platform``
    The market operator's platform fee.
``vat``
    VAT collected on what households pay, owed to HMRC.
``pool``
    The market's clearing account. Buyers pay into it at their node's price, sellers are paid
    from it at theirs, the backstop energy of the clearing is paid from and into it at the
    tariffs; what is left (fees and congestion rent) goes to ``network``, so the pool always
    ends an interval at exactly zero.

Rules
-----
1. Each trade is paid at its node's clearing price: the buyer pays the pool, the pool pays the
   seller.
2. The clearing's backstop energy: the pool pays the supplier for grid imports at the import
   tariff; the supplier pays the pool for grid exports at the export tariff.
3. The pool's remainder equals, edge by edge, the energy over the edge times the price step across
   it (fee plus congestion rent); it is posted to ``network`` one line per edge and part, so it
   can be audited.
4. The platform fee, per kWh traded, is charged to each household on the energy it traded in the
   interval, bought plus sold: one line per household per interval (none when the fee is zero).
5. Imbalance: metered position (import minus export) minus traded position (bought minus sold).
   A positive imbalance is bought from the supplier at the import tariff, a negative one sold to
   the supplier at the export tariff.
6. VAT at the configured rate on what the household is charged in the interval (its purchases,
   imbalance imports and platform fees), one line per household per interval.

Money is integer hundredths of a penny (``_cp``). Each line's amount is rounded once, half to
even, by exact integer arithmetic on the price's fraction (:func:`market.units.money_cp`,
:func:`market.units.scale_cp`); the network lines carry the remainder, so that the pool nets to
exactly zero and every run balances to exactly zero by double entry.

Worked example (computed by hand; ``tests/market/test_settlement_rules.py`` checks it)
--------------------------------------------------------------------------------------
One interval; tariffs 24.5 / 4.1 p/kWh, VAT 5%, platform fee 0.1 p/kWh. The root GSP has one
feeder F1 (fee 0.2 p/kWh). The clearing: H1 at GSP bought 2 kWh at GSP's price 12.5 p; H2 at F1
sold 2 kWh at F1's price 12.3 p; the 2 kWh flowed up from F1 (a step of -0.2 p: the fee, no
congestion). The meters: H1 imported 2.5 kWh; H2 exported 1.5 kWh.

====================  ===================  ====================================  ========
line                  from -> to           working                               amount
====================  ===================  ====================================  ========
trade buy             H1 -> pool           2 kWh x 12.5 p                        25.00 p
trade sell            pool -> H2           2 kWh x 12.3 p                        24.60 p
platform fee          H1 -> platform       2 kWh x 0.1 p                          0.20 p
platform fee          H2 -> platform       2 kWh x 0.1 p                          0.20 p
network fee           pool -> network      2 kWh x 0.2 p (F1-GSP)                 0.40 p
imbalance import      H1 -> supplier       (2.5 - 2) kWh x 24.5 p                12.25 p
imbalance import      H2 -> supplier       (-1.5 - -2) kWh x 24.5 p (sold 2,     12.25 p
                                           exported 1.5: short 0.5)
VAT                   H1 -> vat            5% of 25.00 + 0.20 + 12.25 = 1.8725    1.87 p
VAT                   H2 -> vat            5% of 0.20 + 12.25 = 0.6225            0.62 p
====================  ===================  ====================================  ========

H1 pays 39.32 p. H2 is paid 24.60 p and pays 13.07 p: 11.53 p net. The supplier gets 24.50 p,
the platform 0.40 p, the network 0.40 p, VAT 2.49 p; the pool nets 25.00 - 24.60 - 0.40 = 0. And
-39.32 + 11.53 + 24.50 + 0.40 + 0.40 + 2.49 = 0: the interval balances.

May import the standard library and :mod:`market`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

from market.units import money_cp, scale_cp

POOL = "pool"
SUPPLIER = "supplier"
NETWORK = "network"
PLATFORM = "platform"
VAT = "vat"


#: A household's account in the ledger is this prefix and its participant id.
HOUSEHOLD_ACCOUNT_PREFIX = "household:"


def household_account(participant_id: str) -> str:
    return f"{HOUSEHOLD_ACCOUNT_PREFIX}{participant_id}"


@dataclass(frozen=True)
class TradeInput:
    """A cleared trade: ``energy_wh`` accepted at its node's ``price_p_per_kwh``."""

    participant_id: str
    node_id: str
    side: str  # "buy" or "sell"
    energy_wh: int
    price_p_per_kwh: Decimal


@dataclass(frozen=True)
class EdgeInput:
    """Energy over one edge in the clearing: ``net_import_wh`` from ``parent_id`` into ``node_id``."""

    node_id: str
    parent_id: str
    net_import_wh: int
    node_price_p_per_kwh: Decimal
    parent_price_p_per_kwh: Decimal
    fee_p_per_kwh: Decimal


@dataclass(frozen=True)
class SettlementTerms:
    """The money terms of an interval: tariffs, VAT rate, platform fee."""

    import_p_per_kwh: Decimal
    export_p_per_kwh: Decimal
    vat_rate: Decimal = Decimal("0.05")
    platform_fee_p_per_kwh: Decimal = Decimal(0)


@dataclass(frozen=True)
class IntervalInputs:
    """Everything an interval's settlement reads.

    ``metered_wh`` maps each household to its net metered position (import minus export, Wh),
    or to ``None`` where its meter data is missing; ``estimated`` names those whose energy is an
    estimate. A household with trades must appear in ``metered_wh``.
    """

    trades: Sequence[TradeInput]
    edges: Sequence[EdgeInput]
    grid_import_wh: int
    grid_export_wh: int
    metered_wh: Mapping[str, int | None]
    estimated: frozenset[str]
    terms: SettlementTerms


class Line(NamedTuple):
    """One ledger line: ``amount_cp`` moves from ``debit`` (pays) to ``credit`` (is paid).

    A named tuple rather than a dataclass: a city's interval makes tens of thousands of them.
    """

    kind: str
    debit: str
    credit: str
    amount_cp: int
    participant_id: str | None = None
    energy_wh: int = 0
    price_p_per_kwh: Decimal | None = None
    memo: str = ""


@dataclass(frozen=True)
class SettledInterval:
    """The lines, and the households the lines could not settle in full (with why)."""

    lines: tuple[Line, ...]
    pending: Mapping[str, str] = field(default_factory=dict)
    estimated: frozenset[str] = frozenset()


def settle_interval(inputs: IntervalInputs) -> SettledInterval:
    """Apply the rules (module docstring) to one interval."""
    terms = inputs.terms
    lines: list[Line] = []
    charged: dict[str, int] = {}
    traded_wh: dict[str, int] = {}

    def post(line: Line) -> None:
        if line.amount_cp == 0 and line.energy_wh == 0:
            return  # nothing moves; a line with energy is kept even when its money rounds to 0
        if line.amount_cp < 0:  # a negative price: the money goes the other way
            line = Line(
                line.kind,
                line.credit,
                line.debit,
                -line.amount_cp,
                line.participant_id,
                line.energy_wh,
                line.price_p_per_kwh,
                line.memo,
            )
        lines.append(line)
        if line.debit.startswith("household:") and line.kind != "vat":
            participant = line.debit.removeprefix("household:")
            charged[participant] = charged.get(participant, 0) + line.amount_cp

    volume_wh: dict[str, int] = {}  # bought plus sold, for the platform fee
    for trade in sorted(inputs.trades, key=lambda t: (t.participant_id, t.side, t.node_id, t.energy_wh)):
        account = household_account(trade.participant_id)
        amount = money_cp(trade.energy_wh, trade.price_p_per_kwh)
        signed = trade.energy_wh if trade.side == "buy" else -trade.energy_wh
        traded_wh[trade.participant_id] = traded_wh.get(trade.participant_id, 0) + signed
        volume_wh[trade.participant_id] = volume_wh.get(trade.participant_id, 0) + trade.energy_wh
        debit, credit = (account, POOL) if trade.side == "buy" else (POOL, account)
        post(
            Line(
                f"trade_{trade.side}",
                debit,
                credit,
                amount,
                trade.participant_id,
                trade.energy_wh,
                trade.price_p_per_kwh,
                f"{trade.energy_wh} Wh at {trade.node_id}",
            )
        )
    if terms.platform_fee_p_per_kwh:
        for participant, volume in volume_wh.items():  # in participant order: trades were sorted
            post(
                Line(
                    "platform_fee",
                    household_account(participant),
                    PLATFORM,
                    money_cp(volume, terms.platform_fee_p_per_kwh),
                    participant,
                    volume,
                    terms.platform_fee_p_per_kwh,
                )
            )

    post(
        Line(
            "backstop_import",
            POOL,
            SUPPLIER,
            money_cp(inputs.grid_import_wh, terms.import_p_per_kwh),
            energy_wh=inputs.grid_import_wh,
            price_p_per_kwh=terms.import_p_per_kwh,
        )
    )
    post(
        Line(
            "backstop_export",
            SUPPLIER,
            POOL,
            money_cp(inputs.grid_export_wh, terms.export_p_per_kwh),
            energy_wh=inputs.grid_export_wh,
            price_p_per_kwh=terms.export_p_per_kwh,
        )
    )
    _network_lines(inputs.edges, _pool_balance(lines), post)

    pending: dict[str, str] = {}
    for participant in sorted(set(inputs.metered_wh) | set(traded_wh)):
        metered = inputs.metered_wh.get(participant)
        if metered is None:
            pending[participant] = "no meter data for the interval: imbalance not settled"
            continue
        imbalance = metered - traded_wh.get(participant, 0)
        account = household_account(participant)
        if imbalance > 0:
            post(
                Line(
                    "imbalance_import",
                    account,
                    SUPPLIER,
                    money_cp(imbalance, terms.import_p_per_kwh),
                    participant,
                    imbalance,
                    terms.import_p_per_kwh,
                )
            )
        elif imbalance < 0:
            post(
                Line(
                    "imbalance_export",
                    SUPPLIER,
                    account,
                    money_cp(-imbalance, terms.export_p_per_kwh),
                    participant,
                    -imbalance,
                    terms.export_p_per_kwh,
                )
            )

    for participant, amount in sorted(charged.items()):
        vat = scale_cp(amount, terms.vat_rate)
        post(Line("vat", household_account(participant), VAT, vat, participant, memo=f"on {amount} cp"))
    return SettledInterval(tuple(lines), pending, inputs.estimated & set(inputs.metered_wh))


def _pool_balance(lines: Sequence[Line]) -> int:
    return sum(line.amount_cp for line in lines if line.credit == POOL) - sum(
        line.amount_cp for line in lines if line.debit == POOL
    )


def _network_lines(edges: Sequence[EdgeInput], pool_cp: int, post: Callable[[Line], None]) -> None:
    """Post the pool's remainder to the network: per edge, its fee and its congestion rent.

    Each part is rounded on its own; the difference between their sum and the pool's balance
    (rounding only) is carried on the largest part, so the pool ends at exactly zero.
    """
    parts: list[Line] = []
    for edge in sorted(edges, key=lambda e: e.node_id):
        energy = abs(edge.net_import_wh)
        if not energy:
            continue
        step = abs(edge.node_price_p_per_kwh - edge.parent_price_p_per_kwh)
        rent = step - edge.fee_p_per_kwh
        memo = f"{energy} Wh over {edge.parent_id}-{edge.node_id}"
        parts.append(
            Line(
                "network_fee",
                POOL,
                NETWORK,
                money_cp(energy, edge.fee_p_per_kwh),
                None,
                energy,
                edge.fee_p_per_kwh,
                memo,
            )
        )
        parts.append(Line("congestion_rent", POOL, NETWORK, money_cp(energy, rent), None, energy, rent, memo))
    remainder = pool_cp - sum(part.amount_cp for part in parts)
    if remainder:
        if parts:
            largest = max(range(len(parts)), key=lambda i: (parts[i].amount_cp, -i))
            part = parts[largest]
            parts[largest] = Line(
                part.kind,
                part.debit,
                part.credit,
                part.amount_cp + remainder,
                part.participant_id,
                part.energy_wh,
                part.price_p_per_kwh,
                part.memo + f" (carries {remainder:+d} cp of rounding)",
            )
        else:
            parts.append(Line("rounding", POOL, NETWORK, remainder, memo="rounding of the interval's lines"))
    for part in parts:
        if part.amount_cp:  # a part with no money (no congestion) says nothing the fee line does not
            post(part)
