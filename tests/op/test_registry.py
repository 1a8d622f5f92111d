"""The kernel registry: one unique name per kernel, stamped on what it generates; every name
the pipeline table uses is registered, scheduled by a rule and modelled by the predictor."""

import re
from pathlib import Path

import pytest

from las_compiler.block_pipelines import PIPELINES
from las_compiler.geometry import BlockGeometry, PatchGeometry
from las_compiler.op import KERNELS, kernel
from las_compiler.predictor.block import MODELS
from las_compiler.schedules import rule_for

# kernels the lowering emits outside a pipeline's own steps: the prefix of a scan's work list
# and the copy of a shortcut still needed later
GLUE = {"active_prefix", "row_groups_prefix", "copy"}
BLOCKS = [BlockGeometry(PatchGeometry(1, 8, 8, s, stride), 32, 16, 64, projected=stride == 2)
          for s, stride in ((1, 1), (2, 1), (2, 2))]


def _table_kernels():
    """(kernel name, generator arguments) of every step of every pipeline for BLOCKS."""
    for pipeline in PIPELINES.values():
        for block in BLOCKS:
            if pipeline.applies(block):
                for step in pipeline.steps_for(block):
                    yield step.kernel, step.args(block)


def test_a_name_registered_twice_is_an_error():
    with pytest.raises(ValueError, match="kernel name 'masker' is registered twice"):
        kernel("masker")(lambda: None)


def test_every_generated_kernel_carries_its_registered_name(target):
    from las_compiler.target import EmulatedGPU

    rules_target = target.gpu if isinstance(target, EmulatedGPU) else target
    seen = set()
    for name, args in _table_kernels():
        func = KERNELS[name](*args)
        assert str(func.attrs["las.kernel"]) == name
        assert rule_for(func, rules_target) is not None, \
            f"no {rules_target.kind.name} rule schedules {name}"
        seen.add(name)
    assert seen | GLUE == set(KERNELS), f"registered but never emitted: {set(KERNELS) - seen}"


def test_the_predictor_models_every_kernel_the_table_uses():
    assert {name for name, _ in _table_kernels()} <= set(MODELS)


def test_names_are_written_in_one_place():
    """Only the registry sets the attribute: a generator writing its own name could drift."""
    root = Path(__file__).resolve().parents[2] / "las_compiler" / "op"
    offenders = [p.name for p in root.glob("*.py") if p.name != "registry.py"
                 and '"las.kernel"' in p.read_text() and "T.func_attr" in p.read_text()]
    assert not offenders, offenders


def test_weights_are_known_by_one_naming_rule():
    """Rules find weight parameters through ``params.is_weight`` (a GPU rule stages them in
    shared memory); every kernel of every block pipeline takes as many as its step passes."""
    from las_compiler.block_pipelines import PIPELINES
    from las_compiler.geometry import BlockGeometry, PatchGeometry
    from las_compiler.op import get_kernel
    from las_compiler.op.params import is_weight

    assert [is_weight(n) for n in ("w", "w1", "w3", "x", "w_masker", "window", "b1")] \
        == [True, True, True, False, False, False, False]
    block = BlockGeometry(PatchGeometry(1, 14, 14, 2, 2), 32, 16, 64, projected=True)
    for pipeline in PIPELINES.values():
        for step in pipeline.steps_for(block) if pipeline.applies(block) else ():
            func = get_kernel(step.kernel)(*step.args(block))
            weights = [str(p.name) for p in func.params if is_weight(str(p.name))]
            named_w = [n for n in step.inputs
                       if any(re.fullmatch(r"w\d*", part) for part in n.split("_"))]
            assert len(weights) == len(named_w), (step.kernel, weights, step.inputs)
