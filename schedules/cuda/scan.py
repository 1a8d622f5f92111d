"""Work-list scans on CUDA: one thread block of ``CHUNKS`` threads scans, grid-wide kernels
count and write long arrays.

Pattern matched: the chunked compaction kernels (``compact``, ``active_rows``,
``dilated_rows``, ``pixel_rows``; see ``las_compiler.op.scan`` for their phases and layouts).

Schedule strategy:
1. the unit ``block`` loop becomes one thread block (``blockIdx.x``), every loop directly
   around a phase inside it its ``threadIdx.x`` (a chunk or a run of chunks per thread);
2. what only the phases inside that block read and write (chunk counts, thread totals, the
   running sums, chunk offsets) goes to shared memory, so TVM's thread-sync pass puts the
   barriers between the phases;
3. every loop outside the block (a long array's ``count`` and ``write`` over all its chunks)
   is an ordinary grid-wide kernel: its loops fused and split over ``blockIdx.x`` x
   ``threadIdx.x``, ordered against the scan by the kernel launches themselves; what they
   hand over stays global.
A batch-1 list is one launch; a batch of 128 (401,408 pixels at stage 1) counts and writes
its 12,544 chunks on every SM, and the scanning block walks 49 counts per thread: three.
The pixel lists read the cell flags through a predicate (``op.scan.work_list``'s ``listed``)
instead of a marked copy of the map, which took two launches more (clear, mark).
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
SCAN_LOOP = "block"  # the op's unit loop around the scanning thread block
PHASES = ("count", "thread_total", "scan_add", "scan_copy", "chunk_offsets", "write")


class ScanGPU(GPURule):
    def matches(self, func) -> bool:
        return kernel_kind(func) in SCAN_KERNELS

    def schedule(self, sch, func, target, knobs):
        limits = Limits.of(target)
        check(CHUNKS <= limits.threads, f"{kernel_kind(func)}: {CHUNKS} threads per block "
                                        f"exceed the target's {limits.threads}")
        blocks = _all_blocks(sch)
        inside = [b for b in blocks if _in_scan_block(sch, b)]
        outside = [b for b in blocks if not _in_scan_block(sch, b)]
        handed_over = {str(r.source.name) for b in outside for r in sch.get(b).reads}
        params = {str(p.name) for p in sch.mod["main"].params}
        for block in outside:
            loops = sch.get_loops(block)
            fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
            bx, tx = sch.split(fused, [None, min(256, limits.threads)])
            sch.bind(bx, "blockIdx.x")
            sch.bind(tx, "threadIdx.x")
        shared = set()
        for block in inside:
            for index, region in enumerate(sch.get(block).writes):
                name = str(region.source.name)
                if name in shared or name in params or name in handed_over \
                        or region.source.scope() != "global":
                    continue
                sch.set_scope(block, index, "shared")
                shared.add(name)
        # ``bind`` wants each loop's subtree to be a dataflow of complete blocks, which a scan
        # (two writers of the running sums) is not: the loops are rebound in the IR directly
        func = sch.mod["main"]
        func = func.with_body(_bind_phases(func.body))
        return new_schedule(func)


def _in_scan_block(sch, block) -> bool:
    return any(str(sch.get(loop).loop_var.name) == SCAN_LOOP for loop in sch.get_loops(block))


def _thread(tag: str, extent: int):
    return tirx.IterVar(tvm.ir.Range(0, extent), tirx.Var(tag, "int32"),
                        tirx.IterVar.ThreadIndex, tag)


def _bind_phases(body):
    """The unit ``block`` loop -> blockIdx.x; each (still serial) loop directly around a
    phase block -> threadIdx.x (the grid-wide loops are bound already)."""

    def visit(node):
        if node.kind != tirx.ForKind.SERIAL:
            return node
        name = str(node.loop_var.name)
        child = node.body
        phase = isinstance(child, s_tir.SBlockRealize) and str(child.block.name_hint) in PHASES
        if name == SCAN_LOOP or phase:
            tag = "blockIdx.x" if name == SCAN_LOOP else "threadIdx.x"
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
