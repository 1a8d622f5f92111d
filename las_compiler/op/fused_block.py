"""Whole-block per-patch fusion: conv1 -> conv2 -> conv3 + shortcut + ReLU in one kernel.

For each active patch, conv1 runs on the patch's halo window straight from the block input
(recomputing the 1-pixel halo that neighbouring patches share), conv2 on that, conv3 on the
result, and the output pixels are written once. A patch's intermediates (span_h*span_w x width
and tile_h*tile_w x width floats, a few KiB) never leave L1/L2; no full-size intermediate map
exists.

The output cannot alias the input (other patches still read their halos from it), so inactive
cells are written by :func:`copy_inactive` (``relu(identity)`` over the compaction's inactive
list ``idx[n:]``); a separate kernel because two writers of one buffer in one function stop
the schedule from moving either onto its loop tile. Whether the saved intermediate traffic
beats the halo recompute and the copy depends on S, r and the layer: the benchmark measures it.
"""

from __future__ import annotations

from tvm.script import tirx as T

from ..geometry import PatchGeometry
from .indexing import PatchIndex
from .params import CHANNEL_BLOCK as NB
from .registry import kernel


@kernel("fused_block")
def fused_block(geometry: PatchGeometry, in_channels: int, width: int, out_channels: int):
    """PrimFunc ``(x, idx[n], w1, b1, w2, b2, w3, b3, identity, out)``.

    ``x[N,H,W,Cin]``; ``idx`` the active cell ids (symbolic n); weights packed;
    ``identity`` and ``out`` are ``[N,Ho,Wo,K]`` (``identity`` may be ``x`` itself for blocks
    without downsample; ``out`` must not alias ``x``, but may alias ``identity`` when that is a
    separate downsample result: benign under ``noalias`` for the reason given in
    :mod:`.scatter_conv`).
    """
    g = geometry
    ix = PatchIndex(g)
    N, H, W, Cin, Wd, K = g.batch, g.height, g.width, in_channels, width, out_channels  # noqa: N806
    Ho, Wo, stride = g.out_height, g.out_width, g.stride  # noqa: N806
    tw, sw, halo, pixels = g.tile_w, g.span_w, g.window_pixels, g.tile_pixels

    @T.prim_func(s_tir=True)
    def func(
        x: T.Buffer((N, H, W, Cin), "float32"),
        idx_handle: T.handle,
        w1: T.Buffer((Wd // NB, Cin, NB), "float32"),
        b1: T.Buffer((Wd,), "float32"),
        w2: T.Buffer((Wd // NB, 3, 3, Wd, NB), "float32"),
        b2: T.Buffer((Wd,), "float32"),
        w3: T.Buffer((K // NB, Wd, NB), "float32"),
        b3: T.Buffer((K,), "float32"),
        identity: T.Buffer((N, Ho, Wo, K), "float32"),
        out: T.Buffer((N, Ho, Wo, K), "float32"),
    ):
        T.func_attr({"tirx.noalias": True,
                     "las.chain": "conv1:epilogue1:1,conv2:epilogue2:3,conv3:epilogue3:1"})
        n = T.int32()
        idx = T.match_buffer(idx_handle, (n,), "int32")
        # scratch sized by n (not the static cell count): the schedule shrinks it to one patch
        acc1 = T.sblock_alloc_buffer((n, halo, Wd), "float32")
        h1 = T.sblock_alloc_buffer((n, halo, Wd), "float32")
        acc2 = T.sblock_alloc_buffer((n, pixels, Wd), "float32")
        y2 = T.sblock_alloc_buffer((n, pixels, Wd), "float32")
        acc3 = T.sblock_alloc_buffer((n, pixels, K), "float32")
        for p, m, k, rc in T.grid(n, halo, Wd, Cin):
            with T.sblock("conv1"):
                vp, vm, vk, vrc = T.axis.remap("SSSR", [p, m, k, rc])
                with T.init():
                    acc1[vp, vm, vk] = T.float32(0)
                # clamped reads outside the map: those rows are zeroed in epilogue1
                acc1[vp, vm, vk] = acc1[vp, vm, vk] + x[
                    ix.window_pixel(idx[vp], vm // sw, vm % sw)[0],
                    T.max(T.min(ix.window_pixel(idx[vp], vm // sw, vm % sw)[1], H - 1), 0),
                    T.max(T.min(ix.window_pixel(idx[vp], vm // sw, vm % sw)[2], W - 1), 0),
                    vrc,
                ] * w1[vk // NB, vrc, vk % NB]
        for p, m, k in T.grid(n, halo, Wd):
            with T.sblock("epilogue1"):
                vp, vm, vk = T.axis.remap("SSS", [p, m, k])
                # outside the map conv2 sees zero padding, not relu(bias)
                h1[vp, vm, vk] = T.Select(
                    ix.window_inside(idx[vp], vm // sw, vm % sw),
                    T.max(acc1[vp, vm, vk] + b1[vk], T.float32(0)),
                    T.float32(0),
                )
        for p, m, k, ry, rx, rc in T.grid(n, pixels, Wd, 3, 3, Wd):
            with T.sblock("conv2"):
                vp, vm, vk, vry, vrx, vrc = T.axis.remap("SSSRRR", [p, m, k, ry, rx, rc])
                with T.init():
                    acc2[vp, vm, vk] = T.float32(0)
                acc2[vp, vm, vk] = acc2[vp, vm, vk] + h1[
                    vp, (vm // tw * stride + vry) * sw + vm % tw * stride + vrx, vrc
                ] * w2[vk // NB, vry, vrx, vrc, vk % NB]
        for p, m, k in T.grid(n, pixels, Wd):
            with T.sblock("epilogue2"):
                vp, vm, vk = T.axis.remap("SSS", [p, m, k])
                y2[vp, vm, vk] = T.max(acc2[vp, vm, vk] + b2[vk], T.float32(0))
        for p, m, k, rc in T.grid(n, pixels, K, Wd):
            with T.sblock("conv3"):
                vp, vm, vk, vrc = T.axis.remap("SSSR", [p, m, k, rc])
                with T.init():
                    acc3[vp, vm, vk] = T.float32(0)
                acc3[vp, vm, vk] = acc3[vp, vm, vk] + y2[vp, vm, vrc] * w3[vk // NB, vrc, vk % NB]
        for p, m, k in T.grid(n, pixels, K):
            with T.sblock("epilogue3"):
                vp, vm, vk = T.axis.remap("SSS", [p, m, k])
                if ix.output_inside(idx[vp], vm):
                    out[ix.output_pixel(idx[vp], vm) + (vk,)] = T.max(
                        identity[ix.output_pixel(idx[vp], vm) + (vk,)] + acc3[vp, vm, vk]
                        + b3[vk],
                        T.float32(0),
                    )
    return func


@kernel("copy_inactive")
def copy_inactive(geometry: PatchGeometry, channels: int):
    """PrimFunc ``(partition[cells], active[n], identity, out)``: ``out = relu(identity)`` on
    the inactive cells, ``partition[n:]`` of the compaction (active ids first); ``active`` is
    the active prefix, passed for its length n. ``out`` may alias ``identity`` (element-wise,
    benign under ``noalias``)."""
    g = geometry
    ix = PatchIndex(g)
    N, Ho, Wo, K = g.batch, g.out_height, g.out_width, channels  # noqa: N806
    total, pixels = g.num_cells, g.tile_pixels

    @T.prim_func(s_tir=True)
    def func(
        idx: T.Buffer((total,), "int32"),
        active_handle: T.handle,
        identity: T.Buffer((N, Ho, Wo, K), "float32"),
        out: T.Buffer((N, Ho, Wo, K), "float32"),
    ):
        T.func_attr({"tirx.noalias": True})
        n = T.int32()
        T.match_buffer(active_handle, (n,), "int32")
        for q, m, k in T.grid(total - n, pixels, K):
            with T.sblock("copy_inactive"):
                vq, vm, vk = T.axis.remap("SSS", [q, m, k])
                if ix.output_inside(idx[n + vq], vm):
                    out[ix.output_pixel(idx[n + vq], vm) + (vk,)] = T.max(
                        identity[ix.output_pixel(idx[n + vq], vm) + (vk,)], T.float32(0)
                    )

    return func
