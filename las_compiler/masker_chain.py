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

This module is the rule, written once: :func:`links` (may block ``b`` take block ``a``'s
cache?), :func:`chain_positions` (runs over a sequence of blocks) and :func:`chained_step`
(the masker step of a chain member). ``transform.LowerLASOps`` applies it to the blocks of a
Relax function, the latency predictor to the blocks of a network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from .block_pipelines import Step, get_pipeline
from .geometry import BlockGeometry

MASKER_KERNEL = "masker"


@dataclass(frozen=True)
class ChainPosition:
    """Where a block sits in its masker chain: ``consumers`` = the blocks whose logits its
    masker computes (itself and those after it), ``update`` = it follows a chain member."""

    consumers: int
    update: bool

    @property
    def chained(self) -> bool:
        return self.consumers > 1 or self.update


ALONE = ChainPosition(1, False)


def _own_masker(pipeline: str, block: BlockGeometry) -> bool:
    return any(step.name == "masker" and step.kernel == MASKER_KERNEL
               for step in get_pipeline(pipeline).steps_for(block))


def links(before: BlockGeometry, before_pipeline: str, block: BlockGeometry,
          pipeline: str) -> bool:
    """Whether ``block``, whose input is the output of ``before``, may pool only the cells
    ``before`` activated (module docstring): both plain, stride 1, on the same map and patch
    grid, S dividing it, both with the standalone masker step. The caller vouches that the
    input of ``before`` is non-negative (a block's output) and that nothing else writes it."""
    g = block.patches
    return (not block.projected and not before.projected and g.stride == 1
            and before.patches == g and g.height % g.granularity == 0
            and g.width % g.granularity == 0 and before.out_channels == block.in_channels
            and _own_masker(before_pipeline, before) and _own_masker(pipeline, block))


def chain_positions(linked: Sequence[bool]) -> list[ChainPosition]:
    """Positions of a sequence of blocks where ``linked[i]`` says block i takes block i-1's
    cache (``linked[0]`` is ignored)."""
    positions = []
    run_after = [0] * len(linked)  # blocks after i in its run
    for i in range(len(linked) - 2, -1, -1):
        run_after[i] = run_after[i + 1] + 1 if linked[i + 1] else 0
    for i in range(len(linked)):
        positions.append(ChainPosition(1 + run_after[i], i > 0 and bool(linked[i])))
    return positions


def chained_step(step: Step, position: ChainPosition) -> Step:
    """The masker ``step`` of a chain member: the weights of every consumer (``chain_w``,
    ``chain_b``), the predecessor's flags and cache where it updates (``chain_dirty``,
    ``chain_cache_in``), and its own cache (``chain_cache``) beside the flags."""
    if step.kernel != MASKER_KERNEL:
        raise ValueError(f"step {step.name!r} runs {step.kernel}, not the standalone masker")
    consumers, update = position.consumers, position.update
    inputs = ("x", "chain_w", "chain_b",
              *(("chain_dirty", "chain_cache_in") if update else ()))
    return replace(step, args=lambda b: (b.patches, b.in_channels, consumers, update),
                   inputs=inputs, outputs=(*step.outputs, "chain_cache"))
