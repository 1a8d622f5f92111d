"""Per-kernel latency models: each kernel the compiler emits as data moved per memory level
plus multiply-adds on the tiles the schedule really runs, then turned into time by a device.

The model must know the schedule, not an ideal kernel. On CPUs (``schedules/cpu``):

* conv kernels run register tiles of ``tile.pixels`` pixels x 16 output channels
  (12 x 16 with AVX-512, 6 x 16 with AVX2/NEON; ``tiled_conv.get_config``). A per-patch
  kernel tiles each patch's pixels on its own; a patch's last, partial tile has fewer
  independent accumulator chains than the FMA pipes need to hide their latency
  (``fma_latency x fma_per_cycle`` vectors), so it costs at least as many pixels' worth of
  time as hold that many (:func:`min_tile_pixels`): a 1-pixel patch runs at 1/4 of peak with
  AVX-512 and with AVX2.
* each pixel tile streams the kernel's whole weight tensor (channel tiles inside pixel
  tiles), so weight traffic is (pixel tiles) x (weight bytes) from the nearest level that
  holds the weights; dense kernels whose weights dominate run channel tiles outermost
  instead, reading the weights once and the input once per channel tile.
* the *first* of those passes finds the weights wherever the kernel's context left them
  (:func:`with_cold_weights`): in a network, the other layers' weights (ResNet-50: ~100 MB)
  have pushed them out to DRAM; in a block run over and over, the block's footprint decides.
  Stage-4 weights (4-9 MB per conv at 49 pixels) make this a large share of the kernel.
* a tile's inputs must stay in L1 while it runs: its ``pixels`` input rows are ``row_bytes``
  apart, and rows a multiple of the L1 way size apart (C = 1024 fp32 channels, or C = 512
  read at stride 2) land in the same cache sets, so only ``ways - 1`` of them fit beside the
  weights; more thrash to L2. And tiles whose accumulators outgrow the register file spill
  (:func:`tile_slowdown`). Both were measured on every knob of LAS-ResNet-50's kernels here:
  a 12-pixel tile over 1024-channel rows ran 1.3-1.9x slower than a 6-pixel one, a 24-pixel
  tile 1.4-7x slower.
* row-group kernels (conv1 on the dilated pixels, S = 1 blocks) work on groups of
  :data:`ROW_GROUP` pixels; the scans that build the groups are serial.
* the outer parallel loop has ``tasks`` iterations over ``compute_units`` cores: with fewer
  tasks than cores, or a ragged last round, cores idle.

GPU profiles use the same kernels with the tiles the CUDA rules run
(``schedules/cuda/tiled_conv``; a test keeps the numbers equal): dense kernels in thread
blocks of 16 pixels x 64 output channels, sparse kernels one thread block per active patch
(its pixels split over the threads) and S = 1 one per group of :data:`ROW_GROUP` cells;
every block loads its weight slice. No GPU has timed these kernels yet: GPU predictions are
unvalidated.

Latency of one kernel: ``launch + max(inner, far) + (1 - overlap) * min(inner, far) +
serial`` with ``inner = max(compute, near)``: the paper's ``l_compute + l_data``, split by
where the data lives. Traffic from a unit's private levels (L1/L2, GPU shared memory) runs
beside the FMAs (prefetchers, out-of-order issue: a roofline ``max``); traffic from the
shared levels (L3, DRAM) overlaps only as far as ``overlap`` (calibrated; 0 gives the plain
sum, 1 the roofline).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from ..geometry import PatchGeometry
from ..register_tile import (
    CHANNEL_BLOCK,
    ROW_GROUP,
    default_pixels,
    patch_tiles,
    weights_read_once,
)
from ..scan_layout import LOG_CHUNKS, scan_layout
from .hardware import Hardware
from .layers import BlockLayer

F32 = 4
# = schedules.cuda.tiled_conv.Config (a test checks they agree)
GPU_PIXEL_THREADS, GPU_THREAD_PIXELS, GPU_BLOCK_CHANNELS = 8, 2, 64
GPU_BLOCK_PIXELS = GPU_PIXEL_THREADS * GPU_THREAD_PIXELS
# = schedules.cuda.patch_chain.PIXEL_THREADS: a chain's block splits every conv's pixels in
# runs over 8 threads and walks all output channels itself (no block per channel tile)
GPU_CHAIN_PIXEL_THREADS = 8
CHAIN_KINDS = ("halo_conv3x3", "fused_block")


def min_tile_pixels(hw: Hardware) -> int:
    """Pixels' worth of time a CPU tile's partial last row of pixels costs at least: its FMA
    pipes need ``fma_latency x fma_per_cycle`` independent accumulator vectors in flight, and
    each pixel holds ``CHANNEL_BLOCK`` channels in ``CHANNEL_BLOCK x 32 / vector_bits`` of
    them (1 zmm, 2 ymm, 4 NEON q registers). AVX-512 with one 512-bit pipe and AVX2 with two
    256-bit pipes both need 4 pixels: a 1-pixel patch runs at 1/4 of peak."""
    vectors_per_pixel = max(1, CHANNEL_BLOCK * 32 // max(hw.vector_bits, 32))
    return max(1, math.ceil(hw.fma_latency * hw.fma_per_cycle / vectors_per_pixel - 1e-9))


@dataclass(frozen=True)
class TileModel:
    """The register/thread-block tile a target's schedule rules run."""

    pixels: int
    channels: int
    row_group: int = ROW_GROUP
    min_pixels: int = 1  # a partial tile costs at least this many pixels
    per_patch_s1: bool = False  # S = 1 as one-pixel patches instead of row groups
    per_patch_gpu: bool = False  # a GPU thread block per patch: one tile, however small

    @classmethod
    def for_hardware(cls, hw: Hardware) -> TileModel:
        if hw.kind == "gpu":
            # = schedules.cuda.tiled_conv.Config: (8 x 2) pixels x (16 x 4) channels per block
            return cls(pixels=GPU_BLOCK_PIXELS, channels=GPU_BLOCK_CHANNELS, per_patch_gpu=True)
        return cls(pixels=default_pixels(hw.vector_bits), channels=CHANNEL_BLOCK,
                   min_pixels=min_tile_pixels(hw))

    def for_rows(self, hw: Hardware, row_bytes: float) -> TileModel:
        """The tile the CPU rule picks for inputs ``row_bytes`` apart (6 pixels instead of 12
        when the rows alias in L1: :func:`~las_compiler.register_tile.default_pixels`)."""
        if hw.kind != "cpu":
            return self
        return replace(self, pixels=default_pixels(hw.vector_bits, max(0, int(row_bytes))))


# Cost of L1 set aliasing and of register spills in a tile's inner loop, fitted to the knob
# measurements above (AVX-512, this machine): a tile with ``over`` rows beyond what the
# aliased sets hold runs ``1 + ALIAS_COST * over**2 / pixels`` times slower (12/16/24-pixel
# tiles over 4 KB-apart rows: measured 1.5/2.5/5.1x, modelled 1.6/2.5/4.6x); each spilled
# accumulator vector costs SPILL_COST pixels' worth of time.
# Every reduction step of a tile also loads a weight vector and advances the loop, work the
# FMAs do not fully hide: a step costs ``pixels + STEP_OVERHEAD`` FMA slots (measured: 4- and
# 6-pixel tiles 10-20 % and 3-10 % slower than 16-pixel ones where nothing aliases).
ALIAS_COST = 0.3
SPILL_COST = 8.0
STEP_OVERHEAD = 0.6
REGISTERS_KEPT = 9  # vectors a tile leaves to LLVM: weights, broadcasts, address temporaries


def tile_slowdown(hw: Hardware, pixels: int, vectors: int, row_bytes: float) -> float:
    """Factor on a CPU micro-kernel's compute time: a ``pixels`` x ``vectors`` (vector
    registers per pixel) accumulator tile whose input rows lie ``row_bytes`` apart (0: no
    rows streamed through L1). GPUs: 1."""
    if hw.kind != "cpu" or pixels <= 0:
        return 1.0
    factor = (pixels + STEP_OVERHEAD) / pixels
    row = int(row_bytes)
    if row > 0:
        starts = hw.l1_way_bytes // math.gcd(row, hw.l1_way_bytes)  # distinct set offsets
        held = max(1, (hw.l1_ways - 1) * starts)
        over = max(0, pixels - held)
        factor *= 1.0 + ALIAS_COST * over * over / pixels
    default = TileModel.for_hardware(hw).pixels
    budget = max(default * vectors, hw.vector_registers - REGISTERS_KEPT)
    spilled = max(0, pixels * vectors - budget)
    return factor * (1.0 + SPILL_COST * spilled / pixels)


@dataclass
class Work:
    """What one kernel does: multiply-adds executed (tile padding included), parallel tasks,
    bytes per memory level, serial scan elements, launches."""

    kind: str
    macs: float = 0.0
    tasks: float = 1.0
    bytes: dict[str, float] = field(default_factory=dict)
    serial: float = 0.0
    launches: int = 1
    weights: list[tuple[float, str]] = field(default_factory=list)  # (bytes, warm level)
    compute_scale: float = 1.0  # tile_slowdown of the micro-kernel

    def add_bytes(self, level: str, nbytes: float) -> None:
        self.bytes[level] = self.bytes.get(level, 0.0) + float(nbytes)

    def merge(self, other: Work) -> None:
        """Add ``other``'s multiply-adds, bytes and weight streams (a fused kernel)."""
        total = self.macs + other.macs
        if total:
            self.compute_scale = (self.macs * self.compute_scale
                                  + other.macs * other.compute_scale) / total
        self.macs += other.macs
        for level, nbytes in other.bytes.items():
            self.add_bytes(level, nbytes)
        self.weights += other.weights


def with_cold_weights(hw: Hardware, work: Work, footprint_bytes: float | None) -> Work:
    """``work`` whose first pass over each weight tensor comes from the level that holds
    ``footprint_bytes`` (what the kernel's context touches between two runs of it) instead of
    the level that holds the weights themselves. ``None``: the kernel runs back to back with
    itself, its weights stay warm."""
    if footprint_bytes is None or not work.weights:
        return work
    names = [level.name for level in hw.levels]
    cold = _level(hw, footprint_bytes)
    out = replace(work, bytes=dict(work.bytes), weights=list(work.weights))
    for nbytes, warm in work.weights:
        if names.index(cold) > names.index(warm):
            out.add_bytes(warm, -nbytes)
            out.add_bytes(cold, nbytes)
    return out


def kernel_time_us(hw: Hardware, work: Work) -> float:
    """Latency of one kernel on ``hw`` (see the module docstring)."""
    units = hw.compute_units
    tasks = max(work.tasks, 1e-9)
    busy = min(units, tasks / math.ceil(tasks / units)) if tasks >= 1 else 1.0
    efficiency = hw.kernel_efficiency(work.kind)
    compute = 0.0
    if work.macs:
        macs_per_us = busy * hw.simd_lanes * hw.fma_per_cycle * hw.clock_ghz * 1e3
        compute = work.macs * work.compute_scale / (macs_per_us * efficiency)
    near = far = 0.0
    for level in hw.levels:
        nbytes = work.bytes.get(level.name, 0.0)
        if nbytes:  # bandwidths are measured with every unit pulling; idle units pull none
            seconds = nbytes / (level.bandwidth_gbs * (busy / units) * 1e3)
            if level.per_unit:
                near += seconds
            else:
                far += seconds
    serial = work.serial * hw.scan_ns * 1e-3
    if not work.macs:  # scans and data movement: the efficiency scales what they do
        near, far, serial = near / efficiency, far / efficiency, serial / efficiency
    inner = max(compute, near)
    return (hw.launch_us * work.launches + max(inner, far)
            + (1.0 - hw.overlap) * min(inner, far) + serial)


# -- building blocks ---------------------------------------------------------------------------
def _level(hw: Hardware, nbytes: float, per_unit: bool = False) -> str:
    return hw.level_holding(nbytes, per_unit).name


def conv_work(hw: Hardware, tile: TileModel, kind: str, *, tiles: float, pixels: float,
              reduce: int, out_channels: int, in_bytes: float, out_bytes: float, tasks: float,
              map_bytes: float, weights_once: bool = False, row_bytes: float = 0.0,
              tile_pixels: int | None = None) -> Work:
    """A tiled conv: ``tiles`` pixel tiles executing ``pixels`` pixel slots in all (partial
    tiles counted as :func:`_per_patch` says), ``reduce`` multiply-adds per output (C or 9C),
    weights streamed once per pixel tile (or once in all when ``weights_once``, channel
    tiles outermost). ``map_bytes``: size of the feature map the inputs come from (where it
    lives decides their bandwidth). ``row_bytes``: distance between a tile's input rows;
    ``tile_pixels``: pixels a tile really holds (a patch smaller than the tile: fewer)."""
    weight_bytes = reduce * out_channels * F32
    if hw.kind == "gpu" and kind not in CHAIN_KINDS:  # a block per (pixel tile, channel tile)
        tasks *= math.ceil(out_channels / tile.channels)
    vectors = max(1, math.ceil(tile.channels / hw.simd_lanes))
    work = Work(kind, macs=pixels * reduce * out_channels, tasks=tasks,
                compute_scale=tile_slowdown(hw, tile_pixels or tile.pixels, vectors, row_bytes))
    if weights_once:
        warm = _level(hw, weight_bytes)
        work.add_bytes(warm, weight_bytes)
        passes = math.ceil(out_channels / tile.channels)  # input re-read per channel tile
        work.add_bytes(_level(hw, map_bytes), in_bytes * passes)
    else:
        warm = _level(hw, weight_bytes, per_unit=True)
        work.add_bytes(warm, tiles * weight_bytes)
        work.add_bytes(_level(hw, map_bytes), in_bytes)
    work.weights.append((min(1.0, tiles) * weight_bytes if not weights_once else weight_bytes,
                         warm))
    work.add_bytes(_level(hw, out_bytes), out_bytes)
    return work


def per_patch_tiles(tile: TileModel, pixels: int, kind: str = "") -> tuple[int, int]:
    """(tiles, executed pixel slots) for one patch of ``pixels`` pixels (of a ``kind``
    kernel: a GPU chain splits them its own way)."""
    if tile.per_patch_gpu and kind in CHAIN_KINDS:
        if pixels == 1:  # a one-pixel tile: the channels take both thread axes
            return 1, 1
        return 1, GPU_CHAIN_PIXEL_THREADS * math.ceil(pixels / GPU_CHAIN_PIXEL_THREADS)
    if tile.per_patch_gpu:  # the block's pixel threads split the patch in contiguous runs
        threads = min(GPU_PIXEL_THREADS, math.ceil(pixels / GPU_THREAD_PIXELS))
        return 1, threads * math.ceil(pixels / threads)
    return patch_tiles(pixels, tile.pixels, tile.min_pixels)


def _map_bytes(layer: BlockLayer, channels: int, out: bool = False) -> float:
    h, w = (layer.out_height, layer.out_width) if out else (layer.height, layer.width)
    return float(layer.batch * h * w * channels * F32)


# -- kernels ------------------------------------------------------------------------------------
def masker(hw, tile, layer: BlockLayer, patches: PatchGeometry, consumers: int = 1,
           pooled: float = 1.0, cached: bool = False) -> Work:
    """Pool the cells (the fraction ``pooled`` of them: a chain's update pools only its
    predecessor's active cells) and price ``consumers`` blocks' logits; a chain link also
    writes its cache of logits and, with ``cached``, reads its predecessor's."""
    cells, c = patches.num_cells, layer.in_channels
    x_bytes = _map_bytes(layer, c) * pooled
    work = Work("masker", macs=layer.batch * layer.height * layer.width * c * pooled
                + cells * 2 * consumers * c, tasks=cells)
    work.add_bytes(_level(hw, x_bytes), x_bytes)
    if consumers > 1 or cached:
        cache = cells * 2 * consumers * F32 * (2 if cached else 1)
        work.add_bytes(_level(hw, cache), cache)
    return work


def scan(hw: Hardware, kind: str, elements: float) -> Work:
    """A work-list scan (compaction, dilated / active / pixel rows) over ``elements`` entries,
    as ``scan_layout`` cuts it. A CPU walks the array on one thread: ``elements`` serial
    steps. On a GPU (``op.scan``) each of the block's :data:`CHUNKS` threads walks its own
    chunk (``size`` entries) to count and again to write, with the Hillis-Steele scan of the
    thread totals between (``LOG_CHUNKS`` steps, each behind a barrier): the serial part is
    that critical path, at ``scan_ns`` per step (a GPU profile's: one step of a thread's
    walk). A long array's chunks are counted and written by grid-wide kernels (the array read
    twice, the list written once) around the block, whose threads walk ``per_thread`` chunk
    counts twice: three launches. Either form is followed on a GPU by the copy of the list's
    used prefix: one launch more (a test counts them in the scheduled kernels)."""
    layout = scan_layout(math.ceil(elements))
    if hw.kind != "gpu":  # (the CPU profiles were fitted with the prefix copy inside)
        return Work(kind, serial=elements)
    # on a GPU the list's prefix of ``count`` entries, the sparse kernels' (n,) argument, is
    # one more launch (``active_prefix`` / ``row_groups_prefix``)
    block = 2 * layout.per_thread + 2 * LOG_CHUNKS
    if not layout.grid:
        return Work(kind, serial=2 * layout.size + block, launches=2)
    # the grid-wide kernels: a thread block per 256 chunks
    work = Work(kind, serial=2 * layout.size + block, tasks=layout.per_thread, launches=4)
    work.add_bytes(_level(hw, 4 * elements * F32), 4 * elements * F32)
    return work


def dense_conv1x1(hw, tile, layer: BlockLayer, in_c: int, out_c: int, pixels: int,
                  kind: str, map_bytes: float, residual: bool = False, stride: int = 1) -> Work:
    """Dense pointwise conv over ``pixels`` output pixels (conv1, conv3, downsample: its
    ``stride`` spreads a tile's input rows)."""
    tile = tile.for_rows(hw, in_c * F32 * stride)
    tiles = math.ceil(pixels / tile.pixels)
    weights = in_c * out_c * F32
    in_bytes = pixels * in_c * F32
    once = weights > 2 * map_bytes and hw.kind == "cpu"  # tiled_conv._weights_dominate
    out_bytes = pixels * out_c * F32 * (2 if residual else 1)
    return conv_work(hw, tile, kind, tiles=tiles, pixels=pixels, reduce=in_c,
                 out_channels=out_c, in_bytes=in_bytes, out_bytes=out_bytes,
                 tasks=math.ceil(out_c / tile.channels) if once else tiles,
                 map_bytes=map_bytes, weights_once=once, row_bytes=in_c * F32 * stride)


def dense_conv3x3(hw, tile, layer: BlockLayer) -> Work:
    w, pixels = layer.planes, layer.batch * layer.out_height * layer.out_width
    tile = tile.for_rows(hw, w * F32 * layer.stride)
    tiles = math.ceil(pixels / tile.pixels)
    map_bytes = _map_bytes(layer, w)
    once = 9 * w * w * F32 > 2 * map_bytes and hw.kind == "cpu"
    work = conv_work(hw, tile, "conv2d", tiles=tiles, pixels=pixels, reduce=9 * w,
                 out_channels=w, in_bytes=map_bytes * 9 / layer.stride**2,
                 out_bytes=pixels * w * F32, map_bytes=map_bytes,
                 tasks=math.ceil(w / tile.channels) if once else tiles, weights_once=once,
                 row_bytes=w * F32 * layer.stride)
    work.add_bytes(_level(hw, map_bytes), 2 * map_bytes)  # the pad stage
    return work


def conv1_rows(hw, tile, layer: BlockLayer, pixels: float, kind: str = "conv1x1_rows") -> Work:
    """conv1 on ``pixels`` listed input pixels, in groups of ROW_GROUP."""
    groups = math.ceil(pixels / tile.row_group)
    c, w = layer.in_channels, layer.planes
    tile = tile.for_rows(hw, c * F32)
    once = _rows_read_weights_once(hw, c * w, _map_bytes(layer, c))
    return conv_work(hw, tile, kind, tiles=groups * tile.row_group / tile.pixels,
                 pixels=groups * tile.row_group, reduce=c, out_channels=w,
                 in_bytes=groups * tile.row_group * c * F32,
                 out_bytes=groups * tile.row_group * w * F32,
                 tasks=math.ceil(w / tile.channels) if once else groups, weights_once=once,
                 map_bytes=_map_bytes(layer, c), row_bytes=c * F32)


def gather_conv3x3(hw, tile, layer: BlockLayer, patches: PatchGeometry, n: float,
                   halo_conv1: bool = False, kind: str = "gather_conv3x3") -> Work:
    """Per active patch: its window (from the conv1 map, or conv1 computed on it when
    ``halo_conv1``) then the 3x3 conv on the tile's pixels (S*S where S divides the map)."""
    c, w = layer.in_channels, layer.planes
    pixels, window = patches.tile_pixels, patches.window_pixels
    tile = tile.for_rows(hw, w * F32)
    tiles, slots = per_patch_tiles(tile, pixels, kind)
    reduce_map = _map_bytes(layer, c if halo_conv1 else w)
    work = conv_work(hw, tile, kind, tiles=n * tiles, pixels=n * slots, reduce=9 * w,
                 out_channels=w,
                 in_bytes=n * window * (c if halo_conv1 else w) * F32,
                 out_bytes=n * pixels * w * F32, tasks=n, map_bytes=reduce_map,
                 row_bytes=w * F32, tile_pixels=min(tile.pixels, pixels))
    if halo_conv1:
        halo_tiles, halo_slots = per_patch_tiles(tile, window, kind)
        conv1 = conv_work(hw, tile, kind, tiles=n * halo_tiles, pixels=n * halo_slots, reduce=c,
                      out_channels=w, in_bytes=0.0, out_bytes=0.0, tasks=n,
                      map_bytes=reduce_map, row_bytes=c * F32,
                      tile_pixels=min(tile.pixels, window))
        work.merge(conv1)
    return work


def gather_conv3x3_rows(hw, tile, layer: BlockLayer, n: float) -> Work:
    groups = math.ceil(n / tile.row_group)
    w = layer.planes
    tile = tile.for_rows(hw, w * F32)
    once = _rows_read_weights_once(hw, 9 * w * w, _map_bytes(layer, w))
    return conv_work(hw, tile, "gather_conv3x3_rows", tiles=groups * tile.row_group / tile.pixels,
                 pixels=groups * tile.row_group, reduce=9 * w, out_channels=w,
                 in_bytes=groups * tile.row_group * 9 * w * F32,
                 out_bytes=groups * tile.row_group * w * F32,
                 tasks=math.ceil(w / tile.channels) if once else groups, weights_once=once,
                 map_bytes=_map_bytes(layer, w), row_bytes=w * F32)


def conv1x1_scatter_add(hw, tile, layer: BlockLayer, patches: PatchGeometry, n: float,
                        kind: str = "conv1x1_scatter_add", scatter: bool = True) -> Work:
    """conv3 (+BN) of each active patch, added into the shortcut (read + write)."""
    w, k, pixels = layer.planes, layer.out_channels, patches.tile_pixels
    tile = tile.for_rows(hw, w * F32)
    tiles, slots = per_patch_tiles(tile, pixels, kind)
    out = n * pixels * k * F32 * (2 if scatter else 1)
    return conv_work(hw, tile, kind, tiles=n * tiles, pixels=n * slots, reduce=w, out_channels=k,
                 in_bytes=n * pixels * w * F32, out_bytes=out, tasks=n,
                 map_bytes=n * pixels * w * F32, row_bytes=w * F32,
                 tile_pixels=min(tile.pixels, pixels))


def conv1x1_scatter_add_rows(hw, tile, layer: BlockLayer, n: float) -> Work:
    groups = math.ceil(n / tile.row_group)
    w, k = layer.planes, layer.out_channels
    tile = tile.for_rows(hw, w * F32)
    # the kernel's first input is the group's rows (m, ROW_GROUP, w): m counts as 1
    once = _rows_read_weights_once(hw, w * k, tile.row_group * w * F32)
    return conv_work(hw, tile, "conv1x1_scatter_add_rows",
                 tiles=groups * tile.row_group / tile.pixels, pixels=groups * tile.row_group,
                 reduce=w, out_channels=k, in_bytes=groups * tile.row_group * w * F32,
                 out_bytes=2 * groups * tile.row_group * k * F32,
                 tasks=math.ceil(k / tile.channels) if once else groups, weights_once=once,
                 map_bytes=_map_bytes(layer, k, out=True), row_bytes=w * F32)


def _rows_read_weights_once(hw, weights: int, first_input_bytes: float) -> bool:
    """The CPU rule's loop order for a row-group kernel (``register_tile.weights_read_once``);
    GPUs run a thread block per (group, channel tile) either way."""
    return hw.kind == "cpu" and weights_read_once(weights * F32, first_input_bytes)


def streaming(hw, kind: str, nbytes: float, map_bytes: float, tasks: float) -> Work:
    """Pure data movement (gather, scatter, add, ReLU, copies): ``nbytes`` in and out."""
    work = Work(kind, tasks=tasks)
    work.add_bytes(_level(hw, map_bytes), nbytes)
    return work
