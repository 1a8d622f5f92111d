"""Every block pipeline, compiled as the compiler emits it (``compile_block``), equals the
PyTorch reference sparse executor; the lowering emits exactly the table's kernels."""

from dataclasses import replace

import numpy as np
import pytest
import torch
import tvm
from hypothesis import given, settings
from hypothesis import strategies as st

from las_compiler.block_pipelines import PIPELINES, Scan, Step, get_pipeline, scan_runs
from las_compiler.compiler import compile_block, resolve_target
from las_compiler.frontend import import_block
from las_compiler.geometry import BlockGeometry, PatchGeometry, patch_grid
from las_compiler.hardware_calibration import kernel_times
from las_compiler.models import calibrate_block, pin_mask, sparse_block_forward
from las_compiler.phases import lowering_passes
from las_compiler.target import EmulatedGPU, host_target

from .models.helpers import make_block
from .tiers import covering, tiered

# (in_channels, planes, stride, size, S, batch): few geometries, so compiled modules are reused
# while hypothesis varies masks and inputs; together they cover stride 1/2, downsample with
# stride 1, S = 1, S that does not divide the map (cells of 5, 5, 4 and of 4, 3 pixels), a
# single patch covering the map, batch > 1.
GEOMETRIES = [(64, 16, 1, 14, 4, 2), (32, 16, 2, 13, 3, 1), (64, 32, 1, 9, 1, 1),
              (64, 16, 2, 16, 2, 2), (32, 16, 2, 14, 7, 2)]


def geometry_of(in_c, planes, stride, size, s, batch) -> BlockGeometry:
    return BlockGeometry(PatchGeometry(batch, size, size, s, stride), in_c, planes, planes * 4,
                         projected=stride != 1 or in_c != planes * 4)


CASES = [(geometry, name) for geometry in GEOMETRIES for name, pipeline in PIPELINES.items()
         if pipeline.applies(geometry_of(*geometry))]
# every case on the CPU rules on this CPU, and on the CUDA rules' schedules run serially on
# this CPU (``target.EmulatedGPU``): a GPU schedule's numbers, checked without a GPU. By default
# the emulated GPU runs a covering subset (every geometry and every pipeline at least once);
# LAS_FULL_MATRIX=1 runs every case there too.
TARGETS = {"host": "host", "cuda-emulated": EmulatedGPU(resolve_target("nvidia/nvidia-h100"))}
_EMULATED_DEFAULT = covering(CASES, [lambda c: c[0], lambda c: c[1]])
TARGET_CASES = tiered([(geometry, name, target) for target in TARGETS
                       for geometry, name in CASES],
                      {i for i in range(len(CASES))}
                      | {len(CASES) + i for i in _EMULATED_DEFAULT})
_COMPILED: dict = {}


def compiled_case(geometry, name, target="host"):
    """(block, compiled module) for a geometry, pipeline and target, compiled once per
    session; the block's masker reads the channel ``pin_mask`` sets."""
    key = (geometry, name, target)
    if key not in _COMPILED:
        in_c, planes, stride, size, s, batch = geometry
        block = make_block(in_c, planes, stride, s, seed=3)
        x = torch.zeros(batch, in_c, size, size)
        h_out = (size - 1) // stride + 1
        template = pin_mask(block, x, torch.zeros(batch, *patch_grid(h_out, h_out, s)))
        _COMPILED[key] = block, compile_block(block, template.permute(0, 2, 3, 1),
                                              TARGETS[target], name, tuning_logs=False)
    return _COMPILED[key]


def nhwc(x):
    return x.permute(0, 2, 3, 1).contiguous().numpy()


@pytest.mark.parametrize("geometry, name, target", TARGET_CASES)
@settings(max_examples=6)
@given(rate=st.sampled_from([0.0, 0.4, 1.0]), seed=st.integers(0, 50))
def test_every_pipeline_equals_the_reference_for_any_mask(geometry, name, target, rate, seed):
    in_c, planes, stride, size, s, batch = geometry
    block, compiled = compiled_case(geometry, name, target)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, in_c, size, size, generator=gen).relu()  # post-ReLU, as in networks
    h_out = (size - 1) // stride + 1
    mask = torch.rand(batch, *patch_grid(h_out, h_out, s), generator=gen) < rate
    x = pin_mask(block, x, mask.float())
    out, (got_mask,) = compiled.run_with_masks(nhwc(x))
    np.testing.assert_array_equal(got_mask, mask.numpy())
    expected = nhwc(sparse_block_forward(block, x))
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def _own_masker_geometry(stride, s, size) -> BlockGeometry:
    in_c = 64 if stride == 1 else 32
    return BlockGeometry(PatchGeometry(2, size, size, s, stride), in_c, 16, 64,
                         projected=stride != 1 or in_c != 64)


# every pipeline on every map it applies to; by default a covering subset (each pipeline and
# each map at least once), the rest with LAS_FULL_MATRIX=1
OWN_MASKER_CASES = [(name, *shape) for shape in [(1, 4, 28), (2, 2, 27), (1, 7, 14), (1, 1, 14)]
                    for name in PIPELINES
                    if PIPELINES[name].applies(_own_masker_geometry(*shape))]


@pytest.mark.parametrize("name, stride, s, size", tiered(
    OWN_MASKER_CASES, covering(OWN_MASKER_CASES, [lambda c: c[0], lambda c: c[1:]])))
def test_pipeline_with_its_own_masker(name, stride, s, size):
    in_c = 64 if stride == 1 else 32
    block = make_block(in_c, 16, stride, s, seed=3)
    ramp = torch.linspace(0, 2, size)  # spatially varied input, so patches differ
    x = (torch.randn(2, in_c, size, size) + ramp[:, None] * ramp).relu()
    calibrate_block(block, x, 0.5)  # a masker with mixed decisions on this input
    compiled = compile_block(block, x.permute(0, 2, 3, 1), "host", name, tuning_logs=False)
    out, (mask,) = compiled.run_with_masks(nhwc(x))
    assert 0 < mask.sum() < mask.size
    np.testing.assert_array_equal(mask, block.patch_mask(x).bool().numpy())
    np.testing.assert_allclose(out, nhwc(sparse_block_forward(block, x)), rtol=1e-4, atol=1e-4)
    assert nhwc(x) is not None  # the module updates its own copy, never the caller's tensor
    assert compiled.run(nhwc(x)).shape == out.shape


def _host_syncs(mod) -> int:
    """The device-to-host reads (``tensor_to_shape``) in ``main``."""
    return sum(isinstance(binding.value, tvm.relax.Call)
               and getattr(binding.value.op, "name", "") == "relax.tensor_to_shape"
               for block in mod["main"].body.blocks for binding in block.bindings)


def _called_kernels(mod) -> list[str]:
    """Kernel names of the call_tir calls of ``main``, in order (``gather_conv3x3_0`` ->
    ``gather_conv3x3``)."""
    names = []
    for block in mod["main"].body.blocks:
        for binding in block.bindings:
            value = binding.value
            if isinstance(value, tvm.relax.Call) and value.args and \
                    isinstance(value.args[0], tvm.ir.GlobalVar):
                func = mod[value.args[0]]
                if func.attrs is not None and "las.kernel" in func.attrs:
                    names.append(str(func.attrs["las.kernel"]))
    return names


@pytest.mark.parametrize("geometry, name", [c for c in CASES if c[0] in GEOMETRIES[:3]])
def test_lowering_emits_exactly_the_tables_steps(geometry, name):
    """One definition: the kernels a compiled block calls are the table's steps (a run of
    scans is followed by the prefix copies of its work lists), nothing assembled elsewhere."""
    in_c, planes, stride, size, s, batch = geometry
    block = make_block(in_c, planes, stride, s)
    mod = import_block(block, torch.zeros(batch, size, size, in_c), name)
    target = host_target()
    with tvm.transform.PassContext(opt_level=3):
        lowered = lowering_passes(target, donate_params=True)(mod)  # as compile_block
    pipeline, shape = get_pipeline(name), geometry_of(*geometry)
    # a projection (the model's 1x1 downsample) is the block's own step where the pipeline
    # computes it, else a dense conv before the block
    computed = shape.projected and pipeline.computes_shortcut
    expected = ["conv1x1"] if shape.projected and not computed else []
    runs = scan_runs(pipeline.steps_for(replace(shape, shortcut_conv=computed)))
    for run in runs:
        expected += [step.kernel for step in run]
        expected += ["active_prefix" if step.kernel == "compact" else "row_groups_prefix"
                     for step in run if isinstance(step, Scan)]
    assert _called_kernels(lowered) == expected
    # a block's work-list lengths reach the host together (the predictor prices one sync)
    syncs = sum(isinstance(run[0], Scan) for run in runs)
    assert _host_syncs(lowered) == syncs == (name != "dense")


def test_profile_names_every_kernel_of_the_pipeline():
    block, compiled = compiled_case(GEOMETRIES[0], "fused")
    x = pin_mask(block, torch.rand(2, 64, 14, 14), torch.ones(2, 3, 3))
    times = kernel_times(compiled.profile(nhwc(x), runs=3))
    steps = get_pipeline("fused").steps_for(geometry_of(*GEOMETRIES[0]))
    assert {s.kernel for s in steps} <= set(times)
    assert all(v >= 0 for v in times.values())


def test_trace_records_the_active_patch_count_of_each_call():
    """``trace`` gives every VM call with its arguments' shapes: a sparse kernel's work list
    is as long as the patches active on this input (what ``benchmarks.kernels`` rates)."""
    block, compiled = compiled_case(GEOMETRIES[0], "fused")
    for mask, active in ((torch.ones(2, 3, 3), 18), (torch.eye(3).expand(2, 3, 3), 6)):
        x = pin_mask(block, torch.rand(2, 64, 14, 14), mask)
        calls = compiled.trace(nhwc(x))
        gathers = [shapes for name, ms, shapes in calls if name.startswith("gather_conv3x3")]
        assert len(gathers) == 1 and (active,) in gathers[0]
        assert all(ms >= 0 for _, ms, _ in calls)


def test_bad_choices_are_clear_errors():
    block = make_block(64, 16, 1, 2)
    x = torch.zeros(1, 16, 16, 64)
    with pytest.raises(ValueError, match="unknown block pipeline 'sparse'"):
        compile_block(block, x, "host", "sparse")
    with pytest.raises(ValueError, match="masker_conv1' needs S = 1 and stride 1"):
        compile_block(block, x, "host", "masker_conv1")
    with pytest.raises(ValueError, match="S=8 does not fit"):
        compile_block(make_block(64, 16, 1, 8), torch.zeros(1, 7, 7, 64), "host")
    with pytest.raises(ValueError, match="eval-mode"):
        compile_block(block.train(), x, "host")


def test_in_place_steps_name_the_value_they_update():
    """``updates`` names the overwritten value; its parameter is the last of that name (the
    kernel reads it first, then writes it), and a name the step does not take is an error."""
    scatter = next(s for s in get_pipeline("fused").steps if s.name == "conv3")
    assert (scatter.kernel, scatter.updates, scatter.inplace) == \
        ("conv1x1_scatter_add", "shortcut", 5)
    copy = [s for s in get_pipeline("whole").steps if s.kernel == "copy_inactive"]
    assert [(s.updates, s.inplace, s.result) for s in copy] == [("out", 3, "out")] * 2
    with pytest.raises(ValueError, match="updates 'y', which is not one of its inputs"):
        Step("relu", "relu_inplace", lambda b: (1,), ("x", "x"), updates="y")
