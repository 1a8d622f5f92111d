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

from dataclasses import replace

from tvm import tirx
from tvm.script import tirx as T

from ..geometry import PatchGeometry
from ..register_tile import ROW_GROUP
from .indexing import PatchIndex
from .params import CHANNEL_BLOCK as NB
from .registry import kernel
from .scan import Listing, listed_in_groups, scan_layout, work_list

# the kernels that work on groups of ROW_GROUP listed pixels or cells
ROW_KERNELS = ("conv1x1_rows", "gather_conv3x3_rows", "conv1x1_scatter_add_rows")


def max_row_groups(geometry: PatchGeometry) -> int:
    return -(-geometry.batch * geometry.height * geometry.width // ROW_GROUP)


def _row_list(src_len: int, groups_max: int, layout, write, listing: Listing, carried: int):
    """The PrimFunc of a row-group work list: ``(src[src_len] int32, rows[groups_max, 12]
    int32, groups[1] int64)``, or with ``carried`` earlier lengths
    ``(src, carried_in[carried] int64, rows, groups[carried + 1])`` (:func:`.scan.work_list`)."""
    G = ROW_GROUP  # noqa: N806
    phases = work_list(layout, write, listing, carried)
    if not carried:
        @T.prim_func(s_tir=True)
        def func(
            flags: T.Buffer((src_len,), "int32"),
            rows: T.Buffer((groups_max, G), "int32"),
            groups: T.Buffer((1,), "int64"),
        ):
            T.func_attr({"tirx.noalias": True})
            phases(flags, rows, groups, groups)

        return func

    @T.prim_func(s_tir=True)
    def func_carrying(
        flags: T.Buffer((src_len,), "int32"),
        carried_in: T.Buffer((carried,), "int64"),
        rows: T.Buffer((groups_max, G), "int32"),
        groups: T.Buffer((carried + 1,), "int64"),
    ):
        T.func_attr({"tirx.noalias": True})
        phases(flags, rows, groups, carried_in)

    return func_carrying


def _listed_pixels(cells: int, pixels: int, groups_max: int, pad_with_last: bool,
                   listing: Listing, carried: int):
    """PrimFunc ``(flags[cells] int32, rows[groups_max, 12] int32, groups[1] int64)`` of a
    pixel work list: pixel ``p`` of ``pixels`` is listed as ``listing`` says from the cell
    flags; they are listed in order in groups of :data:`ROW_GROUP` (a chunked compaction,
    :mod:`.scan`), the last group padded with its last pixel (``pad_with_last``) or -1.
    ``carried``: see :func:`_row_list`."""
    layout = scan_layout(pixels)
    listing = replace(listing, source=cells)
    write = listed_in_groups(layout, ROW_GROUP, groups_max, pad_with_last, listing, carried)
    return _row_list(cells, groups_max, layout, write, listing, carried)


@kernel("dilated_rows")
def dilated_rows(geometry: PatchGeometry, carried: int = 0):
    """PrimFunc ``(flags[cells] int32, rows[max_groups, 12] int32, groups[1] int64)``
    (``carried``: see :func:`_row_list`).

    Input pixel (b, r, c) (flat index ``(b*H + r)*W + c``) is listed when an active cell's conv
    window (the ``span_h x span_w`` window of its tile, :class:`PatchGeometry`) contains it:
    what the gathering conv2 reads. Each pixel asks the few cells whose windows hold it
    (:meth:`PatchIndex.window_cells`: a run of at most ``window_cells_most`` per axis), so
    the scan reads the flags directly, with no map to clear and mark first (on a GPU, two
    launches). The runs' ends go to local scratch first: as expressions inside the test,
    TVM's region analysis worked through them at every access (3-6x the compile time).
    """
    g = geometry
    ix = PatchIndex(g)
    N, H, W = g.batch, g.height, g.width  # noqa: N806
    M, total = N * H * W, g.num_cells  # noqa: N806
    per_image, gw = g.cells_per_image, g.cols.cells
    most_r, most_c = ix.window_cells_most(g.rows), ix.window_cells_most(g.cols)
    groups_max = max_row_groups(g)

    @T.macro
    def runs(flags, p, scratch):  # scratch: first row, last row, first col, last col, image
        scratch[0] = ix.window_cells(g.rows, p % (H * W) // W)[0]
        scratch[1] = ix.window_cells(g.rows, p % (H * W) // W)[1]
        scratch[2] = ix.window_cells(g.cols, p % W)[0]
        scratch[3] = ix.window_cells(g.cols, p % W)[1]
        scratch[4] = p // (H * W)

    def listed(flags, p, scratch):
        hit = tirx.const(False)
        for a in range(most_r):
            for d in range(most_c):
                cell = scratch[4] * per_image + tirx.min(scratch[0] + a, g.rows.cells - 1) * gw \
                    + tirx.min(scratch[2] + d, gw - 1)
                hit = hit | tirx.if_then_else(
                    (scratch[0] + a <= scratch[1]) & (scratch[2] + d <= scratch[3]),
                    flags[cell] != 0, False)
        return hit

    return _listed_pixels(total, M, groups_max, True, Listing(listed, runs), carried)


@kernel("row_groups_prefix")
def row_groups_prefix(max_groups: int):
    """PrimFunc ``(rows[max_groups, 12], out[m, 12])``: the first m groups (m symbolic; a
    kernel, not a Relax slice, for the reason given in :func:`.masker.active_prefix`)."""

    @T.prim_func(s_tir=True)
    def func(rows: T.Buffer((max_groups, ROW_GROUP), "int32"), out_handle: T.handle):
        T.func_attr({"tirx.noalias": True})
        m = T.int32()
        out = T.match_buffer(out_handle, (m, ROW_GROUP), "int32")
        for t, u in T.grid(m, ROW_GROUP):
            with T.sblock("copy"):
                vt, vu = T.axis.remap("SS", [t, u])
                out[vt, vu] = rows[vt, vu]

    return func


@kernel("conv1x1_rows")
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
        T.func_attr({"tirx.noalias": True,
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


# -- S = 1: active cells are single output pixels; process them in groups of ROW_GROUP ------


@kernel("active_rows")
def active_rows(geometry: PatchGeometry, carried: int = 0):
    """PrimFunc ``(flags[cells] int32, rows[max_groups, 12] int32, groups[1] int64)``: active
    cell ids in groups of 12, the last group padded with -1 (kernels skip negative ids).
    ``carried``: see :func:`_row_list`."""
    g, G = geometry, ROW_GROUP  # noqa: N806
    groups_max = -(-g.num_cells // G)
    layout = scan_layout(g.num_cells)
    write = listed_in_groups(layout, G, groups_max, False, Listing(), carried)
    return _row_list(g.num_cells, groups_max, layout, write, Listing(), carried)


@kernel("pixel_rows")
def pixel_rows(geometry: PatchGeometry, carried: int = 0):
    """PrimFunc ``(flags[cells] int32, rows[max_groups, 12] int32, groups[1] int64)``: the
    output pixels of the active cells, in groups of 12, the last group padded with -1.

    A pixel's id is its flat index ``(b*Ho + r)*Wo + c`` in the output map, i.e. its cell id
    in the same map at S = 1, so the S = 1 row kernels (``gather_conv3x3_rows``,
    ``conv1x1_scatter_add_rows``) run an S >= 2 block's conv2 and conv3 on the list: 12 pixels
    of one or several patches fill a register tile or a GPU thread block, where one 2x2 patch
    fills a third of either. Cells of the floor grid differ in size (``cell_of`` maps each
    pixel to its cell), so the list is exact for any map.
    """
    g, G = geometry, ROW_GROUP  # noqa: N806
    ix = PatchIndex(g)
    N, Ho, Wo = g.batch, g.out_height, g.out_width  # noqa: N806
    M, total = N * Ho * Wo, g.num_cells  # noqa: N806
    groups_max = -(-M // G)

    def listed(flags, p, scratch):
        return flags[ix.cell_of_pixel(p // (Ho * Wo), p % (Ho * Wo) // Wo, p % Wo)] != 0

    return _listed_pixels(total, M, groups_max, False, Listing(listed), carried)


@kernel("gather_conv3x3_rows")
def gather_conv3x3_rows(geometry: PatchGeometry, in_channels: int, out_channels: int):
    """PrimFunc ``(x[N,H,W,C], rows[m,12], w[K/16,3,3,C,16], bias[K], y[m,12,K])``: the S = 1
    gather+conv3x3 over groups of 12 active cells (row-group form of ``gather_conv3x3``)."""
    from tvm import te, tirx

    from .gather_conv import _finish, _window_inside, _window_read

    g, c, k, G = geometry, in_channels, out_channels, ROW_GROUP  # noqa: N806
    if g.granularity != 1:
        raise ValueError(f"row groups are for S = 1 blocks, got S={g.granularity}")
    m = te.var("m", "int32")
    x = te.placeholder((g.batch, g.height, g.width, c), "float32", name="x")
    rows = te.placeholder((m, G), "int32", name="rows")
    w = te.placeholder((k // NB, 3, 3, c, NB), "float32", name="w")
    bias = te.placeholder((k,), "float32", name="bias")

    def cell(t, u):
        return tirx.max(rows[t, u], 0)  # padding (-1) computes cell 0's window, never stored

    window = te.compute(
        (m, G, 3, 3, c),
        lambda t, u, a, b, ch: tirx.if_then_else(
            _window_inside(g, cell(t, u), a, b), _window_read(g, x, cell(t, u), a, b, ch), 0.0),
        name="gather")
    ry, rx = te.reduce_axis((0, 3), "ry"), te.reduce_axis((0, 3), "rx")
    rc = te.reduce_axis((0, c), "rc")
    acc = te.compute((m, G, k), lambda t, u, kk: te.sum(
        window[t, u, ry, rx, rc] * w[kk // NB, ry, rx, rc, kk % NB], axis=[ry, rx, rc]),
        name="conv")
    y = te.compute((m, G, k), lambda t, u, kk: tirx.max(acc[t, u, kk] + bias[kk], 0.0),
                   name="epilogue")
    return _finish(te.create_prim_func([x, rows, w, bias, y]),
                   {"las.reduce_block": "conv", "las.num_reduce": 3})


@kernel("conv1x1_scatter_add_rows")
def conv1x1_scatter_add_rows(geometry: PatchGeometry, in_channels: int, out_channels: int):
    """PrimFunc ``(y[m,12,C], rows[m,12], w[K/16,C,16], bias[K], identity, out)``: the S = 1
    conv3 + scatter-add + ReLU over groups of active cells; ids < 0 (padding) are skipped."""
    g, G = geometry, ROW_GROUP  # noqa: N806
    ix = PatchIndex(g)
    N, Ho, Wo, C, K = g.batch, g.out_height, g.out_width, in_channels, out_channels  # noqa: N806
    if g.granularity != 1:
        raise ValueError(f"row groups are for S = 1 blocks, got S={g.granularity}")

    @T.prim_func(s_tir=True)
    def func(
        y_handle: T.handle,
        rows_handle: T.handle,
        w: T.Buffer((K // NB, C, NB), "float32"),
        bias: T.Buffer((K,), "float32"),
        identity: T.Buffer((N, Ho, Wo, K), "float32"),
        out: T.Buffer((N, Ho, Wo, K), "float32"),
    ):
        T.func_attr({"tirx.noalias": True,
                     "las.reduce_block": "conv", "las.num_reduce": 1})
        m = T.int32()
        y = T.match_buffer(y_handle, (m, G, C), "float32")
        rows = T.match_buffer(rows_handle, (m, G), "int32")
        acc = T.sblock_alloc_buffer((m, G, K), "float32")
        for t, u, k, rc in T.grid(m, G, K, C):
            with T.sblock("conv"):
                vt, vu, vk, vrc = T.axis.remap("SSSR", [t, u, k, rc])
                with T.init():
                    acc[vt, vu, vk] = T.float32(0)
                acc[vt, vu, vk] = acc[vt, vu, vk] + y[vt, vu, vrc] * w[vk // NB, vrc, vk % NB]
        for t, u, k in T.grid(m, G, K):
            with T.sblock("epilogue"):
                vt, vu, vk = T.axis.remap("SSS", [t, u, k])
                if rows[vt, vu] >= 0:
                    out[ix.output_pixel(rows[vt, vu], 0) + (vk,)] = T.max(
                        identity[ix.output_pixel(rows[vt, vu], 0) + (vk,)] + acc[vt, vu, vk]
                        + bias[vk], T.float32(0))

    return func
