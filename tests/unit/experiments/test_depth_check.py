"""Depth in the wrong unit or without valid pixels is named, with the observed range, before long work."""

from __future__ import annotations

import pytest
import torch
from _tiny_models import StridedNet, make_batches

from imde.core.bins import DepthBins
from imde.experiments._depth_check import DepthRangeCheck, depth_range_problem
from imde.experiments.dissect import compute_responses
from imde.experiments.evaluate import evaluate


def _with_depth(batches: list[dict], scale: float = 1.0, fill: float | None = None) -> list[dict]:
    return [{**b, "depth": torch.full_like(b["depth"], fill) if fill is not None else b["depth"] * scale}
            for b in batches]


class CountingNet(StridedNet):
    calls = 0

    def forward(self, x: torch.Tensor, focal: torch.Tensor | None = None) -> torch.Tensor:
        self.calls += 1
        return super().forward(x)


def test_millimetres_stop_dissection_and_evaluation_at_the_first_batch() -> None:
    batches = make_batches(3, 2)
    model, millimetres = CountingNet(), _with_depth(batches, scale=1000.0)
    with pytest.raises(ValueError, match=r"dissect \(edges preset 'nyu'\): the first batch: depth: all valid pixels "
                                         r"are beyond beta = 10 m \((\d+) of \1, observed range 8\d\d\.\d+ to 9\d{3}.*"
                                         r"looks like millimetres \(0\.8\d+ to 9\.\d+ m .*imde expects metres"):
        compute_responses(model, millimetres, ["act"])
    with pytest.raises(ValueError, match=r"evaluate \(max_depth 10 m\): the first batch: .*looks like millimetres"):
        evaluate(model, millimetres, max_depth=10.0, progress=False)
    assert model.calls == 0  # nothing ran


def test_depth_beyond_the_preset_names_the_preset() -> None:
    kitti_like = _with_depth(make_batches(1, 2), scale=8.0)  # 6.4 to 76 m against NYU's 10 m
    with pytest.raises(ValueError, match=r"most valid pixels are beyond beta = 10 m .*observed range 6.*depth preset"):
        compute_responses(StridedNet(), kitti_like, ["act"])
    compute_responses(StridedNet(), kitti_like, ["act"], bins=DepthBins("kitti"))  # the right preset: fine


def test_all_nan_depth_warns_at_the_first_batch_and_fails_at_the_end() -> None:
    batches = _with_depth(make_batches(2, 2), fill=float("nan"))
    with pytest.warns(UserWarning, match="the first batch: depth: no valid pixel"), \
            pytest.raises(ValueError, match=r"dissect .*: all 2 batches: depth: no valid pixel \(every value is NaN"):
        compute_responses(StridedNet(), batches, ["act"])
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="evaluate .*all 2 batches: depth: no valid pixel"):
        evaluate(StridedNet(), batches, max_depth=10.0, progress=False)


def test_an_empty_first_batch_is_only_a_warning() -> None:
    batches = make_batches(2, 2)
    batches[0] = {**batches[0], "depth": torch.zeros_like(batches[0]["depth"])}
    with pytest.warns(UserWarning, match="no valid pixel"):
        responses = compute_responses(StridedNet(), batches, ["act"])
    assert responses["act"].num_images == 4 and responses["act"].num_empty_images == 2


def test_problem_thresholds_by_hand() -> None:
    assert depth_range_problem(10, 6, 1.0, 20.0, beta=10.0) is None  # most inside
    assert "most valid pixels" in depth_range_problem(10, 5, 1.0, 20.0, beta=10.0)  # half is not most
    assert "looks like millimetres" not in depth_range_problem(10, 0, 11.0, 30_000.0, beta=10.0)
    check = DepthRangeCheck(beta=2.0, where="w")
    check.update(torch.tensor([[1.0, float("inf"), -1.0, 3.0, 1.5]]))  # valid 1, 3, 1.5: two inside
    assert check.totals() == (3, 2, 1.0, 3.0)
    check.update(torch.tensor([[0.5, 9.0, float("nan")]]))  # a later batch: added on its device
    assert check.totals() == (5, 3, 0.5, 9.0)
