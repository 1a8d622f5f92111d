"""ONNX -> Relax: TVM's ONNX frontend for the standard ops, ``ai.las`` nodes as ``las.*`` calls.

The second frontend of the compiler (the first is :mod:`las_compiler.frontend.convert`): it
returns the same two things, a Relax module whose dynamic blocks are
``las.sparse_bottleneck`` calls and the ``las.model`` attribute, so
:func:`las_compiler.compiler.build` compiles it exactly as it compiles the PyTorch import.

How the custom domain gets in: TVM 0.27's ``relax.frontend.onnx.from_onnx`` has no parameter
for custom-domain converters, and its op table is the module-private ``_get_convert_map()``.
Patching that table would change every import in the process (other threads' too) for the
duration. Instead :class:`_LASGraphImporter` subclasses the public ``ONNXGraphImporter`` and
overrides the two methods that consult the table (``_check_for_unsupported_ops``,
``_convert_operator``) for our op types only, delegating everything else; :func:`import_onnx`
does what ``from_onnx`` does around the importer. Before any of it, the file is validated here
(checker, opsets, domains, each ``ai.las`` node's attributes against its weights and map),
so bad input fails with the node's name, not deep inside a converter.

A file without ``ai.las`` nodes (a plain ONNX ResNet) imports as a dense network; the compiler
then builds it with its dense CPU/GPU rules, and the module's metadata says so.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import onnx

from ...geometry import patch_grid
from . import domain

MIN_OPSET, MAX_OPSET = 7, 23  # default-domain opsets TVM 0.27's ONNX frontend converts
STANDARD_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class LASNode:
    """One validated ``ai.las`` node: its attributes and the maps around it."""

    node: onnx.NodeProto
    attrs: domain.BottleneckAttributes
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    projected: bool

    @property
    def label(self) -> str:
        """The block's name in reports and pipeline choices: ``block_name``, else the node's."""
        return self.attrs.block_name or self.node.name


def load_model(source: str | os.PathLike | onnx.ModelProto) -> onnx.ModelProto:
    if isinstance(source, onnx.ModelProto):
        return source
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"no ONNX file at {path}")
    try:
        return onnx.load_model(str(path))
    except Exception as err:  # protobuf's DecodeError and friends
        raise ValueError(f"{path} is not an ONNX model: {err}") from err


def _check_opsets(model: onnx.ModelProto) -> None:
    versions = {o.domain: o.version for o in model.opset_import}
    standard = max((versions[d] for d in STANDARD_DOMAINS if d in versions), default=None)
    if standard is None:
        raise ValueError("the model imports no standard ONNX opset")
    if not MIN_OPSET <= standard <= MAX_OPSET:
        raise ValueError(f"opset {standard} is not supported: TVM's ONNX frontend converts "
                         f"opsets {MIN_OPSET}-{MAX_OPSET}; re-export the model with one of them")
    used = {n.domain for n in model.graph.node} - set(STANDARD_DOMAINS)
    unknown = sorted(used - {domain.DOMAIN})
    if unknown:
        nodes = [domain.describe(n) for n in model.graph.node if n.domain in unknown][:3]
        raise ValueError(f"operators of domain(s) {', '.join(unknown)} are not supported "
                         f"(e.g. {', '.join(nodes)}); only the standard domain and "
                         f"{domain.DOMAIN} are")
    if domain.DOMAIN in used and versions.get(domain.DOMAIN) != domain.VERSION:
        raise ValueError(f"{domain.DOMAIN} version {versions.get(domain.DOMAIN)} is not "
                         f"supported; this compiler knows version {domain.VERSION}")
    for node in model.graph.node:
        if node.domain == domain.DOMAIN and node.op_type not in domain.OPS:
            raise ValueError(f"unknown {domain.DOMAIN} operator in {domain.describe(node)} "
                             f"(version {domain.VERSION} has {', '.join(domain.OPS)})")
        if node.domain in STANDARD_DOMAINS and node.op_type in domain.OPS:
            raise ValueError(f"{domain.describe(node)} is in the standard domain; "
                             f"{node.op_type} is an operator of {domain.DOMAIN}")


def input_shape(model: onnx.ModelProto, batch: int | None = None,
                input_size: tuple[int, int] | None = None) -> tuple[str, tuple[int, ...]]:
    """(name, static NCHW shape) of the model's one image input; ``batch`` and ``input_size``
    fill the dimensions the file leaves dynamic (they are required there) and must agree with
    those it fixes."""
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ValueError(f"expected one image input, the model has {len(inputs)}: "
                         f"{[i.name for i in inputs]}")
    value = inputs[0]
    tensor = value.type.tensor_type
    if tensor.elem_type != onnx.TensorProto.FLOAT:
        raise ValueError(f"input {value.name!r} is "
                         f"{onnx.TensorProto.DataType.Name(tensor.elem_type)}; the compiler "
                         "takes float32 images")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    if len(dims) != 4:
        raise ValueError(f"input {value.name!r} has rank {len(dims)}; expected an NCHW image")
    # a size the file fixes is baked into its graph (reshapes, shapes): it cannot be changed
    if batch is not None:
        if dims[0] is not None and dims[0] != batch:
            raise ValueError(f"input {value.name!r} fixes batch {dims[0]}, --batch asks for "
                             f"{batch}: export the model at that batch")
        dims[0] = batch
    if input_size is not None:
        if None not in dims[2:] and tuple(dims[2:]) != tuple(input_size):
            raise ValueError(f"input {value.name!r} fixes the image size {dims[2]}x{dims[3]}, "
                             f"--input-size asks for {input_size[0]}x{input_size[1]}: export "
                             "the model at that size")
        dims[2], dims[3] = input_size
    if dims[0] is None:
        raise ValueError(f"input {value.name!r} has a dynamic batch dimension: give --batch "
                         "(compiled modules have a static shape)")
    if dims[2] is None or dims[3] is None:
        raise ValueError(f"input {value.name!r} has a dynamic height or width: give "
                         "--input-size")
    if dims[1] is None:
        raise ValueError(f"input {value.name!r} has a dynamic channel dimension")
    if min(dims) < 1:
        raise ValueError(f"input {value.name!r} shape {dims} has a non-positive dimension")
    return value.name, tuple(int(d) for d in dims)


def _with_input_shape(model: onnx.ModelProto, name: str, shape: tuple[int, ...]
                      ) -> onnx.ModelProto:
    """A copy whose image input has this static shape, shapes inferred through the graph
    (our function bodies included), so every ``ai.las`` node's maps are known."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    if any(n.domain == domain.DOMAIN for n in model.graph.node) and \
            not domain.has_reference(model):
        domain.attach_reference(model)  # a file written elsewhere: infer through our body
    for value in model.graph.input:
        if value.name == name:
            for dim, size in zip(value.type.tensor_type.shape.dim, shape, strict=True):
                dim.Clear()
                dim.dim_value = size
    del model.graph.value_info[:]
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except Exception as err:
        raise ValueError(f"shape inference fails at input shape {list(shape)}: {err}") from err


def validate_las_nodes(model: onnx.ModelProto) -> list[LASNode]:
    """Every ``ai.las`` node, checked against its weights and maps (``model`` has static
    shapes inferred, see :func:`_with_input_shape`)."""
    shapes = {}
    for value in [*model.graph.value_info, *model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = tuple(d.dim_value for d in dims)
    for tensor in model.graph.initializer:
        shapes[tensor.name] = tuple(tensor.dims)
    nodes = []
    for node in model.graph.node:
        if node.domain != domain.DOMAIN:
            continue
        where = domain.describe(node)
        attrs = domain.read_attributes(node)
        for name, expected in domain.expected_shapes(attrs).items():
            actual = shapes.get(node.input[domain.INPUTS.index(name)])
            if actual is not None and tuple(actual) != expected:
                raise ValueError(f"{where}: input {name} has shape {list(actual)}, but the "
                                 f"attributes (in_channels={attrs.in_channels}, mid_channels="
                                 f"{attrs.mid_channels}, out_channels={attrs.out_channels}) "
                                 f"say {list(expected)}")
        x = shapes.get(node.input[0])
        if x is None or len(x) != 4:
            raise ValueError(f"{where}: the shape of its input X is unknown after shape "
                             "inference")
        if x[1] != attrs.in_channels:
            raise ValueError(f"{where}: X has {x[1]} channels, in_channels says "
                             f"{attrs.in_channels}")
        out_hw = tuple((size - 1) // attrs.stride + 1 for size in x[2:])
        try:
            patch_grid(*out_hw, attrs.granularity)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
        identity = shapes.get(node.input[1])
        expected = (x[0], attrs.out_channels, *out_hw)
        if identity is not None and tuple(identity) != expected:
            raise ValueError(f"{where}: Identity has shape {list(identity)}, the block's output "
                             f"is {list(expected)}")
        projected = node.input[1] != node.input[0]
        if not projected and (attrs.stride != 1 or attrs.in_channels != attrs.out_channels):
            raise ValueError(f"{where}: Identity is X, but the block changes the shape "
                             f"(stride {attrs.stride}, {attrs.in_channels} -> "
                             f"{attrs.out_channels} channels)")
        nodes.append(LASNode(node, attrs, tuple(x[2:]), out_hw, projected))
    return nodes


def _importer_class():
    """:class:`ONNXGraphImporter` with our domain's converters (built on first use: TVM's
    compiler is imported lazily, like the rest of the conversion half of the frontend)."""
    from tvm.relax.frontend.onnx.onnx_frontend import ONNXGraphImporter

    from ...las_ops import ConvBN, SparseBottleneck

    class _LASGraphImporter(ONNXGraphImporter):
        """TVM's importer, plus ``ai.las`` nodes (validated beforehand: node names map to
        their :class:`LASNode`)."""

        def __init__(self, las_nodes: dict[str, LASNode], pipelines: dict[str, str], **kw):
            super().__init__(**kw)
            self._las_nodes = las_nodes
            self._pipelines = pipelines

        def _check_for_unsupported_ops(self, graph):
            standard = onnx.GraphProto()
            standard.node.extend(n for n in graph.node if n.domain != domain.DOMAIN)
            super()._check_for_unsupported_ops(standard)

        def _convert_operator(self, op_name, inputs, attrs, opset):
            if op_name not in domain.OPS:
                return super()._convert_operator(op_name, inputs, attrs, opset)
            las = self._las_nodes[attrs["tvm_custom"]["name"]]
            a = las.attrs
            if any(i is None for i in inputs):
                raise ValueError(f"{domain.describe(las.node)}: every input is required")
            convs = [ConvBN(*inputs[4 + 5 * i: 9 + 5 * i]) for i in range(3)]
            op = SparseBottleneck(
                inputs[0], inputs[1], inputs[2], inputs[3], *convs,
                granularity=a.granularity, stride=a.stride, eps=a.epsilon,
                projected=las.projected,
                pipeline=self._pipelines.get(las.label, "auto"), name=las.label)
            return self.bb.emit(op.to_call())

    return _LASGraphImporter


def import_onnx(source: str | os.PathLike | onnx.ModelProto, batch: int | None = None,
                input_size: tuple[int, int] | None = None,
                pipelines: str | dict[str, str] = "auto"):
    """The ONNX frontend step: a Relax module with ``las.*`` calls and ``las.model`` info.

    ``batch`` / ``input_size``: the compiled input shape where the file's is dynamic;
    ``pipelines``: one block pipeline for every ``ai.las`` node, or a dict by
    block name (default ``"auto"``, the predictor's choice).
    """
    from ..convert import MODEL_INFO

    model = load_model(source)
    # ours first, so an unsupported opset, domain or LAS attribute is named as such rather
    # than as whatever the generic checker trips over next
    _check_opsets(model)
    for node in model.graph.node:
        if node.domain == domain.DOMAIN:
            domain.read_attributes(node)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as err:
        raise ValueError(f"the ONNX model fails onnx.checker: {err}") from None
    if any(n.domain == domain.DOMAIN and not n.name for n in model.graph.node):
        # TVM's importer knows a node by its name: name ours (in a copy, not the caller's)
        model = onnx.ModelProto.FromString(model.SerializeToString())
        for index, node in enumerate(model.graph.node):
            if node.domain == domain.DOMAIN and not node.name:
                node.name = f"las_node_{index}"
    name, shape = input_shape(model, batch, input_size)
    inferred = _with_input_shape(model, name, shape)
    las_nodes = validate_las_nodes(inferred)
    labels = [n.label for n in las_nodes]
    if len(set(labels)) != len(labels) or len({n.node.name for n in las_nodes}) != len(labels):
        raise ValueError(f"{domain.DOMAIN} node names / block names are not unique: {labels}")
    if isinstance(pipelines, str):
        chosen = dict.fromkeys(labels, pipelines)
    else:
        unknown = sorted(set(pipelines) - set(labels))
        if unknown:
            raise ValueError(f"pipelines given for unknown blocks {unknown} (blocks: {labels})")
        chosen = dict(pipelines)

    importer = _importer_class()(
        {n.node.name: n for n in las_nodes}, chosen, shape_dict={name: list(shape)},
        dtype_dict={name: "float32"}, keep_params_in_input=False, sanitize=True)
    opset = max(o.version for o in model.opset_import if o.domain in STANDARD_DOMAINS)
    mod = importer.from_onnx(inferred.graph, opset)
    return mod.with_attr(MODEL_INFO, json.dumps(model_info(model, las_nodes, shape)))


def model_info(model: onnx.ModelProto, las_nodes: list[LASNode],
               shape: tuple[int, ...]) -> dict:
    """The ``las.model`` description (see ``frontend.convert``): from the file's own
    ``las.model`` metadata where our exporter wrote it, else from the graph."""
    stored = {p.key: p.value for p in model.metadata_props}.get(domain.METADATA_KEY)
    meta = json.loads(stored) if stored else {}
    outputs = [o.name for o in model.graph.output]
    if meta.get("outputs") and len(meta["outputs"]) == len(outputs):
        outputs = meta["outputs"]
    snet = meta.get("snet") or ("-".join(str(n.attrs.granularity) for n in las_nodes)
                                if las_nodes else "dense")
    return {
        "model": meta.get("model") or model.graph.name or "onnx",
        "snet": snet,
        "granularity": [n.attrs.granularity for n in las_nodes],
        "num_classes": meta.get("num_classes"),
        "out_stages": meta.get("out_stages"),
        "input": {"shape": list(shape), "dtype": "float32", "layout": "NCHW"},
        "outputs": outputs,
        "frontend": "onnx",
        "blocks": [{"name": n.label, "S": n.attrs.granularity,
                    "stride": n.attrs.stride, "static": False, "in_hw": list(n.in_hw),
                    "out_hw": list(n.out_hw)} for n in las_nodes],
    }

