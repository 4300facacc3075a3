"""Key-derived Poisson weights and derangements: distribution, independence, batch invariance; inference helpers."""

from __future__ import annotations

import math

import pytest
import torch

from imde.core.inference import bh_qvalues, bias_corrected_interval, permutation_p_values, verdict
from imde.core.resampling import cyclic_derangements, key_hash, key_hashes, poisson_weights, uniforms


def test_poisson_weights_follow_poisson_one() -> None:
    weights = poisson_weights(5, torch.arange(50_000), 2).flatten()
    observed = torch.bincount(weights, minlength=7)[:7].double()
    expected = torch.tensor([weights.numel() * math.exp(-1) / math.factorial(k) for k in range(7)])
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert chi2 < 22.5  # 6 degrees of freedom: the 0.999 quantile


def test_weights_depend_on_seed_key_and_replicate_only() -> None:
    keys = key_hashes([f"img{i}" for i in range(10)])
    whole = poisson_weights(3, keys, 50)
    order = torch.randperm(10)
    assert torch.equal(poisson_weights(3, keys[order], 50), whole[:, order])
    assert torch.equal(torch.cat([poisson_weights(3, keys[:4], 50), poisson_weights(3, keys[4:], 50)], 1), whole)
    assert not torch.equal(poisson_weights(4, keys, 50), whole)
    u = uniforms(0, torch.arange(4000), 2, stream=1)
    assert abs(float(torch.corrcoef(u)[0, 1])) < 0.06  # replicates independent (4 standard errors)
    assert abs(float(torch.corrcoef(torch.stack([u[0, :-1], u[0, 1:]]))[0, 1])) < 0.06  # neighbouring keys too


def test_key_hash_is_stable_and_type_aware() -> None:
    assert key_hash("a") == key_hash("a") and key_hash("3") != key_hash(3)
    assert 0 <= key_hash("x") < 2**62
    with pytest.raises(ValueError, match="expected a str"):
        key_hash(1.5)  # type: ignore[arg-type]


def test_derangements_are_cycles_invariant_to_batch_order() -> None:
    keys = key_hashes([f"k{i}" for i in range(7)])
    partner = cyclic_derangements(1, keys, 200)
    assert (partner != torch.arange(7)).all()
    assert (partner.sort(1).values == torch.arange(7)).all()
    # one cycle through all images: following partners from 0 visits every image before returning
    position = torch.zeros(200, dtype=torch.int64)
    for _ in range(6):
        position = partner.gather(1, position.view(-1, 1)).view(-1)
        assert (position != 0).all()
    order = torch.tensor([3, 0, 6, 1, 5, 2, 4])
    shuffled = cyclic_derangements(1, keys[order], 200)  # same pairs of keys, in the new positions
    assert torch.equal(order[shuffled], partner[:, order])
    with pytest.raises(ValueError, match="cannot be permuted"):
        cyclic_derangements(0, keys[:1], 5)


def test_bh_matches_a_hand_computation() -> None:
    p = torch.tensor([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216], dtype=torch.float64)
    # m = 10: p_(i) m / i = .01, .04, .13, .1025, .084, .1, .1057, .25625, .23556, .216;
    # then running minima from the top
    hand = [0.01, 0.04, 0.084, 0.084, 0.084, 0.1, 0.1057142857, 0.216, 0.216, 0.216]
    order = torch.randperm(10)
    q = bh_qvalues(p[order])
    assert torch.allclose(q, torch.tensor(hand, dtype=torch.float64)[order], atol=1e-9)
    assert int((q < 0.05).sum()) == 2
    assert torch.isnan(bh_qvalues(torch.tensor([float("nan")]))).all()


def test_p_values_intervals_and_verdicts() -> None:
    null = torch.arange(99.0).view(99, 1)
    assert permutation_p_values(torch.tensor([98.0]), null).item() == pytest.approx(2 / 100)
    assert permutation_p_values(torch.tensor([1000.0]), null).item() == pytest.approx(1 / 100)
    replicates = torch.tensor([[0.0, float("nan")], [1.0, float("nan")], [2.0, 5.0]])
    low, high = bias_corrected_interval(replicates, torch.tensor([1.0, float("nan")]), 0.5)
    assert low.tolist() == [0.5, 5.0] and high.tolist() == [1.5, 5.0]  # the median: no bias, the percentiles
    assert torch.isnan(bias_corrected_interval(torch.full((4, 1), float("nan")), 0.0)[0]).all()
    assert verdict(0.2, 0.3, 0.1) == "holds" and verdict(0.0, 0.05, 0.1) == "fails"
    assert verdict(0.05, 0.2, 0.1) == "inconclusive" and verdict(float("nan"), 0.2, 0.1) == "inconclusive"
    with pytest.raises(ValueError, match="level=1.5"):
        bias_corrected_interval(torch.zeros(3), 0.0, 1.5)
