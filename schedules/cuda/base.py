"""CUDA rule family: availability from target keys, resource limits from the target.

Every limit a rule needs is read from the target (TVM's NVIDIA tags carry them: threads per
block, shared memory per block, registers per block, warp size), so one rule serves sm_61 to
sm_90; nothing here names an architecture.
"""

from __future__ import annotations

from dataclasses import dataclass

import tvm

from ..base import LASRule


class GPURule(LASRule):
    """Available on CUDA targets (keys ``("cuda", "gpu")``)."""

    def is_target_available(self, target: tvm.target.Target) -> bool:
        return "cuda" in target.keys


@dataclass(frozen=True)
class Limits:
    """What one thread block may use on ``target``."""

    threads: int  # threads per block
    shared_bytes: int  # shared memory per block
    registers: int  # 32-bit registers per block
    warp: int

    @classmethod
    def of(cls, target: tvm.target.Target) -> Limits:
        attrs = target.attrs

        def get(key, default):
            value = attrs.get(key, None)
            return int(value) if value is not None else default

        return cls(threads=get("max_threads_per_block", get("max_num_threads", 1024)),
                   shared_bytes=get("max_shared_memory_per_block", 48 * 1024),
                   registers=get("registers_per_block", 64 * 1024),
                   warp=get("thread_warp_size", 32))

    def constraints(self) -> dict[str, int]:
        """The constraints of ``tvm.s_tir.analysis.verify_gpu_code``."""
        return {"max_threads_per_block": self.threads,
                "max_shared_memory_per_block": self.shared_bytes,
                "max_local_memory_per_block": 2 ** 31 - 1,
                "max_thread_x": self.threads, "max_thread_y": self.threads,
                "max_thread_z": 64, "max_vthread": 8, "max_vector_bytes": 16}
