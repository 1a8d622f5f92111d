"""Masker (patch pooling + 1x1 conv + compare) and compaction into an active-patch list.

The masker writes one int32 per patch cell (1 = active) over the batch-flattened grid; the
compaction turns that into ``idx`` — active cell ids first, in row-major order, then the
inactive ones — and ``count`` (the symbolic n every sparse kernel takes). Keeping the inactive
ids after the active ones gives kernels that must visit inactive patches (e.g. the whole-block
kernel copying the shortcut) their list for free.
"""

from __future__ import annotations

from tvm.script import tirx as T

from ..geometry import PatchGeometry
from .indexing import PatchIndex
from .params import CHANNEL_BLOCK as NB
from .registry import kernel
from .scan import scan_layout, work_list


@kernel("masker")
def masker(geometry: PatchGeometry, in_channels: int, consumers: int = 0,
           update: bool = False, fine: PatchGeometry | None = None):
    """PrimFunc ``(x[N,H,W,C], w[2,C], bias[2], mask[cells] int32)``.

    Cell (i, j) averages its ``adaptive_avg_pool2d`` window of the input (see
    :mod:`las_compiler.geometry`; windows of maps S does not divide differ in size and may
    overlap), then ``mask = logit0 >= logit1``.

    ``consumers`` > 0: a link of a masker chain (:mod:`las_compiler.masker_chain`), which
    prices the logits of this block and the next ``consumers - 1`` blocks of its chain in one
    read of x: ``(x, w[2K,C], bias[2K], [dirty[cells] int32, cache_in[cells,2K+2]],
    mask[cells], cache[cells,2K])`` with K = ``consumers``. ``cache`` holds each cell's final
    logits (window mean . w + bias), this block's pair first; ``mask`` compares its first
    pair. With ``update``, only the cells ``dirty`` flags (the previous block's active cells,
    the only ones whose pixels changed since the previous masker read them) are pooled; the
    others copy their logits from ``cache_in``, the previous link's cache, whose first pair
    was that block's own.

    ``fine``: the previous link's grid, finer than this block's, whole cells of it making
    each pooling window (``masker_chain.nests``); ``dirty`` and ``cache_in`` are on that grid.
    Only the pixels of dirty fine cells are pooled; a window's logits add, for each clean
    fine cell, its cached logit less the bias times its pixels (the window sum's dot
    product), over the window's pixels, plus the bias.
    """
    from ..masker_chain import nests

    if update and not consumers:
        raise ValueError("masker: update needs consumers >= 1 (a chain link)")
    if fine is not None and not (update and nests(fine, geometry)):
        raise ValueError(f"masker: a fine grid ({fine}) needs update and pooling windows of "
                         f"whole cells of it (this block: {geometry})")
    g = geometry
    ix = PatchIndex(g)
    N, H, W, C = g.batch, g.height, g.width, in_channels  # noqa: N806
    ph, pw, total = g.rows.pool_tile, g.cols.pool_tile, g.num_cells
    chained = consumers > 0
    K2 = 2 * max(consumers, 1)  # noqa: N806 - logits priced per cell
    coarse = fine is not None
    f = fine if coarse else g
    fine_ix = PatchIndex(f)
    # fine cells: fh x fw pixels (one size per axis; not square where S does not divide
    # both sides and the floor grid's cells still come out equal)
    fh, fw, f_total = f.rows.tile, f.cols.tile, f.num_cells
    mh, mw = (ph // fh, pw // fw) if coarse else (1, 1)  # fine cells per window, each axis
    fine_pixels = fh * fw

    def fine_cell(q, a, b):
        """The fine cell holding pixel (a, b) of cell q's window."""
        return fine_ix.cell_of_pixel(*ix.pool_pixel(q, a, b))

    def window_cell(q, u, v):
        """Fine cell (u, v) of cell q's window."""
        return fine_cell(q, u * fh, v * fw)

    @T.macro
    def pool_logits_compare(x, w, bias, dirty, cache_in, mask, cache):
        pooled = T.sblock_alloc_buffer((total, C), "float32")
        logits = T.sblock_alloc_buffer((total, K2), "float32")
        for q, c, a, b in T.grid(total, C, ph, pw):
            with T.sblock("pool"):
                vq, vc, va, vb = T.axis.remap("SSRR", [q, c, a, b])
                with T.init():
                    pooled[vq, vc] = T.float32(0)
                # the largest window's extent for every cell, the rest masked off (and in an
                # update the clean cells: their loads sit behind the flag)
                if coarse:
                    pooled[vq, vc] = pooled[vq, vc] + T.if_then_else(
                        dirty[fine_cell(vq, va, vb)] != 0,
                        x[ix.pool_pixel(vq, va, vb) + (vc,)], T.float32(0))
                elif update:
                    pooled[vq, vc] = pooled[vq, vc] + T.if_then_else(
                        (dirty[vq] != 0) & ix.pool_inside(vq, va, vb),
                        x[ix.pool_pixel(vq, va, vb)[0],
                          T.min(ix.pool_pixel(vq, va, vb)[1], H - 1),
                          T.min(ix.pool_pixel(vq, va, vb)[2], W - 1), vc],
                        T.float32(0))
                else:
                    pooled[vq, vc] = pooled[vq, vc] + T.if_then_else(
                        ix.pool_inside(vq, va, vb),
                        x[ix.pool_pixel(vq, va, vb)[0],
                          T.min(ix.pool_pixel(vq, va, vb)[1], H - 1),
                          T.min(ix.pool_pixel(vq, va, vb)[2], W - 1), vc],
                        T.float32(0))
        for q, j, c in T.grid(total, K2, C):
            with T.sblock("logits"):
                vq, vj, vc = T.axis.remap("SSR", [q, j, c])
                with T.init():
                    logits[vq, vj] = T.float32(0)
                logits[vq, vj] = logits[vq, vj] + pooled[vq, vc] * w[vj, vc]
        for q in range(total):
            with T.sblock("compare"):
                vq = T.axis.remap("S", [q])
                # logits are window sums: divide by the window's pixel count once per cell,
                # then add the bias
                if not chained:
                    mask[vq] = T.Select(
                        logits[vq, 0] / T.Cast("float32", ix.pool_pixels(vq)) + bias[0]
                        >= logits[vq, 1] / T.Cast("float32", ix.pool_pixels(vq)) + bias[1], 1,
                        0)
                elif coarse:
                    T.reads(logits[vq, 0:K2], bias[0:K2], dirty[0:f_total],
                            cache_in[0:f_total, 0:K2 + 2])
                    T.writes(cache[vq, 0:K2], mask[vq])
                    clean = T.sblock_alloc_buffer((1,), "float32", scope="local")
                    for j in range(K2):
                        clean[0] = T.float32(0)
                        for u, v in T.grid(mh, mw):
                            if dirty[window_cell(vq, u, v)] == 0:
                                clean[0] = clean[0] + (
                                    cache_in[window_cell(vq, u, v), j + 2] - bias[j])
                        cache[vq, j] = (logits[vq, j] + clean[0] * T.float32(fine_pixels)) \
                            / T.Cast("float32", ix.pool_pixels(vq)) + bias[j]
                    mask[vq] = T.Select(cache[vq, 0] >= cache[vq, 1], 1, 0)
                elif update:
                    T.reads(logits[vq, 0:K2], bias[0:K2], dirty[vq], cache_in[vq, 0:K2 + 2])
                    T.writes(cache[vq, 0:K2], mask[vq])
                    for j in range(K2):
                        cache[vq, j] = T.if_then_else(
                            dirty[vq] != 0,
                            logits[vq, j] / T.Cast("float32", ix.pool_pixels(vq)) + bias[j],
                            cache_in[vq, j + 2])
                    mask[vq] = T.Select(cache[vq, 0] >= cache[vq, 1], 1, 0)
                else:
                    T.reads(logits[vq, 0:K2], bias[0:K2])
                    T.writes(cache[vq, 0:K2], mask[vq])
                    for j in range(K2):
                        cache[vq, j] = logits[vq, j] / T.Cast("float32", ix.pool_pixels(vq)) \
                            + bias[j]
                    mask[vq] = T.Select(cache[vq, 0] >= cache[vq, 1], 1, 0)

    if update:
        @T.prim_func(s_tir=True)
        def linked(
            x: T.Buffer((N, H, W, C), "float32"),
            w: T.Buffer((K2, C), "float32"),
            bias: T.Buffer((K2,), "float32"),
            dirty: T.Buffer((f_total,), "int32"),
            cache_in: T.Buffer((f_total, K2 + 2), "float32"),
            mask: T.Buffer((total,), "int32"),
            cache: T.Buffer((total, K2), "float32"),
        ):
            T.func_attr({"tirx.noalias": True})
            pool_logits_compare(x, w, bias, dirty, cache_in, mask, cache)

        return linked

    if chained:
        @T.prim_func(s_tir=True)
        def first(
            x: T.Buffer((N, H, W, C), "float32"),
            w: T.Buffer((K2, C), "float32"),
            bias: T.Buffer((K2,), "float32"),
            mask: T.Buffer((total,), "int32"),
            cache: T.Buffer((total, K2), "float32"),
        ):
            T.func_attr({"tirx.noalias": True})
            pool_logits_compare(x, w, bias, None, None, mask, cache)

        return first

    @T.prim_func(s_tir=True)
    def func(
        x: T.Buffer((N, H, W, C), "float32"),
        w: T.Buffer((2, C), "float32"),
        bias: T.Buffer((2,), "float32"),
        mask: T.Buffer((total,), "int32"),
    ):
        T.func_attr({"tirx.noalias": True})
        pool_logits_compare(x, w, bias, None, None, mask, None)

    return func


@kernel("compact")
def compact(num_cells: int, carried: int = 0):
    """PrimFunc ``(mask[cells] int32, idx[cells] int32, count[1] int64)``: a stable partition,
    active cell ids first (in order), then the inactive ones; ``count`` = active cells, in
    int64, the dtype of the Relax shape it becomes (no cast kernel between them). With
    ``carried`` lengths of earlier lists: ``(mask, carried_in[carried], idx,
    count[carried + 1])``, this one's in the last slot (:func:`.scan.work_list`).

    Chunked (:mod:`.scan`): per chunk, the actives go to their offset among all actives, the
    inactives after all actives at their offset among the inactives.
    """
    L = num_cells  # noqa: N806
    layout = scan_layout(L)
    C, size = layout.chunks, layout.size  # noqa: N806

    @T.macro
    def write(mask, starts, total, idx, count):
        for c in range(C):
            with T.sblock("write"):
                vc = T.axis.spatial(C, c)
                T.reads(mask[0:L], starts[vc], total[0])
                T.writes(idx[0:L], count[carried:carried + 1])
                active = T.sblock_alloc_buffer((1,), "int32", scope="local")
                inactive = T.sblock_alloc_buffer((1,), "int32", scope="local")
                active[0] = starts[vc]
                inactive[0] = total[0] + T.min(vc * size, L) - active[0]
                for i in range(size):
                    if vc * size + i < L:
                        if mask[vc * size + i] != 0:
                            idx[active[0]] = vc * size + i
                            active[0] = active[0] + 1
                        else:
                            idx[inactive[0]] = vc * size + i
                            inactive[0] = inactive[0] + 1
                if vc == C - 1:
                    count[carried] = T.Cast("int64", total[0])

    phases = work_list(layout, write, carried=carried)
    if not carried:
        @T.prim_func(s_tir=True)
        def func(
            mask: T.Buffer((L,), "int32"),
            idx: T.Buffer((L,), "int32"),
            count: T.Buffer((1,), "int64"),
        ):
            T.func_attr({"tirx.noalias": True})
            phases(mask, idx, count, count)

        return func

    @T.prim_func(s_tir=True)
    def func_carrying(
        mask: T.Buffer((L,), "int32"),
        carried_in: T.Buffer((carried,), "int64"),
        idx: T.Buffer((L,), "int32"),
        count: T.Buffer((carried + 1,), "int64"),
    ):
        T.func_attr({"tirx.noalias": True})
        phases(mask, idx, count, carried_in)

    return func_carrying


@kernel("active_prefix")
def active_prefix(num_cells: int):
    """PrimFunc ``(idx[cells] int32, active[n] int32)``: the first n entries of a compaction.

    The sparse kernels take ``idx`` of shape (n,); in a Relax graph n is the symbolic shape made
    from ``count``. This copy is a kernel of ours rather than a Relax ``strided_slice`` because
    Relax's FuseOps may move a fused slice above the ``match_cast`` that defines n.
    """

    @T.prim_func(s_tir=True)
    def func(idx: T.Buffer((num_cells,), "int32"), active_handle: T.handle):
        T.func_attr({"tirx.noalias": True})
        n = T.int32()
        active = T.match_buffer(active_handle, (n,), "int32")
        for i in range(n):
            with T.sblock("copy"):
                vi = T.axis.remap("S", [i])
                active[vi] = idx[vi]

    return func


@kernel("masker_conv1x1")
def masker_conv1x1(batch: int, height: int, width: int, in_channels: int, out_channels: int):
    """S = 1, stride 1: the masker's 1x1 conv fused into the block's dense conv1 (one read of x).

    PrimFunc ``(x[M,C], w[K/16+1,C,16], bias[K+16], h1[M,K], logits[M,16])``, M = N*H*W: the
    weights are conv1's (BN folded) with one more 16-channel tile holding the masker's two
    output channels (lanes 0 and 1, the rest zero), so the masker rides the conv's register
    tiles: conv1 + BN + ReLU goes to ``h1``, the masker's two logits (with its bias) to
    ``logits`` (compare them with :func:`masker_flags`). At S = 1 the masker's pooling is the
    identity, so both convs read the same pixels. The extra tile costs 16/K of conv1's
    multiply-adds (25 % at K = 64, 3 % at K = 512); the separate masker pays one more pass
    over x instead: a per-layer choice (``masker_conv1`` block pipeline).
    """
    M, C, K = batch * height * width, in_channels, out_channels  # noqa: N806
    KT = K + NB  # noqa: N806

    @T.prim_func(s_tir=True)
    def func(
        x: T.Buffer((M, C), "float32"),
        w: T.Buffer((KT // NB, C, NB), "float32"),
        bias: T.Buffer((KT,), "float32"),
        h1: T.Buffer((M, K), "float32"),
        logits: T.Buffer((M, NB), "float32"),
    ):
        T.func_attr({"tirx.noalias": True,
                     "las.reduce_block": "conv", "las.num_reduce": 1})
        acc = T.sblock_alloc_buffer((M, KT), "float32")
        for m, k, rc in T.grid(M, KT, C):
            with T.sblock("conv"):
                vm, vk, vrc = T.axis.remap("SSR", [m, k, rc])
                with T.init():
                    acc[vm, vk] = T.float32(0)
                acc[vm, vk] = acc[vm, vk] + x[vm, vrc] * w[vk // NB, vrc, vk % NB]
        for m, k in T.grid(M, KT):
            with T.sblock("epilogue"):
                vm, vk = T.axis.remap("SS", [m, k])
                # the condition is per 16-lane tile (K is a multiple of 16), so the vectorised
                # channel loop keeps it outside
                if vk // NB < K // NB:
                    h1[vm, vk] = T.max(acc[vm, vk] + bias[vk], T.float32(0))
                else:
                    logits[vm, vk - K] = acc[vm, vk] + bias[vk]

    return func


@kernel("masker_flags")
def masker_flags(pixels: int):
    """PrimFunc ``(logits[M,16], mask[M] int32)``: ``mask = logit0 >= logit1`` (see
    :func:`masker_conv1x1`)."""

    @T.prim_func(s_tir=True)
    def func(logits: T.Buffer((pixels, NB), "float32"), mask: T.Buffer((pixels,), "int32")):
        T.func_attr({"tirx.noalias": True})
        for m in range(pixels):
            with T.sblock("compare"):
                vm = T.axis.remap("S", [m])
                mask[vm] = T.Select(logits[vm, 0] >= logits[vm, 1], 1, 0)

    return func
