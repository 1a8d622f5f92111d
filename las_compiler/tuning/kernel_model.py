"""The latency predictor applied to one scheduled kernel: the PrimFunc's reduction block
gives the loop nest (``[outer..., pixel, channel, reductions...]``, the convention every
tiled kernel follows, see ``las_compiler.op``), the knobs give the tile, and
``predictor.kernels`` turns both into l_data + l_compute. This is what lets the seeded cost
model rank candidates before anything is measured.
"""

from __future__ import annotations

import math

import numpy as np
import tvm

from ..predictor import kernels as K
from ..predictor.hardware import Hardware
from ..schedules.analysis import input_row_bytes, param_bytes, reduce_block
from ..schedules.cpu.tiled_conv import reads_weights_once


def _extent(dom) -> int:
    return int(dom.extent) if isinstance(dom.extent, tvm.tirx.IntImm) else 1


def kernel_work(hw: Hardware, func: tvm.tirx.PrimFunc, knobs: dict) -> K.Work:
    """Work of one tiled kernel (static shapes) scheduled with ``knobs`` (``pixels``,
    ``channel_outer``)."""
    pixels_knob, channel_outer = int(knobs["pixels"]), bool(knobs.get("channel_outer", 0))
    block = reduce_block(func)
    num_reduce = int(func.attrs["las.num_reduce"])
    spatial = [_extent(iv.dom) for iv in block.iter_vars[: len(block.iter_vars) - num_reduce]]
    reduce = int(np.prod([_extent(iv.dom) for iv in block.iter_vars[-num_reduce:]]))
    *outer, pixels, channels = spatial
    outer_count = int(np.prod(outer)) if outer else 1
    tile = K.TileModel(pixels=pixels_knob, channels=K.CHANNEL_BLOCK,
                       min_pixels=K.min_tile_pixels(hw))
    per_patch = bool(outer)
    if pixels == 1 and len(outer) == 1:  # S = 1 patches run as one pixel axis
        tiles, slots = math.ceil(outer_count / pixels_knob), outer_count
        outer_count, per_outer, per_patch = 1, (tiles, slots), False
    else:
        per_outer = K.per_patch_tiles(tile, pixels)
    tiles, slots = per_outer[0] * outer_count, per_outer[1] * outer_count
    in_bytes, out_bytes = param_bytes(func, 0), param_bytes(func, len(func.params) - 1)
    row_bytes = input_row_bytes(func)  # what the rule picks its tile by
    tile_pixels = min(pixels_knob, pixels) if per_patch else pixels_knob
    kind = str(func.attrs["las.kernel"])
    # row-group kernels whose weights dominate run channel tiles outermost (the CPU rule's
    # weights_outer, register_tile.weights_read_once)
    weights_outer = hw.kind == "cpu" and reads_weights_once(func)
    tasks = outer_count if outer and not weights_outer else (
        math.ceil(channels / K.CHANNEL_BLOCK) if channel_outer or weights_outer else tiles)
    return K.conv_work(hw, tile, kind, tiles=tiles, pixels=slots, reduce=reduce,
                       out_channels=channels, in_bytes=in_bytes, out_bytes=out_bytes,
                       tasks=tasks, map_bytes=in_bytes,
                       weights_once=channel_outer or weights_outer,
                       row_bytes=row_bytes, tile_pixels=tile_pixels)


def predicted_us(hw: Hardware, func: tvm.tirx.PrimFunc, knobs: dict) -> float:
    return K.kernel_time_us(hw, kernel_work(hw, func, knobs))
