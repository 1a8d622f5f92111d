"""Device code of the CUDA rules' kernels assembles with NVIDIA's ptxas for each route (nvcc
13 for sm_90; LLVM's NVPTX and CUDA 12.9's ptxas for the TX2's sm_62): registers, no spills."""

import pytest

from las_compiler.block_pipelines import PIPELINES, Scan
from las_compiler.op import get_kernel
from las_compiler.schedules import pipeline_fits, schedule
from las_compiler.schedules.cuda import toolchain

from .test_cuda_rules import H100, TX2, chained_maskers, gpu, layer_geometries

CONV_KERNELS = ("conv1x1", "conv1x1_rows", "gather_conv3x3", "gather_conv3x3_rows",
                "conv1x1_scatter_add", "conv1x1_scatter_add_rows", "halo_conv3x3", "conv2d")


# sm_90 in the default tier: ``test_cli``'s `las compile --target nvidia/nvidia-h100` builds
# and checks a whole network's fatbin with nvcc 13 (no spills); every stage's shapes here
# are the opt-in tier's
@pytest.mark.parametrize("tag", [TX2, pytest.param(H100, marks=pytest.mark.full_matrix)])
def test_device_code_assembles_without_spills(tag):
    """Device code of every kernel of the fused and halo pipelines (the scans also carrying a
    length, and the chained maskers) at the four stages of LAS-ResNet-50 assembles with
    ptxas for the arch (nvcc for sm_90, LLVM's NVPTX + CUDA 12's ptxas for the TX2's sm_62);
    the conv kernels spill no registers at the default knobs."""
    target = gpu(tag)
    missing = toolchain.toolchain_available(target)
    if missing:
        pytest.skip(missing)
    funcs, seen, chained = {}, set(), set()
    for geometry in layer_geometries("las_resnet50", 224, 224):
        for name in ("fused", "halo"):
            if not pipeline_fits(PIPELINES[name], geometry, target):
                continue
            for step in PIPELINES[name].steps_for(geometry):
                # a block's later scans carry the earlier lengths (``op.scan.work_list``)
                for args in (step.args(geometry),
                             *(((*step.args(geometry), 1),) if isinstance(step, Scan) else ())):
                    if (step.kernel, args) in seen:
                        continue
                    seen.add((step.kernel, args))
                    func = schedule(get_kernel(step.kernel)(*args), target)
                    funcs[f"{step.kernel}_{len(funcs)}"] = func
        for args in chained_maskers(geometry):  # one shape of each kind suffices
            kind = "coarse" if len(args) > 4 else args[3]
            if kind not in chained:
                chained.add(kind)
                funcs[f"masker_chain_{len(funcs)}"] = schedule(get_kernel("masker")(*args),
                                                               target)
    text, fmt = toolchain.device_code(funcs, target)
    report = toolchain.assemble(text, fmt, target)
    assert len(report) >= len(funcs)  # every kernel is an entry (some launch several)
    convs = [k for k in report if k.name.startswith(CONV_KERNELS)]
    assert convs
    for kernel in report:
        assert kernel.registers <= 255
    for kernel in convs:
        assert kernel.spill_stores == 0 and kernel.spill_loads == 0, kernel
