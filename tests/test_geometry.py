"""The patch grid against an independent re-statement of the official LASNet masker.

The official code (``dyn_resnet.Masker`` / ``resnet_sd.Masker``) is re-stated here with
PyTorch's own operators, not with our tables: the grid is ``H_in // stride // S``, a cell's
pooling window is what ``adaptive_avg_pool2d`` averages (found by pooling one-hot maps), and a
pixel's cell is what ``F.interpolate(size=...)`` copies into it (found by upsampling the cell
ids). The kernels' index expressions (``las_compiler.op.indexing``) are evaluated by TVM's
simplifier at every index and must give the same numbers.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from tvm import tirx
from tvm.sym import Analyzer

from las_compiler.geometry import CellAxis, PatchGeometry, patch_grid
from las_compiler.op import indexing

# stage maps of detection inputs: 800x1344 (mmdet pads to 32) and unpadded 800x1333
DETECTION_MAPS = [(200, 336), (100, 168), (50, 84), (25, 42), (200, 334), (100, 167),
                  (50, 84), (25, 42)]


def official_cells(in_size: int, stride: int, s: int):
    """(grid, pooling windows, cell of each output pixel) as the official code computes them
    along one axis; None where the official code does not run (its stretched mask has
    ``in_size // stride`` pixels while the conv gives ``(in_size - 1) // stride + 1``)."""
    feature = in_size // stride
    if feature != (in_size - 1) // stride + 1 or feature // s < 1:
        return None
    cells = feature // s
    one_hot = torch.eye(in_size, dtype=torch.float64)[:, None, :, None]  # pixel p lit
    pooled = F.adaptive_avg_pool2d(one_hot, (cells, 1)) if cells < in_size else one_hot
    windows = [tuple(np.nonzero(pooled[:, 0, i, 0].numpy())[0][[0, -1]] + [0, 1])
               for i in range(cells)]
    ids = torch.arange(cells, dtype=torch.float32)[None, None, :, None]
    up = F.interpolate(ids, size=(feature, 1)) if cells < feature else ids
    return cells, windows, up[0, 0, :, 0].long().numpy()


def _evaluate(expr_of, values):
    """The kernels' index expression (built from a PrimExpr index, not a Python int, so the
    closed form is used) at each value, folded by TVM's simplifier."""
    analyzer = Analyzer()
    return [int(analyzer.simplify(expr_of(tirx.const(v, "int32")))) for v in values]


def check_axis(in_size: int, stride: int, s: int) -> None:
    official = official_cells(in_size, stride, s)
    out_size = (in_size - 1) // stride + 1
    axis = CellAxis(in_size, out_size, out_size // s)
    if official is not None:
        cells, windows, cell_of = official
        assert axis.cells == cells
        assert [axis.pool_window(i) for i in range(cells)] == windows
        np.testing.assert_array_equal(axis.cell_of_pixels, cell_of)
    # the tables agree with each other ...
    starts = np.asarray(axis.starts)
    assert starts[0] == 0 and starts[-1] == out_size and np.all(np.diff(starts) >= 1)
    for i in range(axis.cells):
        assert set(axis.cell_of_pixels[starts[i]:starts[i + 1]]) == {i}
    assert axis.tile == np.diff(starts).max()
    # ... and with the kernels' closed forms, for every index
    cells = range(axis.cells)

    def expression(helper):
        return _evaluate(lambda i: helper(axis, i), cells)

    assert expression(indexing.cell_start) == list(starts[:-1])
    assert expression(indexing.cell_extent) == list(np.diff(starts))
    assert _evaluate(lambda y: indexing.cell_of(axis, y), range(out_size)) == list(
        axis.cell_of_pixels)
    assert expression(indexing.pool_start) == [axis.pool_window(i)[0] for i in cells]
    assert expression(indexing.pool_extent) == [e - b for b, e in map(axis.pool_window, cells)]


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 400), st.sampled_from([1, 2]), st.integers(1, 16))
def test_axis_matches_the_official_masker(in_size, stride, s):
    if s > (in_size - 1) // stride + 1:
        with pytest.raises(ValueError, match=f"S={s} does not fit"):
            patch_grid((in_size - 1) // stride + 1, 1, s)
        return
    check_axis(in_size, stride, s)


@pytest.mark.parametrize("in_size, stride, s", [
    (16, 1, 7), (32, 2, 7),         # LAS-ResNet-101 4-4-7-1 at 256: 2x2 grid of 8x8 cells
    (12, 1, 7), (24, 2, 7),         # ... and at 192
    (14, 1, 3), (28, 2, 3),         # 4-4-3-1 at 224
    (82, 1, 41), (74, 1, 12), (44, 1, 1),  # float nearest differs from y * g // H here
    *[(size * stride, stride, s) for h, w in DETECTION_MAPS for size in (h, w)
      for stride in (1, 2) for s in (1, 2, 4, 7, 8)],
])
def test_named_sizes(in_size, stride, s):
    check_axis(in_size, stride, s)


def test_float_rounding_moves_a_boundary():
    """82 pixels, 2 cells: PyTorch puts pixel 41 in cell 0 (41 * float32(2/82) < 1)."""
    axis = CellAxis(82, 82, 2)
    assert axis.starts == (0, 42, 82) and axis.tile == 42


@given(st.integers(1, 60), st.integers(1, 60), st.integers(1, 9), st.sampled_from([1, 2]),
       st.integers(1, 3))
def test_patch_geometry_covers_every_output_pixel_once(h, w, s, stride, batch):
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    if s > min(ho, wo):
        with pytest.raises(ValueError, match="does not fit"):
            PatchGeometry(batch, h, w, s, stride)
        return
    g = PatchGeometry(batch, h, w, s, stride)
    ix = indexing.PatchIndex(g)
    assert g.grid == (ho // s, wo // s)
    hits = np.zeros((batch, ho, wo), int)
    for cell in range(g.num_cells):
        for pixel in range(g.tile_pixels):
            if ix.output_inside(cell, pixel):
                hits[ix.output_pixel(cell, pixel)] += 1
                assert ix.cell_of_pixel(*ix.output_pixel(cell, pixel)) == cell
    assert (hits == 1).all()
    assert g.cell_extents().sum() == ho * wo


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 120), st.integers(1, 120), st.sampled_from([1, 2]), st.integers(1, 9))
def test_window_cells_are_the_cells_whose_windows_hold_a_pixel(h, w, stride, s):
    """``PatchIndex.window_cells`` (what ``dilated_rows`` asks per input pixel) inverts the
    tile windows: the cells whose window holds input coordinate y, as a run, in the integer
    tables and in the kernels' closed form."""
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    if s > min(ho, wo):
        return
    g = PatchGeometry(1, h, w, s, stride)
    ix = indexing.PatchIndex(g)
    for axis, size, span in ((g.rows, h, g.span_h), (g.cols, w, g.span_w)):
        starts = [indexing.cell_start(axis, i) for i in range(axis.cells)]
        most = ix.window_cells_most(axis)
        firsts = _evaluate(lambda y, a=axis: ix.window_cells(a, y)[0], range(size))
        lasts = _evaluate(lambda y, a=axis: ix.window_cells(a, y)[1], range(size))
        for y in range(size):
            holding = [i for i, st_ in enumerate(starts)
                       if st_ * stride - 1 <= y <= st_ * stride - 1 + span - 1]
            first, last = ix.window_cells(axis, y)
            assert list(range(first, last + 1)) == holding, (y, first, last, holding)
            assert (firsts[y], lasts[y]) == (first, last) or not holding and firsts[y] > lasts[y]
            assert last - first + 1 <= most
