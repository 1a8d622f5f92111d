"""Build one kernel for a target: generate, schedule with our rules, compile; cached.

Kernel tests and the calibration probes ask for the same kernel many times, so the cache
keys on the kernel's registered name, its arguments and the target. (Networks and blocks are
compiled as Relax modules by :mod:`las_compiler.compiler`.)
"""

from __future__ import annotations

import functools

import tvm

from .op.registry import get_kernel
from .schedules import schedule
from .target import EmulatedGPU

_TARGETS: dict[str, tvm.target.Target | EmulatedGPU] = {}


@functools.lru_cache(maxsize=512)
def _build(kernel: str, args: tuple, key: str):
    target = _TARGETS[key]
    if isinstance(target, EmulatedGPU):
        from .target import host_target
        from .transform.serialize_gpu import serialize

        func = serialize(schedule(get_kernel(kernel)(*args), target.gpu))
        return tvm.compile(tvm.IRModule({"main": func}), target=host_target())
    func = schedule(get_kernel(kernel)(*args), target)
    return tvm.compile(tvm.IRModule({"main": func}), target=target)


def build_kernel(kernel: str, *args, target: tvm.target.Target | EmulatedGPU):
    """Compiled executable of the registered kernel ``kernel(*args)`` scheduled for
    ``target`` (memoised); an :class:`EmulatedGPU` target runs its GPU schedule on the CPU."""
    key = str(target)  # the target's full JSON description
    _TARGETS.setdefault(key, target)
    return _build(kernel, args, key)


def kernel_function(kernel: str, *args, target: tvm.target.Target):
    """The callable ``main`` of a kernel built for a local target."""
    return build_kernel(kernel, *args, target=target).jit()["main"]
