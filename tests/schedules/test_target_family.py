"""A target family added from one folder (``toy_family/``: rules, profile, nothing else edited)
compiles and runs a LAS block, and the compiler asks that family, not the CPU family that also
serves its targets' ``cpu`` key. The README's architecture section gives this as the recipe."""

import numpy as np
import pytest
import torch

from las_compiler import schedules
from las_compiler.block_pipelines import get_pipeline
from las_compiler.compiler import compile_block, resolve_target
from las_compiler.geometry import BlockGeometry, PatchGeometry
from las_compiler.models import calibrate_block, sparse_block_forward

from ..models.helpers import make_block
from .toy_family import ToyFamily

TOY_TARGET = {"kind": "llvm", "keys": ["toy", "cpu"]}


@pytest.fixture
def toy():
    family = ToyFamily()
    schedules.register_family(family)
    yield family
    schedules.unregister_family(family.name)


def nhwc(x):
    return x.permute(0, 2, 3, 1).contiguous().numpy()


def test_a_family_from_one_folder_compiles_and_runs_a_las_block(toy):
    target = resolve_target(TOY_TARGET)
    assert schedules.family_of(target) is toy
    assert schedules.family_of(resolve_target("host")).name == "cpu"  # others keep theirs
    block = make_block(64, 16, 1, 4, seed=3)
    ramp = torch.linspace(0, 2, 14)  # spatially varied input, so patches differ
    x = (torch.randn(1, 64, 14, 14) + ramp[:, None] * ramp).relu()
    calibrate_block(block, x, 0.5)
    compiled = compile_block(block, x.permute(0, 2, 3, 1), TOY_TARGET, "auto",
                             tuning_logs=False)
    out, (mask,) = compiled.run_with_masks(nhwc(x))
    assert 0 < mask.sum() < mask.size
    np.testing.assert_array_equal(mask, block.patch_mask(x).bool().numpy())
    np.testing.assert_allclose(out, nhwc(sparse_block_forward(block, x)), rtol=1e-4, atol=1e-4)
    # `auto` priced the block on the family's profile; its rules scheduled every kernel
    assert toy.priced == [str(target)]
    chosen = compiled.metadata["blocks"][0]["pipeline"]
    geometry = BlockGeometry(PatchGeometry(1, 14, 14, 4, 1), 64, 16, 64, projected=False)
    kernels = {step.kernel for step in get_pipeline(chosen).steps_for(geometry)}
    assert kernels <= set(toy.scheduled), (chosen, kernels, toy.scheduled)
    assert compiled.metadata["device"] == "cpu"


def test_registering_is_checked_and_undone():
    with pytest.raises(TypeError, match="not a named TargetFamily"):
        schedules.register_family(object())
    with pytest.raises(ValueError, match="built-in family 'cuda' cannot be unregistered"):
        schedules.unregister_family("cuda")
    family = ToyFamily()
    schedules.register_family(family)
    schedules.unregister_family("toy")
    assert schedules.family_of(resolve_target(TOY_TARGET)).name == "cpu"  # its next key
