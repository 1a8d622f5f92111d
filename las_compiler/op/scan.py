"""Ordered compaction in chunks: the shared core of the work-list kernels.

``compact``, ``active_rows``, ``dilated_rows`` and ``pixel_rows`` list, in order, the positions
``i`` that are *listed*: an int32 array's non-zero entries, or (``pixel_rows``) the pixels a
predicate of the cell flags selects, evaluated where the scan reads them, so no pass first
writes a marked copy of the map. Written as one serial loop, a GPU would run
it on one thread. Here the array is cut into chunks and the kernels are written in phases,
each a loop whose iterations are independent:

1. ``count``: each chunk counts its listed entries;
2. in one thread block of :data:`CHUNKS` threads, each owning ``per_thread`` consecutive
   chunks: ``thread_total`` sums a thread's chunk counts, ``scan_add`` / ``scan_copy`` take the
   inclusive prefix sum of the thread totals Hillis-Steele style (log2 CHUNKS steps, each a
   loop over threads reading the previous step's values), ``chunk_offsets`` gives every chunk
   the number of entries before it (and the last thread the total);
3. ``write`` (in each kernel): each chunk writes its entries from its offset on.

Two layouts (``las_compiler.scan_layout``). A short array (at most ``CHUNKS * GRID_CHUNK``
entries, every list of a batch-1 ImageNet network) has ``CHUNKS`` chunks, one per thread, and all
phases sit inside the unit ``block`` loop: on a GPU one thread block, one launch, counts and
offsets in shared memory. A long one (a batch of 128, or an 800x1333 detection map at S = 1)
has chunks of ``GRID_CHUNK`` entries; ``count`` and ``write`` are loops over all chunks
outside the ``block`` loop, so on a GPU they are grid-wide kernels that fill the device, and
only the scan of the chunk counts (``per_thread`` per thread) runs in one block: three
launches, where a single block would walk hundreds of thousands of entries on one SM.
On a CPU the phases run in order on one thread (microseconds).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tvm.script import tirx as T

from ..scan_layout import CHUNKS, LOG_CHUNKS, ScanLayout, scan_layout

__all__ = ["CHUNKS", "Listing", "ScanLayout", "listed_in_groups", "nonzero", "scan_layout",
           "work_list"]


SCRATCH = 8  # local int32 slots a ``prepare`` macro may fill for its ``listed`` test


def nonzero(src, i, scratch=None):
    """Entry ``i`` of ``src`` is listed where it is non-zero (the default ``listed``)."""
    return src[i] != 0


@dataclass(frozen=True)
class Listing:
    """Which entries a work list holds: ``listed(src, i, scratch)`` (a PrimExpr), after
    ``prepare(src, i, scratch)`` (an optional TVMScript macro filling the local ``scratch``
    of :data:`SCRATCH` int32: values ``listed`` reads as loads, not as expressions, which
    keeps TVM's region analysis fast); ``source`` elements of ``src`` (None: the length)."""

    listed: Callable = nonzero
    prepare: Callable | None = None
    source: int | None = None


def _count(layout: ScanLayout, listing: Listing):
    L, C, size = layout.length, layout.chunks, layout.size  # noqa: N806
    listed, prepare = listing.listed, listing.prepare
    source = L if listing.source is None else listing.source
    prepared = prepare is not None

    @T.macro
    def count(src, counts):
        for c in range(C):
            with T.sblock("count"):
                vc = T.axis.spatial(C, c)
                T.reads(src[0:source])
                T.writes(counts[vc])
                n = T.sblock_alloc_buffer((1,), "int32", scope="local")
                scratch = T.sblock_alloc_buffer((SCRATCH,), "int32", scope="local")
                n[0] = 0
                for i in range(size):
                    if vc * size + i < L:
                        if prepared:
                            prepare(src, vc * size + i, scratch)
                        if listed(src, vc * size + i, scratch):
                            n[0] = n[0] + 1
                counts[vc] = n[0]

    return count


def _offsets(layout: ScanLayout, carried: int):
    per = layout.per_thread
    carrying = carried > 0

    @T.macro
    def offsets(counts, totals, inclusive, swap, starts, total, carried_in, out_counts):
        for t in range(CHUNKS):
            with T.sblock("thread_total"):
                vt = T.axis.spatial(CHUNKS, t)
                T.reads(counts[vt * per:vt * per + per])
                T.writes(totals[vt], inclusive[vt])
                n = T.sblock_alloc_buffer((1,), "int32", scope="local")
                n[0] = 0
                for j in range(per):
                    n[0] = n[0] + counts[vt * per + j]
                totals[vt] = n[0]
                inclusive[vt] = n[0]
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
        for t in range(CHUNKS):
            with T.sblock("chunk_offsets"):
                vt = T.axis.spatial(CHUNKS, t)
                if carrying:  # (a Python bool: the parser keeps one branch)
                    T.reads(counts[vt * per:vt * per + per], totals[vt], inclusive[0:CHUNKS],
                            carried_in[0:carried])
                    T.writes(starts[vt * per:vt * per + per], total[0:1],
                             out_counts[0:carried])
                else:
                    T.reads(counts[vt * per:vt * per + per], totals[vt], inclusive[0:CHUNKS])
                    T.writes(starts[vt * per:vt * per + per], total[0:1])
                at = T.sblock_alloc_buffer((1,), "int32", scope="local")
                last = T.sblock_alloc_buffer((1,), "int32", scope="local")
                at[0] = inclusive[vt] - totals[vt]
                last[0] = inclusive[CHUNKS - 1]  # (GPU: shared reads stay out of ifs)
                for j in range(per):
                    starts[vt * per + j] = at[0]
                    at[0] = at[0] + counts[vt * per + j]
                if vt == CHUNKS - 1:
                    total[0] = last[0]
                    if carrying:
                        for s in range(carried):
                            out_counts[s] = carried_in[s]

    return offsets


def work_list(layout: ScanLayout, write, listing: Listing = Listing(), carried: int = 0):
    """A TVMScript macro ``(src, out_a, counts, carried_in)``: the phases of the module
    docstring over the layout's ``length`` entries, entry ``i`` listed as ``listing`` says
    (default: where the int32 array ``src`` is non-zero), ending in
    ``write(src, starts, total, out_a, counts)``: a macro looping over the layout's chunks
    (``starts[c]``: entries before chunk c; ``total[0]``: all of them) that lists by the same
    ``listing`` and writes the list's length to ``counts[carried]``. Call it at the top of a
    kernel. A list of pixels derived from cell flags passes the flags and a listing, not a
    marked copy of the map: no passes to clear and mark one (on a GPU, launches fewer).

    ``carried``: the lengths of that many earlier lists of the same block, ``carried_in``,
    go to ``counts[0:carried]`` (the scanning block's last thread copies them), so the
    block's last scan holds every length and the host reads them in one sync (``carried``
    0: ``carried_in`` is not read; pass ``counts``)."""
    C = layout.chunks  # noqa: N806
    count = _count(layout, listing)
    offsets = _offsets(layout, carried)

    grid = layout.grid

    @T.macro
    def phases(src, out_a, out_b, carried_in):
        counts = T.sblock_alloc_buffer((C,), "int32")
        starts = T.sblock_alloc_buffer((C,), "int32")
        total = T.sblock_alloc_buffer((1,), "int32")
        totals = T.sblock_alloc_buffer((CHUNKS,), "int32")
        inclusive = T.sblock_alloc_buffer((CHUNKS,), "int32")
        swap = T.sblock_alloc_buffer((CHUNKS,), "int32")
        if grid:  # (a Python bool: the parser keeps one branch)
            count(src, counts)
        for block in range(1):  # noqa: B007 - the scanning thread block
            if not grid:
                count(src, counts)
            offsets(counts, totals, inclusive, swap, starts, total, carried_in, out_b)
            if not grid:
                write(src, starts, total, out_a, out_b)
        if grid:
            write(src, starts, total, out_a, out_b)

    return phases


def listed_in_groups(layout: ScanLayout, group: int, max_groups: int, pad_with_last: bool,
                     listing: Listing = Listing(), slot: int = 0):
    """The ``write`` phase of the row-group lists (for :func:`work_list`): the listed
    positions (``listed``, ``source`` as there) in order, as ``rows[max_groups, group]``, the
    last group padded with its last entry (``pad_with_last``) or with -1; ``groups[slot]`` =
    the groups used (int64)."""
    L, C, size, G = layout.length, layout.chunks, layout.size, group  # noqa: N806
    listed, prepare = listing.listed, listing.prepare
    source = L if listing.source is None else listing.source
    prepared = prepare is not None

    @T.macro
    def write(src, starts, total, rows, groups):
        for c in range(C):
            with T.sblock("write"):
                vc = T.axis.spatial(C, c)
                T.reads(src[0:source], starts[vc], total[0])
                T.writes(rows[0:max_groups, 0:G], groups[slot:slot + 1])
                at = T.sblock_alloc_buffer((1,), "int32", scope="local")
                last = T.sblock_alloc_buffer((1,), "int32", scope="local")
                scratch = T.sblock_alloc_buffer((SCRATCH,), "int32", scope="local")
                at[0] = starts[vc]
                last[0] = total[0] - 1  # (GPU: shared reads stay out of ifs)
                for i in range(size):
                    if vc * size + i < L:
                        if prepared:
                            prepare(src, vc * size + i, scratch)
                        if listed(src, vc * size + i, scratch):
                            rows[at[0] // G, at[0] % G] = vc * size + i
                            if at[0] == last[0]:  # the last entry pads the rest of its group
                                for u in range(G):
                                    if u > at[0] % G:
                                        rows[at[0] // G, u] = T.if_then_else(
                                            pad_with_last, vc * size + i, -1)
                            at[0] = at[0] + 1
                if vc == C - 1:
                    groups[slot] = T.Cast("int64", (last[0] + G) // G)

    return write
