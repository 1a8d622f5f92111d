"""The kernel registry: every kernel generator under one unique name.

``@kernel("gather_conv3x3")`` registers a generator and stamps the name on every PrimFunc it
returns as the ``las.kernel`` attribute (and keeps what it made, per arguments). The name is
what the four rooms that share a kernel agree on: the block-pipeline table lists steps by it,
schedule rules match it, the predictor models it and tuning logs are grouped by it. Written
once here, it cannot drift; registering a name twice is an error at import time.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
import threading
from collections.abc import Callable

KERNELS: dict[str, Callable] = {}
# Kernels made, by (name, arguments): a PrimFunc is immutable, and parsing one from TVMScript
# costs ~0.1-0.3 s (``T.prim_func`` walks the caller's stack with ``inspect.stack()``), so a
# process that compiles the same layer shapes again (a dense and a LAS build of one network,
# a test suite, the fuzzer) parses each kernel once. Oldest entries go first past the limit.
_MADE: dict[tuple, object] = {}
_MADE_LIMIT = 4096
_LOCK = threading.Lock()


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
            key = (name, args, tuple(sorted(kwargs.items())))
            try:
                hash(key)
            except TypeError:  # unhashable arguments: generate, do not keep
                return _generate(generator, args, kwargs).with_attr("las.kernel", name)
            with _LOCK:
                made = _MADE.get(key)
            if made is None:
                made = _generate(generator, args, kwargs).with_attr("las.kernel", name)
                with _LOCK:  # threads compiling at once share the table
                    _MADE[key] = made
                    if len(_MADE) > _MADE_LIMIT:
                        _MADE.pop(next(iter(_MADE)))
            return made

        make.kernel_name = name
        KERNELS[name] = make
        return make

    return register


_generating = threading.local()
_parser: tuple[int, concurrent.futures.ThreadPoolExecutor] | None = None


def _generate(generator: Callable, args: tuple, kwargs: dict):
    """``generator(*args, **kwargs)`` on a thread of its own, whose stack is a few frames deep.

    Why: TVMScript's ``T.prim_func`` calls ``inspect.stack()`` twice per kernel, and that
    costs ~1 ms per frame of the caller's stack (more where a frame's file maps to no module:
    a full scan of ``sys.modules``). Under pytest, 4.3 of the 7.4 s it took to make and check
    one layer's kernels went to ``inspect``. A generator that makes other kernels runs them on
    the same thread; a forked child makes its own thread.
    """
    global _parser
    if getattr(_generating, "active", False):
        return generator(*args, **kwargs)
    with _LOCK:
        if _parser is None or _parser[0] != os.getpid():
            _parser = (os.getpid(), concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="las-kernel-parser"))
        parser = _parser[1]
    return parser.submit(_on_parser_thread, generator, args, kwargs).result()


def _on_parser_thread(generator: Callable, args: tuple, kwargs: dict):
    _generating.active = True
    return generator(*args, **kwargs)


def get_kernel(name: str) -> Callable:
    """The generator registered as ``name``."""
    try:
        return KERNELS[name]
    except KeyError:
        raise ValueError(f"unknown kernel {name!r}; registered: {sorted(KERNELS)}") from None
