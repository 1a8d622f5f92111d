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

Registers: a tile needs ``pixels x vectors`` accumulators (16 channels are 1 zmm, 2 ymm or 4
q registers), one register for the broadcast input, and, on an ISA whose FMAs cannot read
memory (NEON), the weight vectors of every reduction step LLVM keeps live at once. A short
innermost reduction (the stem's 3 input channels) is unrolled whole, so its steps' weights
are live together: a 6 x 16 NEON tile then needs 24 + 3 x 4 + 1 = 37 of 32 registers and
spilled 14 times per loop iteration (LLVM, cortex-a57); 4 pixels fit (29). x86 FMAs take a
weight from memory, so there only the accumulators and the broadcast count (6 x 16 on AVX2:
13 of 16 ymm). Why at least 12 accumulators everywhere: an FMA chain needs latency x pipes
independent accumulators to keep the FMA units busy (Zen 3 and Sapphire Rapids 4 x 2 = 8,
Cortex-A57 10 x 1, Cortex-A72 7 x 2 = 14); ``benchmarks/inner_loops.py`` reads each
kernel's hot loop per CPU and checks that bound.
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
VECTOR_REGISTERS = {512: 32, 256: 16, 128: 32}  # zmm (AVX-512), ymm (AVX2), q (NEON)
UNROLLED_REDUCTION = 4  # innermost reductions this short are unrolled whole by LLVM


# Independent accumulators an FMA unit needs to stay busy: FMA latency x vector FMAs issued per
# cycle, by LLVM CPU name (vendors' optimisation guides). Zen 4 runs a zmm FMA over its two
# 256-bit pipes (1 a cycle); Intel's AVX-512 server cores have two 512-bit FMA ports.
FMA_CHAINS_NEEDED = {"znver4": 4, "znver5": 8, "cortex-a57": 10, "cortex-a72": 14}
FMA_CHAINS_DEFAULT = {512: 8, 256: 8, 128: 10}  # two FMA pipes of latency 4; NEON: A57's


def chains_needed(cpu: str, vector_bits: int) -> int:
    return FMA_CHAINS_NEEDED.get(cpu, FMA_CHAINS_DEFAULT.get(vector_bits, 8))


def channel_blocks(pixels: int, vector_bits: int, cpu: str = "", channels: int = 0,
                   memory_operands: bool = True) -> int:
    """How many :data:`CHANNEL_BLOCK`-channel blocks one register tile of ``pixels`` pixels
    covers: 2 when one block leaves fewer accumulators than the core's FMA chains need and
    two fit the registers (a 6- or 4-pixel tile of zmm on an Intel AVX-512 core: 6 or 4 zmm
    accumulators for 8 chains; the loop was latency-bound at 75 % or 50 % of the FMA peak,
    ``benchmarks/inner_loops.py``), else 1. ``channels``: the kernel's output channels (the
    blocks must divide them; 0: unknown, 1 block)."""
    vectors = CHANNEL_BLOCK * 32 // vector_bits
    if pixels * vectors >= chains_needed(cpu, vector_bits) or channels % (2 * CHANNEL_BLOCK):
        return 1
    live = 0 if memory_operands else 2 * vectors
    fits = 2 * pixels * vectors + 1 + live <= VECTOR_REGISTERS.get(vector_bits, 16)
    return 2 if fits else 1


def tile_registers(pixels: int, vector_bits: int, live_weight_steps: int = 0) -> int:
    """Vector registers a ``pixels`` x :data:`CHANNEL_BLOCK` tile holds at once: the
    accumulators, one broadcast input, and ``live_weight_steps`` reduction steps' weights."""
    vectors = CHANNEL_BLOCK * 32 // vector_bits
    return pixels * vectors + 1 + live_weight_steps * vectors


def default_pixels(vector_bits: int, input_row_bytes: int = 0,
                   live_weight_steps: int = 0) -> int:
    """The tile's pixels for a CPU with ``vector_bits``-wide vectors, for a kernel whose input
    rows lie ``input_row_bytes`` apart (0: unknown, or no rows streamed through L1) and whose
    unrolled reduction keeps ``live_weight_steps`` steps of weights in registers (NEON only;
    see the module docstring)."""
    pixels = 12 if vector_bits >= 512 else 6
    if pixels > L1_ROWS_HELD_4K and input_row_bytes > 0 and \
            input_row_bytes % L1_WAY_BYTES == 0:
        pixels = 6
    registers = VECTOR_REGISTERS.get(vector_bits, 16)
    smaller = [p for p in PIXEL_CHOICES.get(vector_bits, (pixels,)) if p < pixels]
    while smaller and tile_registers(pixels, vector_bits, live_weight_steps) > registers:
        pixels = smaller.pop()
    return pixels


def weights_read_once(weight_bytes: float, first_input_bytes: float) -> bool:
    """Row-group kernels (S = 1): channel tiles outermost, outside the row groups, so each
    weight tile is read once per call and reused from L2 by every group, when the weights
    exceed twice the kernel's first input (its symbolic extents counted as 1). Otherwise
    each group (one thread's task) streams all the weights once per pixel tile.

    Measured (2-core Zen 3 VM, LAS-ResNet-50 layer4.0's 3x3 over 3 row groups of 7x7, 9.4 MB
    of weights cold from DRAM): 1.9-2.2 ms against 2.4-4.4 ms per call; the whole network
    3 % faster at batch 1 and 6 % at batch 4 (medians of 12 interleaved rounds), outputs
    identical. Per-patch kernels (S >= 2) keep the patch loop outermost: the same order
    measured no better for S = 2's 2.4 MB stage-3 weights."""
    return weight_bytes > 2 * first_input_bytes


def patch_tiles(pixels: int, tile_pixels: int, min_pixels: int = 1) -> tuple[int, int]:
    """(tiles, pixel slots executed) for a patch of ``pixels`` pixels: full tiles, then a
    partial one that costs at least ``min_pixels`` pixels (its accumulators must keep the FMA
    pipes busy, see ``predictor.kernels.min_tile_pixels``)."""
    full, rest = divmod(pixels, tile_pixels)
    return full + (rest > 0), full * tile_pixels + (max(rest, min_pixels) if rest else 0)
