"""L_assign (Eq. 5-6) and L_reg (Eq. 4): hand values, the loop reference, gradients and conventions."""

from __future__ import annotations

import pytest
import torch

from _reference import loop_layer_selectivity
from imde.core.bins import assign_bins, dataset_edges, digitize
from imde.errors import NonFiniteFeaturesError
from imde.losses.selectivity import AssignLoss, SelectivityRegLoss


def test_hand_computed_assign_loss_with_an_absent_bin() -> None:
    # 3 units, 3 bins over uniform edges [0, 1, 2, 3]; 1x3 maps, depth 1x3 at the same size (no upsampling)
    feats = torch.tensor([[[[4.0, 1.0, 1.0]], [[1.0, 2.0, 3.0]], [[2.0, 2.0, 2.0]]]])
    depth = torch.tensor([[[0.5, 1.5, 1.7]]])  # bins 0, 1, 1; bin 2 absent -> R = [[4, 1], [1, 2.5], [2, 2]]
    loss_fn = AssignLoss(num_bins=3, alpha=1.0, beta=3.0, lam=0.1, edges_kind="uniform")
    ds = [(4 - 1) / (4 + 1), (2.5 - 1) / (2.5 + 1)]  # unit 2's bin (2) is absent: left out
    assert float(loss_fn({"L": feats}, depth)) == pytest.approx(-0.1 * sum(ds) / 2)
    assert loss_fn.last_breakdown == pytest.approx({"L": sum(ds) / 2})
    authors = AssignLoss(3, 1.0, 3.0, absent_bins="authors", edges_kind="uniform")
    # others over both other bins with the empty one as 0; unit 2 counts as 0 and the mean divides by K = 3
    ds_authors = [(4 - 0.5) / (4 + 0.5), (2.5 - 0.5) / (2.5 + 0.5)]
    assert float(authors({"L": feats}, depth)) == pytest.approx(-0.1 * sum(ds_authors) / 3)
    reg = SelectivityRegLoss(3, 1.0, 3.0, edges_kind="uniform")  # max bins: unit 2 is flat -> 0
    assert reg.breakdown({"L": feats}, depth) == pytest.approx({"L": (ds[0] + ds[1] + 0.0) / 3})


def test_eps_lowers_the_score_of_a_fading_unit_and_rewards_its_assigned_response() -> None:
    depth = torch.tensor([[[0.5, 1.5, 1.7]]])  # bins 0, 1, 1
    feats = torch.tensor([[[[4.0, 1.0, 1.0]], [[1.0, 2.0, 3.0]]]])  # R = [[4, 1], [1, 2.5]]
    with_eps = AssignLoss(num_bins=2, alpha=1.0, beta=3.0, edges_kind="uniform", eps=0.5)
    assert with_eps.breakdown({"L": feats}, depth)["L"] == pytest.approx(((4 - 1) / 5.5 + (2.5 - 1) / 4.0) / 2)
    paper = AssignLoss(num_bins=2, alpha=1.0, beta=3.0, edges_kind="uniform")
    # Eq. 5 is scale-free: a unit shrunk 1000x keeps its DS; with eps it loses it, and its gradient says "grow"
    unscaled = paper.breakdown({"L": feats}, depth)["L"]
    assert paper.breakdown({"L": 1e-3 * feats}, depth)["L"] == pytest.approx(unscaled)
    assert with_eps.breakdown({"L": 1e-3 * feats}, depth)["L"] < 0.01
    scale = torch.tensor(1e-3, requires_grad=True)
    with_eps({"L": scale * feats}, depth).backward()
    assert scale.grad < 0  # the loss falls as the responses grow back
    with pytest.raises(ValueError, match="eps=-1"):
        AssignLoss(eps=-1.0)


def test_abs_modes_differ_only_for_signed_layers() -> None:
    feats = torch.tensor([[[[1.0, -1.0, 2.0, 2.0]], [[1.0, 1.0, 2.0, 2.0]]]])
    depth = torch.tensor([[[0.5, 0.5, 1.5, 1.5]]])
    paper = AssignLoss(2, 1.0, 2.0, edges_kind="uniform").breakdown({"L": feats}, depth)["L"]
    authors = AssignLoss(2, 1.0, 2.0, abs_mode="authors", edges_kind="uniform").breakdown({"L": feats}, depth)["L"]
    # unit 0 (bin 0): |mean| = [0, 2] (paper, DS = -1) vs mean|A| = [1, 2] (authors, DS = -1/3);
    # unit 1 (bin 1): [1, 2] in both modes, DS = 1/3
    assert paper == pytest.approx((-1 + 1 / 3) / 2)
    assert authors == pytest.approx((-1 / 3 + 1 / 3) / 2)
    relu = feats.abs()
    assert AssignLoss(2, 1.0, 2.0, edges_kind="uniform").breakdown({"L": relu}, depth)["L"] == pytest.approx(authors)


@pytest.mark.parametrize("loss_cls", [AssignLoss, SelectivityRegLoss])
@pytest.mark.parametrize(("absent_bins", "abs_mode"), [("skip", "paper"), ("authors", "authors"), ("skip", "authors")])
def test_matches_the_loop_reference_per_layer_with_fewer_units_than_bins(loss_cls, absent_bins, abs_mode) -> None:
    features = {"a": torch.randn(3, 12, 5, 6, dtype=torch.float64), "b": torch.randn(3, 4, 3, 4, dtype=torch.float64)}
    depth = torch.rand(3, 1, 10, 12, dtype=torch.float64) * 4.0  # 8 bins over (0.5, 3]: some empty
    loss_fn = loss_cls(num_bins=8, alpha=0.5, beta=3.0, absent_bins=absent_bins, abs_mode=abs_mode)
    per_layer = loss_fn.layer_selectivity(features, depth)
    for name, feat in features.items():
        num_bins = min(8, feat.shape[1])  # layer "b" has 4 units -> 4 bins
        bins = digitize(depth, dataset_edges((0.5, 3.0), num_bins))
        assigned = assign_bins(feat.shape[1], num_bins) if loss_cls is AssignLoss else None
        ref = loop_layer_selectivity(feat, bins, num_bins, assigned, absent_bins, abs_mode)
        assert float(per_layer[name]) == pytest.approx(float(ref), abs=1e-12)
    assert float(loss_fn(features, depth)) == pytest.approx(-0.1 * sum(float(v) for v in per_layer.values()))


def test_gradient_matches_the_loop_reference() -> None:
    feat = torch.randn(2, 6, 4, 5, dtype=torch.float64, requires_grad=True)
    depth = torch.rand(2, 8, 10, dtype=torch.float64) * 10
    loss_fn = AssignLoss(num_bins=6)
    (grad,) = torch.autograd.grad(loss_fn({"L": feat}, depth), feat)
    bins = digitize(depth, dataset_edges("nyu", 6))
    (ref,) = torch.autograd.grad(-0.1 * loop_layer_selectivity(feat, bins, 6, assign_bins(6, 6)), feat)
    assert torch.allclose(grad, ref, atol=1e-12)


@pytest.mark.parametrize("loss_cls", [AssignLoss, SelectivityRegLoss])
@pytest.mark.parametrize(("absent_bins", "abs_mode"), [("skip", "paper"), ("authors", "authors")])
def test_gradcheck_float64(loss_cls, absent_bins, abs_mode) -> None:
    depth = torch.rand(2, 1, 6, 8, dtype=torch.float64) * 10
    feat = (torch.rand(2, 4, 3, 4, dtype=torch.float64) + 0.1).requires_grad_()  # away from the |.| kink
    loss_fn = loss_cls(num_bins=4, absent_bins=absent_bins, abs_mode=abs_mode)
    assert torch.autograd.gradcheck(lambda f: loss_fn({"L": f}, depth), (feat,), eps=1e-6, atol=1e-7)


def test_layer_without_usable_units_contributes_zero_with_a_zero_gradient() -> None:
    feat = torch.rand(1, 4, 2, 2, requires_grad=True)
    depth = torch.full((1, 4, 4), 5.0)  # a single bin observed: no unit has "other" bins
    loss = AssignLoss(num_bins=4)({"L": feat}, depth)
    loss.backward()
    assert loss.item() == 0.0 and float(feat.grad.abs().sum()) == 0.0


def test_float32_features_give_a_float32_loss_close_to_float64() -> None:
    feat = torch.rand(2, 8, 4, 4)
    depth = torch.rand(2, 8, 8) * 10
    loss32 = AssignLoss(num_bins=8)({"L": feat}, depth)
    loss64 = AssignLoss(num_bins=8)({"L": feat.double()}, depth)
    assert loss32.dtype == torch.float32
    assert float(loss32) == pytest.approx(float(loss64), rel=1e-6)


def test_bad_inputs_raise() -> None:
    loss_fn = AssignLoss()
    depth = torch.rand(2, 8, 8)
    with pytest.raises(ValueError, match="features: expected a non-empty dict"):
        loss_fn(torch.rand(2, 4, 4, 4), depth)
    with pytest.raises(ValueError, match=r"features\['L'\]: expected a Tensor \[B, K, h, w\], got \(2, 4, 4\)"):
        loss_fn({"L": torch.rand(2, 4, 4)}, depth)
    with pytest.raises(ValueError, match=r"batch size 3 but depth has 2"):
        loss_fn({"L": torch.rand(3, 4, 4, 4)}, depth)
    with pytest.raises(ValueError, match=r"depth: expected \[B, H, W\] or \[B, 1, H, W\], got \(2, 3, 8, 8\)"):
        loss_fn({"L": torch.rand(2, 4, 4, 4)}, torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"1 unit\(s\): selectivity needs at least 2"):
        loss_fn({"L": torch.rand(2, 1, 4, 4)}, depth)
    with pytest.raises(ValueError, match="absent_bins='never'"):
        AssignLoss(absent_bins="never")
    with pytest.raises(ValueError, match="abs_mode='signed'"):
        SelectivityRegLoss(abs_mode="signed")
    with pytest.raises(ValueError, match="alpha=10.0"):
        AssignLoss(alpha=10.0, beta=5.0)


def test_layers_sharing_one_pass_give_the_same_result_as_separate_calls() -> None:
    features = {"D": torch.rand(2, 8, 4, 5, dtype=torch.float64), "MFF": torch.randn(2, 8, 4, 5, dtype=torch.float64)}
    depth = torch.rand(2, 8, 10, dtype=torch.float64) * 10
    loss_fn = AssignLoss(num_bins=8)
    together = loss_fn.layer_selectivity(features, depth)
    assert list(together) == ["D", "MFF"]
    for name, feat in features.items():
        alone = loss_fn.layer_selectivity({name: feat}, depth)[name]
        assert float(together[name]) == pytest.approx(float(alone), abs=1e-14)


@pytest.mark.parametrize("loss_cls", [AssignLoss, SelectivityRegLoss])
def test_non_finite_features_are_refused_with_the_layer_and_count(loss_cls) -> None:
    depth = torch.rand(2, 8, 8) * 9 + 1
    feats = torch.rand(2, 4, 4, 4)
    feats[0, 1, 2, 3] = float("nan")
    feats[1, 3, 0, :2] = float("inf")
    with pytest.raises(NonFiniteFeaturesError, match=r"features\['L'\] \(2, 4, 4, 4\): 3 of 128 values are NaN or inf"):
        loss_cls()({"ok": torch.rand(2, 4, 4, 4), "L": feats}, depth)
    with pytest.raises(ValueError, match=r"128 of 128 values"):  # all NaN: no longer a finite -0.0
        loss_cls()({"L": torch.full((2, 4, 4, 4), float("nan"))}, depth)
    huge = torch.full((2, 4, 4, 4), torch.finfo(torch.float16).max, dtype=torch.float16)  # finite, the sum is not
    assert torch.isfinite(loss_cls()({"L": huge}, depth))
