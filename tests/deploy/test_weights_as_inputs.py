"""Code-only modules (``weights_as_inputs``): the weights are inputs, prepared on the device
by the module's own ``main_transform_params`` (BN folding and packing, the same steps as a
weight-carrying build, as Relax ops); outputs and masks equal the weight-carrying build and
PyTorch, on the CPU rules and with a GPU's schedules emulated; bad weights are named."""

import subprocess
import sys

import numpy as np
import pytest
import torch

import las_compiler
from las_compiler.compiler import resolve_target
from las_compiler.models import LASResNet, calibrate
from las_compiler.target import EmulatedGPU
from las_compiler.verify import compare_with_pytorch

X = torch.randn(1, 3, 48, 56, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def model():
    from las_compiler.models import randomise_bn

    torch.manual_seed(0)
    net = LASResNet((2, 1, 1, 1), "4-2-1-2", num_classes=10, base_channels=16)
    randomise_bn(net, 1)
    net.eval()
    calibrate(net, 0.5, torch.randn(2, 3, 48, 56))
    return net


@pytest.fixture(scope="module")
def code_only(model):
    return las_compiler.compile(model, X, "host", tuning_logs=False, weights_as_inputs=True)


@pytest.fixture(scope="module")
def baked(model):
    """The same network compiled with its weights in the module, as a reference."""
    return las_compiler.compile(model, X, "host", tuning_logs=False)


def test_code_only_equals_the_weight_carrying_build(model, code_only, baked):
    names = code_only.metadata["weights"]
    assert set(names) == {k for k, v in model.state_dict().items() if v.is_floating_point()}
    code_only.set_weights(model.state_dict())
    out, masks = code_only.run_with_masks(X.numpy())
    ref_out, ref_masks = baked.run_with_masks(X.numpy())
    np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-5)
    for got, expected in zip(masks, ref_masks, strict=True):
        np.testing.assert_array_equal(got, expected)


def test_gpu_schedules_of_a_code_only_network_emulated(model):
    compiled = las_compiler.compile(model, X, EmulatedGPU(resolve_target("nvidia/jetson-tx2")),
                                    weights_as_inputs=True)
    compiled.set_weights(model.state_dict())
    agreement = compare_with_pytorch(compiled, model, X.numpy())
    assert agreement.masks_equal and agreement.max_abs_error <= 1e-4 * agreement.output_scale


def test_artifact_carries_code_only_and_runs_with_the_runtime_alone(model, code_only, baked,
                                                                    tmp_path):
    baked_path = baked.export(tmp_path / "b")
    path = code_only.export(tmp_path / "code")
    assert (path / "model.so").stat().st_size < (baked_path / "model.so").stat().st_size / 2
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    np.save(tmp_path / "x.npy", X.numpy())
    code_only.set_weights(model.state_dict())
    expected = compare_with_pytorch(code_only, model, X.numpy())
    script = (
        "import sys, numpy as np, torch, las_compiler\n"
        "m = las_compiler.load(sys.argv[1])\n"
        "m.set_weights(torch.load(sys.argv[2]))\n"
        "out = m.run(np.load(sys.argv[3]))\n"
        "with open('/proc/self/maps') as f:\n"
        "    assert not any('libtvm_compiler' in line for line in f)\n"
        "np.save(sys.argv[4], out)\n")
    proc = subprocess.run([sys.executable, "-c", script, str(path), str(tmp_path / "weights.pt"),
                           str(tmp_path / "x.npy"), str(tmp_path / "out.npy")],
                          env={**__import__("os").environ, "TVM_USE_RUNTIME_LIB": "1"},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with torch.no_grad():
        reference = model(X)
    reference = (reference[0] if isinstance(reference, tuple) else reference).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), reference,
                               atol=2 * max(expected.max_abs_error, 1e-5))


def test_bad_weights_are_named(model, code_only, baked):
    state = model.state_dict()
    with pytest.raises(ValueError, match="lacks 1 of the module's weights, e.g. conv1.weight"):
        code_only.set_weights({k: v for k, v in state.items() if k != "conv1.weight"})
    with pytest.raises(ValueError, match=r"weight fc.bias has shape \(3,\), the module was "
                                         r"compiled for \(10,\)"):
        code_only.set_weights({**state, "fc.bias": torch.zeros(3)})
    with pytest.raises(ValueError, match="weight bn1.weight holds NaN"):
        code_only.set_weights({**state, "bn1.weight": torch.full_like(state["bn1.weight"],
                                                                      float("nan"))})
    from las_compiler.deploy.compiled_model import CompiledModel

    fresh = CompiledModel(code_only._module, dict(code_only.metadata))
    with pytest.raises(RuntimeError, match=r"call set_weights\(state_dict\) first"):
        fresh.run(X.numpy())
    with pytest.raises(ValueError, match="carries its weights"):
        baked.set_weights(state)


def test_weights_beside_the_code_load_with_it(code_only, tmp_path):
    """A code-only build exported with its weights beside it (``weights.params``, TVM's
    format): loaded, it prepares them at start with the runtime alone and passes its stored
    check; damaged weights are named."""
    import os
    import shutil

    from las_compiler.deploy import ArtifactError

    path = code_only.export(tmp_path / "code", weights_beside=True)
    assert sorted(os.listdir(path)) == ["check.npz", "metadata.json", "model.so",
                                        "weights.params"]
    here = las_compiler.load(path)
    assert here.weights_set
    check = here.check_data
    out, masks = here.run_with_masks(check.input)
    agreement = check.compare([out], masks)
    assert agreement.masks_equal and agreement.max_abs_error < 1e-4 * agreement.output_scale
    damaged = tmp_path / "damaged"
    shutil.copytree(path, damaged)
    (damaged / "weights.params").write_bytes((path / "weights.params").read_bytes()[:-4])
    with pytest.raises(ArtifactError, match="damaged weights"):
        las_compiler.load(damaged)
