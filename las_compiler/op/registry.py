"""The kernel registry: every kernel generator under one unique name.

``@kernel("gather_conv3x3")`` registers a generator and stamps the name on every PrimFunc it
returns as the ``las.kernel`` attribute. The name is what the four rooms that share a kernel
agree on: the block-pipeline table lists steps by it, schedule rules match it, the predictor
models it and tuning logs are grouped by it. Written once here, it cannot drift; registering a
name twice is an error at import time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

KERNELS: dict[str, Callable] = {}


def kernel(name: str) -> Callable[[Callable], Callable]:
    """Register a kernel generator under ``name`` (see the module docstring)."""

    def register(generator: Callable) -> Callable:
        if name in KERNELS:
            other = KERNELS[name].__wrapped__
            raise ValueError(f"kernel name {name!r} is registered twice: "
                             f"{other.__module__}.{other.__qualname__} and "
                             f"{generator.__module__}.{generator.__qualname__}")

        @functools.wraps(generator)
        def make(*args, **kwargs):
            return generator(*args, **kwargs).with_attr("las.kernel", name)

        make.kernel_name = name
        KERNELS[name] = make
        return make

    return register


def get_kernel(name: str) -> Callable:
    """The generator registered as ``name``."""
    try:
        return KERNELS[name]
    except KeyError:
        raise ValueError(f"unknown kernel {name!r}; registered: {sorted(KERNELS)}") from None
