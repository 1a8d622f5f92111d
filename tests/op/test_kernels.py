"""Every kernel, scheduled by our CPU rules, equals PyTorch (fp32 tolerance).

Shapes are drawn from small sets so compiled kernels are reused (build_kernel caches per shape);
channel counts are small multiples of 16 (the weight packing) to keep runs fast.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import tvm
from hypothesis import example, given, settings
from hypothesis import strategies as st

from las_compiler import op
from las_compiler.geometry import PatchGeometry
from las_compiler.kernel_builder import kernel_function
from las_compiler.models import Masker
from las_compiler.models.masker import dilate_mask, upsample_mask
from las_compiler.op.indexing import PatchIndex
from las_compiler.op.params import pack_weight
from las_compiler.scan_layout import CHUNKS, GRID_CHUNK, scan_layout

DEV = tvm.cpu()
RNG = np.random.default_rng(0)


def tensor(a):
    return tvm.runtime.tensor(np.ascontiguousarray(a), DEV)


def empty(*shape, dtype="float32"):
    return tvm.runtime.empty(shape, dtype, DEV)


def nchw(a):
    return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))


def tile_pixels(g):
    """Per (cell, tile pixel): its output pixel (b, row, col), clamped into the map, and
    whether it belongs to the cell (tiles of cells smaller than the largest stick out)."""
    shape = (g.num_cells, g.tile_pixels)
    b, r, c = (np.zeros(shape, int) for _ in range(3))
    inside = np.zeros(shape, bool)
    for q in range(g.num_cells):
        for m in range(g.tile_pixels):
            b[q, m], r[q, m], c[q, m] = PatchIndex(g).output_pixel(q, m)
            inside[q, m] = PatchIndex(g).output_inside(q, m)
    return b, np.minimum(r, g.out_height - 1), np.minimum(c, g.out_width - 1), inside


def patch_cells(t, g):
    """(N, K, Ho, Wo) torch map -> (N*cells, tile pixels, K) numpy."""
    b, r, c, _ = tile_pixels(g)
    return t.permute(0, 2, 3, 1).numpy()[b, r, c]


def in_map(g):
    """(N*cells, tile pixels) bool: which tile pixels belong to their cell."""
    return tile_pixels(g)[3]


GEOMETRIES = st.tuples(
    st.sampled_from([1, 2]), st.sampled_from([(8, 8), (13, 11), (28, 28), (16, 16)]),
    st.sampled_from([1, 2]), st.sampled_from([1, 2, 3, 4, 7]),
).filter(lambda t: t[3] <= min((t[1][0] - 1) // t[2] + 1, (t[1][1] - 1) // t[2] + 1)).map(
    lambda t: PatchGeometry(t[0], t[1][0], t[1][1], t[3], t[2]))


def active_list(g, rate, seed):
    rng = np.random.default_rng(seed)
    return np.flatnonzero(rng.random(g.num_cells) < rate).astype("int32")


@settings(max_examples=12)
@given(g=GEOMETRIES, rate=st.sampled_from([0.0, 0.3, 1.0]), seed=st.integers(0, 99))
def test_gather_conv3x3(target, g, rate, seed):
    c = k = 16
    x = RNG.standard_normal((g.batch, g.height, g.width, c)).astype("float32")
    w = (RNG.standard_normal((k, c, 3, 3)) * 0.1).astype("float32")
    b = RNG.standard_normal(k).astype("float32")
    idx = active_list(g, rate, seed)
    y = empty(len(idx), g.tile_pixels, k)
    kernel_function("gather_conv3x3", g, c, k, target=target)(
        tensor(x), tensor(idx), tensor(pack_weight(w)), tensor(b), y)
    ref = torch.relu(F.conv2d(nchw(x), torch.from_numpy(w), torch.from_numpy(b),
                              stride=g.stride, padding=1))
    expected = patch_cells(ref, g)[idx]
    valid = in_map(g)[idx]
    np.testing.assert_allclose(y.numpy()[valid], expected[valid], rtol=1e-4, atol=1e-4)


@settings(max_examples=12)
@given(g=GEOMETRIES, rate=st.sampled_from([0.0, 0.3, 1.0]), seed=st.integers(0, 99))
def test_conv1x1_scatter_add_in_place(target, g, rate, seed):
    c, k = 16, 32
    identity = RNG.standard_normal((g.batch, g.out_height, g.out_width, k)).astype("float32")
    w = (RNG.standard_normal((k, c, 1, 1)) * 0.2).astype("float32")
    b = RNG.standard_normal(k).astype("float32")
    idx = active_list(g, rate, seed)
    y = RNG.standard_normal((len(idx), g.tile_pixels, c)).astype("float32")
    out = tensor(identity)
    kernel_function("conv1x1_scatter_add", g, c, k, target=target)(
        tensor(y), tensor(idx), tensor(pack_weight(w)), tensor(b), out, out)
    # reference: each active cell's own pixels get relu(identity + conv3 + bias)
    expected = identity.copy()
    pb, pr, pc, inside = tile_pixels(g)
    z = y @ w[:, :, 0, 0].T + b
    for p, q in enumerate(idx):
        m = inside[q]
        at = (pb[q][m], pr[q][m], pc[q][m])
        expected[at] = np.maximum(identity[at] + z[p][m], 0)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4, atol=1e-4)


@settings(max_examples=12)
@given(g=GEOMETRIES, seed=st.integers(0, 99), c=st.sampled_from([16, 64]))
def test_masker_matches_the_pytorch_masker(target, g, seed, c):
    # 64 channels take the CPU rule's four-chain dot product, 16 its one-vector fallback
    torch.manual_seed(seed)
    masker = Masker(c).eval()
    torch.nn.init.normal_(masker.conv2.weight)
    masker.conv2.bias.data.normal_(0, 0.5)
    x = torch.randn(g.batch, c, g.height, g.width)
    expected = masker(x, g.granularity, g.stride).flatten().numpy().astype("int32")
    mask = empty(g.num_cells, dtype="int32")
    kernel_function("masker", g, c, target=target)(
        tensor(x.permute(0, 2, 3, 1).numpy()),
        tensor(masker.conv2.weight.detach().numpy()[:, :, 0, 0]),
        tensor(masker.conv2.bias.detach().numpy()), mask)
    np.testing.assert_array_equal(mask.numpy(), expected)


def _plain_masks(target, g, c, x, w, b):
    """Each logit pair of ``w`` / ``b`` through the block's own masker: (pairs, cells) int32."""
    masks = []
    for k in range(len(w) // 2):
        mask = empty(g.num_cells, dtype="int32")
        kernel_function("masker", g, c, target=target)(
            tensor(x), tensor(w[2 * k: 2 * k + 2]), tensor(b[2 * k: 2 * k + 2]), mask)
        masks.append(mask.numpy())
    return np.stack(masks)


@settings(max_examples=6)
@given(g=GEOMETRIES, seed=st.integers(0, 99), c=st.sampled_from([16, 64]))
@example(g=PatchGeometry(2, 8, 8, 2, 1), seed=3, c=64)
def test_chained_masker_prices_later_blocks_and_reads_only_dirty_cells(target, g, seed, c):
    """A chain's first masker gives the mask its block's own masker gives and the logits of
    the blocks after it; an update pools only the dirty cells, copies the rest from the cache,
    and its mask equals the own masker's on a map that changed only in the dirty cells."""
    rng = np.random.default_rng(seed)
    consumers = 3
    x = rng.random((g.batch, g.height, g.width, c)).astype("float32")
    w = rng.standard_normal((2 * consumers, c)).astype("float32")
    b = (rng.standard_normal(2 * consumers) * 0.1).astype("float32")
    mask, cache = empty(g.num_cells, dtype="int32"), empty(g.num_cells, 2 * consumers)
    kernel_function("masker", g, c, consumers, False, target=target)(
        tensor(x), tensor(w), tensor(b), mask, cache)
    own = _plain_masks(target, g, c, x, w, b)
    np.testing.assert_array_equal(mask.numpy(), own[0])
    pairs = cache.numpy().reshape(g.num_cells, consumers, 2)
    np.testing.assert_array_equal((pairs[..., 0] >= pairs[..., 1]).astype("int32").T, own)

    # the next block changes the pixels of its active cells; S divides the map, so a
    # cell's pooling window is exactly its pixels
    if g.stride != 1 or g.height % g.granularity or g.width % g.granularity:
        return
    dirty = own[0]
    changed = x.copy()
    cell = np.arange(g.num_cells).reshape(g.batch, *g.grid)
    per_pixel = np.kron(cell, np.ones((1, g.granularity, g.granularity), int))
    moved = dirty[per_pixel].astype(bool)
    changed[moved] = rng.random((int(moved.sum()), c)).astype("float32")
    mask2, cache2 = empty(g.num_cells, dtype="int32"), empty(g.num_cells, 2 * (consumers - 1))
    stale = cache.numpy().copy()
    stale[dirty != 0] = np.nan  # a dirty cell must not take its cached logits
    kernel_function("masker", g, c, consumers - 1, True, target=target)(
        tensor(changed), tensor(w[2:]), tensor(b[2:]), tensor(dirty), tensor(stale), mask2,
        cache2)
    own2 = _plain_masks(target, g, c, changed, w[2:], b[2:])
    np.testing.assert_array_equal(mask2.numpy(), own2[0])
    pairs2 = cache2.numpy().reshape(g.num_cells, consumers - 1, 2)
    np.testing.assert_array_equal((pairs2[..., 0] >= pairs2[..., 1]).astype("int32").T, own2)
    clean = dirty == 0
    np.testing.assert_array_equal(cache2.numpy()[clean], cache.numpy()[clean][:, 2:])


# (fine grid, coarse grid on its output): a projected block's 8x8 windows of 4x4 cells, S = 2
# windows of 2x2 cells, one cell per window, a plain block at twice the S on a 12x8 map, and
# 5x4 fine cells (15 rows at S = 4 are three cells of 5) under 15x8 windows
COARSE = [(PatchGeometry(2, 16, 16, 4, 1), PatchGeometry(2, 16, 16, 4, 2)),
          (PatchGeometry(1, 8, 8, 2, 1), PatchGeometry(1, 8, 8, 2, 2)),
          (PatchGeometry(1, 16, 16, 4, 1), PatchGeometry(1, 16, 16, 2, 2)),
          (PatchGeometry(2, 12, 8, 2, 1), PatchGeometry(2, 12, 8, 4, 1)),
          (PatchGeometry(1, 15, 16, 4, 1), PatchGeometry(1, 15, 16, 8, 1))]


@pytest.mark.parametrize("fine, g", COARSE, ids=lambda v: str(v))
def test_coarse_masker_pools_only_the_dirty_fine_cells(target, fine, g):
    """A masker whose windows are whole cells of the previous link's grid (``fine``) pools
    the pixels of the dirty fine cells and takes the clean ones' logits from their cache:
    its logits are the window means' (no cached value of a dirty cell is read)."""
    rng = np.random.default_rng(7)
    c = 32
    x = rng.random((g.batch, g.height, g.width, c)).astype("float32")
    w = rng.standard_normal((4, c)).astype("float32")
    b = (rng.standard_normal(4) * 0.1).astype("float32")
    mask, cache = empty(fine.num_cells, dtype="int32"), empty(fine.num_cells, 4)
    kernel_function("masker", fine, c, 2, False, target=target)(
        tensor(x), tensor(w), tensor(b), mask, cache)
    dirty = (rng.random(fine.num_cells) < 0.5).astype("int32")  # the previous block's flags
    dirty[:2] = 0, 1
    cell = np.arange(fine.num_cells).reshape(fine.batch, *fine.grid)
    moved = dirty[np.kron(cell, np.ones((1, fine.tile_h, fine.tile_w), int))] != 0
    changed = x.copy()
    changed[moved] = rng.random((int(moved.sum()), c)).astype("float32")
    stale = cache.numpy().copy()
    stale[dirty != 0] = np.nan
    mask2, cache2 = empty(g.num_cells, dtype="int32"), empty(g.num_cells, 2)
    kernel_function("masker", g, c, 1, True, fine, target=target)(
        tensor(changed), tensor(w[2:]), tensor(b[2:]), tensor(dirty), tensor(stale), mask2,
        cache2)
    pooled = F.adaptive_avg_pool2d(nchw(changed.astype("float64")), g.grid)
    logits = np.einsum("nchw,kc->nhwk", pooled.numpy(), w[2:].astype("float64")) + b[2:]
    logits = logits.reshape(g.num_cells, 2)
    np.testing.assert_allclose(cache2.numpy(), logits, rtol=1e-5, atol=1e-5)
    clear = np.abs(logits[:, 0] - logits[:, 1]) > 1e-4  # (a tie may round either way)
    np.testing.assert_array_equal(mask2.numpy()[clear], (logits[:, 0] >= logits[:, 1])[clear])


def check_compact(target, cells, rate):
    mask = (np.random.default_rng(1).random(cells) < rate).astype("int32")
    idx, count = empty(cells, dtype="int32"), empty(1, dtype="int64")
    kernel_function("compact", cells, target=target)(tensor(mask), idx, count)
    n = int(count.numpy()[0])
    assert n == mask.sum()
    np.testing.assert_array_equal(idx.numpy()[:n], np.flatnonzero(mask))
    np.testing.assert_array_equal(idx.numpy()[n:], np.flatnonzero(mask == 0))


@pytest.mark.parametrize("rate", [0.0, 0.5, 1.0])
def test_compact_puts_active_cells_first(target, rate):
    check_compact(target, 37, rate)


@pytest.mark.parametrize("stride, epilogue", [(1, "none"), (1, "relu"), (1, "add_relu"),
                                               (2, "none"), (2, "relu")])
def test_dense_conv1x1(target, stride, epilogue):
    n, h, w_, c, k = 2, 9, 7, 32, 48
    x = RNG.standard_normal((n, h, w_, c)).astype("float32")
    w = (RNG.standard_normal((k, c, 1, 1)) * 0.2).astype("float32")
    b = RNG.standard_normal(k).astype("float32")
    ref = F.conv2d(nchw(x), torch.from_numpy(w), torch.from_numpy(b), stride=stride)
    ref = ref.permute(0, 2, 3, 1).reshape(-1, k).numpy()
    m = ref.shape[0]
    residual = RNG.standard_normal((m, k)).astype("float32")
    if epilogue == "relu":
        ref = np.maximum(ref, 0)
    elif epilogue == "add_relu":
        ref = np.maximum(ref + residual, 0)
    y = empty(m, k)
    x_arg = x.reshape(-1, c) if stride == 1 else x
    res_arg = residual if epilogue == "add_relu" else np.zeros((1, 1), "float32")
    kernel_function("conv1x1", n, h, w_, c, k, stride, epilogue, target=target)(
        tensor(x_arg), tensor(pack_weight(w)), tensor(b), tensor(res_arg), y)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("stride, size, s", [(1, (9, 7), 2), (2, (13, 11), 3)])
def test_shortcut_conv1x1_relu_where_the_mask_is_off(target, stride, size, s):
    """A block's own projection: conv + bias on active cells' pixels (the scatter-add adds
    conv3 and applies the ReLU there), relu(conv + bias) elsewhere; any floor grid."""
    g = PatchGeometry(2, *size, s, stride)
    c, k = 32, 48
    x = RNG.standard_normal((2, *size, c)).astype("float32")
    w = (RNG.standard_normal((k, c, 1, 1)) * 0.2).astype("float32")
    b = RNG.standard_normal(k).astype("float32")
    flags = np.zeros(g.num_cells, "int32")
    flags[active_list(g, 0.5, 3)] = 1
    ref = F.conv2d(nchw(x), torch.from_numpy(w), torch.from_numpy(b), stride=stride)
    mask = torch.from_numpy(flags.reshape(2, *g.grid).astype("float32"))
    on = upsample_mask(mask, g.out_height, g.out_width).bool()  # (N, 1, Ho, Wo)
    ref = torch.where(on, ref, ref.clamp(min=0)).permute(0, 2, 3, 1).reshape(-1, k).numpy()
    y = empty(*ref.shape)
    x_arg = x.reshape(-1, c) if stride == 1 else x
    kernel_function("conv1x1", 2, *size, c, k, stride, "masked_relu", g, target=target)(
        tensor(x_arg), tensor(pack_weight(w)), tensor(b), tensor(np.zeros((1, 1), "float32")),
        tensor(flags), y)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-4, atol=1e-4)
    assert (ref < 0).any() and (ref[on.permute(0, 2, 3, 1).reshape(-1).numpy()] < 0).any()


@pytest.mark.parametrize("kernel, stride, padding, size, epilogue", [
    (3, 1, 1, (14, 14), "relu"), (3, 2, 1, (14, 14), "relu"), (3, 2, 1, (9, 12), "add_relu"),
    (7, 2, 3, (17, 22), "relu"),  # the stem's shape class (C=3 input)
    (3, 1, 0, (8, 9), "none"),
])
def test_dense_conv2d(target, kernel, stride, padding, size, epilogue):
    n, k = 2, 32
    c = 3 if kernel == 7 else 16
    x = RNG.standard_normal((n, *size, c)).astype("float32")
    w = (RNG.standard_normal((k, c, kernel, kernel)) * 0.1).astype("float32")
    b = RNG.standard_normal(k).astype("float32")
    ref = F.conv2d(nchw(x), torch.from_numpy(w), torch.from_numpy(b), stride=stride,
                   padding=padding).permute(0, 2, 3, 1).reshape(-1, k).numpy()
    residual = RNG.standard_normal(ref.shape).astype("float32")
    if epilogue == "relu":
        ref = np.maximum(ref, 0)
    elif epilogue == "add_relu":
        ref = np.maximum(ref + residual, 0)
    res_arg = residual if epilogue == "add_relu" else np.zeros((1, 1), "float32")
    y = empty(*ref.shape)
    kernel_function("conv2d", n, *size, c, k, kernel, stride, padding, epilogue,
                    target=target)(tensor(x), tensor(pack_weight(w)), tensor(b),
                                   tensor(res_arg), y)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-4, atol=1e-4)


def test_relu_in_place(target):
    a = tensor(RNG.standard_normal(1000).astype("float32"))
    expected = np.maximum(a.numpy(), 0)
    kernel_function("relu_inplace", 1000, target=target)(a, a)
    np.testing.assert_array_equal(a.numpy(), expected)


def test_geometry_rejects_s_that_does_not_fit():
    with pytest.raises(ValueError, match="S=8 does not fit a 7x7 output map; valid S: 1..7"):
        PatchGeometry(1, 14, 14, 8, 2)
    with pytest.raises(ValueError, match="stride 3"):
        PatchGeometry(1, 14, 14, 1, 3)


def check_dilated_rows(target, g, flags):
    rows = tvm.runtime.empty((op.max_row_groups(g), op.ROW_GROUP), "int32")
    groups = tvm.runtime.empty((1,), "int64")
    kernel_function("dilated_rows", g, target=target)(tensor(flags), rows, groups)
    listed = rows.numpy()[: int(groups.numpy()[0])]
    ix = PatchIndex(g)
    # the pixels the tile windows of the active cells read (what gather_conv3x3 reads) ...
    expected = sorted({(b * g.height + r) * g.width + c for q in np.flatnonzero(flags)
                       for a in range(g.span_h) for e in range(g.span_w)
                       if ix.window_inside(q, a, e) for b, r, c in [ix.window_pixel(q, a, e)]})
    assert sorted(set(listed.flatten())) == expected
    assert listed.size - len(expected) < op.ROW_GROUP  # only the last group is padded
    # ... hold every pixel the official dilated mask says the active cells need
    mask = torch.from_numpy(flags.reshape(g.batch, *g.grid).astype("float32"))
    needed = dilate_mask(upsample_mask(mask, g.out_height, g.out_width), g.stride, g.height,
                         g.width)
    assert set(np.flatnonzero(needed[:, 0].flatten().numpy())) <= set(expected)


def check_pixel_rows(target, g, flags):
    """In order, each once, the last group padded with -1: what the official upsampled mask
    switches on, on any floor grid (cells of unequal size where S does not divide)."""
    pixels = g.batch * g.out_height * g.out_width
    rows = tvm.runtime.empty((-(-pixels // op.ROW_GROUP), op.ROW_GROUP), "int32")
    groups = tvm.runtime.empty((1,), "int64")
    kernel_function("pixel_rows", g, target=target)(tensor(flags), rows, groups)
    listed = rows.numpy()[: int(groups.numpy()[0])].flatten()
    mask = torch.from_numpy(flags.reshape(g.batch, *g.grid).astype("float32"))
    on = np.flatnonzero(upsample_mask(mask, g.out_height, g.out_width).flatten().numpy())
    assert listed[listed >= 0].tolist() == on.tolist()
    assert (listed[len(on):] == -1).all() and listed.size - len(on) < op.ROW_GROUP


# six maps each (a kernel compile apiece); the long lists, the carried scans, every block
# test and the fuzzer list more
@settings(max_examples=6)
@given(g=GEOMETRIES, rate=st.sampled_from([0.0, 0.3, 1.0]), seed=st.integers(0, 99))
def test_dilated_rows_are_the_pixels_active_windows_read(target, g, rate, seed):
    flags = np.zeros(g.num_cells, "int32")
    flags[active_list(g, rate, seed)] = 1
    check_dilated_rows(target, g, flags)


@settings(max_examples=6)
@given(g=GEOMETRIES, rate=st.sampled_from([0.0, 0.3, 1.0]), seed=st.integers(0, 99))
def test_pixel_rows_are_the_output_pixels_of_the_active_cells(target, g, rate, seed):
    flags = np.zeros(g.num_cells, "int32")
    flags[active_list(g, rate, seed)] = 1
    check_pixel_rows(target, g, flags)


# more entries than CHUNKS * GRID_CHUNK: the grid-wide layout (a batch of 128 at stage 1, an
# 800x1333 detection map); 3 x 57 x 61 pixels, cells of unequal size at S = 4 and 3
LONG = [PatchGeometry(3, 57, 61, 4, 1), PatchGeometry(3, 57, 61, 3, 2)]


@pytest.mark.parametrize("g", LONG, ids=str)
@pytest.mark.parametrize("rate", [0.0, 0.4, 1.0])
def test_long_work_lists_are_counted_and_written_grid_wide(target, g, rate):
    assert scan_layout(g.batch * g.height * g.width).grid
    flags = np.zeros(g.num_cells, "int32")
    flags[active_list(g, rate, 5)] = 1
    check_dilated_rows(target, g, flags)
    if scan_layout(g.batch * g.out_height * g.out_width).grid:
        check_pixel_rows(target, g, flags)
    check_compact(target, 20011, rate)  # the grid layout, its last chunks past the end


@pytest.mark.parametrize("g", [PatchGeometry(2, 13, 11, 2, 1), LONG[0]], ids=str)
def test_scans_carry_the_lengths_before_them(target, g):
    """A block's scans in a row, each carrying the earlier lengths (``carried``): the last
    count holds every list's length, the one read the host makes; the lists are unchanged."""
    flags = np.zeros(g.num_cells, "int32")
    flags[active_list(g, 0.4, 3)] = 1
    scans = [("compact", (g.num_cells,), (g.num_cells,)),
             ("dilated_rows", (g,), (op.max_row_groups(g), op.ROW_GROUP)),
             ("pixel_rows", (g,), (-(-g.batch * g.out_height * g.out_width // op.ROW_GROUP),
                                   op.ROW_GROUP)),
             ("active_rows", (g,), (-(-g.num_cells // op.ROW_GROUP), op.ROW_GROUP))]
    if scan_layout(g.batch * g.height * g.width).grid:  # the grid layout: two suffice
        scans = scans[:2]
    counts, lengths = None, []
    for carried, (name, args, shape) in enumerate(scans):
        alone, alone_count = empty(*shape, dtype="int32"), empty(1, dtype="int64")
        kernel_function(name, *args, target=target)(tensor(flags), alone, alone_count)
        listed, out = empty(*shape, dtype="int32"), empty(carried + 1, dtype="int64")
        before = (counts,) if carried else ()
        kernel_function(name, *args, *((carried,) if carried else ()), target=target)(
            tensor(flags), *before, listed, out)
        lengths.append(int(alone_count.numpy()[0]))
        np.testing.assert_array_equal(out.numpy(), lengths)
        n = lengths[-1]
        np.testing.assert_array_equal(listed.numpy()[:n], alone.numpy()[:n])
        counts = out
    assert 0 < lengths[0] < g.num_cells


@given(length=st.integers(0, 10**6))
def test_scan_layout_covers_the_array(length):
    layout = scan_layout(length)
    assert layout.chunks % CHUNKS == 0 and layout.chunks * layout.size >= length
    assert layout.grid == (length > CHUNKS * GRID_CHUNK)
    assert layout.size == GRID_CHUNK if layout.grid else layout.chunks == CHUNKS


def test_conv1x1_rows_writes_only_listed_rows(target):
    pixels, c, k = 143, 32, 48
    x = RNG.standard_normal((pixels, c)).astype("float32")
    w = RNG.standard_normal((k, c, 1, 1)).astype("float32")
    b = RNG.standard_normal(k).astype("float32")
    chosen = np.sort(RNG.choice(pixels, 30, replace=False)).astype("int32")
    rows = np.concatenate([chosen, np.repeat(chosen[-1:], 6)]).reshape(3, op.ROW_GROUP)
    y = tensor(np.full((pixels, k), -7.0, "float32"))
    kernel_function("conv1x1_rows", pixels, c, k, target=target)(
        tensor(x), tensor(rows), tensor(pack_weight(w)), tensor(b), y)
    expected = np.maximum(x @ w[:, :, 0, 0].T + b, 0)
    np.testing.assert_allclose(y.numpy()[chosen], expected[chosen], rtol=1e-4, atol=1e-4)
    assert (np.delete(y.numpy(), chosen, axis=0) == -7.0).all()


@settings(max_examples=6)  # each new (batch, size, stride) compiles eight kernels
@given(batch=st.sampled_from([1, 2]), size=st.sampled_from([(7, 7), (13, 11)]),
       stride=st.sampled_from([1, 2]), rate=st.sampled_from([0.0, 0.3, 1.0]),
       seed=st.integers(0, 99))
def test_single_pixel_row_groups_match_patch_kernels(target, batch, size, stride, rate, seed):
    """S = 1 row-group kernels give exactly what the per-patch kernels (tested above) give."""
    g = PatchGeometry(batch, *size, 1, stride)
    c, k, k3 = 16, 16, 32
    flags = np.zeros(g.num_cells, "int32")
    idx = active_list(g, rate, seed)
    flags[idx] = 1
    rows = tvm.runtime.empty((-(-g.num_cells // op.ROW_GROUP), op.ROW_GROUP), "int32")
    groups = tvm.runtime.empty((1,), "int64")
    kernel_function("active_rows", g, target=target)(tensor(flags), rows, groups)
    cells = rows.numpy()[: int(groups.numpy()[0])].copy()
    assert sorted(cells[cells >= 0].tolist()) == idx.tolist()
    x = RNG.standard_normal((batch, *size, c)).astype("float32")
    w2 = pack_weight((RNG.standard_normal((k, c, 3, 3)) * 0.1).astype("float32"))
    w3 = pack_weight((RNG.standard_normal((k3, k, 1, 1)) * 0.1).astype("float32"))
    b2, b3 = RNG.standard_normal(k).astype("float32"), RNG.standard_normal(k3).astype("float32")
    y_patch, y_rows = empty(len(idx), 1, k), empty(len(cells), op.ROW_GROUP, k)
    kernel_function("gather_conv3x3", g, c, k, target=target)(
        tensor(x), tensor(idx), tensor(w2), tensor(b2), y_patch)
    kernel_function("gather_conv3x3_rows", g, c, k, target=target)(
        tensor(x), tensor(cells), tensor(w2), tensor(b2), y_rows)
    listed = y_rows.numpy().reshape(-1, k)[cells.flatten() >= 0]
    np.testing.assert_allclose(listed, y_patch.numpy()[:, 0], rtol=1e-5, atol=1e-5)
    identity = RNG.standard_normal((batch, g.out_height, g.out_width, k3)).astype("float32")
    out_patch, out_rows = tensor(identity), tensor(identity)
    kernel_function("conv1x1_scatter_add", g, k, k3, target=target)(
        y_patch, tensor(idx), tensor(w3), tensor(b3), out_patch, out_patch)
    kernel_function("conv1x1_scatter_add_rows", g, k, k3, target=target)(
        y_rows, tensor(cells), tensor(w3), tensor(b3), out_rows, out_rows)
    np.testing.assert_allclose(out_rows.numpy(), out_patch.numpy(), rtol=1e-5, atol=1e-5)
