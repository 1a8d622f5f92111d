"""How the work-list scans cut their array into chunks (``op.scan``), without TVM: the
kernels and the latency predictor read the same layout.

A short array (at most ``CHUNKS * GRID_CHUNK`` entries) has ``CHUNKS`` chunks, one per thread
of the scanning thread block, and the whole scan is that one block. A longer one has chunks of
``GRID_CHUNK`` entries, counted and written by grid-wide kernels; the block only scans their
counts, ``per_thread`` of them per thread.
"""

from __future__ import annotations

from dataclasses import dataclass

CHUNKS = 256  # threads of the scanning thread block
LOG_CHUNKS = 8
GRID_CHUNK = 32  # entries per chunk of a long array's grid-wide count and write


@dataclass(frozen=True)
class ScanLayout:
    """An array of ``length`` entries cut into ``chunks`` (a multiple of CHUNKS) of ``size``
    entries each (the last ones may reach past the end)."""

    length: int
    chunks: int
    size: int

    @property
    def per_thread(self) -> int:
        return self.chunks // CHUNKS

    @property
    def grid(self) -> bool:
        """Count and write are grid-wide loops (more chunks than one block has threads)."""
        return self.chunks > CHUNKS


def scan_layout(length: int) -> ScanLayout:
    if length < 0:
        raise ValueError(f"a scan's array has a length >= 0, got {length}")
    if length <= CHUNKS * GRID_CHUNK:
        return ScanLayout(length, CHUNKS, max(1, -(-length // CHUNKS)))
    chunks = -(-length // GRID_CHUNK)
    return ScanLayout(length, -(-chunks // CHUNKS) * CHUNKS, GRID_CHUNK)
