"""Solve a clearing model with HiGHS and map the answer back to the model's columns.

The Pyomo model is compiled to matrix form with Pyomo's ``LinearStandardFormCompiler``
and handed to HiGHS through highspy in one call: measured on this machine that is
several times faster than Pyomo's persistent HiGHS interfaces, which translate the
model term by term. HiGHS runs dual simplex with presolve off: presolve gains nothing
on this LP and costs more than the solve (see ``bench/README.md``), and a simplex
answer is a basic solution, which for this network LP is integral in Wh.

May import only the standard library, NumPy, Pyomo, highspy and :mod:`optimiser`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import highspy
import numpy as np
import numpy.typing as npt
import pyomo.environ as pyo
from pyomo.common.gc_manager import PauseGC
from pyomo.repn.plugins.standard_form import LinearStandardFormCompiler

from optimiser.model import model_columns


class QuietHighs(highspy.Highs):
    """A HiGHS solver that prints nothing, from the moment it is created.

    highspy 1.16 writes its banner ("Running HiGHS ...") to stdout while its constructor installs
    the Python callback bridge (``enableCallbacks``), before a caller can turn ``output_flag``
    off. Turning it off first, in that very step, silences the banner at its source; every
    solver the project creates is one of these.
    """

    def enableCallbacks(self) -> None:  # noqa: N802 (highspy's name)
        self.silent()
        super().enableCallbacks()


class SolverError(RuntimeError):
    """HiGHS did not return an optimal answer (which the backstop should make impossible)."""


#: HiGHS basis statuses by their codes: 0 at lower bound, 1 basic, 2 at upper bound.
_STATUS = list(highspy.HighsBasisStatus.__members__.values())
AT_LOWER, BASIC, AT_UPPER = 0, 1, 2


@dataclass(frozen=True)
class Basis:
    """A simplex basis as status codes, columns in :func:`model_columns` order, rows in balance order."""

    columns: npt.NDArray[np.int8]
    rows: npt.NDArray[np.int8]


@dataclass(frozen=True)
class LPSolution:
    """A solved clearing model: column values in :func:`model_columns` order, node prices, basis."""

    values: npt.NDArray[np.float64]
    node_prices_p_per_kwh: npt.NDArray[np.float64]
    objective: float
    status: str
    compile_s: float
    solve_s: float
    iterations: int
    basis: Basis


def solve_clearing_model(
    m: pyo.ConcreteModel, *, time_limit_s: float | None = None, warm_start: Basis | None = None
) -> LPSolution:
    """Compile ``m`` to matrix form, solve it with HiGHS and read primal values and prices.

    ``warm_start``, a basis for this model's columns and rows, lets a model that grew by a few
    columns since its last solve start from where that solve ended.

    Raises
    ------
    SolverError
        If HiGHS stops without an optimal solution.
    """
    started = time.perf_counter()
    columns = model_columns(m)
    rows = list(m.balance.values())
    with PauseGC():
        repn = LinearStandardFormCompiler().write(
            m, mixed_form=True, set_sense=None, column_order=columns, row_order=rows
        )
    if len(repn.columns) != len(columns) or any(a is not b for a, b in zip(repn.columns, columns)):
        raise SolverError("the compiled model's columns are not in the model's order")
    if [entry.constraint for entry in repn.rows] != rows or any(e.bound_type for e in repn.rows):
        raise SolverError("the compiled model's rows are not the model's balance equations")

    lp = highspy.HighsLp()
    lp.num_col_ = len(columns)
    lp.num_row_ = len(rows)
    lp.sense_ = highspy.ObjSense.kMaximize
    lp.offset_ = float(repn.c_offset[0]) if len(repn.c_offset) else 0.0
    lp.col_cost_ = np.asarray(repn.c.toarray()).ravel() if lp.num_col_ else np.zeros(0)
    inf = highspy.kHighsInf
    lp.col_upper_ = np.array([inf if v.ub is None else v.ub for v in columns], np.float64)
    lp.col_lower_ = np.array([-inf if v.lb is None else v.lb for v in columns], np.float64)
    rhs = np.asarray(repn.rhs, np.float64)
    lp.row_lower_ = rhs
    lp.row_upper_ = rhs
    matrix = repn.A.tocsc()
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = matrix.indptr.astype(np.int32)
    lp.a_matrix_.index_ = matrix.indices.astype(np.int32)
    lp.a_matrix_.value_ = matrix.data.astype(np.float64)
    compiled = time.perf_counter()

    highs = QuietHighs()
    highs.setOptionValue("presolve", "off")
    highs.setOptionValue("solver", "simplex")
    highs.setOptionValue("threads", 1)
    if time_limit_s is not None and math.isfinite(time_limit_s):
        highs.setOptionValue("time_limit", float(time_limit_s))
    highs.passModel(lp)
    if warm_start is not None:
        start = highspy.HighsBasis()
        start.col_status = [_STATUS[code] for code in warm_start.columns.tolist()]
        start.row_status = [_STATUS[code] for code in warm_start.rows.tolist()]
        start.valid = True
        highs.setBasis(start)
    highs.run()
    status = highs.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        raise SolverError(f"HiGHS stopped with status {highs.modelStatusToString(status)}")
    solution = highs.getSolution()
    info = highs.getInfo()
    final = highs.getBasis()
    basis = Basis(
        columns=np.fromiter((int(status) for status in final.col_status), np.int8, lp.num_col_),
        rows=np.fromiter((int(status) for status in final.row_status), np.int8, lp.num_row_),
    )
    solved = time.perf_counter()
    # The balance rows are written supply minus demand, so in this maximisation HiGHS's
    # row dual (d objective / d right-hand side) is minus the price. The one sign flip.
    prices = -np.asarray(solution.row_dual, np.float64)
    return LPSolution(
        values=np.asarray(solution.col_value, np.float64),
        node_prices_p_per_kwh=prices,
        objective=float(info.objective_function_value),
        status="optimal",
        compile_s=compiled - started,
        solve_s=solved - compiled,
        iterations=int(info.simplex_iteration_count),
        basis=basis,
    )
