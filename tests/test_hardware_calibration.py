"""Calibration plumbing on tiny sizes (the real run is ``las predict --calibrate``)."""

import pytest

from las_compiler.hardware_calibration import (
    FMA_CHAINS,
    CalibrationBlock,
    _fma_probe,
    measure_bandwidth,
    measure_blocks,
    measure_fma_ceiling,
    measure_overheads,
    samples_from_rows,
)
from las_compiler.predictor import BlockLayer
from las_compiler.predictor.fit import fit_profile
from las_compiler.target import host_target


@pytest.fixture(scope="module")
def target():
    return host_target()


def test_bandwidth_probe_and_overheads(target):
    gbs = measure_bandwidth(target, 2, 16 * 1024, moved=8 << 20)  # checks its own sum
    assert 1.0 < gbs < 10_000.0
    overheads = measure_overheads(target)
    assert 0.0 < overheads["launch_us"] < 1000.0
    assert overheads["sync_us"] > 0.0 and overheads["scan_ns"] >= 0.0


def test_fma_ceiling_probe_is_register_fmas(target):
    """The ceiling kernels are rated against: FMA instructions on registers, one per chain
    per round (so LLVM neither drops nor splits them), and a plausible figure."""
    import tvm

    lib = tvm.compile(tvm.IRModule({"main": _fma_probe(2, 8, 100)}), target=target)
    asm = lib.mod.inspect_source("asm")
    assert asm.count("vfmadd") >= FMA_CHAINS and "vmulps" not in asm
    gflops = measure_fma_ceiling(target, 1, 8, reps=20_000)  # checks its own result
    assert 1.0 < gflops < 10_000.0


def test_measured_blocks_feed_the_fit(target, cpu_profile):
    layer = BlockLayer(1, 12, 12, 64, 16, 64, 1, False, name="tiny", stage=1)
    configs = [CalibrationBlock(layer, None, "static", 1.0),
               CalibrationBlock(layer, 4, "fused", 0.5), CalibrationBlock(layer, 1, "fused", 0.5),
               CalibrationBlock(layer, 4, "halo", 0.5)]
    rows = measure_blocks(configs, target, repeats=3)
    assert [r["pipeline"] for r in rows] == ["static", "fused", "fused", "halo"]
    assert len(rows[1]["active_cells"]) == 4 and len(rows[2]["active_cells"]) == 72
    # profiles are per kernel of the compiled module, named as the pipeline table names them
    assert {"masker", "conv1x1_rows", "gather_conv3x3", "conv1x1_scatter_add"} <= \
        set(rows[1]["profile"])
    assert {"gather_conv3x3_rows", "conv1x1_scatter_add_rows"} <= set(rows[2]["profile"])
    assert "halo_conv3x3" in rows[3]["profile"] and "conv1x1" in rows[0]["profile"]
    samples = samples_from_rows(rows, {"tiny": layer})
    assert all(s.measured_us > 0 for s in samples)
    fitted = fit_profile(cpu_profile(), samples)
    assert {"conv1x1", "conv2d", "gather_conv3x3", "halo_conv3x3"} <= set(fitted.efficiency)
