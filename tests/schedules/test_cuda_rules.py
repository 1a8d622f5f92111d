"""The CUDA rules without a GPU: loop structure, TVM's GPU verification at every LAS layer
shape of LAS-ResNet-50/101 (224x224 and an 800x1333 detection input), ptxas (registers,
no spills), and the serial emulation the numeric tests rely on (its own test: a planted
schedule bug must show up as wrong numbers).

The numbers of every GPU-scheduled kernel and block pipeline are checked against PyTorch in
``tests/op/test_kernels.py`` and ``tests/test_block_pipelines.py`` (their ``cuda-emulated``
cases); a network in ``tests/test_compiler.py``.
"""

import functools

import numpy as np
import pytest
import tvm
from tvm import tirx

from las_compiler.block_pipelines import PIPELINES
from las_compiler.compiler import resolve_target
from las_compiler.geometry import BlockGeometry, PatchGeometry
from las_compiler.masker_chain import links, nests
from las_compiler.op import get_kernel
from las_compiler.predictor.layers import network_blocks
from las_compiler.schedules import pipeline_fits, schedule
from las_compiler.schedules.base import ScheduleError
from las_compiler.schedules.cuda.limits import block_resources, fits
from las_compiler.schedules.cuda.tiled_conv import TiledConvGPU
from las_compiler.target import host_target
from las_compiler.transform.serialize_gpu import serialize

TX2 = "nvidia/jetson-tx2"
H100 = "nvidia/nvidia-h100"
SNETS = {"las_resnet50": (4, 4, 2, 1), "las_resnet101": (4, 4, 7, 1)}


@functools.cache
def gpu(tag):
    return resolve_target(tag)


def thread_loops(func):
    """{thread tag: extent} of every thread-bound loop (static extents only)."""
    found = {}

    def visit(node):
        if isinstance(node, tirx.For) and node.kind == tirx.ForKind.THREAD_BINDING:
            extent = node.extent
            found[str(node.thread_binding.thread_tag)] = int(extent) if isinstance(
                extent, tirx.IntImm) else "symbolic"
        return node

    import tvm_ffi

    tvm_ffi.structural_map(func.body, [(tirx.For, visit)], order="post")
    return found


def launches(func) -> int:
    """Kernel launches of a scheduled PrimFunc: its ``blockIdx.x`` loops (one per grid)."""
    found = []

    def visit(node):
        if node.kind == tirx.ForKind.THREAD_BINDING and \
                str(node.thread_binding.thread_tag) == "blockIdx.x":
            found.append(node)
        return node

    import tvm_ffi

    tvm_ffi.structural_map(func.body, [(tirx.For, visit)], order="post")
    return len(found)


def test_tiled_conv_structure_on_a_patch_kernel():
    """One thread block per active patch (symbolic), 8 x 16 threads, channel tiles of 64 on
    blockIdx.y, the gathered window and the weights staged in shared memory (twice: in
    8-channel chunks, double-buffered)."""
    g = PatchGeometry(1, 28, 28, 4, 1)
    func = TiledConvGPU().apply(get_kernel("gather_conv3x3")(g, 64, 128), gpu(H100)).mod["main"]
    assert thread_loops(func) == {"blockIdx.x": "symbolic", "blockIdx.y": 2, "threadIdx.y": 8,
                                  "threadIdx.x": 16}
    text = func.script()
    assert 'scope="shared"' in text and 'scope="local"' in text
    # window (6 x 6 pixels x 16-channel chunk) + weights (64 channels x 3 x 3 x 16)
    assert block_resources(func)["shared_bytes"] == (36 * 16 + 64 * 9 * 16) * 4


def test_conv_stages_are_double_buffered_where_they_fit():
    """The chunk loop is a two-stage software pipeline: the built CUDA code holds two copies
    of each shared tile (the H100's 48 KB per block take two 8-channel chunks of this
    kernel, where one 16-channel chunk took 39 KB); a block whose doubled tiles do not fit at
    half the chunk, and a reduction of a single chunk, keep single stages."""
    from las_compiler.schedules.cuda import toolchain
    from las_compiler.schedules.cuda.limits import pipelined_copies

    g = PatchGeometry(1, 28, 28, 4, 1)
    func = schedule(get_kernel("gather_conv3x3")(g, 64, 128), gpu(H100))
    assert pipelined_copies(func) == 2 and fits(func, gpu(H100))
    if toolchain.toolchain_available(gpu(H100)) is None:
        text, _ = toolchain.device_code({"k": func}, gpu(H100))
        shared = sorted(line.split("[")[1].split("]")[0] for line in text.splitlines()
                        if "__shared__" in line)
        assert shared == [str(2 * 36 * 8), str(2 * 64 * 9 * 8)]  # window, weights
    single = schedule(get_kernel("gather_conv3x3")(g, 64, 128), gpu(H100),
                      knobs={"buffers": 1})
    assert pipelined_copies(single) == 1
    assert block_resources(single)["shared_bytes"] == (36 * 16 + 64 * 9 * 16) * 4
    small = tvm.target.Target({"kind": "cuda", "arch": "sm_62", "max_shared_memory_per_block":
                               16384, "max_threads_per_block": 1024, "thread_warp_size": 32})
    tight = schedule(get_kernel("gather_conv3x3")(g, 64, 128), small)
    assert block_resources(tight)["shared_bytes"] <= 16384 and fits(tight, small)
    one_chunk = schedule(get_kernel("gather_conv3x3")(g, 8, 16), gpu(H100))
    assert pipelined_copies(one_chunk) == 1


def test_masker_is_one_launch_with_a_block_per_cell():
    """Pooling, the 2 x C dot product and the compare in one kernel: a thread block per cell,
    256 threads each owning 4 of the 1024 channels, everything in registers (no shared
    memory of the rule's own), the sums across threads by TVM's cross-thread reduction."""
    g = PatchGeometry(1, 14, 14, 2, 1)
    func = schedule(get_kernel("masker")(g, 1024), gpu(TX2))
    assert thread_loops(func) == {"blockIdx.x": g.num_cells, "threadIdx.x": 256}
    assert launches(func) == 1  # dlight's fallback made three
    assert block_resources(func)["shared_bytes"] == 0 and fits(func, gpu(TX2))


def test_limits_come_from_the_target():
    """A target with less shared memory gets smaller chunks, not an over-limit kernel."""
    g = PatchGeometry(1, 28, 28, 4, 1)
    small = tvm.target.Target({"kind": "cuda", "arch": "sm_62", "max_shared_memory_per_block":
                               16384, "max_threads_per_block": 1024, "thread_warp_size": 32})
    func = schedule(get_kernel("gather_conv3x3")(g, 64, 128), small)
    assert block_resources(func)["shared_bytes"] <= 16384 and fits(func, small)
    # and TVM's verifier refuses the H100's schedule (more shared memory) for it
    h100 = schedule(get_kernel("gather_conv3x3")(g, 64, 128), gpu(H100))
    assert block_resources(h100)["shared_bytes"] > 16384
    assert fits(h100, gpu(H100)) and not fits(h100, small)
    # a chain whose intermediates cannot fit is refused with the numbers
    wide = BlockGeometry(PatchGeometry(1, 14, 14, 7, 1), 1024, 256, 1024, False)
    with pytest.raises(ScheduleError, match="shared memory"):
        schedule(get_kernel("halo_conv3x3")(wide.patches, 1024, 256), small)
    assert not pipeline_fits(PIPELINES["halo"], wide, small)


def layer_geometries(model, height, width):
    out = []
    for layer, s in zip(network_blocks(model, height, width), _per_block(model), strict=True):
        patches = PatchGeometry(1, layer.height, layer.width, s, layer.stride)
        out.append(BlockGeometry(patches, layer.in_channels, layer.planes, layer.out_channels,
                                 layer.downsample))
    return sorted(set(out), key=str)


def _per_block(model):
    depths = {"las_resnet50": (3, 4, 6, 3), "las_resnet101": (3, 4, 23, 3)}[model]
    return [s for s, d in zip(SNETS[model], depths, strict=True) for _ in range(d)]


def shape_cases():
    """Every distinct block geometry (a shape LAS-ResNet-50 and -101 share is checked once)."""
    cases, seen = [], set()
    for model, size in [("las_resnet50", (224, 224)), ("las_resnet101", (224, 224)),
                        ("las_resnet101", (800, 1333))]:
        for geometry in layer_geometries(model, *size):
            if geometry in seen:
                continue
            seen.add(geometry)
            cases.append(pytest.param(geometry, id=f"{model}-{size[0]}x{size[1]}-"
                                                   f"{geometry.patches.height}x"
                                                   f"{geometry.patches.width}-"
                                                   f"c{geometry.in_channels}"))
    return cases


@pytest.mark.parametrize("geometry", shape_cases())
def test_gpu_verification_at_every_layer_shape(geometry):
    """Every kernel of every pipeline that fits passes TVM's VerifyGPUCode (threads, shared
    and local memory per block); the default pipeline (fused) always fits. Checked for the
    TX2: every other tag has the same per-block limits (the next test), and no rule reads
    anything else from the target."""
    tag = TX2
    target = gpu(tag)
    assert pipeline_fits(PIPELINES["fused"], geometry, target)
    seen = set()
    for name in ("fused", "pixel_rows", "halo", "whole", "dense"):
        pipeline = PIPELINES[name]
        if not pipeline_fits(pipeline, geometry, target):
            continue
        for step in pipeline.steps_for(geometry):
            key = (step.kernel, step.args(geometry))
            if key in seen:
                continue
            seen.add(key)
            func = schedule(get_kernel(step.kernel)(*step.args(geometry)), target)
            assert fits(func, target), f"{name}/{step.kernel} over {tag}'s limits"
    for args in chained_maskers(geometry):
        assert fits(schedule(get_kernel("masker")(*args), target), target), f"masker{args[2:]}"


def chained_maskers(geometry):
    """Masker arguments of a chain's first link (three consumers, a stage-3 run) and of an
    update, where the block can be in a chain (``las_compiler.masker_chain``); for a
    projected block, its update from a previous grid of S or 2S (LAS-ResNet-50 4-4-2-1's
    stage boundaries) whose cells make its pooling windows."""
    g, c = geometry.patches, geometry.in_channels
    if geometry.projected:
        out = []
        for s in sorted({g.granularity, 2 * g.granularity}):
            try:
                fine = PatchGeometry(g.batch, g.height, g.width, s, 1)
            except ValueError:  # S does not fit the map
                continue
            if fine != g and nests(fine, g):
                out.append((g, c, 1, True, fine))
        return out
    if not links(geometry, "fused", geometry, "fused"):
        return []
    return [(g, c, 3, False), (g, c, 2, True)]


def test_serialized_schedule_is_the_gpu_program_in_order():
    """The emulation pass: no thread binding, no shared/local scope and no barrier is left,
    the result equals the unscheduled kernel, and a planted bug (the cooperative fetch of
    the window misses its last chunk of elements) shows up as wrong numbers."""
    g = PatchGeometry(1, 12, 12, 4, 1)
    func = get_kernel("gather_conv3x3")(g, 16, 32)
    scheduled = schedule(func, gpu(H100))
    emulated = serialize(scheduled)
    text = emulated.script()
    assert "thread_binding" not in text and '"shared"' not in text
    assert "tvm_storage_sync" not in text

    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 12, 12, 16)).astype("float32")
    idx = np.array([0, 4, 8], "int32")
    w = rng.standard_normal((2, 3, 3, 16, 16)).astype("float32")
    b = rng.standard_normal(32).astype("float32")

    def run(f):
        ex = tvm.compile(tvm.IRModule({"main": f}), target=host_target())
        out = tvm.runtime.tensor(np.full((3, 16, 32), np.nan, "float32"))
        ex["main"](*[tvm.runtime.tensor(a) for a in (x, idx, w, b)], out)
        return out.numpy()

    expected = run(func)
    np.testing.assert_allclose(run(emulated), expected, rtol=1e-5, atol=1e-5)
    # the window's fetch: T.grid(chunks, threadIdx.y, threadIdx.x), serialized
    fetch = [line for line in text.splitlines() if "for ax0_ax1_ax2_fused_0," in line]
    assert fetch, "the window fetch loop moved: update the planted bug"
    chunks = int(fetch[0].split("T.grid(")[1].split(",")[0])
    planted = text.replace(fetch[0], fetch[0].replace(f"T.grid({chunks},",
                                                      f"T.grid({chunks - 1},"), 1)
    got = run(tvm.script.from_source(planted))
    assert not np.allclose(got, expected, atol=1e-3, equal_nan=False)


def test_the_verified_target_covers_every_tag():
    """The layer-shape verification runs for the TX2; the other GPUs' tags have the same
    per-block limits (threads, shared memory), so the same schedules fit them."""
    from las_compiler.schedules.cuda.base import Limits

    checked = {(Limits.of(gpu(TX2)).threads, Limits.of(gpu(TX2)).shared_bytes)}
    for tag in (H100, "nvidia/geforce-gtx-1080", "nvidia/nvidia-v100",
                "nvidia/jetson-agx-orin-64gb"):
        limits = Limits.of(gpu(tag))
        assert (limits.threads, limits.shared_bytes) in checked, tag


@pytest.mark.parametrize("size, s, stride", [((14, 14), 2, 1), ((14, 14), 3, 1),
                                             ((28, 28), 4, 2), ((14, 14), 5, 1),
                                             ((28, 28), 7, 1), ((25, 42), 4, 1)])
def test_idle_slot_accounting_is_the_scheduled_tile(size, s, stride):
    """``idle_slots`` (what benchmarks.gpu tabulates against issue 25's 25 %) counts the
    pixel slots the scheduled kernel really gives a patch: threadIdx.y x each thread's run."""
    from tvm import s_tir

    from las_compiler.schedules.cuda.idle_slots import kernel_idle, tiled_slots
    from las_compiler.schedules.cuda.tiled_conv import Config

    g = PatchGeometry(1, *size, s, stride)
    func = schedule(get_kernel("gather_conv3x3")(g, 16, 64), gpu(TX2))
    sch = s_tir.Schedule(func)
    runs = [sch.get(loop) for loop in sch.get_loops(sch.get_sblock("epilogue"))
            if sch.get(loop).kind != tirx.ForKind.THREAD_BINDING]
    per_thread = int(np.prod([int(loop.extent) for loop in runs])) // Config().thread_channels
    slots = thread_loops(func).get("threadIdx.y", 1) * per_thread
    assert slots == tiled_slots(g.tile_pixels)
    cells = g.cell_extents()
    idle = kernel_idle("gather_conv3x3", BlockGeometry(g, 16, 16, 64, stride == 2))["tile"]
    assert idle == pytest.approx(1 - cells.mean() / slots)


def test_occupancy_from_the_assembler_report():
    """Resident warps over the SM's most, and what limits them (``benchmarks.gpu_resources``
    tables it for every kernel)."""
    from las_compiler.schedules.cuda.limits import occupancy

    assert occupancy(90, 256, 32, 0) == (1.0, "threads")
    # a 41 KB block on the TX2's 64 KB SM: one block of 4 warps of 64
    assert occupancy(62, 128, 48, 41 << 10) == (4 / 64, "shared")
    # 255 registers: 8,192 per warp, two blocks of 4 warps in 65,536
    assert occupancy(70, 128, 255, 0) == (8 / 64, "registers")
