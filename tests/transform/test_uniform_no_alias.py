"""UniformNoAlias: a module whose last function is a VM shape function still compiles every
kernel with noalias pointers (TVM's LLVM codegen takes the flag from the last function)."""

import re

import torch

from las_compiler.compiler import compile_block
from las_compiler.models import pin_mask

from ..models.helpers import make_block


def _compute_functions(compiled) -> dict[str, str]:
    """name -> LLVM parameter list of every kernel's compute function in the library."""
    library = compiled._module.mod
    text = "\n".join(m.inspect_source("ll") for m in [library, *library.imports]
                     if m.kind == "llvm")
    return dict(re.findall(r"define internal fastcc i32 @(\w+)_compute_\((.*?)\)", text))


def test_every_kernel_keeps_noalias_in_a_module_ending_in_shape_functions():
    block = make_block(64, 16, 1, 4)
    x = pin_mask(block, torch.zeros(1, 64, 16, 16), torch.zeros(1, 4, 4))
    compiled = compile_block(block, x.permute(0, 2, 3, 1), "host", "fused", tuning_logs=False)
    functions = _compute_functions(compiled)
    kernels = {name: params for name, params in functions.items()
               if name.startswith(("gather_conv3x3", "conv1x1_rows", "conv1x1_scatter_add"))}
    assert len(kernels) == 3, sorted(functions)
    for name, params in kernels.items():
        pointers = [p for p in params.split(",") if p.strip().startswith("ptr")]
        assert pointers and all("noalias" in p for p in pointers), (name, params)
