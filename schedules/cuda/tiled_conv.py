"""Every LAS convolution kernel on CUDA: thread blocks over (pixels x output channels),
register tiles per thread, operands staged in shared memory per reduction chunk.

Pattern matched: a PrimFunc with ``las.reduce_block`` (see ``las_compiler.op``): optional
producers (gathered windows, padding) -> one reduction block ``[outer..., pixel, channel,
reductions...]`` -> one epilogue block (bias, ReLU, residual, scattered stores).

Schedule strategy:
1. sparse kernels: one thread block (``blockIdx.x``) per active patch or row group, its pixels
   split over ``threadIdx.y`` in contiguous runs; dense kernels: the pixel axis split into
   ``blockIdx.x`` x ``threadIdx.y`` x ``thread_pixels``. Output channels go to ``blockIdx.y``
   x ``threadIdx.x`` x ``thread_channels``. A thread block covers a (pixels x channels)
   tile, a thread a small register tile of it; neighbouring threads take neighbouring
   channel groups, so weight loads and output stores coalesce;
2. the input channels split into chunks of ``chunk``; per chunk the pixel operand (the
   gathered patch windows with their halo, the padded map, or the patch rows) and the
   weights are copied into shared memory by all threads of the block together (TVM inserts
   the barriers), then every thread accumulates its tile from shared memory;
3. the accumulator is ``local`` (registers) and the epilogue runs on it per thread, so bias,
   ReLU, the residual add and the scattered stores happen once per output element.
4. double-buffered stages (knob ``buffers`` = 2, the default): the chunk loop is a software
   pipeline of two stages (TVM's ``InjectSoftwarePipeline``): the copies of chunk i + 1 are
   issued before the products of chunk i, into a second copy of each shared tile, so the
   global-memory latency of a fetch hides behind a chunk's arithmetic and each chunk needs one
   barrier instead of two. It doubles the block's shared memory; where that does not fit,
   or the reduction has a single chunk, the stages stay single.
Limits come from the target: a chunk whose shared tiles exceed the block's shared memory is
halved until they fit, and where even one channel does not (a strided map whose tile spans
whole rows) only the weights are staged; a tile with more threads than the target allows is
an error.
Deliberately not done yet: tensor cores (fp32 only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import tvm
import tvm_ffi
from tvm import s_tir

from ...op.params import is_weight
from ..analysis import kernel_kind, loops_by_iter, static_extent
from ..base import ScheduleError, check
from ..knobs import Knob, KnobSpace
from .base import GPURule, Limits
from .limits import block_resources


@dataclass(frozen=True)
class Config:
    """Knobs (all structural: each combination is one traced schedule while tuning)."""

    thread_pixels: int = 2  # pixels per thread
    pixel_threads: int = 8  # threads along pixels
    thread_channels: int = 4  # output channels per thread (one float4 store)
    channel_threads: int = 16  # threads along channels (at most; fitted to K)
    chunk: int = 16  # input channels per shared-memory stage
    buffers: int = 2  # copies of each shared tile: 2 pipelines the chunk loop


class TiledConvGPU(GPURule):
    """The rule (see the module docstring)."""

    def __init__(self, config: Config | None = None):
        self.config = config

    def matches(self, func) -> bool:
        return func.attrs is not None and "las.reduce_block" in func.attrs \
            and "las.chain" not in func.attrs

    def knob_space(self, func, target) -> KnobSpace:
        return KnobSpace((Knob("thread_pixels", (1, 2, 4), structural=True),
                          Knob("thread_channels", (2, 4), structural=True),
                          Knob("chunk", (8, 16, 32), structural=True),
                          Knob("buffers", (1, 2), structural=True)))

    def default_knobs(self, func, target) -> dict:
        cfg = self.config or Config()
        return {"thread_pixels": cfg.thread_pixels, "thread_channels": cfg.thread_channels,
                "chunk": cfg.chunk, "pixel_threads": cfg.pixel_threads,
                "channel_threads": cfg.channel_threads, "buffers": cfg.buffers}

    def anchor_block(self, sch, func):
        return sch.get_sblock(str(func.attrs["las.reduce_block"]))

    def schedule(self, sch: s_tir.Schedule, func, target, knobs: dict) -> s_tir.Schedule:
        base = {**self.default_knobs(func, target), **knobs}
        limits = Limits.of(target)
        # the pixel operand's tile can be large where a block's pixels straddle rows of a wide
        # map read at a stride (its region spans whole rows): then it is read from global
        # memory (L1) and only the weights are staged
        # double buffers first (at the knob's chunk or half of it), then single ones
        for stage_pixels in (True, False):
            for buffers in sorted({int(base["buffers"]), 1}, reverse=True):
                chunk = int(base["chunk"])
                while chunk >= (max(1, int(base["chunk"]) // 2) if buffers > 1 else 1):
                    attempt = sch.copy()
                    tiled = tile_for_gpu(attempt, func, limits,
                                         {**base, "chunk": chunk, "buffers": buffers},
                                         stage_pixels)
                    if shared_bytes(attempt) <= limits.shared_bytes:
                        return tiled
                    chunk //= 2
        raise ScheduleError(f"{kernel_kind(func)}: shared tiles exceed {limits.shared_bytes} "
                            "bytes even one channel at a time")


def shared_bytes(sch: s_tir.Schedule) -> int:
    """Shared memory one thread block of the scheduled kernel allocates."""
    return block_resources(sch.mod["main"])["shared_bytes"]


def _fit(extent: int, most: int, step: int) -> int:
    """The largest divisor of ``extent // step`` that is at most ``most``."""
    groups = max(1, extent // step)
    return max(d for d in range(1, min(most, groups) + 1) if groups % d == 0)


def tile_for_gpu(sch: s_tir.Schedule, func, limits: Limits, knobs: dict,
                 stage_pixels: bool = True) -> s_tir.Schedule:
    name = kernel_kind(func) or "kernel"
    conv = sch.get_sblock(str(func.attrs["las.reduce_block"]))
    num_reduce = int(func.attrs["las.num_reduce"])
    producers = sch.get_producers(conv)
    consumers = sch.get_consumers(conv)
    check(len(consumers) == 1, f"{name}: expected one epilogue block, found {len(consumers)}")
    epilogue = consumers[0]

    roles = loops_by_iter(sch, conv)
    outer = [loop for loop in roles[: -(num_reduce + 2)] if loop is not None]
    pixel, channel = roles[-(num_reduce + 2)], roles[-(num_reduce + 1)]
    reductions = [loop for loop in roles[-num_reduce:] if loop is not None]
    check(bool(outer) or pixel is not None, f"{name}: no pixel loop")

    k_extent = sch.get(channel).extent
    check(isinstance(k_extent, tvm.tirx.IntImm), f"{name}: symbolic channel count")
    k_extent = int(k_extent)
    thread_channels = int(knobs["thread_channels"])
    check(k_extent % thread_channels == 0,
          f"{name}: {k_extent} channels are not a multiple of {thread_channels}")
    channel_threads = _fit(k_extent, int(knobs["channel_threads"]), thread_channels)
    thread_pixels = int(knobs["thread_pixels"])
    pixel_threads = max(1, min(int(knobs["pixel_threads"]), limits.threads // channel_threads))
    by, tx, tc = sch.split(channel, [None, channel_threads, thread_channels])
    ty = tp = None
    if outer:
        # one thread block per patch (row group): its staged window is one patch's, of a
        # constant size; the block's threads split the patch's pixels
        bx = sch.fuse(*outer) if len(outer) > 1 else outer[0]
        if pixel is not None:
            # each thread a contiguous run of the patch's pixels (a strided set would make
            # the epilogue's region, computed at the thread, overlap its neighbours')
            per_patch = static_extent(sch, pixel)
            pixel_threads = max(1, min(pixel_threads, -(-per_patch // thread_pixels)))
            ty, tp = sch.split(pixel, [pixel_threads, None])
        else:
            pixel_threads = 1
    else:
        bx, ty, tp = sch.split(pixel, [None, pixel_threads, thread_pixels])
    check(pixel_threads * channel_threads <= limits.threads,
          f"{name}: {pixel_threads * channel_threads} threads per block exceed the target's "
          f"{limits.threads}")

    # the input-channel reduction (the last one: rc) is split in chunks, windows (ry, rx) inside
    rc = reductions[-1]
    chunk = int(knobs["chunk"])
    rc_extent = int(sch.get(rc).extent)
    chunk = math.gcd(rc_extent, chunk)
    rc_o, rc_i = sch.split(rc, [None, chunk])
    threads = [loop for loop in (ty, tx) if loop is not None]
    tile = [loop for loop in (tp, tc) if loop is not None]
    sch.reorder(bx, by, *threads, rc_o, *reductions[:-1], rc_i, *tile)
    sch.bind(bx, "blockIdx.x")
    sch.bind(by, "blockIdx.y")
    if ty is not None:
        sch.bind(ty, "threadIdx.y")
    sch.bind(tx, "threadIdx.x")

    # operands into shared memory per chunk: a producer stage itself, else a cache of the
    # buffer the reduction reads
    stages = []
    produced = [sch.get(p).writes[0].source for p in producers]
    for producer in producers:
        if stage_pixels:
            sch.set_scope(producer, 0, "shared")
            stages.append(producer)
        else:
            sch.compute_inline(producer)  # padding / gathering: index arithmetic in the conv
    regions = list(sch.get(conv).reads)
    for index, region in enumerate(regions):
        buffer = region.source
        if buffer.scope() != "global" or any(buffer.same_as(b) for b in produced):
            continue
        if not stage_pixels and not is_weight(str(buffer.name)):
            continue
        if len(buffer.shape) < 2 or buffer.dtype != "float32" or _indirect(region):
            # index lists and biases are read once; rows read through an index list
            # (conv1 on listed pixels) have no tile to stage
            continue
        stages.append(sch.cache_read(conv, index, "shared"))
    for stage in stages:
        sch.compute_at(stage, rc_o)
        _cooperative_fetch(sch, stage, rc_o, pixel_threads if ty is not None else None,
                           channel_threads)
    if int(knobs.get("buffers", 1)) > 1 and stages and static_extent(sch, rc_o) > 1:
        # the copies of the next chunk (stage 0) beside the products of this one (stage 1)
        body = len(stages) + 1  # the fetches, then the accumulation nest
        sch.annotate(rc_o, "software_pipeline_stage", [0] * len(stages) + [1])
        sch.annotate(rc_o, "software_pipeline_order", list(range(body)))

    sch.set_scope(conv, 0, "local")
    sch.reverse_compute_at(epilogue, tx)
    sch.decompose_reduction(conv, rc_o)
    sch.unroll(sch.get_loops(epilogue)[-2])
    return sch


def _indirect(region) -> bool:
    """The region's position depends on loaded data (``x[rows[t, u], c]``)."""
    found = []
    for r in region.region:
        tvm_ffi.structural_walk(r.min, [(tvm.ir.TensorLoad, found.append)], order="post")
    return bool(found)


def _cooperative_fetch(sch, stage, rc_o, pixel_threads: int | None,
                       channel_threads: int) -> None:
    """The copy loops of ``stage`` (under ``rc_o``) spread over all threads of the block."""
    loops = sch.get_loops(stage)
    anchor = sch.get(rc_o)
    depth = next(i for i, loop in enumerate(loops) if sch.get(loop).same_as(anchor)) + 1
    inner = loops[depth:]
    if not inner:
        raise ScheduleError("a staged operand has no copy loop")
    fused = sch.fuse(*inner) if len(inner) > 1 else inner[0]
    if pixel_threads is None:  # the block has no threadIdx.y
        _, fx = sch.split(fused, [None, channel_threads])
    else:
        _, fy, fx = sch.split(fused, [None, pixel_threads, channel_threads])
        sch.bind(fy, "threadIdx.y")
    sch.bind(fx, "threadIdx.x")
