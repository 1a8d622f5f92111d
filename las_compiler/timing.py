"""Wall-clock medians for things that are not TVM functions (TVM's own are timed with
``time_evaluator``)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 1,
              warmup_s: float = 0.0) -> float:
    """Median milliseconds of ``fn()`` over ``repeats`` calls after ``warmup`` calls, and
    more until ``warmup_s`` seconds have passed (wakes sleeping thread pools)."""
    for _ in range(warmup):
        fn()
    deadline = time.perf_counter() + warmup_s
    while time.perf_counter() < deadline:
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)
