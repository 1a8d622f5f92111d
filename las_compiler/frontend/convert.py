"""ExportedProgram -> Relax, with each ``las::sparse_bottleneck`` node as one LAS op call.

The converter maps the custom op's arguments by name onto
:class:`las_compiler.las_ops.SparseBottleneck` and emits its call; everything else is TVM's own
PyTorch importer. Nothing target-specific happens here.

:func:`import_torch` and :func:`import_block` are the frontend step of the compiler: they
return a Relax module whose ``las.*`` calls carry every block's S, stride, pipeline and name,
plus a ``las.model`` module attribute (JSON) describing the network for the artifact's
metadata (model name, S_net, input, outputs, every block, static ones included). Another
frontend (ONNX) produces the same two things and enters the compiler at the same point
(:func:`las_compiler.compiler.build`).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence

import numpy as np
import torch
import tvm
from tvm.relax.frontend.torch import from_exported_program

from ..las_ops import ConvBN, SparseBottleneck
from ..models import LASResNet, model_name
from .export import export_block, export_las_resnet

MODEL_INFO = "las.model"


def _convert_sparse_bottleneck(node, importer):
    schema = node.target._schema
    values = {arg.name: value for arg, value in zip(schema.arguments, node.args, strict=True)}

    def tensor(name):
        return importer.env[values[name]]

    def conv(prefix):
        return ConvBN(*(tensor(f"{prefix}_{part}")
                        for part in ("weight", "gamma", "beta", "mean", "var")))

    op = SparseBottleneck(tensor("x"), tensor("identity"), tensor("masker_weight"),
                          tensor("masker_bias"), conv("conv1"), conv("conv2"), conv("conv3"),
                          granularity=int(values["granularity"]), stride=int(values["stride"]),
                          eps=float(values["eps"]),
                          projected=values["identity"] is not values["x"],  # same FX node
                          pipeline=str(values["pipeline"]),
                          name=str(values["name"]))
    return importer.block_builder.emit(op.to_call())


CUSTOM_CONVERT_MAP = {"sparse_bottleneck.default": _convert_sparse_bottleneck}


def import_exported_program(program: torch.export.ExportedProgram,
                            weights_as_inputs: bool = False) -> tvm.IRModule:
    """Relax IRModule of an exported LAS network; weights become constants, or with
    ``weights_as_inputs`` parameters of ``main`` after its input (attribute ``num_input``)."""
    if not weights_as_inputs:
        return from_exported_program(program, custom_convert_map=CUSTOM_CONVERT_MAP)
    mod = from_exported_program(program, custom_convert_map=CUSTOM_CONVERT_MAP,
                                keep_params_as_input=True)
    main = mod["main"].without_attr("params")  # the importer's copy of the weight values
    return tvm.IRModule({**{gv: f for gv, f in mod.functions_items()
                            if gv.name_hint != "main"}, mod.get_global_var("main"): main},
                        attrs=mod.attrs)


def _weight_names(program: torch.export.ExportedProgram, prefix: str = "model.") -> list[str]:
    """The ``state_dict`` keys of the weight inputs, in ``main``'s parameter order."""
    return [spec.target[len(prefix):] if spec.target.startswith(prefix) else spec.target
            for spec in program.graph_signature.input_specs if spec.kind.name == "PARAMETER"]


def _statistics_as_parameters(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose floating-point buffers (BN running statistics) are
    parameters, so ``torch.export`` lists them with the weights: inputs too, under the same
    ``state_dict`` keys."""
    import copy

    model = copy.deepcopy(model)
    for module in model.modules():
        for name, buffer in list(module._buffers.items()):
            if buffer is not None and buffer.is_floating_point():
                del module._buffers[name]
                module.register_parameter(name, torch.nn.Parameter(buffer,
                                                                   requires_grad=False))
    return model


def _as_tensor(example_input) -> torch.Tensor:
    """The example input as float32 (the models are float32; a float64 example would trace a
    float64 graph); non-numeric, non-floating or empty inputs are errors."""
    if not isinstance(example_input, torch.Tensor):
        array = np.asarray(example_input)
        if not np.issubdtype(array.dtype, np.number):
            raise TypeError(f"example input of dtype {array.dtype} is not an array of numbers")
        example_input = torch.as_tensor(array)
    if not example_input.is_floating_point():
        raise TypeError(f"example input dtype {example_input.dtype} is not floating point; the "
                        "model takes float32 images")
    if example_input.ndim == 4 and example_input.shape[0] < 1:
        raise ValueError(f"example input has batch size {example_input.shape[0]}; a compiled "
                         "module needs a batch of at least 1")
    if not torch.isfinite(example_input).all():
        raise ValueError("example input holds NaN or infinite values")
    return example_input.to(torch.float32)


def _check_parameters(module: torch.nn.Module) -> None:
    """Weights and BN statistics must be finite: a NaN would compile into every output."""
    for name, tensor in module.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise ValueError(f"parameter {name} holds {bad} NaN or infinite values (of "
                             f"{tensor.numel()}); the checkpoint is damaged")


def import_torch(model: LASResNet, example_input, static_blocks: Collection[int] = (),
                 pipelines: str | Sequence[str] = "auto",
                 weights_as_inputs: bool = False) -> tvm.IRModule:
    """The frontend step: an eval-mode LAS-ResNet at the example input's shape as a Relax
    module with ``las.*`` calls (see the module docstring).

    ``pipelines``: one block pipeline for every dynamic block or one per dynamic block (in
    network order); ``static_blocks``: indices of blocks compiled dense, without a masker;
    ``weights_as_inputs``: weights (and BN statistics) become inputs of ``main`` after the
    image, listed by ``state_dict`` key in the ``las.model`` attribute's ``weights``.
    """
    if not isinstance(model, LASResNet):
        raise TypeError(f"the torch frontend compiles a LAS-ResNet (las_compiler.models."
                        f"LASResNet, e.g. build_model('las_resnet50')); got "
                        f"{type(model).__name__}")
    _check_parameters(model)
    x = _as_tensor(example_input)
    static = set(static_blocks)
    exported = _statistics_as_parameters(model) if weights_as_inputs else model
    program = export_las_resnet(exported, x, static, pipelines)
    mod = import_exported_program(program, weights_as_inputs)
    blocks = list(model.dynamic_blocks())
    info = {
        "model": model_name(model),
        "snet": model.granularity_spec,
        "granularity": model.granularity,
        "num_classes": model.num_classes,
        "out_stages": list(model.out_stages) if model.is_backbone else None,
        "input": {"shape": list(x.shape), "dtype": "float32", "layout": "NCHW"},
        "outputs": model.output_names + [f"mask:{b.block_name}" for i, b in enumerate(blocks)
                                         if i not in static],
        "blocks": [{"name": b.block_name, "S": b.granularity, "stride": b.stride,
                    "static": i in static, "in_hw": list(size_in), "out_hw": list(size_out)}
                   for i, (b, (size_in, size_out)) in
                   enumerate(zip(blocks, model.block_sizes(*x.shape[2:]), strict=True))],
    }
    if weights_as_inputs:
        info["weights"] = _weight_names(program)
        info["weight_shapes"] = [list(program.state_dict[spec.target].shape)
                                 for spec in program.graph_signature.input_specs
                                 if spec.kind.name == "PARAMETER"]
    return mod.with_attr(MODEL_INFO, json.dumps(info))


def import_block(block, example_input, pipeline: str = "auto",
                 static: bool = False) -> tvm.IRModule:
    """One block as a module of its own, NHWC in and out (see
    :class:`las_compiler.frontend.export.ExportableBlock`); ``example_input`` is NHWC."""
    from ..models import Bottleneck

    if not isinstance(block, Bottleneck):
        raise TypeError(f"compile_block takes a LAS Bottleneck block; got {type(block).__name__}")
    _check_parameters(block)
    x = _as_tensor(example_input)
    mod = import_exported_program(export_block(block, x, pipeline, static))
    info = {
        "model": f"block:{block.block_name}",
        "snet": str(block.granularity),
        "granularity": [block.granularity],
        "num_classes": None,
        "input": {"shape": list(x.shape), "dtype": "float32", "layout": "NHWC"},
        "outputs": ["out"] + ([] if static else [f"mask:{block.block_name}"]),
        "blocks": [{"name": block.block_name, "S": block.granularity, "stride": block.stride,
                    "static": static, "in_hw": list(x.shape[1:3]),
                    "out_hw": list(block.output_size(*x.shape[1:3]))}],
    }
    return mod.with_attr(MODEL_INFO, json.dumps(info))


def model_info(mod: tvm.IRModule) -> dict:
    """The ``las.model`` attribute a frontend attached (see the module docstring)."""
    attrs = mod.attrs
    if attrs is None or MODEL_INFO not in attrs:
        raise ValueError(f"module has no {MODEL_INFO!r} attribute: import it with "
                         "las_compiler.frontend.import_torch (or another LAS frontend)")
    return json.loads(str(attrs[MODEL_INFO]))
