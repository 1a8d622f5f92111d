"""Patch granularity S: parsing `S_net` specs and checking that an S fits a feature map.

LASNet names networks by S per stage (``"4-4-2-1"``); the official training scripts also
take one S per block (``--mask_spatial_granularity 4-4-4-4-4-4-4-2-2-2-2-2-2-1-1-1``). Both
resolve here to one S per residual block, so the rest of the code only sees per-block values.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..geometry import patch_grid as _patch_grid

GranularitySpec = int | str | Sequence[int]


def conv_output_size(size: int, stride: int) -> int:
    """Output length of a 3x3, padding-1 convolution (the block's strided conv2)."""
    return (size - 1) // stride + 1


def patch_grid(height: int, width: int, granularity: int) -> tuple[int, int]:
    """Patch grid of an output map (see :func:`las_compiler.geometry.patch_grid`)."""
    return _patch_grid(height, width, granularity)


def parse_granularity(spec: GranularitySpec, stage_depths: Sequence[int]) -> list[int]:
    """Resolve an S spec to one S per block.

    Parameters
    ----------
    spec
        An int (same S everywhere), a ``"4-4-2-1"`` style string, or a sequence of ints.
        The number of values must equal the number of stages (one S per stage) or the
        number of blocks (one S per block).
    stage_depths
        Blocks per stage, e.g. ``[3, 4, 6, 3]`` for ResNet-50.

    Returns
    -------
    list[int]
        One S per block, in network order.
    """
    num_blocks = sum(stage_depths)
    if isinstance(spec, bool):
        raise TypeError(f"S_net must be an int, a string like '4-4-2-1' or a list, got {spec!r}")
    if isinstance(spec, int):
        values = [spec]
    elif isinstance(spec, str):
        parts = spec.strip().split("-")
        if not all(p.strip().isdigit() for p in parts):
            raise ValueError(
                f"S_net {spec!r} is not valid: expected positive integers separated by '-', "
                "e.g. '4-4-2-1' (per stage) or one value per block"
            )
        values = [int(p) for p in parts]
    elif isinstance(spec, Sequence):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in spec):
            raise TypeError(f"S_net list must hold ints, got {list(spec)!r}")
        values = list(spec)
    else:
        raise TypeError(f"S_net must be an int, a string like '4-4-2-1' or a list, got {spec!r}")

    bad = [v for v in values if v < 1]
    if bad:
        raise ValueError(f"S_net {spec!r} is not valid: S must be >= 1, got {bad}")
    if len(values) == 1:
        return values * num_blocks
    if len(values) == len(stage_depths):
        return [s for s, depth in zip(values, stage_depths, strict=True) for _ in range(depth)]
    if len(values) == num_blocks:
        return values
    raise ValueError(
        f"S_net {spec!r} has {len(values)} values; expected 1, {len(stage_depths)} (one per "
        f"stage) or {num_blocks} (one per block)"
    )


def format_granularity(per_block: Sequence[int], stage_depths: Sequence[int]) -> str:
    """Shortest `S_net` string for per-block S: per stage when each stage is uniform."""
    stages, start = [], 0
    for depth in stage_depths:
        stages.append(per_block[start : start + depth])
        start += depth
    if all(len(set(stage)) == 1 for stage in stages):
        return "-".join(str(stage[0]) for stage in stages)
    return "-".join(str(s) for s in per_block)


def valid_granularities(height: int, width: int) -> list[int]:
    """Every S that fits an output map: 1 <= S <= min(H, W)."""
    return list(range(1, min(height, width) + 1))


def check_granularity_fits(granularity: int, height: int, width: int, where: str) -> None:
    """Raise a ValueError naming the layer when S is larger than its output map.

    A patch larger than the map is not a patch any more (the official masker would pool to a
    0x0 grid); S values that do not divide the map are fine: the grid is ``H // S`` cells of
    about ``H / (H // S)`` pixels (see :mod:`las_compiler.geometry`).
    """
    if granularity > min(height, width):
        valid = valid_granularities(height, width)
        divisors = [s for s in valid if height % s == 0 and width % s == 0]
        raise ValueError(
            f"S={granularity} does not fit {where}: its output map is {height}x{width}; "
            f"valid S for this stage: 1..{min(height, width)} (dividing exactly: {divisors})"
        )
