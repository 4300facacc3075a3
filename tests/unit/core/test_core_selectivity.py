"""Depth selectivity (Eq. 2 / Eq. 5 form), dead units, preferred bins and the random baseline (Eq. 3)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from _reference import loop_selectivity
from imde.core.selectivity import dead_units, depth_selectivity, preferred_bins, random_baseline

NAN = float("nan")


def test_hand_computed_selectivity() -> None:
    response = torch.tensor(
        [
            [3.0, 1.0, 1.0, 1.0],  # (3 - 1) / (3 + 1)
            [-4.0, 1.0, 2.0, 3.0],  # |R|: max 4, others mean 2 -> 1/3
            [2.0, 2.0, 2.0, 2.0],  # flat
            [0.0, 0.0, 0.0, 0.0],  # dead
            [0.0, 5.0, 0.0, 0.0],  # one-hot
        ]
    )
    assert depth_selectivity(response).tolist() == pytest.approx([0.5, 1 / 3, 0.0, 0.0, 1.0])
    assert depth_selectivity(response).dtype == torch.float64


def test_empty_bins_are_skipped_or_counted_as_zero() -> None:
    response = torch.tensor([[4.0, NAN, 2.0, NAN]])
    assert depth_selectivity(response).tolist() == pytest.approx([(4 - 2) / (4 + 2)])
    # the authors' convention: others = (2 + 0 + 0) / 3
    assert depth_selectivity(response, empty_bins="zero").tolist() == pytest.approx([(4 - 2 / 3) / (4 + 2 / 3)])


def test_assigned_form_eq5() -> None:
    response = torch.tensor([[4.0, 1.0, 1.0], [4.0, 1.0, 1.0], [1.0, NAN, 3.0]])
    assigned = torch.tensor([0, 1, 1])
    ds = depth_selectivity(response, assigned=assigned)
    assert ds[:2].tolist() == pytest.approx([0.6, (1 - 2.5) / (1 + 2.5)])
    assert math.isnan(ds[2])  # assigned bin never observed
    zero = depth_selectivity(response, assigned=assigned, empty_bins="zero")
    assert zero[2].item() == pytest.approx(-1.0)  # |R| = 0 at d_k, others (1 + 3) / 2
    with pytest.raises(ValueError, match=r"assigned: expected an integer tensor of shape \[3\]"):
        depth_selectivity(response, assigned=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"bins must lie in \[0, 2\]"):
        depth_selectivity(response, assigned=torch.tensor([0, 1, 3]))


def test_matches_the_unit_by_unit_reference() -> None:
    response = torch.randn(20, 9, dtype=torch.float64)
    response[torch.rand(20, 9) < 0.2] = NAN
    response[:, :2] = torch.randn(20, 2, dtype=torch.float64)  # at least 2 observed bins per unit
    assigned = torch.randint(0, 9, (20,))
    for mode in ("skip", "zero"):
        assert torch.allclose(depth_selectivity(response, empty_bins=mode), loop_selectivity(response, None, mode))
        fast, ref = depth_selectivity(response, assigned, mode), loop_selectivity(response, assigned, mode)
        if mode == "zero":  # the authors' convention sets an absent assigned bin to 0 only in the loss
            ref = torch.where(torch.isnan(response).gather(1, assigned.view(-1, 1)).squeeze(1), fast, ref)
        assert torch.allclose(fast, ref, equal_nan=True)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match=r"at least 2 observed"):
        depth_selectivity(torch.tensor([[1.0, NAN, NAN], [1.0, 2.0, 3.0]]))
    with pytest.raises(ValueError, match=r"expected a \[K, N_b\] tensor, got \(3,\)"):
        depth_selectivity(torch.ones(3))
    with pytest.raises(ValueError, match="empty_bins='drop'"):
        depth_selectivity(torch.ones(2, 3), empty_bins="drop")
    with pytest.raises(ValueError, match="inf"):
        depth_selectivity(torch.tensor([[1.0, float("inf")]]))


def test_dead_units_and_preferred_bins() -> None:
    response = torch.tensor([[1.0, -3.0, NAN], [0.0, 0.0, NAN], [NAN, 0.5, 0.25]])
    assert dead_units(response).tolist() == [False, True, False]
    assert preferred_bins(response).tolist() == [1, -1, 1]


responses = st.lists(st.floats(-1e3, 1e3, allow_subnormal=False), min_size=2, max_size=24)


@settings(max_examples=80, deadline=None)
@given(values=responses, scale=st.floats(1e-3, 1e3), nan_mask=st.lists(st.booleans(), min_size=24, max_size=24))
def test_property_range_scale_invariance_and_nan_bins_ignored(values, scale, nan_mask) -> None:
    row = torch.tensor([values], dtype=torch.float64)
    ds = depth_selectivity(row)
    assert 0.0 <= float(ds) <= 1.0
    assert float(depth_selectivity(row * scale)) == pytest.approx(float(ds), abs=1e-9)
    assert float(depth_selectivity(-row)) == pytest.approx(float(ds), abs=1e-12)
    holes = torch.tensor(nan_mask[: len(values)])
    assume(int((~holes).sum()) >= 2)
    with_nan = row.clone()
    with_nan[0, holes] = NAN
    assert float(depth_selectivity(with_nan)) == pytest.approx(float(depth_selectivity(row[:, ~holes])), abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(value=st.floats(1e-6, 1e6), num_bins=st.integers(2, 64), hot=st.integers(0, 63))
def test_property_flat_is_zero_and_one_hot_is_one(value, num_bins, hot) -> None:
    assert float(depth_selectivity(torch.full((1, num_bins), value))) == 0.0
    one_hot = torch.zeros(1, num_bins)
    one_hot[0, hot % num_bins] = value
    assert float(depth_selectivity(one_hot)) == 1.0


def test_random_baseline_closed_forms() -> None:
    assert random_baseline(2) == pytest.approx(2 * math.log(2) - 1, abs=1e-12)
    # N_b = 3: E[DS] = 16 ln(4/3) - 8 ln(3/2) - 1 (Y is the mean of two uniforms, a triangular law)
    assert random_baseline(3) == pytest.approx(16 * math.log(4 / 3) - 8 * math.log(1.5) - 1, abs=1e-12)
    assert random_baseline(64) == pytest.approx(0.3341, abs=1e-4)
    assert random_baseline(8) == pytest.approx(0.3404, abs=1e-4)
    assert random_baseline(100_000) == pytest.approx(1 / 3, abs=1e-5)  # Eq. 3's limit
    with pytest.raises(ValueError, match="num_bins=1"):
        random_baseline(1)


@pytest.mark.parametrize("num_bins", [2, 8, 64])
def test_random_baseline_matches_monte_carlo(num_bins: int) -> None:
    generator = torch.Generator().manual_seed(1234)
    samples = torch.rand(200_000, num_bins, dtype=torch.float64, generator=generator)
    estimate = float(depth_selectivity(samples).mean())
    assert random_baseline(num_bins) == pytest.approx(estimate, abs=0.002)
