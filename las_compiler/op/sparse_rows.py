"""conv1 over the dilated mask only: the input pixels the active patches' 3x3 windows read.

In the ``fused`` pipeline conv1 ran densely over the whole map, though conv2 reads it only
inside the windows of active patches; in ResNet-101 at r = 0.3 that dense conv1 was 30 % of
the run. Here the masker's cell flags become a list of the needed input pixels, and conv1 runs
on that list only, writing its rows of the (otherwise unwritten) conv1 map.

The list comes in groups of :data:`ROW_GROUP` pixels, ``rows[groups, ROW_GROUP]``, with the last
group padded by repeating its last pixel. A group is to the conv rule what a patch is: a fixed
number of pixels tiled in registers with no bounds predicate (a predicate on a symbolic pixel
count inside the micro-kernel costs 2x, measured). Repeated pixels compute and write the same
values again, which is harmless.
"""

from __future__ import annotations

from tvm.script import tirx as T

from .geometry import PatchGeometry
from .params import CHANNEL_BLOCK as NB

ROW_GROUP = 12  # a multiple of every rule's register tile: 6 (AVX2, NEON) and 12 (AVX-512)


def max_row_groups(geometry: PatchGeometry) -> int:
    return -(-geometry.batch * geometry.height * geometry.width // ROW_GROUP)


def dilated_rows(geometry: PatchGeometry):
    """PrimFunc ``(flags[cells] int32, rows[max_groups, 12] int32, groups[1] int32)``.

    Input pixel (b, r, c) (flat index ``(b*H + r)*W + c``) is listed when an active cell's conv
    window (rows ``i*step - 1 .. i*step + span - 2``, same for columns) contains it. A serial
    scan (at most a few thousand pixels, each checking the <= 3x3 cells whose windows can
    contain it).
    """
    g = geometry
    N, H, W = g.batch, g.height, g.width  # noqa: N806
    M = N * H * W  # noqa: N806
    step, span, (gh, gw), cells = g.step, g.span, g.grid, g.cells_per_image
    groups_max, G = max_row_groups(g), ROW_GROUP  # noqa: N806

    @T.prim_func(s_tir=True)
    def func(
        flags: T.Buffer((g.num_cells,), "int32"),
        rows: T.Buffer((groups_max, G), "int32"),
        groups: T.Buffer((1,), "int32"),
    ):
        T.func_attr({"tirx.noalias": True, "las.kernel": "dilated_rows"})
        with T.sblock("dilate"):
            T.reads(flags[0:g.num_cells])
            T.writes(rows[0:groups_max, 0:G], groups[0:1])
            count = T.sblock_alloc_buffer((1,), "int32", scope="local")
            hit = T.sblock_alloc_buffer((1,), "int32", scope="local")
            count[0] = 0
            for p in range(M):
                hit[0] = 0
                for di, dj in T.grid(3, 3):
                    # cells whose windows can contain row r: ceil((r+2-span)/step) .. (r+1)//step
                    if (T.max(p % (H * W) // W + 2 - span, 0) + step - 1) // step + di \
                            <= T.min((p % (H * W) // W + 1) // step, gh - 1) \
                            and (T.max(p % W + 2 - span, 0) + step - 1) // step + dj \
                            <= T.min((p % W + 1) // step, gw - 1):
                        if flags[p // (H * W) * cells
                                 + ((T.max(p % (H * W) // W + 2 - span, 0) + step - 1) // step
                                    + di) * gw
                                 + (T.max(p % W + 2 - span, 0) + step - 1) // step + dj] != 0:
                            hit[0] = 1
                if hit[0] != 0:
                    rows[count[0] // G, count[0] % G] = p
                    count[0] = count[0] + 1
            for u in range(G):  # pad the last group with its last pixel
                if count[0] % G != 0 and u >= count[0] % G:
                    rows[count[0] // G, u] = rows[count[0] // G, count[0] % G - 1]
            groups[0] = (count[0] + G - 1) // G

    return func


def row_groups_prefix(max_groups: int):
    """PrimFunc ``(rows[max_groups, 12], out[m, 12])``: the first m groups (m symbolic; a
    kernel, not a Relax slice, for the reason given in :func:`.masker.active_prefix`)."""

    @T.prim_func(s_tir=True)
    def func(rows: T.Buffer((max_groups, ROW_GROUP), "int32"), out_handle: T.handle):
        T.func_attr({"tirx.noalias": True, "las.kernel": "active_prefix"})
        m = T.int32()
        out = T.match_buffer(out_handle, (m, ROW_GROUP), "int32")
        for t, u in T.grid(m, ROW_GROUP):
            with T.sblock("copy"):
                vt, vu = T.axis.remap("SS", [t, u])
                out[vt, vu] = rows[vt, vu]

    return func


def conv1x1_rows(pixels: int, in_channels: int, out_channels: int):
    """PrimFunc ``(x[P,C], rows[m,12], w[K/16,C,16], bias[K], y[P,K])``: relu(conv1x1 + bias)
    at the listed pixels of a flat (P = N*H*W) map; other rows of ``y`` are left unwritten."""
    P, C, K = pixels, in_channels, out_channels  # noqa: N806
    G = ROW_GROUP  # noqa: N806

    @T.prim_func(s_tir=True)
    def func(
        x: T.Buffer((P, C), "float32"),
        rows_handle: T.handle,
        w: T.Buffer((K // NB, C, NB), "float32"),
        bias: T.Buffer((K,), "float32"),
        y: T.Buffer((P, K), "float32"),
    ):
        T.func_attr({"tirx.noalias": True, "las.kernel": "conv1x1_rows",
                     "las.reduce_block": "conv", "las.num_reduce": 1})
        m = T.int32()
        rows = T.match_buffer(rows_handle, (m, G), "int32")
        acc = T.sblock_alloc_buffer((m, G, K), "float32")
        for t, u, k, rc in T.grid(m, G, K, C):
            with T.sblock("conv"):
                vt, vu, vk, vrc = T.axis.remap("SSSR", [t, u, k, rc])
                with T.init():
                    acc[vt, vu, vk] = T.float32(0)
                acc[vt, vu, vk] = acc[vt, vu, vk] + x[rows[vt, vu], vrc] * w[vk // NB, vrc,
                                                                              vk % NB]
        for t, u, k in T.grid(m, G, K):
            with T.sblock("epilogue"):
                vt, vu, vk = T.axis.remap("SSS", [t, u, k])
                y[rows[vt, vu], vk] = T.max(acc[vt, vu, vk] + bias[vk], T.float32(0))

    return func
