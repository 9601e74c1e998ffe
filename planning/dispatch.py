"""What a household's battery does in a period once the period has cleared.

A plan (:mod:`planning.plan`) is made before the gate closes, from expected prices; the market
then decides which of its orders trade. A battery that carried out its plan regardless would
discharge into a sale that did not happen (the energy would leave for the energy company at the
export tariff) or charge from a purchase that did not happen (the energy would come from the
energy company at the import tariff). So the battery follows its plan **less what did not
trade**:

- a planned discharge is cut by what the household's strategy sell orders in the period did not
  sell, down to none; the energy stays in the battery for later;
- a planned charge is cut by what its strategy buy orders did not buy, down to none.

What the plan meant for the household's own use (a discharge that covers its demand, a charge
from its own PV) is not an order and is left alone: only the part of a planned flow that the
market was to carry can go untraded. The rule is the platform's (:mod:`market.autotrading`
tracks each battery's state of charge by it) and the household's controller's, which carries it
out once the period has cleared.

Energy is integer Wh at the meter (positive charging); the losses are split evenly between
charging and discharging, as the plan counts them: ``sqrt(round-trip efficiency)`` each way.

Pure: no database, no clock.
"""

from __future__ import annotations

import math


def battery_dispatch_wh(planned_wh: int, unsold_wh: int, unbought_wh: int) -> int:
    """The battery's energy at the meter in a cleared period (Wh, positive charging): the plan's
    ``planned_wh``, a discharge less what the strategy's sell orders did not sell
    (``unsold_wh``), a charge less what its buy orders did not buy (``unbought_wh``)."""
    if unsold_wh < 0 or unbought_wh < 0:
        raise ValueError("what did not trade is never negative")
    if planned_wh < 0:
        return planned_wh + min(unsold_wh, -planned_wh)
    if planned_wh > 0:
        return planned_wh - min(unbought_wh, planned_wh)
    return 0


def battery_grid_wh(soc_before_wh: int, soc_after_wh: int, round_trip_efficiency: float) -> int:
    """The energy at the meter that moves a battery from one state of charge to the next (Wh,
    positive charging): charging ``dS / sqrt(eff)``, discharging ``dS x sqrt(eff)``, rounded."""
    change = soc_after_wh - soc_before_wh
    one_way = math.sqrt(round_trip_efficiency)
    return round(change / one_way) if change > 0 else round(change * one_way)


def stored_change_wh(grid_wh: int, round_trip_efficiency: float) -> int:
    """How much the state of charge moves for ``grid_wh`` at the meter (the inverse of
    :func:`battery_grid_wh`): charging ``E x sqrt(eff)``, discharging ``E / sqrt(eff)``, rounded."""
    one_way = math.sqrt(round_trip_efficiency)
    return round(grid_wh * one_way) if grid_wh > 0 else round(grid_wh / one_way)
