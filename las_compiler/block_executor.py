"""Run one LAS bottleneck block with compiled kernels, in one of several kernel pipelines.

The Relax pipeline will chain these kernels inside a compiled module; this executor chains
them from Python (a few microseconds per call) so kernels and pipelines can be tested against
the PyTorch reference and benchmarked in isolation. Feature maps are NHWC.

Pipelines (``variant``), all starting with masker -> compaction (except ``dense``):

* ``"fused"``: conv1 (+BN+ReLU) on the pixels active windows read -> gather+conv3x3 (+BN+ReLU,
  halo read from the conv1 map) -> conv1x1+BN+scatter-add+ReLU in place into the shortcut.
* ``"masker_conv1"`` (S = 1, stride 1): the masker's 1x1 conv rides dense conv1's register
  tiles (``op.masker_conv1x1``, one read of x) -> S = 1 ``fused`` on groups of 12 active cells.
* ``"halo"``: conv1 (+BN+ReLU) on each active patch's halo window inside the gather+conv3x3
  kernel (no dense conv1, no conv1 map) -> conv1x1+BN+scatter-add+ReLU in place. Cheaper than
  ``fused`` at low r, dearer at high r (halo recompute): a per-layer choice.
* ``"whole"``: one kernel per block: conv1 on each active patch's halo, conv2, conv3 and the
  shortcut add, intermediates per patch; plus a copy of the shortcut for inactive cells.
* ``"unfused"``: conv1 dense -> gather -> conv3x3 on the gathered tensor -> conv1x1 ->
  scatter into a zero map -> add+ReLU over the whole map (the fusion ablation's baseline).
* ``"dense"``: the dense block with the same micro-kernels (our rules): the baseline every
  sparse pipeline must beat.

``fused`` updates its input buffer in place for blocks without downsample: the shortcut *is*
the input (already >= 0, so relu(identity) = identity), inactive pixels are never touched, and
in a network the block input is dead after the block. Callers that still need x pass a copy.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import tvm

from . import op
from .build import kernel_function
from .models import Bottleneck
from .op.geometry import PatchGeometry
from .op.params import CHANNEL_BLOCK, fold_bn, pack_weight, with_masker_tile

VARIANTS = ("fused", "masker_conv1", "halo", "whole", "unfused", "dense")


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
        self.channels = (block.in_channels, block.width, block.out_channels)
        self.has_downsample = block.downsample is not None
        self.device = tvm.cpu()
        self.params = {k: (tvm.runtime.tensor(v, self.device) if v is not None else None)
                       for k, v in vars(BottleneckParams.from_block(block)).items()}
        self.out_shape = (batch, g.out_height, g.out_width, block.out_channels)
        self._target = target
        self.dummy = self._empty(1, 1)
        c, w, k = self.channels
        if self.has_downsample:
            self.k_down = self._kernel(op.conv1x1, batch, height, width, c, k, block.stride,
                                       "none", label="downsample")
            self.identity = self._empty(int(np.prod(self.out_shape[:3])), k)
        if variant == "masker_conv1" and (block.granularity, block.stride) != (1, 1):
            raise ValueError(f"masker_conv1 needs S = 1 and stride 1 (the masker and conv1 "
                             f"read the same pixels); got S = {block.granularity}, "
                             f"stride = {block.stride}")
        if variant not in ("whole", "halo"):
            self.k_conv1 = self._kernel(op.conv1x1, batch, height, width, c, w, 1, "relu",
                                        label="conv1")
            self.h1 = self._empty(batch * height * width, w)
        self._block = block
        if variant != "dense":
            cells = g.num_cells
            self.k_masker = self._kernel(op.masker, g, c)
            self.k_compact = self._kernel(op.compact, cells)
            self.mask, self.idx = self._empty(cells, dtype="int32"), self._empty(cells,
                                                                                 dtype="int32")
            self.count = self._empty(1, dtype="int32")
        getattr(self, f"_build_{variant}")()
        self.last_active = None
        self._fixed = None  # (n, partition, count) from fix_active_cells()
        self._timings: dict[str, list[float]] | None = None  # per-kernel, while profiling

    # -- helpers ---------------------------------------------------------------------------
    def _empty(self, *shape, dtype="float32"):
        return tvm.runtime.empty(shape, dtype, self.device)

    def _kernel(self, generator, *args, label: str | None = None):
        """A compiled kernel; ``label`` names it in profiles (default: the generator's name)."""
        func = kernel_function(generator, *args, target=self._target)
        name = label or generator.__name__

        def call(*call_args):
            if self._timings is None:
                return func(*call_args)
            start = time.perf_counter()  # CPU kernels return when done: no sync needed
            func(*call_args)
            self._timings[name].append((time.perf_counter() - start) * 1e3)

        return call

    def _flat(self, x, channels):
        g = self.geometry
        return x._create_view((g.batch * g.height * g.width, channels))

    def _shortcut(self, x):
        """The identity branch as an NHWC view: x itself, or the dense downsample result."""
        if not self.has_downsample:
            return x
        c = self.channels[0]
        down_in = self._flat(x, c) if self.geometry.stride == 1 else x  # stride 1 reads flat
        self.k_down(down_in, self.params["wd"], self.params["bd"], self.dummy, self.identity)
        return self.identity._create_view(self.out_shape)

    def _conv1(self, x):
        c, w, _ = self.channels
        g = self.geometry
        self.k_conv1(self._flat(x, c), self.params["w1"], self.params["b1"], self.dummy, self.h1)
        return self.h1._create_view((g.batch, g.height, g.width, w))

    def fix_active_cells(self, active_cells: np.ndarray | None) -> None:
        """Benchmarks: use this patch list instead of the masker's (None: back to the masker).

        The masker and compaction still run on every call, so the timed work is unchanged;
        only their result is replaced, which makes a chosen activation rate reproducible.
        """
        if active_cells is None:
            self._fixed = None
            return
        active = np.unique(np.asarray(active_cells, dtype="int32"))
        if active.size and (active[0] < 0 or active[-1] >= self.geometry.num_cells):
            raise ValueError(f"active cells must lie in [0, {self.geometry.num_cells})")
        rest = np.setdiff1d(np.arange(self.geometry.num_cells, dtype="int32"), active)
        partition = tvm.runtime.tensor(np.concatenate([active, rest]), self.device)
        count = tvm.runtime.tensor(np.array([len(active)], "int32"), self.device)
        flags = np.zeros(self.geometry.num_cells, "int32")
        flags[active] = 1
        self._fixed = (len(active), partition, count, tvm.runtime.tensor(flags, self.device))

    def _active(self, x):
        """Masker + compaction; returns (n, idx view of n, full partition, count tensor)."""
        prm = self.params
        self.k_masker(x, prm["masker_w"], prm["masker_b"], self.mask)
        self.k_compact(self.mask, self.idx, self.count)
        if self._fixed is not None:
            n, partition, count, _ = self._fixed
        else:
            n, partition, count = int(self.count.numpy()[0]), self.idx, self.count
        self.last_active = n
        return n, partition._create_view((n,)), partition, count

    # -- pipelines -------------------------------------------------------------------------
    def _build_dense(self):
        g, (_, w, k) = self.geometry, self.channels
        self.k_conv2 = self._kernel(op.conv3x3, g.batch, g.height, g.width, w, w, g.stride)
        self.k_conv3 = self._kernel(op.conv1x1, g.batch, g.out_height, g.out_width, w, k, 1,
                                    "add_relu")
        n_out = int(np.prod(self.out_shape[:3]))
        self.h2, self.out = self._empty(n_out, w), self._empty(n_out, k)

    def _run_dense(self, x):
        prm = self.params
        shortcut = self._shortcut(x)._create_view((int(np.prod(self.out_shape[:3])),
                                                   self.out_shape[3]))
        self.k_conv2(self._conv1(x), prm["w2"], prm["b2"], self.dummy, self.h2)
        self.k_conv3(self.h2, prm["w3"], prm["b3"], shortcut, self.out)
        return self.out._create_view(self.out_shape)

    def _build_fused(self):
        """As the compiler lowers ``fused``: conv1 only on the pixels active windows read, and
        S = 1 blocks on groups of 12 active cells (see ``op.sparse_rows``)."""
        g, (c, w, k) = self.geometry, self.channels
        pixels = g.batch * g.height * g.width
        self.k_dilate = self._kernel(op.dilated_rows, g)
        self.k_conv1_rows = self._kernel(op.conv1x1_rows, pixels, c, w, label="conv1")
        self.conv1_rows = self._empty(op.max_row_groups(g), op.ROW_GROUP, dtype="int32")
        self.row_count = self._empty(1, dtype="int32")
        if g.granularity == 1:
            self.k_cells = self._kernel(op.active_rows, g)
            self.k_gather_conv = self._kernel(op.gather_conv3x3_rows, g, w, w)
            self.k_scatter = self._kernel(op.conv1x1_scatter_add_rows, g, w, k)
            self.cell_rows = self._empty(-(-g.num_cells // op.ROW_GROUP), op.ROW_GROUP,
                                         dtype="int32")
            self.y2 = self._empty(*self.cell_rows.shape, w)
            if self.has_downsample:
                self.k_relu = self._kernel(op.relu_inplace, int(np.prod(self.out_shape)))
        else:
            self.k_gather_conv = self._kernel(op.gather_conv3x3, g, w, w)
            self._build_scatter_add()

    def _groups(self, kernel, flags, rows):
        kernel(flags, rows, self.row_count)
        return rows._create_view((int(self.row_count.numpy()[0]), op.ROW_GROUP))

    def _run_fused(self, x):
        prm, g = self.params, self.geometry
        n, idx, _, _ = self._active(x)
        flags = self._fixed[3] if self._fixed is not None else self.mask
        c, w = self.channels[:2]
        self.k_conv1_rows(self._flat(x, c), self._groups(self.k_dilate, flags, self.conv1_rows),
                          prm["w1"], prm["b1"], self.h1)
        h1 = self.h1._create_view((g.batch, g.height, g.width, w))
        if g.granularity > 1:
            y2 = self.y2._create_view((n, g.granularity**2, w))
            self.k_gather_conv(h1, idx, prm["w2"], prm["b2"], y2)
            return self._scatter_add(x, y2, idx)
        return self._single_pixel_tail(x, h1, self._groups(self.k_cells, flags,
                                                            self.cell_rows))

    def _build_masker_conv1(self):
        g, (c, w, k) = self.geometry, self.channels
        block = self._block
        w1, b1 = fold_bn(block.conv1, block.bn1)
        masker = block.masker.conv2
        wt, bt = with_masker_tile(w1, b1, masker.weight.detach().float().numpy(),
                                  masker.bias.detach().float().numpy())
        self.params["w1_masker"] = tvm.runtime.tensor(pack_weight(wt), self.device)
        self.params["b1_masker"] = tvm.runtime.tensor(bt, self.device)
        self.k_masker_conv1 = self._kernel(op.masker_conv1x1, g.batch, g.height, g.width, c, w,
                                           label="masker+conv1")
        self.k_flags = self._kernel(op.masker_flags, g.num_cells)
        self.logits = self._empty(g.num_cells, CHANNEL_BLOCK)
        self.k_cells = self._kernel(op.active_rows, g)
        self.k_gather_conv = self._kernel(op.gather_conv3x3_rows, g, w, w)
        self.k_scatter = self._kernel(op.conv1x1_scatter_add_rows, g, w, k)
        self.cell_rows = self._empty(-(-g.num_cells // op.ROW_GROUP), op.ROW_GROUP,
                                     dtype="int32")
        self.row_count = self._empty(1, dtype="int32")
        self.y2 = self._empty(*self.cell_rows.shape, w)
        if self.has_downsample:
            self.k_relu = self._kernel(op.relu_inplace, int(np.prod(self.out_shape)))

    def _run_masker_conv1(self, x):
        prm, g = self.params, self.geometry
        c, w = self.channels[:2]
        self.k_masker_conv1(self._flat(x, c), prm["w1_masker"], prm["b1_masker"], self.h1,
                            self.logits)
        self.k_flags(self.logits, self.mask)
        flags = self._fixed[3] if self._fixed is not None else self.mask
        h1 = self.h1._create_view((g.batch, g.height, g.width, w))
        cells = self._groups(self.k_cells, flags, self.cell_rows)
        self.last_active = None  # no compaction here: the cell groups carry the count
        return self._single_pixel_tail(x, h1, cells)

    def _single_pixel_tail(self, x, h1, cells):
        """S = 1: gather+conv3x3 and conv1x1+scatter-add on groups of 12 active cells."""
        prm, w = self.params, self.channels[1]
        y2 = self.y2._create_view((cells.shape[0], op.ROW_GROUP, w))
        self.k_gather_conv(h1, cells, prm["w2"], prm["b2"], y2)
        out = self._shortcut(x)
        self.k_scatter(y2, cells, prm["w3"], prm["b3"], out, out)
        if self.has_downsample:
            flat = out._create_view((int(np.prod(self.out_shape)),))
            self.k_relu(flat, flat)
        return out

    def _build_scatter_add(self):
        """Patch buffer, scatter kernel (and ReLU for downsample blocks) of fused and halo."""
        g, (_, w, k) = self.geometry, self.channels
        self.y2 = self._empty(g.num_cells, g.granularity**2, w)
        self.k_scatter = self._kernel(op.conv1x1_scatter_add, g, w, k)
        if self.has_downsample:
            self.k_relu = self._kernel(op.relu_inplace, int(np.prod(self.out_shape)))

    def _scatter_add(self, x, y2, idx):
        """conv3 + shortcut + ReLU of the active patches, in place into the shortcut."""
        out = self._shortcut(x)
        self.k_scatter(y2, idx, self.params["w3"], self.params["b3"], out, out)
        if self.has_downsample:  # inactive pixels need relu(identity); relu is idempotent
            flat = out._create_view((int(np.prod(self.out_shape)),))
            self.k_relu(flat, flat)
        return out

    def _build_halo(self):
        g, (c, w, _) = self.geometry, self.channels
        self.k_halo_conv = self._kernel(op.halo_conv3x3, g, c, w)
        self._build_scatter_add()

    def _run_halo(self, x):
        prm, g = self.params, self.geometry
        n, idx, _, _ = self._active(x)
        y2 = self.y2._create_view((n, g.granularity**2, self.channels[1]))
        self.k_halo_conv(x, idx, prm["w1"], prm["b1"], prm["w2"], prm["b2"], y2)
        return self._scatter_add(x, y2, idx)

    def _build_whole(self):
        g, (c, w, k) = self.geometry, self.channels
        self.k_block = self._kernel(op.fused_block, g, c, w, k)
        self.k_copy = self._kernel(op.copy_inactive, g, k)
        if not self.has_downsample:
            self.out = self._empty(*self.out_shape)

    def _run_whole(self, x):
        prm = self.params
        n, _, partition, _ = self._active(x)
        identity = self._shortcut(x)
        out = identity if self.has_downsample else self.out  # may alias a separate identity
        self.k_block(x, partition, n, prm["w1"], prm["b1"], prm["w2"], prm["b2"], prm["w3"],
                     prm["b3"], identity, out)
        self.k_copy(partition, n, identity, out)
        return out

    def _build_unfused(self):
        g, (_, w, k) = self.geometry, self.channels
        cells, pixels = g.num_cells, g.granularity**2
        self.gathered = self._empty(cells, g.span, g.span, w)
        self.y2 = self._empty(cells, pixels, w)
        self.z = self._empty(cells, pixels, k)
        self.scattered = self._empty(*self.out_shape)
        self.out = self._empty(*self.out_shape)
        size = int(np.prod(self.out_shape))
        self.k_gather = self._kernel(op.gather_patches, g, w)
        self.k_conv2 = self._kernel(op.gathered_conv3x3, g, w, w)
        self.k_conv3 = self._kernel(op.patch_conv1x1, pixels, w, k)
        self.k_scatter = self._kernel(op.scatter_patches, g, k)
        self.k_add = self._kernel(op.add_relu, size)

    def _run_unfused(self, x):
        prm, g = self.params, self.geometry
        n, idx, partition, count = self._active(x)
        w, k = self.channels[1:]
        gathered = self.gathered._create_view((n, g.span, g.span, w))
        y2 = self.y2._create_view((n, g.granularity**2, w))
        self.k_gather(self._conv1(x), idx, gathered)
        self.k_conv2(gathered, prm["w2"], prm["b2"], y2)
        self.k_conv3(y2, prm["w3"], prm["b3"], self.z._create_view((n, g.granularity**2, k)))
        self.k_scatter(self.z, partition, count, self.scattered)
        size = (int(np.prod(self.out_shape)),)
        self.k_add(self._shortcut(x)._create_view(size), self.scattered._create_view(size),
                   self.out._create_view(size))
        return self.out

    def profile(self, x: tvm.runtime.Tensor, repeats: int = 20) -> dict[str, float]:
        """Median milliseconds per kernel over ``repeats`` runs (after one warm-up run), plus
        ``"total"`` (median of whole runs, including the Python glue between kernels)."""
        self.run(x)
        self._timings = defaultdict(list)
        totals = []
        try:
            for _ in range(repeats):
                start = time.perf_counter()
                self.run(x)
                totals.append((time.perf_counter() - start) * 1e3)
            per_run = {k: sorted(v)[len(v) // 2] * len(v) / repeats
                       for k, v in self._timings.items()}  # kernels called twice count twice
        finally:
            self._timings = None
        return {**per_run, "total": sorted(totals)[len(totals) // 2]}

    def run(self, x: tvm.runtime.Tensor):
        """Run the block on NHWC ``x`` (overwritten by in-place pipelines); returns NHWC output."""
        return getattr(self, f"_run_{self.variant}")(x)
