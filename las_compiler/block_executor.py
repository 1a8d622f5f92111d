"""Run one LAS bottleneck block with compiled kernels, in one of several kernel pipelines.

The Relax pipeline will chain these kernels inside a compiled module; this executor chains
them from Python (a few microseconds per call) so kernels and pipelines can be tested against
the PyTorch reference and benchmarked in isolation. Feature maps are NHWC.

Pipelines (``variant``):

* ``"fused"``: masker -> compaction -> conv1 (dense, BN+ReLU fused) -> gather+conv3x3
  (+BN+ReLU) -> conv1x1+BN+scatter-add+ReLU in place into the shortcut.
* ``"dense"``: the same block computed densely with the same kernels' dense forms (our rules):
  the baseline every sparse variant must beat.

Blocks without downsample update their input buffer in place: the shortcut *is* the input
(already >= 0, so relu(identity) = identity), inactive pixels are never touched, and the block
input is dead after the block in a network. Callers that still need x pass a copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tvm

from . import op
from .build import kernel_function
from .models import Bottleneck
from .op.geometry import PatchGeometry
from .op.params import fold_bn, pack_weight

VARIANTS = ("fused", "dense")


@dataclass
class BottleneckParams:
    """BN-folded, packed parameters of a bottleneck block (numpy, float32)."""

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray
    w3: np.ndarray
    b3: np.ndarray
    wd: np.ndarray | None
    bd: np.ndarray | None
    masker_w: np.ndarray
    masker_b: np.ndarray

    @classmethod
    def from_block(cls, block: Bottleneck) -> BottleneckParams:
        w1, b1 = fold_bn(block.conv1, block.bn1)
        w2, b2 = fold_bn(block.conv2, block.bn2)
        w3, b3 = fold_bn(block.conv3, block.bn3)
        wd = bd = None
        if block.downsample is not None:
            wd, bd = fold_bn(block.downsample[0], block.downsample[1])
            wd = pack_weight(wd)
        conv = block.masker.conv2
        return cls(pack_weight(w1), b1, pack_weight(w2), b2, pack_weight(w3), b3, wd, bd,
                   conv.weight.detach().float().numpy()[:, :, 0, 0].copy(),
                   conv.bias.detach().float().numpy().copy())


class BlockExecutor:
    """Compiled kernels + buffers for one block at one input shape.

    Parameters
    ----------
    block
        An eval-mode :class:`Bottleneck` (weights are read once, at construction).
    batch, height, width
        Input shape (NHWC); S must fit the block's output map.
    target
        A CPU ``tvm.target.Target`` (kernels run on ``tvm.cpu()``).
    variant
        One of :data:`VARIANTS`.
    """

    def __init__(self, block: Bottleneck, batch: int, height: int, width: int, target,
                 variant: str = "fused"):
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; choose from {VARIANTS}")
        if block.training:
            raise ValueError("BlockExecutor needs an eval-mode block (BN folding)")
        self.variant = variant
        self.geometry = g = PatchGeometry(batch, height, width, block.granularity, block.stride)
        self.in_channels, self.width_, self.out_channels = (
            block.in_channels, block.width, block.out_channels)
        self.has_downsample = block.downsample is not None
        dev = self.device = tvm.cpu()
        p = BottleneckParams.from_block(block)
        self.params = {k: (tvm.runtime.tensor(v, dev) if v is not None else None)
                       for k, v in vars(p).items()}
        n_in, c, w, k = batch * height * width, block.in_channels, block.width, block.out_channels
        n_out = batch * g.out_height * g.out_width
        self.out_shape = (batch, g.out_height, g.out_width, k)
        empty = lambda shape, dtype="float32": tvm.runtime.empty(shape, dtype, dev)  # noqa: E731
        self.h1 = empty((n_in, w))
        self.dummy = empty((1, 1))
        build = lambda gen, *args: kernel_function(gen, *args, target=target)  # noqa: E731
        self.k_conv1 = build(op.conv1x1, batch, height, width, c, w, 1, "relu")
        if self.has_downsample:
            self.k_down = build(op.conv1x1, batch, height, width, c, k, block.stride, "none")
            self.identity = empty((n_out, k))
        if variant == "dense":
            self.h2 = empty((n_out, w))
            self.k_conv2 = build(op.conv3x3, batch, height, width, w, w, block.stride)
            self.k_conv3 = build(op.conv1x1, batch, g.out_height, g.out_width, w, k, 1,
                                 "add_relu")
            self.out = empty((n_out, k))
        else:
            cells = g.num_cells
            self.mask, self.idx = empty((cells,), "int32"), empty((cells,), "int32")
            self.count = empty((1,), "int32")
            self.y2 = empty((cells, g.granularity**2, w))
            self.k_masker = build(op.masker, g, c)
            self.k_compact = build(op.compact, cells)
            self.k_gather_conv = build(op.gather_conv3x3, g, w, w)
            self.k_scatter = build(op.conv1x1_scatter_add, g, w, k)
            if self.has_downsample:
                self.k_relu = build(op.relu_inplace, n_out * k)
        self.last_active = None

    def run(self, x: tvm.runtime.Tensor, active_cells: np.ndarray | None = None):
        """Run the block on NHWC ``x`` (overwritten by in-place variants); returns NHWC output.

        ``active_cells`` (benchmarks): use this patch list instead of the masker's, after still
        running the masker and compaction, so a fixed activation rate can be timed.
        """
        prm, g = self.params, self.geometry
        flat_in = x._create_view((g.batch * g.height * g.width, self.in_channels))
        self.k_conv1(flat_in, prm["w1"], prm["b1"], self.dummy, self.h1)
        h1 = self.h1._create_view((g.batch, g.height, g.width, self.width_))
        if self.has_downsample:
            down_in = flat_in if self.geometry.stride == 1 else x  # stride 1 reads (N*H*W, C)
            self.k_down(down_in, prm["wd"], prm["bd"], self.dummy, self.identity)
            shortcut = self.identity
        else:
            shortcut = flat_in
        if self.variant == "dense":
            self.k_conv2(h1, prm["w2"], prm["b2"], self.h2)
            self.k_conv3(self.h2, prm["w3"], prm["b3"], shortcut, self.out)
            return self.out._create_view(self.out_shape)

        self.k_masker(x, prm["masker_w"], prm["masker_b"], self.mask)
        self.k_compact(self.mask, self.idx, self.count)
        if active_cells is not None:
            n = len(active_cells)
            idx = tvm.runtime.tensor(np.asarray(active_cells, dtype="int32"), self.device)
        else:
            n = int(self.count.numpy()[0])
            idx = self.idx._create_view((n,))
        self.last_active = n
        y2 = self.y2._create_view((n, g.granularity**2, self.width_))
        out = shortcut._create_view(self.out_shape)
        self.k_gather_conv(h1, idx, prm["w2"], prm["b2"], y2)
        self.k_scatter(y2, idx, prm["w3"], prm["b3"], out, out)
        if self.has_downsample:
            flat_out = shortcut._create_view((int(np.prod(self.out_shape)),))
            self.k_relu(flat_out, flat_out)
        return out
