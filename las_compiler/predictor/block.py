"""Block latency = the sum of its kernels' latencies, for each kernel pipeline the compiler
(and ``BlockExecutor``) can run, plus the host syncs that turn active counts into shapes.

Kernel labels are the ones ``BlockExecutor.profile`` reports, so calibration can fit the
model kernel by kernel and reports can line predictions up with measurements.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from . import kernels as K
from .hardware import Hardware
from .layers import BlockLayer

PIPELINES = ("fused", "masker_conv1", "halo", "whole", "unfused", "dense")
F32 = K.F32


@dataclass(frozen=True)
class BlockPrediction:
    layer: BlockLayer
    granularity: int | None
    rate: float
    pipeline: str
    kernels: tuple[tuple[str, float], ...]  # (label, microseconds)
    sync_us: float

    @property
    def total_us(self) -> float:
        return sum(t for _, t in self.kernels) + self.sync_us

    @property
    def total_ms(self) -> float:
        return self.total_us / 1e3


def _shortcut(hw, tile, layer: BlockLayer) -> list[tuple[str, K.Work]]:
    if not layer.downsample:
        return []
    pixels = layer.batch * layer.out_height * layer.out_width
    return [("downsample", K.dense_conv1x1(hw, tile, layer, layer.in_channels,
                                           layer.out_channels, pixels, "conv1x1",
                                           K._map_bytes(layer, layer.in_channels),
                                           stride=layer.stride))]


def _relu(hw, layer: BlockLayer) -> list[tuple[str, K.Work]]:
    if not layer.downsample:
        return []
    size = K._map_bytes(layer, layer.out_channels, out=True)
    return [("relu_inplace", K.streaming(hw, "relu_inplace", 2 * size, size, size / 256))]


def block_work(hw: Hardware, layer: BlockLayer, granularity: int | None, pipeline: str,
               active: float, dilated_pixels: float, footprint_bytes: float | None = None
               ) -> tuple[list[tuple[str, K.Work]], int]:
    """(labelled kernels, number of host syncs) of one block; ``active`` cells (expected or
    exact), ``dilated_pixels``: input pixels the active windows read. ``footprint_bytes``:
    what runs between two runs of the block touches (default: the block itself, run over and
    over); each kernel's first pass over its weights comes from the level that holds it."""
    footprint = layer.footprint_bytes() if footprint_bytes is None else footprint_bytes
    work, syncs = _block_work(hw, layer, granularity, pipeline, active, dilated_pixels)
    return [(label, K.with_cold_weights(hw, w, footprint)) for label, w in work], syncs


def _block_work(hw: Hardware, layer: BlockLayer, granularity: int | None, pipeline: str,
                active: float, dilated_pixels: float) -> tuple[list[tuple[str, K.Work]], int]:
    tile = K.TileModel.for_hardware(hw)
    c, w, k = layer.in_channels, layer.planes, layer.out_channels
    pixels_in = layer.batch * layer.height * layer.width
    pixels_out = layer.batch * layer.out_height * layer.out_width
    x_map = K._map_bytes(layer, c)
    if pipeline == "dense":
        h1_map = K._map_bytes(layer, w)
        return ([("conv1", K.dense_conv1x1(hw, tile, layer, c, w, pixels_in, "conv1x1", x_map)),
                 ("conv3x3", K.dense_conv3x3(hw, tile, layer)),
                 *_shortcut(hw, tile, layer),
                 ("conv1x1", K.dense_conv1x1(hw, tile, layer, w, k, pixels_out, "conv1x1",
                                             h1_map, residual=True))], 0)
    s, n = granularity, active
    cells = layer.cells(s)
    head = [("masker", K.masker(hw, tile, layer, s)), ("compact", K.scan("compact", cells))]
    if pipeline == "fused":
        body = [("dilated_rows", K.scan("dilated_rows", pixels_in)),
                ("conv1", K.conv1_rows(hw, tile, layer, dilated_pixels))]
        if s == 1 and not tile.per_patch_s1:
            body += [("active_rows", K.scan("active_rows", cells)),
                     ("gather_conv3x3_rows", K.gather_conv3x3_rows(hw, tile, layer, n)),
                     *_shortcut(hw, tile, layer),
                     ("conv1x1_scatter_add_rows",
                      K.conv1x1_scatter_add_rows(hw, tile, layer, n))]
        else:
            body += [("gather_conv3x3", K.gather_conv3x3(hw, tile, layer, s, n)),
                     *_shortcut(hw, tile, layer),
                     ("conv1x1_scatter_add", K.conv1x1_scatter_add(hw, tile, layer, s, n))]
        return head + body + _relu(hw, layer), 3  # count, conv1 groups, (S=1) cell groups
    if pipeline == "masker_conv1":
        if (s, layer.stride) != (1, 1):
            raise ValueError("masker_conv1 needs S = 1 and stride 1")
        fused = K.dense_conv1x1(hw, tile, layer, c, w + K.CHANNEL_BLOCK, pixels_in,
                                "masker_conv1x1", x_map)
        return ([("masker+conv1", fused),
                 ("masker_flags", K.streaming(hw, "masker_flags", cells * 16 * F32,
                                              cells * 16 * F32, cells / 256)),
                 ("active_rows", K.scan("active_rows", cells)),
                 ("gather_conv3x3_rows", K.gather_conv3x3_rows(hw, tile, layer, n)),
                 *_shortcut(hw, tile, layer),
                 ("conv1x1_scatter_add_rows", K.conv1x1_scatter_add_rows(hw, tile, layer, n)),
                 *_relu(hw, layer)], 1)
    if pipeline == "halo":
        return (head + [("halo_conv3x3", K.gather_conv3x3(hw, tile, layer, s, n, True,
                                                          "halo_conv3x3")),
                        *_shortcut(hw, tile, layer),
                        ("conv1x1_scatter_add", K.conv1x1_scatter_add(hw, tile, layer, s, n))]
                + _relu(hw, layer), 1)
    if pipeline == "whole":
        block = K.gather_conv3x3(hw, tile, layer, s, n, True, "fused_block")
        conv3 = K.conv1x1_scatter_add(hw, tile, layer, s, n, "fused_block")
        block.merge(conv3)
        inactive = (cells - n) * s * s * k * F32
        out_map = K._map_bytes(layer, k, out=True)
        return (head + [*_shortcut(hw, tile, layer), ("fused_block", block),
                        ("copy_inactive", K.streaming(hw, "copy_inactive", 2 * inactive,
                                                      out_map, max(cells - n, 1)))], 1)
    if pipeline == "unfused":
        span = layer.span(s)
        h1_map = K._map_bytes(layer, w)
        out_map = K._map_bytes(layer, k, out=True)
        gathered = n * span * span * w * F32
        return (head + [
            ("conv1", K.dense_conv1x1(hw, tile, layer, c, w, pixels_in, "conv1x1", x_map)),
            ("gather_patches", K.streaming(hw, "gather_patches", 2 * gathered, h1_map,
                                           max(n, 1))),
            ("gathered_conv3x3", K.gather_conv3x3(hw, tile, layer, s, n,
                                                  kind="gathered_conv3x3")),
            ("patch_conv1x1", K.conv1x1_scatter_add(hw, tile, layer, s, n, "patch_conv1x1",
                                                    scatter=False)),
            ("scatter_patches", K.streaming(hw, "scatter_patches",
                                            2 * cells * s * s * k * F32, out_map, cells)),
            *_shortcut(hw, tile, layer),
            ("add_relu", K.streaming(hw, "add_relu", 3 * out_map, out_map, out_map / 256))],
            1)
    raise ValueError(f"unknown pipeline {pipeline!r}; choose from {PIPELINES}")


def predict_block(hw: Hardware, layer: BlockLayer, granularity: int | None, rate: float,
                  pipeline: str = "fused", active_cells: Sequence[int] | None = None,
                  footprint_bytes: float | None = None) -> BlockPrediction:
    """Predicted latency of one block. ``rate``: expected fraction of active patches (cells
    active independently); ``active_cells``: an exact patch list instead. ``granularity``
    None (or pipeline "dense"): the dense block. ``footprint_bytes``: see :func:`block_work`
    (a network passes its whole footprint: every block's weights arrive cold)."""
    if pipeline == "dense" or granularity is None:
        work, syncs = block_work(hw, layer, None, "dense", 0.0, 0.0, footprint_bytes)
        pipeline, granularity = "dense", None
    else:
        if not layer.fits(granularity):
            raise ValueError(f"S={granularity} does not fit the {layer.out_height}x"
                             f"{layer.out_width} output map of {layer.name or 'the block'}")
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"activation rate must lie in [0, 1], got {rate}")
        pixels = layer.batch * layer.height * layer.width
        if active_cells is not None:
            active = float(len(active_cells))
            rate = active / layer.cells(granularity)
            dilated = layer.dilated_fraction_of(granularity, active_cells) * pixels
        else:
            active = rate * layer.cells(granularity)
            dilated = layer.dilated_fraction(granularity, rate) * pixels
        work, syncs = block_work(hw, layer, granularity, pipeline, active, dilated,
                                 footprint_bytes)
    times = tuple((label, K.kernel_time_us(hw, item)) for label, item in work)
    return BlockPrediction(layer, granularity, rate, pipeline, times, syncs * hw.sync_us)


def best_pipeline(hw: Hardware, layer: BlockLayer, granularity: int, rate: float,
                  pipelines: Sequence[str] = ("fused", "halo"),
                  footprint_bytes: float | None = None) -> BlockPrediction:
    """The fastest of ``pipelines`` for this block, S and r (``masker_conv1`` only where it
    applies)."""
    cands = [p for p in pipelines
             if p != "masker_conv1" or (granularity, layer.stride) == (1, 1)]
    return min((predict_block(hw, layer, granularity, rate, p,
                              footprint_bytes=footprint_bytes) for p in cands),
               key=lambda pred: pred.total_us)


