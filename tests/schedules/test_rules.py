"""Schedule rules: dispatch, knobs, and the loop nest each rule produces (structural checks,
no hardware needed beyond compiling)."""

import pytest
import tvm
from tvm import s_tir
from tvm.s_tir import dlight
from tvm.script import tirx as T

from las_compiler import op
from las_compiler.geometry import PatchGeometry
from las_compiler.schedules import (
    FAMILIES,
    ScheduleError,
    TiledConv,
    TiledConvConfig,
    check_target,
    rule_for,
    rules_for,
    schedule,
)
from las_compiler.schedules.cpu.elementwise import Elementwise
from las_compiler.schedules.cpu.generic import Generic
from las_compiler.schedules.cpu.masker import MaskerRule
from las_compiler.schedules.cpu.patch_chain import PatchChain
from las_compiler.schedules.cpu.serial_scan import SerialScan
from las_compiler.schedules.cpu.tiled_conv import get_config
from las_compiler.schedules.knobs import knobs_from_trace

ZNVER3 = tvm.target.Target({"kind": "llvm", "mcpu": "znver3", "num-cores": 2})
SKYLAKE_AVX512 = tvm.target.Target({"kind": "llvm", "mcpu": "skylake-avx512"})
CORTEX_A57 = tvm.target.Target(
    {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a57", "mattr": ["+neon"]}
)
PARALLEL, SERIAL = tvm.tirx.ForKind.PARALLEL, tvm.tirx.ForKind.SERIAL
UNROLLED, VECTORIZED = tvm.tirx.ForKind.UNROLLED, tvm.tirx.ForKind.VECTORIZED


@T.prim_func(s_tir=True)
def foreign(a: T.Buffer((16, 64), "float32"), b: T.Buffer((16, 64), "float32")):
    for i, j in T.grid(16, 64):
        with T.sblock("copy"):
            vi, vj = T.axis.remap("SS", [i, j])
            b[vi, vj] = a[vi, vj]


def loops(func, block: str) -> list[tuple]:
    """(kind, extent) of every loop around ``block`` in a scheduled function, outermost
    first (symbolic extents as their text)."""
    sch = s_tir.Schedule(tvm.IRModule({"main": func}))
    out = []
    for loop in sch.get_loops(sch.get_sblock(block)):
        extent = sch.get(loop).extent
        out.append((sch.get(loop).kind,
                    int(extent) if isinstance(extent, tvm.tirx.IntImm) else str(extent)))
    return out


# -- the micro-kernel rule -----------------------------------------------------------------------
@T.prim_func(s_tir=True)
def tiled_conv1x1_expected(x: T.Buffer((24, 16), "float32"), w: T.Buffer((2, 16, 16), "float32"),
                           bias: T.Buffer((32,), "float32"), residual: T.Buffer((1, 1), "float32"),
                           y: T.Buffer((24, 32), "float32")):
    T.func_attr({"las.kernel": "conv1x1", "las.num_reduce": 1, "las.reduce_block": "conv",
                 "tirx.noalias": True})
    acc_local = T.sblock_alloc_buffer((24, 32), scope="local")
    for m_0 in T.parallel(4):
        for k_0 in range(2):
            for m_1_init in T.unroll(6):
                for k_1_init in T.vectorized(16):
                    with T.sblock("conv_init"):
                        vm = T.axis.spatial(24, m_0 * 6 + m_1_init)
                        vk = T.axis.spatial(32, k_0 * 16 + k_1_init)
                        T.reads()
                        T.writes(acc_local[vm, vk])
                        acc_local[vm, vk] = T.float32(0.0)
            for rc in range(16):
                for m_1 in T.unroll(6):
                    for k_1 in T.vectorized(16):
                        with T.sblock("conv_update"):
                            vm = T.axis.spatial(24, m_0 * 6 + m_1)
                            vk = T.axis.spatial(32, k_0 * 16 + k_1)
                            vrc = T.axis.reduce(16, rc)
                            T.reads(acc_local[vm, vk], x[vm, vrc], w[vk // 16, vrc, vk % 16])
                            T.writes(acc_local[vm, vk])
                            acc_local[vm, vk] = acc_local[vm, vk] + x[vm, vrc] * w[
                                vk // 16, vrc, vk % 16]
            for ax0 in T.unroll(6):
                for ax1 in T.vectorized(16):
                    with T.sblock("epilogue"):
                        vm = T.axis.spatial(24, m_0 * 6 + ax0)
                        vk = T.axis.spatial(32, k_0 * 16 + ax1)
                        T.reads(acc_local[vm, vk], bias[vk])
                        T.writes(y[vm, vk])
                        y[vm, vk] = T.max(acc_local[vm, vk] + bias[vk], T.float32(0.0))


def test_tiled_conv_dense_kernel_is_the_6x16_register_tile():
    """AVX2: pixel tiles parallel, 16-channel tiles, the reduction, 6 pixels unrolled x 16
    channels vectorised, accumulators local, the epilogue on the tile."""
    scheduled = schedule(op.conv1x1(1, 4, 6, 16, 32, 1, "relu"), ZNVER3)
    tvm.ir.assert_structural_equal(scheduled.without_attr("global_symbol"),
                                   tiled_conv1x1_expected.without_attr("global_symbol"))


def test_tiled_conv_sparse_kernel_runs_patches_in_parallel():
    """Per patch (symbolic n, parallel): the window staged at the patch, S*S pixels in tiles of
    12 (AVX-512), channels in 16, the 3x3xC reduction, unrolled pixels, vectorised channels."""
    func = schedule(op.gather_conv3x3(PatchGeometry(1, 28, 28, 4, 1), 32, 32), SKYLAKE_AVX512)
    assert loops(func, "conv_update") == [(PARALLEL, "n"), (SERIAL, 2), (SERIAL, 2),
                                          (SERIAL, 3), (SERIAL, 3), (SERIAL, 32),
                                          (UNROLLED, 12), (VECTORIZED, 16)]
    assert loops(func, "gather")[0] == (PARALLEL, "n")  # staged per patch


def test_tiled_conv_one_pixel_patches_become_one_pixel_axis():
    """S = 1: patches fuse into one pixel axis, channel tiles outermost (a 1 x 16 tile per
    patch would reload every weight)."""
    func = schedule(op.gather_conv3x3(PatchGeometry(1, 14, 14, 1, 1), 32, 32), ZNVER3)
    nest = loops(func, "conv_update")
    assert nest[0] == (PARALLEL, 2) and nest[-2:] == [(UNROLLED, 6), (VECTORIZED, 16)]


def test_tiled_conv_knobs_are_the_rules_own():
    rule = TiledConv()
    dense = op.conv1x1(1, 7, 7, 512, 2048, 1, "relu")
    space = rule.knob_space(dense, SKYLAKE_AVX512)
    assert space["channel_outer"].values == (False, True) and space["channel_outer"].structural
    assert 12 in space["pixels"].values
    rows = op.conv1x1_rows(64, 32, 32)  # a tile must divide a 12-pixel row group
    assert all(12 % p == 0 for p in rule.knob_space(rows, SKYLAKE_AVX512)["pixels"].values)
    designs = rule.apply(dense, SKYLAKE_AVX512, tunable=True)
    assert len(designs) == 2  # one traced schedule per loop order
    assert [knobs_from_trace(d.trace)["channel_outer"] for d in designs] == [0, 1]
    picked = rule.apply_knobs(dense, SKYLAKE_AVX512, {"pixels": 6, "channel_outer": 1})
    assert loops(picked.mod["main"], "conv_update")[0][0] == PARALLEL


def test_tile_config_follows_the_isa():
    assert get_config(ZNVER3).pixels == 6  # AVX2: 6x16 = 12 of 16 ymm registers
    assert get_config(SKYLAKE_AVX512).pixels == 12
    assert get_config(CORTEX_A57).pixels == 6


def test_channel_counts_must_match_the_packing():
    func = op.conv1x1(1, 4, 4, 16, 32, 1, "relu")
    with pytest.raises(ScheduleError, match="32 output channels are not a multiple of 64"):
        TiledConv(config=TiledConvConfig(pixels=6, channels=64)).apply(func, ZNVER3)


# -- the other rules ---------------------------------------------------------------------------
def test_patch_chain_keeps_a_patch_in_one_task():
    func = schedule(op.fused_block(PatchGeometry(1, 14, 14, 2, 1), 64, 16, 64), ZNVER3)
    for stage in ("conv1_update", "conv2_update", "conv3_update"):
        assert loops(func, stage)[0] == (PARALLEL, "n")  # every conv under the patch loop
        assert loops(func, stage)[-1] == (VECTORIZED, 16)


def test_masker_pools_at_each_cell_in_parallel():
    func = schedule(op.masker(PatchGeometry(1, 16, 16, 4, 1), 64), ZNVER3)
    pool = loops(func, "pool")
    assert pool[0] == (PARALLEL, 16) and pool[-1] == (VECTORIZED, 64)
    assert loops(func, "compare") == [(PARALLEL, 16)]


def test_serial_scans_are_left_as_written():
    func = op.compact(64)
    tvm.ir.assert_structural_equal(schedule(func, ZNVER3), func)


def test_elementwise_splits_into_parallel_vector_chunks():
    assert loops(schedule(op.relu_inplace(1000), ZNVER3), "relu") == [(PARALLEL, 16),
                                                                       (VECTORIZED, 64)]
    scatter = schedule(op.scatter_patches(PatchGeometry(1, 8, 8, 2, 1), 32), ZNVER3)
    assert loops(scatter, "scatter") == [(PARALLEL, 16), (SERIAL, 4), (VECTORIZED, 32)]


def test_generic_fallback_for_foreign_functions():
    assert loops(schedule(foreign, ZNVER3), "copy") == [(PARALLEL, 16), (VECTORIZED, 64)]


# -- dispatch ----------------------------------------------------------------------------------
def test_rules_ignore_functions_that_are_not_theirs():
    assert TiledConv().apply(foreign, ZNVER3) is None
    assert Generic().apply(op.relu_inplace(16), ZNVER3) is None  # ours go to our rules
    assert rule_for(foreign, ZNVER3) is None
    assert isinstance(rule_for(op.compact(8), ZNVER3), SerialScan)
    assert isinstance(rule_for(op.masker(PatchGeometry(1, 8, 8, 2, 1), 16), ZNVER3), MaskerRule)
    assert isinstance(rule_for(op.fused_block(PatchGeometry(1, 8, 8, 2, 1), 16, 16, 16), ZNVER3),
                      PatchChain)
    assert isinstance(rule_for(op.add_relu(64), ZNVER3), Elementwise)


def test_our_rules_run_under_dlights_own_pass():
    mod = tvm.IRModule({"conv": op.conv1x1(1, 4, 6, 16, 32, 1, "relu"),
                        "scan": op.compact(64), "relu": op.relu_inplace(256),
                        "copy": foreign})
    with ZNVER3:
        scheduled = dlight.ApplyDefaultSchedule(*rules_for(ZNVER3))(mod)
    for gvar, func in scheduled.functions_items():
        assert func.attrs["tirx.is_scheduled"], gvar.name_hint


def test_unknown_target_family_is_a_clear_error_before_any_work():
    with pytest.raises(ValueError, match="no LAS schedule rules for opencl targets"):
        check_target(tvm.target.Target({"kind": "opencl"}))
    assert set(FAMILIES) == {"cpu", "cuda"}
    assert check_target(tvm.target.Target("nvidia/jetson-tx2")).name == "cuda"
    assert check_target(CORTEX_A57).name == "cpu"


@pytest.mark.parametrize("target, fma", [(CORTEX_A57, "fmla"), (SKYLAKE_AVX512, "zmm")])
def test_kernels_compile_for_targets_we_cannot_run(target, fma):
    """aarch64 NEON and AVX-512 code is generated and inspected here; not run (no such CPU)."""
    func = schedule(op.gather_conv3x3(PatchGeometry(1, 28, 28, 4, 1), 32, 32), target)
    lib = tvm.compile(tvm.IRModule({"main": func}), target=target)
    asm = lib.mod.inspect_source("asm") if hasattr(lib, "mod") else lib.inspect_source("asm")
    assert fma in asm


# -- pooling -------------------------------------------------------------------------------------
def _legalised_pool(kind: str, shape=(1, 20, 20, 24)):
    """Relax's NHWC max / average pool (3x3, stride 2, pad 1: ResNet's stem pool), legalised
    to a PrimFunc the way the compiler's dense phase does."""
    from tvm import relax

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, "float32"))
    pool = relax.op.nn.max_pool2d if kind == "max" else relax.op.nn.avg_pool2d
    with bb.function("main", [x]):
        out = bb.emit(pool(x, 3, 2, 1, layout="NHWC"))
        bb.emit_func_output(out)
    mod = relax.transform.LegalizeOps()(bb.get())
    return next(f for _, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc))


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_window_pool_reads_the_input_once_per_tap_in_vectors(kind):
    import numpy as np
    import torch

    from las_compiler.schedules.cpu.window_pool import WindowPool

    func = _legalised_pool(kind)
    assert rule_for(func, ZNVER3) is None  # foreign: not one of our kernels
    sch = WindowPool().apply(func, ZNVER3)
    assert sch is not None
    scheduled = sch.mod["main"]
    window = "pool_max" if kind == "max" else "pool_sum"
    assert loops(scheduled, f"{window}_update") == [(PARALLEL, 100), (SERIAL, 3), (SERIAL, 3),
                                                    (VECTORIZED, 24)]
    assert "pad_temp" not in scheduled.script()  # padding inlined: no padded copy
    lib = tvm.compile(tvm.IRModule({"main": scheduled.with_attr("global_symbol", "main")}),
                      target=ZNVER3)
    x = np.random.default_rng(0).standard_normal((1, 20, 20, 24), dtype=np.float32)
    out = tvm.runtime.empty((1, 10, 10, 24), "float32")
    lib["main"](tvm.runtime.tensor(x), out)
    nchw = torch.from_numpy(x).permute(0, 3, 1, 2)
    ref = torch.nn.functional.max_pool2d(nchw, 3, 2, 1) if kind == "max" else \
        torch.nn.functional.avg_pool2d(nchw, 3, 2, 1, count_include_pad=False)
    np.testing.assert_allclose(out.numpy(), ref.permute(0, 2, 3, 1).numpy(), rtol=1e-6,
                               atol=1e-6)


def test_window_pool_leaves_other_reductions_alone():
    from las_compiler.schedules.cpu.window_pool import WindowPool

    assert WindowPool().apply(foreign, ZNVER3) is None  # no reduction
    assert WindowPool().apply(op.relu_inplace(16), ZNVER3) is None  # ours
    assert WindowPool().apply(_legalised_pool("max", (1, 8, 8, 2)), ZNVER3) is None  # 2 channels


# -- tile shape from the core's FMA chains and registers ------------------------------------------
def _hot_loop(func, target):
    from benchmarks.inner_loops import hot_loop

    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}),
                      target=target)
    arch = "aarch64" if "arm_cpu" in target.keys else "x86"
    return hot_loop(lib.mod.inspect_source("asm"), arch)


SAPPHIRE_RAPIDS = tvm.target.Target({"kind": "llvm", "mcpu": "sapphirerapids"})
ZNVER4 = tvm.target.Target({"kind": "llvm", "mcpu": "znver4"})


def test_small_tiles_take_two_channel_blocks_where_the_fma_chains_need_them():
    """A 4-pixel patch (S = 2) gives a 4 x 16 zmm tile 4 accumulators: Intel's two 512-bit
    FMA ports need 8 chains, so the tile covers 32 channels; Zen 4 (one zmm FMA a cycle)
    needs 4 and AVX2's 4 x 2 ymm already has 8, so both keep one block."""
    func = op.gather_conv3x3(PatchGeometry(1, 28, 28, 2, 1), 32, 64)
    assert loops(schedule(func, SAPPHIRE_RAPIDS), "conv_update")[-3:] == [
        (UNROLLED, 12), (UNROLLED, 2), (VECTORIZED, 16)]
    assert _hot_loop(schedule(func, SAPPHIRE_RAPIDS), SAPPHIRE_RAPIDS)["accumulators"] == 8
    for target in (ZNVER4, ZNVER3):
        assert loops(schedule(func, target), "conv_update")[-1] == (VECTORIZED, 16)
        assert loops(schedule(func, target), "conv_update")[-2][0] == UNROLLED
    assert _hot_loop(schedule(func, ZNVER3), ZNVER3)["accumulators"] == 8


@pytest.mark.parametrize("kernel", ["gather_conv3x3", "conv1x1"])
def test_two_channel_block_tiles_compute_the_same_numbers(kernel):
    """Run here: a 2-pixel AVX2 tile (2 x 2 ymm, fewer than 8 chains) takes two channel
    blocks; its outputs equal PyTorch's."""
    import numpy as np
    import torch

    from las_compiler.op.params import pack_weight

    rng = np.random.default_rng(0)
    c, k = 16, 64
    g = PatchGeometry(1, 12, 12, 2, 1)
    x = rng.standard_normal((1, 12, 12, c)).astype("float32")
    size = 3 if kernel == "gather_conv3x3" else 1
    w = (rng.standard_normal((k, c, size, size)) * 0.1).astype("float32")
    b = rng.standard_normal(k).astype("float32")
    ref = torch.relu(torch.nn.functional.conv2d(
        torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(w), torch.from_numpy(b),
        padding=size // 2)).permute(0, 2, 3, 1).numpy()
    if kernel == "gather_conv3x3":
        func = op.gather_conv3x3(g, c, k)
        idx = np.array([0, 7, 20, 35], "int32")
        args = [x, idx, pack_weight(w), b]
        out = np.zeros((len(idx), 4, k), "float32")
        cells = [(i // 6, i % 6) for i in idx]
        expected = np.stack([ref[0, 2 * r:2 * r + 2, 2 * q:2 * q + 2].reshape(4, k)
                             for r, q in cells])
    else:
        func = op.conv1x1(1, 12, 12, c, k, 1, "relu")
        args = [x.reshape(144, c), pack_weight(w), b, np.zeros((1, 1), "float32")]
        out = np.zeros((144, k), "float32")
        expected = ref.reshape(144, k)
    scheduled = TiledConv().apply_knobs(func, ZNVER3, {"pixels": 2, "channel_outer": 0})
    nest = loops(scheduled.mod["main"], "conv_update")
    assert nest[-3:] == [(UNROLLED, 2), (UNROLLED, 2), (VECTORIZED, 16)]
    lib = tvm.compile(tvm.IRModule({"main": scheduled.mod["main"]}), target=ZNVER3)
    result = tvm.runtime.tensor(out)
    lib["main"](*[tvm.runtime.tensor(a) for a in args], result)
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-4, atol=1e-4)


def test_neon_stem_tile_fits_the_registers():
    """The stem's 3 input channels are unrolled whole: on NEON (no memory operands in FMAs)
    their 12 weight vectors stay live, so the tile drops to 4 pixels and nothing spills."""
    stem = op.conv2d(1, 32, 32, 3, 64, 7, 2, 3, "relu")
    assert get_config(CORTEX_A57, stem).pixels == 4
    assert get_config(ZNVER3, stem).pixels == 6  # x86 FMAs read weights from memory
    loop = _hot_loop(schedule(stem, CORTEX_A57), CORTEX_A57)
    assert loop["stack"] == 0 and loop["accumulators"] == 16


def test_row_kernels_read_dominant_weights_once():
    """Stage-4-like 3x3 over row groups: 9 x 256 x 256 weights against a 7x7x256 map, so the
    channel tiles run outermost and in parallel, every group's rows staged first at root;
    with a map larger than the weights the groups stay outermost."""
    g = PatchGeometry(1, 14, 14, 1, 2)
    big = schedule(op.gather_conv3x3_rows(g, 256, 256), ZNVER3)
    nest = loops(big, "conv_update")
    assert nest[0] == (PARALLEL, 16) and nest[1][1] == "m"  # 256 / 16 channel tiles, groups
    assert loops(big, "gather")[0][0] == PARALLEL  # staged at root, in parallel
    small = schedule(op.gather_conv3x3_rows(PatchGeometry(1, 56, 56, 1, 1), 16, 16), ZNVER3)
    assert loops(small, "conv_update")[0] == (PARALLEL, "m")
