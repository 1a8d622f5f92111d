"""The ``ai.las`` ONNX operator set, version 1: what a LAS operator in an ONNX file means.

One operator, ``ai.las::SparseBottleneck``: a dynamic ResNet bottleneck with its masker, the
ONNX twin of ``las.sparse_bottleneck`` (:mod:`las_compiler.las_ops`). Inputs, in order:

====  ===================  ==================================================================
 0    ``X``                block input, float32 (N, C, H, W)
 1    ``Identity``         shortcut, (N, K, Ho, Wo): ``X`` itself (same tensor name) or the
                           downsample's output
 2-3  ``MaskerW/B``        masker 1x1 conv, (2, C, 1, 1) and (2,)
 4-8  ``W1 G1 B1 M1 V1``  conv1 (P, C, 1, 1) and its eval-mode BatchNormalization (P,) x 4
 9-13 ``W2 .. V2``         conv2 (P, P, 3, 3), padding 1, stride ``strides``, and its BN
14-18 ``W3 .. V3``         conv3 (K, P, 1, 1) and its BN
====  ===================  ==================================================================

Outputs: ``Out`` (N, K, Ho, Wo) and ``Mask`` bool (N, gh, gw). Attributes: ``granularity``
(S, int), ``strides`` (ints, [s, s], conv2's stride, 1 or 2), ``epsilon`` (BN's, float),
``grid_rule`` (string, ``"floor"``: the only rule of version 1), ``in_channels`` (C),
``mid_channels`` (P), ``out_channels`` (K) and an optional ``block_name``.

Semantics, exactly those of the official LASNet code (eval mode, ``mask_channel_group = 1``;
``las_compiler.geometry`` is the same rule):

* ``Ho = (H - 1) // s + 1``; the patch grid is the floor grid of the *output*:
  ``gh = Ho // S``, ``gw = Wo // S`` (``1 <= S <= min(Ho, Wo)``).
* Masker: ``X`` averaged over PyTorch ``adaptive_avg_pool2d`` windows to (gh, gw) (cell i
  covers input rows ``floor(i*H/gh) .. ceil((i+1)*H/gh) - 1``; windows may overlap where S
  does not divide the map), then the 1x1 conv with bias, ``Mask = logit0 >= logit1``.
* ``Out = relu(Identity + gate * bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(X)))))))))`` where
  ``gate`` is ``Mask`` nearest-upsampled to (Ho, Wo) as ``F.interpolate`` does it: output
  row y takes cell ``min(floor(y * float32(gh) / float32(Ho)), gh - 1)`` in float32.

Every file we write carries :func:`reference_function`, this meaning written in standard ONNX
ops (opset 18) as a model-local function: ONNX Runtime, ``onnx.checker`` and shape inference
run the file without knowing the domain, computing the block densely (the dense-compute
baseline). Compilers that know the domain (ours) run it sparsely instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx
from onnx import AttributeProto, TensorProto, helper

DOMAIN = "ai.las"
VERSION = 1
SPARSE_BOTTLENECK = "SparseBottleneck"
OPS = (SPARSE_BOTTLENECK,)
BODY_OPSET = 18  # the standard opset the reference body is written in
GRID_RULES = ("floor",)
METADATA_KEY = "las.model"  # the file's metadata entry describing the network (JSON)

INPUTS = ("X", "Identity", "MaskerW", "MaskerB",
          "W1", "G1", "B1", "M1", "V1",
          "W2", "G2", "B2", "M2", "V2",
          "W3", "G3", "B3", "M3", "V3")
OUTPUTS = ("Out", "Mask")

# name -> (ONNX attribute type, required)
ATTRIBUTES = {
    "granularity": (AttributeProto.INT, True),
    "strides": (AttributeProto.INTS, True),
    "epsilon": (AttributeProto.FLOAT, True),
    "grid_rule": (AttributeProto.STRING, True),
    "in_channels": (AttributeProto.INT, True),
    "mid_channels": (AttributeProto.INT, True),
    "out_channels": (AttributeProto.INT, True),
    "block_name": (AttributeProto.STRING, False),
}


@dataclass(frozen=True)
class BottleneckAttributes:
    """A ``SparseBottleneck`` node's attributes, checked (see :func:`read_attributes`)."""

    granularity: int
    stride: int
    epsilon: float
    in_channels: int
    mid_channels: int
    out_channels: int
    block_name: str


def describe(node: onnx.NodeProto) -> str:
    """How errors name a node: its name, else its first output."""
    return f"{node.op_type} node {node.name or (node.output[0] if node.output else '?')!r}"


def read_attributes(node: onnx.NodeProto) -> BottleneckAttributes:
    """The attributes of an ``ai.las::SparseBottleneck`` node, or a ValueError naming the node
    and the problem (unknown, missing, mistyped or contradictory attributes)."""
    where = describe(node)
    if len(node.input) != len(INPUTS) or len(node.output) != len(OUTPUTS):
        raise ValueError(f"{where} has {len(node.input)} inputs and {len(node.output)} outputs; "
                         f"{DOMAIN} v{VERSION} {SPARSE_BOTTLENECK} takes {len(INPUTS)} inputs "
                         f"({', '.join(INPUTS)}) and gives {len(OUTPUTS)} ({', '.join(OUTPUTS)})")
    given = {a.name: a for a in node.attribute}
    unknown = sorted(set(given) - set(ATTRIBUTES))
    if unknown:
        raise ValueError(f"{where}: unknown attribute(s) {', '.join(unknown)} (known: "
                         f"{', '.join(ATTRIBUTES)})")
    values = {}
    for name, (kind, required) in ATTRIBUTES.items():
        if name not in given:
            if required:
                raise ValueError(f"{where}: missing attribute {name!r}")
            continue
        if given[name].type != kind:
            raise ValueError(f"{where}: attribute {name!r} must be "
                             f"{AttributeProto.AttributeType.Name(kind)}, got "
                             f"{AttributeProto.AttributeType.Name(given[name].type)}")
        values[name] = helper.get_attribute_value(given[name])
    strides = list(values["strides"])
    if len(strides) != 2 or strides[0] != strides[1] or strides[0] not in (1, 2):
        raise ValueError(f"{where}: strides must be [1, 1] or [2, 2], got {strides}")
    rule = values["grid_rule"].decode()
    if rule not in GRID_RULES:
        raise ValueError(f"{where}: grid_rule {rule!r} is not one of {', '.join(GRID_RULES)} "
                         f"({DOMAIN} v{VERSION})")
    for name in ("granularity", "in_channels", "mid_channels", "out_channels"):
        if values[name] < 1:
            raise ValueError(f"{where}: {name} must be >= 1, got {values[name]}")
    if not values["epsilon"] > 0:
        raise ValueError(f"{where}: epsilon must be > 0, got {values['epsilon']}")
    return BottleneckAttributes(
        granularity=int(values["granularity"]), stride=int(strides[0]),
        epsilon=float(values["epsilon"]), in_channels=int(values["in_channels"]),
        mid_channels=int(values["mid_channels"]), out_channels=int(values["out_channels"]),
        block_name=values.get("block_name", b"").decode())


def expected_shapes(attrs: BottleneckAttributes) -> dict[str, tuple[int, ...]]:
    """Static shapes of the weight inputs the attributes imply (the contradiction check)."""
    c, p, k = attrs.in_channels, attrs.mid_channels, attrs.out_channels
    shapes = {"MaskerW": (2, c, 1, 1), "MaskerB": (2,),
              "W1": (p, c, 1, 1), "W2": (p, p, 3, 3), "W3": (k, p, 1, 1)}
    for index, width in (("1", p), ("2", p), ("3", k)):
        shapes.update({f"{part}{index}": (width,) for part in "GBMV"})
    return shapes


def node_attributes(*, granularity: int, stride: int, epsilon: float, in_channels: int,
                    mid_channels: int, out_channels: int, block_name: str = "") -> dict:
    """Keyword attributes of a ``SparseBottleneck`` node, for ``helper.make_node``."""
    attrs = {"granularity": int(granularity), "strides": [int(stride)] * 2,
             "epsilon": float(epsilon), "grid_rule": "floor", "in_channels": int(in_channels),
             "mid_channels": int(mid_channels), "out_channels": int(out_channels)}
    if block_name:
        attrs["block_name"] = block_name
    return attrs


# -- the reference body ---------------------------------------------------------------------


class _Body:
    """Builds the nodes of :func:`reference_function` (names are local to the function)."""

    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self._count = 0

    def __call__(self, op: str, *inputs: str, outputs: int = 1, refs: dict | None = None,
                 **attrs) -> str | list[str]:
        self._count += 1
        names = [f"t{self._count}_{i}" for i in range(outputs)]
        node = helper.make_node(op, list(inputs), names, **attrs)
        for name, (parent, kind) in (refs or {}).items():
            node.attribute.append(helper.make_attribute_ref(name, kind, ref_attr_name=parent))
        self.nodes.append(node)
        return names[0] if outputs == 1 else names

    def const(self, value: int | list[int]) -> str:
        if isinstance(value, list):
            return self("Constant", value_ints=value)
        return self("Constant", value_int=value)


def _windows(b: _Body, cells: str, size: str, one: str, zero: str) -> tuple[str, str]:
    """(matrix[cells, size], count[cells]) of adaptive average pooling along one axis: row i is
    1 on input positions floor(i*size/cells) .. ceil((i+1)*size/cells) - 1."""
    i = b("Range", zero, cells, one)
    start = b("Div", b("Mul", i, size), cells)
    end = b("Div", b("Sub", b("Add", b("Mul", b("Add", i, one), size), cells), one), cells)
    p = b("Unsqueeze", b("Range", zero, size, one), b.const([0]))
    inside = b("And", b("GreaterOrEqual", p, b("Unsqueeze", start, b.const([1]))),
               b("Less", p, b("Unsqueeze", end, b.const([1]))))
    return (b("Cast", inside, to=TensorProto.FLOAT),
            b("Cast", b("Sub", end, start), to=TensorProto.FLOAT))


def _nearest(b: _Body, cells: str, size: str, one: str, zero: str) -> str:
    """The cell of each of ``size`` output positions (``F.interpolate`` nearest, float32)."""
    scale = b("Div", b("Cast", cells, to=TensorProto.FLOAT), b("Cast", size, to=TensorProto.FLOAT))
    y = b("Cast", b("Range", zero, size, one), to=TensorProto.FLOAT)
    index = b("Cast", b("Floor", b("Mul", y, scale)), to=TensorProto.INT64)
    return b("Min", index, b("Sub", cells, one))


def reference_function() -> onnx.FunctionProto:
    """``ai.las::SparseBottleneck`` in standard ops (opset :data:`BODY_OPSET`): the module
    docstring's semantics, computed densely, for any input size (shapes are read at run time)."""
    b = _Body()
    x, identity, mw, mb = INPUTS[:4]
    w1, w2, w3 = (INPUTS[4 + 5 * i: 9 + 5 * i] for i in range(3))
    zero, one = b.const(0), b.const(1)
    s = b("Constant", refs={"value_int": ("granularity", AttributeProto.INT)})
    strides = b("Constant", refs={"value_ints": ("strides", AttributeProto.INTS)})
    shape = b("Shape", x)
    height, width = b("Gather", shape, b.const(2)), b("Gather", shape, b.const(3))
    out_h = b("Add", b("Div", b("Sub", height, one), b("Gather", strides, zero)), one)
    out_w = b("Add", b("Div", b("Sub", width, one), b("Gather", strides, one)), one)
    grid_h, grid_w = b("Div", out_h, s), b("Div", out_w, s)

    # masker: adaptive average pooling as two window matrices, then the 1x1 conv and compare
    rows, row_count = _windows(b, grid_h, height, one, zero)
    cols, col_count = _windows(b, grid_w, width, one, zero)
    sums = b("MatMul", b("MatMul", rows, x), b("Transpose", cols, perm=[1, 0]))
    area = b("Mul", b("Unsqueeze", row_count, b.const([1])),
             b("Unsqueeze", col_count, b.const([0])))
    logits = b("Conv", b("Div", sums, area), mw, mb)
    mask = b("GreaterOrEqual", b("Gather", logits, zero, axis=1), b("Gather", logits, one, axis=1))

    # the residual branch, dense; BN in inference mode
    eps = {"epsilon": ("epsilon", AttributeProto.FLOAT)}

    def conv_bn(h, conv, relu=True, attrs=None, refs=None):
        w, gamma, beta, mean, var = conv
        h = b("Conv", h, w, refs=refs, **(attrs or {}))
        h = b("BatchNormalization", h, gamma, beta, mean, var, refs=eps)
        return b("Relu", h) if relu else h

    h = conv_bn(x, w1)
    h = conv_bn(h, w2, attrs={"pads": [1, 1, 1, 1]},
                refs={"strides": ("strides", AttributeProto.INTS)})
    h = conv_bn(h, w3, relu=False)

    # gate: the mask nearest-upsampled to the output map
    h_shape = b("Shape", h)
    gate = b("Cast", mask, to=TensorProto.FLOAT)
    gate = b("Gather", gate, _nearest(b, grid_h, b("Gather", h_shape, b.const(2)), one, zero),
             axis=1)
    gate = b("Gather", gate, _nearest(b, grid_w, b("Gather", h_shape, b.const(3)), one, zero),
             axis=2)
    gated = b("Mul", h, b("Unsqueeze", gate, b.const([1])))
    b.nodes.append(helper.make_node("Relu", [b("Add", identity, gated)], ["Out"]))
    b.nodes.append(helper.make_node("Identity", [mask], ["Mask"]))
    return helper.make_function(
        DOMAIN, SPARSE_BOTTLENECK, list(INPUTS), list(OUTPUTS), b.nodes,
        [helper.make_opsetid("", BODY_OPSET)], attributes=list(ATTRIBUTES),
        doc_string="LAS sparse bottleneck (see las_compiler.frontend.onnx.domain), computed "
                   "densely in standard ops.")


def has_reference(proto: onnx.ModelProto) -> bool:
    return any((f.domain, f.name) == (DOMAIN, SPARSE_BOTTLENECK) for f in proto.functions)


def attach_reference(proto: onnx.ModelProto) -> None:
    """Declare ``ai.las`` v1 and give the model :func:`reference_function` as a model-local
    function (replacing any body it had for the op), in place."""
    if not any(o.domain == DOMAIN for o in proto.opset_import):
        proto.opset_import.append(helper.make_opsetid(DOMAIN, VERSION))
    kept = [f for f in proto.functions if (f.domain, f.name) != (DOMAIN, SPARSE_BOTTLENECK)]
    del proto.functions[:]
    proto.functions.extend([*kept, reference_function()])
