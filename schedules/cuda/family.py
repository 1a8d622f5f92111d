"""The CUDA family: NVIDIA GPUs and Jetsons, sm_61 (GTX 1080; the TX2 is sm_62) to sm_90.

What a CUDA build needs beyond its rules lives beside them: the host CPU a Jetson tag leaves
out, the device toolchain (``toolchain.py``: nvcc, or LLVM's NVPTX and CUDA 12's ptxas for
the older archs), the packer that puts the device binary into the exported library
(``device_binary.py``) and the predictor's GPU profiles by arch.
"""

from __future__ import annotations

import functools

from ..family import TargetFamily

MIN_ARCH = 61  # Pascal (GTX 1080, TX2 is sm_62): what the CUDA rules are written for
# host CPUs of the Jetson tags TVM ships without one (the Orin and Thor tags carry theirs)
JETSON_HOSTS = {
    "sm_53": {"mcpu": "cortex-a57", "num-cores": 4},  # Nano, TX1
    "sm_62": {"mcpu": "cortex-a57", "num-cores": 4},  # TX2: 4 A57 (+2 Denver, not used)
    "sm_72": {"mcpu": "carmel", "num-cores": 8},  # AGX Xavier
}
# compute capability -> the predictor's built-in profile of that device family
PROFILES = {"sm_53": "nano", "sm_61": "gtx1080", "sm_62": "tx2", "sm_70": "v100",
            "sm_86": "rtx3090", "sm_87": "orin", "sm_90": "h100"}


def sm_number(arch: str) -> int | None:
    """``"sm_87"`` -> 87 (``"sm_90a"`` -> 90); None for anything else."""
    digits = arch[3:].rstrip("a") if arch.startswith("sm_") else ""
    return int(digits) if digits.isdigit() else None


class _Backend:
    """TVM's Relax CUDA backend, without the dlight scheduling its legalisation ends with:
    phase 5 schedules every kernel (our rules first, then the same dlight GPU rules)."""

    def __init__(self):
        from tvm.relax.backend.cuda import pipeline

        self.pipeline = pipeline

    def legalize_passes(self, target):
        return [p for p in self.pipeline.legalize_passes(target)
                if p.info.name != "ApplyDefaultSchedule"]

    def dataflow_lower_passes(self, target):
        return self.pipeline.dataflow_lower_passes(target)

    def finalize_passes(self, target):
        return self.pipeline.finalize_passes(target)


class CUDAFamily(TargetFamily):
    name = "cuda"
    description = "NVIDIA GPUs and Jetsons (cuda targets and nvidia/* tags, sm_61 and up)"
    runtime_device = "cuda"
    block_limited = True  # a per-patch chain's intermediates live in shared memory
    masker_links_across_grids = True  # a masker is its read of the map: half it at r = 0.5

    @functools.cache  # noqa: B019 - one family object per process; rules are stateless
    def rules(self) -> tuple:
        from .elementwise import ElementwiseGPU
        from .masker import MaskerGPU
        from .patch_chain import PatchChainGPU
        from .scan import ScanGPU
        from .tiled_conv import TiledConvGPU

        return (TiledConvGPU(), PatchChainGPU(), ScanGPU(), MaskerGPU(), ElementwiseGPU())

    def foreign_rules(self) -> list:
        from tvm.s_tir import dlight

        # what TVM's own CUDA pipeline applies to legalised operators
        return [dlight.gpu.Matmul(), dlight.gpu.GEMV(), dlight.gpu.Reduction(),
                dlight.gpu.GeneralReduction(), dlight.gpu.Fallback()]

    def backend(self):
        return _Backend()

    def tir_pipeline(self, target):
        from .toolchain import tir_pipeline

        return tir_pipeline(target)

    def complete(self, target):
        """A CUDA target with the host its code runs beside: the board's aarch64 CPU for
        Jetson tags (TVM leaves it out for some), this machine otherwise; an arch the rules do
        not serve, or a bare ``cuda`` whose arch TVM guessed without a GPU, is one clear
        error."""
        import tvm

        from ...target import host_target_dict

        arch = str(target.attrs.get("arch", ""))
        if (sm_number(arch) or 0) < MIN_ARCH:
            raise ValueError(f"CUDA arch {arch or '?'} is not supported (sm_{MIN_ARCH} and "
                             "newer); name the GPU, e.g. 'nvidia/jetson-tx2', "
                             "'nvidia/nvidia-h100' or {\"kind\": \"cuda\", \"arch\": \"sm_90\"} "
                             "(a bare 'cuda' on a machine without a GPU means sm_50)")
        if target.host is not None:
            return target
        tag = str(target.attrs.get("tag", "") or "")
        if "jetson" in tag or (arch in JETSON_HOSTS and not tag):
            host = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", **JETSON_HOSTS.get(arch, {})}
        else:
            host = host_target_dict()
        return tvm.target.Target(target, host=tvm.target.Target(host))

    def toolchain_problem(self, target) -> str | None:
        from .toolchain import toolchain_available

        return toolchain_available(target)

    def device_code_packer(self, target):
        from .device_binary import DeviceCodePacker

        return DeviceCodePacker(target)

    def describe_device_code(self, summary: dict) -> str:
        from .toolchain import describe_device_code

        return describe_device_code(summary)

    def hardware(self, target):
        from ...predictor.hardware import HardwareError
        from ...predictor.profiles import get_hardware

        arch = str(target.attrs.get("arch", "") or "")
        arch = arch[:-1] if arch.endswith("a") else arch  # sm_90a: sm_90 plus Hopper extras
        if arch in PROFILES:
            return get_hardware(PROFILES[arch])
        raise HardwareError(f"no hardware profile for CUDA arch {arch or '(none)'}; known: "
                            f"{', '.join(f'{a} ({n})' for a, n in PROFILES.items())}")


FAMILY = CUDAFamily()
