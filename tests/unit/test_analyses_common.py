"""Shared view helpers: rounding, pooling, parameter checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from llmvis.analyses.common import (
    _round_array,
    bin_starts,
    check_layer,
    check_position,
    check_window,
    pool_bins,
    round4,
)
from llmvis.analyses.registry import ViewContext, ViewParamError
from tiny_models import tiny_loaded
from trace_helpers import make_trace, random_ids


def test_round4_significant_digits_and_types():
    assert round4(0.123456) == 0.1235
    assert round4(123456.7) == 123500.0
    assert round4(-1.23456e-7) == -1.235e-07
    assert round4(7) == 7 and round4(True) is True and round4(None) is None
    assert round4([1 / 3, float("inf"), float("nan"), 0.0]) == [0.3333, None, None, 0.0]
    assert round4(torch.tensor([[2 / 3, 1e-9]])) == [[0.6667, 1e-09]]
    assert round4(np.float32(0.5)) == 0.5
    assert round4([[1 / 7], torch.tensor([1 / 9])]) == [[0.1429], [0.1111]]
    assert json.dumps(round4(torch.rand(50).tolist())).count(".") == 50
    # short JSON: no float noise such as 0.12350000000000001
    assert all(len(repr(v)) <= 9 for v in round4(torch.rand(1000)))


@given(st.floats(-1e300, 1e300) | st.floats(-2.0, 2.0))
def test_round4_of_one_float_equals_the_array_path(x):
    assert round4(x) == float(_round_array(np.array([x]))[0])
    if abs(x) >= 1e-300:  # (below, a float has too few digits left to round to)
        assert abs(round4(x) - x) <= 5.0001e-4 * abs(x)


def test_bin_starts():
    assert bin_starts(10, 4) == (3, [0, 3, 6, 9])
    assert bin_starts(5, 512) == (1, [0, 1, 2, 3, 4])


def test_pooling_leaves_small_matrices_alone():
    m = torch.rand(3, 5, 5)
    assert bin_starts(5, 8) == (1, [0, 1, 2, 3, 4]) and pool_bins(m, 1, 1) is m


def test_pooling_keeps_the_peak_of_each_bin():
    m = torch.zeros(10, 10)
    m[7, 2] = 5.0
    size, starts = bin_starts(10, 4)
    assert size == 3 and starts == [0, 3, 6, 9]
    pooled = pool_bins(m, size, size)
    assert pooled.shape == (4, 4) and pooled[2, 0] == 5.0 and pooled.sum() == 5.0


def test_checks_raise_with_the_allowed_range():
    loaded = tiny_loaded("llama")
    ctx = ViewContext(make_trace(loaded, random_ids(loaded, 6), 3), loaded, None)
    assert check_layer(ctx, 1) == 1 and check_layer(ctx, 2, allow_final=True) == 2
    with pytest.raises(ViewParamError, match=r"0\.\.1"):
        check_layer(ctx, 2)
    with pytest.raises(ViewParamError, match=r"0\.\.5"):
        check_position(ctx, 6)
    with pytest.raises(ViewParamError):
        check_position(ctx, -1)
    assert check_window(ctx, None, None) == (0, 6)
    with pytest.raises(ViewParamError):
        check_window(ctx, 4, 2)
