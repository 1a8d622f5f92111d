"""A device as the latency model sees it: compute units, SIMD lanes, clock, memory levels.

The paper's hardware model has three levels - compute units, on-chip memories, DRAM - and so
does this one: ``levels`` lists the memories from the nearest (L1 / GPU shared memory) to
DRAM, each with its capacity and the bandwidth it delivers to all compute units together. A
kernel's model says how many bytes it moves from each level (see :mod:`.kernels`); the device
turns bytes and multiply-adds into time.

Profiles are JSON (``Hardware.to_json`` / ``load_hardware``), so a calibrated host or a new
board is a file, not code. Every built-in number has its source next to it
(:mod:`.profiles`).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

KINDS = ("cpu", "gpu")
FORMAT = "las-compiler-hardware/1"


class HardwareError(ValueError):
    """A hardware profile that is missing, malformed or physically impossible."""


@dataclass(frozen=True)
class MemoryLevel:
    """One memory level. ``capacity_bytes`` is per compute unit when ``per_unit`` (CPU L1/L2,
    GPU shared memory), else shared by all; ``bandwidth_gbs`` is the total over all units."""

    name: str
    capacity_bytes: int
    bandwidth_gbs: float
    per_unit: bool = False

    def total_capacity(self, units: int) -> int:
        return self.capacity_bytes * (units if self.per_unit else 1)


@dataclass(frozen=True)
class Hardware:
    """Device properties the latency model uses (see the module docstring).

    ``simd_lanes`` x ``fma_per_cycle`` fp32 multiply-adds retire per cycle per unit (a CPU
    core: vector width x FMA pipes; a GPU SM: its FP32 cores). ``vector_bits`` sizes the CPU
    micro-kernel tile exactly as the schedule rules do; ``fma_latency`` (cycles) says how many
    independent accumulators a CPU tile needs to keep its FMA pipes busy. ``efficiency``:
    calibrated per-kernel-kind factors (fraction of peak the kernel's inner loop reaches);
    kinds without one use ``default_efficiency``. ``launch_us``: cost of one kernel dispatch;
    ``sync_us``: one device->host read of a block's work-list lengths (its symbolic shapes);
    ``scan_ns``: one step of a serial scan (compaction, row lists: a CPU walks the whole
    array, a GPU thread its chunk, see ``kernels.scan``). CPU micro-kernels also
    depend on ``vector_registers`` (the register file a tile's accumulators live in) and the
    L1's associativity (``l1_ways`` of ``l1_way_bytes``: input rows a power-of-two apart
    share cache sets). ``overlap``: how much
    of the shorter of compute and data time hides under the longer (1: ``max``, 0: sum).
    """

    name: str
    kind: str
    compute_units: int
    simd_lanes: int
    fma_per_cycle: float
    clock_ghz: float
    levels: tuple[MemoryLevel, ...]
    launch_us: float
    sync_us: float = 0.0
    scan_ns: float = 1.0
    vector_bits: int = 0
    fma_latency: float = 4.0
    vector_registers: int = 32
    l1_ways: int = 8
    l1_way_bytes: int = 4096
    overlap: float = 1.0
    default_efficiency: float = 0.85
    efficiency: dict[str, float] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        problems = []
        if self.kind not in KINDS:
            problems.append(f"kind {self.kind!r} is not one of {KINDS}")
        for name in ("compute_units", "simd_lanes", "fma_per_cycle", "clock_ghz"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                problems.append(f"{name} must be a positive number, got {value!r}")
        for name in ("vector_registers", "l1_ways", "l1_way_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                problems.append(f"{name} must be a positive integer, got {value!r}")
        for name in ("launch_us", "sync_us", "scan_ns"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                problems.append(f"{name} must be >= 0, got {value!r}")
        if not 0.0 <= self.overlap <= 1.0:
            problems.append(f"overlap must lie in [0, 1], got {self.overlap!r}")
        if len(self.levels) < 2:
            problems.append("levels needs at least an on-chip level and DRAM")
        for level in self.levels:
            if level.capacity_bytes <= 0 or not level.bandwidth_gbs > 0:
                problems.append(f"level {level.name!r} needs a positive capacity and bandwidth")
        for kind, value in {"default": self.default_efficiency, **self.efficiency}.items():
            if not 0.0 < value <= 1.0:
                problems.append(f"efficiency {kind!r} must lie in (0, 1], got {value!r}")
        if problems:
            raise HardwareError(f"hardware profile {self.name!r}: " + "; ".join(problems))

    # -- derived properties ------------------------------------------------------------------
    @property
    def peak_gflops(self) -> float:
        """fp32 peak: 2 flops per multiply-add."""
        return 2.0 * self.compute_units * self.simd_lanes * self.fma_per_cycle * self.clock_ghz

    @property
    def dram(self) -> MemoryLevel:
        return self.levels[-1]

    def level_holding(self, nbytes: float, per_unit: bool = False) -> MemoryLevel:
        """The nearest level whose capacity holds ``nbytes`` (``per_unit``: a working set
        each unit holds privately, e.g. a weight tile reused by one core)."""
        for level in self.levels[:-1]:
            if level.per_unit and not per_unit and self.kind == "gpu":
                continue  # shared memory holds what a block stages, never a whole map
            capacity = level.capacity_bytes if per_unit and level.per_unit else \
                level.total_capacity(self.compute_units)
            if nbytes <= capacity:
                return level
        return self.dram

    def kernel_efficiency(self, kind: str) -> float:
        return self.efficiency.get(kind, self.default_efficiency)

    def with_updates(self, **changes) -> Hardware:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data.update(changes)
        return Hardware(**data)

    # -- JSON ----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        data = asdict(self)
        data["levels"] = [asdict(level) for level in self.levels]
        return {"format": FORMAT, **data}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the profile as JSON atomically (a temporary file renamed into place)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self.to_dict(), f, indent=2)
                f.write("\n")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def from_dict(cls, data: dict, origin: str = "<dict>") -> Hardware:
        if not isinstance(data, dict):
            raise HardwareError(f"{origin}: a hardware profile is a JSON object")
        if data.get("format", FORMAT) != FORMAT:
            raise HardwareError(f"{origin}: format {data.get('format')!r}, expected {FORMAT!r}")
        known = {f.name for f in fields(cls)}
        body = {k: v for k, v in data.items() if k != "format"}
        unknown = sorted(set(body) - known)
        missing = sorted(f.name for f in fields(cls) if f.name not in body
                         and f.default is MISSING and f.default_factory is MISSING)
        if unknown:
            raise HardwareError(f"{origin}: unknown field(s) {unknown}")
        if missing:
            raise HardwareError(f"{origin}: missing field(s) {missing}")
        try:
            levels = tuple(MemoryLevel(**level) for level in body["levels"])
        except (TypeError, KeyError) as err:
            raise HardwareError(f"{origin}: bad memory level ({err})") from None
        try:
            return cls(**{**body, "levels": levels})
        except TypeError as err:
            raise HardwareError(f"{origin}: {err}") from None


def load_hardware(path: str | os.PathLike) -> Hardware:
    """A profile from a JSON file, with errors that name the file and the problem."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise HardwareError(f"cannot read hardware profile {path}: {err.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise HardwareError(f"{path} is not valid JSON ({err.msg}, line {err.lineno})") from None
    return Hardware.from_dict(data, str(path))
