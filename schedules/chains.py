"""Per-patch chains, the schedule steps every family's chain rule shares.

A fused block pipeline writes one patch's convs as a chain: the kernel's ``las.chain``
attribute lists its ``conv:epilogue:reductions`` stages in order. Each family's rule
(``cpu/patch_chain.py``, ``cuda/patch_chain.py``) parses the chain and moves its stages under
the patch loop the same way. Only where the intermediates live differs: a CPU's stack or a
GPU's shared memory.
"""

from __future__ import annotations

from tvm import s_tir

from .base import check


def parse_chain(text: str) -> list[tuple[str, str, int]]:
    """``"conv1:epilogue1:1,conv:epilogue:3"`` -> [("conv1", "epilogue1", 1), ...]."""
    stages = []
    for item in str(text).split(","):
        parts = item.split(":")
        check(len(parts) == 3 and parts[2].isdigit(), f"bad las.chain entry {item!r}")
        stages.append((parts[0], parts[1], int(parts[2])))
    return stages


def chain_at_patch(sch: s_tir.Schedule, chain, intermediate_scope: str | None = None):
    """Move every conv of a per-patch chain, and its epilogue, under the patch loop of the
    chain's last block (one patch's intermediates live only while it runs); returns that
    loop. ``intermediate_scope``: where the intermediates are stored (a GPU's ``"shared"``)."""
    get = sch.get_sblock
    patch = sch.get_loops(get(chain[-1][0]))[0]
    for conv, epilogue, _ in reversed(chain[:-1]):
        sch.compute_at(get(epilogue), patch)
        sch.compute_at(get(conv), patch)
        if intermediate_scope is not None:
            sch.set_scope(get(epilogue), 0, intermediate_scope)
    return patch
