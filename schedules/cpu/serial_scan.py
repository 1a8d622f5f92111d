"""Work-list scans and small copies on CPUs: left serial.

Pattern matched: the kernels that build or copy work lists (``compact``, ``dilated_rows``,
``active_rows``, ``pixel_rows``, the ``active_prefix`` / ``row_groups_prefix`` copies) and ``copy``.
Schedule strategy: none; the kernel runs as written, on one thread. They touch at most a few
thousand cells or pixels (microseconds), and a parallel prefix sum would cost more in
synchronisation than it saves. Deliberately not done: parallel scans (a GPU needs them; a
2-core CPU does not).
"""

from __future__ import annotations

from ..analysis import kernel_kind
from .base import CPURule

SERIAL_KERNELS = ("compact", "active_prefix", "active_rows", "dilated_rows", "pixel_rows",
                  "row_groups_prefix", "copy")


class SerialScan(CPURule):
    def matches(self, func) -> bool:
        return kernel_kind(func) in SERIAL_KERNELS

    def schedule(self, sch, func, target, knobs):
        return sch

