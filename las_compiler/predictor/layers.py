"""The layers the predictor reasons about: a bottleneck block's shape, and the blocks of a
LAS-ResNet, without building the PyTorch model (shapes follow torchvision's ResNet)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry import BlockGeometry, PatchGeometry, patch_grid

STAGE_WIDTHS = (64, 128, 256, 512)
EXPANSION = 4
CANDIDATE_S = (1, 2, 4, 7, 8, 14)


@dataclass(frozen=True)
class BlockLayer:
    """One bottleneck: NHWC input (batch, height, width, in_channels), conv1 -> ``planes``,
    conv2 (3x3, ``stride``) -> ``planes``, conv3 -> ``out_channels``; ``downsample``: the
    shortcut is a strided 1x1 conv (a stage's first block)."""

    batch: int
    height: int
    width: int
    in_channels: int
    planes: int
    out_channels: int
    stride: int
    downsample: bool
    name: str = ""
    stage: int = 0

    @property
    def out_height(self) -> int:
        return (self.height - 1) // self.stride + 1

    @property
    def out_width(self) -> int:
        return (self.width - 1) // self.stride + 1

    def fits(self, granularity: int) -> bool:
        return 1 <= granularity <= min(self.out_height, self.out_width)

    def grid(self, granularity: int) -> tuple[int, int]:
        return patch_grid(self.out_height, self.out_width, granularity)

    def geometry(self, granularity: int) -> BlockGeometry:
        """The block as the compiler's kernels see it at this S (a LAS-ResNet downsample is a
        1x1 conv the block computes itself where its pipeline can)."""
        return BlockGeometry(PatchGeometry(self.batch, self.height, self.width, granularity,
                                           self.stride), self.in_channels, self.planes,
                             self.out_channels, projected=self.downsample,
                             shortcut_conv=self.downsample)

    def cells(self, granularity: int) -> int:
        gh, gw = self.grid(granularity)
        return self.batch * gh * gw

    def dense_macs(self) -> float:
        """Multiply-adds of the dense block (downsample included)."""
        hw_in, hw_out = self.height * self.width, self.out_height * self.out_width
        macs = hw_in * self.in_channels * self.planes + hw_out * self.planes * (
            9 * self.planes + self.out_channels)
        if self.downsample:
            macs += hw_out * self.in_channels * self.out_channels
        return float(self.batch * macs)

    def weight_bytes(self) -> float:
        """fp32 weights of the block's convs (BN folded; the masker's are negligible)."""
        c, w, k = self.in_channels, self.planes, self.out_channels
        return 4.0 * (c * w + 9 * w * w + w * k + (c * k if self.downsample else 0))

    def footprint_bytes(self) -> float:
        """Bytes one run of the block touches: weights, input, conv1/conv2 maps, output."""
        pixels_in = self.batch * self.height * self.width
        pixels_out = self.batch * self.out_height * self.out_width
        maps = pixels_in * (self.in_channels + self.planes) + pixels_out * (
            self.planes + self.out_channels)
        return self.weight_bytes() + 4.0 * maps

    def dilated_fraction(self, granularity: int, rate: float) -> float:
        """Expected fraction of input pixels some active patch's 3x3 window reads, for
        patches active independently with probability ``rate`` (conv1's work)."""
        return 1.0 - float(np.mean((1.0 - rate) ** self._window_counts(granularity)))

    def dilated_fraction_of(self, granularity: int, active_cells) -> float:
        """Fraction of input pixels read by the windows of exactly these active cells."""
        g = self.geometry(granularity).patches
        rows, cols = _windows(g.rows, g.stride, g.span_h), _windows(g.cols, g.stride, g.span_w)
        covered = np.zeros((self.batch, self.height, self.width), bool)
        for cell in np.asarray(active_cells, dtype=np.int64).ravel():
            b, rest = divmod(int(cell), g.cells_per_image)
            i, j = divmod(rest, g.cols.cells)
            covered[b, slice(*rows[i]), slice(*cols[j])] = True
        return float(covered.mean())

    def _window_counts(self, granularity: int) -> np.ndarray:
        """Per input pixel, how many patch windows contain it."""
        g = self.geometry(granularity).patches

        def axis(cells, span):
            counts = np.zeros(cells.in_size)
            for start, end in _windows(cells, g.stride, span):
                counts[start:end] += 1
            return counts

        return np.outer(axis(g.rows, g.span_h), axis(g.cols, g.span_w))


def _windows(axis, stride: int, span: int) -> list[tuple[int, int]]:
    """Input pixels ``[start, end)`` each cell's tile window reads along one axis (in the map)."""
    return [(max(first * stride - 1, 0), min(first * stride - 1 + span, axis.in_size))
            for first in axis.starts[:-1]]


def network_blocks(model: str, height: int = 224, width: int | None = None,
                   batch: int = 1) -> list[BlockLayer]:
    """Every bottleneck of ``model`` (``las_resnet50`` / ``las_resnet101``) in order."""
    from ..models.las_resnet import STAGE_DEPTHS, after_stem  # torch: imported when used

    if model not in STAGE_DEPTHS:
        raise ValueError(f"unknown model {model!r}; choose from {sorted(STAGE_DEPTHS)}")
    width = height if width is None else width
    h, w = after_stem(height), after_stem(width)
    in_channels, blocks = 64, []
    for stage, (depth, planes) in enumerate(zip(STAGE_DEPTHS[model], STAGE_WIDTHS,
                                                strict=True), start=1):
        for index in range(depth):
            stride = 2 if index == 0 and stage > 1 else 1
            layer = BlockLayer(batch, h, w, in_channels, planes, planes * EXPANSION, stride,
                               downsample=index == 0, name=f"layer{stage}.{index}", stage=stage)
            blocks.append(layer)
            h, w, in_channels = layer.out_height, layer.out_width, planes * EXPANSION
    return blocks
