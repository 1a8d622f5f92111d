"""ONNX in and out: a LAS-ResNet exported with ``ai.las`` operators is a valid ONNX file that
ONNX Runtime runs as PyTorch does (through the ops' standard-op bodies), and that the
compiler imports back into the same ``las.*`` ops and compiles to the same outputs and masks.
"""

import json

import numpy as np
import onnx
import pytest
import torch

import las_compiler
from las_compiler.frontend import ExportableLASResNet, import_torch
from las_compiler.frontend.onnx import domain, import_onnx, run_reference, to_onnx
from las_compiler.las_ops import las_blocks
from las_compiler.models import LASResNet, calibrate

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def _small(snet="4-4-2-1", depths=(1, 1, 2, 1), out_stages=None, size=(64, 64)):
    torch.manual_seed(0)
    model = LASResNet(depths, snet, num_classes=10, base_channels=16,
                      out_stages=out_stages).eval()
    calibrate(model, 0.5, torch.randn(2, 3, *size))
    return model


def _pytorch(model, x):
    with torch.no_grad():
        return [o.numpy() for o in ExportableLASResNet(model)(x)]


def _assert_same(got, expected, atol=2e-4):
    """Outputs close, masks identical (a tie within rounding would be one cell: none here)."""
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g.shape == e.shape
        if e.dtype == np.bool_:
            np.testing.assert_array_equal(g, e)
        else:
            np.testing.assert_allclose(g, e, rtol=0, atol=atol * max(1.0, np.abs(e).max()))


# S = 4 on a 15x13 map and S = 2 on 4x4 / 3x4: grids that do not divide the maps
CLASSIFIER = dict(snet="4-4-2-1", size=(60, 52))


@pytest.fixture(scope="module")
def exported():
    """(model, batch-2 example, the ONNX model) of a small classifier."""
    model = _small(**CLASSIFIER)
    x = torch.randn(2, 3, *CLASSIFIER["size"])
    return model, x, to_onnx(model, x)


def test_file_is_checked_onnx_with_one_las_node_per_dynamic_block(exported):
    model, x, proto = exported
    onnx.checker.check_model(proto, full_check=True)  # shape inference through the bodies
    assert {(o.domain, o.version) for o in proto.opset_import} >= {("", 18), (domain.DOMAIN, 1)}
    nodes = [n for n in proto.graph.node if n.domain == domain.DOMAIN]
    blocks = list(model.dynamic_blocks())
    assert [n.op_type for n in nodes] == [domain.SPARSE_BOTTLENECK] * len(blocks)
    attrs = [domain.read_attributes(n) for n in nodes]
    assert [(a.granularity, a.stride, a.block_name) for a in attrs] == \
        [(b.granularity, b.stride, b.block_name) for b in blocks]
    assert [(f.domain, f.name) for f in proto.functions] == [(domain.DOMAIN,
                                                              domain.SPARSE_BOTTLENECK)]
    meta = json.loads({p.key: p.value for p in proto.metadata_props}["las.model"])
    assert meta["snet"] == "4-4-2-1" and meta["outputs"][0] == "logits"


def test_onnx_runtime_runs_the_file_as_pytorch(exported):
    model, x, proto = exported
    _assert_same(run_reference(proto, x.numpy()), _pytorch(model, x))


def test_compiled_from_onnx_equals_pytorch_batch_2(exported):
    model, x, proto = exported
    compiled = las_compiler.compile_onnx(proto, "host", tuning_logs=False)
    assert compiled.metadata["snet"] == "4-4-2-1"
    assert [b["name"] for b in compiled.metadata["blocks"]] == \
        [b.block_name for b in model.dynamic_blocks()]
    logits, masks = compiled.run_with_masks(x.numpy())
    _assert_same([logits, *masks], _pytorch(model, x))
    # its check data is ONNX Runtime's on a seeded image, and the module agrees with it
    agreement = compiled.check_data.compare(*_split(compiled, compiled.check_data.input))
    assert agreement.max_abs_error < 1e-3 and agreement.masks_equal


def _split(compiled, x):
    out, masks = compiled.run_with_masks(x)
    return (out if isinstance(out, tuple) else [out]), masks


def test_import_gives_the_las_ops_of_the_pytorch_import(exported):
    model, x, proto = exported
    from_onnx = las_blocks(import_onnx(proto))
    from_torch = las_blocks(import_torch(model, x))
    assert [(b.name, b.granularity, b.stride, b.projected, b.input_shape, b.output_shape)
            for b in from_onnx] == \
        [(b.name, b.granularity, b.stride, b.projected, b.input_shape, b.output_shape)
         for b in from_torch]
    # a batch the file leaves dynamic is given at import; one it fixes cannot change
    dynamic = _edited(proto, _dynamic_batch)
    assert las_blocks(import_onnx(dynamic, batch=2))[0].input_shape[0] == 2
    with pytest.raises(ValueError, match="fixes batch 2, --batch asks for 1"):
        import_onnx(proto, batch=1)


def test_backbone_batch_1_round_trip(tmp_path):
    model = _small("4-4-2-1", depths=(1, 1, 1, 1), out_stages=(1, 2, 3), size=(64, 96))
    x = torch.randn(1, 3, 64, 96)
    path = tmp_path / "backbone.onnx"
    las_compiler.export_onnx(model, x, path)
    expected = _pytorch(model, x)
    _assert_same(run_reference(str(path), x.numpy()), expected)
    compiled = las_compiler.compile_onnx(path, "host", tuning_logs=False)
    features, masks = compiled.run_with_masks(x.numpy())
    assert compiled.metadata["outputs"][:3] == model.output_names
    _assert_same([*features, *masks], expected)


def test_plain_onnx_network_compiles_dense(tmp_path):
    """A file without ai.las nodes (e.g. the dense ResNet the benchmarks give ONNX Runtime)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2), torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 5)).eval()
    x = torch.randn(1, 3, 32, 32)
    path = tmp_path / "dense.onnx"
    torch.onnx.export(net, (x,), str(path), dynamo=True, opset_version=18, external_data=False)
    compiled = las_compiler.compile_onnx(path, "host", tuning_logs=False)
    assert compiled.metadata["blocks"] == [] and compiled.metadata["snet"] == "dense"
    with torch.no_grad():
        np.testing.assert_allclose(compiled.run(x.numpy()), net(x).numpy(), atol=1e-4)


# -- bad input ------------------------------------------------------------------------------


def _edited(proto, edit):
    copy = onnx.ModelProto.FromString(proto.SerializeToString())
    edit(copy)
    return copy


def _first_las(model):
    return next(n for n in model.graph.node if n.domain == domain.DOMAIN)


def _set_attr(node, name, value):
    for i, a in enumerate(node.attribute):
        if a.name == name:
            del node.attribute[i]
            break
    if value is not None:
        node.attribute.append(onnx.helper.make_attribute(name, value))


def _las_version(model, version):
    for o in model.opset_import:
        if o.domain == domain.DOMAIN:
            o.version = version


def _standard_opset(model, version):
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = version


def _dynamic_batch(model):
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"


BAD = [
    (lambda m: setattr(_first_las(m), "op_type", "SparseBlock"),
     "unknown ai.las operator in SparseBlock node"),
    (lambda m: _las_version(m, 2), "ai.las version 2 is not supported"),
    (lambda m: _set_attr(_first_las(m), "granularity", None), "missing attribute 'granularity'"),
    (lambda m: _set_attr(_first_las(m), "in_channels", 99),
     r"input MaskerW has shape \[2, 16, 1, 1\], but the attributes \(in_channels=99"),
    (lambda m: _set_attr(_first_las(m), "grid_rule", "ceil"), "grid_rule 'ceil' is not one of"),
    (lambda m: _set_attr(_first_las(m), "strides", [2, 1]), r"strides must be \[1, 1\] or"),
    (lambda m: _set_attr(_first_las(m), "granularity", 40), "S=40 does not fit a 15x13"),
    (lambda m: _set_attr(_first_las(m), "colour", 1), "unknown attribute"),
    (_dynamic_batch, "dynamic batch dimension: give --batch"),
    (lambda m: _standard_opset(m, 5), "opset 5 is not supported"),
    (lambda m: setattr(m.graph.node[0], "domain", "com.example"),
     "domain.s. com.example are not supported"),
    (lambda m: m.graph.node[0].input.append("no_such_tensor"), "fails onnx.checker"),
]


@pytest.mark.parametrize("edit, message", BAD)
def test_bad_files_are_errors_naming_the_node(exported, edit, message):
    _, _, proto = exported
    with pytest.raises(ValueError, match=message):
        import_onnx(_edited(proto, edit))


def test_bad_export_and_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no ONNX file"):
        import_onnx(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all")
    with pytest.raises(ValueError, match="is not an ONNX model"):
        import_onnx(tmp_path / "junk.onnx")
    model = _small()
    with pytest.raises(ValueError, match="expected 3 input channels"):
        las_compiler.export_onnx(model, torch.randn(1, 4, 64, 64), tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "junk.onnx"]  # nothing half-written
