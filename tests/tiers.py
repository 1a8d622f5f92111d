"""The suite's two tiers: the default one (what CI runs, <= 10 minutes on a 2-core AVX2
machine) and the opt-in full matrix (``LAS_FULL_MATRIX=1 scripts/test.sh``).

A parametrised test keeps a *covering* subset of its cases by default (every value of every
axis at least once) and marks the rest ``full_matrix``; conftest skips those unless the
variable is set.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Sequence

import pytest

FULL_MATRIX = os.environ.get("LAS_FULL_MATRIX") == "1"


def covering(cases: Sequence, axes: Sequence[Callable[[object], Hashable]]) -> set[int]:
    """Indices of a small subset of ``cases`` in which every value each axis takes (over all
    cases) appears at least once: greedy, first the case covering most values not yet seen."""
    wanted = {(a, axis(case)) for case in cases for a, axis in enumerate(axes)}
    chosen: set[int] = set()
    while wanted:
        index = max(range(len(cases)), key=lambda i: (
            len(wanted & {(a, axis(cases[i])) for a, axis in enumerate(axes)}), -i))
        chosen.add(index)
        wanted -= {(a, axis(cases[index])) for a, axis in enumerate(axes)}
    return chosen


def tiered(cases: Sequence, default: set[int], ids: Callable | None = None) -> list:
    """``cases`` as pytest params, those outside ``default`` in the opt-in tier."""
    params = []
    for index, case in enumerate(cases):
        values = case if isinstance(case, tuple) else (case,)
        marks = () if index in default else (pytest.mark.full_matrix,)
        params.append(pytest.param(*values, marks=marks, id=ids(case) if ids else None))
    return params
