"""The latency model: geometry it relies on, schedule knowledge shared with the rules,
monotonicity, network shapes, S selection, and that calibration recovers what it should."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from las_compiler.predictor import (
    BlockLayer,
    get_hardware,
    network_blocks,
    predict_block,
)
from las_compiler.predictor import kernels as K
from las_compiler.predictor.fit import KernelSample, fit_profile
from las_compiler.predictor.network import predict_network, select_granularity
from las_compiler.predictor.profiles import cpu_profile, nominal_host

from ..machines import RECORDED


def _recorded(kind="zen4_avx512"):
    """A CPU profile that does not depend on the machine the tests run on."""
    return cpu_profile(RECORDED[kind])


def test_schedule_constants_match_the_kernels_and_rules():
    """The CPU tile has one definition (``register_tile``); the GPU rule's block is mirrored
    here."""
    from las_compiler.schedules.cuda.tiled_conv import Config as GPUConfig

    gpu = GPUConfig()
    assert (K.GPU_PIXEL_THREADS, K.GPU_THREAD_PIXELS) == (gpu.pixel_threads, gpu.thread_pixels)
    assert K.GPU_BLOCK_CHANNELS == gpu.channel_threads * gpu.thread_channels
    from las_compiler.schedules.cuda.patch_chain import PIXEL_THREADS

    assert K.GPU_CHAIN_PIXEL_THREADS == PIXEL_THREADS
    gpu_tile = K.TileModel.for_hardware(get_hardware("v100"))
    assert (gpu_tile.pixels, gpu_tile.channels) == (K.GPU_BLOCK_PIXELS, K.GPU_BLOCK_CHANNELS)


def _avx512(hw):
    return hw.with_updates(vector_bits=512, simd_lanes=16, vector_registers=32, l1_ways=8,
                           l1_way_bytes=4096)


def _fixed_host():
    """A host-like CPU profile that does not depend on the machine the tests run on (2
    AVX-512 cores, a 32 MB shared L3: a network's ~100 MB of weights do not fit)."""
    from las_compiler.predictor import MemoryLevel

    kb, mb = 1024, 1024 * 1024
    return _avx512(_recorded()).with_updates(
        compute_units=2, fma_per_cycle=1.0, clock_ghz=2.6,
        levels=(MemoryLevel("L1", 48 * kb, 333.0, per_unit=True),
                MemoryLevel("L2", 1 * mb, 166.0, per_unit=True),
                MemoryLevel("L3", 32 * mb, 83.0), MemoryLevel("DRAM", 1 << 40, 20.0)))


def test_tile_slowdown_charges_aliasing_spills_and_step_overhead():
    hw = _avx512(_recorded())

    def slowdown(pixels, row_bytes):
        return K.tile_slowdown(hw, pixels, 1, row_bytes)

    step = lambda p: (p + K.STEP_OVERHEAD) / p  # noqa: E731
    assert slowdown(6, 4096) == pytest.approx(step(6))  # 6 rows 4 KB apart: 7 fit
    assert slowdown(12, 2048) == pytest.approx(step(12))  # 2 KB apart: 14 fit
    assert slowdown(12, 4096) > 1.5 * slowdown(12, 2048)  # 12 rows in 7 ways thrash
    assert slowdown(16, 8192) > slowdown(12, 8192) > slowdown(8, 8192)
    assert slowdown(24, 256) > 1.2 * step(24)  # 24 accumulators outgrow the registers
    assert slowdown(4, 256) > slowdown(8, 256) > slowdown(16, 256)  # per-step overhead
    assert K.tile_slowdown(get_hardware("v100"), 24, 1, 4096) == 1.0


@pytest.mark.parametrize("channels, stride", [(256, 1), (1024, 1), (512, 2), (2048, 1)])
def test_model_and_rule_pick_the_same_tile_for_aliasing_rows(channels, stride):
    """conv1x1 reading NHWC rows ``channels`` x ``stride`` apart: the rule's pixel tile (a
    real kernel) and the model's agree."""
    import tvm

    from las_compiler import op
    from las_compiler.schedules.cpu.tiled_conv import get_config, input_row_bytes

    target = tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu",
                                "mcpu": "skylake-avx512"})
    func = op.conv1x1(1, 14, 14, channels, 64, stride, "relu")
    assert input_row_bytes(func) == channels * 4 * stride
    hw = _avx512(_recorded())
    tile = K.TileModel.for_hardware(hw).for_rows(hw, input_row_bytes(func))
    assert tile.pixels == get_config(target, func).pixels
    assert tile.pixels == (6 if channels * stride * 4 % 4096 == 0 else 12)


@settings(max_examples=25, deadline=None)
@given(size=st.sampled_from([8, 12, 14, 16]), stride=st.sampled_from([1, 2]),
       s=st.sampled_from([1, 2, 4]), seed=st.integers(0, 1000))
def test_dilated_pixels_equal_the_reference_dilated_mask(size, stride, s, seed):
    from las_compiler.models.masker import dilate_mask, upsample_mask

    layer = BlockLayer(1, size, size, 8, 4, 16, stride, stride == 2)
    if layer.out_height % s:
        return  # unequal cells: the kernels read whole tile windows, a superset
    gh, gw = layer.grid(s)
    rng = np.random.default_rng(seed)
    mask = rng.random((1, gh, gw)) < 0.4
    active = np.flatnonzero(mask)
    up = upsample_mask(torch.from_numpy(mask).float(), layer.out_height, layer.out_width)
    expected = float(dilate_mask(up, stride, size, size).mean())
    assert layer.dilated_fraction_of(s, active) == pytest.approx(expected)


def test_expected_dilation_matches_sampled_masks():
    layer = BlockLayer(1, 28, 28, 8, 4, 16, 1, False)
    rng = np.random.default_rng(0)
    for s, rate in [(1, 0.1), (2, 0.3), (4, 0.5), (7, 0.25)]:
        cells = layer.cells(s)
        sampled = np.mean([layer.dilated_fraction_of(s, np.flatnonzero(rng.random(cells) < rate))
                           for _ in range(300)])
        assert layer.dilated_fraction(s, rate) == pytest.approx(sampled, abs=0.02)
    assert layer.dilated_fraction(4, 1.0) == 1.0 and layer.dilated_fraction(4, 0.0) == 0.0


def test_network_blocks_match_the_pytorch_model():
    from las_compiler.models import las_resnet101

    model = las_resnet101(granularity=1)
    torch_blocks = [b for stage in (model.layer1, model.layer2, model.layer3, model.layer4)
                    for b in stage]
    ours = network_blocks("las_resnet101", 224)
    assert len(ours) == len(torch_blocks) == 33
    for layer, block in zip(ours, torch_blocks, strict=True):
        assert (layer.in_channels, layer.planes, layer.out_channels, layer.stride,
                layer.downsample) == (block.in_channels, block.width, block.out_channels,
                                      block.stride, block.downsample is not None)
    assert [b.out_height for b in ours if b.name.endswith(".0")] == [56, 28, 14, 7]
    with pytest.raises(ValueError, match="unknown model 'resnet18'"):
        network_blocks("resnet18")


@pytest.mark.parametrize("hardware", [*sorted(RECORDED), "v100", "tx2", "tx2-cpu"])
def test_latency_grows_with_rate_and_dense_ignores_it(hardware):
    hw = _recorded(hardware) if hardware in RECORDED else get_hardware(hardware)
    layer = network_blocks("las_resnet50")[4]  # layer2.1
    for s in (1, 2, 4, 7):
        times = [predict_block(hw, layer, s, r).total_us for r in (0.0, 0.25, 0.5, 0.75, 1.0)]
        assert times == sorted(times) and times[0] < times[-1]
    # the dense pipeline: the static block's convs plus the masker, whatever the rate
    dense = predict_block(hw, layer, 4, 0.3, "dense")
    assert dense.total_us == predict_block(hw, layer, 4, 0.9, "dense").total_us
    static = predict_block(hw, layer, None, 0.1)
    masker = dict(dense.kernels)["masker"]
    assert dense.total_us == pytest.approx(static.total_us + masker)


def test_partial_cpu_tiles_cost_their_fma_latency():
    hw = _avx512(_recorded())
    tile = K.TileModel.for_hardware(hw)
    assert (tile.pixels, tile.min_pixels) == (12, 4)
    assert K.per_patch_tiles(tile, 1) == (1, 4)  # one pixel still pays 4 accumulators
    assert K.per_patch_tiles(tile, 16) == (2, 16)  # 12 + a partial tile of 4
    assert K.per_patch_tiles(tile, 49) == (5, 52)  # 4 x 12 + max(1, 4)
    gpu = K.TileModel.for_hardware(get_hardware("v100"))
    # a thread block per patch: 2 threads x 2 pixels for S = 2; 8 x 7 slots for S = 7
    assert K.per_patch_tiles(gpu, 4) == (1, 4)
    assert K.per_patch_tiles(gpu, 49) == (1, 56)


def test_bad_requests_are_clear_errors():
    hw = _recorded("zen3_avx2")
    layer = network_blocks("las_resnet50")[-1]
    with pytest.raises(ValueError, match="S=8 does not fit the 7x7 output map of layer4.2"):
        predict_block(hw, layer, 8, 0.5)
    with pytest.raises(ValueError, match=r"activation rate must lie in \[0, 1\]"):
        predict_block(hw, layer, 7, 1.5)
    with pytest.raises(ValueError, match="unknown block pipeline 'sparse'"):
        predict_block(hw, layer, 7, 0.5, "sparse")
    with pytest.raises(ValueError, match="S=8 does not fit"):
        predict_network(hw, "las_resnet50", "8-8-8-8", 0.5)


def test_network_prediction_and_selection():
    hw = get_hardware("tx2")
    pred = predict_network(hw, "las_resnet50", "4-4-2-1", 0.5)
    assert len(pred.blocks) == 16 and pred.fixed_us > 0
    assert pred.dense_ms == pytest.approx(
        (pred.fixed_us + sum(d.total_us for d, _ in pred.blocks)) / 1e3)
    assert pred.to_dict()["S_net"] == "4-4-2-1"
    sel = select_granularity(hw, "las_resnet50", 0.5)
    assert len(sel.choices) == 4
    for choice in sel.choices:
        assert choice["S"] == min(choice["by_S"], key=choice["by_S"].get)
    assert set(sel.choices[3]["by_S"]) == {1, 2, 4, 7}  # 8 and 14 do not fit 7x7
    assert sel.network.dynamic_ms <= predict_network(hw, "las_resnet50", "4-4-2-1",
                                                     0.5).dynamic_ms + 1e-9
    per_block = select_granularity(hw, "las_resnet50", 0.5, per="block")
    assert len(per_block.choices) == 16
    assert per_block.network.dynamic_ms <= sel.network.dynamic_ms + 1e-9


def test_first_weight_pass_comes_from_where_the_context_left_the_weights():
    """In a network every block's weights arrive from DRAM; a block run over and over keeps
    them in the shared cache when its footprint fits. Bytes are moved, never made up."""
    from las_compiler.predictor.block import block_work
    from las_compiler.predictor.network import network_footprint_bytes

    hw = _fixed_host().with_updates(overlap=0.0)
    layers = network_blocks("las_resnet50")
    layer = layers[-1]
    cache = hw.levels[-2]
    if layer.footprint_bytes() > cache.total_capacity(hw.compute_units):
        pytest.skip("this machine's shared cache does not hold a stage-4 block")
    network = network_footprint_bytes(layers)
    assert network > 50e6
    alone, _ = block_work(hw, layer, 1, "fused", 20.0, 40.0)
    inside, _ = block_work(hw, layer, 1, "fused", 20.0, 40.0, network)
    for (label, a), (_, b) in zip(alone, inside, strict=True):
        assert sum(a.bytes.values()) == pytest.approx(sum(b.bytes.values()))
        if a.weights:
            moved = b.bytes.get(hw.dram.name, 0.0) - a.bytes.get(hw.dram.name, 0.0)
            assert moved == pytest.approx(sum(nbytes for nbytes, _ in a.weights)), label
    assert predict_block(hw, layer, 1, 0.4, footprint_bytes=network).total_us > \
        predict_block(hw, layer, 1, 0.4).total_us


def test_fit_recovers_known_efficiencies():
    """Kernel times made by the model with known efficiencies, overlap, dispatch cost and
    shared-cache share are fitted back."""
    from las_compiler.predictor.fit import _with_cache_share

    truth = _with_cache_share(_fixed_host(), 0.25).with_updates(
        overlap=0.5, launch_us=2.0,
        efficiency={"gather_conv3x3": 0.62, "conv1x1_rows": 0.8, "conv1x1_scatter_add": 0.46,
                    "conv2d": 0.9})
    from las_compiler.predictor.block import block_work

    samples = []
    rng = np.random.default_rng(0)
    blocks = network_blocks("las_resnet50")
    for layer in blocks[:2] + blocks[7:8] + blocks[13:15]:
        for s in (2, 4, 7):
            active = tuple(np.sort(rng.choice(layer.cells(s), layer.cells(s) // 2,
                                              replace=False)).tolist())
            dilated = layer.dilated_fraction_of(s, active) * layer.height * layer.width
            work, _ = block_work(truth, layer, s, "fused", len(active), dilated)
            samples += _by_kind(layer, s, "fused", active, truth, work)
        work, _ = block_work(truth, layer, None, "static", 0, 0)
        samples += _by_kind(layer, None, "static", (), truth, work)
    fitted = fit_profile(_fixed_host(), samples)
    assert fitted.overlap == 0.5 and fitted.launch_us == 2.0
    assert fitted.levels[-2].capacity_bytes == truth.levels[-2].capacity_bytes
    for kind, value in truth.efficiency.items():
        assert fitted.efficiency[kind] == pytest.approx(value, abs=0.011)


def _by_kind(layer, s, pipeline, active, hw, work):
    """Samples as calibration measures them: one per kernel kind, its calls summed."""
    times: dict[str, float] = {}
    for _, w in work:
        times[w.kind] = times.get(w.kind, 0.0) + K.kernel_time_us(hw, w)
    return [KernelSample(layer, s, pipeline, active, kind, us) for kind, us in times.items()]


def test_masker_chains_pool_only_the_cells_that_changed():
    """Inside a stage a plain block's masker pools only the cells the block before it
    activated (``las_compiler.masker_chain``); the chain starts after the projected block,
    which pools only the previous stage's changed cells where its windows are whole cells of
    them, and where S does not divide the map every masker pools the whole map."""
    hw = get_hardware("v100")
    pred = predict_network(hw, "las_resnet50", "4-4-2-1", 0.5, batch=8)
    masker = {p.layer.name: dict(p.kernels)["masker"] for _, p in pred.blocks}
    launch = hw.launch_us
    assert masker["layer1.2"] - launch == pytest.approx(0.5 * (masker["layer1.1"] - launch),
                                                        rel=0.1)
    # layer2.0 reads layer1's map (as layer1.1 does), layer3.0 layer2's (as layer2.1)
    assert masker["layer2.0"] - launch == pytest.approx(0.5 * (masker["layer1.1"] - launch),
                                                        rel=0.1)
    assert masker["layer3.0"] - launch == pytest.approx(0.5 * (masker["layer2.1"] - launch),
                                                        rel=0.1)
    # a CPU links blocks on one grid only (``masker_chain.links``' across_grids)
    cpu = predict_network(nominal_host(), "las_resnet50", "4-4-2-1", 0.5, batch=8)
    on_cpu = {p.layer.name: dict(p.kernels)["masker"] for _, p in cpu.blocks}
    assert on_cpu["layer1.2"] < 0.7 * on_cpu["layer1.1"]
    assert on_cpu["layer2.0"] == pytest.approx(on_cpu["layer1.1"], rel=0.1)  # all of the map
    assert masker["layer3.5"] == pytest.approx(masker["layer3.2"], rel=0.01)
    assert masker["layer3.2"] - launch < 0.6 * (masker["layer3.1"] - launch)
    # 4-4-7-1 on an 800x1344 input: S = 7 does not divide the 50x84 stage-3 map
    backbone = predict_network(hw, "las_resnet101", "4-4-7-1", 0.5, 800, 1344, backbone=True)
    masker = {p.layer.name: dict(p.kernels)["masker"] for _, p in backbone.blocks}
    assert masker["layer3.2"] == pytest.approx(masker["layer3.1"])
    # nor does its projected block pool whole stage-2 cells (windows of 100/7 rows)
    assert masker["layer3.0"] - launch > 0.9 * (masker["layer2.1"] - launch)
    assert masker["layer2.2"] - launch < 0.6 * (masker["layer2.1"] - launch)


@pytest.mark.parametrize("batch", [1, 128])  # one thread block; grid-wide count and write
def test_gpu_scan_launches_are_the_kernels_launches(batch):
    """The predictor prices each work list with the launches its CUDA schedule makes (plus
    the prefix copy): counted from the scheduled kernels' ``blockIdx.x`` loops."""
    from las_compiler.compiler import resolve_target
    from las_compiler.geometry import PatchGeometry
    from las_compiler.op import get_kernel
    from las_compiler.schedules import schedule

    from ..schedules.test_cuda_rules import launches

    target, hw = resolve_target("nvidia/jetson-tx2"), get_hardware("tx2")
    g = PatchGeometry(batch, 56, 56, 4, 1)
    s1 = PatchGeometry(batch, 14, 14, 1, 1)
    cases = {"compact": ((g.num_cells,), g.num_cells),
             "dilated_rows": ((g,), g.batch * g.height * g.width),
             "pixel_rows": ((g,), g.batch * g.out_height * g.out_width),
             "active_rows": ((s1,), s1.num_cells)}
    for kind, (args, elements) in cases.items():
        func = schedule(get_kernel(kind)(*args), target)
        assert K.scan(hw, kind, elements).launches == launches(func) + 1, kind
