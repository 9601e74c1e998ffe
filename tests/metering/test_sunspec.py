"""SunSpec discovery over an in-memory device image, and the image a simulator serves."""

from __future__ import annotations

import asyncio
import math

import pytest

from metering.registers import MapError, ReadBlock, decoder_for, plan_reads
from metering.sunspec import (
    END_MODEL_ID,
    METER_MODEL_IDS,
    SUNS_MARKER,
    SunSpecError,
    discover_sunspec,
    load_sunspec_models,
    sunspec_image,
    sunspec_register_map,
)

THREE_PHASE = {
    "voltage_l1_v": 230.1,
    "voltage_l2_v": 231.0,
    "voltage_l3_v": 229.5,
    "current_l1_a": 5.2,
    "current_l2_a": 1.0,
    "current_l3_a": 0.5,
    "power_l1_w": 1196.0,
    "power_l2_w": 231.0,
    "power_l3_w": -114.0,
    "power_w": 1313.0,
    "frequency_hz": 50.01,
    "import_kwh": 12345.678,
    "export_kwh": 42.5,
}


class IllegalAddressError(Exception):
    """What a Modbus client raises for an exception response 0x02."""


def reader(image: dict[int, int], *, asynchronous: bool = True, strict: bool = False):
    """A read function over a register image; ``strict`` refuses registers the image lacks."""
    calls: list[tuple[int, int]] = []

    def read(address: int, count: int) -> list[int]:
        calls.append((address, count))
        if strict and any(address + i not in image for i in range(count)):
            raise IllegalAddressError(f"illegal data address {address}")
        return [image.get(address + i, 0) for i in range(count)]

    async def read_async(address: int, count: int) -> list[int]:
        return read(address, count)

    return (read_async if asynchronous else read), calls


def discover(image: dict[int, int], **kwargs):
    read, _ = reader(image, **{k: kwargs.pop(k) for k in ("asynchronous", "strict") if k in kwargs})
    return asyncio.run(discover_sunspec(read, **kwargs))


def values_for(model_id: int) -> dict[str, float]:
    names = {q.name for q in sunspec_register_map(model_id, 40070).quantities}
    return {name: value for name, value in THREE_PHASE.items() if name in names}


def poll(image: dict[int, int], register_map) -> dict[str, float]:
    blocks = {b: [image.get(b.address + i, 0) for i in range(b.count)] for b in plan_reads(register_map)}
    return decoder_for(register_map).decode(blocks)


@pytest.mark.parametrize("model_id", METER_MODEL_IDS)
def test_each_meter_model_is_found_and_reads_back(model_id):
    values = values_for(model_id)
    image = sunspec_image(model_id, values)
    register_map = discover(image)
    assert register_map.model == f"sunspec-{model_id}"
    # 'SunS' at 40000-40001, model 1 header and 66 registers at 40002-40069, the meter at 40070.
    assert "holding register 40070" in register_map.description
    assert {q.function_code for q in register_map.quantities} == {3}
    decoded = poll(image, register_map)
    for name, value in values.items():
        tolerance = 1e-6 * abs(value) if model_id >= 211 else 0
        assert decoded[name] == pytest.approx(value, abs=max(tolerance, 1e-9)), name


@pytest.mark.parametrize(("model_id", "phases"), [(203, 3), (213, 3), (201, 1), (211, 1), (204, 0), (212, 2)])
def test_models_have_the_voltages_their_wiring_has(model_id, phases):
    names = {q.name for q in sunspec_register_map(model_id, 40070).quantities}
    assert {f"voltage_l{i}_v" for i in (1, 2, 3)} & names == {f"voltage_l{i}_v" for i in range(1, phases + 1)}


def test_model_203_addresses_follow_the_sunspec_layout():
    register_map = sunspec_register_map(203, 40070)
    where = {
        q.name: (q.address - 40070, q.data_type, q.scale_factor_address) for q in register_map.quantities
    }
    assert where["current_l1_a"] == (3, "int16", 40070 + 6)  # AphA, A_SF
    assert where["voltage_l1_v"] == (8, "int16", 40070 + 15)  # PhVphA, V_SF
    assert where["frequency_hz"] == (16, "int16", 40070 + 17)  # Hz, Hz_SF
    assert where["power_w"] == (18, "int16", 40070 + 22)  # W, W_SF
    assert where["export_kwh"] == (38, "acc32", 40070 + 54)  # TotWhExp, TotWh_SF
    assert where["import_kwh"] == (46, "acc32", 40070 + 54)  # TotWhImp, TotWh_SF
    assert plan_reads(register_map) == (ReadBlock(3, 40073, 52),)


def test_model_213_addresses_follow_the_sunspec_layout():
    register_map = sunspec_register_map(213, 40070)
    where = {q.name: (q.address - 40070, q.data_type) for q in register_map.quantities}
    assert where["current_l1_a"] == (4, "float32")
    assert where["voltage_l1_v"] == (12, "float32")
    assert where["frequency_hz"] == (26, "float32")
    assert where["power_w"] == (28, "float32")
    assert where["export_kwh"] == (60, "float32")
    assert where["import_kwh"] == (68, "float32")


def test_energy_is_read_in_kwh_from_wh_counters():
    register_map = sunspec_register_map(203, 40070)
    image = sunspec_image(203, {"import_kwh": 1.5}, scale_factors={54: 0})  # TotWh_SF = 0: whole Wh
    assert (image[40070 + 46], image[40070 + 47]) == (0, 1500)  # acc32, high word first
    assert poll(image, register_map)["import_kwh"] == 1.5


def test_a_synchronous_read_function_works_too():
    assert discover(sunspec_image(203, THREE_PHASE), asynchronous=False).model == "sunspec-203"


def test_the_meter_is_found_after_other_models():
    image = sunspec_image(213, values_for(213), extra_models=[(101, 50), (160, 28)])
    register_map = discover(image)
    assert register_map.model == "sunspec-213"
    assert "holding register 40152" in register_map.description  # 40070 + (2 + 50) + (2 + 28)
    assert poll(image, register_map)["import_kwh"] == pytest.approx(12345.678, rel=1e-7)


@pytest.mark.parametrize("base_address", [0, 50000])
def test_the_other_base_addresses_are_tried(base_address):
    image = sunspec_image(203, THREE_PHASE, base_address=base_address)
    register_map = discover(image, strict=True)
    assert f"holding register {base_address + 70}" in register_map.description


def test_the_walk_reads_headers_only():
    read, calls = reader(sunspec_image(203, THREE_PHASE, extra_models=[(101, 50)]))
    asyncio.run(discover_sunspec(read))
    assert calls == [(40000, 2), (40002, 2), (40070, 2), (40122, 2)]


def test_no_suns_marker_is_an_error():
    with pytest.raises(SunSpecError, match=r"no 'SunS' marker .* 40000: 0x0000 0x0000; 0: .*; 50000"):
        discover({})


def test_read_errors_at_every_base_address_are_reported():
    with pytest.raises(SunSpecError, match="illegal data address 40000") as raised:
        discover({1: 1}, strict=True)
    assert isinstance(raised.value.__cause__, IllegalAddressError)


def test_an_inverter_without_a_meter_is_an_error():
    image = {40000: SUNS_MARKER[0], 40001: SUNS_MARKER[1], 40002: 1, 40003: 66}
    image.update({40070: 101, 40071: 50, 40122: END_MODEL_ID, 40123: 0})
    with pytest.raises(SunSpecError, match=r"no SunSpec meter model .* models found: \[1, 101\]"):
        discover(image)


def test_a_chain_without_an_end_marker_is_an_error():
    image = {40000: SUNS_MARKER[0], 40001: SUNS_MARKER[1]}
    with pytest.raises(SunSpecError, match="no end marker after 5 models"):
        discover(image, max_models=5)  # model 0 of length 0, over and over


def test_a_chain_running_off_the_register_space_is_an_error():
    image = {40000: SUNS_MARKER[0], 40001: SUNS_MARKER[1], 40002: 1, 40003: 30000}
    with pytest.raises(SunSpecError, match="runs past register 65535"):
        discover(image)


def test_a_meter_model_shorter_than_its_layout_is_an_error():
    image = sunspec_image(203, THREE_PHASE)
    image[40071] = 50
    with pytest.raises(SunSpecError, match="model 203 at 40070 has length 50, its layout needs 105"):
        discover(image)


def test_the_image_has_the_common_model_and_the_end_marker():
    image = sunspec_image(201, {"import_kwh": 1.0})
    assert (image[40000], image[40001]) == SUNS_MARKER
    assert (image[40002], image[40003]) == (1, 66)
    assert image[40004] == ord("s") << 8 | ord("m")  # manufacturer "smartbrum"
    assert (image[40070], image[40071]) == (201, 105)
    assert (image[40070 + 2 + 105], image[40070 + 3 + 105]) == (END_MODEL_ID, 0)


def test_unimplemented_points_decode_to_nan():
    image = sunspec_image(203, THREE_PHASE)
    image[40070 + 10] = 0x8000  # PhVphC: not implemented
    decoded = poll(image, discover(image))
    assert math.isnan(decoded["voltage_l3_v"])
    assert decoded["voltage_l1_v"] == 230.1


def test_every_meter_model_has_a_layout():
    assert sorted(load_sunspec_models()) == sorted(METER_MODEL_IDS)


def test_a_user_layout_file_overrides_the_shipped_one(tmp_path):
    (tmp_path / "sunspec.toml").write_text(
        """
description = "one model"
[[layout]]
name = "tiny"
length = 4
[[layout.quantity]]
name = "import_kwh"
offset = 2
function_code = 3
type = "float32"
word_order = "high_first"
unit = "kWh"
min = 0
max = 1e9
[[model]]
id = 213
layout = "tiny"
quantities = ["import_kwh"]
"""
    )
    register_map = discover(
        sunspec_image(213, {"import_kwh": 7.0}, extra_dirs=[tmp_path]), extra_dirs=[tmp_path]
    )
    assert register_map.names == ("import_kwh",)
    assert plan_reads(register_map) == (ReadBlock(3, 40072, 2),)


@pytest.mark.parametrize(
    ("data_type", "length", "offset", "reason"),
    [
        ("float64", 3, 2, "outside the model's registers 2..4"),  # a float64 at 2-5
        ("float32", 4, 200, "outside the model's registers 2..5"),
        ("float32", 4, 1, "outside the model's registers 2..5"),  # the header's length register
    ],
)
def test_bad_user_layouts_name_the_file_and_key(tmp_path, data_type, length, offset, reason):
    (tmp_path / "sunspec.toml").write_text(
        f"""
description = "bad"
[[layout]]
name = "tiny"
length = {length}
[[layout.quantity]]
name = "import_kwh"
offset = {offset}
function_code = 3
type = "{data_type}"
word_order = "high_first"
unit = "kWh"
min = 0
max = 1e9
[[model]]
id = 213
layout = "tiny"
quantities = ["import_kwh"]
"""
    )
    with pytest.raises(MapError) as raised:
        load_sunspec_models(extra_dirs=[tmp_path])
    assert raised.value.source == str((tmp_path / "sunspec.toml").resolve())
    assert raised.value.key == "layout[0].quantity[0] (import_kwh).offset"
    assert reason in raised.value.reason
