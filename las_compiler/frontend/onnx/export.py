"""PyTorch LAS-ResNet -> an ONNX file with one ``ai.las::SparseBottleneck`` node per dynamic
block (see :mod:`.domain`).

The network goes through ``torch.onnx.export`` (the torch.export-based exporter) as the same
export view the compiler imports (:class:`las_compiler.frontend.ExportableLASResNet`): dense
stem, downsample shortcuts and head become standard ONNX ops, and each ``las::sparse_bottleneck``
call is translated into one ``ai.las`` node carrying S, stride, BN epsilon, channels and the
grid rule. The file then gets the reference body of the op (:func:`.domain.reference_function`)
as a model-local function, so ONNX Runtime runs it unchanged, and a ``las.model`` metadata entry
(model name, S_net, outputs) that ``las compile model.onnx`` reports with. It is checked with
``onnx.checker`` (full check: shape inference through the function) before it is written, and
written atomically: a failed export leaves no file behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Collection
from pathlib import Path

import onnx
import torch

from ...models import LASResNet, model_name
from ..export import ExportableLASResNet
from . import domain

OPSET = 18  # the standard opset of exported files (the reference body's too)
INPUT_NAME = "image"


def _bottleneck_op():
    """The ``ai.las::SparseBottleneck`` op for ONNX Script, with a schema made here (not
    registered in ONNX's global registry): the exporter's graph builder needs a schema to know
    the op's inputs, attributes and that it has two outputs."""
    from onnx.defs import OpSchema
    from onnxscript.values import Op, Opset

    schema = OpSchema(
        domain.SPARSE_BOTTLENECK, domain.DOMAIN, domain.VERSION,
        "LAS sparse bottleneck (las_compiler.frontend.onnx.domain)",
        inputs=[OpSchema.FormalParameter(name, "T") for name in domain.INPUTS],
        outputs=[OpSchema.FormalParameter("Out", "T"),
                 OpSchema.FormalParameter("Mask", "B")],
        type_constraints=[("T", ["tensor(float)"], "float32 tensors"),
                          ("B", ["tensor(bool)"], "the patch mask")],
        attributes=[OpSchema.Attribute(name, OpSchema.AttrType(kind), "", required=required)
                    for name, (kind, required) in domain.ATTRIBUTES.items()],
    )
    return Op(Opset(domain.DOMAIN, domain.VERSION), domain.SPARSE_BOTTLENECK, schema)


def _translation():
    """``las::sparse_bottleneck`` -> one ``ai.las`` node (its ``pipeline`` argument is a
    compile choice, not part of the model, and is dropped)."""
    op = _bottleneck_op()

    def sparse_bottleneck(x, identity, masker_weight, masker_bias,
                          conv1_weight, conv1_gamma, conv1_beta, conv1_mean, conv1_var,
                          conv2_weight, conv2_gamma, conv2_beta, conv2_mean, conv2_var,
                          conv3_weight, conv3_gamma, conv3_beta, conv3_mean, conv3_var,
                          granularity, stride, eps, pipeline, name):
        del pipeline
        attrs = domain.node_attributes(
            granularity=granularity, stride=stride, epsilon=eps,
            in_channels=conv1_weight.shape[1], mid_channels=conv1_weight.shape[0],
            out_channels=conv3_weight.shape[0], block_name=name)
        return op(x, identity, masker_weight, masker_bias,
                  conv1_weight, conv1_gamma, conv1_beta, conv1_mean, conv1_var,
                  conv2_weight, conv2_gamma, conv2_beta, conv2_mean, conv2_var,
                  conv3_weight, conv3_gamma, conv3_beta, conv3_mean, conv3_var, **attrs)

    return sparse_bottleneck


def model_metadata(model: LASResNet, example_input: torch.Tensor,
                   static_blocks: Collection[int] = ()) -> dict:
    """What the file says about the network beyond its graph (``las.model``)."""
    blocks = list(model.dynamic_blocks())
    return {
        "model": model_name(model),
        "snet": model.granularity_spec,
        "num_classes": model.num_classes,
        "out_stages": list(model.out_stages) if model.is_backbone else None,
        "outputs": model.output_names + [f"mask:{b.block_name}" for i, b in enumerate(blocks)
                                         if i not in set(static_blocks)],
        "static_blocks": sorted(set(static_blocks)),
        "exported_input": list(example_input.shape),
    }


def to_onnx(model: LASResNet, example_input: torch.Tensor,
            static_blocks: Collection[int] = ()) -> onnx.ModelProto:
    """The checked ONNX model of an eval-mode LAS-ResNet at the example input's shape."""
    if not isinstance(model, LASResNet):
        raise TypeError(f"export-onnx takes a LAS-ResNet (las_compiler.models.LASResNet); got "
                        f"{type(model).__name__}")
    model.check_input(example_input)
    x = example_input.to(torch.float32)
    wrapper = ExportableLASResNet(model, static_blocks).eval()
    meta = model_metadata(model, x, static_blocks)
    output_names = [name.replace(":", "_") for name in meta["outputs"]]
    with torch.no_grad():
        program = torch.onnx.export(
            wrapper, (x,), dynamo=True, opset_version=OPSET, input_names=[INPUT_NAME],
            output_names=output_names, external_data=False, verbose=False,
            custom_translation_table={torch.ops.las.sparse_bottleneck.default: _translation()})
    proto = program.model_proto
    domain.attach_reference(proto)
    proto.metadata_props.append(onnx.StringStringEntryProto(key=domain.METADATA_KEY,
                                                            value=json.dumps(meta)))
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_onnx(model: LASResNet, example_input: torch.Tensor, path: str | os.PathLike,
                static_blocks: Collection[int] = ()) -> onnx.ModelProto:
    """Write :func:`to_onnx` to ``path`` (atomically: complete or not at all)."""
    proto = to_onnx(model, example_input, static_blocks)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        onnx.save_model(proto, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return proto
