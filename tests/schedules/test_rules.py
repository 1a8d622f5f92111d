"""Rule dispatch and per-target behaviour (no hardware needed beyond compiling)."""

import pytest
import tvm
from tvm.script import tirx as T

from las_compiler import op
from las_compiler.op.geometry import PatchGeometry
from las_compiler.schedules import ScheduleError, TiledConv, schedule_kernel
from las_compiler.schedules.cpu.tiled_conv import get_config

ZNVER3 = tvm.target.Target({"kind": "llvm", "mcpu": "znver3", "num-cores": 2})
SKYLAKE_AVX512 = tvm.target.Target({"kind": "llvm", "mcpu": "skylake-avx512"})
CORTEX_A57 = tvm.target.Target(
    {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a57", "mattr": ["+neon"]}
)


@T.prim_func(s_tir=True)
def foreign(a: T.Buffer((16,), "float32"), b: T.Buffer((16,), "float32")):
    for i in range(16):
        with T.sblock("copy"):
            vi = T.axis.remap("S", [i])
            b[vi] = a[vi]


def test_rules_ignore_foreign_functions():
    assert TiledConv().apply(foreign, ZNVER3) is None
    with pytest.raises(ValueError, match="no cpu rule matches kernel None"):
        schedule_kernel(foreign, ZNVER3)


def test_unknown_target_family_is_a_clear_error():
    cuda = tvm.target.Target("cuda")
    with pytest.raises(ValueError, match="no LAS schedule rules for target cuda"):
        schedule_kernel(op.relu_inplace(64), cuda)


def test_tile_config_follows_the_isa():
    assert get_config(ZNVER3).pixels == 6  # AVX2: 6x16 = 12 of 16 ymm registers
    assert get_config(SKYLAKE_AVX512).pixels == 12
    assert get_config(CORTEX_A57).pixels == 6


def test_channel_counts_must_match_the_packing():
    func = op.conv1x1(1, 4, 4, 16, 32, 1, "relu")
    with pytest.raises(ScheduleError, match="32 output channels are not a multiple of 64"):
        TiledConv(config=type(get_config(ZNVER3))(pixels=6, channels=64)).apply(func, ZNVER3)


@pytest.mark.parametrize("target, fma", [(CORTEX_A57, "fmla"), (SKYLAKE_AVX512, "zmm")])
def test_kernels_compile_for_targets_we_cannot_run(target, fma):
    """aarch64 NEON and AVX-512 code is generated and inspected here; not run (no such CPU)."""
    func = schedule_kernel(op.gather_conv3x3(PatchGeometry(1, 28, 28, 4, 1), 32, 32), target)
    lib = tvm.compile(tvm.IRModule({"main": func}), target=target)
    asm = lib.mod.inspect_source("asm") if hasattr(lib, "mod") else lib.inspect_source("asm")
    assert fma in asm
