"""Build one LAS kernel for a target: generate, schedule with our rules, compile; cached.

Kernels are specialised per layer shape, so a network or a test suite asks for the same
kernel many times: the cache keys on the generator, its arguments and the target.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import tvm

from .schedules import schedule_kernel

_TARGETS: dict[str, tvm.target.Target] = {}


@functools.lru_cache(maxsize=512)
def _build(generator: Callable, args: tuple, key: str):
    target = _TARGETS[key]
    func = schedule_kernel(generator(*args), target)
    return tvm.compile(tvm.IRModule({"main": func}), target=target)


def build_kernel(generator: Callable, *args, target: tvm.target.Target):
    """Compiled executable of ``generator(*args)`` scheduled for ``target`` (memoised)."""
    key = str(target)  # the target's full JSON description
    _TARGETS.setdefault(key, target)
    return _build(generator, args, key)


def kernel_function(generator: Callable, *args, target: tvm.target.Target):
    """The callable ``main`` of a kernel built for the local device (CPU targets)."""
    return build_kernel(generator, *args, target=target).jit()["main"]
