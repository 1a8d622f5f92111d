"""Fit a hardware profile to measured kernels: the fraction of peak each kernel kind reaches,
the compute/data overlap, the share of the shared cache the process really keeps and the
dispatch cost, by least squares on log latency. Pure Python + numpy: the measurements come
from ``las_compiler.hardware_calibration`` (one-block modules the compiler built, profiled kernel by
kernel); ``benchmarks/predictor.py`` validates the fit on held-out configurations.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from . import kernels as K
from .block import block_work
from .hardware import Hardware, MemoryLevel
from .layers import BlockLayer

EFFICIENCY_GRID = tuple(np.round(np.concatenate([np.arange(0.01, 0.1, 0.01),
                                                  np.arange(0.1, 1.0001, 0.02)]), 2))
OVERLAP_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
# Share of the shared last-level cache the process really keeps: on a VM or a busy machine
# neighbours evict it, and stage-4 weights (4-9 MB per conv) then stream from DRAM.
CACHE_SHARE_GRID = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)
# Fixed cost of one kernel call as the block runs it (arguments, views, waking the thread
# pool): a tight loop over one tiny kernel (``measure_overheads``) sees only its floor.
LAUNCH_GRID_US = (0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0)


@dataclass(frozen=True)
class KernelSample:
    """The measured time of one kernel kind (summed over its calls) in one block
    configuration."""

    layer: BlockLayer
    granularity: int | None
    pipeline: str
    active_cells: tuple[int, ...]
    kind: str  # the kernel's registered name
    measured_us: float


def _works(hw: Hardware, samples: Iterable[KernelSample]
           ) -> list[tuple[list[K.Work], float]]:
    """(the model's Works of that kind, measured us) for each sample whose kind the model
    has (configurations built once)."""
    cache: dict[tuple, dict[str, list[K.Work]]] = {}
    out = []
    for sample in samples:
        key = (sample.layer, sample.granularity, sample.pipeline, sample.active_cells)
        if key not in cache:
            if sample.granularity is None:
                work, _ = block_work(hw, sample.layer, None, "static", 0.0, 0.0)
            else:
                s = sample.granularity
                dilated = sample.layer.dilated_fraction_of(s, sample.active_cells) * (
                    sample.layer.batch * sample.layer.height * sample.layer.width)
                work, _ = block_work(hw, sample.layer, s, sample.pipeline,
                                     float(len(sample.active_cells)), dilated)
            by_kind: dict[str, list[K.Work]] = {}
            for _, item in work:
                by_kind.setdefault(item.kind, []).append(item)
            cache[key] = by_kind
        works = cache[key].get(sample.kind)
        if works:
            out.append((works, sample.measured_us))
    return out


def _with_cache_share(hw: Hardware, share: float) -> Hardware:
    """``hw`` whose shared last-level cache holds ``share`` of its nominal capacity."""
    levels = list(hw.levels)
    shared = [i for i, level in enumerate(levels[:-1]) if not level.per_unit]
    if not shared:
        return hw
    level = levels[shared[-1]]
    levels[shared[-1]] = MemoryLevel(level.name, max(1, int(level.capacity_bytes * share)),
                                     level.bandwidth_gbs, level.per_unit)
    return hw.with_updates(levels=tuple(levels))


def fit_profile(hw: Hardware, samples: Iterable[KernelSample]) -> Hardware:
    """``hw`` with per-kind efficiencies, the overlap and the effective share of the shared
    cache that best explain ``samples`` (least squares on log latency; each kind fitted on
    its own for each overlap and cache share)."""
    samples = list(samples)
    launch_grid = sorted({hw.launch_us, *(t for t in LAUNCH_GRID_US if t > hw.launch_us)})
    best = None
    for share in CACHE_SHARE_GRID:
        shared = _with_cache_share(hw, share)
        pairs = _works(shared, samples)
        if not pairs:
            raise ValueError("no kernel measurements to fit")
        by_kind: dict[str, list[tuple[list[K.Work], float]]] = {}
        for works, measured in pairs:
            by_kind.setdefault(works[0].kind, []).append((works, measured))
        for overlap, launch in itertools.product(OVERLAP_GRID, launch_grid):
            trial = shared.with_updates(overlap=overlap, launch_us=launch)
            efficiency, total = {}, 0.0
            for kind, items in by_kind.items():
                errors = []
                for eff in EFFICIENCY_GRID:
                    probe = trial.with_updates(efficiency={kind: float(eff)})
                    errors.append(sum(math.log(sum(K.kernel_time_us(probe, w) for w in ws)
                                               / m) ** 2 for ws, m in items))
                index = int(np.argmin(errors))
                efficiency[kind], total = float(EFFICIENCY_GRID[index]), total + errors[index]
            if best is None or total < best[0]:
                best = (total, trial, efficiency, len(pairs))
    _, trial, efficiency, count = best
    sources = {**hw.sources,
               "efficiency": f"fitted to {count} measured kernels, with the overlap, the "
                             "shared cache's effective capacity and the dispatch cost "
                             "(las_compiler.predictor.fit.fit_profile)"}
    return trial.with_updates(efficiency=efficiency, sources=sources)
