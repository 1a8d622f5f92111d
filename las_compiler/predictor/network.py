"""Whole-network predictions and the choice of S per stage (or per block).

The dense parts a LAS-ResNet keeps (stem conv, max-pool, classifier) cost the same in the
dense and the dynamic network; they are predicted once and added to both totals so the
network ratio is honest (a block-only ratio overstates the gain).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..masker_chain import chain_positions, links
from . import kernels as K
from .block import BlockPrediction, best_pipeline, predict_block
from .hardware import Hardware
from .layers import CANDIDATE_S, BlockLayer, network_blocks


@dataclass(frozen=True)
class NetworkPrediction:
    hardware: str
    model: str
    granularity: tuple[int, ...]
    rate: float
    blocks: tuple[tuple[BlockPrediction, BlockPrediction], ...]  # (dense, dynamic)
    fixed_us: float  # stem, max-pool, classifier

    @property
    def dense_ms(self) -> float:
        return (self.fixed_us + sum(d.total_us for d, _ in self.blocks)) / 1e3

    @property
    def dynamic_ms(self) -> float:
        return (self.fixed_us + sum(p.total_us for _, p in self.blocks)) / 1e3

    @property
    def ratio(self) -> float:
        return self.dynamic_ms / self.dense_ms

    def to_dict(self) -> dict:
        from ..models.granularity import format_granularity
        from ..models.las_resnet import STAGE_DEPTHS

        return {
            "hardware": self.hardware, "model": self.model, "rate": self.rate,
            "S": list(self.granularity),
            "S_net": format_granularity(self.granularity, STAGE_DEPTHS[self.model]),
            "dense_ms": self.dense_ms,
            "dynamic_ms": self.dynamic_ms, "ratio": self.ratio, "fixed_ms": self.fixed_us / 1e3,
            "blocks": [{"block": d.layer.name, "stage": d.layer.stage, "S": p.granularity,
                        "pipeline": p.pipeline, "dense_ms": d.total_ms,
                        "dynamic_ms": p.total_ms, "ratio": p.total_us / d.total_us}
                       for d, p in self.blocks]}


def fixed_parts_us(hw: Hardware, height: int, width: int, batch: int,
                   classifier: bool = True) -> float:
    """Stem conv 7x7/2 (3 -> 64), 3x3/2 max-pool, global pool + 2048 x 1000 classifier (a
    backbone has none)."""
    tile = K.TileModel.for_hardware(hw)
    ho, wo = (height - 1) // 2 + 1, (width - 1) // 2 + 1
    pixels = batch * ho * wo
    stem = K.Work("conv2d", macs=math.ceil(pixels / tile.pixels) * tile.pixels * 147 * 64,
                  tasks=math.ceil(pixels / tile.pixels))
    stem.add_bytes(hw.level_holding(pixels * 64 * 4).name, pixels * 64 * 4 * 2)
    pooled = pixels * 64 * 4 / 4
    pool = K.streaming(hw, "max_pool2d", pixels * 64 * 4 + pooled, pixels * 64 * 4, pixels / 64)
    weights = 2048 * 1000 * 4
    fc = K.Work("matmul", macs=batch * 2048 * 1000, tasks=1000 / 16)
    fc.add_bytes(hw.level_holding(weights).name, weights)
    return sum(K.kernel_time_us(hw, w) for w in (stem, pool, *((fc,) if classifier else ())))


def predict_network(hw: Hardware, model: str, granularity, rate: float, height: int = 224,
                    width: int | None = None, batch: int = 1,
                    pipelines: Sequence[str] | None = None,
                    backbone: bool = False) -> NetworkPrediction:
    """Dense vs dynamic latency of every block of ``model`` with S per ``granularity``
    (``"4-4-2-1"``, an int, or one S per block) at activation rate ``rate``; each block uses
    the fastest of ``pipelines`` by the model. ``backbone``: without the classifier."""
    from ..models.granularity import parse_granularity
    from ..models.las_resnet import STAGE_DEPTHS  # torch: imported when used

    layers = network_blocks(model, height, width, batch)
    per_block = parse_granularity(granularity, STAGE_DEPTHS[model])
    for layer, s in zip(layers, per_block, strict=True):
        if not layer.fits(s):
            raise ValueError(f"S={s} does not fit the {layer.out_height}x{layer.out_width} "
                             f"output map of {layer.name}")
    footprint = network_footprint_bytes(layers)
    dynamic = [best_pipeline(hw, layer, s, rate, pipelines, footprint)
               for layer, s in zip(layers, per_block, strict=True)]
    dynamic = chained(hw, dynamic, rate, footprint)
    blocks = tuple((predict_block(hw, layer, None, 1.0, "static", footprint_bytes=footprint), p)
                   for layer, p in zip(layers, dynamic, strict=True))
    return NetworkPrediction(hw.name, model, tuple(per_block), rate, blocks,
                             fixed_parts_us(hw, height, width or height, batch,
                                            classifier=not backbone))


def chained(hw: Hardware, blocks: Sequence[BlockPrediction], rate: float,
            footprint: float) -> list[BlockPrediction]:
    """``blocks`` (a network's, in order) with the masker chains the compiler forms
    (``las_compiler.masker_chain``; a block's input is the previous block's output, and the
    first block's input is the stem's, not a block's) priced in."""
    geometries = [(p.layer.geometry(p.granularity), p.pipeline) for p in blocks]
    across_grids = hw.kind == "gpu"  # the CUDA family's masker_links_across_grids
    linked = [i >= 2 and links(*geometries[i - 1], *geometries[i], across_grids)
              for i in range(len(blocks))]
    out = []
    grids = [g.patches for g, _ in geometries]
    for p, position in zip(blocks, chain_positions(linked, grids), strict=True):
        if position.chained:
            p = predict_block(hw, p.layer, p.granularity, rate, p.pipeline,
                              footprint_bytes=footprint, chain=position, before_rate=rate)
        out.append(p)
    return out


def network_footprint_bytes(layers: Sequence[BlockLayer]) -> float:
    """What runs between two runs of one block touch in a network: every block (ResNet-50:
    ~100 MB, so each kernel's weights arrive from DRAM)."""
    return sum(layer.footprint_bytes() for layer in layers)


@dataclass(frozen=True)
class Selection:
    """Best S per stage (or block) by predicted latency, with the alternatives."""

    hardware: str
    model: str
    rate: float
    per: str
    choices: tuple[dict, ...]  # {"stage"|"block", "S", "latency_ms", "dense_ms", "by_S"}
    network: NetworkPrediction

    @property
    def snet(self) -> str:
        return "-".join(str(c["S"]) for c in self.choices)

    def to_dict(self) -> dict:
        return {"hardware": self.hardware, "model": self.model, "rate": self.rate,
                "per": self.per, "S_net": self.snet, "choices": list(self.choices),
                "network": self.network.to_dict()}


def select_granularity(hw: Hardware, model: str, rate: float, per: str = "stage",
                       candidates: Sequence[int] = CANDIDATE_S, height: int = 224,
                       width: int | None = None, batch: int = 1,
                       pipelines: Sequence[str] | None = None) -> Selection:
    """For each stage (or block), the S in ``candidates`` that fits every block there and
    minimises predicted latency at rate ``rate``."""
    if per not in ("stage", "block"):
        raise ValueError(f"per must be 'stage' or 'block', got {per!r}")
    layers = network_blocks(model, height, width, batch)
    groups: dict[object, list[BlockLayer]] = {}
    for layer in layers:
        groups.setdefault(layer.stage if per == "stage" else layer.name, []).append(layer)
    choices, per_block = [], []
    footprint = network_footprint_bytes(layers)
    for key, members in groups.items():
        by_s = {}
        for s in candidates:
            if all(layer.fits(s) for layer in members):
                by_s[s] = sum(best_pipeline(hw, layer, s, rate, pipelines, footprint).total_us
                              for layer in members) / 1e3
        if not by_s:
            raise ValueError(f"no candidate S in {list(candidates)} fits {per} {key}")
        best = min(by_s, key=by_s.get)
        dense = sum(predict_block(hw, layer, None, 1.0, footprint_bytes=footprint).total_us
                    for layer in members) / 1e3
        choices.append({per: key, "S": best, "latency_ms": by_s[best], "dense_ms": dense,
                        "by_S": by_s})
        per_block += [best] * len(members)
    network = predict_network(hw, model, per_block, rate, height, width, batch, pipelines)
    if per == "block":
        # blocks are chosen one by one, but neighbours at one S share a masker chain
        # (``las_compiler.masker_chain``): one S per stage, wherever that is faster, is a
        # per-block choice too
        staged = select_granularity(hw, model, rate, "stage", candidates, height, width,
                                    batch, pipelines)
        if staged.network.dynamic_ms < network.dynamic_ms:
            network = staged.network
            choices = tuple({**c, "S": s, "latency_ms": c["by_S"][s]}
                            for c, s in zip(choices, network.granularity, strict=True))
    return Selection(hw.name, model, rate, per, tuple(choices), network)
