"""Hardware profiles: built-ins match their sources, JSON round trip, clear errors."""

import json

import pytest

from las_compiler.predictor import BUILTIN_NAMES, Hardware, HardwareError, get_hardware
from las_compiler.predictor.hardware import load_hardware
from las_compiler.schedules import check_target


@pytest.mark.parametrize("name, tflops", [("v100", 15.7), ("gtx1080", 8.9), ("tx2", 0.67),
                                          ("nano", 0.236), ("rtx3090", 35.6), ("h100", 66.9)])
def test_gpu_peaks_match_the_vendors_numbers(name, tflops):
    hw = get_hardware(name)
    assert hw.peak_gflops / 1e3 == pytest.approx(tflops, rel=0.02)
    assert {"compute", "memory"} <= set(hw.sources)


@pytest.mark.live_host  # any CPU's profile is valid and round-trips
def test_every_builtin_is_valid_and_round_trips(tmp_path):
    for name in BUILTIN_NAMES:
        hw = get_hardware(name)
        path = hw.save(tmp_path / f"{name}.json")
        assert load_hardware(path) == hw
        assert get_hardware(str(path)) == hw
        assert hw.levels[-1].name == "DRAM"


@pytest.mark.live_host
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


EXPECTED_KIND = {"zen3_avx2": ("znver3", 256), "zen4_avx512": ("znver4", 512),
                 "sapphire_rapids": ("sapphirerapids", 512)}


@pytest.mark.parametrize("kind", sorted(EXPECTED_KIND))
def test_each_recorded_machine_kind_gets_a_self_consistent_profile(kind, monkeypatch):
    """The host profile as it is built on each kind of machine the project runs on, from
    that machine's recorded cpuinfo and caches (LLVM is only asked about feature sets; no
    foreign instruction runs): the target it compiles for, the profile's vector width and
    register file, the rule's register tile and the predictor's agree."""
    import tvm
    from tvm.target import codegen

    from las_compiler.predictor import kernels as K
    from las_compiler.predictor import profiles
    from las_compiler.schedules.cpu.base import vector_bits
    from las_compiler.schedules.cpu.tiled_conv import get_config
    from las_compiler.target import host_target_dict, read_cpu_flags

    from ..machines import RECORDED

    machine = RECORDED[kind]
    mcpu, bits = EXPECTED_KIND[kind]
    target_dict = host_target_dict(machine.cpuinfo, num_cores=machine.cores, machine="x86_64")
    assert (target_dict["mcpu"], target_dict["num-cores"]) == (mcpu, machine.cores)
    target = tvm.target.Target(target_dict)
    features = {str(f) for f in codegen.llvm_get_cpu_features(target)}
    _, flags = read_cpu_flags(machine.cpuinfo)

    hw = profiles.cpu_profile(machine, features)
    assert hw == profiles.cpu_profile(machine)  # its flags and its best target agree
    monkeypatch.setattr(profiles, "read_machine", lambda: machine)
    assert check_target(target).hardware(target) == hw  # what the compiler prices with
    assert hw.vector_bits == bits == vector_bits(target)
    assert ("avx512f" in flags) == (bits == 512) and "fma" in flags and "avx2" in flags
    assert hw.simd_lanes * 32 == hw.vector_bits
    assert hw.vector_registers == (32 if bits == 512 else 16)
    assert hw.compute_units == machine.cores
    assert [level.capacity_bytes for level in hw.levels[:-1]] == \
        [machine.caches[level] for level in (1, 2, 3)]
    assert hw.l1_ways * hw.l1_way_bytes == machine.caches[1]
    bandwidths = [level.bandwidth_gbs for level in hw.levels]
    assert bandwidths == sorted(bandwidths, reverse=True)
    # 2 cores of two 256-bit or one 512-bit FMA pipe at 2-4 GHz: 120-260 GFLOP/s
    assert 120 < hw.peak_gflops < 260

    tile = K.TileModel.for_hardware(hw)
    rule = get_config(target)
    assert (tile.pixels, tile.channels) == (rule.pixels, rule.channels)
    vectors_per_pixel = rule.channels * 32 // bits
    assert tile.pixels * vectors_per_pixel < hw.vector_registers  # accumulators fit
    assert K.tile_slowdown(hw, tile.pixels, vectors_per_pixel, 0) == pytest.approx(
        (tile.pixels + K.STEP_OVERHEAD) / tile.pixels)  # ... with nothing spilled
    # a partial tile costs no more than a full one, and enough chains to fill the pipes
    assert 1 <= tile.min_pixels <= tile.pixels
    assert tile.min_pixels * vectors_per_pixel >= hw.fma_latency * hw.fma_per_cycle


def test_a_test_that_reads_the_live_host_profile_fails():
    """The suite's guard (tests/conftest.py): every way to the live host's profile fails a
    test that is not marked live_host, so no test's outcome can depend on the CPU it runs on;
    the compiler's own profile of a target comes from the recorded machine."""
    from las_compiler import predictor
    from las_compiler.cli import main
    from las_compiler.predictor import profiles
    from las_compiler.target import host_target

    from ..machines import TEST_MACHINE

    message = "reads the hardware profile of the CPU this test runs on"
    for read in (lambda: get_hardware("host"), profiles.host_profile, profiles.nominal_host,
                 predictor.host_profile, lambda: main(["predict", "--rate", "0.5"])):
        with pytest.raises(AssertionError, match=message):
            read()
    assert profiles.read_machine() is TEST_MACHINE
    host = host_target()
    assert check_target(host).hardware(host).l1_way_bytes == TEST_MACHINE.l1_way_bytes
