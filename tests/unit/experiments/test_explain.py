"""FGSM error analysis (Fig. 8): FGSM's exact effect on a linear model, error masks, localisation IoU."""

from __future__ import annotations

import json

import pytest
import torch
from _tiny_models import DepthInImage, make_batches

from imde.core.bins import dataset_edges, digitize
from imde.experiments.dissect import LayerDissection, compute_responses
from imde.experiments.explain import error_mask, fgsm, localisation_iou, masked_l1, run_explain


def test_fgsm_raises_the_loss_by_epsilon_times_the_slope():
    # pred = 0.9 * x0 and x0 = gt: the L1 gradient sign is -1 on valid pixels, so the loss grows by 0.9 * eps.
    model = DepthInImage([0.5, 0.5], scale=0.9)
    batch = make_batches(1, 2)[0]
    adversarial = fgsm(model, batch, epsilon=0.05, loss_fn=masked_l1)
    valid = batch["depth"][:, 0] > 0
    step = adversarial - batch["image"]
    torch.testing.assert_close(step[:, 0][valid], torch.full((int(valid.sum()),), -0.05))
    assert step[:, 0][~valid].eq(0).all() and step[:, 1:].eq(0).all()
    with torch.no_grad():
        clean_loss = masked_l1(model(batch["image"]), batch["depth"])
        attacked_loss = masked_l1(model(adversarial), batch["depth"])
    assert float(attacked_loss - clean_loss) == pytest.approx(0.9 * 0.05, rel=1e-4)


def test_error_mask_by_hand():
    pred = torch.tensor([1.0, 1.3, 0.7, 2.0, 5.0])
    gt = torch.tensor([1.0, 1.0, 1.0, 1.6, 0.0])
    errors, valid = error_mask(pred, gt)
    assert valid.tolist() == [True, True, True, True, False]
    assert errors.tolist() == [False, True, True, False, False]  # 1.3 > 1.25, 1/0.7 > 1.25, 2/1.6 = 1.25 is not


def test_localisation_iou():
    gen = torch.Generator().manual_seed(0)
    errors = torch.rand(2, 6, 7, generator=gen) < 0.3
    valid = torch.rand(2, 6, 7, generator=gen) > 0.1
    errors &= valid
    acts = torch.stack([errors.float(), 1 - errors.float(), torch.rand(2, 6, 7, generator=gen)])
    iou = localisation_iou(acts, errors, valid)
    assert iou[0] == 1.0 and iou[1] == 0.0
    # the random unit, the slow way: its n most active valid pixels, n = the number of error pixels
    values, err = acts[2][valid], errors[valid]
    region = torch.zeros_like(err)
    region[values.argsort(descending=True)[: int(err.sum())]] = True
    assert iou[2] == pytest.approx(float((region & err).sum() / (region | err).sum()))
    assert localisation_iou(acts, torch.zeros_like(errors), valid).isnan().all()


def test_run_explain_assigned_units(tmp_path):
    model = DepthInImage([0.25, 0.25, 0.25, 0.25], noise=0.6)
    batch = make_batches(1, 2, seed=7)[0]
    result = run_explain(model, batch, layer="feat", epsilon=0.05, loss_fn=masked_l1, out_dir=tmp_path)
    edges = dataset_edges("nyu", 4)
    assert result.unit_bins == "assigned" and torch.equal(result.edges, edges)
    clean, attacked = result.clean, result.adversarial
    assert attacked.loss > clean.loss
    with torch.no_grad():
        pred = model(batch["image"])
    errors, valid = error_mask(pred, batch["depth"])
    assert torch.equal(clean.errors, errors[:, 0])
    assert clean.error_fraction == pytest.approx(float(errors.sum() / valid.sum()))
    error_bins = digitize(pred[errors], edges)
    assert (error_bins < 0).any()  # predictions beyond 10 m fall in no bin and are left out
    expected_hist = torch.bincount(error_bins[error_bins >= 0], minlength=4)
    assert torch.equal(clean.histogram, expected_hist)
    assert clean.top_bin == int(expected_hist.argmax())
    assert clean.units == [clean.top_bin]  # K = N_b = 4: one unit per bin (Eq. 6)
    unit_map = (clean.top_bin + 1) * batch["image"][:, 0] * (1 + 0.6 * batch["image"][:, 1])
    torch.testing.assert_close(clean.feature_maps[:, 0], unit_map.clamp(min=0))
    torch.testing.assert_close(clean.localisation, localisation_iou(unit_map[None], errors[:, 0], valid[:, 0]))
    saved = json.loads((tmp_path / "explain.json").read_text())
    assert saved["clean"]["delta1"] == pytest.approx(1 - clean.error_fraction)
    assert saved["adversarial"]["units"] == attacked.units and saved["epsilon"] == 0.05
    assert (tmp_path / "explain.pt").is_file()


def test_run_explain_preferred_units_from_a_dissection():
    model = DepthInImage([0.1, 0.2, 0.3, 0.4], scale=1.3)  # every valid pixel is an error (1.3 > 1.25)
    responses = compute_responses(model, make_batches(2, 2, seed=8), ["feat"])
    dissection = LayerDissection.from_response("feat", responses["feat"])
    batch = make_batches(1, 2, seed=9)[0]
    result = run_explain(model, batch, layer="feat", responses=dissection, loss_fn=masked_l1)
    assert result.unit_bins == "preferred"
    assert result.clean.error_fraction == 1.0
    # predictions spread over (1.04, 12.35] m: most fall in the widest bin, (4.47, 10]; and feat[k] grows with
    # depth, so every unit prefers that farthest bin too
    assert result.clean.top_bin == 3
    assert dissection.preferred_bin.tolist() == [3, 3, 3, 3]
    assert result.clean.units == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="epsilon"):
        run_explain(model, batch, layer="feat", epsilon=-1.0, loss_fn=masked_l1)


def test_run_explain_accepts_one_dataset_sample():
    model = DepthInImage([0.25, 0.25, 0.25, 0.25], noise=0.6)
    batch = make_batches(1, 1, seed=10)[0]
    sample = {"image": batch["image"][0], "depth": batch["depth"][0], "name": "img"}
    from_sample = run_explain(model, sample, layer="feat", loss_fn=masked_l1)
    from_batch = run_explain(model, batch, layer="feat", loss_fn=masked_l1)
    assert from_sample.to_dict() == from_batch.to_dict()
    assert from_sample.clean.errors.shape == (1, 12, 16)
