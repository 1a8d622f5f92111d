"""Design spaces from the rules' own knob spaces, knob round trips through traces, and every
knob value computing the same numbers."""

import numpy as np
import pytest
import tvm
from tvm import s_tir

from las_compiler import op
from las_compiler.geometry import PatchGeometry
from las_compiler.op.params import pack_weight
from las_compiler.schedules.knobs import knobs_from_trace
from las_compiler.target import host_target
from las_compiler.tuning.mutator import MutateKnob
from las_compiler.tuning.space import design_space, knob_space, schedule_with_knobs


@pytest.fixture(scope="module")
def target():
    return host_target()


def test_knob_spaces(target):
    dense = op.conv1x1(1, 8, 8, 64, 32, 1, "relu")
    space = knob_space(dense, target)
    assert space["channel_outer"].values == (False, True) and space.size > 2
    rows = op.conv1x1_rows(64, 32, 16)
    assert all(12 % p == 0 for p in knob_space(rows, target)["pixels"].values)
    assert knob_space(rows, target)["channel_outer"].values == (False,)  # outer group loop
    patches = op.gather_conv3x3(PatchGeometry(1, 16, 16, 4, 1), 16, 16)
    assert knob_space(patches, target)["channel_outer"].values == (False,)
    assert knob_space(op.masker(PatchGeometry(1, 16, 16, 4, 1), 16), target) is None
    assert knob_space(op.compact(16), target) is None


def test_every_knob_value_gives_the_same_numbers(target):
    m, c, k = 40, 32, 32
    func = op.conv1x1(1, m, 1, c, k, 1, "relu")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((m, c)).astype("float32")
    w = rng.standard_normal((k, c, 1, 1)).astype("float32")
    b = rng.standard_normal(k).astype("float32")
    expected = np.maximum(x @ w[:, :, 0, 0].T + b, 0)
    space = knob_space(func, target)
    for pixels in space["pixels"].values:
        for outer in space["channel_outer"].values:
            scheduled = schedule_with_knobs(func, target, {"pixels": pixels,
                                                           "channel_outer": outer})
            lib = tvm.compile(tvm.IRModule({"main": scheduled}), target=target)
            out = tvm.runtime.empty((m, k), "float32")
            lib["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(pack_weight(w)),
                        tvm.runtime.tensor(b), tvm.runtime.tensor(np.zeros((1, 1), "float32")),
                        out)
            np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4, atol=1e-4,
                                       err_msg=f"pixels={pixels} outer={outer}")


def test_design_space_traces_name_their_knobs(target):
    func = op.conv1x1(1, 24, 1, 32, 32, 1, "relu")
    spaces = design_space(target)(s_tir.Schedule(tvm.IRModule({"main": func})))
    assert len(spaces) == 2
    knobs = [knobs_from_trace(sch.trace) for sch in spaces]
    assert [k["channel_outer"] for k in knobs] == [0, 1]
    assert all(k["pixels"] in knob_space(func, target)["pixels"].values for k in knobs)
    mutated = MutateKnob(seed=1).apply(spaces[0].trace)
    assert mutated is not None
    new = knobs_from_trace(mutated)
    assert new["channel_outer"] == 0 and new["pixels"] != knobs[0]["pixels"]
    with pytest.raises(ValueError, match="not a las-compiler design-space trace"):
        knobs_from_trace(s_tir.Schedule(tvm.IRModule({"main": func})).trace)
    with pytest.raises(ValueError, match="has no tunable knobs"):
        design_space(target)(s_tir.Schedule(tvm.IRModule({"main": op.compact(8)})))


def test_kernel_model_ranks_aliasing_and_spilling_tiles_behind(cpu_profile):
    """A stride-2 conv over 512 channels reads rows 4 KB apart: the model (what the seeded
    cost model ranks with) puts 6-pixel tiles ahead of 12 and 24, as measured here (1.5x and
    4-5x slower); on 64 channels 12 pixels lead and 24 spill."""
    from las_compiler.tuning.kernel_model import predicted_us

    hw = cpu_profile("zen4_avx512")
    aliasing = op.conv1x1(1, 28, 28, 512, 64, 2, "relu")
    t = {p: predicted_us(hw, aliasing, {"pixels": p}) for p in (6, 12, 24)}
    assert t[6] < t[12] < t[24]
    plain = op.conv1x1(1, 48, 1, 64, 64, 1, "relu")
    t = {p: predicted_us(hw, plain, {"pixels": p}) for p in (4, 12, 24)}
    assert t[12] < t[4] and t[12] < t[24]
