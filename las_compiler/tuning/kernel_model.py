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
from ..schedules.cpu.tiled_conv import input_row_bytes
from .knobs import Knobs


def _extent(dom) -> int:
    return int(dom.extent) if isinstance(dom.extent, tvm.tirx.IntImm) else 1


def _reduce_block(func: tvm.tirx.PrimFunc):
    """The (unscheduled) reduction block named by ``las.reduce_block``."""
    from tvm import s_tir

    sch = s_tir.Schedule(tvm.IRModule({"main": func}))
    return sch.get(sch.get_sblock(str(func.attrs["las.reduce_block"])))


def _param_shape(func: tvm.tirx.PrimFunc, index: int) -> list[int]:
    """Static extents of a parameter's buffer (symbolic extents count 1)."""
    shape = getattr(func.params[index], "shape", None) or ()
    return [int(d) if isinstance(d, tvm.tirx.IntImm) else 1 for d in shape]


def _param_bytes(func: tvm.tirx.PrimFunc, index: int) -> float:
    return float(np.prod(_param_shape(func, index))) * 4


def kernel_work(hw: Hardware, func: tvm.tirx.PrimFunc, knobs: Knobs) -> K.Work:
    """Work of one tiled kernel (static shapes) scheduled with ``knobs``."""
    block = _reduce_block(func)
    num_reduce = int(func.attrs["las.num_reduce"])
    spatial = [_extent(iv.dom) for iv in block.iter_vars[: len(block.iter_vars) - num_reduce]]
    reduce = int(np.prod([_extent(iv.dom) for iv in block.iter_vars[-num_reduce:]]))
    *outer, pixels, channels = spatial
    outer_count = int(np.prod(outer)) if outer else 1
    tile = K.TileModel(pixels=knobs.pixels, channels=K.CHANNEL_BLOCK,
                       min_pixels=max(1, round(hw.fma_latency * hw.fma_per_cycle)))
    per_patch = bool(outer)
    if pixels == 1 and len(outer) == 1:  # S = 1 patches run as one pixel axis
        tiles, slots = math.ceil(outer_count / knobs.pixels), outer_count
        outer_count, per_outer, per_patch = 1, (tiles, slots), False
    else:
        per_outer = K._per_patch(tile, pixels)
    tiles, slots = per_outer[0] * outer_count, per_outer[1] * outer_count
    in_bytes, out_bytes = _param_bytes(func, 0), _param_bytes(func, len(func.params) - 1)
    row_bytes = input_row_bytes(func)  # what the rule picks its tile by
    tile_pixels = min(knobs.pixels, pixels) if per_patch else knobs.pixels
    kind = str(func.attrs["las.kernel"])
    tasks = outer_count if outer else (math.ceil(channels / K.CHANNEL_BLOCK)
                                       if knobs.channel_outer else tiles)
    return K.conv_work(hw, tile, kind, tiles=tiles, pixels=slots, reduce=reduce,
                       out_channels=channels, in_bytes=in_bytes, out_bytes=out_bytes,
                       tasks=tasks, map_bytes=in_bytes, weights_once=knobs.channel_outer,
                       row_bytes=row_bytes, tile_pixels=tile_pixels)


def predicted_us(hw: Hardware, func: tvm.tirx.PrimFunc, knobs: Knobs) -> float:
    return K.kernel_time_us(hw, kernel_work(hw, func, knobs))
