"""Hardware profiles: built-ins match their sources, JSON round trip, clear errors."""

import json

import pytest

from las_compiler.predictor import BUILTIN_NAMES, Hardware, HardwareError, get_hardware
from las_compiler.predictor.hardware import load_hardware


@pytest.mark.parametrize("name, tflops", [("v100", 15.7), ("gtx1080", 8.9), ("tx2", 0.67),
                                          ("nano", 0.236), ("rtx3090", 35.6), ("h100", 66.9)])
def test_gpu_peaks_match_the_vendors_numbers(name, tflops):
    hw = get_hardware(name)
    assert hw.peak_gflops / 1e3 == pytest.approx(tflops, rel=0.02)
    assert {"compute", "memory"} <= set(hw.sources)


def test_every_builtin_is_valid_and_round_trips(tmp_path):
    for name in BUILTIN_NAMES:
        hw = get_hardware(name)
        path = hw.save(tmp_path / f"{name}.json")
        assert load_hardware(path) == hw
        assert get_hardware(str(path)) == hw
        assert hw.levels[-1].name == "DRAM"


def test_host_profile_reads_this_machine():
    hw = get_hardware("host")
    assert hw.kind == "cpu" and hw.compute_units >= 1 and hw.vector_bits in (128, 256, 512)
    assert hw.simd_lanes == hw.vector_bits // 32


def test_bad_profiles_name_the_problem(tmp_path):
    good = get_hardware("v100").to_dict()
    cases = {
        "missing.json": None,
        "notjson.json": "{oops",
        "unknown.json": {**good, "cores_per_sm": 4},
        "nolevels.json": {k: v for k, v in good.items() if k != "levels"},
        "negative.json": {**good, "clock_ghz": -1.0},
        "badeff.json": {**good, "efficiency": {"conv1x1": 1.5}},
        "format.json": {**good, "format": "something-else/9"},
    }
    messages = {"missing.json": "cannot read", "notjson.json": "not valid JSON",
                "unknown.json": "unknown field", "nolevels.json": "missing field",
                "negative.json": "clock_ghz must be a positive number",
                "badeff.json": "efficiency 'conv1x1'", "format.json": "format"}
    for name, body in cases.items():
        if body is not None:
            (tmp_path / name).write_text(body if isinstance(body, str) else json.dumps(body))
        with pytest.raises(HardwareError, match=messages[name]):
            load_hardware(tmp_path / name)
    with pytest.raises(HardwareError, match="unknown hardware 'tpu'"):
        get_hardware("tpu")


def test_save_is_atomic(tmp_path, monkeypatch):
    hw = get_hardware("tx2")
    path = hw.save(tmp_path / "p.json")
    before = path.read_text()

    def broken(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(json, "dump", broken)
    with pytest.raises(OSError, match="disk full"):
        hw.with_updates(clock_ghz=9.0).save(path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["p.json"]


def test_level_holding_picks_the_nearest_level_that_fits():
    hw = get_hardware("v100")
    assert hw.level_holding(10 * 1024, per_unit=True).name == "shared"
    assert hw.level_holding(5 << 20).name == "L2"
    assert hw.level_holding(64 << 20).name == "DRAM"
    assert isinstance(hw, Hardware)
