"""Polling over real Modbus on loopback: simulated gateways, pymodbus clients, injected faults.

No test sleeps to wait for something: ordering and overlap come from the timestamps the gateways
record as requests arrive (the event loop's clock), and the only time bounds are lower bounds or
generous upper bounds on things that take milliseconds.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest

from metering.emulator import SIMULATED_MODELS, Fault, Gateway, MeterProfile, SimulatedMeter
from metering.emulator import gateway as gateway_module
from metering.polling import (
    BreakerState,
    CircuitBreaker,
    MeterEndpoint,
    MeterReadError,
    Poller,
    PollResult,
    PollSettings,
    poll_fleet,
    read_meter,
)
from metering.readings import Quality
from tests.factories import SUMMER_NOON as T0
from tests.factories import ManualClock, ManualMonotonic, assert_matches, integrate_by_steps

FAST = PollSettings(timeout_s=0.5, retries=0, backoff_s=0.0)
"""Short timeouts and no retries, so that fault tests stay quick."""


def meters_for(
    models: Sequence[str], clock: Callable[..., Any], *, first_unit: int = 1
) -> list[SimulatedMeter]:
    """One meter per model, unit IDs from ``first_unit``, each with its own seed and PV."""
    return [
        SimulatedMeter(
            first_unit + i,
            model,
            MeterProfile(seed=100 + i, pv_peak_w=2500.0 * (i % 2), import_kwh_at_commissioning=1000.0 + i),
            meter_id=f"m{first_unit + i}-{model}",
            clock=clock,
        )
        for i, model in enumerate(models)
    ]


def run_with_gateways(gateways: Sequence[Gateway], scenario: Callable[[], Awaitable[Any]]) -> Any:
    """Start the gateways, run the scenario, stop them."""

    async def main() -> Any:
        for gateway in gateways:
            await gateway.start()
        try:
            return await scenario()
        finally:
            for gateway in gateways:
                await gateway.stop()

    return asyncio.run(main())


def by_id(results: Sequence[PollResult]) -> dict[str, PollResult]:
    return {result.meter_id: result for result in results}


# --- reading each model --------------------------------------------------------------------------


@pytest.mark.parametrize("framer", ["socket", "rtu"])
@pytest.mark.parametrize("model", SIMULATED_MODELS)
def test_each_model_reads_end_to_end(model, framer):
    clock = ManualClock()
    [meter] = meters_for([model], clock, first_unit=5)
    gateway = Gateway("127.0.0.1", 0, [meter], framer=framer)

    async def scenario():
        [endpoint] = gateway.endpoints()
        first = await read_meter(endpoint, settings=FAST, clock=clock)
        clock.advance(hours=3, minutes=7)
        second = await read_meter(endpoint, settings=FAST, clock=clock)
        return first, second

    first, second = run_with_gateways([gateway], scenario)
    assert first.meter_id == meter.meter_id
    assert first.polled_at == T0
    assert first.quality is Quality.GOOD, first.problems
    assert_matches(meter, first.values, T0)
    assert_matches(meter, second.values, clock())
    imported, exported = integrate_by_steps(meter.profile, T0, clock())
    step_kwh = 0.001 if model.startswith("sunspec2") and model < "sunspec210" else 0.2  # Wh, or 0.1 kWh steps
    assert second.values["import_kwh"] - first.values["import_kwh"] == pytest.approx(imported, abs=step_kwh)
    assert second.values["export_kwh"] - first.values["export_kwh"] == pytest.approx(exported, abs=step_kwh)


def test_a_sunspec_map_is_discovered_once_per_meter():
    clock = ManualClock()
    meters = meters_for(["sunspec203", "sunspec213"], clock)
    gateway = Gateway("127.0.0.1", 0, meters)

    async def scenario():
        async with Poller(gateway.endpoints(), settings=FAST, clock=clock) as poller:
            return await poller.poll_once(), await poller.poll_once(), dict(poller.sunspec_maps)

    first, second, maps = run_with_gateways([gateway], scenario)
    # Probe, 'SunS', the common model's header and the meter's header, then one read of the meter model.
    assert [r.attempts for r in first] == [5, 5]
    assert [r.attempts for r in second] == [1, 1]
    assert all(r.ok for r in first + second)
    assert sorted(m.model for m in maps.values()) == ["sunspec-203", "sunspec-213"]


def test_a_sunspec_endpoint_insists_on_its_model_number():
    [meter] = meters_for(["sunspec203"], ManualClock())
    gateway = Gateway("127.0.0.1", 0, [meter])

    async def scenario():
        endpoint = gateway.endpoints()[0]
        wrong = MeterEndpoint("wrong", endpoint.host, endpoint.port, endpoint.unit_id, "sunspec213")
        any_model = MeterEndpoint("any", endpoint.host, endpoint.port, endpoint.unit_id, "sunspec")
        return await poll_fleet([wrong, any_model], settings=FAST)

    wrong, any_model = run_with_gateways([gateway], scenario)
    assert wrong.reading is None
    assert "expected SunSpec model 213, found sunspec-203" in (wrong.error or "")
    assert any_model.ok


# --- many meters, many gateways ------------------------------------------------------------------


def test_thirty_unit_ids_on_one_gateway_in_one_cycle():
    clock = ManualClock()
    models = [SIMULATED_MODELS[i % len(SIMULATED_MODELS)] for i in range(30)]
    meters = meters_for(models, clock)
    gateway = Gateway("127.0.0.1", 0, meters)

    async def scenario():
        return await poll_fleet(gateway.endpoints(), settings=FAST, clock=clock)

    results = run_with_gateways([gateway], scenario)
    assert [r.meter_id for r in results] == [m.meter_id for m in meters]
    for meter, result in zip(meters, results):
        assert result.ok, result.error
        assert result.reading is not None
        assert_matches(meter, result.reading.values, T0)  # distinct seeds: a crossed wire would show
    # One request at a time, meter after meter: unit IDs arrive in polling order, never interleaved.
    units = [record.unit_id for record in gateway.requests]
    assert units == sorted(units)
    assert units[0] == 1
    assert units[-1] == 30


def test_gateways_are_polled_concurrently():
    clock = ManualClock()
    gateways = [
        Gateway("127.0.0.1", 0, meters_for(["sdm630"] * 20, clock)),
        Gateway("127.0.0.1", 0, meters_for(["em24"] * 20, clock)),
    ]

    async def scenario():
        endpoints = [e for gateway in gateways for e in gateway.endpoints()]
        return await poll_fleet(endpoints, settings=FAST, clock=clock)

    results = run_with_gateways(gateways, scenario)
    assert len(results) == 40
    assert all(r.ok for r in results)
    first_a, last_a = gateways[0].requests[0].received_s, gateways[0].requests[-1].received_s
    first_b, last_b = gateways[1].requests[0].received_s, gateways[1].requests[-1].received_s
    # Polled one after the other, one gateway's requests would all come before the other's.
    assert first_b < last_a
    assert first_a < last_b


def test_the_connection_is_kept_between_cycles():
    [meter] = meters_for(["sdm72"], ManualClock())
    gateway = Gateway("127.0.0.1", 0, [meter])
    clients: dict = {}

    async def scenario():
        endpoints = gateway.endpoints()
        first = await poll_fleet(endpoints, settings=FAST, clients=clients)
        client = clients[endpoints[0].lane_key]
        second = await poll_fleet(endpoints, settings=FAST, clients=clients)
        same = clients[endpoints[0].lane_key] is client and client.connected
        client.close()
        return first, second, same

    first, second, same = run_with_gateways([gateway], scenario)
    assert first[0].ok
    assert second[0].ok
    assert same


# --- faults --------------------------------------------------------------------------------------


def test_a_meter_that_never_answers_times_out_and_the_rest_are_read():
    clock = ManualClock()
    meters = meters_for(["sdm630", "sdm630", "sdm630"], clock)
    meters[1].fault = Fault.NO_ANSWER
    gateway = Gateway("127.0.0.1", 0, meters)
    settings = PollSettings(timeout_s=0.2, retries=1, backoff_s=0.01)

    async def scenario():
        started = time.monotonic()
        results = await poll_fleet(gateway.endpoints(), settings=settings, clock=clock)
        return results, time.monotonic() - started

    (ok_a, dead, ok_b), elapsed_s = run_with_gateways([gateway], scenario)
    assert ok_a.ok
    assert ok_b.ok
    assert dead.reading is None
    assert dead.error == "no answer within 0.2 s"
    assert dead.attempts == 2
    assert not dead.skipped
    assert meters[1].requests_received == 2  # gave up at its first block, after one retry
    assert elapsed_s >= 2 * 0.2


def test_an_unanswered_request_is_dropped_after_the_hold(monkeypatch):
    monkeypatch.setattr(gateway_module, "UNANSWERED_HOLD_S", 0.05)
    [meter] = meters_for(["sdm630"], ManualClock())
    meter.fault = Fault.NO_ANSWER
    gateway = Gateway("127.0.0.1", 0, [meter])

    async def scenario():
        # The hold's timer is due long before the poll's timeout, and the loop runs timers in order.
        [result] = await poll_fleet(gateway.endpoints(), settings=FAST)
        return result, gateway.held_requests

    result, held = run_with_gateways([gateway], scenario)
    assert result.error == "no answer within 0.5 s"
    assert held == 0


def test_an_exception_response_is_an_error_for_that_meter_only():
    clock = ManualClock()
    meters = meters_for(["em24", "sdm120", "sunspec213"], clock)
    meters[0].fault = Fault.EXCEPTION
    gateway = Gateway("127.0.0.1", 0, meters)

    async def scenario():
        return await poll_fleet(gateway.endpoints(), settings=FAST, clock=clock)

    failed, ok_a, ok_b = run_with_gateways([gateway], scenario)
    assert failed.reading is None
    assert "Modbus exception 4 (server device failure)" in (failed.error or "")
    assert ok_a.ok
    assert ok_b.ok


def test_a_late_answer_within_the_timeout_is_a_reading():
    clock = ManualClock()
    meters = meters_for(["sdm630", "em24"], clock)
    meters[0].fault, meters[0].late_s = Fault.LATE, 0.05
    gateway = Gateway("127.0.0.1", 0, meters)

    async def scenario():
        return await poll_fleet(gateway.endpoints(), settings=PollSettings(timeout_s=2.0), clock=clock)

    late, other = run_with_gateways([gateway], scenario)
    assert late.ok
    assert other.ok
    assert late.reading is not None
    assert_matches(meters[0], late.reading.values, T0)


def test_an_answer_after_the_timeout_is_not_taken_for_the_next_meters():
    clock = ManualClock()
    meters = meters_for(["sdm630", "sdm630"], clock)
    meters[0].fault, meters[0].late_s = Fault.LATE, 0.3
    gateway = Gateway("127.0.0.1", 0, meters)

    async def scenario():
        return await poll_fleet(
            gateway.endpoints(), settings=PollSettings(timeout_s=0.1, retries=0), clock=clock
        )

    late, other = run_with_gateways([gateway], scenario)
    assert late.reading is None
    assert "no answer" in (late.error or "")
    assert other.ok
    assert other.reading is not None
    assert_matches(meters[1], other.reading.values, T0)


def test_a_counter_reset_shows_as_a_lower_counter():
    clock = ManualClock()
    meters = meters_for(["sdm630", "em24"], clock)
    gateway = Gateway("127.0.0.1", 0, meters)

    async def scenario():
        async with Poller(gateway.endpoints(), settings=FAST, clock=clock) as poller:
            before = await poller.poll_once()
            for meter in meters:
                meter.fault = Fault.COUNTER_RESET
            at_reset = await poller.poll_once()
            clock.advance(hours=1)
            after = await poller.poll_once()
            return before, at_reset, after

    before, at_reset, after = run_with_gateways([gateway], scenario)
    for meter, b, r, a in zip(meters, before, at_reset, after):
        assert b.reading
        assert r.reading
        assert a.reading
        assert r.reading.values["import_kwh"] == 0.0 < b.reading.values["import_kwh"]
        assert r.reading.quality is Quality.GOOD
        assert meter.fault is None  # once
        expected, _ = integrate_by_steps(meter.profile, T0, clock())
        assert a.reading.values["import_kwh"] == pytest.approx(expected, abs=0.06)


@pytest.mark.parametrize("model", ["sdm630", "em24", "sunspec203", "sunspec213"])
def test_nan_counters_make_an_invalid_reading_without_them(model):
    clock = ManualClock()
    meters = meters_for([model, "sdm120"], clock)
    meters[0].fault = Fault.NAN
    gateway = Gateway("127.0.0.1", 0, meters)

    async def scenario():
        return await poll_fleet(gateway.endpoints(), settings=FAST, clock=clock)

    nan, other = run_with_gateways([gateway], scenario)
    assert nan.reading is not None
    assert nan.error is None
    assert nan.reading.quality is Quality.INVALID
    assert "import_kwh" not in nan.reading.values
    assert "export_kwh" not in nan.reading.values
    assert any(problem.startswith("import_kwh:") for problem in nan.reading.problems)
    assert nan.reading.values["power_w"] == pytest.approx(meters[0].values_at(T0)["power_w"], abs=1.0)
    assert other.ok


# --- circuit breakers ----------------------------------------------------------------------------


def test_circuit_breaker_opens_cools_down_and_probes():
    now = ManualMonotonic()
    breaker = CircuitBreaker(failures_to_open=2, cooldown_s=60.0, monotonic=now)
    assert breaker.allow_request()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow_request()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow_request()
    now.now_s += 59.0
    assert not breaker.allow_request()
    assert breaker.seconds_until_probe() == pytest.approx(1.0)
    now.now_s += 1.0
    assert breaker.allow_request()
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.record_failure()  # a failed probe reopens at once
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow_request()
    now.now_s += 60.0
    assert breaker.allow_request()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.failures == 0


def test_a_failing_meter_is_skipped_until_its_cooldown_passes():
    clock, monotonic = ManualClock(), ManualMonotonic()
    meters = meters_for(["sdm120", "sdm120"], clock)
    meters[0].fault = Fault.EXCEPTION
    gateway = Gateway("127.0.0.1", 0, meters)
    settings = PollSettings(timeout_s=0.5, retries=0, breaker_failures=2, breaker_cooldown_s=60.0)

    async def scenario():
        seen = []
        async with Poller(gateway.endpoints(), settings=settings, clock=clock, monotonic=monotonic) as poller:

            async def cycle():
                [result, other] = await poller.poll_once()
                assert other.ok
                seen.append((result.skipped, result.reading is not None, meters[0].requests_received))

            await cycle()  # fails (1)
            await cycle()  # fails (2): opens
            await cycle()  # skipped
            monotonic.now_s += 59.0
            await cycle()  # still skipped
            monotonic.now_s += 1.0
            await cycle()  # probe fails: open again
            await cycle()  # skipped
            meters[0].fault = None
            monotonic.now_s += 60.0
            await cycle()  # probe succeeds: closed
            await cycle()  # polled normally
            return seen, poller.breaker(meters[0].meter_id).state

    seen, state = run_with_gateways([gateway], scenario)
    # sdm120 reads two blocks; an exception on the first does not stop the second.
    assert seen == [
        (False, False, 2),
        (False, False, 4),
        (True, False, 4),
        (True, False, 4),
        (False, False, 6),
        (True, False, 6),
        (False, True, 8),
        (False, True, 10),
    ]
    assert state is BreakerState.CLOSED


# --- connections ---------------------------------------------------------------------------------


def test_a_restarted_gateway_is_reconnected_to():
    clock = ManualClock()
    meters = meters_for(["sdm630", "em24", "sdm72"], clock)
    gateway = Gateway("127.0.0.1", 0, meters)

    async def scenario():
        async with Poller(gateway.endpoints(), settings=FAST, clock=clock) as poller:
            before = await poller.poll_once()
            await gateway.stop()
            while_down = await poller.poll_once()
            await gateway.start()
            deadline = time.monotonic() + 10.0
            cycles_to_recover = 0
            while True:
                cycles_to_recover += 1
                after = await poller.poll_once()
                if all(r.ok for r in after) or time.monotonic() > deadline:
                    break
            return before, while_down, after, cycles_to_recover, dict(poller.breakers)

    before, while_down, after, cycles, breakers = run_with_gateways([gateway], scenario)
    assert all(r.ok for r in before)
    assert all(r.reading is None for r in while_down)
    assert while_down[-1].error == while_down[1].error
    assert "unreachable" in (while_down[1].error or "")
    assert [r.attempts for r in while_down[1:]] == [0, 0]  # no more tries once the gateway is down
    assert all(r.ok for r in after)
    assert cycles <= 2
    assert all(breaker.state is BreakerState.CLOSED for breaker in breakers.values())


def test_read_meter_fails_fast_and_clearly_when_nothing_listens():
    async def free_port() -> int:
        gateway = Gateway("127.0.0.1", 0, [])
        await gateway.start()
        await gateway.stop()
        return gateway.port

    async def scenario():
        endpoint = MeterEndpoint("house-7", "127.0.0.1", await free_port(), 1, "sdm630")
        started = time.monotonic()
        with pytest.raises(
            MeterReadError, match=r"house-7: unit 1 on 127\.0\.0\.1:\d+ \(tcp\): .*cannot connect"
        ):
            await read_meter(endpoint, settings=PollSettings(timeout_s=0.3))
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 5.0


def test_an_unknown_unit_id_is_an_error_from_the_gateway():
    [meter] = meters_for(["sdm630"], ManualClock())
    gateway = Gateway("127.0.0.1", 0, [meter])

    async def scenario():
        endpoint = gateway.endpoints()[0]
        absent = MeterEndpoint("absent", endpoint.host, endpoint.port, 77, "sdm630")
        return await poll_fleet([absent, endpoint], settings=FAST)

    absent, present = run_with_gateways([gateway], scenario)
    assert absent.reading is None
    assert "exception 11" in (absent.error or "")
    assert absent.attempts == 1  # a meter that is not there: no point reading its other block
    assert present.ok


def test_unit_switch_pause_spaces_requests_to_different_units():
    clock = ManualClock()
    meters = meters_for(["sdm630"] * 4, clock)
    gateway = Gateway("127.0.0.1", 0, meters)
    pause_s = 0.05

    async def scenario():
        return await poll_fleet(
            gateway.endpoints(), settings=PollSettings(unit_switch_pause_s=pause_s), clock=clock
        )

    results = run_with_gateways([gateway], scenario)
    assert all(r.ok for r in results)
    records = list(gateway.requests)
    assert len(records) == 8
    switches = [(a, b) for a, b in itertools.pairwise(records) if a.unit_id != b.unit_id]
    assert len(switches) == 3
    for before, after in switches:
        assert after.received_s - before.received_s >= 0.9 * pause_s


# --- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"transport": "udp"}, "transport"),
        ({"unit_id": 256}, "unit_id"),
        ({"unit_id": 248, "transport": "rtu", "port": 9600}, "unit_id"),
        ({"port": 0}, "port"),
        ({"port": 0, "transport": "rtu"}, "baud"),
        ({"model": "SDM630"}, "lower-case"),
        ({"meter_id": ""}, "meter_id"),
    ],
)
def test_bad_endpoints_are_refused(kwargs, message):
    fields = {"meter_id": "m", "host": "127.0.0.1", "port": 502, "unit_id": 1, "model": "sdm630"} | kwargs
    with pytest.raises(ValueError, match=message):
        MeterEndpoint(**fields)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeout_s": 0}, "timeout_s"),
        ({"retries": -1}, "retries"),
        ({"backoff_s": -0.1}, "backoff_s"),
        ({"breaker_failures": 0}, "breaker_failures"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PollSettings(**kwargs)


def test_a_poller_refuses_duplicate_meter_ids():
    endpoint = MeterEndpoint("m", "127.0.0.1", 502, 1, "sdm630")
    with pytest.raises(ValueError, match="given twice"):
        Poller([endpoint, endpoint])


def test_meters_that_cannot_be_polled_are_skipped_and_the_others_read():
    """An unknown model, a serial port given a second baud rate (or serial without pyserial): each
    such meter is reported as skipped, every cycle, with the reason; the good meter is read."""
    clock = ManualClock()
    [meter] = meters_for(["sdm630"], clock, first_unit=1)
    gateway = Gateway("127.0.0.1", 0, [meter])
    serial = [
        MeterEndpoint(f"s{b}", "/dev/ttyUSB0", b, 1 + b % 2, "sdm120", transport="rtu") for b in (9600, 19200)
    ]

    async def scenario():
        [good] = gateway.endpoints()
        unknown = MeterEndpoint("n", good.host, good.port, 2, "sdm999")
        async with Poller([good, unknown, *serial], settings=FAST, clock=clock) as poller:
            return poller.unusable, [await poller.poll_once() for _ in range(2)]

    unusable, cycles = run_with_gateways([gateway], scenario)
    assert set(unusable) == (
        {"n", "s19200"} if importlib.util.find_spec("serial") else {"n", "s9600", "s19200"}
    )
    assert "sdm999" in unusable["n"]
    for results in cycles:
        assert [r.meter_id for r in results] == [meter.meter_id, "n", "s9600", "s19200"]
        results_by_id = by_id(results)
        assert results_by_id[meter.meter_id].ok
        for meter_id, reason in unusable.items():
            assert (results_by_id[meter_id].skipped, results_by_id[meter_id].attempts) == (True, 0)
            assert results_by_id[meter_id].error == f"not polled: {reason}"


def test_lanes_are_one_per_connection():
    endpoints = [
        MeterEndpoint("a", "10.0.0.1", 502, 1, "sdm630"),
        MeterEndpoint("b", "10.0.0.1", 502, 2, "sdm630"),
        MeterEndpoint("c", "10.0.0.1", 502, 3, "sdm630", transport="rtu-over-tcp"),
        MeterEndpoint("d", "10.0.0.2", 502, 1, "em24"),
        MeterEndpoint("e", "10.0.0.1", 503, 1, "sdm120"),
    ]
    assert Poller(endpoints).lane_keys == [
        ("tcp", "10.0.0.1", 502),
        ("rtu-over-tcp", "10.0.0.1", 502),
        ("tcp", "10.0.0.2", 502),
        ("tcp", "10.0.0.1", 503),
    ]
