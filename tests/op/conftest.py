"""Kernel-test fixtures: every kernel test runs twice, on the host CPU with the CPU rules and
with the CUDA rules' schedule emulated serially on the CPU (``target.EmulatedGPU``): the GPU
schedules' numbers are checked here, without a GPU."""

import pytest

from las_compiler.compiler import resolve_target
from las_compiler.target import EmulatedGPU, host_target


@pytest.fixture(scope="session", params=["host", "cuda-emulated"])
def target(request):
    if request.param == "host":
        return host_target()
    return EmulatedGPU(resolve_target("nvidia/nvidia-h100"))
