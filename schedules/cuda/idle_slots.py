"""Idle pixel slots of the CUDA conv rules: how much of a thread block's pixel work is padding.

Every conv rule gives an active patch (or a group of listed pixels) one thread block whose
pixel threads each take a contiguous run of the block's pixels:

* ``tiled_conv``: at most ``Config.pixel_threads`` threads of ``Config.thread_pixels`` pixels,
  fitted to the tile (``min(8, ceil(pixels / 2))`` threads, runs of ``ceil(pixels / threads)``);
* ``patch_chain``: ``PIXEL_THREADS`` threads, runs of ``ceil(pixels / 8)``, for each conv of
  the chain (conv1 on the halo window, conv2 and conv3 on the tile); a one-pixel tile spreads
  its channels over both thread axes instead.

A block is sized for the largest cell of the floor grid, so cells smaller than it (S not
dividing the map) leave slots idle, and so do runs that do not divide the tile. The row
kernels (``*_rows``) take ``ROW_GROUP`` = 12 listed pixels per block, six threads of two:
only the last group of a list is padded. What this module counts is that waste per kernel and
S, from the rules' own constants; ``benchmarks.gpu`` tabulates it, and a test holds what
``auto`` picks on a GPU to at most :data:`IDLE_LIMIT`.
"""

from __future__ import annotations

import math

from ...geometry import BlockGeometry, PatchGeometry
from ...register_tile import ROW_GROUP
from .patch_chain import PIXEL_THREADS
from .tiled_conv import Config

IDLE_LIMIT = 0.25  # issue 25: at most a quarter of a block's pixel slots idle


def tiled_slots(pixels: int) -> int:
    """Pixel slots ``tiled_conv`` gives a tile of ``pixels`` (threads x run)."""
    cfg = Config()
    threads = max(1, min(cfg.pixel_threads, math.ceil(pixels / cfg.thread_pixels)))
    return threads * math.ceil(pixels / threads)


def chain_slots(pixels: int) -> int:
    """Pixel slots one conv of a ``patch_chain`` gives ``pixels``."""
    return 1 if pixels == 1 else PIXEL_THREADS * math.ceil(pixels / PIXEL_THREADS)


def _cells(g: PatchGeometry) -> list[tuple[int, int]]:
    """(tile pixels, window pixels) of every cell of one image."""
    heights = [g.rows.extent(i) for i in range(g.rows.cells)]
    widths = [g.cols.extent(j) for j in range(g.cols.cells)]
    return [(h * w, ((h - 1) * g.stride + 3) * ((w - 1) * g.stride + 3))
            for h in heights for w in widths]


def _idle(used: float, slots: float) -> float:
    return 1.0 - used / slots


def kernel_idle(kernel: str, block: BlockGeometry) -> dict[str, float] | None:
    """{conv stage: idle fraction of its pixel slots} of one kernel of a block's pipeline on
    the GPU (every cell active); None for kernels without pixel tiles (masker, scans,
    element-wise). Row kernels: the padding of a full group (none)."""
    g = block.patches
    cells = _cells(g)
    tile = sum(t for t, _ in cells) / len(cells)
    window = sum(w for _, w in cells) / len(cells)
    if kernel in ("conv1x1_rows", "gather_conv3x3_rows", "conv1x1_scatter_add_rows"):
        return {"rows": _idle(ROW_GROUP, tiled_slots(ROW_GROUP))}
    if kernel in ("gather_conv3x3", "conv1x1_scatter_add"):
        return {"tile": _idle(tile, tiled_slots(g.tile_pixels))}
    if kernel in ("halo_conv3x3", "fused_block"):  # conv1 on the halo; conv2 (conv3) the tile
        return {"halo": _idle(window, chain_slots(g.window_pixels)),
                "tile": _idle(tile, chain_slots(g.tile_pixels))}
    if kernel in ("conv1x1", "conv2d"):  # 16-pixel tiles of the flat map: the last one partial
        pixels = g.batch * g.out_height * g.out_width
        return {"map": _idle(pixels, 16 * math.ceil(pixels / 16))}
    return None


def pipeline_idle(pipeline, block: BlockGeometry) -> tuple[str, float]:
    """The worst (kernel/stage, idle fraction) of a pipeline's conv kernels at this block."""
    worst = ("-", 0.0)
    for step in pipeline.steps_for(block):
        for stage, idle in (kernel_idle(step.kernel, block) or {}).items():
            if idle > worst[1]:
                worst = (f"{step.kernel}/{stage}", idle)
    return worst
