"""Can this machine's CPU run a compiled module's host code? Asked before the library loads.

Code compiled for a Zen 4 (``mcpu`` znver4) uses AVX-512. On an AVX2-only server its first
kernel dies with SIGILL, which ends the process without a word. Comparing the target triple
with this machine is not enough, because both are ``x86_64``. So at compile time the compiler
records the cpuinfo flags that the code's instruction-set features need
(``metadata["cpu_flags"]``, from LLVM: :func:`las_compiler.target.cpu_flags_needed`). Here they
are compared with this CPU's ``/proc/cpuinfo``, using the runtime alone (no LLVM).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable

from ..target import architecture, read_cpu_flags


@functools.cache
def _this_cpu() -> tuple[str, frozenset[str] | None]:
    """(architecture, cpuinfo flags or None where there is no /proc/cpuinfo)."""
    machine = architecture()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            arch, flags = read_cpu_flags(f.read())
    except (OSError, ValueError):
        return machine, None
    return (arch, flags) if arch == machine else (machine, None)


def unfit_reason(target_text: str, cpu_flags: Iterable[str] = (),
                 cpu: tuple[str, frozenset[str] | None] | None = None) -> str | None:
    """Why this CPU cannot run host code compiled for ``target_text`` (TVM target JSON; a GPU
    target's ``host`` counts) that needs ``cpu_flags``, or None if it can. ``cpu``:
    (architecture, flags) to check against instead of this machine's."""
    try:
        target = json.loads(target_text)
    except json.JSONDecodeError:
        return f"its target is not valid JSON: {target_text[:80]!r}"
    if target.get("kind") != "llvm":
        target = target.get("host") or {}
    arch, flags = cpu or _this_cpu()
    triple = str(target.get("mtriple", "") or "")
    if triple and architecture(triple) != arch:
        return f"its code is for {triple}, and this machine is {arch}"
    missing = sorted(set(cpu_flags) - flags) if flags is not None else []
    if missing:
        return (f"its code is for {target.get('mcpu', 'another CPU')} and uses instructions "
                f"this CPU lacks ({', '.join(missing)}); compile it for this machine "
                "(target \"host\") or run it on a CPU that has them")
    return None
