"""CPU rule family: availability from target keys, vector width from LLVM."""

from __future__ import annotations

import tvm

from ..base import LASRule


class CPURule(LASRule):
    """Available on LLVM CPU targets: x86 keys ``("cpu",)``, aarch64 ``("arm_cpu", "cpu")``."""

    def is_target_available(self, target: tvm.target.Target) -> bool:
        return "cpu" in target.keys


def vector_bits(target: tvm.target.Target) -> int:
    """Widest float SIMD register of the target: 512 (AVX-512), 256 (AVX/AVX2), 128 (NEON/SSE).

    Read from the LLVM feature set of the target's mcpu/mattr. (``llvm_get_vector_width``
    answers 512 for AVX2-only CPUs such as znver3, which picked a spilling tile.)
    """
    from ...target import simd_bits, target_features

    return simd_bits(target_features(target))
