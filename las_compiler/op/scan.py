"""Ordered compaction in chunks: the shared core of the work-list kernels.

``compact``, ``active_rows`` and ``dilated_rows`` list, in order, the positions ``i`` of an
int32 array whose entry is non-zero. Written as one serial loop, a GPU would run it on one
thread. Here the array is cut into :data:`CHUNKS` chunks, and the kernels are written in
three phases, each a loop over chunks whose iterations are independent:

1. ``count``: each chunk counts its non-zero entries;
2. ``scan``: an inclusive prefix sum over the chunk counts, Hillis-Steele style (log2 CHUNKS
   steps, each a loop over chunks reading the previous step's values);
3. ``write`` (in each kernel): each chunk writes its entries from its offset on.

On a CPU the phases run in order on one thread (microseconds); on a GPU each chunk loop is one
thread of a single thread block, the counts live in shared memory, and the barriers between
the phases come from TVM's thread-sync pass. The outer loop ``block`` (extent 1) is that
thread block. Work is O(length) in parallel plus O(CHUNKS log CHUNKS) for the scan.
"""

from __future__ import annotations

from tvm.script import tirx as T

CHUNKS = 256  # threads of the GPU thread block; chunk count on every target
LOG_CHUNKS = 8


def chunk_size(length: int) -> int:
    return max(1, -(-length // CHUNKS))


def chunked_offsets(length: int):
    """A TVMScript macro ``(src, counts, inclusive, swap)``: per chunk its count of non-zero
    ``src`` entries (``counts``) and the inclusive prefix sum of the counts (``inclusive``;
    ``swap`` is scratch). Call it inside the kernel's ``block`` loop."""
    size = chunk_size(length)

    @T.macro
    def offsets(src, counts, inclusive, swap):
        for t in range(CHUNKS):
            with T.sblock("count"):
                vt = T.axis.spatial(CHUNKS, t)
                T.reads(src[0:length])
                T.writes(counts[vt], inclusive[vt])
                counts[vt] = 0
                for i in range(size):
                    if vt * size + i < length:
                        if src[vt * size + i] != 0:
                            counts[vt] = counts[vt] + 1
                inclusive[vt] = counts[vt]
        for step in range(LOG_CHUNKS):
            for t in range(CHUNKS):
                with T.sblock("scan_add"):
                    vs = T.axis.opaque(LOG_CHUNKS, step)
                    vt = T.axis.spatial(CHUNKS, t)
                    T.reads(inclusive[0:CHUNKS])
                    T.writes(swap[vt])
                    swap[vt] = inclusive[vt] + T.if_then_else(
                        vt >= T.shift_left(1, vs), inclusive[vt - T.shift_left(1, vs)], 0)
            for t in range(CHUNKS):
                with T.sblock("scan_copy"):
                    vt = T.axis.spatial(CHUNKS, t)
                    inclusive[vt] = swap[vt]

    return offsets


def listed_in_groups(length: int, group: int, max_groups: int, pad_with_last: bool):
    """A TVMScript macro ``(src, counts, inclusive, rows, groups)``: phase 3 for the row-group
    lists - the non-zero positions of ``src`` in order, as ``rows[max_groups, group]``, the
    last group padded with its last entry (``pad_with_last``) or with -1; ``groups[0]`` = the
    groups used. Call it after :func:`chunked_offsets` in the same ``block`` loop."""
    size = chunk_size(length)
    G = group  # noqa: N806

    @T.macro
    def write(src, counts, inclusive, rows, groups):
        for t in range(CHUNKS):
            with T.sblock("write"):
                vt = T.axis.spatial(CHUNKS, t)
                T.reads(src[0:length], counts[vt], inclusive[0:CHUNKS])
                T.writes(rows[0:max_groups, 0:G], groups[0:1])
                at = T.sblock_alloc_buffer((1,), "int32", scope="local")
                last = T.sblock_alloc_buffer((1,), "int32", scope="local")
                at[0] = inclusive[vt] - counts[vt]
                last[0] = inclusive[CHUNKS - 1] - 1  # (GPU: shared reads stay out of ifs)
                for i in range(size):
                    if vt * size + i < length:
                        if src[vt * size + i] != 0:
                            rows[at[0] // G, at[0] % G] = vt * size + i
                            if at[0] == last[0]:  # the last entry pads the rest of its group
                                for u in range(G):
                                    if u > at[0] % G:
                                        rows[at[0] // G, u] = T.if_then_else(
                                            pad_with_last, vt * size + i, -1)
                            at[0] = at[0] + 1
                if vt == CHUNKS - 1:
                    groups[0] = T.Cast("int64", (last[0] + G) // G)

    return write
