"""The operator's read-only queries (market.monitoring): households found by search, whether runs
balance (as market.settlement.pool_balance_cp sums each run), and the last cleared interval."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from market.clearing import latest_cleared_period
from market.database import transaction
from market.errors import NotFoundError
from market.intervals import period_at
from market.monitoring import (
    find_households,
    list_settlement_runs,
    settlement_run_ids,
    settlement_run_lines,
    unbalanced_runs,
)
from market.participants import register_household
from market.settlement import INITIAL, SettlementConfig, get_settlement_run, pool_balance_cp, settle
from market.tables import LedgerLineRow
from tests.factories import mpan, seed_cleared_metered_interval, seed_market

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
PERIOD = period_at(NOW + timedelta(hours=1))


def test_households_are_found_by_id_name_mpan_or_node_with_like_wildcards_taken_literally(engine):
    with transaction(engine) as session:
        seed_market(session, now=NOW)
        register_household(
            session, participant_id="H_9", display_name="100% green", mpan=mpan(9), node_id="F2", now=NOW
        )
    with transaction(engine) as session:

        def ids(query: str, **page: int) -> list[str]:
            return [h.id for h in find_households(session, query=query, **page)[0]]

        assert ids("") == ["H1", "H2", "H3", "H_9"]  # households only: not the operator
        assert ids("h_") == ["H_9"]  # "_" is no wildcard
        assert ids("%") == ["H_9"]  # nor "%"
        assert ids("HOME H2") == ["H2"]
        assert ids(mpan(3)) == ["H3"]
        assert ids("f2") == ["H3", "H_9"]
        assert ids("", limit=2, offset=2) == ["H3", "H_9"]
        assert find_households(session, query="h", limit=1)[1] == 4


def test_a_run_balances_when_its_pool_nets_to_zero_and_its_lines_are_listed(engine):
    seed_cleared_metered_interval(engine, PERIOD, now=NOW)
    with transaction(engine) as session:
        assert latest_cleared_period(session, length_minutes=30) == PERIOD
        assert latest_cleared_period(session, length_minutes=15) is None
        assert list_settlement_runs(session) == ([], 0)
    run = settle(
        engine,
        period=PERIOD,
        run_type=INITIAL,
        config=SettlementConfig(),
        now=PERIOD.end_utc,
        triggered_by="test",
    ).run
    with transaction(engine) as session:
        assert settlement_run_ids(session) == [run.id]
        assert get_settlement_run(session, run.id) == run
        with pytest.raises(NotFoundError):
            get_settlement_run(session, run.id + 1)
        runs, total = list_settlement_runs(session, settlement_date=PERIOD.settlement_date)
        assert total == 1
        assert [(r.id, r.period, r.run_type, r.sequence, r.status, r.lines) for r in runs] == [
            (run.id, run.period, run.run_type, run.sequence, run.status, run.lines)
        ]
        assert (
            list_settlement_runs(session, settlement_date=PERIOD.settlement_date - timedelta(days=1))[1] == 0
        )
        lines, count = settlement_run_lines(session, run_id=run.id, limit=3)
        assert count == run.lines
        assert len(lines) == 3
        assert unbalanced_runs(session) == {}
        assert unbalanced_runs(session, run_ids=[run.id]) == {}
        session.add(
            LedgerLineRow(
                run_id=run.id,
                interval_start_utc=PERIOD.start_utc,
                length_minutes=30,
                settlement_date=PERIOD.settlement_date,
                period=PERIOD.period,
                kind="rounding",
                debit="household:H1",
                credit="pool",
                amount_cp=7,
                energy_wh=0,
            )
        )
    with transaction(engine) as session:
        assert pool_balance_cp(session, run_id=run.id) == 7
        assert unbalanced_runs(session) == {run.id: 7}
        assert unbalanced_runs(session, run_ids=[run.id]) == {run.id: 7}
        assert unbalanced_runs(session, run_ids=[]) == {}
