"""Calibrate this machine's hardware profile: micro-benchmarks through TVM, then kernel
efficiencies fitted to real LAS blocks as the compiler builds them.

1. **Micro-benchmarks** (TVM-compiled, this machine): fp32 multiply-add throughput of our
   register-tiled micro-kernel on cache-resident data (the schedule rules' peak; stored as
   an effective clock), read bandwidth of each memory level (a vectorised 8-accumulator sum
   over a buffer sized to half the level, per core), the cost of one kernel dispatch, one
   device->host count read, and one element of a serial scan.
2. **Blocks**: one-block modules compiled by ``compile_block`` (every pipeline ``auto`` can
   choose), at exact activation rates, timed and profiled kernel by kernel by the Relax VM.
3. **Fit** (``predictor.fit.fit_profile``).

Its own room, above the compiler (it compiles and runs what it measures) and the predictor
(whose profile it writes): the predictor itself never needs a compiled module.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from .block_pipelines import AUTO_CANDIDATES
from .predictor.fit import KernelSample, fit_profile
from .predictor.hardware import Hardware, MemoryLevel
from .predictor.layers import BlockLayer
from .timing import median_ms


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    return median_ms(fn, repeats, warmup_s=0.05) / 1e3


def _read_probe(units: int, elems: int, reps: int):
    """PrimFunc: each of ``units`` threads sums its row of ``a`` ``reps`` times."""
    from tvm.script import tirx as T

    J, L = 8, 16  # noqa: N806 - 8 independent 16-lane accumulators hide the add latency
    I = elems // (J * L)  # noqa: N806, E741

    @T.prim_func(s_tir=True)
    def probe(a: T.Buffer((units, elems), "float32"), out: T.Buffer((units, J, L), "float32")):
        T.func_attr({"tirx.noalias": True})
        acc = T.sblock_alloc_buffer((units, J, L), "float32")
        for t, r, i, j, lane in T.grid(units, reps, I, J, L):
            with T.sblock("sum"):
                vt, _vr, vi, vj, vl = T.axis.remap("SRRSS", [t, r, i, j, lane])
                with T.init():
                    acc[vt, vj, vl] = T.float32(0)
                acc[vt, vj, vl] = acc[vt, vj, vl] + a[vt, (vi * J + vj) * L + vl]
        for t, j, lane in T.grid(units, J, L):
            with T.sblock("out"):
                vt, vj, vl = T.axis.remap("SSS", [t, j, lane])
                out[vt, vj, vl] = acc[vt, vj, vl]

    return _register_accumulators(probe, "sum")


def _register_accumulators(probe, block_name: str):
    """A probe's schedule: threads over the first loop, the ``(J, L)`` accumulators of
    ``block_name`` in registers (J unrolled, L vectorised), its result copied to ``out``."""
    from tvm import s_tir

    sch = s_tir.Schedule(probe)
    block = sch.get_sblock(block_name)
    loops = sch.get_loops(block)
    t, j, lane = loops[0], loops[-2], loops[-1]
    sch.parallel(t)
    sch.set_scope(block, 0, "local")
    sch.reverse_compute_at(sch.get_sblock("out"), t)
    sch.unroll(j)
    sch.vectorize(lane)
    init = sch.decompose_reduction(block, sch.get_loops(block)[1])
    for b in (init, sch.get_sblock("out")):
        sch.vectorize(sch.get_loops(b)[-1])
    return sch.mod["main"]


FMA_CHAINS = 12  # independent accumulators: > FMA pipes x latency on every CPU we target


def _fma_probe(units: int, lanes: int, reps: int):
    """PrimFunc: each of ``units`` threads runs ``reps`` rounds of :data:`FMA_CHAINS`
    independent ``lanes``-wide multiply-adds on registers (no memory traffic)."""
    from tvm.script import tirx as T

    J = FMA_CHAINS  # noqa: N806

    @T.prim_func(s_tir=True)
    def probe(scale: T.Buffer((lanes,), "float32"), shift: T.Buffer((lanes,), "float32"),
              out: T.Buffer((units, J, lanes), "float32")):
        T.func_attr({"tirx.noalias": True})
        acc = T.sblock_alloc_buffer((units, J, lanes), "float32")
        for t, r, j, lane in T.grid(units, reps, J, lanes):
            with T.sblock("fma"):
                vt, _vr, vj, vl = T.axis.remap("SRSS", [t, r, j, lane])
                with T.init():
                    acc[vt, vj, vl] = T.float32(1)
                acc[vt, vj, vl] = acc[vt, vj, vl] * scale[vl] + shift[vl]
        for t, j, lane in T.grid(units, J, lanes):
            with T.sblock("out"):
                vt, vj, vl = T.axis.remap("SSS", [t, j, lane])
                out[vt, vj, vl] = acc[vt, vj, vl]

    return _register_accumulators(probe, "fma")


def measure_fma_ceiling(target, units: int, lanes: int, reps: int = 200_000) -> float:
    """GFLOP/s of fp32 multiply-adds from registers on ``units`` threads with
    ``lanes``-wide vectors: the machine's FMA ceiling, to rate kernels against (the best of
    5 timings: a VM's neighbours only ever slow a probe down)."""
    import tvm

    func = tvm.compile(tvm.IRModule({"main": _fma_probe(units, lanes, reps)}), target=target)
    scale = tvm.runtime.tensor(np.full(lanes, 0.5, "float32"))
    shift = tvm.runtime.tensor(np.full(lanes, 1.0, "float32"))
    out = tvm.runtime.empty((units, FMA_CHAINS, lanes), "float32")
    seconds = min(_median_seconds(lambda: func(scale, shift, out), 3) for _ in range(5))
    if not np.allclose(out.numpy(), 2.0):  # x -> x / 2 + 1 converges to 2
        raise RuntimeError("the FMA probe computed a wrong value")
    return 2.0 * units * FMA_CHAINS * lanes * reps / seconds / 1e9


def measure_bandwidth(target, units: int, bytes_per_unit: int, moved: int = 256 << 20) -> float:
    """GB/s of the read probe with ``bytes_per_unit`` per thread, ``moved`` bytes in total."""
    import tvm

    elems = max(128, (bytes_per_unit // 4) // 128 * 128)
    reps = max(1, moved // (units * elems * 4))
    func = tvm.compile(tvm.IRModule({"main": _read_probe(units, elems, reps)}), target=target)
    a = tvm.runtime.tensor(np.ones((units, elems), "float32"))
    out = tvm.runtime.empty((units, 8, 16), "float32")
    seconds = _median_seconds(lambda: func(a, out), 5)
    if not np.allclose(out.numpy(), reps * elems / 128):
        raise RuntimeError("bandwidth probe computed a wrong sum")
    return units * elems * 4 * reps / seconds / 1e9


def _conv1x1_probe(target, m: int, c: int, k: int):
    """Our dense conv1x1 micro-kernel on ``m`` pixels, ``c`` -> ``k`` channels, with its
    arguments (random data, cache-resident at these sizes)."""
    import tvm

    from .kernel_builder import kernel_function
    from .op.params import pack_weight

    func = kernel_function("conv1x1", 1, m, 1, c, k, 1, "relu", target=target)
    rng = np.random.default_rng(0)
    args = [tvm.runtime.tensor(rng.standard_normal((m, c)).astype("float32")),
            tvm.runtime.tensor(pack_weight(rng.standard_normal((k, c, 1, 1)).astype("float32"))),
            tvm.runtime.tensor(np.zeros(k, "float32")),
            tvm.runtime.tensor(np.zeros((1, 1), "float32")),
            tvm.runtime.empty((m, k), "float32")]
    return func, args


def measure_fma_gflops(target) -> float:
    """GFLOP/s of our dense conv1x1 micro-kernel on cache-resident data (768 pixels, 256 ->
    256 channels: weights in L2, a pixel tile's inputs in L1)."""
    m, c, k = 768, 256, 256
    func, args = _conv1x1_probe(target, m, c, k)
    seconds = min(_median_seconds(lambda: func(*args), 50) for _ in range(3))
    return 2.0 * m * c * k / seconds / 1e9


def measure_overheads(target) -> dict[str, float]:
    """launch_us (a 16-element kernel), sync_us (reading a 1-element count), scan_ns (one
    cell of the compaction scan)."""
    import tvm

    from .kernel_builder import kernel_function

    relu = kernel_function("relu_inplace", 16, target=target)
    tiny = tvm.runtime.tensor(np.ones(16, "float32"))
    launch = min(_median_seconds(lambda: relu(tiny, tiny), 2000) for _ in range(3)) * 1e6
    count = tvm.runtime.tensor(np.ones(1, "int32"))
    sync = min(_median_seconds(lambda: count.numpy(), 2000) for _ in range(3)) * 1e6
    cells = 12544
    compact = kernel_function("compact", cells, target=target)
    mask = tvm.runtime.tensor((np.random.default_rng(0).random(cells) < 0.5).astype("int32"))
    idx, cnt = tvm.runtime.empty((cells,), "int32"), tvm.runtime.empty((1,), "int64")
    scan = _median_seconds(lambda: compact(mask, idx, cnt), 200) * 1e6
    return {"launch_us": launch, "sync_us": sync,
            "scan_ns": max(scan - launch, 0.0) * 1e3 / (2 * cells)}  # compact scans twice


def measure_host(nominal: Hardware, target, log: Callable[[str], None] = lambda _: None
                 ) -> Hardware:
    """``nominal`` with measured peak, bandwidths and overheads (no efficiencies fitted)."""
    units = nominal.compute_units
    gflops = measure_fma_gflops(target)
    log(f"micro-kernel FMA throughput: {gflops:.1f} GFLOP/s")
    levels = []
    for index, level in enumerate(nominal.levels):
        if index + 1 < len(nominal.levels):
            per_unit = level.capacity_bytes if level.per_unit else level.capacity_bytes // units
            size = per_unit // 2
        else:  # DRAM: 4x the largest cache, so no level holds it
            size = 4 * max(lv.total_capacity(units) for lv in nominal.levels[:-1]) // units
        gbs = measure_bandwidth(target, units, size)
        log(f"{level.name} read bandwidth ({size >> 10} KiB per core): {gbs:.1f} GB/s")
        levels.append(MemoryLevel(level.name, level.capacity_bytes, round(gbs, 1),
                                  level.per_unit))
    overheads = measure_overheads(target)
    log("dispatch {launch_us:.2f} us, count read {sync_us:.2f} us, scan {scan_ns:.2f} ns per "
        "element".format(**overheads))
    clock = gflops / (2.0 * units * nominal.simd_lanes * nominal.fma_per_cycle)
    sources = dict(nominal.sources)
    sources.update({
        "clock_ghz": "effective: measured micro-kernel GFLOP/s / (2 x cores x lanes x FMA "
                     "pipes) (las predict --calibrate)",
        "bandwidth": "measured: vectorised read probe at half each level's size per core",
        "overheads": "measured: 16-element kernel, 1-element read, compaction scan"})
    return nominal.with_updates(clock_ghz=round(clock, 3), levels=tuple(levels),
                                sources=sources,
                                **{k: round(v, 3) for k, v in overheads.items()})


# -- measuring blocks ------------------------------------------------------------------------
# Two medians of the same block (timed before and after its profile) that differ by more than
# this were taken while the machine changed speed (a VM's neighbours come and go): the
# configuration is measured again, up to MAX_ATTEMPTS times, keeping the closest pair.
AGREEMENT = 0.15
MAX_ATTEMPTS = 3
SLOWDOWN = 0.15  # probe slower than its fastest by more than this: measured again


@dataclass(frozen=True)
class CalibrationBlock:
    layer: BlockLayer
    granularity: int | None  # None: the static (dense) block
    pipeline: str
    rate: float


def _speed_probe(target) -> Callable[[], float]:
    """A fixed compute kernel (the micro-kernel probe at a third of its size); its time says
    how fast the machine runs right now."""
    func, args = _conv1x1_probe(target, 240, 256, 256)
    return lambda: _median_seconds(lambda: func(*args), 15)


def kernel_times(profile: dict[str, float]) -> dict[str, float]:
    """A ``CompiledModel.profile`` (ms per VM function) as milliseconds per registered kernel
    (``gather_conv3x3_0`` -> ``gather_conv3x3``, calls of one kernel summed); VM builtins and
    legalised glue (reshapes, casts) are left out."""
    from .op.registry import KERNELS

    out: dict[str, float] = {}
    for name, ms in profile.items():
        kind = name.rsplit("_", 1)[0] if name.rsplit("_", 1)[-1].isdigit() else name
        if kind in KERNELS:
            out[kind] = out.get(kind, 0.0) + ms
    return out


def measure_blocks(configs: Iterable[CalibrationBlock], target, repeats: int = 20, seed: int = 0,
                   log: Callable[[str], None] = lambda _: None) -> list[dict]:
    """Run each configuration as the compiler builds it (``compile_block``; one compile per
    layer, S and pipeline): per configuration the exact active cells (``round(rate * cells)``
    drawn at random, pinned through the block's input, see ``models.pin_mask``), the median
    total and the per-kernel profile (milliseconds, ``kernel_times``).

    A VM's neighbours can halve its speed for minutes, unseen by this machine's process
    table. So a configuration is measured again while its two medians (timed before and after
    the profile) disagree (:data:`AGREEMENT`), and a fixed probe kernel is timed around every
    configuration: rows measured while the probe ran more than :data:`SLOWDOWN` slower than
    its fastest run are measured again at the end (``probe_slowdown`` in each row)."""
    configs = list(configs)
    rng = np.random.default_rng(seed)
    cells = [tuple(int(c) for c in np.sort(rng.choice(
                 config.layer.cells(config.granularity),
                 int(round(config.rate * config.layer.cells(config.granularity))),
                 replace=False)))
             if config.granularity is not None else () for config in configs]
    inputs = [np.abs(rng.standard_normal((c.layer.batch, c.layer.in_channels, c.layer.height,
                                          c.layer.width))).astype("float32")
              for c in configs]
    modules: dict[tuple, tuple] = {}
    probe = _speed_probe(target)
    rows: list[dict] = []

    def measure(index: int) -> dict:
        config = configs[index]
        key = (config.layer, config.granularity, config.pipeline)
        if key not in modules:
            modules[key] = _compile_config(config, target, seed)
        return _measure_config(config, *modules[key], cells[index], inputs[index], repeats,
                               probe)

    for index, config in enumerate(configs):
        rows.append(measure(index))
        log(f"{config.layer.name} S={config.granularity} r={config.rate} "
            f"{rows[-1]['pipeline']}: {rows[-1]['median_ms']:.3f} ms")
    for _ in range(2):  # configurations measured while the machine ran slow, again
        fastest = min(row["probe_s"] for row in rows)
        slow = [i for i, row in enumerate(rows) if row["probe_s"] > fastest * (1 + SLOWDOWN)]
        if not slow:
            break
        log(f"measuring {len(slow)} configurations again (the machine ran slow)")
        for i in slow:
            again = measure(i)
            if again["probe_s"] < rows[i]["probe_s"]:
                rows[i] = again
    fastest = min(row["probe_s"] for row in rows)
    for row in rows:
        row["probe_slowdown"] = row.pop("probe_s") / fastest
    return rows


def _compile_config(config: CalibrationBlock, target, seed: int):
    """(block, compiled one-block module) of a configuration; the block's masker reads the
    pinned channel (``models.pin_mask``), so one compile serves every patch list."""
    import torch

    from .compiler import compile_block
    from .models import Bottleneck, pin_mask

    layer = config.layer
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        block = Bottleneck(layer.in_channels, layer.planes, layer.stride,
                           granularity=config.granularity or 1).eval()
    x = torch.zeros(layer.batch, layer.in_channels, layer.height, layer.width)
    if config.granularity is not None:
        grid = layer.grid(config.granularity)
        x = pin_mask(block, x, torch.zeros(layer.batch, *grid))
    static = config.granularity is None
    compiled = compile_block(block, x.permute(0, 2, 3, 1), target,
                             "auto" if static else config.pipeline, static=static,
                             tuning_logs=False)
    return block, compiled


def _measure_config(config: CalibrationBlock, block, compiled, active: tuple[int, ...],
                    x: np.ndarray, repeats: int, probe: Callable[[], float]) -> dict:
    """One configuration: median total (re-measured while the medians before and after the
    profile disagree), per-kernel profile, and the probe's time around it (the worse of
    before and after)."""
    import torch

    from .models import pin_mask

    layer = config.layer
    image = torch.from_numpy(x)
    if config.granularity is not None:
        mask = torch.zeros(layer.cells(config.granularity))
        mask[list(active)] = 1.0
        image = pin_mask(block, image, mask.reshape(layer.batch, *layer.grid(config.granularity)))
    nhwc = image.permute(0, 2, 3, 1).contiguous().numpy()
    before = probe()
    start = time.perf_counter()
    compiled.run(nhwc)
    once = max(time.perf_counter() - start, 1e-6)
    runs = max(repeats, min(2000, int(0.05 / once)))  # >= 50 ms of runs for tiny blocks
    best = None
    for attempt in range(1, MAX_ATTEMPTS + 1):
        first = compiled.benchmark(nhwc, repeat=runs)["median_ms"]
        profile = compiled.profile(nhwc, repeats)
        second = compiled.benchmark(nhwc, repeat=runs)["median_ms"]
        disagreement = abs(math.log(first / second))
        if best is None or disagreement < best[0]:
            best = (disagreement, (first + second) / 2, profile, attempt)
        if disagreement <= math.log(1.0 + AGREEMENT):
            break
    _, total, profile, attempts = best
    return {"block": layer.name, "stage": layer.stage, "stride": layer.stride,
            "S": config.granularity, "r": config.rate,
            "pipeline": "static" if config.granularity is None else config.pipeline,
            "active_cells": list(active), "median_ms": total,
            "profile": {**kernel_times(profile), "total": total}, "vm_profile": profile,
            "attempts": attempts, "probe_s": max(before, probe())}


def samples_from_rows(rows: Iterable[dict], layers: dict[str, BlockLayer]) -> list[KernelSample]:
    """Per-kernel samples (microseconds) out of :func:`measure_blocks` rows."""
    out = []
    for row in rows:
        for kind, ms in row["profile"].items():
            if kind != "total":
                out.append(KernelSample(layers[row["block"]], row["S"], row["pipeline"],
                                        tuple(row["active_cells"]), kind, ms * 1e3))
    return out


def calibration_configs(layers: Iterable[BlockLayer], granularities=(1, 2, 4, 7),
                        rates=(0.25, 0.75), pipelines=AUTO_CANDIDATES) -> list[CalibrationBlock]:
    """The configurations :func:`calibrate_host` measures: each layer static (dense), and
    every pipeline x S that fits (and that the pipeline applies to) x rate."""
    from .block_pipelines import get_pipeline

    configs = []
    for layer in layers:
        configs.append(CalibrationBlock(layer, None, "static", 1.0))
        for s in (s for s in granularities if layer.fits(s)):
            for pipeline in pipelines:
                if not get_pipeline(pipeline).applies(layer.geometry(s)):
                    continue
                configs += [CalibrationBlock(layer, s, pipeline, r) for r in rates]
    return configs


def calibration_layers() -> list[BlockLayer]:
    """The first two blocks of each ResNet-50 stage (stride 2 and 1), batch 1, 224 input."""
    from .predictor.layers import network_blocks

    picked = {}
    for layer in network_blocks("las_resnet50"):
        stage, index = layer.name.removeprefix("layer").split(".")
        if int(index) < 2:
            picked[layer.name] = layer
    return list(picked.values())


def calibrate_host(nominal: Hardware, target, repeats: int = 10,
                   log: Callable[[str], None] = lambda _: None) -> Hardware:
    """Micro-benchmarks, then efficiencies fitted on the calibration blocks (a few minutes:
    most of it compiling kernels)."""
    measured = measure_host(nominal, target, log)
    layers = calibration_layers()
    rows = measure_blocks(calibration_configs(layers), target, repeats, log=log)
    fitted = fit_profile(measured, samples_from_rows(rows, {lay.name: lay for lay in layers}))
    log("fitted efficiencies: " + ", ".join(f"{k} {v:.2f}" for k, v in
                                            sorted(fitted.efficiency.items()))
        + f"; overlap {fitted.overlap}")
    return fitted


def calibrate_and_save(output=None, log: Callable[[str], None] = lambda _: None):
    """Measure this machine (:func:`calibrate_host` on the host target) and write its profile
    atomically where ``get_hardware("host")`` finds it (or to ``output``); returns the path."""
    from .predictor.profiles import default_host_profile_path, nominal_host
    from .target import host_target

    profile = calibrate_host(nominal_host(), host_target(), log=log)
    return profile.save(output or default_host_profile_path())
