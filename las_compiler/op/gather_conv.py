"""Gather + conv3x3 + bias + ReLU over the active patches (symbolic patch count).

Two ways to get each active patch's ``span_h x span_w`` input window, both per patch (a few KiB,
L1-resident) and never as a gathered copy of the map in memory:

* :func:`gather_conv3x3` reads the window from the conv1 output map (conv1 ran densely);
* :func:`halo_conv3x3` computes it: conv1 (+BN+ReLU) on the window straight from the block
  input, recomputing the 1-pixel halo neighbouring patches share. No conv1 map exists; conv1
  costs about ``(span/S)^2 * r`` of dense instead of 1, which wins at low r.

Written in TE so the shared stages compose as Python functions; stage names (``conv1``,
``epilogue1``, ``conv``, ``epilogue``) are what the ``las.chain`` attribute tells the rules.
"""

from __future__ import annotations

from tvm import te, tirx

from ..geometry import PatchGeometry
from .indexing import PatchIndex
from .params import CHANNEL_BLOCK as NB
from .registry import kernel


def _window_inside(g: PatchGeometry, cell, a, b):
    _, row, col = PatchIndex(g).window_pixel(cell, a, b)
    return tirx.all(row >= 0, row < g.height, col >= 0, col < g.width)


def _window_read(g: PatchGeometry, fmap, cell, a, b, c):
    """fmap at window element (a, b), clamped into the map (callers mask outside values)."""
    batch, row, col = PatchIndex(g).window_pixel(cell, a, b)
    return fmap[batch, tirx.max(tirx.min(row, g.height - 1), 0),
                tirx.max(tirx.min(col, g.width - 1), 0), c]


def gathered_windows(g: PatchGeometry, fmap, idx, n):
    """Stage ``gather``: (n, span_h, span_w, C) windows of ``fmap``, zero outside the map."""
    return te.compute(
        (n, g.span_h, g.span_w, fmap.shape[3]),
        lambda p, a, b, c: tirx.if_then_else(
            _window_inside(g, idx[p], a, b), _window_read(g, fmap, idx[p], a, b, c), 0.0),
        name="gather",
    )


def conv1_windows(g: PatchGeometry, x, idx, n, w1, b1):
    """Stages ``conv1`` + ``epilogue1``: relu(conv1x1(x) + b1) on each window, as
    (n, span_h*span_w, width); zero outside the map (conv2's zero padding, not relu(b1))."""
    sw, width, cin = g.span_w, w1.shape[0] * NB, x.shape[3]
    rc = te.reduce_axis((0, cin), "rc")
    acc = te.compute(
        (n, g.window_pixels, width),
        lambda p, m, k: te.sum(
            _window_read(g, x, idx[p], m // sw, m % sw, rc) * w1[k // NB, rc, k % NB],
            axis=rc),
        name="conv1",
    )
    return te.compute(
        (n, g.window_pixels, width),
        lambda p, m, k: tirx.if_then_else(
            _window_inside(g, idx[p], m // sw, m % sw),
            tirx.max(acc[p, m, k] + b1[k], 0.0), 0.0),
        name="epilogue1",
    )


def conv3x3_on_windows(g: PatchGeometry, window, w2, b2, n):
    """Stages ``conv`` + ``epilogue``: relu(conv3x3 + b2) over windows -> (n, tile pixels, K).

    ``window(p, row, col, c)`` reads element (row, col) of patch p's window.
    """
    tw, stride, k_out, c_in = g.tile_w, g.stride, w2.shape[0] * NB, w2.shape[3]
    ry, rx = te.reduce_axis((0, 3), "ry"), te.reduce_axis((0, 3), "rx")
    rc = te.reduce_axis((0, c_in), "rc")
    acc = te.compute(
        (n, g.tile_pixels, k_out),
        lambda p, m, k: te.sum(
            window(p, m // tw * stride + ry, m % tw * stride + rx, rc)
            * w2[k // NB, ry, rx, rc, k % NB], axis=[ry, rx, rc]),
        name="conv",
    )
    return te.compute((n, g.tile_pixels, k_out),
                      lambda p, m, k: tirx.max(acc[p, m, k] + b2[k], 0.0), name="epilogue")


@kernel("gather_conv3x3")
def gather_conv3x3(geometry: PatchGeometry, in_channels: int, out_channels: int):
    """PrimFunc ``(x[N,H,W,C], idx[n], w[K/16,3,3,C,16], bias[K], y[n,tile pixels,K])``."""
    g, c, k = geometry, in_channels, out_channels
    n = te.var("n", "int32")
    x = te.placeholder((g.batch, g.height, g.width, c), "float32", name="x")
    idx = te.placeholder((n,), "int32", name="idx")
    w = te.placeholder((k // NB, 3, 3, c, NB), "float32", name="w")
    bias = te.placeholder((k,), "float32", name="bias")
    halo = gathered_windows(g, x, idx, n)
    y = conv3x3_on_windows(g, lambda p, a, b, ch: halo[p, a, b, ch], w, bias, n)
    return _finish(te.create_prim_func([x, idx, w, bias, y]),
                   {"las.reduce_block": "conv", "las.num_reduce": 3})


@kernel("halo_conv3x3")
def halo_conv3x3(geometry: PatchGeometry, in_channels: int, width: int):
    """PrimFunc ``(x[N,H,W,Cin], idx[n], w1[width/16,Cin,16], b1, w2[.,3,3,width,16], b2,
    y[n,tile pixels,width])``: conv1 on each active patch's halo window, then conv2."""
    g = geometry
    n = te.var("n", "int32")
    x = te.placeholder((g.batch, g.height, g.width, in_channels), "float32", name="x")
    idx = te.placeholder((n,), "int32", name="idx")
    w1 = te.placeholder((width // NB, in_channels, NB), "float32", name="w1")
    b1 = te.placeholder((width,), "float32", name="b1")
    w2 = te.placeholder((width // NB, 3, 3, width, NB), "float32", name="w2")
    b2 = te.placeholder((width,), "float32", name="b2")
    h1 = conv1_windows(g, x, idx, n, w1, b1)
    y = conv3x3_on_windows(g, lambda p, a, b, ch: h1[p, a * g.span_w + b, ch], w2, b2, n)
    return _finish(te.create_prim_func([x, idx, w1, b1, w2, b2, y]),
                   {"las.chain": "conv1:epilogue1:1,conv:epilogue:3"})


def _finish(func, attrs: dict):
    func = func.with_attr("tirx.noalias", True)
    for key, value in attrs.items():
        func = func.with_attr(key, value)
    return func
