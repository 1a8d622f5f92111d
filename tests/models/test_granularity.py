"""S_net parsing, formatting and fit checks."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from las_compiler.models import (
    check_granularity_fits,
    format_granularity,
    parse_granularity,
    patch_grid,
)

R50 = [3, 4, 6, 3]


def test_per_stage_string_expands_to_blocks():
    assert parse_granularity("4-4-2-1", R50) == [4] * 3 + [4] * 4 + [2] * 6 + [1] * 3


def test_per_block_string_as_in_official_scripts():
    spec = "4-4-4-4-4-4-4-2-2-2-2-2-2-1-1-1"
    assert parse_granularity(spec, R50) == [int(v) for v in spec.split("-")]


def test_int_and_list_forms():
    assert parse_granularity(2, R50) == [2] * 16
    assert parse_granularity([8, 4, 7, 1], R50) == [8] * 3 + [4] * 4 + [7] * 6 + [1] * 3


@pytest.mark.parametrize(
    "spec, message",
    [
        ("4-4-x-1", "expected positive integers"),
        ("4--2-1", "expected positive integers"),
        ("", "expected positive integers"),
        ("4-4-2", "has 3 values; expected 1, 4 (one per stage) or 16"),
        ("4-4-0-1", "S must be >= 1"),
        ([4, 4, 2, -1], "S must be >= 1"),
    ],
)
def test_bad_specs_name_the_problem(spec, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_granularity(spec, R50)


def test_bad_types():
    with pytest.raises(TypeError):
        parse_granularity(4.0, R50)
    with pytest.raises(TypeError):
        parse_granularity([4, "4", 2, 1], R50)


@given(st.lists(st.integers(1, 14), min_size=16, max_size=16))
def test_format_round_trips(per_block):
    text = format_granularity(per_block, R50)
    assert parse_granularity(text, R50) == per_block


@given(st.integers(1, 300), st.integers(1, 300), st.integers(1, 64))
def test_patch_grid_is_the_official_floor_grid(h, w, s):
    if s > min(h, w):
        with pytest.raises(ValueError, match=f"S={s} does not fit a {h}x{w} output map"):
            patch_grid(h, w, s)
        return
    gh, gw = patch_grid(h, w, s)
    assert gh * s <= h < (gh + 1) * s and gw * s <= w < (gw + 1) * s


def test_fit_check_names_layer_and_valid_values():
    check_granularity_fits(7, 7, 7, "layer4.0")
    check_granularity_fits(7, 12, 16, "layer3.0")  # S need not divide the map
    with pytest.raises(ValueError, match=r"S=8 does not fit layer4.0.*7x7.*1\.\.7.*\[1, 7\]"):
        check_granularity_fits(8, 7, 7, "layer4.0")
