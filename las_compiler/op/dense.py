"""Dense NHWC convolutions for the static parts of a LAS network.

The stem, the downsample shortcuts, conv1 when dense is cheaper than its dilated-sparse form,
and the dense baseline blocks all use these. Outputs are flat ``(N*Ho*Wo, K)`` (same memory as
NHWC) so the pixel axis is one loop the rules tile by 6 without 2-D write-back hazards.
"""

from __future__ import annotations

from tvm.script import tirx as T

from .indexing import PatchIndex
from .params import CHANNEL_BLOCK as NB
from .registry import kernel

EPILOGUES = ("none", "relu", "add_relu", "masked_add_relu", "masked_relu")
MASKED = ("masked_add_relu", "masked_relu")  # read one int32 flag per patch cell


def _check_epilogue(epilogue: str) -> None:
    if epilogue not in EPILOGUES:
        raise ValueError(f"unknown epilogue {epilogue!r}; choose from {EPILOGUES}")


def _pointwise(M, K, C, s, Ho, Wo):  # noqa: N803
    """The 1x1 conv's reduction ``acc[M, K]`` over ``x`` (``(M, C)`` rows at stride 1, the
    even pixels of ``x[N, H, W, C]`` at stride 2), shared by every epilogue."""

    @T.macro
    def accumulate(x, w, acc):
        for m, k, rc in T.grid(M, K, C):
            with T.sblock("conv"):
                vm, vk, vrc = T.axis.remap("SSR", [m, k, rc])
                with T.init():
                    acc[vm, vk] = T.float32(0)
                if s == 1:
                    acc[vm, vk] = acc[vm, vk] + x[vm, vrc] * w[vk // NB, vrc, vk % NB]
                else:
                    acc[vm, vk] = acc[vm, vk] + x[
                        vm // (Ho * Wo), vm % (Ho * Wo) // Wo * s, vm % Wo * s, vrc
                    ] * w[vk // NB, vrc, vk % NB]

    return accumulate


@kernel("conv1x1")
def conv1x1(batch, height, width, in_channels, out_channels, stride=1, epilogue="relu",
            patches=None):
    """Pointwise conv as a GEMM: ``(x, w[K/16,C,16], bias[K], residual, [flags], y[M,K])``.

    Stride 1 reads ``x`` as ``(N*H*W, C)``; stride 2 reads ``x[N,H,W,C]`` at even pixels.
    ``epilogue``: "none" (BN only, e.g. a downsample shortcut), "relu", "add_relu"
    (``relu(conv + bias + residual)``, the dense block's last conv), "masked_add_relu":
    ``relu(residual + flag * (conv + bias))`` with one int32 flag per patch cell of the
    output (``patches``: the block's :class:`PatchGeometry`, whose output map this conv's is) -
    a LAS block computed densely, for layers where dense kernels beat sparse ones, with the
    mask's semantics intact - or "masked_relu": ``conv + bias`` where the flag is 1 and its
    ReLU where it is 0 (a projected shortcut: the block output where the mask is off, the
    scatter-add's residual where it is on). Masked variants take ``flags`` before ``y``.
    """
    _check_epilogue(epilogue)
    if epilogue in MASKED:
        out = (batch, (height - 1) // stride + 1, (width - 1) // stride + 1)
        if patches is None or out != (patches.batch, patches.out_height, patches.out_width):
            raise ValueError(f"{epilogue} needs the patch geometry of this conv's output map")
        return _conv1x1_masked(patches, height, width, in_channels, out_channels, stride,
                               epilogue)
    N, H, W, C, K, s = batch, height, width, in_channels, out_channels, stride  # noqa: N806
    Ho, Wo = (H - 1) // s + 1, (W - 1) // s + 1  # noqa: N806
    M = N * Ho * Wo  # noqa: N806
    x_shape = (M, C) if s == 1 else (N, H, W, C)
    has_residual = epilogue == "add_relu"
    res_shape = (M, K) if has_residual else (1, 1)
    accumulate = _pointwise(M, K, C, s, Ho, Wo)

    @T.prim_func(s_tir=True)
    def func(
        x_handle: T.handle,
        w: T.Buffer((K // NB, C, NB), "float32"),
        bias: T.Buffer((K,), "float32"),
        residual: T.Buffer(res_shape, "float32"),
        y: T.Buffer((M, K), "float32"),
    ):
        T.func_attr({"tirx.noalias": True,
                     "las.reduce_block": "conv", "las.num_reduce": 1})
        x = T.match_buffer(x_handle, x_shape, "float32")
        acc = T.sblock_alloc_buffer((M, K), "float32")
        accumulate(x, w, acc)
        for m, k in T.grid(M, K):
            with T.sblock("epilogue"):
                vm, vk = T.axis.remap("SS", [m, k])
                if epilogue == "none":
                    y[vm, vk] = acc[vm, vk] + bias[vk]
                elif epilogue == "relu":
                    y[vm, vk] = T.max(acc[vm, vk] + bias[vk], T.float32(0))
                else:
                    y[vm, vk] = T.max(acc[vm, vk] + bias[vk] + residual[vm, vk], T.float32(0))

    return func


def _conv1x1_masked(patches, height, width, in_channels, out_channels, stride, epilogue):
    g = patches
    ix = PatchIndex(g)
    N, C, K, s = g.batch, in_channels, out_channels, stride  # noqa: N806
    Ho, Wo = g.out_height, g.out_width  # noqa: N806
    M = N * Ho * Wo  # noqa: N806
    x_shape = (M, C) if s == 1 else (N, height, width, C)
    res_shape = (M, K) if epilogue == "masked_add_relu" else (1, 1)
    accumulate = _pointwise(M, K, C, s, Ho, Wo)

    @T.prim_func(s_tir=True)
    def func(
        x_handle: T.handle,
        w: T.Buffer((K // NB, C, NB), "float32"),
        bias: T.Buffer((K,), "float32"),
        residual: T.Buffer(res_shape, "float32"),
        flags: T.Buffer((g.num_cells,), "int32"),
        y: T.Buffer((M, K), "float32"),
    ):
        T.func_attr({"tirx.noalias": True,
                     "las.reduce_block": "conv", "las.num_reduce": 1})
        x = T.match_buffer(x_handle, x_shape, "float32")
        acc = T.sblock_alloc_buffer((M, K), "float32")
        accumulate(x, w, acc)
        for m, k in T.grid(M, K):
            with T.sblock("epilogue"):
                vm, vk = T.axis.remap("SS", [m, k])
                if epilogue == "masked_add_relu":
                    y[vm, vk] = T.max(residual[vm, vk] + T.Cast("float32", flags[
                        ix.cell_of_pixel(vm // (Ho * Wo), vm % (Ho * Wo) // Wo, vm % Wo)])
                        * (acc[vm, vk] + bias[vk]), T.float32(0))
                else:
                    y[vm, vk] = T.Select(
                        flags[ix.cell_of_pixel(vm // (Ho * Wo), vm % (Ho * Wo) // Wo,
                                               vm % Wo)] != 0,
                        acc[vm, vk] + bias[vk], T.max(acc[vm, vk] + bias[vk], T.float32(0)))

    return func


@kernel("conv2d")
def conv2d(batch, height, width, in_channels, out_channels, kernel, stride=1, padding=0,
           epilogue="relu"):
    """Dense kxk conv + bias + epilogue: ``(x[N,H,W,C], w[K/16,k,k,C,16], bias, res, y[M,K])``.

    Covers the 3x3 convs and the 7x7 stem. A separate pad stage (about 0.5 % of the time) keeps
    the hot loop free of bounds checks. ``res`` is read only by the "add_relu" epilogue (pass a
    1x1 dummy otherwise), as in :func:`conv1x1`.
    """
    _check_epilogue(epilogue)
    N, H, W, C, K, s, r, p = (batch, height, width, in_channels,  # noqa: N806
                              out_channels, stride, kernel, padding)
    Ho, Wo = (H + 2 * p - r) // s + 1, (W + 2 * p - r) // s + 1  # noqa: N806
    M = N * Ho * Wo  # noqa: N806
    Hp, Wp = H + 2 * p, W + 2 * p  # noqa: N806
    res_shape = (M, K) if epilogue == "add_relu" else (1, 1)

    @T.prim_func(s_tir=True)
    def func(
        x: T.Buffer((N, H, W, C), "float32"),
        w: T.Buffer((K // NB, r, r, C, NB), "float32"),
        bias: T.Buffer((K,), "float32"),
        residual: T.Buffer(res_shape, "float32"),
        y: T.Buffer((M, K), "float32"),
    ):
        T.func_attr({"tirx.noalias": True,
                     "las.reduce_block": "conv", "las.num_reduce": 3})
        padded = T.sblock_alloc_buffer((N, Hp, Wp, C), "float32")
        acc = T.sblock_alloc_buffer((M, K), "float32")
        for b, a, c, ch in T.grid(N, Hp, Wp, C):
            with T.sblock("pad"):
                vb, va, vc, vch = T.axis.remap("SSSS", [b, a, c, ch])
                padded[vb, va, vc, vch] = T.if_then_else(
                    p <= va and va < H + p and p <= vc and vc < W + p,
                    x[vb, va - p, vc - p, vch],
                    T.float32(0),
                )
        for m, k, ry, rx, rc in T.grid(M, K, r, r, C):
            with T.sblock("conv"):
                vm, vk, vry, vrx, vrc = T.axis.remap("SSRRR", [m, k, ry, rx, rc])
                with T.init():
                    acc[vm, vk] = T.float32(0)
                acc[vm, vk] = acc[vm, vk] + padded[
                    vm // (Ho * Wo), vm % (Ho * Wo) // Wo * s + vry, vm % Wo * s + vrx, vrc
                ] * w[vk // NB, vry, vrx, vrc, vk % NB]
        for m, k in T.grid(M, K):
            with T.sblock("epilogue"):
                vm, vk = T.axis.remap("SS", [m, k])
                if epilogue == "none":
                    y[vm, vk] = acc[vm, vk] + bias[vk]
                elif epilogue == "relu":
                    y[vm, vk] = T.max(acc[vm, vk] + bias[vk], T.float32(0))
                else:
                    y[vm, vk] = T.max(acc[vm, vk] + bias[vk] + residual[vm, vk], T.float32(0))

    return func


@kernel("relu_inplace")
def relu_inplace(size: int):
    """``out = max(src, 0)`` over a flat buffer; callers pass the same buffer twice to apply it
    in place (downsample blocks' inactive pixels); element-wise, so ``noalias`` stays sound."""

    @T.prim_func(s_tir=True)
    def func(src: T.Buffer((size,), "float32"), out: T.Buffer((size,), "float32")):
        T.func_attr({"tirx.noalias": True})
        for i in range(size):
            with T.sblock("relu"):
                vi = T.axis.remap("S", [i])
                out[vi] = T.max(src[vi], T.float32(0))

    return func


@kernel("copy")
def copy(size: int):
    """``out = src`` over a flat buffer, as a kernel Relax cannot turn into a view.

    Written as a reduction over a unit axis on purpose: Relax's RewriteDataflowReshape turns any
    call of a plain element copy into a zero-copy reshape, and this copy exists to get a buffer
    that a later in-place kernel may overwrite while the original stays live.
    """

    @T.prim_func(s_tir=True)
    def func(src: T.Buffer((size,), "float32"), out: T.Buffer((size,), "float32")):
        T.func_attr({"tirx.noalias": True})
        for i, r in T.grid(size, 1):
            with T.sblock("copy"):
                vi, vr = T.axis.remap("SR", [i, r])
                with T.init():
                    out[vi] = T.float32(0)
                out[vi] = out[vi] + src[vi + vr]

    return func
