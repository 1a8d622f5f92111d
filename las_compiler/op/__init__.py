"""Kernel generators: (layer shape, S, stride) -> a target-neutral TIR PrimFunc.

Conventions shared by every kernel (and assumed by the schedule rules in
``las_compiler.schedules``):

* Feature maps are NHWC float32. Channels innermost make a pixel's channels one contiguous
  vector, so gathering a patch's halo is a few contiguous copies and the output-channel loop
  vectorises; NCHW would turn every gathered pixel into C strided loads.
* Weights are BN-folded and packed ``[K/16][kh][kw][C][16]`` (see :mod:`.params`).
* A sparse kernel receives ``idx`` (int32, shape ``(n,)`` with **symbolic** n): flat patch-cell
  ids ``b * gh * gw + i * gw + j`` over the batch-flattened patch grid, as the masker's
  compaction emits them. One compiled kernel serves every n, including 0.
* Patch outputs are flat ``(n, S*S, K)``: tiling a fused (i, j) pixel axis of an
  ``(n, S, S, K)`` buffer writes back rectangles that overwrite neighbours (a silent-wrong
  trap measured in the probes), so pixel axes are declared flat.
* Each kernel is: optional producer blocks (pad / gather staging), one reduction block named
  by the function attribute ``las.reduce_block`` that accumulates into an intermediate buffer,
  and one epilogue block that writes the real output (bias, ReLU, residual add, scattered
  stores). Loop order of the reduction block: ``[outer..., pixel, channel, reductions...]``;
  ``las.num_reduce`` says how many reductions. Rules tile pixel x channel and compute the
  epilogue on the register tile.
* ``las.kernel`` is the kernel's registered name (:mod:`.registry`, unique): rules dispatch on
  it, the block-pipeline table lists steps by it, the latency predictor models it.
"""

from .dense import conv1x1, conv2d, copy, relu_inplace
from .fused_block import copy_inactive, fused_block
from .gather_conv import gather_conv3x3, halo_conv3x3
from .masker import active_prefix, compact, masker, masker_conv1x1, masker_flags
from .registry import KERNELS, get_kernel, kernel
from .scatter_conv import conv1x1_scatter_add
from .sparse_rows import (
    ROW_GROUP,
    active_rows,
    conv1x1_rows,
    conv1x1_scatter_add_rows,
    dilated_rows,
    gather_conv3x3_rows,
    max_row_groups,
    pixel_rows,
    row_groups_prefix,
)
from .unfused import add_relu, gather_patches, gathered_conv3x3, patch_conv1x1, scatter_patches

__all__ = [
    "KERNELS",
    "ROW_GROUP",
    "get_kernel",
    "kernel",
    "max_row_groups",
    "active_prefix",
    "active_rows",
    "add_relu",
    "compact",
    "conv1x1",
    "conv1x1_rows",
    "conv1x1_scatter_add",
    "conv1x1_scatter_add_rows",
    "conv2d",
    "copy",
    "copy_inactive",
    "dilated_rows",
    "fused_block",
    "gather_conv3x3",
    "gather_conv3x3_rows",
    "gather_patches",
    "gathered_conv3x3",
    "halo_conv3x3",
    "masker",
    "masker_conv1x1",
    "masker_flags",
    "patch_conv1x1",
    "pixel_rows",
    "relu_inplace",
    "row_groups_prefix",
    "scatter_patches",
]
