"""Chains of convolutions per patch on CUDA (conv1 on the patch halo, whole-block fusion).

Pattern matched: a kernel with the ``las.chain`` attribute (``halo_conv3x3``, ``fused_block``;
see the CPU rule ``schedules.cpu.patch_chain`` for its format).

Schedule strategy:
1. one thread block per active patch (``blockIdx.x``); every conv of the chain runs inside it,
   one after another, and each intermediate (conv1 on the patch's halo window,
   ``span_h*span_w x width``; conv2 on its tile) lives in shared memory, never in global;
2. every conv is spread over the same threads: the pixels in contiguous runs over
   ``threadIdx.y``, the output channels in groups of 16 over ``threadIdx.x`` (a serial loop
   walks wider channel counts), so a thread keeps a run of pixels x ``thread_channels``
   accumulators in registers; the epilogue (bias, ReLU, zero outside the map, residual,
   scattered store) runs on them;
3. TVM's thread-sync pass puts a barrier between the convs (a conv reads what the previous
   one wrote to shared memory).
The halo recompute is the price of independent patches, as on the CPU. A patch whose
intermediates exceed the target's shared memory per block cannot use these pipelines: the
rule raises, and ``auto`` never chooses them there (``schedules.pipeline_fits``).
"""

from __future__ import annotations

from tvm import s_tir

from ..analysis import kernel_kind, loops_by_iter, static_extent
from ..base import check
from ..chains import chain_at_patch, parse_chain
from .base import GPURule, Limits
from .limits import block_resources

PIXEL_THREADS = 8
CHANNEL_THREADS = 16  # one weight-packing block of channels per pass


class PatchChainGPU(GPURule):
    def matches(self, func) -> bool:
        return func.attrs is not None and "las.chain" in func.attrs

    def schedule(self, sch, func, target, knobs) -> s_tir.Schedule:
        name = kernel_kind(func) or "chain"
        limits = Limits.of(target)
        chain = parse_chain(func.attrs["las.chain"])
        get = sch.get_sblock
        patch = chain_at_patch(sch, chain, "shared")
        sch.bind(patch, "blockIdx.x")
        check(PIXEL_THREADS * CHANNEL_THREADS <= limits.threads,
              f"{name}: {PIXEL_THREADS * CHANNEL_THREADS} threads exceed {limits.threads}")
        for conv, epilogue, num_reduce in chain:
            _tile_stage(sch, get(conv), get(epilogue), num_reduce, name)
        used = block_resources(sch.mod["main"])["shared_bytes"]
        check(used <= limits.shared_bytes,
              f"{name}: a patch's intermediates need {used} bytes of shared memory; "
              f"the target allows {limits.shared_bytes} per block")
        return sch


def _tile_stage(sch, conv, epilogue, num_reduce: int, name: str) -> None:
    roles = loops_by_iter(sch, conv)[1:]  # after the patch loop
    pixel, channel = roles[-(num_reduce + 2)], roles[-(num_reduce + 1)]
    reductions = [loop for loop in roles[-num_reduce:] if loop is not None]
    channels = static_extent(sch, channel)
    check(channels % CHANNEL_THREADS == 0,
          f"{name}: {channels} channels are not a multiple of {CHANNEL_THREADS}")
    if pixel is None:
        # a one-pixel tile (S = 1): the channels spread over both thread axes (each output
        # written by exactly one thread; a unit pixel loop split over threadIdx.y loses its
        # predicate in the epilogue, and eight threads then store the same pixel)
        c_o, ty, tx = sch.split(channel, [None, PIXEL_THREADS, CHANNEL_THREADS])
        sch.reorder(ty, tx, c_o, *reductions)
    else:
        c_o, tx = sch.split(channel, [None, CHANNEL_THREADS])
        ty, tp = sch.split(pixel, [PIXEL_THREADS, None])  # contiguous runs per thread
        sch.reorder(ty, tx, c_o, *reductions, tp)
    sch.bind(ty, "threadIdx.y")
    sch.bind(tx, "threadIdx.x")
    sch.set_scope(conv, 0, "local")
    sch.reverse_compute_at(epilogue, c_o)
    sch.decompose_reduction(conv, reductions[0])
