"""Built-in hardware profiles, each number with its source.

GPU figures are the vendors' (whitepapers, data sheets); on-chip bandwidths that vendors do
not publish are estimated from the cache/shared-memory width per clock, and marked so. CPU
profiles: the Jetson TX2's Cortex-A57 cluster, and ``host``, read from this machine
(/proc/cpuinfo, sysfs caches) with nominal per-clock bandwidths until ``las predict
--calibrate`` measures it (the calibrated profile is then used instead, see
:func:`host_profile`).
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

from .hardware import Hardware, HardwareError, MemoryLevel, load_hardware

KB, MB = 1024, 1024 * 1024
# one kernel launch, as in LAUDNet's latency simulator (LeapLabTHU/LAUDNet): ~8 us
_LAUNCH_DISCRETE_US = 8.0
# Jetson boards launch from a slower ARM host: estimate, twice the discrete figure
_LAUNCH_JETSON_US = 16.0


# One step of a GPU thread's serial walk in a work-list scan (``op.scan``): a load from the
# thread's own chunk (the 32 threads of a warp touch 32 different lines, which the L1 serves
# about one a clock) and a dependent add. Estimate, not measured: 64 clocks.
_SCAN_STEP_CLOCKS = 64


def _gpu(name, sms, lanes, clock, dram_gbs, l2_bytes, l2_gbs, shared_bytes, sources,
         launch=_LAUNCH_DISCRETE_US, sync=10.0):
    # shared memory: 32 banks x 4 B per clock per SM (CUDA C programming guide, all of these)
    shared_gbs = sms * 128 * clock
    return Hardware(
        name=name, kind="gpu", compute_units=sms, simd_lanes=lanes, fma_per_cycle=1.0,
        clock_ghz=clock,
        levels=(MemoryLevel("shared", shared_bytes, shared_gbs, per_unit=True),
                MemoryLevel("L2", l2_bytes, l2_gbs), MemoryLevel("DRAM", 1 << 40, dram_gbs)),
        launch_us=launch, sync_us=sync, default_efficiency=0.7,
        scan_ns=_SCAN_STEP_CLOCKS / clock,
        sources={"shared bandwidth": "32 banks x 4 B/clock/SM (CUDA C++ Programming Guide)",
                 "scan step": f"estimate: {_SCAN_STEP_CLOCKS} clocks per step of a thread's "
                              "walk (an uncoalesced load, one line a clock, and an add)",
                 "launch": "LAUDNet latency simulator (~8 us per kernel); Jetson: estimate",
                 "efficiency": "estimate: 70 % of FP32 peak for tiled convs", **sources})


def _builtin() -> dict[str, Hardware]:
    return {
        "v100": _gpu(
            "v100", 80, 64, 1.53, 900.0, 6 * MB, 2155.0, 96 * KB,
            {"compute": "NVIDIA Tesla V100 GPU Architecture whitepaper (2017): 80 SMs x 64 FP32 "
                        "cores, 1530 MHz boost, 15.7 TFLOPS",
             "memory": "same: HBM2 900 GB/s, 6 MB L2, up to 96 KB shared memory per SM",
             "L2 bandwidth": "measured 2155 GB/s, Jia et al., Dissecting the NVIDIA Volta GPU "
                             "Architecture via Microbenchmarking (arXiv:1804.06826)"}),
        "gtx1080": _gpu(
            "gtx1080", 20, 128, 1.733, 320.0, 2 * MB, 887.0, 96 * KB,
            {"compute": "NVIDIA GeForce GTX 1080 whitepaper (2016): 20 SMs x 128 cores, "
                        "1733 MHz boost, 8.9 TFLOPS",
             "memory": "same: GDDR5X 320 GB/s, 2 MB L2, 96 KB shared memory per SM",
             "L2 bandwidth": "estimate: 8 L2 slices x 64 B/clock x 1.733 GHz"}),
        "tx2": _gpu(
            "tx2", 2, 128, 1.3, 59.7, 512 * KB, 166.0, 64 * KB,
            {"compute": "NVIDIA Jetson TX2 module data sheet: 256-core Pascal GPU (2 SMs), "
                        "1.3 GHz max",
             "memory": "same: 128-bit LPDDR4 59.7 GB/s (shared with the CPU); Pascal GP10B: "
                       "512 KB L2, 64 KB shared memory per SM",
             "L2 bandwidth": "estimate: 2 L2 slices x 64 B/clock x 1.3 GHz"},
            launch=_LAUNCH_JETSON_US, sync=20.0),
        "nano": _gpu(
            "nano", 1, 128, 0.9216, 25.6, 256 * KB, 118.0, 64 * KB,
            {"compute": "NVIDIA Jetson Nano module data sheet: 128-core Maxwell GPU (1 SM), "
                        "921.6 MHz",
             "memory": "same: 64-bit LPDDR4 25.6 GB/s; Maxwell GM20B: 256 KB L2, 64 KB "
                       "shared memory per SM",
             "L2 bandwidth": "estimate: 2 L2 slices x 64 B/clock x 0.92 GHz"},
            launch=_LAUNCH_JETSON_US, sync=20.0),
        "rtx3090": _gpu(
            "rtx3090", 82, 128, 1.695, 936.0, 6 * MB, 1335.0, 100 * KB,
            {"compute": "NVIDIA Ampere GA102 GPU Architecture whitepaper: RTX 3090 82 SMs x "
                        "128 FP32 cores, 1695 MHz boost, 35.6 TFLOPS",
             "memory": "same: GDDR6X 936 GB/s, 6 MB L2, up to 100 KB shared memory per SM",
             "L2 bandwidth": "estimate: 12 L2 slices x 64 B/clock x 1.695 GHz"}),
        "orin": _gpu(
            "orin", 16, 128, 1.3, 204.8, 4 * MB, 650.0, 164 * KB,
            {"compute": "NVIDIA Jetson AGX Orin 64GB data sheet: 2048-core Ampere GPU "
                        "(16 SMs x 128), 1.3 GHz, 5.3 TFLOPS FP32",
             "memory": "same: 256-bit LPDDR5 204.8 GB/s (shared with the CPU); GA10B: 4 MB "
                       "L2, up to 164 KB shared memory per SM",
             "L2 bandwidth": "estimate: 8 L2 slices x 64 B/clock x 1.3 GHz"},
            launch=_LAUNCH_JETSON_US, sync=20.0),
        "h100": _gpu(
            "h100", 132, 128, 1.98, 3350.0, 50 * MB, 5500.0, 228 * KB,
            {"compute": "NVIDIA H100 Tensor Core GPU datasheet / Hopper architecture "
                        "whitepaper: SXM5 132 SMs x 128 FP32 cores, 1.98 GHz boost, 67 TFLOPS",
             "memory": "same: HBM3 3.35 TB/s, 50 MB L2, up to 228 KB shared memory per SM",
             "L2 bandwidth": "estimate: ~5.5 TB/s, chipsandcheese.com H100 memory "
                             "measurements (2023)"}),
        "tx2-cpu": Hardware(
            name="tx2-cpu", kind="cpu", compute_units=4, simd_lanes=4, fma_per_cycle=1.0,
            clock_ghz=2.0, vector_bits=128, fma_latency=10.0, vector_registers=32,
            l1_ways=2, l1_way_bytes=16 * KB,
            levels=(MemoryLevel("L1", 32 * KB, 4 * 16 * 2.0, per_unit=True),
                    MemoryLevel("L2", 2 * MB, 4 * 8 * 2.0),
                    MemoryLevel("DRAM", 1 << 40, 59.7)),
            launch_us=3.0, sync_us=0.5, default_efficiency=0.8,
            sources={"compute": "NVIDIA Jetson TX2 data sheet: 4x Cortex-A57 at 2.0 GHz (the "
                                "2 Denver cores are not modelled); Arm Cortex-A57 Software "
                                "Optimization Guide: one 128-bit FMLA per cycle, "
                                "10-cycle FMLA latency",
                     "memory": "data sheet: 32 KB L1D per core, 2 MB L2 per cluster, LPDDR4 "
                               "59.7 GB/s; Cortex-A57 TRM: L1D 2-way set associative",
                     "L1/L2 bandwidth": "estimate: 16 / 8 B per clock per core",
                     "launch": "estimate: a TVM packed call on a 2 GHz in-order-ish core"}),
    }


BUILTIN_NAMES = ("host", *_builtin())


@dataclass(frozen=True)
class Machine:
    """What the predictor reads off a CPU machine: its /proc/cpuinfo text, its data and
    unified cache sizes by level, its L1 data cache's geometry (ways, bytes per way) and the
    cores this process may run on.

    Kept apart from the profile built from it so that a recorded machine (tests, a board
    described on a workstation) gives the same profile anywhere: :func:`read_machine` is the
    one place the live machine is read.
    """

    cpuinfo: str
    caches: dict[int, int] = field(default_factory=dict)
    l1_ways: int = 8
    l1_way_bytes: int = 4 * KB
    cores: int = 1


def _sysfs_caches(root: Path) -> tuple[dict[int, int], tuple[int, int]]:
    """({level: bytes} of cpu0's data/unified caches, (L1D ways, bytes per way)) from sysfs;
    empty / (8, 4096) where it tells nothing."""
    sizes, l1 = {}, (8, 4 * KB)
    for index in sorted(root.glob("index*")):
        try:
            if (index / "type").read_text().strip() == "Instruction":
                continue
            level = int((index / "level").read_text())
            text = (index / "size").read_text().strip()
            sizes[level] = int(text.rstrip("KM")) * {"K": KB, "M": MB}.get(text[-1], 1)
            if level == 1:
                ways = int((index / "ways_of_associativity").read_text())
                way = int((index / "number_of_sets").read_text()) * int(
                    (index / "coherency_line_size").read_text())
                if ways > 0 and way > 0:
                    l1 = (ways, way)
        except (OSError, ValueError):
            continue
    return sizes, l1


def read_machine() -> Machine:
    """This machine as :class:`Machine` (/proc/cpuinfo, sysfs caches, the process's CPU
    affinity). The only read of the live host the predictor makes: the test suite replaces it
    (tests/conftest.py) so that no test's outcome depends on the CPU it runs on."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    caches, (ways, way_bytes) = _sysfs_caches(Path("/sys/devices/system/cpu/cpu0/cache"))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return Machine(text, caches, ways, way_bytes, cores or 1)


def cpu_profile(machine: Machine, features=None, name: str = "host") -> Hardware:
    """A CPU profile with nominal bandwidths (uncalibrated) of ``machine``, its vector width
    from ``features`` (the compile target's LLVM features: what the code will really run)
    or, without them, from the machine's own flags."""
    from ..target import read_cpu_flags, simd_bits

    try:
        arch, flags = read_cpu_flags(machine.cpuinfo)
    except ValueError:
        arch, flags = platform.machine(), frozenset()
    bits = simd_bits(flags if features is None else features)
    mhz = [float(v.split(":")[1]) for v in machine.cpuinfo.splitlines()
           if v.lower().startswith("cpu mhz")]
    clock = (mhz[0] / 1000.0) if mhz else 2.5
    cores = machine.cores
    l1, l2 = machine.caches.get(1, 32 * KB), machine.caches.get(2, 1 * MB)
    levels = [MemoryLevel("L1", l1, cores * 64 * clock, per_unit=True),
              MemoryLevel("L2", l2, cores * 32 * clock, per_unit=True)]
    if 3 in machine.caches:
        levels.append(MemoryLevel("L3", machine.caches[3], cores * 16 * clock))
    levels.append(MemoryLevel("DRAM", 1 << 40, cores * 10.0))
    return Hardware(
        name=name, kind="cpu", compute_units=cores, simd_lanes=bits // 32,
        # two 256-bit FMA pipes (x86 since Haswell / Zen 2); AVX-512 issues as one 512-bit FMA
        # per cycle on most of them; NEON: two 128-bit pipes on big cores
        fma_per_cycle=(2.0 if bits == 256 else 1.0) if arch == "x86_64" else 2.0,
        clock_ghz=clock, vector_bits=bits, levels=tuple(levels), launch_us=2.0, sync_us=1.0,
        default_efficiency=0.9, l1_ways=machine.l1_ways, l1_way_bytes=machine.l1_way_bytes,
        # AVX-512 and NEON: 32 vector registers; AVX2: 16
        vector_registers=16 if bits == 256 else 32,
        sources={"compute, caches": "/proc/cpuinfo and /sys/devices/system/cpu (nominal, "
                                    "uncalibrated: run `las predict --calibrate`)",
                 "bandwidth": "nominal 64/32/16 B per clock per core for L1/L2/L3, 10 GB/s "
                              "DRAM per core"})


def nominal_host() -> Hardware:
    """This machine (:func:`read_machine`) with nominal bandwidths (uncalibrated)."""
    return cpu_profile(read_machine())


def default_host_profile_path() -> Path:
    """Where ``las predict --calibrate`` stores this machine's profile."""
    root = os.environ.get("LAS_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "las-compiler")
    return Path(root) / "hardware" / "host.json"


def host_profile() -> tuple[Hardware, bool]:
    """(this machine's profile, calibrated?): the calibrated file when present and made on a
    CPU like this one (same cores and vector width), else the nominal profile of
    :func:`read_machine`."""
    return _this_machine()


def _this_machine(features=None) -> tuple[Hardware, bool]:
    """:func:`host_profile`, its vector width from ``features`` (the LLVM features of the
    target the code is compiled for, which need not be this CPU's best) when given."""
    nominal = cpu_profile(read_machine(), features)
    path = default_host_profile_path()
    if path.exists():
        try:
            calibrated = load_hardware(path)
        except HardwareError:
            return nominal, False
        if (calibrated.compute_units, calibrated.vector_bits) == \
                (nominal.compute_units, nominal.vector_bits):
            return calibrated, True
    return nominal, False


def this_machine(features=None) -> Hardware:
    """This machine's profile (calibrated when available), its vector width from ``features``
    (see :func:`_this_machine`): what a CPU target of this machine's architecture runs on.
    The target families map their targets to profiles (``TargetFamily.hardware``)."""
    return _this_machine(features)[0]


def get_hardware(spec: str) -> Hardware:
    """``spec``: a built-in name (see :data:`BUILTIN_NAMES`) or a path to a profile JSON."""
    key = spec.lower()
    if key == "host":
        return host_profile()[0]
    builtin = _builtin()
    if key in builtin:
        return builtin[key]
    if spec.endswith(".json") or os.sep in spec:
        return load_hardware(spec)
    raise HardwareError(f"unknown hardware {spec!r}: use one of {', '.join(BUILTIN_NAMES)} or "
                        f"a profile .json file")
