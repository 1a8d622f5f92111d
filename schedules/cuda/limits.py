"""Resource checks of a GPU-scheduled kernel against its target (TVM's own verifier).

``tvm.s_tir.meta_schedule.postproc.VerifyGPUCode`` lowers a schedule as a build would and
checks threads per block, shared and local memory per block and vector widths against the
target. It needs every launch extent constant, and our sparse kernels launch one thread block
per active patch tile (a symbolic count), so the check runs on a copy whose symbolic sizes
are fixed: per-block resources do not depend on how many blocks are launched.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import tvm
import tvm_ffi
from tvm import s_tir, tirx

LAUNCH_SIZE = 64  # the value symbolic sizes (active patches, row groups) take in the check


def symbolic_sizes(func: tirx.PrimFunc) -> list:
    """The size variables of a kernel's parameters (e.g. the active patch count n)."""
    out = []
    for param in func.params:
        for dim in getattr(param, "shape", None) or ():
            if isinstance(dim, tirx.Var) and not any(dim.same_as(v) for v in out):
                out.append(dim)
    return out


def with_fixed_sizes(func: tirx.PrimFunc, value: int = LAUNCH_SIZE) -> tirx.PrimFunc:
    sizes = symbolic_sizes(func)
    if not sizes:
        return func

    def fix(var):
        return tirx.const(value, "int32") if any(var.same_as(v) for v in sizes) else var

    return func.with_body(tvm_ffi.structural_map(func.body, [(tirx.Var, fix)], order="post"))


def with_allocations_placed(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """TVM's own passes put each buffer where it lives (a shared buffer in its thread block,
    a local one in its thread) at the size one block or thread uses."""
    return tvm.transform.Sequential([
        s_tir.transform.LowerInitBlock(),
        s_tir.transform.PlanAndUpdateBufferAllocationLocation(),
        s_tir.transform.ConvertBlocksToOpaque(),
        s_tir.transform.CompactBufferAllocation(),
    ])(tvm.IRModule({"main": func}))["main"]


def block_resources(func: tirx.PrimFunc) -> dict:
    """Threads per block and shared bytes per block of a scheduled kernel (as built: a
    pipelined loop's shared stages counted for each of their copies)."""
    placed = with_allocations_placed(with_fixed_sizes(func))
    threads, shared = {}, [0]

    def visit(node):
        if isinstance(node, tirx.For) and node.kind == tirx.ForKind.THREAD_BINDING:
            tag = str(node.thread_binding.thread_tag)
            if tag.startswith("threadIdx") and isinstance(node.extent, tirx.IntImm):
                threads[tag] = max(threads.get(tag, 1), int(node.extent))
        if isinstance(node, s_tir.SBlock):
            for buffer in node.alloc_buffers:
                if buffer.scope().startswith("shared"):
                    count = 1
                    for dim in buffer.shape:
                        count *= int(dim) if isinstance(dim, tirx.IntImm) else 1
                    shared[0] += count * tvm.runtime.DataType(buffer.dtype).bits // 8
        return node

    tvm_ffi.structural_map(placed.body, [(tirx.For, visit), (s_tir.SBlock, visit)],
                           order="post")
    total = 1
    for extent in threads.values():
        total *= extent
    return {"threads": total, "shared_bytes": shared[0] * pipelined_copies(func)}


def pipelined_copies(func: tirx.PrimFunc) -> int:
    """Copies of each shared buffer a build makes: 2 where a loop is a two-stage software
    pipeline (``InjectSoftwarePipeline`` double-buffers what its stages write), else 1."""
    found = []

    def visit(node):
        if "software_pipeline_stage" in node.annotations:
            found.append(max(int(s) for s in node.annotations["software_pipeline_stage"]))
        return node

    tvm_ffi.structural_map(func.body, [(tirx.For, visit)], order="post")
    return 1 + max(found, default=0)


def fits(func: tirx.PrimFunc, target: tvm.target.Target) -> bool:
    """TVM's VerifyGPUCode on ``func`` (scheduled, not lowered) for ``target``."""
    mod = tvm.IRModule({"main": with_fixed_sizes(func)})
    return bool(_verifier(str(target)).apply(s_tir.Schedule(mod)))


@functools.lru_cache(maxsize=16)
def _verifier(target_json: str):
    """meta_schedule's ``VerifyGPUCode`` postproc, initialised for the target (it reads the
    target's limits; one per target, reused). Its tune context is made through the FFI
    constructor: ``TuneContext.__init__`` first imports ``tvm.s_tir.tensor_intrin``, which
    takes 20 s here once per process and which a verifier does not use."""
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule import _ffi_api

    context = ms.TuneContext.__new__(ms.TuneContext)
    context.__init_handle_by_constructor__(_ffi_api.TuneContext, None,
                                           tvm.target.Target(target_json), None, None, "main",
                                           1, -1, None)
    verifier = ms.postproc.VerifyGPUCode()
    verifier._initialize_with_tune_context(context)  # noqa: SLF001 - TVM's own entry point
    return verifier


@dataclass(frozen=True)
class Multiprocessor:
    """Per-SM limits of a compute capability (CUDA programming guide, "Technical
    Specifications per Compute Capability"): 32-bit registers, resident threads and thread
    blocks, shared memory."""

    registers: int
    threads: int
    blocks: int
    shared_bytes: int
    register_unit: int = 256  # registers are allocated per warp in units of this many


MULTIPROCESSORS = {
    61: Multiprocessor(65536, 2048, 32, 96 << 10),   # GTX 1080
    62: Multiprocessor(65536, 2048, 32, 64 << 10),   # Jetson TX2
    70: Multiprocessor(65536, 2048, 32, 96 << 10),   # V100
    87: Multiprocessor(65536, 1536, 16, 164 << 10),  # Jetson Orin
    90: Multiprocessor(65536, 2048, 32, 228 << 10),  # H100
}


def occupancy(arch: int, threads: int, registers: int, shared_bytes: int,
              warp: int = 32) -> tuple[float, str]:
    """(resident warps / the SM's most, what limits it) of a kernel whose blocks have
    ``threads`` threads of ``registers`` registers each and ``shared_bytes`` of shared memory
    (``ptxas -v``'s report), on compute capability ``arch``."""
    sm = MULTIPROCESSORS[arch]
    warps = -(-threads // warp)
    per_warp = -(-registers * warp // sm.register_unit) * sm.register_unit
    limits = {"threads": sm.threads // (warps * warp), "blocks": sm.blocks,
              "registers": sm.registers // max(1, warps * per_warp),
              "shared": sm.shared_bytes // shared_bytes if shared_bytes else sm.blocks}
    limiter = min(limits, key=limits.get)
    return limits[limiter] * warps * warp / sm.threads, limiter
