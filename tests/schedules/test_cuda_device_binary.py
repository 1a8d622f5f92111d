"""GPU artifacts carry device binaries: a fatbin (sm_75+, nvcc) or PTX the driver compiles
(sm_61/62/70, LLVM's NVPTX), never CUDA C for the device to compile; the packed layout is the
one TVM's CUDA loader reads."""

import re

import pytest
import torch

import las_compiler
from las_compiler.compiler import resolve_target
from las_compiler.deploy.artifact import read_metadata
from las_compiler.models import LASResNet, calibrate
from las_compiler.schedules.cuda import toolchain
from las_compiler.schedules.cuda.device_binary import (
    FATBIN_MAGIC,
    BlobLayoutError,
    CUDAPayload,
    DeviceCodePacker,
    ModuleTree,
    device_payloads,
)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = LASResNet((1, 1, 1, 1), "4-2-1-2", num_classes=10, base_channels=16).eval()
    calibrate(net, 0.5, torch.randn(2, 3, 48, 48))
    return net


def _compiled(model, tag):
    target = resolve_target(tag)
    missing = toolchain.toolchain_available(target)
    if missing:
        pytest.skip(missing)
    return las_compiler.compile(model, torch.randn(1, 3, 48, 48), target, tuning_logs=False)


def _cuda_payload(compiled) -> bytes:
    from tvm.runtime import _ffi_api

    tree = ModuleTree.parse(_ffi_api.ModulePackImportsToTensor(compiled._module.mod)
                            .numpy().tobytes())
    payloads = [payload for kind, payload in tree.modules if kind == "cuda"]
    assert len(payloads) == 1
    return payloads[0]


# by default the TX2's test below takes the PTX route, and `las compile --target
# nvidia/nvidia-h100` (tests/test_cli.py) checks the fatbin in its library the same way
@pytest.mark.parametrize("tag, fmt", [
    pytest.param("nvidia/nvidia-h100", "fatbin", marks=pytest.mark.full_matrix),
    pytest.param("nvidia/geforce-gtx-1080", "ptx", marks=pytest.mark.full_matrix)])
def test_exported_library_holds_the_device_binary(model, tag, fmt, tmp_path):
    """The library's CUDA module holds the binary of the target's route, one kernel per entry
    of its function table, and the metadata says what was shipped."""
    compiled = _compiled(model, tag)
    before = CUDAPayload.parse(_cuda_payload(compiled))
    assert before.fmt in ("cuda", "ptx")  # what TVM's codegen left: source to compile
    path = compiled.export(tmp_path / "art")
    (payload,) = device_payloads(path / "model.so")
    assert payload.fmt == fmt and payload.kernels == before.kernels
    assert payload.function_table == before.function_table
    summary = read_metadata(path)["device_code"]
    assert summary["format"] == fmt and summary["kernels"] == len(payload.kernels)
    assert summary["spilling_kernels"] == []
    if fmt == "fatbin":
        assert payload.code[:4] == FATBIN_MAGIC
        for kernel in payload.kernels:
            assert kernel.encode() in payload.code
    else:
        ptx = payload.code.decode()
        assert re.search(r"^\.target sm_61$", ptx, re.M)
        entries = set(re.findall(r"^\.visible \.entry (\w+)\(", ptx, re.M))
        assert entries == set(payload.kernels)


def test_jetson_tx2_ships_ptx_its_cuda_10_driver_loads(model):
    """The TX2 (sm_62, JetPack 4.6's CUDA 10.2 driver: PTX ISA <= 6.5, no cubins of CUDA 12)
    gets PTX of ISA 5.0 with every kernel an entry; it assembles for sm_62 (checked by the
    packer with CUDA 12's ptxas). The library itself is linked for the board (aarch64)."""
    compiled = _compiled(model, "nvidia/jetson-tx2")
    target = resolve_target("nvidia/jetson-tx2")
    packer = DeviceCodePacker(target)
    payload = CUDAPayload.parse(packer._replace(_cuda_payload(compiled)))
    ptx = payload.code.decode()
    version = re.search(r"^\.version (\d+)\.(\d+)$", ptx, re.M)
    assert (int(version.group(1)), int(version.group(2))) <= (6, 5)
    assert re.search(r"^\.target sm_62$", ptx, re.M)
    assert set(re.findall(r"^\.visible \.entry (\w+)\(", ptx, re.M)) == set(payload.kernels)
    assert packer.summary["route"] == "nvptx" and packer.summary["max_registers"] <= 255


def _warp_reduction():
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def row_sum(a: T.Buffer((4, 128), "float32"), b: T.Buffer((4,), "float32")):
        for i in T.thread_binding(4, thread="blockIdx.x"):
            for k in T.thread_binding(128, thread="threadIdx.x"):
                with T.sblock("sum"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    with T.init():
                        b[vi] = T.float32(0)
                    b[vi] = b[vi] + a[vi, vk]

    return row_sum


@pytest.mark.parametrize("tag, shuffle", [("nvidia/geforce-gtx-1080", "shfl.down.b32"),
                                          ("nvidia/nvidia-v100", "shfl.sync.down.b32")])
def test_nvptx_warp_reductions_assemble(tag, shuffle):
    """A warp reduction on the NVPTX route: Pascal keeps the lock-step shuffles, sm_70 gets
    ``shfl.sync`` (it lost the others); no inline ``activemask`` (which needs PTX ISA 6.2);
    both assemble for their arch."""
    target = resolve_target(tag)
    missing = toolchain.toolchain_available(target)
    if missing:
        pytest.skip(missing)
    text, fmt = toolchain.device_code({"row_sum": _warp_reduction()}, target)
    assert fmt == "ptx" and shuffle in text and "activemask" not in text
    assert toolchain.assemble(text, fmt, target)


def test_damaged_layouts_are_named():
    tree = ModuleTree([0, 1, 1], [1], [("_lib", None), ("cuda", b"x")])
    blob = tree.to_bytes()
    assert ModuleTree.parse(blob) == tree
    with pytest.raises(BlobLayoutError, match="runs past the end"):
        ModuleTree.parse(blob[:-1])
    with pytest.raises(BlobLayoutError, match="bytes after"):
        ModuleTree.parse(blob + b"\0")
    payload = CUDAPayload("cuda", b"\0" * 8, [], b"code")
    assert CUDAPayload.parse(payload.to_bytes()) == payload
    with pytest.raises(BlobLayoutError):
        CUDAPayload.parse(payload.to_bytes() + b"\0")
