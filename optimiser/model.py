r"""The welfare-maximising double auction over the feeder tree, as a Pyomo model.

One variable per price level (:mod:`optimiser.levels`) that is still open, two flow
variables per edge (into the node from its parent and out of it), the backstop's
import and export at the root, and optionally a shortage and a surplus slack per node.
Energy is in Wh and prices in p/kWh, so the objective is in millipence and each
balance row's dual is a price in p/kWh.

The model is a network LP: every column has at most one +1 and one -1 in the balance
rows and every bound is a whole number of Wh, so every basic solution is integral and
the solver's answer rounds to exact Wh without breaking a balance.

Levels that the column-generation loop (:mod:`optimiser.clearing`) holds fixed enter
only as a constant demand in their node's balance; the slacks, priced far above any
order, keep such a restricted model feasible while it is being grown and are zero in
every answer the engine accepts.

May import only the standard library, NumPy, Pyomo and :mod:`optimiser`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyomo.environ as pyo
from pyomo.core.expr import LinearExpression


@dataclass(frozen=True)
class ClearingLP:
    """Everything the model needs, in the network's canonical node order (root first).

    ``fixed_demand_wh[n]`` is the energy the fixed levels at node ``n`` take out of it
    (fixed buys minus fixed sells). ``penalty_p_per_kwh`` prices the slacks; ``None``
    builds the model without them.
    """

    parent: npt.NDArray[np.int64]
    import_capacity_wh: npt.NDArray[np.int64]
    export_capacity_wh: npt.NDArray[np.int64]
    fee_p_per_kwh: npt.NDArray[np.float64]
    import_tariff_p_per_kwh: float
    export_tariff_p_per_kwh: float
    level_node: npt.NDArray[np.int64]
    level_is_buy: npt.NDArray[np.bool_]
    level_price_p_per_kwh: npt.NDArray[np.float64]
    level_quantity_wh: npt.NDArray[np.int64]
    fixed_demand_wh: npt.NDArray[np.int64]
    penalty_p_per_kwh: float | None = None

    @property
    def node_count(self) -> int:
        return len(self.parent)


def define_acceptance_variables(m: pyo.ConcreteModel, lp: ClearingLP) -> None:
    r"""Accepted energy of each open price level.

    .. math:: 0 \le x_k \le q_k \quad \forall k \in LEVELS
    """
    upper = lp.level_quantity_wh.tolist()
    m.LEVELS = pyo.RangeSet(0, len(upper) - 1)
    m.accept = pyo.Var(m.LEVELS, bounds=lambda _, k: (0, upper[k]))


def define_flow_variables(m: pyo.ConcreteModel, lp: ClearingLP) -> None:
    r"""Energy over each edge, one variable per direction so that fees apply either way.

    .. math:: 0 \le f^{in}_n \le \overline{I}_n, \quad 0 \le f^{out}_n \le \overline{E}_n
        \quad \forall n \in EDGES
    """
    imports = lp.import_capacity_wh.tolist()
    exports = lp.export_capacity_wh.tolist()
    m.NODES = pyo.RangeSet(0, lp.node_count - 1)
    m.EDGES = pyo.RangeSet(1, lp.node_count - 1)
    m.flow_in = pyo.Var(m.EDGES, bounds=lambda _, n: (0, imports[n]))
    m.flow_out = pyo.Var(m.EDGES, bounds=lambda _, n: (0, exports[n]))


def define_backstop_variables(m: pyo.ConcreteModel, lp: ClearingLP) -> None:
    r"""The energy company's imports into and exports from the root, unbounded.

    .. math:: g^{imp} \ge 0, \quad g^{exp} \ge 0
    """
    m.grid_import = pyo.Var(bounds=(0, None))
    m.grid_export = pyo.Var(bounds=(0, None))
    if lp.penalty_p_per_kwh is not None:
        m.shortage = pyo.Var(m.NODES, bounds=(0, None))
        m.surplus = pyo.Var(m.NODES, bounds=(0, None))


def define_nodal_balance(m: pyo.ConcreteModel, lp: ClearingLP) -> None:
    r"""Energy balance at every node: supply equals demand.

    .. math:: \sum_{s \in SELL_n} x_s + f^{in}_n + \sum_{c \in C_n} f^{out}_c + [n = r]\, g^{imp}
        + u^{short}_n - \sum_{b \in BUY_n} x_b - f^{out}_n - \sum_{c \in C_n} f^{in}_c
        - [n = r]\, g^{exp} - u^{surp}_n = D^{fixed}_n

    Written supply minus demand, so in this maximisation the row's dual is minus the
    node's price (flipped back in :func:`optimiser.solve.solve_clearing_model`).
    """
    terms: list[tuple[list[float], list[pyo.Var]]] = [([], []) for _ in range(lp.node_count)]
    for k, (node, is_buy) in enumerate(zip(lp.level_node.tolist(), lp.level_is_buy.tolist())):
        coefs, variables = terms[node]
        coefs.append(-1.0 if is_buy else 1.0)
        variables.append(m.accept[k])
    for n, parent in enumerate(lp.parent.tolist()):
        if parent < 0:
            continue
        coefs, variables = terms[n]
        coefs += (1.0, -1.0)
        variables += (m.flow_in[n], m.flow_out[n])
        coefs, variables = terms[parent]
        coefs += (1.0, -1.0)
        variables += (m.flow_out[n], m.flow_in[n])
    coefs, variables = terms[0]
    coefs += (1.0, -1.0)
    variables += (m.grid_import, m.grid_export)
    if lp.penalty_p_per_kwh is not None:
        for n, (coefs, variables) in enumerate(terms):
            coefs += (1.0, -1.0)
            variables += (m.shortage[n], m.surplus[n])
    demand = lp.fixed_demand_wh.tolist()

    def balance(_: pyo.ConcreteModel, n: int) -> tuple[float, LinearExpression, float]:
        coefs, variables = terms[n]
        body = LinearExpression(constant=0, linear_coefs=coefs, linear_vars=variables)
        return (demand[n], body, demand[n])

    m.balance = pyo.Constraint(m.NODES, rule=balance)


def define_welfare_objective(m: pyo.ConcreteModel, lp: ClearingLP) -> None:
    r"""Welfare of the accepted levels, less backstop and network costs, in millipence.

    .. math:: \max \sum_{b \in BUY} \pi_b x_b - \sum_{s \in SELL} \pi_s x_s
        - \tau^{imp} g^{imp} + \tau^{exp} g^{exp}
        - \sum_{n \in EDGES} \phi_n (f^{in}_n + f^{out}_n)
        - \rho \sum_{n} (u^{short}_n + u^{surp}_n)
    """
    prices = np.where(lp.level_is_buy, lp.level_price_p_per_kwh, -lp.level_price_p_per_kwh)
    coefs: list[float] = prices.tolist()
    variables: list[pyo.Var] = [m.accept[k] for k in m.LEVELS]
    fees = lp.fee_p_per_kwh.tolist()
    for n in m.EDGES:
        coefs += (-fees[n], -fees[n])
        variables += (m.flow_in[n], m.flow_out[n])
    coefs += (-lp.import_tariff_p_per_kwh, lp.export_tariff_p_per_kwh)
    variables += (m.grid_import, m.grid_export)
    if lp.penalty_p_per_kwh is not None:
        for n in m.NODES:
            coefs += (-lp.penalty_p_per_kwh, -lp.penalty_p_per_kwh)
            variables += (m.shortage[n], m.surplus[n])
    m.welfare = pyo.Objective(
        expr=LinearExpression(constant=0, linear_coefs=coefs, linear_vars=variables),
        sense=pyo.maximize,
    )


def build_clearing_model(lp: ClearingLP) -> pyo.ConcreteModel:
    """Assemble the clearing model: variables, balances, objective, in that order."""
    m = pyo.ConcreteModel(name="smartbrum_clearing")
    define_acceptance_variables(m, lp)
    define_flow_variables(m, lp)
    define_backstop_variables(m, lp)
    define_nodal_balance(m, lp)
    define_welfare_objective(m, lp)
    return m


def model_columns(m: pyo.ConcreteModel) -> list[pyo.Var]:
    """The model's variables in the fixed column order the solver maps back by."""
    columns = list(m.accept.values()) + list(m.flow_in.values()) + list(m.flow_out.values())
    columns += [m.grid_import, m.grid_export]
    if hasattr(m, "shortage"):
        columns += list(m.shortage.values()) + list(m.surplus.values())
    return columns
