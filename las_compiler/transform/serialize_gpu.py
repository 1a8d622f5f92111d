"""SerializeGPUSchedule: a GPU-scheduled kernel as an equivalent serial CPU program.

Why: CI machines have no GPU, yet every GPU schedule must be checked for numbers. A schedule
rewrites loops and buffers but keeps what a kernel computes, *provided* its threads
cooperate correctly (shared-memory fetches cover what is read, barriers sit where they must,
every output is written by some thread). Run the scheduled TIR in program order on the CPU
and those mistakes show up as wrong numbers, while the kernel body is exactly the GPU's.

On the scheduled TIR, before any lowering:

1. TVM's own passes place every allocation at the loop it belongs to (a shared buffer in its
   thread block, a local buffer in its thread: ``PlanAndUpdateBufferAllocationLocation``), so
   each emulated block or thread still gets a private buffer;
2. every thread-bound loop (``blockIdx.*``, ``threadIdx.*``, ``vthread``) becomes a serial
   loop over the same range, in program order;
3. ``shared`` / ``local`` buffers become plain (``global``) buffers;
4. barriers (``tvm_storage_sync``) are dropped.

Step 4 is sound because a thread-bound loop nest between two barriers runs to completion,
for every thread, before the next nest starts: exactly what the barrier guarantees on the
device. What this cannot catch: data races between threads of one block without a barrier
in between (the serial order hides them), warp-level intrinsics (shuffles, votes: the rules
use none), shared-memory bank conflicts, occupancy and timing. ``verify_gpu_code`` and
``ptxas`` check the resource limits separately.
"""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import s_tir, tirx

from ..schedules.cuda.limits import with_allocations_placed

PRIVATE_SCOPES = ("shared", "shared.dyn", "local", "warp")


def _serial_loops(stmt):
    def visit(node):
        if isinstance(node, tirx.For) and node.kind == tirx.ForKind.THREAD_BINDING:
            return tirx.For(node.loop_var, node.min, node.extent, tirx.ForKind.SERIAL,
                            node.body, annotations=node.annotations)
        if isinstance(node, tirx.Evaluate) and isinstance(node.value, tirx.Call) \
                and node.value.op.same_as(tvm.ir.Op.get("tirx.tvm_storage_sync")):
            return tirx.Evaluate(tirx.const(0, "int32"))
        return node

    return tvm_ffi.structural_map(stmt, [(tirx.For, visit), (tirx.Evaluate, visit)],
                                  order="post")


def _private_buffers(stmt) -> list:
    found = []

    def visit(node):
        if isinstance(node, s_tir.SBlock):
            found.extend(b for b in node.alloc_buffers if b.scope() in PRIVATE_SCOPES)
        elif node.buffer.scope() in PRIVATE_SCOPES:  # an AllocBuffer statement
            found.append(node.buffer)
        return node

    tvm_ffi.structural_map(stmt, [(s_tir.SBlock, visit), (tirx.AllocBuffer, visit)],
                           order="post")
    return found


def _as_global(buffer):
    return tirx.decl_buffer(buffer.shape, buffer.dtype, buffer.name, scope="global")


def serialize(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """``func`` (scheduled for a GPU, not lowered) as a serial program (module docstring)."""
    func = with_allocations_placed(func)  # step 1
    body = _serial_loops(func.body)
    replace = {b: _as_global(b) for b in _private_buffers(body)}
    if replace:
        # buffers are Vars in 0.27: one map over Vars renames every use and allocation
        # (TVM's own BufferReplacer re-creates every buffer it meets, parameters included)
        body = tvm_ffi.structural_map(body, [(tirx.Var, lambda v: replace.get(v, v))],
                                      order="post")
    func = func.with_body(body)
    return func.without_attr("target") if "target" in (func.attrs or {}) else func


@tvm.transform.module_pass(opt_level=0, name="SerializeGPUSchedule")
class SerializeGPUSchedule:
    """Module pass form of :func:`serialize` (every PrimFunc)."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        for gvar, func in list(mod.functions_items()):
            if isinstance(func, tirx.PrimFunc):
                mod[gvar] = serialize(func)
        return mod
