"""Gather + conv3x3 + bias + ReLU over the active patches (symbolic patch count).

Reads each active patch's halo window straight from the conv1 output map into a per-patch
staging buffer (``span x span x C``, a few KiB: stays in L1), convolves it with the block's
strided 3x3 conv and writes ``(n, S*S, K)``. No gathered copy of the map ever exists in memory.
"""

from __future__ import annotations

from tvm.script import tirx as T

from .geometry import PatchGeometry
from .params import CHANNEL_BLOCK as NB


def gather_conv3x3(geometry: PatchGeometry, in_channels: int, out_channels: int):
    """PrimFunc ``(x[N,H,W,C], idx[n], w[K/16,3,3,C,16], bias[K], y[n,S*S,K])``."""
    g = geometry
    N, H, W, C, K = g.batch, g.height, g.width, in_channels, out_channels  # noqa: N806
    S, stride, span = g.granularity, g.stride, g.span  # noqa: N806

    @T.prim_func(s_tir=True)
    def func(
        x: T.Buffer((N, H, W, C), "float32"),
        idx_handle: T.handle,
        w: T.Buffer((K // NB, 3, 3, C, NB), "float32"),
        bias: T.Buffer((K,), "float32"),
        y_handle: T.handle,
    ):
        T.func_attr({"tirx.noalias": True, "las.kernel": "gather_conv3x3",
                     "las.reduce_block": "conv", "las.num_reduce": 3})
        n = T.int32()
        idx = T.match_buffer(idx_handle, (n,), "int32")
        y = T.match_buffer(y_handle, (n, S * S, K), "float32")
        halo = T.sblock_alloc_buffer((n, span, span, C), "float32")
        acc = T.sblock_alloc_buffer((n, S * S, K), "float32")
        for p, a, b, c in T.grid(n, span, span, C):
            with T.sblock("gather"):
                vp, va, vb, vc = T.axis.remap("SSSS", [p, a, b, c])
                halo[vp, va, vb, vc] = T.if_then_else(
                    g.window_inside(idx[vp], va, vb),
                    x[g.window_pixel(idx[vp], va, vb) + (vc,)],
                    T.float32(0),
                )
        for p, m, k, ry, rx, rc in T.grid(n, S * S, K, 3, 3, C):
            with T.sblock("conv"):
                vp, vm, vk, vry, vrx, vrc = T.axis.remap("SSSRRR", [p, m, k, ry, rx, rc])
                with T.init():
                    acc[vp, vm, vk] = T.float32(0)
                acc[vp, vm, vk] = acc[vp, vm, vk] + halo[
                    vp, vm // S * stride + vry, vm % S * stride + vrx, vrc
                ] * w[vk // NB, vry, vrx, vrc, vk % NB]
        for p, m, k in T.grid(n, S * S, K):
            with T.sblock("epilogue"):
                vp, vm, vk = T.axis.remap("SSS", [p, m, k])
                y[vp, vm, vk] = T.max(acc[vp, vm, vk] + bias[vk], T.float32(0))

    return func
