"""Calibrate a host profile: micro-benchmarks run through TVM, then kernel efficiencies
fitted to measured kernels.

1. **Micro-benchmarks** (TVM-compiled, this machine): fp32 multiply-add throughput of our
   register-tiled micro-kernel on cache-resident data (the schedule rules' peak; stored as
   an effective clock), read bandwidth of each memory level (a vectorised 8-accumulator sum
   over a buffer sized to half the level, per core), the cost of one kernel dispatch, one
   device->host count read, and one element of a serial scan.
2. **Fit** (:func:`fit_profile`): from per-kernel times of real LAS blocks
   (``BlockExecutor.profile``), the fraction of peak each kernel kind reaches and the
   compute/data overlap, by least squares on log latency. Fitted on a calibration subset;
   ``benchmarks/predictor.py`` validates on held-out configurations.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from ..timing import median_ms
from . import kernels as K
from .block import block_work
from .hardware import Hardware, MemoryLevel
from .layers import BlockLayer

EFFICIENCY_GRID = tuple(np.round(np.concatenate([np.arange(0.01, 0.1, 0.01),
                                                  np.arange(0.1, 1.0001, 0.02)]), 2))
OVERLAP_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
# Share of the shared last-level cache the process really keeps: on a VM or a busy machine
# neighbours evict it, and stage-4 weights (4-9 MB per conv) then stream from DRAM.
CACHE_SHARE_GRID = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)
# Fixed cost of one kernel call as the block runs it (arguments, views, waking the thread
# pool): a tight loop over one tiny kernel (``measure_overheads``) sees only its floor.
LAUNCH_GRID_US = (0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0)


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    return median_ms(fn, repeats, warmup_s=0.05) / 1e3


def _read_probe(units: int, elems: int, reps: int):
    """PrimFunc: each of ``units`` threads sums its row of ``a`` ``reps`` times."""
    from tvm import s_tir
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

    sch = s_tir.Schedule(probe)
    block = sch.get_sblock("sum")
    t, _, _, j, lane = sch.get_loops(block)
    sch.parallel(t)
    sch.set_scope(block, 0, "local")
    sch.reverse_compute_at(sch.get_sblock("out"), t)
    sch.unroll(j)
    sch.vectorize(lane)
    init = sch.decompose_reduction(block, sch.get_loops(block)[1])
    for b in (init, sch.get_sblock("out")):
        sch.vectorize(sch.get_loops(b)[-1])
    return sch.mod["main"]


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

    from .. import op
    from ..build import kernel_function
    from ..op.params import pack_weight

    func = kernel_function(op.conv1x1, 1, m, 1, c, k, 1, "relu", target=target)
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

    from .. import op
    from ..build import kernel_function

    relu = kernel_function(op.relu_inplace, 16, target=target)
    tiny = tvm.runtime.tensor(np.ones(16, "float32"))
    launch = min(_median_seconds(lambda: relu(tiny, tiny), 2000) for _ in range(3)) * 1e6
    count = tvm.runtime.tensor(np.ones(1, "int32"))
    sync = min(_median_seconds(lambda: count.numpy(), 2000) for _ in range(3)) * 1e6
    cells = 12544
    compact = kernel_function(op.compact, cells, target=target)
    mask = tvm.runtime.tensor((np.random.default_rng(0).random(cells) < 0.5).astype("int32"))
    idx, cnt = tvm.runtime.empty((cells,), "int32"), tvm.runtime.empty((1,), "int32")
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


# -- fitting ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class KernelSample:
    """One measured kernel of one block configuration."""

    layer: BlockLayer
    granularity: int | None
    pipeline: str
    active_cells: tuple[int, ...]
    label: str
    measured_us: float


def _works(hw: Hardware, samples: Iterable[KernelSample]) -> list[tuple[K.Work, float]]:
    """(the model's Work, measured us) for each sample (configurations built once)."""
    cache: dict[tuple, dict[str, K.Work]] = {}
    out = []
    for sample in samples:
        key = (sample.layer, sample.granularity, sample.pipeline, sample.active_cells)
        if key not in cache:
            if sample.pipeline == "dense":
                work, _ = block_work(hw, sample.layer, None, "dense", 0.0, 0.0)
            else:
                s = sample.granularity
                dilated = sample.layer.dilated_fraction_of(s, sample.active_cells) * (
                    sample.layer.batch * sample.layer.height * sample.layer.width)
                work, _ = block_work(hw, sample.layer, s, sample.pipeline,
                                     float(len(sample.active_cells)), dilated)
            cache[key] = dict(work)
        work = cache[key].get(sample.label)
        if work is not None:
            out.append((work, sample.measured_us))
    return out


def _with_cache_share(hw: Hardware, share: float) -> Hardware:
    """``hw`` whose shared last-level cache holds ``share`` of its nominal capacity."""
    levels = list(hw.levels)
    shared = [i for i, level in enumerate(levels[:-1]) if not level.per_unit]
    if not shared:
        return hw
    level = levels[shared[-1]]
    levels[shared[-1]] = MemoryLevel(level.name, max(1, int(level.capacity_bytes * share)),
                                     level.bandwidth_gbs, level.per_unit)
    return hw.with_updates(levels=tuple(levels))


def fit_profile(hw: Hardware, samples: Iterable[KernelSample]) -> Hardware:
    """``hw`` with per-kind efficiencies, the overlap and the effective share of the shared
    cache that best explain ``samples`` (least squares on log latency; each kind fitted on
    its own for each overlap and cache share)."""
    samples = list(samples)
    launch_grid = sorted({hw.launch_us, *(t for t in LAUNCH_GRID_US if t > hw.launch_us)})
    best = None
    for share in CACHE_SHARE_GRID:
        shared = _with_cache_share(hw, share)
        pairs = _works(shared, samples)
        if not pairs:
            raise ValueError("no kernel measurements to fit")
        by_kind: dict[str, list[tuple[K.Work, float]]] = {}
        for work, measured in pairs:
            by_kind.setdefault(work.kind, []).append((work, measured))
        for overlap, launch in itertools.product(OVERLAP_GRID, launch_grid):
            trial = shared.with_updates(overlap=overlap, launch_us=launch)
            efficiency, total = {}, 0.0
            for kind, items in by_kind.items():
                errors = []
                for eff in EFFICIENCY_GRID:
                    probe = trial.with_updates(efficiency={kind: float(eff)})
                    errors.append(sum(math.log(K.kernel_time_us(probe, w) / m) ** 2
                                      for w, m in items))
                index = int(np.argmin(errors))
                efficiency[kind], total = float(EFFICIENCY_GRID[index]), total + errors[index]
            if best is None or total < best[0]:
                best = (total, trial, efficiency, len(pairs))
    _, trial, efficiency, count = best
    sources = {**hw.sources,
               "efficiency": f"fitted to {count} measured kernels, with the overlap, the "
                             "shared cache's effective capacity and the dispatch cost "
                             "(las_compiler.predictor.calibrate.fit_profile)"}
    return trial.with_updates(efficiency=efficiency, sources=sources)


# -- measuring blocks ------------------------------------------------------------------------
# Two medians of the same block (the timed runs and the profiled runs) that differ by more
# than this were taken while the machine changed speed (a VM's neighbours come and go): the
# configuration is measured again, up to MAX_ATTEMPTS times, keeping the closest pair.
AGREEMENT = 0.15
MAX_ATTEMPTS = 3
SLOWDOWN = 0.15  # probe slower than its fastest by more than this: measured again


@dataclass(frozen=True)
class BlockConfig:
    layer: BlockLayer
    granularity: int | None  # None: the dense block
    pipeline: str
    rate: float


def _speed_probe(target) -> Callable[[], float]:
    """A fixed compute kernel (the micro-kernel probe at a third of its size); its time says
    how fast the machine runs right now."""
    func, args = _conv1x1_probe(target, 240, 256, 256)
    return lambda: _median_seconds(lambda: func(*args), 15)


def measure_blocks(configs: Iterable[BlockConfig], target, repeats: int = 20, seed: int = 0,
                   log: Callable[[str], None] = lambda _: None) -> list[dict]:
    """Run each configuration with compiled kernels (``BlockExecutor``): per configuration
    the exact active cells (``round(rate * cells)`` drawn at random), the median total and
    the per-kernel profile (milliseconds).

    A VM's neighbours can halve its speed for minutes, unseen by this machine's process
    table. So a configuration is measured again while its two medians (timed runs, profiled
    runs) disagree (:data:`AGREEMENT`), and a fixed probe kernel is timed around every
    configuration: rows measured while the probe ran more than :data:`SLOWDOWN` slower than
    its fastest run are measured again at the end (``probe_slowdown`` in each row)."""
    import torch

    from ..models import Bottleneck

    configs = list(configs)
    rng = np.random.default_rng(seed)
    cells = [tuple(int(c) for c in np.sort(rng.choice(
                 config.layer.cells(config.granularity),
                 int(round(config.rate * config.layer.cells(config.granularity))),
                 replace=False)))
             if config.granularity is not None else () for config in configs]
    inputs = [np.abs(rng.standard_normal((c.layer.batch, c.layer.height, c.layer.width,
                                          c.layer.in_channels))).astype("float32")
              for c in configs]
    blocks: dict[BlockLayer, object] = {}
    for layer in dict.fromkeys(c.layer for c in configs):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            blocks[layer] = Bottleneck(layer.in_channels, layer.planes, layer.stride).eval()
    probe = _speed_probe(target)
    rows: list[dict] = []
    for index, config in enumerate(configs):
        rows.append(_measure_config(config, blocks[config.layer], cells[index], inputs[index],
                                    target, repeats, probe))
        log(f"{config.layer.name} S={config.granularity} r={config.rate} "
            f"{rows[-1]['pipeline']}: {rows[-1]['median_ms']:.3f} ms")
    for _ in range(2):  # configurations measured while the machine ran slow, again
        fastest = min(row["probe_s"] for row in rows)
        slow = [i for i, row in enumerate(rows) if row["probe_s"] > fastest * (1 + SLOWDOWN)]
        if not slow:
            break
        log(f"measuring {len(slow)} configurations again (the machine ran slow)")
        for i in slow:
            again = _measure_config(configs[i], blocks[configs[i].layer], cells[i], inputs[i],
                                    target, repeats, probe)
            if again["probe_s"] < rows[i]["probe_s"]:
                rows[i] = again
    fastest = min(row["probe_s"] for row in rows)
    for row in rows:
        row["probe_slowdown"] = row.pop("probe_s") / fastest
    return rows


def _measure_config(config: BlockConfig, block, active: tuple[int, ...], x: np.ndarray, target,
                    repeats: int, probe: Callable[[], float]) -> dict:
    """One configuration: median total (re-measured while the profile's total disagrees),
    per-kernel profile, and the probe's time around it (the worse of before and after)."""
    import tvm

    from ..block_executor import BlockExecutor

    layer = config.layer
    block.granularity = config.granularity or 1
    variant = "dense" if config.granularity is None else config.pipeline
    executor = BlockExecutor(block, layer.batch, layer.height, layer.width, target, variant)
    if config.granularity is not None:
        executor.fix_active_cells(np.asarray(active, dtype="int32"))
    before = probe()
    xt = tvm.runtime.tensor(x)
    start = time.perf_counter()
    executor.run(xt)
    once = max(time.perf_counter() - start, 1e-6)
    runs = max(repeats, min(2000, int(0.05 / once)))  # >= 50 ms of runs for tiny blocks
    best = None
    for attempt in range(1, MAX_ATTEMPTS + 1):
        total = _median_seconds(lambda: executor.run(xt), runs)
        profile = executor.profile(tvm.runtime.tensor(x), repeats)
        disagreement = abs(math.log(total * 1e3 / profile["total"]))
        if best is None or disagreement < best[0]:
            best = (disagreement, total, profile, attempt)
        if disagreement <= math.log(1.0 + AGREEMENT):
            break
    _, total, profile, attempts = best
    return {"block": layer.name, "stage": layer.stage, "stride": layer.stride,
            "S": config.granularity, "r": config.rate, "pipeline": variant,
            "active_cells": list(active), "median_ms": total * 1e3, "profile": profile,
            "attempts": attempts, "probe_s": max(before, probe())}


def samples_from_rows(rows: Iterable[dict], layers: dict[str, BlockLayer]) -> list[KernelSample]:
    """Per-kernel samples (microseconds) out of :func:`measure_blocks` rows."""
    out = []
    for row in rows:
        for label, ms in row["profile"].items():
            if label != "total":
                out.append(KernelSample(layers[row["block"]], row["S"], row["pipeline"],
                                        tuple(row["active_cells"]), label, ms * 1e3))
    return out


def calibration_configs(layers: Iterable[BlockLayer], granularities=(1, 2, 4, 7),
                        rates=(0.25, 0.75), pipelines=("fused",)) -> list[BlockConfig]:
    """The configurations :func:`calibrate_host` measures: each layer dense, and every
    pipeline x S that fits x rate."""
    configs = []
    for layer in layers:
        configs.append(BlockConfig(layer, None, "dense", 1.0))
        for s in (s for s in granularities if layer.fits(s)):
            for pipeline in pipelines:
                if pipeline == "masker_conv1" and (s, layer.stride) != (1, 1):
                    continue
                configs += [BlockConfig(layer, s, pipeline, r) for r in rates]
    return configs


def calibration_layers() -> list[BlockLayer]:
    """The first two blocks of each ResNet-50 stage (stride 2 and 1), batch 1, 224 input."""
    from .layers import network_blocks

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
