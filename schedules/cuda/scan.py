"""Work-list scans on CUDA: one thread block of ``CHUNKS`` threads, counts in shared memory.

Pattern matched: the chunked compaction kernels (``compact``, ``active_rows``,
``dilated_rows``, ``pixel_rows``; see ``las_compiler.op.scan``).

Schedule strategy: the kernels are written as phases of independent chunk loops inside a
unit ``block`` loop. 1. that loop becomes the one thread block (``blockIdx.x``), every chunk
loop its ``threadIdx.x`` (a chunk per thread); 2. the chunk counts and the scan's buffers go
to shared memory, so TVM's thread-sync pass puts the barriers between the phases;
3. phases over the whole map before the block (``dilated_rows`` clears and marks the pixels
the active windows read) are ordinary grid-wide kernels: fused loops over ``blockIdx.x`` x
``threadIdx.x``, ordered against the scan by the kernel launches themselves.
One block suffices: the largest list (S = 1 at stage 1 of an 800x1333 detection input,
66,800 pixels) is 261 entries per thread, read once.
"""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import s_tir, tirx

from ...op.scan import CHUNKS
from ..analysis import kernel_kind
from ..base import check, new_schedule
from .base import GPURule, Limits

SCAN_KERNELS = ("compact", "active_rows", "dilated_rows", "pixel_rows")
PHASES = ("count", "scan_add", "scan_copy", "write")
SHARED = {"count": (0, 1), "scan_add": (0,)}  # block -> indices of the writes kept in shared


class ScanGPU(GPURule):
    def matches(self, func) -> bool:
        return kernel_kind(func) in SCAN_KERNELS

    def schedule(self, sch, func, target, knobs):
        limits = Limits.of(target)
        check(CHUNKS <= limits.threads, f"{kernel_kind(func)}: {CHUNKS} threads per block "
                                        f"exceed the target's {limits.threads}")
        names = {str(sch.get(b).name_hint): b for b in _all_blocks(sch)}
        for name, block in names.items():
            if name in PHASES:
                continue
            loops = sch.get_loops(block)
            fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
            bx, tx = sch.split(fused, [None, min(256, limits.threads)])
            sch.bind(bx, "blockIdx.x")
            sch.bind(tx, "threadIdx.x")
        for name, writes in SHARED.items():
            for index in writes:
                sch.set_scope(names[name], index, "shared")
        # ``bind`` wants each loop's subtree to be a dataflow of complete blocks, which a scan
        # (two writers of the running sums) is not: the loops are rebound in the IR directly
        func = sch.mod["main"]
        func = func.with_body(_bind_phases(func.body))
        return new_schedule(func)


def _thread(tag: str, extent: int):
    return tirx.IterVar(tvm.ir.Range(0, extent), tirx.Var(tag, "int32"),
                        tirx.IterVar.ThreadIndex, tag)


def _bind_phases(body):
    """The unit ``block`` loop -> blockIdx.x; each chunk loop directly around a phase block
    -> threadIdx.x."""

    def visit(node):
        if node.kind != tirx.ForKind.SERIAL:
            return node
        name = str(node.loop_var.name)
        child = node.body
        phase = isinstance(child, s_tir.SBlockRealize) and str(child.block.name_hint) in PHASES
        if name == "block" or phase:
            tag = "blockIdx.x" if name == "block" else "threadIdx.x"
            return tirx.For(node.loop_var, node.min, node.extent, tirx.ForKind.THREAD_BINDING,
                            node.body, thread_binding=_thread(tag, int(node.extent)),
                            annotations=node.annotations)
        return node

    return tvm_ffi.structural_map(body, [(tirx.For, visit)], order="post")


def _all_blocks(sch):
    root = sch.get_sblock("root")
    out, todo = [], list(sch.get_child_blocks(root))
    while todo:
        block = todo.pop(0)
        out.append(block)
        todo.extend(sch.get_child_blocks(block))
    return [b for b in out if str(sch.get(b).name_hint) not in ("",)]
