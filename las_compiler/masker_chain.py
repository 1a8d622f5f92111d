"""Masker chains: the blocks of a stage price each other's masks from one read of the map.

A block's masker pools every cell of its input map: the one dense read of a dynamic block,
and bandwidth-bound on a GPU (LAS-ResNet-50 at batch 128 on a V100, predicted: 3.3 ms of a
69 ms run). Inside a stage most of that read is redundant. A plain block (identity shortcut,
stride 1) changes its input only in its active cells: everywhere else its output *is* its
input (the scatter-add writes active patches only; ``relu`` leaves the non-negative input of
a block that follows another block as it is). Where S divides the map, a cell's pooling
window is exactly the pixels its mask switches, so the next block's pooled cell equals this
block's wherever this block's mask was off.

So a run of such blocks shares one masker state: the first masker of the run pools every
cell once and computes, per cell, the final logits of every block of the run (two numbers
per block: ``op.masker(..., consumers=K)``); each later masker pools only the cells its
predecessor activated (``update``) and copies the rest from its predecessor's cache. A cell's
logits are computed by the same pooling and dot-product code either way, so every mask is
bit for bit the one the block's own masker gives (``tests/op/test_kernels.py`` checks it on
both targets). A later masker reads ``r`` of the map instead of all of it.

The same holds one grid coarser. Where the next block's pooling windows are whole cells of
this block's grid (a stage's projected first block after the previous stage's last block:
at 224 x 224, 8 x 8 windows of 4 x 4 cells; at S = 2 after S = 4, one cell each), its
window mean is the mean of those cells' means, so its logits are the mean of theirs: it
pools only the pixels of the cells this block activated and takes the others' logits from
the cache (``op.masker(..., fine=...)``), reading ``r`` of a map four times its output
instead of all of it (on GPUs: :func:`links`' ``across_grids``). The mean of means sums in
another order than one pass over the window, so these masks equal the block's own masker's
up to the float rounding of a tie (as every masker's equal PyTorch's); a chain on one grid
stays bit for bit.

This module is the rule, written once: :func:`links` (may block ``b`` take block ``a``'s
cache?), :func:`chain_positions` (runs over a sequence of blocks) and :func:`chained_step`
(the masker step of a chain member). ``transform.LowerLASOps`` applies it to the blocks of a
Relax function, the latency predictor to the blocks of a network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from .block_pipelines import Step, get_pipeline
from .geometry import BlockGeometry, PatchGeometry

MASKER_KERNEL = "masker"


@dataclass(frozen=True)
class ChainPosition:
    """Where a block sits in its masker chain: ``consumers`` = the blocks whose logits its
    masker computes (itself and those after it), ``update`` = it follows a chain member,
    ``fine`` = that member's grid where it is finer than this block's (whole cells of it
    make this block's pooling windows)."""

    consumers: int
    update: bool
    fine: PatchGeometry | None = None

    @property
    def chained(self) -> bool:
        return self.consumers > 1 or self.update


ALONE = ChainPosition(1, False)


def _own_masker(pipeline: str, block: BlockGeometry) -> bool:
    return any(step.name == "masker" and step.kernel == MASKER_KERNEL
               for step in get_pipeline(pipeline).steps_for(block))


def _cells_tile_the_map(g: PatchGeometry) -> bool:
    """Stride 1 and cells of one size along each axis (S divides the map, or the floor
    grid's cells come out equal: 15 pixels at S = 4 are three cells of 5): a cell's pooling
    window is exactly the pixels its flag switches."""
    return all(a.in_size == a.out_size and a.uniform for a in (g.rows, g.cols))


def nests(fine: PatchGeometry, coarse: PatchGeometry) -> bool:
    """Whether every pooling window of ``coarse`` (a block reading ``fine``'s output map) is
    a whole number of ``fine``'s cells, all of one size."""
    return fine.batch == coarse.batch and _cells_tile_the_map(fine) and all(
        c.in_size == f.out_size and c.in_size % c.cells == 0
        and (c.in_size // c.cells) % f.tile == 0
        for f, c in ((fine.rows, coarse.rows), (fine.cols, coarse.cols)))


def links(before: BlockGeometry, before_pipeline: str, block: BlockGeometry,
          pipeline: str, across_grids: bool = True) -> bool:
    """Whether ``block``, whose input is the output of ``before``, may pool only the cells
    ``before`` activated (module docstring): ``before`` plain, its cells tiling its map;
    ``block`` on the same grid and plain, or (``across_grids``) with pooling windows of whole
    ``before`` cells (:func:`nests`, a projected block too); both with the standalone masker
    step. The caller vouches that the input of ``before`` is non-negative (a block's output)
    and that nothing else writes it.

    ``across_grids``: the target family's ``masker_links_across_grids`` (the predictor: GPU
    profiles). A GPU's masker costs its read of the map, which the link halves at r = 0.5.
    The CPU rule's pooling of only the changed fine cells (a predicate per pixel) measured
    slower than pooling the whole map (Zen 3 VM, one 56x56x256 map at r = 0.5: 117-126 us
    against 83-108 us), so CPUs link on one grid only."""
    g, f = block.patches, before.patches
    same_grid = not block.projected and f == g
    return (not before.projected and _cells_tile_the_map(f)
            and before.out_channels == block.in_channels
            and (same_grid or (across_grids and f != g and nests(f, g)))
            and _own_masker(before_pipeline, before) and _own_masker(pipeline, block))


def chain_positions(linked: Sequence[bool],
                    grids: Sequence[PatchGeometry] | None = None) -> list[ChainPosition]:
    """Positions of a sequence of blocks where ``linked[i]`` says block i takes block i-1's
    cache (``linked[0]`` is ignored); ``grids``: the blocks' patch grids (a link between
    two grids is a ``fine`` one)."""
    positions = []
    run_after = [0] * len(linked)  # blocks after i in its run
    for i in range(len(linked) - 2, -1, -1):
        run_after[i] = run_after[i + 1] + 1 if linked[i + 1] else 0
    for i in range(len(linked)):
        update = i > 0 and bool(linked[i])
        fine = grids[i - 1] if update and grids is not None and grids[i - 1] != grids[i] \
            else None
        positions.append(ChainPosition(1 + run_after[i], update, fine))
    return positions


def chained_step(step: Step, position: ChainPosition) -> Step:
    """The masker ``step`` of a chain member: the weights of every consumer (``chain_w``,
    ``chain_b``), the predecessor's flags and cache where it updates (``chain_dirty``,
    ``chain_cache_in``), and its own cache (``chain_cache``) beside the flags."""
    if step.kernel != MASKER_KERNEL:
        raise ValueError(f"step {step.name!r} runs {step.kernel}, not the standalone masker")
    consumers, update, fine = position.consumers, position.update, position.fine
    inputs = ("x", "chain_w", "chain_b",
              *(("chain_dirty", "chain_cache_in") if update else ()))
    return replace(step, args=lambda b: (b.patches, b.in_channels, consumers, update,
                                         *((fine,) if fine is not None else ())),
                   inputs=inputs, outputs=(*step.outputs, "chain_cache"))
