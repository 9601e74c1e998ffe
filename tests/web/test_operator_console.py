"""The operator's console pages through real HTTP requests, on both databases: who may see and do
what (the authorisation matrix over every page and form), Households (search, paging, invite,
deactivate), the Audit log, Settlement runs, Meters and the Overview."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from decimal import Decimal

from sqlmodel import select

from api.leader import JobLeader
from market.access import record_audit
from market.accounts import end_sessions
from market.clearing import clear_interval
from market.database import create_database_engine, transaction
from market.intervals import period_at
from market.meter_data import store_readings
from market.orders import place_order
from market.participants import register_household
from market.rules import MarketRules
from market.settlement import INITIAL, SettlementConfig, settle
from market.tables import AuditEventRow, LedgerLineRow, ParticipantRow, SettlementRunRow
from metering.readings import Quality, Reading
from tests.factories import mpan, refresh_interval_energy, register_street_meters
from tests.web.conftest import NOW

SIGN_IN = "/sign-in"
NEXT = period_at(NOW + timedelta(hours=1))
MINUTE = timedelta(minutes=1)
EARLIER = period_at(NOW - timedelta(hours=3))  # Sun 6 Dec 2026, 09:00-09:30 GMT, period 19


def _settled_interval(engine, period=EARLIER, read=("M1", "M2")) -> int:  # type: ignore[no-untyped-def]
    """Meters M1..M3 for H1..H3; H1 buys 2 kWh at 20 p and H3 sells 3 kWh from 5 p in ``period``,
    which is cleared; M1 and M2 are read at its boundaries, M3 never (so H3 waits); the interval's
    initial settlement run, whose id is returned."""
    with transaction(engine) as session:
        register_street_meters(session, now=NOW)
        for home, side, kwh, price in (("H1", "buy", "2", "20"), ("H3", "sell", "3", "5")):
            place_order(
                session,
                rules=MarketRules(),
                participant_id=home,
                period=period,
                side=side,
                quantity_kwh=Decimal(kwh),
                price_p_per_kwh=Decimal(price),
                now=period.start_utc - timedelta(hours=2),
            )
    clear_interval(engine, period=period, rules=MarketRules(), now=period.start_utc, triggered_by="test")
    with transaction(engine) as session:
        counters = {"M1": (100, 102.4), "M2": (50, 51), "M3": (10, 10)}
        for meter, (start, end) in ((m, counters[m]) for m in read):
            store_readings(
                session,
                [
                    Reading(meter, at, None, {"import_kwh": kwh, "export_kwh": 0}, Quality.GOOD)
                    for at, kwh in ((period.start_utc, start), (period.end_utc, end))
                ],
            )
            refresh_interval_energy(session, meter, [period], now=period.end_utc)
    outcome = settle(
        engine,
        period=period,
        run_type=INITIAL,
        config=SettlementConfig(),
        now=period.end_utc + timedelta(hours=1),
        triggered_by="test",
    )
    return outcome.run.id


def _errors(html: str) -> list[str]:
    return re.findall(r'class="error"[^>]*>([^<]*)<', html)


def _rows(html: str) -> list[str]:
    """The header cell of each body row of the page's first table."""
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0] if "<tbody>" in html else ""
    return [
        re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r'<th scope="row">(.*?)</th>', body, re.S)
    ]


def test_the_authorisation_matrix_over_the_console(web, engine):
    """Each console page and form for a visitor, a household and the operator."""
    run = _settled_interval(engine)
    households = {"none": 303, "H2": 403, "H1": 403, "OPS": 200}
    pages = [
        "/operator/households",
        "/operator/households?q=H1&page=1",
        "/operator/households/H3/deactivate",
        "/operator/audit",
        "/operator/audit?actor=H1&page=2",
        "/operator/settlement",
        "/operator/settlement?date=2026-12-06&page=1",
        f"/operator/settlement/{run}",
        "/operator/meters",
        "/operator/meters?participant=H1&quality=good&page=2",
        "/operator",
    ]
    forms = [("/operator/households/H3/deactivate", {"reason": "moved away"})]
    wrong = []
    for path in pages:
        for who, status in households.items():
            response = web[who].client.get(path)
            if response.status_code != status:
                wrong.append((who, "GET", path, response.status_code, status))
            if who == "none" and response.headers.get("location", "").split("?")[0] != SIGN_IN:
                wrong.append((who, "GET", path, response.headers.get("location"), SIGN_IN))
    for path, data in forms:
        for who, status in households.items():
            response = web[who].client.post(path, data={**data, "csrf_token": web[who].csrf})
            if response.status_code != status:
                wrong.append((who, "POST", path, response.status_code, status))
    assert wrong == []
    with transaction(engine) as session:
        row = session.get(ParticipantRow, "H3")
        assert row is not None
        assert not row.active


def test_households_are_searched_and_paged_with_the_search_kept(web, engine):
    ops = web["OPS"].client
    with transaction(engine) as session:
        for i in range(60):
            register_household(
                session,
                participant_id=f"X{i:02d}",
                display_name=f"Flat {i}",
                mpan=mpan(100 + i),
                node_id="F2",
                now=NOW,
            )
    first = ops.get("/operator/households?q=flat")
    assert first.status_code == 200
    assert _rows(first.text)[0].startswith("X00: Flat 0")
    assert len(_rows(first.text)) == 50
    assert "Showing 1 to 50 of 60" in first.text
    assert 'href="/operator/households?q=flat&amp;page=2"' in first.text
    second = ops.get("/operator/households?q=flat&page=2")
    assert len(_rows(second.text)) == 10
    assert 'href="/operator/households?q=flat"' in second.text  # previous: page 1 keeps the search
    assert "Next page" not in second.text
    # By MPAN, by node, by id; a nonsense page number is page 1.
    assert _rows(ops.get(f"/operator/households?q={mpan(2)}").text) == ["H2: Home H2"]
    assert len(_rows(ops.get("/operator/households?q=f1").text)) == 2
    assert _rows(ops.get("/operator/households?q=h3&page=x").text) == ["H3: Home H3"]
    assert "No household matches" in ops.get("/operator/households?q=%25").text
    # H1 has an account; X00 is invited once the Invite page (prefilled from the row) is used.
    page = ops.get("/operator/households?q=H1").text
    assert "Has an account" in page
    assert 'href="/operator/invite?participant_id=H1"' in page
    invite = ops.get("/operator/invite?participant_id=X00").text
    assert 'name="participant_id" value="X00"' in invite
    assert "X00: " in invite  # the chosen household named beside the form
    assert "has an account" in ops.get("/operator/invite?participant_id=H1").text
    unknown = ops.post("/operator/invite", data={"participant_id": "NOPE", "csrf_token": web["OPS"].csrf})
    assert unknown.status_code == 422
    assert 'id="participant_id-error"' in unknown.text
    assert 'name="participant_id" value="NOPE"' in unknown.text
    assert (
        ops.post(
            "/operator/invite", data={"participant_id": "X00", "csrf_token": web["OPS"].csrf}
        ).status_code
        == 200
    )
    assert "Invited, not yet joined" in ops.get("/operator/households?q=X00").text


def test_deactivating_a_household_ends_its_sessions_and_says_what_was_done(web, engine):
    ops, h1 = web["OPS"], web["H1"]
    with transaction(engine) as session:
        place_order(
            session,
            rules=MarketRules(),
            participant_id="H1",
            period=NEXT,
            side="buy",
            quantity_kwh=Decimal("1"),
            price_p_per_kwh=Decimal("10"),
            now=NOW,
        )
    asked = ops.client.get("/operator/households/H1/deactivate")
    assert "Reason" in asked.text
    assert 'name="csrf_token"' in asked.text
    too_long = ops.client.post(
        "/operator/households/H1/deactivate", data={"reason": "x" * 301, "csrf_token": ops.csrf}
    )
    assert too_long.status_code == 422
    assert _errors(too_long.text)[-1] == "The reason is too long: keep it to 300 characters."
    assert h1.client.get("/today").status_code == 200  # nothing done
    forged = ops.client.post("/operator/households/H1/deactivate", data={"reason": "x", "csrf_token": "x"})
    assert forged.status_code == 403
    done = ops.client.post(
        "/operator/households/H1/deactivate", data={"reason": "moved away", "csrf_token": ops.csrf}
    )
    assert done.status_code == 200
    assert "H1 is deactivated." in done.text
    assert "1 web session ended" in done.text
    assert "1 open order cancelled" in done.text
    assert h1.client.get("/today").status_code == 303  # signed out at once
    again = ops.client.post("/operator/households/H1/deactivate", data={"reason": "", "csrf_token": ops.csrf})
    assert again.status_code == 422
    assert "H1 is already inactive: nothing was done." in _errors(again.text)
    page = ops.client.get("/operator/households?q=H1").text
    assert "Inactive" in page
    assert "/operator/households/H1/deactivate" not in page
    assert ops.client.get("/operator/households/OPS/deactivate").status_code == 404
    assert ops.client.get("/operator/households/NOPE/deactivate").status_code == 404
    assert ops.client.get(f"/operator/households/{'x' * 65}/deactivate").status_code == 404
    with transaction(engine) as session:
        assert end_sessions(session, participant_id="H1", now=NOW) == 0
        # One audit row for the deactivation: the request's, saying what was done and why.
        [row] = session.exec(
            select(AuditEventRow).where(AuditEventRow.detail.startswith("deactivated H1"))  # type: ignore[attr-defined]
        ).all()
        assert (row.method, row.path, row.actor, row.status_code) == (
            "POST",
            "/operator/households/H1/deactivate",
            "OPS",
            200,
        )
        assert row.detail.endswith("reason: moved away")
        requests = select(AuditEventRow).where(AuditEventRow.path == "/operator/households/H1/deactivate")
        assert sorted(r.status_code for r in session.exec(requests)) == [200, 403, 422, 422]


def test_the_audit_log_newest_first_filtered_by_actor_and_paged(web, engine):
    ops = web["OPS"].client
    with transaction(engine) as session:
        for i in range(55):
            record_audit(
                session,
                at=NOW + timedelta(minutes=i),
                actor="H2",
                method="POST",
                path=f"/v1/orders/{i}",
                status_code=201 if i % 2 else 409,
            )
    # The console's own forms are audited too.
    ops.post("/operator/households/H3/deactivate", data={"reason": "", "csrf_token": web["OPS"].csrf})
    everyone = ops.get("/operator/audit").text
    assert "POST /operator/households/H3/deactivate" in everyone
    page = ops.get("/operator/audit?actor=H2")
    assert page.status_code == 200
    rows = _rows(page.text)
    assert len(rows) == 50
    assert rows[0] == "Sun 6 Dec 2026, 12:54 (period 26)"  # newest first, London time (GMT now)
    assert "/v1/orders/54" in page.text
    assert "Done (201)" in page.text
    assert "Refused (409)" in page.text
    assert "POST /operator/households" not in page.text
    assert 'href="/operator/audit?actor=H2&amp;page=2"' in page.text
    second = ops.get("/operator/audit?actor=H2&page=2")
    assert len(_rows(second.text)) == 5
    assert 'href="/operator/audit?actor=H2"' in second.text
    assert "Next page" not in second.text
    assert "No events by nobody" in ops.get("/operator/audit?actor=nobody").text


def test_settlement_runs_by_date_with_their_balance_and_lines(web, engine):
    ops = web["OPS"].client
    run = _settled_interval(engine)
    page = ops.get("/operator/settlement?date=2026-12-06")
    assert page.status_code == 200
    assert _rows(page.text) == [f"Run {run}"]
    row = page.text.split("<tbody>")[1]
    assert "Sun 6 Dec, 09:00\u201309:30 (period 19)" in row
    assert "Initial" in row
    assert "Partial: some households wait for meter data" in row
    assert "Balances" in row
    assert (
        "No settlement runs for Saturday 5 December 2026."
        in ops.get("/operator/settlement?date=2026-12-05").text
    )
    wrong = ops.get("/operator/settlement?date=6/12/2026")
    assert wrong.status_code == 422
    assert _errors(wrong.text) == ["Give the date as year-month-day, for example 2026-12-06."]
    detail = ops.get(f"/operator/settlement/{run}")
    assert detail.status_code == 200
    assert "Balances: every penny paid into the pool is paid out" in detail.text
    assert "H3: no meter data for the interval" in detail.text
    assert "Local trade: bought" in detail.text
    assert "household:H1" in detail.text
    assert "Showing 1 to" in detail.text
    assert ops.get("/operator/settlement/999999").status_code == 404
    for wrong_id in ("x", "0", "9" * 30, "-1"):
        missing = ops.get(f"/operator/settlement/{wrong_id}")
        assert missing.status_code == 404, wrong_id
        assert "There is no settlement run" in missing.text


def test_money_is_shown_exactly():
    from web.operator_console_pages import exact_pounds

    assert [exact_pounds(cp) for cp in (0, 4000, 4025, -10000, 123456789, 1)] == [
        "£0.00",
        "£0.40",
        "£0.4025",
        "\u2212£1.00",
        "£12,345.6789",
        "£0.0001",
    ]


def test_meters_with_their_latest_reading_filtered_by_household_and_quality(web, engine):
    ops = web["OPS"].client
    _settled_interval(engine)  # M1 and M2 last read at 09:30, M3 never
    with transaction(engine) as session:
        store_readings(
            session,
            [
                Reading(
                    "M1",
                    NOW - timedelta(minutes=1),
                    None,
                    {"export_kwh": 0},
                    Quality.INVALID,
                    ("import_kwh: NaN",),
                ),
                Reading(
                    "M2",
                    NOW - timedelta(minutes=2),
                    None,
                    {"import_kwh": 52, "export_kwh": 0},
                    Quality.SUSPECT,
                ),
            ],
        )

    def meters(query: str) -> list[str]:
        page = ops.get(f"/operator/meters{query}")
        assert page.status_code == 200
        return [row.split(" ")[0] for row in _rows(page.text)]

    every = ops.get("/operator/meters").text
    assert meters("") == ["M1", "M2", "M3"]
    assert "Sun 6 Dec 2026, 11:59 (period 24)" in every
    assert "<strong>Failing</strong>: invalid reading" in every
    assert "import_kwh: NaN" in every
    assert "<strong>Failing</strong>: never read" in every
    assert meters("?quality=suspect") == ["M2"]
    assert meters("?quality=invalid") == ["M1"]
    assert meters("?quality=none") == ["M3"]
    assert meters("?quality=failing") == ["M1", "M3"]
    assert meters("?participant=H2") == ["M2"]
    assert meters("?participant=H2&quality=invalid") == []
    assert meters("?quality=nonsense") == ["M1", "M2", "M3"]
    web["clock"].moment = NOW + 20 * MINUTE  # nothing read for 20 minutes: all fail
    assert meters("?quality=failing") == ["M1", "M2", "M3"]
    late = ops.get("/operator/meters?participant=H2").text
    assert "<strong>Failing</strong>: not read for 22 min" in late


class _Idle:
    """A job that does nothing: the job leader only needs something to start."""

    def start(self) -> None:
        pass

    def shutdown(self) -> None:
        pass


def _wait_for(condition, seconds: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_the_overview_with_no_alert_when_all_is_well(web, engine, database_url):
    ops = web["OPS"].client
    _settled_interval(engine, period_at(NOW), read=("M1", "M2", "M3"))  # 12:00-12:30, cleared
    other = create_database_engine(database_url)
    leader = JobLeader(other, [_Idle()], retry_s=0.05)  # as another process would
    leader.start()
    try:
        _wait_for(lambda: leader.leading)
        page = ops.get("/operator")
    finally:
        leader.shutdown()
        other.dispose()
    assert page.status_code == 200
    text = page.text
    assert "No open alerts" in text
    assert "Alert:" not in text
    assert "Sun 6 Dec 2026, 12:00, in period 25 (12:00\u201312:30)" in text
    assert "Sun 6 Dec, 12:00\u201312:30 (period 25)" in text  # the last cleared interval
    assert "None: clearing is up to date" in text
    assert "A process holds the job lock" in text
    assert "No meter is failing." in text
    assert "Yes (1 run)" in text
    assert "; balances" in text
    assert "3 (3 active)" in text  # the households; the invitation count stays
    assert "Households signed up to the web app</dt><dd>2<" in text


def test_the_overview_names_each_open_alert_in_plain_words(web, engine):
    ops = web["OPS"].client
    run = _settled_interval(engine)  # 09:00-09:30, and nothing since; M3 never read
    with transaction(engine) as session:
        stored = session.get(SettlementRunRow, run)
        assert stored is not None
        session.add(
            LedgerLineRow(
                run_id=run,
                interval_start_utc=stored.interval_start_utc,
                length_minutes=30,
                settlement_date=stored.settlement_date,
                period=stored.period,
                kind="rounding",
                debit="household:H1",
                credit="pool",
                amount_cp=125,
                energy_wh=0,
            )
        )
    text = ops.get("/operator").text
    alerts = [
        re.sub(r"<[^>]+>", "", item).strip()
        for item in re.findall(r"<li><strong>Alert:</strong>(.*?)</li>", text)
    ]
    assert alerts == [
        "Job leader: no process holds the job lock: nothing clears or settles.",
        "Clearing is 2 h 35 min behind: the interval after Sun 6 Dec, 09:00\u201309:30 (period 19) "
        "is past its gate and not cleared.",
        f"1 settlement run does not balance (run {run}).",
        "3 meters are failing (never read, not read recently, or an invalid reading).",
    ]
    assert "2 h 35 min behind the clock" in text
    assert "<strong>does not balance</strong> (\u00a30.0125 left in the pool)" in text
    assert "<strong>No</strong>: 1 of 1 runs leave money in the pool" in text
    assert "M3 (H3): never read" in text
    assert 'href="/operator/meters?quality=failing"' in text
    # Seen again: a run that does not balance is summed again each time, never taken as settled.
    assert f"1 settlement run does not balance (run {run})." in ops.get("/operator").text
    # The run's own pages say so too.
    assert "Does not balance" in ops.get("/operator/settlement").text
    assert "£0.0125 left in the pool" in ops.get(f"/operator/settlement/{run}").text
