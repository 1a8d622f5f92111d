"""The unfused sparse pipeline, for the fusion ablation (paper Table: 163 us -> 71 us on GPU).

gather (halo windows -> a gathered tensor in memory) -> conv3x3 over it -> conv1x1 over the
patches -> scatter into a zero map -> add + ReLU over the whole map. Every step round-trips its
result through memory and the last one touches every pixel, which is what fusion removes.
"""

from __future__ import annotations

from tvm.script import tirx as T

from ..geometry import PatchGeometry
from .indexing import PatchIndex
from .params import CHANNEL_BLOCK as NB
from .registry import kernel


@kernel("gather_patches")
def gather_patches(geometry: PatchGeometry, channels: int):
    """``(x[N,H,W,C], idx[n], g[n,span_h,span_w,C])``: every active patch's halo window."""
    g = geometry
    ix = PatchIndex(g)
    N, H, W, C = g.batch, g.height, g.width, channels  # noqa: N806
    sh, sw = g.span_h, g.span_w

    @T.prim_func(s_tir=True)
    def func(x: T.Buffer((N, H, W, C), "float32"), idx_handle: T.handle, g_handle: T.handle):
        T.func_attr({"tirx.noalias": True})
        n = T.int32()
        idx = T.match_buffer(idx_handle, (n,), "int32")
        out = T.match_buffer(g_handle, (n, sh, sw, C), "float32")
        for p, a, b, c in T.grid(n, sh, sw, C):
            with T.sblock("gather"):
                vp, va, vb, vc = T.axis.remap("SSSS", [p, a, b, c])
                out[vp, va, vb, vc] = T.if_then_else(
                    ix.window_inside(idx[vp], va, vb),
                    x[ix.window_pixel(idx[vp], va, vb) + (vc,)],
                    T.float32(0),
                )

    return func


@kernel("gathered_conv3x3")
def gathered_conv3x3(geometry: PatchGeometry, in_channels: int, out_channels: int):
    """``(g[n,span_h,span_w,C], w[K/16,3,3,C,16], bias[K], y[n,P,K])``: valid conv + BN +
    ReLU over each window (P = tile_h * tile_w output pixels)."""
    g0 = geometry
    tw, stride, sh, sw, P = g0.tile_w, g0.stride, g0.span_h, g0.span_w, g0.tile_pixels  # noqa: N806
    C, K = in_channels, out_channels  # noqa: N806

    @T.prim_func(s_tir=True)
    def func(g_handle: T.handle, w: T.Buffer((K // NB, 3, 3, C, NB), "float32"),
             bias: T.Buffer((K,), "float32"), y_handle: T.handle):
        T.func_attr({"tirx.noalias": True,
                     "las.reduce_block": "conv", "las.num_reduce": 3})
        n = T.int32()
        g = T.match_buffer(g_handle, (n, sh, sw, C), "float32")
        y = T.match_buffer(y_handle, (n, P, K), "float32")
        acc = T.sblock_alloc_buffer((n, P, K), "float32")
        for p, m, k, ry, rx, rc in T.grid(n, P, K, 3, 3, C):
            with T.sblock("conv"):
                vp, vm, vk, vry, vrx, vrc = T.axis.remap("SSSRRR", [p, m, k, ry, rx, rc])
                with T.init():
                    acc[vp, vm, vk] = T.float32(0)
                acc[vp, vm, vk] = acc[vp, vm, vk] + g[
                    vp, vm // tw * stride + vry, vm % tw * stride + vrx, vrc
                ] * w[vk // NB, vry, vrx, vrc, vk % NB]
        for p, m, k in T.grid(n, P, K):
            with T.sblock("epilogue"):
                vp, vm, vk = T.axis.remap("SSS", [p, m, k])
                y[vp, vm, vk] = T.max(acc[vp, vm, vk] + bias[vk], T.float32(0))

    return func


@kernel("patch_conv1x1")
def patch_conv1x1(pixels: int, in_channels: int, out_channels: int):
    """``(y[n,P,C], w[K/16,C,16], bias[K], z[n,P,K])``: conv1x1 + BN on gathered patches."""
    P, C, K = pixels, in_channels, out_channels  # noqa: N806

    @T.prim_func(s_tir=True)
    def func(y_handle: T.handle, w: T.Buffer((K // NB, C, NB), "float32"),
             bias: T.Buffer((K,), "float32"), z_handle: T.handle):
        T.func_attr({"tirx.noalias": True,
                     "las.reduce_block": "conv", "las.num_reduce": 1})
        n = T.int32()
        y = T.match_buffer(y_handle, (n, P, C), "float32")
        z = T.match_buffer(z_handle, (n, P, K), "float32")
        acc = T.sblock_alloc_buffer((n, P, K), "float32")
        for p, m, k, rc in T.grid(n, P, K, C):
            with T.sblock("conv"):
                vp, vm, vk, vrc = T.axis.remap("SSSR", [p, m, k, rc])
                with T.init():
                    acc[vp, vm, vk] = T.float32(0)
                acc[vp, vm, vk] = acc[vp, vm, vk] + y[vp, vm, vrc] * w[vk // NB, vrc, vk % NB]
        for p, m, k in T.grid(n, P, K):
            with T.sblock("epilogue"):
                vp, vm, vk = T.axis.remap("SSS", [p, m, k])
                z[vp, vm, vk] = acc[vp, vm, vk] + bias[vk]

    return func


@kernel("scatter_patches")
def scatter_patches(geometry: PatchGeometry, channels: int):
    """``(z[n,P,K], idx[cells], d[N,Ho,Wo,K])``: a dense map holding each active patch's
    values and zeros elsewhere. ``idx`` is the compaction's full partition (the n active cells
    first), so every pixel is written exactly once.
    """
    g = geometry
    ix = PatchIndex(g)
    N, Ho, Wo, K = g.batch, g.out_height, g.out_width, channels  # noqa: N806
    total, P = g.num_cells, g.tile_pixels  # noqa: N806

    @T.prim_func(s_tir=True)
    def func(z_handle: T.handle, idx: T.Buffer((total,), "int32"),
             d: T.Buffer((N, Ho, Wo, K), "float32")):
        T.func_attr({"tirx.noalias": True})
        n = T.int32()
        z = T.match_buffer(z_handle, (n, P, K), "float32")
        for q, m, k in T.grid(total, P, K):
            with T.sblock("scatter"):
                vq, vm, vk = T.axis.remap("SSS", [q, m, k])
                if ix.output_inside(idx[vq], vm):
                    # if_then_else, not Select: Select also reads the rows past the count, which
                    # do not exist; that made the kernel 80x slower (4.0 vs 0.05 ms)
                    d[ix.output_pixel(idx[vq], vm) + (vk,)] = T.if_then_else(
                        vq < n, z[T.min(vq, n - 1), vm, vk], T.float32(0))

    return func


@kernel("add_relu")
def add_relu(size: int):
    """``(a[size], b[size], out[size])``: out = relu(a + b) over the whole map."""

    @T.prim_func(s_tir=True)
    def func(a: T.Buffer((size,), "float32"), b: T.Buffer((size,), "float32"),
             out: T.Buffer((size,), "float32")):
        T.func_attr({"tirx.noalias": True})
        for i in range(size):
            with T.sblock("add_relu"):
                vi = T.axis.remap("S", [i])
                out[vi] = T.max(a[vi] + b[vi], T.float32(0))

    return func
