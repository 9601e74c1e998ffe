"""The meter simulator: profiles, register images, faults, gateways and fleets.

Profiles and register images are checked without a network (hand-solvable counters, a hand-rolled
integral, decoding the registers a meter writes); gateways over real Modbus on loopback with
pymodbus's own client.
"""

from __future__ import annotations

import asyncio
import math
from array import array
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.constants import ExcCodes

from metering.emulator import (
    SIMULATED_MODELS,
    Fault,
    Gateway,
    MeterFleet,
    MeterProfile,
    SeriesProfile,
    SimulatedMeter,
    serve_fleet,
)
from metering.readings import Quality, make_reading
from metering.registers import decoder_for, plan_reads
from metering.sunspec import discover_sunspec
from tests.factories import SUMMER_NOON, ManualClock, assert_matches, integrate_by_steps

"""A summer noon: PV exports."""
COMMISSIONED = datetime(2025, 1, 1, tzinfo=UTC)
T0 = SUMMER_NOON


def registers_of(meter: SimulatedMeter) -> tuple[int, list[int]]:
    """The meter's first register and its registers as they are after one read."""
    registers = meter.blank_registers()
    meter.fill_registers(registers)
    return meter.first_address, registers


def decode_from(register_map, first: int, registers: list[int]) -> dict[str, float]:
    blocks = {b: registers[b.address - first : b.address - first + b.count] for b in plan_reads(register_map)}
    return decoder_for(register_map).decode(blocks)


# --- profiles ------------------------------------------------------------------------------------


def test_constant_demand_gives_hand_solvable_counters():
    profile = MeterProfile(
        base_load_w=1000.0,
        peak_load_w=1000.0,
        noise=0.0,
        commissioned_at=COMMISSIONED,
        import_kwh_at_commissioning=100.0,
        export_kwh_at_commissioning=7.0,
    )
    assert profile.net_power_w(COMMISSIONED + timedelta(hours=5)) == pytest.approx(1000.0)
    # 1 kW for 90 minutes is 1.5 kWh; for 10 days and 6 hours, 246 kWh.
    assert profile.counters_kwh(COMMISSIONED + timedelta(minutes=90)) == pytest.approx((101.5, 7.0))
    assert profile.counters_kwh(COMMISSIONED + timedelta(days=10, hours=6)) == pytest.approx((346.0, 7.0))


def test_counters_read_their_starting_values_before_commissioning():
    profile = MeterProfile(commissioned_at=COMMISSIONED, import_kwh_at_commissioning=12.5)
    assert profile.counters_kwh(COMMISSIONED - timedelta(days=3)) == (12.5, 0.0)
    assert profile.counters_kwh(COMMISSIONED) == pytest.approx((12.5, 0.0))


@settings(max_examples=60, deadline=None)
@given(
    start_s=st.floats(min_value=0, max_value=5 * 86_400),
    length_s=st.floats(min_value=0, max_value=2 * 86_400),
    seed=st.integers(min_value=0, max_value=1000),
)
def test_counters_are_the_exact_integrals_of_net_power(start_s, length_s, seed):
    profile = MeterProfile(seed=seed, pv_peak_w=4000.0, commissioned_at=COMMISSIONED)
    start = COMMISSIONED + timedelta(seconds=start_s)
    end = start + timedelta(seconds=length_s)
    import_a, export_a = profile.counters_kwh(start)
    import_b, export_b = profile.counters_kwh(end)
    walked_import, walked_export = integrate_by_steps(profile, start, end)
    assert import_b - import_a == pytest.approx(walked_import, rel=1e-9, abs=1e-9)
    assert export_b - export_a == pytest.approx(walked_export, rel=1e-9, abs=1e-9)
    assert import_b >= import_a
    assert export_b >= export_a


def test_profiles_are_deterministic_per_seed():
    assert MeterProfile(seed=4).values_at(T0) == MeterProfile(seed=4).values_at(T0)
    assert MeterProfile(seed=4).values_at(T0) != MeterProfile(seed=5).values_at(T0)


def test_pv_exports_at_noon_and_demand_imports_at_night():
    profile = MeterProfile(seed=1, pv_peak_w=6000.0, commissioned_at=COMMISSIONED)
    assert profile.net_power_w(T0) < 0
    assert profile.net_power_w(T0.replace(hour=1)) > 0
    day_later = profile.counters_kwh(T0 + timedelta(days=1))
    now = profile.counters_kwh(T0)
    assert day_later[0] > now[0]
    assert day_later[1] > now[1]


def test_phase_values_are_consistent():
    values = MeterProfile(seed=3, pv_peak_w=2000.0).values_at(T0)
    phases = [values[f"power_l{n}_w"] for n in (1, 2, 3)]
    assert sum(phases) == pytest.approx(values["power_w"])
    for n, power in enumerate(phases, start=1):
        assert values[f"current_l{n}_a"] == pytest.approx(abs(power) / values[f"voltage_l{n}_v"])
        assert 220 < values[f"voltage_l{n}_v"] < 240
    assert 49.9 < values["frequency_hz"] < 50.1


def test_a_single_phase_meter_puts_all_power_on_its_phase():
    meter = SimulatedMeter(1, "sdm120", MeterProfile(seed=2, phases=3))
    assert meter.profile.phases == 1
    values = meter.values_at(T0)
    assert values["power_l1_w"] == values["power_w"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"phases": 4}, "phases"),
        ({"step_s": 7}, "step_s"),
        ({"base_load_w": 500.0, "peak_load_w": 100.0}, "base_load_w"),
        ({"noise": 2.0}, "noise"),
        ({"commissioned_at": datetime(2025, 1, 1)}, "timezone-aware"),
    ],
)
def test_bad_profiles_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MeterProfile(**kwargs)


def series(values, *, start=T0, step_s=60, **kwargs):
    return SeriesProfile(start=start, step_s=step_s, net_power_w=array("d", values), **kwargs)


def test_a_series_profile_integrates_its_steps_by_hand():
    # 1.2 kW import for a minute, 3 kW export for two, then nothing: 0.02 kWh in, 0.1 kWh out.
    profile = series([1200.0, -3000.0, -3000.0], import_kwh_at_start=50.0, export_kwh_at_start=2.0)
    assert profile.counters_kwh(T0 - timedelta(hours=1)) == (50.0, 2.0)
    assert profile.counters_kwh(T0 + timedelta(seconds=30)) == pytest.approx((50.01, 2.0))
    assert profile.counters_kwh(T0 + timedelta(minutes=2)) == pytest.approx((50.02, 2.05))
    assert profile.counters_kwh(T0 + timedelta(days=2)) == pytest.approx((50.02, 2.1))
    assert profile.net_power_w_at(T0 + timedelta(seconds=90)) == -3000.0
    assert profile.net_power_w_at(T0 + timedelta(minutes=5)) == 0.0
    assert profile.net_power_w_at(T0 - timedelta(seconds=1)) == 0.0


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.floats(min_value=-8000, max_value=8000), min_size=1, max_size=40),
    a_s=st.floats(min_value=-600, max_value=3000),
    b_s=st.floats(min_value=-600, max_value=3000),
)
def test_series_counters_never_go_backwards(values, a_s, b_s):
    profile = series(values)
    early, late = sorted((a_s, b_s))
    before = profile.counters_kwh(T0 + timedelta(seconds=early))
    after = profile.counters_kwh(T0 + timedelta(seconds=late))
    assert after[0] >= before[0] - 1e-12
    assert after[1] >= before[1] - 1e-12
    total_in = sum(max(v, 0.0) for v in values) * 60 / 3_600_000
    assert profile.counters_kwh(T0 + timedelta(days=1))[0] == pytest.approx(total_in, abs=1e-9)


@pytest.mark.parametrize("model", ["sdm630", "sdm120", "em24", "sunspec203", "sunspec213"])
def test_a_series_profile_drives_a_meter_register_image(model):
    clock = ManualClock(T0 + timedelta(seconds=150))
    meter = SimulatedMeter(3, model, series([500.0, -2500.0, 4000.0, 100.0], seed=5), clock=clock)
    first, registers = registers_of(meter)
    assert_matches(meter, decode_from(meter.register_map, first, registers), clock())
    assert meter.values_at(clock())["power_w"] == pytest.approx(4000.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start": datetime(2026, 6, 1)}, "timezone-aware"),
        ({"step_s": 0}, "step_s"),
        ({"phases": 0}, "phases"),
        ({"import_kwh_at_start": -1.0}, "counters"),
    ],
)
def test_bad_series_profiles_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        series([1.0], **kwargs)


def test_a_series_profile_refuses_non_finite_power():
    with pytest.raises(ValueError, match="finite"):
        series([1.0, math.nan])


# --- register images -----------------------------------------------------------------------------


@pytest.mark.parametrize("model", SIMULATED_MODELS)
def test_registers_decode_to_the_profile(model):
    clock = ManualClock()
    meter = SimulatedMeter(
        7, model, MeterProfile(seed=11, pv_peak_w=3000.0, import_kwh_at_commissioning=4321.9), clock=clock
    )
    first, registers = registers_of(meter)
    assert_matches(meter, decode_from(meter.register_map, first, registers), T0)


@pytest.mark.parametrize("model", [m for m in SIMULATED_MODELS if m.startswith("sunspec")])
def test_a_sunspec_image_is_discovered_as_its_model(model):
    meter = SimulatedMeter(1, model)
    first, registers = registers_of(meter)

    def read(address: int, count: int) -> list[int]:
        return registers[address - first : address - first + count]

    assert asyncio.run(discover_sunspec(read)) == meter.register_map


@pytest.mark.parametrize("model", SIMULATED_MODELS)
def test_nan_fault_invalidates_the_counters_and_never_reads_zero(model):
    meter = SimulatedMeter(1, model, MeterProfile(seed=1), fault=Fault.NAN, clock=ManualClock())
    first, registers = registers_of(meter)
    reading = make_reading(
        "m", meter.register_map, decode_from(meter.register_map, first, registers), polled_at=T0
    )
    assert reading.quality is Quality.INVALID
    assert "import_kwh" not in reading.values
    assert "export_kwh" not in reading.values
    assert {p.split(":")[0] for p in reading.problems} == {"import_kwh", "export_kwh"}
    meter.fault = None
    first, registers = registers_of(meter)
    assert (
        make_reading(
            "m", meter.register_map, decode_from(meter.register_map, first, registers), polled_at=T0
        ).quality
        is Quality.GOOD
    )


def test_counter_reset_restarts_from_zero_once():
    clock = ManualClock()
    meter = SimulatedMeter(1, "sdm630", MeterProfile(seed=1, import_kwh_at_commissioning=500.0), clock=clock)
    before = meter.values_at(T0)["import_kwh"]
    meter.fault = Fault.COUNTER_RESET
    first, registers = registers_of(meter)
    assert meter.fault is None
    assert decode_from(meter.register_map, first, registers)["import_kwh"] == 0.0
    clock.advance(hours=2)
    after = meter.values_at(clock())["import_kwh"]
    expected, _ = integrate_by_steps(meter.profile, T0, clock())
    assert after == pytest.approx(expected, abs=1e-9)
    assert after < before


def test_bad_meters_are_refused():
    with pytest.raises(ValueError, match="unit_id"):
        SimulatedMeter(0, "sdm630")
    with pytest.raises(ValueError, match="SunSpec"):
        SimulatedMeter(1, "sunspec205")


# --- gateways over loopback ----------------------------------------------------------------------


async def _read_raw(port: int, unit_id: int, address: int, count: int, *, function_code: int = 4):
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0, reconnect_delay=0)
    try:
        assert await client.connect()
        if function_code == 4:
            return await client.read_input_registers(address, count=count, device_id=unit_id)
        return await client.write_register(address, 1, device_id=unit_id)
    finally:
        client.close()


def test_a_gateway_answers_for_its_unit_ids_and_refuses_others():
    async def scenario():
        meters = [SimulatedMeter(unit, "sdm630", MeterProfile(seed=unit)) for unit in (3, 9)]
        async with Gateway("127.0.0.1", 0, meters) as gateway:
            assert gateway.port > 0
            answer = await _read_raw(gateway.port, 9, 0x48, 2)
            absent = await _read_raw(gateway.port, 4, 0x48, 2)
            outside = await _read_raw(gateway.port, 3, 0x400, 2)
            write = await _read_raw(gateway.port, 3, 0x00, 1, function_code=6)
        assert not answer.isError()
        assert len(answer.registers) == 2
        assert absent.isError()
        assert absent.exception_code == ExcCodes.GATEWAY_NO_RESPONSE
        assert outside.isError()
        assert outside.exception_code == ExcCodes.ILLEGAL_ADDRESS
        assert write.isError()
        assert write.exception_code == ExcCodes.ILLEGAL_FUNCTION
        assert [record.unit_id for record in gateway.requests] == [9, 3]
        assert (gateway.meter(9).requests_received, gateway.meter(3).requests_received) == (1, 1)

    asyncio.run(scenario())


def test_a_gateway_restarts_on_the_same_port():
    async def scenario():
        gateway = Gateway("127.0.0.1", 0, [SimulatedMeter(1, "sdm120")])
        with pytest.raises(RuntimeError, match="start the gateway first"):
            gateway.endpoints()
        await gateway.start()
        port = gateway.port
        await gateway.stop()
        assert not gateway.running
        await gateway.start()
        try:
            assert gateway.port == port
            assert not (await _read_raw(port, 1, 0, 2)).isError()
            [endpoint] = gateway.endpoints()
            assert (endpoint.port, endpoint.unit_id, endpoint.model, endpoint.transport) == (
                port,
                1,
                "sdm120",
                "tcp",
            )
        finally:
            await gateway.stop()

    asyncio.run(scenario())


def test_a_gateway_on_a_taken_port_says_so():
    async def scenario():
        async with Gateway("127.0.0.1", 0, [SimulatedMeter(1, "sdm630")]) as first:
            second = Gateway("127.0.0.1", first.port, [SimulatedMeter(1, "sdm630")])
            with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{first.port}"):
                await second.start()
            assert not second.running

    asyncio.run(scenario())


def test_a_gateway_refuses_duplicate_unit_ids_and_unknown_framers():
    with pytest.raises(ValueError, match="unit IDs used twice"):
        Gateway("127.0.0.1", 0, [SimulatedMeter(1, "sdm630"), SimulatedMeter(1, "em24")])
    with pytest.raises(ValueError, match="framer"):
        Gateway("127.0.0.1", 0, [], framer="ascii")


def test_serve_fleet_runs_gateways_until_told_to_stop():
    async def scenario():
        gateways = MeterFleet.build(gateways=2, meters_per_gateway=3).build_gateways()
        stop = asyncio.Event()
        ports: list[int] = []

        def ready(started):
            ports.extend(gateway.port for gateway in started)
            stop.set()

        await serve_fleet(gateways, ready=ready, stop=stop)
        assert len(ports) == 2
        assert all(ports)
        assert not any(gateway.running for gateway in gateways)

    asyncio.run(scenario())


# --- fleets --------------------------------------------------------------------------------------


def test_a_fleet_is_built_from_a_few_numbers():
    fleet = MeterFleet.build(
        gateways=3, meters_per_gateway=4, models=["sdm630", "em24", "sunspec203"], first_port=1502
    )
    assert fleet.meter_count == 12
    assert [gateway.port for gateway in fleet.gateways] == [1502, 1503, 1504]
    first = fleet.gateways[0].meters
    assert [m.unit_id for m in first] == [1, 2, 3, 4]
    assert [m.model for m in first] == ["sdm630", "em24", "sunspec203", "sdm630"]
    ids = [m.meter_id for gateway in fleet.gateways for m in gateway.meters]
    assert len(set(ids)) == 12
    assert fleet == MeterFleet.build(
        gateways=3, meters_per_gateway=4, models=["sdm630", "em24", "sunspec203"], first_port=1502
    )
    assert len({m.profile.seed for gateway in fleet.gateways for m in gateway.meters}) == 12
    gateways = fleet.build_gateways(clock=ManualClock())
    assert [len(gateway.meters) for gateway in gateways] == [4, 4, 4]
    assert gateways[1].meters[2].meter_id == fleet.gateways[1].meters[2].meter_id


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gateways": 0}, "gateways"),
        ({"meters_per_gateway": 256}, "meters_per_gateway"),
        ({"models": []}, "at least one model"),
        ({"models": ["sdm999"]}, "unknown model"),
        ({"pv_share": 1.5}, "pv_share"),
    ],
)
def test_bad_fleets_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MeterFleet.build(**kwargs)


def test_a_fleet_without_pv_never_exports():
    fleet = MeterFleet.build(gateways=1, meters_per_gateway=5, pv_share=0.0)
    for spec in fleet.gateways[0].meters:
        assert spec.profile.pv_peak_w == 0.0
        assert spec.profile.counters_kwh(T0)[1] == 0.0
        assert not math.isnan(spec.profile.counters_kwh(T0)[0])
