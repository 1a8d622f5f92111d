"""Every kernel, scheduled by our CPU rules, equals PyTorch (fp32 tolerance).

Shapes are drawn from small sets so compiled kernels are reused (build_kernel caches per shape);
channel counts are small multiples of 16 (the weight packing) to keep runs fast.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import tvm
from hypothesis import given, settings
from hypothesis import strategies as st

from las_compiler import op
from las_compiler.build import kernel_function
from las_compiler.geometry import PatchGeometry
from las_compiler.models import Masker
from las_compiler.models.masker import dilate_mask, upsample_mask
from las_compiler.op.params import pack_weight

DEV = tvm.cpu()
RNG = np.random.default_rng(0)


def tensor(a):
    return tvm.runtime.tensor(np.ascontiguousarray(a), DEV)


def empty(*shape, dtype="float32"):
    return tvm.runtime.empty(shape, dtype, DEV)


def nchw(a):
    return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))


def patch_cells(t, g):
    """(N, K, Ho, Wo) torch map -> (N*cells, S*S, K) numpy, zero-padded to whole patches."""
    s, (gh, gw) = g.granularity, g.grid
    t = F.pad(t, (0, gw * s - t.shape[3], 0, gh * s - t.shape[2]))
    n, k = t.shape[:2]
    return t.reshape(n, k, gh, s, gw, s).permute(0, 2, 4, 3, 5, 1).reshape(-1, s * s, k).numpy()


def in_map(g):
    """(N*cells, S*S) bool: which patch pixels lie inside the output map."""
    s, (gh, gw) = g.granularity, g.grid
    inside = np.zeros((gh * s, gw * s), bool)
    inside[: g.out_height, : g.out_width] = True
    cells = inside.reshape(gh, s, gw, s).transpose(0, 2, 1, 3).reshape(gh * gw, s * s)
    return np.tile(cells, (g.batch, 1))


GEOMETRIES = st.builds(
    lambda batch, size, stride, s: PatchGeometry(batch, size[0], size[1], s, stride),
    batch=st.sampled_from([1, 2]),
    size=st.sampled_from([(8, 8), (13, 11), (28, 28)]),
    stride=st.sampled_from([1, 2]),
    s=st.sampled_from([1, 2, 3, 4]),
).filter(lambda g: g.granularity <= min(g.out_height, g.out_width))


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
    y = empty(len(idx), g.granularity**2, k)
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
    c, k, s = 16, 32, g.granularity
    identity = RNG.standard_normal((g.batch, g.out_height, g.out_width, k)).astype("float32")
    w = (RNG.standard_normal((k, c, 1, 1)) * 0.2).astype("float32")
    b = RNG.standard_normal(k).astype("float32")
    idx = active_list(g, rate, seed)
    y = RNG.standard_normal((len(idx), s * s, c)).astype("float32")
    out = tensor(identity)
    kernel_function("conv1x1_scatter_add", g, c, k, target=target)(
        tensor(y), tensor(idx), tensor(pack_weight(w)), tensor(b), out, out)
    # reference: dense map of conv3 results at active patches, added to the identity
    gh, gw = g.grid
    z = np.zeros((g.num_cells, s * s, k), "float32")
    z[idx] = y @ w[:, :, 0, 0].T + b
    z = z.reshape(g.batch, gh, gw, s, s, k).transpose(0, 1, 3, 2, 4, 5)
    z = z.reshape(g.batch, gh * s, gw * s, k)[:, : g.out_height, : g.out_width]
    touched = np.zeros(g.num_cells, bool)
    touched[idx] = True
    touched = np.repeat(np.repeat(touched.reshape(g.batch, gh, gw), s, 1), s, 2)
    touched = touched[:, : g.out_height, : g.out_width, None]
    expected = np.where(touched, np.maximum(identity + z, 0), identity)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4, atol=1e-4)


@settings(max_examples=12)
@given(g=GEOMETRIES, seed=st.integers(0, 99))
def test_masker_matches_the_pytorch_masker(target, g, seed):
    c = 16
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


@pytest.mark.parametrize("rate", [0.0, 0.5, 1.0])
def test_compact_puts_active_cells_first(target, rate):
    cells = 37
    mask = (np.random.default_rng(1).random(cells) < rate).astype("int32")
    idx, count = empty(cells, dtype="int32"), empty(1, dtype="int32")
    kernel_function("compact", cells, target=target)(tensor(mask), idx, count)
    n = int(count.numpy()[0])
    assert n == mask.sum()
    np.testing.assert_array_equal(idx.numpy()[:n], np.flatnonzero(mask))
    np.testing.assert_array_equal(idx.numpy()[n:], np.flatnonzero(mask == 0))


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


@settings(max_examples=12)
@given(g=GEOMETRIES, rate=st.sampled_from([0.0, 0.3, 1.0]), seed=st.integers(0, 99))
def test_dilated_rows_are_the_pixels_active_windows_read(target, g, rate, seed):
    flags = np.zeros(g.num_cells, "int32")
    flags[active_list(g, rate, seed)] = 1
    rows = tvm.runtime.empty((op.max_row_groups(g), op.ROW_GROUP), "int32")
    groups = tvm.runtime.empty((1,), "int32")
    kernel_function("dilated_rows", g, target=target)(tensor(flags), rows, groups)
    listed = rows.numpy()[: int(groups.numpy()[0])]
    mask = torch.from_numpy(flags.reshape(g.batch, *g.grid).astype("float32"))
    needed = dilate_mask(upsample_mask(mask, g.granularity, g.out_height, g.out_width),
                         g.stride, g.height, g.width)
    expected = np.flatnonzero(needed[:, 0].flatten().numpy())
    assert sorted(set(listed.flatten())) == expected.tolist()
    assert listed.size - expected.size < op.ROW_GROUP  # only the last group is padded


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


@settings(max_examples=10)
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
    groups = tvm.runtime.empty((1,), "int32")
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
