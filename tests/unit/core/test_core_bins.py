"""Bin edges, digitisation and the unit-to-bin assignment (Eq. 6) against hand-computed values."""

from __future__ import annotations

import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from _reference import loop_digitize
from imde.core.bins import (
    DEPTH_PRESETS,
    DepthBins,
    assign_bins,
    check_edges,
    dataset_edges,
    digitize,
    log_edges,
    preset_range,
    sid_edges,
    uniform_edges,
)


def test_sid_edges_hand_values() -> None:
    # N_b = 3, alpha = 0.75, beta = 10: e_2 = 10.25 ** 0.5 - 0.25
    edges = sid_edges(3, 0.75, 10.0)
    assert edges.dtype == torch.float64
    assert edges.tolist() == pytest.approx([0.0, 0.75, math.sqrt(10.25) - 0.25, 10.0], abs=1e-15)


def test_sid_edges_match_the_authors_nyu_and_kitti_thresholds() -> None:
    nyu = sid_edges(64, *DEPTH_PRESETS["nyu"])
    assert nyu.shape == (65,)
    assert nyu[:4].tolist() == pytest.approx([0.0, 0.75, 0.788, 0.827], abs=5e-4)
    assert nyu[-2:].tolist() == pytest.approx([9.628, 10.0], abs=5e-4)
    kitti = sid_edges(64, *DEPTH_PRESETS["kitti"])
    assert kitti[:3].tolist() == pytest.approx([0.0, 3.0, 3.072], abs=5e-4)
    assert kitti[-2:].tolist() == pytest.approx([74.79, 80.0], abs=5e-3)
    # every SID bin above alpha has the same width in log(depth + 1 - alpha)
    widths = torch.diff(torch.log(nyu[1:] + 0.25))
    assert torch.allclose(widths, torch.full_like(widths, math.log(10.25) / 63))


def test_uniform_and_log_edges_hand_values() -> None:
    assert uniform_edges(3, 1.0, 5.0).tolist() == [0.0, 1.0, 3.0, 5.0]
    assert log_edges(4, 1.0, 8.0).tolist() == pytest.approx([0.0, 1.0, 2.0, 4.0, 8.0], abs=1e-12)


def test_dataset_edges_presets_tuples_and_kinds() -> None:
    assert torch.equal(dataset_edges("nyu"), sid_edges(64, 0.75, 10.0))
    assert torch.equal(dataset_edges("kitti", 8), sid_edges(8, 3.0, 80.0))
    assert torch.equal(dataset_edges((1.0, 5.0), 3, kind="uniform"), uniform_edges(3, 1.0, 5.0))
    with pytest.raises(ValueError, match="preset='foo'"):
        dataset_edges("foo")
    with pytest.raises(ValueError, match="kind='cubic'"):
        dataset_edges("nyu", kind="cubic")
    with pytest.raises(ValueError, match="preset"):
        dataset_edges((1.0,))


def test_preset_range_resolves_names_and_pairs() -> None:
    assert preset_range("rendered") == (1.3, 7.0) and preset_range("kitti") == (3.0, 80.0)
    assert preset_range([1, "2.5"]) == (1.0, 2.5)
    with pytest.raises(ValueError, match=r"preset='sun': expected one of nyu, kitti, rendered"):
        preset_range("sun")
    with pytest.raises(ValueError, match="expected a preset name or an"):
        preset_range(3.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("make", [sid_edges, uniform_edges, log_edges])
@pytest.mark.parametrize(
    ("num_bins", "alpha", "beta", "match"),
    [
        (1, 0.75, 10.0, "num_bins=1"),
        (2.5, 0.75, 10.0, "num_bins"),
        (8, 10.0, 10.0, "alpha=10.0"),
        (8, 0.0, 1.0, "alpha"),
    ],
)
def test_edges_reject_bad_arguments(make, num_bins, alpha, beta, match) -> None:
    with pytest.raises(ValueError, match=match):
        make(num_bins, alpha, beta)


def test_check_edges_rejects_bad_edges() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        check_edges(torch.tensor([0.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="at least 3"):
        check_edges(torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="finite"):
        check_edges(torch.tensor([0.0, 1.0, float("inf")]))
    with pytest.raises(ValueError, match="starting at >= 0"):
        check_edges(torch.tensor([-1.0, 1.0, 2.0]))


def test_digitize_hand_case_with_boundaries_and_invalid_values() -> None:
    edges = torch.tensor([0.0, 1.0, 2.0, 4.0], dtype=torch.float64)
    depth = torch.tensor(
        [0.0, -1.0, 1e-6, 1.0, 1.0001, 2.0, 3.9, 4.0, 4.0001, float("nan"), float("inf"), -float("inf")]
    )
    expected = [-1, -1, 0, 0, 1, 1, 2, 2, -1, -1, -1, -1]
    assert digitize(depth, edges).tolist() == expected
    assert digitize(depth, edges).dtype == torch.int64


def test_digitize_keeps_shape_and_matches_the_loop_reference() -> None:
    edges = sid_edges(16, 0.75, 10.0)
    depth = torch.rand(2, 1, 9, 7) * 12 - 0.5
    bins = digitize(depth, edges)
    assert bins.shape == depth.shape
    assert torch.equal(bins, loop_digitize(depth, edges))


@settings(max_examples=60, deadline=None)
@given(
    num_bins=st.integers(2, 40),
    alpha=st.floats(0.05, 5.0),
    span=st.floats(0.5, 100.0),
    values=st.lists(
        st.floats(-10.0, 120.0) | st.sampled_from([float("nan"), float("inf"), -float("inf"), 0.0]),
        min_size=1,
        max_size=50,
    ),
    kind=st.sampled_from(["sid", "uniform", "log"]),
)
def test_digitize_property_each_valid_pixel_in_exactly_its_interval(num_bins, alpha, span, values, kind) -> None:
    edges = dataset_edges((alpha, alpha + span), num_bins, kind)
    assert bool((torch.diff(edges) > 0).all()) and edges[0] == 0 and edges[1] == alpha
    depth = torch.tensor(values, dtype=torch.float64)
    bins = digitize(depth, edges)
    for value, label in zip(values, bins.tolist(), strict=True):
        inside = [d for d in range(num_bins) if edges[d] < value <= edges[d + 1]]
        assert [label] == inside if inside else label == -1


def _around_every_edge(edges: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Each edge rounded to ``dtype`` and its two neighbouring ``dtype`` values, plus the special values."""
    at = edges.to(dtype)
    up, down = at.nextafter(at.new_tensor(math.inf)), at.nextafter(at.new_tensor(-math.inf))
    special = at.new_tensor([math.nan, math.inf, -math.inf, 0.0, -0.0, -1e-30, 1e30, 1e-30])
    return torch.cat([at, up, down, special, torch.rand(500, dtype=dtype) * float(edges[-1]) * 1.2])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    "edges",
    [
        dataset_edges("nyu", 64),
        dataset_edges("kitti", 64),
        dataset_edges("nyu", 256, "uniform"),
        dataset_edges((0.01, 500.0), 80, "log"),
        torch.tensor([0.0, 1.0, 1.0 + 1e-9, 5.0], dtype=torch.float64),  # a tiny gap
        torch.tensor([1000.0, 1000.001, 1000.002], dtype=torch.float64),  # edges finer than float32
    ],
)
def test_digitize_is_exact_next_to_every_edge_in_every_dtype(edges, dtype) -> None:
    # the values one ulp either side of each edge decide between two bins: the lookup must never blur them
    values = _around_every_edge(edges, dtype)
    assert torch.equal(digitize(values, edges), loop_digitize(values.double(), edges))


def test_assign_bins_eq6() -> None:
    assert assign_bins(128, 64).tolist() == [k // 2 for k in range(128)]
    assert assign_bins(32, 64).tolist() == list(range(32))  # N_b = min(N_b, K) = K
    assert assign_bins(5, 2).tolist() == [0, 0, 0, 1, 1]  # floor(k * 2 / 5)
    assert assign_bins(64, 64).tolist() == list(range(64))
    with pytest.raises(ValueError, match="num_units=0"):
        assign_bins(0, 64)
    with pytest.raises(ValueError, match="num_bins"):
        assign_bins(8, 0)


def test_depth_bins_decide_the_range_spacing_and_the_per_layer_count() -> None:
    bins = DepthBins("kitti", 64)
    assert (bins.alpha, bins.beta) == (3.0, 80.0)
    torch.testing.assert_close(bins.edges, sid_edges(64, 3.0, 80.0))
    # Sec. 4.2: a layer with K < N_b units uses K bins over the same range; a wider one the requested N_b
    assert bins.for_units(8) == DepthBins("kitti", 8) and bins.for_units(128) is bins
    torch.testing.assert_close(bins.for_units(8).edges, sid_edges(8, 3.0, 80.0))
    assert DepthBins([1, 5], 3, "uniform").edges.tolist() == [0.0, 1.0, 3.0, 5.0]  # a pair, normalised
    assert DepthBins([1, 5], 3) == DepthBins((1.0, 5.0), 3)
    for kwargs, message in (({"preset": "mars"}, "preset='mars'"), ({"kind": "cubic"}, "kind='cubic'"),
                            ({"num_bins": 1}, "num_bins=1"), ({"preset": (5.0, 1.0)}, "alpha=5.0, beta=1.0")):
        with pytest.raises(ValueError, match=re.escape(message)):
            DepthBins(**kwargs)
    with pytest.raises(ValueError, match="num_units=1"):
        bins.for_units(1)
