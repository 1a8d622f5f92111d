"""The CPU conv rule's register tile, defined once and free of TVM.

The rule schedules this tile (``schedules/cpu/tiled_conv``). The latency predictor
(``predictor/kernels``) and the tuner's kernel model (``tuning/kernel_model``) price the same
tile, so the predictor cannot drift from the schedule.

A tile is ``pixels`` output pixels x :data:`CHANNEL_BLOCK` output channels, held in vector
registers: 6 x 16 with AVX2 (12 of 16 ymm) and NEON (24 of 32 q registers); 12 x 16 with
AVX-512 (12 of 32 zmm, measured best on Zen 4).

Input rows and L1 associativity (x86): a tile's input rows lie ``input_row_bytes`` apart. Rows
that are a multiple of 4 KB apart (1024 channels, or 512 read at stride 2) map to the same L1
sets, and an 8-way L1 keeps 7 of them beside the weights. A 12-pixel tile over such rows
thrashes L1: measured 1.3-1.9x slower than a 6-pixel tile (stage-3/4 conv1 on 1024/2048
channels, stride-2 downsample convs), so those kernels get 6 pixels. NEON tiles never exceed
7 pixels, so the rule holds on every CPU.
"""

from __future__ import annotations

CHANNEL_BLOCK = 16  # output channels per tile = the weights' packing block
ROW_GROUP = 12  # listed pixels per group (S = 1, dilated rows): a multiple of every tile
L1_WAY_BYTES = 4096  # x86 L1D: 8 ways (Zen, Skylake) or 12 ways (Ice Lake and later) of 4 KB
L1_ROWS_HELD_4K = 7  # rows 4 KB apart that an 8-way L1 keeps beside the weights
# the tiles the rule can hold without spilling, by vector width: 16 output channels are 1 zmm
# (AVX-512, 32 registers), 2 ymm (AVX2, 16) or 4 q (NEON, 32); a tile needs pixels x that
# plus the weights
PIXEL_CHOICES = {512: (4, 6, 8, 12, 16, 24), 256: (2, 3, 4, 6), 128: (2, 3, 4, 6)}


def default_pixels(vector_bits: int, input_row_bytes: int = 0) -> int:
    """The tile's pixels for a CPU with ``vector_bits``-wide vectors, for a kernel whose input
    rows lie ``input_row_bytes`` apart (0: unknown, or no rows streamed through L1)."""
    pixels = 12 if vector_bits >= 512 else 6
    if pixels > L1_ROWS_HELD_4K and input_row_bytes > 0 and \
            input_row_bytes % L1_WAY_BYTES == 0:
        return 6
    return pixels


def patch_tiles(pixels: int, tile_pixels: int, min_pixels: int = 1) -> tuple[int, int]:
    """(tiles, pixel slots executed) for a patch of ``pixels`` pixels: full tiles, then a
    partial one that costs at least ``min_pixels`` pixels (its accumulators must keep the FMA
    pipes busy, see ``predictor.kernels.min_tile_pixels``)."""
    full, rest = divmod(pixels, tile_pixels)
    return full + (rest > 0), full * tile_pixels + (max(rest, min_pixels) if rest else 0)
