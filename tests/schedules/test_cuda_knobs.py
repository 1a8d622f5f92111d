"""The CUDA conv rule's tuning space is sound: every knob combination a GPU tuner may draw
(thread_pixels x thread_channels x chunk x buffers) gives a schedule inside the GPU's limits
(``VerifyGPUCode``) that computes the same numbers as PyTorch (run serially on this CPU,
``transform.serialize_gpu``). A tuner on a remote GPU then never spends device time on a
candidate that cannot launch or that computes something else.

By default each kernel runs a covering subset (every value of every knob, the largest tile
among them); ``LAS_FULL_MATRIX=1`` runs all 36 combinations of each."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import tvm

from las_compiler import op
from las_compiler.compiler import resolve_target
from las_compiler.geometry import PatchGeometry
from las_compiler.op.params import pack_weight
from las_compiler.schedules.cuda.limits import fits
from las_compiler.target import host_target
from las_compiler.transform.serialize_gpu import serialize
from las_compiler.tuning.space import knob_space, schedule_with_knobs

from ..tiers import FULL_MATRIX

H100 = resolve_target("nvidia/nvidia-h100")
RNG = np.random.default_rng(0)
G = PatchGeometry(1, 13, 11, 4, 1)  # cells of 4 and 3 pixels: tiles stick out of the map


def _combinations(func):
    """Every combination of every knob of the rule's space (structural or not)."""
    space = knob_space(func, H100)
    names = [k.name for k in space.knobs]
    return [dict(zip(names, combo, strict=True))
            for combo in itertools.product(*(k.values for k in space.knobs))]


def _covering(combos):
    """Every value of every knob at least once, the largest tile among them (every
    combination with ``LAS_FULL_MATRIX=1``)."""
    if FULL_MATRIX:
        return combos
    names = list(combos[0])
    values = [sorted({c[n] for c in combos}) for n in names]
    # the i-th value of every knob (its last where it has fewer): the last pick is the
    # largest tile
    return [dict(zip(names, (v[min(i, len(v) - 1)] for v in values), strict=True))
            for i in range(max(len(v) for v in values))]


def _run(func, knobs, *args):
    scheduled = schedule_with_knobs(func, H100, knobs)
    assert fits(scheduled, H100), knobs
    lib = tvm.compile(tvm.IRModule({"main": serialize(scheduled)}), target=host_target())
    lib["main"](*args)


def _tensor(a):
    return tvm.runtime.tensor(np.ascontiguousarray(a))


def test_every_knob_of_the_gathered_conv3x3():
    c = k = 32
    func = op.gather_conv3x3(G, c, k)
    combos = _combinations(func)
    assert len(combos) == 36
    x = RNG.standard_normal((G.batch, G.height, G.width, c)).astype("float32")
    w = (RNG.standard_normal((k, c, 3, 3)) * 0.1).astype("float32")
    b = RNG.standard_normal(k).astype("float32")
    idx = np.array([0, 2, 5, G.num_cells - 1], "int32")
    ref = torch.relu(F.conv2d(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()),
                              torch.from_numpy(w), torch.from_numpy(b), padding=1))
    ref = ref.permute(0, 2, 3, 1).numpy()
    from las_compiler.op.indexing import PatchIndex

    index = PatchIndex(G)
    for knobs in _covering(combos):
        y = tvm.runtime.empty((len(idx), G.tile_pixels, k), "float32")
        _run(func, knobs, _tensor(x), _tensor(idx), _tensor(pack_weight(w)), _tensor(b), y)
        for p, q in enumerate(idx):
            for m in range(G.tile_pixels):
                if index.output_inside(int(q), m):
                    bb, r, cc = index.output_pixel(int(q), m)
                    np.testing.assert_allclose(y.numpy()[p, m], ref[bb, r, cc], rtol=1e-4,
                                               atol=1e-4, err_msg=str(knobs))


@pytest.mark.parametrize("kernel, stride", [("conv2d", 2), ("conv1x1", 1)])
def test_every_knob_of_the_dense_convs(kernel, stride):
    n, h, w_, c, k = 1, 14, 10, 32, 48
    if kernel == "conv2d":
        func = op.conv2d(n, h, w_, c, k, 3, stride, 1, "relu")
        weight = (RNG.standard_normal((k, c, 3, 3)) * 0.1).astype("float32")
        pad = 1
    else:
        func = op.conv1x1(n, h, w_, c, k, stride, "relu")
        weight = (RNG.standard_normal((k, c, 1, 1)) * 0.2).astype("float32")
        pad = 0
    x = RNG.standard_normal((n, h, w_, c)).astype("float32")
    b = RNG.standard_normal(k).astype("float32")
    ref = torch.relu(F.conv2d(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()),
                              torch.from_numpy(weight), torch.from_numpy(b), stride=stride,
                              padding=pad)).permute(0, 2, 3, 1).numpy()
    m = ref.shape[0] * ref.shape[1] * ref.shape[2]
    x_arg = x.reshape(n * h * w_, c) if kernel == "conv1x1" else x
    for knobs in _covering(_combinations(func)):
        y = tvm.runtime.empty((m, k), "float32")
        _run(func, knobs, _tensor(x_arg), _tensor(pack_weight(weight)), _tensor(b),
             _tensor(np.zeros((1, 1), "float32")), y)
        np.testing.assert_allclose(y.numpy(), ref.reshape(m, k), rtol=1e-4, atol=1e-4,
                                   err_msg=str(knobs))
