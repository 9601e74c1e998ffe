"""Households' plan LPs as matrices, and their solution by HiGHS.

Two ways to the same matrices, one solver call:

- :func:`compile_model` compiles a Pyomo model (:func:`planning.plan_model.build_plan_model`)
  with Pyomo's ``LinearStandardFormCompiler`` in :func:`~planning.plan_model.model_columns` and
  :func:`~planning.plan_model.model_rows` order, as :mod:`optimiser.solve` does for clearing;
- :func:`household_matrices` writes the same entries directly with NumPy from the
  :class:`~planning.plan_model.HouseholdLP`, without building a model: what makes 10,000
  households fast (see ``bench/README.md``);
- :func:`stack_matrices` puts several households side by side as one block-diagonal LP, and
  :func:`solve_matrices` hands any of these to HiGHS through highspy in one call.

The entries, bounds and costs are the same floats either way, in the same order, and HiGHS is
deterministic, so one household solved from either form gives the identical answer
(``tests/planning/test_plan.py`` checks it). HiGHS runs dual simplex with presolve off on one
thread: on these small LPs presolve costs more than it saves (measured, ``bench/plan.py``).

May import the standard library, NumPy, SciPy, Pyomo, highspy and :mod:`planning`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import highspy
import numpy as np
import numpy.typing as npt
import pyomo.environ as pyo
import scipy.sparse as sp
from pyomo.common.gc_manager import PauseGC
from pyomo.repn.plugins.standard_form import LinearStandardFormCompiler

from planning.plan_model import HouseholdLP, model_columns, model_rows

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class PlanSolverError(RuntimeError):
    """HiGHS did not return an optimal plan (the LP is feasible by construction, so: a bug)."""


class QuietHighs(highspy.Highs):
    """A HiGHS solver that prints nothing: highspy 1.16 prints its banner while its constructor
    installs the callback bridge, before ``output_flag`` could be turned off, so it is turned off
    in that very step (as :class:`optimiser.solve.QuietHighs`, which planning may not import)."""

    def enableCallbacks(self) -> None:  # noqa: N802 (highspy's name)
        self.silent()
        super().enableCallbacks()


@dataclass(frozen=True)
class LPMatrices:
    """A minimisation LP: ``min cost x`` s.t. ``row_lower <= A x <= row_upper``, ``lower <= x <= upper``.

    ``matrix`` is in CSC form with sorted row indices, so that two builders of the same LP hand
    HiGHS the same arrays.
    """

    cost: FloatArray
    lower: FloatArray
    upper: FloatArray
    matrix: sp.csc_matrix
    row_lower: FloatArray
    row_upper: FloatArray

    @property
    def column_count(self) -> int:
        return len(self.cost)


@dataclass(frozen=True)
class _Triplets:
    rows: IntArray
    columns: IntArray
    values: FloatArray
    cost: FloatArray
    lower: FloatArray
    upper: FloatArray
    rhs: FloatArray


def _triplets(lp: HouseholdLP) -> _Triplets:
    """The household's nonzeros, bounds and right-hand sides in the model's column and row order."""
    count = lp.periods
    periods = np.arange(count, dtype=np.int64)
    columns = lp.column_count
    cost = np.zeros(columns)
    lower = np.zeros(columns)
    upper = np.full(columns, np.inf)
    cost[:count] = lp.import_cost_p_per_kwh
    cost[count : 2 * count] = -lp.export_value_p_per_kwh
    rows = [periods, periods]
    cols = [periods, periods + count]
    values = [np.ones(count), -np.ones(count)]
    rhs = [lp.net_demand_wh.astype(np.float64)]
    next_column = 2 * count
    next_row = count
    if lp.has_battery:
        charge, discharge, soc = next_column, next_column + count, next_column + 2 * count
        upper[charge : charge + count] = lp.charge_max_wh
        upper[discharge : discharge + count] = lp.discharge_max_wh
        lower[soc : soc + count] = lp.soc_min_wh
        upper[soc : soc + count] = lp.soc_max_wh
        cost[soc + count - 1] = -lp.stored_value_p_per_kwh
        dynamics = periods + next_row
        rows += [periods, periods, dynamics, dynamics, dynamics, dynamics[1:]]
        cols += [periods + charge, periods + discharge, periods + soc, periods + charge]
        cols += [periods + discharge, periods[:-1] + soc]
        values += [-np.ones(count), np.ones(count), np.ones(count), np.full(count, -lp.charge_efficiency)]
        values += [np.full(count, 1.0 / lp.discharge_efficiency), -np.ones(count - 1)]
        start = np.zeros(count)
        start[0] = lp.soc_initial_wh
        rhs.append(start)
        next_column += 3 * count
        next_row += count
    if lp.ev is not None:
        ev = lp.ev
        slots = len(ev.slot_period)
        slot_columns = next_column + np.arange(slots, dtype=np.int64)
        window_columns = next_column + slots + np.arange(ev.window_count, dtype=np.int64)
        upper[slot_columns] = ev.slot_capacity_wh
        lower[window_columns] = ev.lower_wh
        upper[window_columns] = ev.upper_wh
        cost[slot_columns] = -lp.later_price_p_per_kwh
        window_rows = next_row + np.arange(ev.window_count, dtype=np.int64)
        rows += [ev.slot_period, next_row + ev.slot_window, window_rows]
        cols += [slot_columns, slot_columns, window_columns]
        values += [-np.ones(slots), np.ones(slots), -np.ones(ev.window_count)]
        rhs.append(np.zeros(ev.window_count))
    return _Triplets(
        rows=np.concatenate(rows),
        columns=np.concatenate(cols),
        values=np.concatenate(values),
        cost=cost,
        lower=lower,
        upper=upper,
        rhs=np.concatenate(rhs),
    )


def household_matrices(lp: HouseholdLP) -> LPMatrices:
    """One household's LP as matrices, written with NumPy: the same as :func:`compile_model` gives."""
    return stack_matrices([lp])


def stack_matrices(lps: Sequence[HouseholdLP]) -> LPMatrices:
    """Households side by side as one block-diagonal LP, in the order given: their columns and
    rows follow one another, so household ``i``'s columns start at the sum of the earlier ones'."""
    parts = [_triplets(lp) for lp in lps]
    column_offsets = np.cumsum([0] + [len(p.cost) for p in parts])
    row_offsets = np.cumsum([0] + [len(p.rhs) for p in parts])
    rows = np.concatenate([p.rows + row_offsets[i] for i, p in enumerate(parts)])
    cols = np.concatenate([p.columns + column_offsets[i] for i, p in enumerate(parts)])
    values = np.concatenate([p.values for p in parts])
    shape = (int(row_offsets[-1]), int(column_offsets[-1]))
    matrix = sp.csc_matrix((values, (rows, cols)), shape=shape)
    matrix.sort_indices()
    rhs = np.concatenate([p.rhs for p in parts])
    return LPMatrices(
        cost=np.concatenate([p.cost for p in parts]),
        lower=np.concatenate([p.lower for p in parts]),
        upper=np.concatenate([p.upper for p in parts]),
        matrix=matrix,
        row_lower=rhs,
        row_upper=rhs.copy(),
    )


def compile_model(m: pyo.ConcreteModel) -> LPMatrices:
    """A Pyomo plan model as matrices, columns and rows in the model's fixed order.

    Raises
    ------
    PlanSolverError
        If the compiler's columns or rows are not the model's (every row must be an equation).
    """
    columns = model_columns(m)
    rows = model_rows(m)
    with PauseGC():
        repn = LinearStandardFormCompiler().write(
            m, mixed_form=True, set_sense=None, column_order=columns, row_order=rows
        )
    if len(repn.columns) != len(columns) or any(a is not b for a, b in zip(repn.columns, columns)):
        raise PlanSolverError("the compiled model's columns are not in the model's order")
    if [entry.constraint for entry in repn.rows] != rows or any(e.bound_type for e in repn.rows):
        raise PlanSolverError("the compiled model's rows are not the model's equations")
    matrix = sp.csc_matrix(repn.A)
    matrix.sort_indices()
    rhs = np.asarray(repn.rhs, np.float64)
    return LPMatrices(
        cost=np.asarray(repn.c.toarray(), np.float64).ravel(),
        lower=np.array([-np.inf if v.lb is None else v.lb for v in columns], np.float64),
        upper=np.array([np.inf if v.ub is None else v.ub for v in columns], np.float64),
        matrix=matrix,
        row_lower=rhs,
        row_upper=rhs.copy(),
    )


def solve_matrices(lp_matrices: LPMatrices) -> FloatArray:
    """Solve with HiGHS (dual simplex, presolve off, one thread) and return the column values.

    Raises
    ------
    PlanSolverError
        If HiGHS stops without an optimal solution.
    """
    matrix = lp_matrices.matrix
    lp = highspy.HighsLp()
    lp.num_col_ = lp_matrices.column_count
    lp.num_row_ = matrix.shape[0]
    lp.sense_ = highspy.ObjSense.kMinimize
    inf = highspy.kHighsInf
    lp.col_cost_ = lp_matrices.cost
    lp.col_lower_ = np.where(np.isinf(lp_matrices.lower), -inf, lp_matrices.lower)
    lp.col_upper_ = np.where(np.isinf(lp_matrices.upper), inf, lp_matrices.upper)
    lp.row_lower_ = lp_matrices.row_lower
    lp.row_upper_ = lp_matrices.row_upper
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = matrix.indptr.astype(np.int32)
    lp.a_matrix_.index_ = matrix.indices.astype(np.int32)
    lp.a_matrix_.value_ = matrix.data.astype(np.float64)
    highs = QuietHighs()
    highs.setOptionValue("presolve", "off")
    highs.setOptionValue("solver", "simplex")
    highs.setOptionValue("threads", 1)
    highs.passModel(lp)
    highs.run()
    status = highs.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        raise PlanSolverError(f"HiGHS stopped with status {highs.modelStatusToString(status)}")
    return np.asarray(highs.getSolution().col_value, np.float64)
