"""AssignLoss / SelectivityRegLoss take their bins as one DepthBins value, or as the separate keywords."""

from __future__ import annotations

import pytest
import torch

from imde.core.bins import DepthBins
from imde.losses import create
from imde.losses.selectivity import AssignLoss, SelectivityRegLoss


@pytest.mark.parametrize("cls", [AssignLoss, SelectivityRegLoss])
def test_bins_value_and_keywords_give_the_same_loss(cls) -> None:
    gen = torch.Generator().manual_seed(0)
    features = {"D": torch.rand(2, 4, 6, 8, generator=gen, dtype=torch.float64, requires_grad=True),
                "MFF": torch.rand(2, 3, 3, 4, generator=gen, dtype=torch.float64)}
    depth = 0.2 + 4.0 * torch.rand(2, 1, 12, 16, generator=gen, dtype=torch.float64)
    by_keywords = cls(num_bins=4, alpha=1.0, beta=4.0, edges_kind="uniform", lam=0.5)
    by_value = cls(bins=DepthBins((1.0, 4.0), 4, "uniform"), lam=0.5)
    assert (by_value.num_bins, by_value.alpha, by_value.beta, by_value.edges_kind) == (4, 1.0, 4.0, "uniform")
    assert by_keywords.layer_selectivity(features, depth) == by_value.layer_selectivity(features, depth)
    # MFF has 3 units: Sec. 4.2 gives it 3 bins over the same range, D keeps 4
    three = cls(bins=DepthBins((1.0, 4.0), 3, "uniform"))
    assert by_value.layer_selectivity(features, depth)["MFF"] == three.layer_selectivity(features, depth)["MFF"]
    loss = by_value(features, depth)
    loss.backward()
    assert torch.isfinite(features["D"].grad).all() and features["D"].grad.abs().sum() > 0


def test_create_passes_the_bins_and_checks_them() -> None:
    assert create("assign", bins=DepthBins("kitti", 8)).bins == DepthBins("kitti", 8)
    with pytest.raises(ValueError, match="bins='kitti': expected a DepthBins"):
        AssignLoss(bins="kitti")
