"""The per-kernel benchmark's pure parts: FLOPs of a call at its shapes, and the table (the
run itself is ``python -m benchmarks.kernels``)."""

import pytest

from benchmarks import kernels
from las_compiler import op
from las_compiler.geometry import PatchGeometry


def test_a_sparse_kernel_is_credited_with_its_active_patches_only():
    g = PatchGeometry(1, 16, 16, 4, 1)
    func = op.gather_conv3x3(g, 32, 16)
    shapes = lambda n: [(1, 16, 16, 32), (n,), (1, 3, 3, 32, 16), (16,), (n, 16, 16)]  # noqa
    one, five = kernels.kernel_flops(func, shapes(1)), kernels.kernel_flops(func, shapes(5))
    assert five == pytest.approx(5 * one)
    macs = 16 * 16 * 9 * 32  # a 4x4 patch's pixels x 16 outputs x 3x3x32 inputs
    assert 2 * macs <= one <= 1.01 * 2 * macs  # plus the epilogue's bias and ReLU
    dense = op.conv1x1(1, 4, 6, 16, 32, 1, "relu")
    assert kernels.kernel_flops(dense, []) >= 2 * 24 * 16 * 32


def _result(system="las"):
    return {"model": "las_resnet50", "system": system, "rate": 0.5, "actual_rate": 0.49,
            "batch": 1, "median_ms": 9.0, "traced_ms": 10.0, "fma_ceiling_gflops": 200.0,
            "kernels": [
                {"kernel": "gather_conv3x3_0", "kind": "kernel", "calls": 2, "ms": 6.0,
                 "gflop": 0.9, "gflops": 150.0},
                {"kernel": "masker_0", "kind": "mask", "calls": 1, "ms": 3.0, "gflop": None,
                 "gflops": None},
                {"kernel": "vm.builtin.alloc_storage", "kind": "runtime", "calls": 4,
                 "ms": 1.0, "gflop": None, "gflops": None}]}


def test_table_rates_conv_kernels_against_the_ceiling():
    lines = kernels.kernel_table(_result(), top=2)
    text = "\n".join(lines)
    assert "LAS 4-4-2-1, r = 0.5 (actual 0.490)" in text
    assert "| gather_conv3x3_0 | 2 | 6.000 | 60.0% | 0.900 | 150 | 75% |" in text
    assert "| masker_0 | 1 | 3.000 | 30.0% | - | - | - |" in text
    assert "| 1 others | 4 | 1.000 | 10.0% | | | |" in text
    assert "FMA ceiling 200 GFLOP/s" in text and "= 75% of the ceiling" in text
    assert "By kind: kernel 6.00 ms (60%), mask 3.00 ms (30%), runtime 1.00 ms (10%)." in text
    md = kernels.summarise([_result(), {"model": "m", "system": "tvm_dense", "error": "E: x"}],
                           {"date": "today", "cpu": "cpu", "host_target": "znver3"})
    assert "(LLVM CPU `znver3`)" in md and "m tvm_dense: failed: E: x" in md
