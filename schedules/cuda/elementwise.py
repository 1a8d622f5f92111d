"""Element-wise LAS kernels and the masker on CUDA, through TVM's dlight GPU fallback.

Pattern matched: a LAS kernel with no reduction block of its own (``relu_inplace``,
``add_relu``, gathers, scatters, ``copy_inactive``, ``masker_flags``, the work-list prefix
copies); the masker has its own rule (``masker.py``), which the family tries first.

Schedule strategy: dlight's ``Fallback`` - inline what is injective, fuse each remaining
block's spatial loops and split them over ``blockIdx.x`` x ``threadIdx.x`` (the target's
threads per block); reductions stay serial per thread.
"""

from __future__ import annotations

from tvm.s_tir import dlight

from ..analysis import has_attr, kernel_kind
from .base import GPURule
from .scan import SCAN_KERNELS


class ElementwiseGPU(GPURule):
    def matches(self, func) -> bool:
        return kernel_kind(func) is not None and not has_attr(func, "las.reduce_block") \
            and not has_attr(func, "las.chain") and kernel_kind(func) not in SCAN_KERNELS

    def schedule(self, sch, func, target, knobs):
        scheduled = dlight.gpu.Fallback().apply(func, target, False)
        if scheduled is None:
            return None
        return scheduled
