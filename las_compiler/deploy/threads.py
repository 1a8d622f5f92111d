"""How many threads TVM's runtime uses for a compiled module, set by the library.

TVM's parallel loops run on a thread pool that each calling thread owns (``thread_local`` in
TVM's runtime), sized once, when that thread first runs parallel code: from
``TVM_NUM_THREADS``, else from half the hardware threads on x86 (TVM assumes
hyper-threading), which on a 2-core VM is one thread. So a module loaded with
``las_compiler.load`` would run on one core. :func:`use_threads` sizes the calling thread's
pool before its first parallel launch (``runtime.config_threadpool`` over the CPUs this
process may use, without pinning a thread to one core), which ``CompiledModel`` does in every
thread that runs it.

The count: an explicit ``threads``; else ``TVM_NUM_THREADS``; else the cores the target was
compiled for (its ``num-cores``), at most the CPUs this process may use.
"""

from __future__ import annotations

import json
import os

_SHARE_ALL_CORES = -3  # TVM ThreadGroup::kSpecifyThreadShareAllCore


def available_cpus() -> list[int]:
    """CPUs this process may run on (its affinity mask)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def default_threads(target_text: str | None = None) -> int:
    """``TVM_NUM_THREADS`` if set, else the target's ``num-cores`` (at most the CPUs this
    process may use), else those CPUs."""
    cpus = len(available_cpus())
    env = os.environ.get("TVM_NUM_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ValueError(f"TVM_NUM_THREADS={env!r} is not a number of threads") from None
    cores = None
    if target_text:
        try:
            cores = json.loads(target_text).get("num-cores")
        except (json.JSONDecodeError, AttributeError):
            cores = None
    return max(1, min(int(cores), cpus)) if cores else cpus


def use_threads(threads: int) -> int:
    """Size the calling thread's TVM pool to ``threads`` (before it first runs parallel code:
    a pool already made cannot grow). Returns the number of threads in effect."""
    import tvm

    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    cpus = available_cpus()
    config = tvm.get_global_func("runtime.config_threadpool")
    # the CPUs the threads may share: all the process may use, or as many as threads asked
    shared = cpus if len(cpus) >= threads else list(range(threads))
    config(_SHARE_ALL_CORES, threads, [str(c) for c in shared])
    return int(tvm.runtime.num_threads())
