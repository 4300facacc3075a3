"""Figure content: the data drawn equals the data given, one depth colour map, shared colour limits."""

from __future__ import annotations

import matplotlib.colors as mcolors
import pytest
import torch

from imde.accumulators import DepthResponse
from imde.core.bins import dataset_edges, digitize
from imde.experiments.ablate import AblationResult
from imde.experiments.dissect import LayerDissection
from imde.experiments.explain import ExplainCase, ExplainResult
from imde.experiments.features import UnitView
from imde.viz import plots
from imde.viz.colors import DEPTH_CMAP, depth_limits, display_image


def _dissection(num_units: int = 6, num_bins: int = 4) -> LayerDissection:
    response = DepthResponse(num_units, dataset_edges("nyu", num_bins))
    response.sums = torch.rand(num_units, num_bins, dtype=torch.float64) * 3
    response.counts = torch.tensor([0] + [5] * (num_bins - 1))
    return LayerDissection.from_response("D", response)


def _depth_images(fig):
    return [im for ax in fig.axes for im in ax.get_images() if im.get_cmap().name == DEPTH_CMAP]


def test_unit_responses_bars_equal_the_responses():
    dissection = _dissection()
    fig = plots.plot_unit_responses(dissection, units=[1, 4, 5], ncols=2)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 3 and len(fig.axes) == 4
    for ax, unit in zip(visible, [1, 4, 5], strict=True):
        bars = ax.containers[0]
        heights = torch.tensor([bar.get_height() for bar in bars], dtype=torch.float64)
        torch.testing.assert_close(heights, dissection.mean_response[unit], equal_nan=True)
        assigned = int(dissection.assigned_bin[unit])
        assert mcolors.to_hex(bars[assigned].get_facecolor()) == plots.ASSIGNED_COLOR
        assert f"DS={float(dissection.selectivity[unit]):.2f}" in ax.get_title()
    with pytest.raises(ValueError, match="units"):
        plots.plot_unit_responses(dissection, units=[6])


def test_selectivity_histogram_has_the_baseline_line():
    fig = plots.plot_selectivity_histogram({"baseline": torch.rand(20) * 0.5, "assign": 0.5 + torch.rand(20) * 0.5},
                                           random_baseline=0.3341, bins=10)
    (ax,) = fig.axes
    assert len(ax.patches) == 2  # one step outline per model
    assert list(ax.lines[0].get_xdata()) == [0.3341, 0.3341]
    assert len(ax.get_legend().get_texts()) == 3


def test_depth_predictions_share_colour_limits():
    image = torch.randn(3, 8, 10)
    gt = 1 + 4 * torch.rand(8, 10)
    gt[0, 0] = 0.0
    preds = {"baseline": 0.5 + torch.rand(1, 1, 8, 10), "assign": 2 + 6 * torch.rand(8, 10)}
    fig = plots.plot_depth_predictions(image, gt, preds)
    assert len(fig.axes) == 4
    images = _depth_images(fig)
    assert len(images) == 3
    expected = depth_limits([gt, *preds.values()])
    assert all(im.get_clim() == pytest.approx(expected) for im in images)
    assert expected == pytest.approx((float(preds["baseline"].min()), float(preds["assign"].max())))


def test_feature_maps_mask_the_units_bin():
    pred = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    view = UnitView(unit=3, feature_map=torch.rand(2, 2), prediction=pred, bin_range=(1.5, 3.0))
    fig = plots.plot_feature_maps(torch.randn(3, 2, 2), pred, {"baseline": view, "assign": view})
    assert len(fig.axes) == 8
    mask = fig.axes[2].get_images()[0].get_array()
    assert mask.tolist() == [[0.0, 1.0], [1.0, 0.0]]
    assert fig.axes[3].get_title() == "unit 3"


def test_ablation_lines_equal_the_curves():
    metrics = [{"delta1": v} for v in (0.9, 0.7, 0.2)]
    result = AblationResult(["D", "MFF"], [0, 1, 2], [0.9, 0.7, 0.2], [0.9, 0.85, 0.2], metrics,
                            [{"delta1": v} for v in (0.9, 0.85, 0.2)], [("MFF", 0), ("D", 0)])
    fig = plots.plot_ablation({"assign": result})
    (ax,) = fig.axes
    most, least = ax.lines
    assert list(most.get_ydata()) == [0.9, 0.7, 0.2] and list(least.get_ydata()) == [0.9, 0.85, 0.2]
    assert list(most.get_xdata()) == [0, 1, 2]
    assert ax.get_xlabel() == "ablated units of D & MFF"
    assert all(float(tick).is_integer() for tick in ax.get_xticks())


def test_explain_figure_and_save(tmp_path):
    def case(units: list[int]) -> ExplainCase:
        return ExplainCase(torch.randn(1, 3, 4, 4), 1 + 4 * torch.rand(1, 1, 4, 4), torch.rand(1, 4, 4) > 0.5, 0.1, 0.5,
                           torch.tensor([0, 3, 1, 0]), 1, units, torch.rand(1, len(units), 4, 4),
                           torch.rand(len(units)))

    result = ExplainResult("D", 0.05, "assigned", dataset_edges("nyu", 4), 1 + torch.rand(1, 1, 4, 4),
                           case([1]), case([1, 2, 3]))
    fig = plots.plot_explain(result, max_units=2)
    assert len(fig.axes) == 2 * 8
    assert [ax.get_visible() for ax in fig.axes[6:8]] == [True, False]  # clean: one unit
    assert [ax.get_visible() for ax in fig.axes[14:16]] == [True, True]  # FGSM: two of three units shown
    bars = fig.axes[5].containers[0]
    assert [bar.get_height() for bar in bars] == [0, 3, 1, 0]
    assert mcolors.to_hex(bars[1].get_facecolor()) == plots.ASSIGNED_COLOR  # the top bin
    in_bin = fig.axes[4].get_images()[0].get_array()
    expected = (digitize(result.clean.prediction[0, 0], result.edges) == 1).float()
    assert torch.equal(torch.as_tensor(in_bin), expected)
    assert len({im.get_clim() for im in _depth_images(fig)}) == 1 and len(_depth_images(fig)) == 4

    written = plots.save_figure(fig, tmp_path / "explain.pdf", pdf=True)
    assert written == [tmp_path / "explain.png", tmp_path / "explain.pdf"]
    assert written[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert written[1].read_bytes()[:5] == b"%PDF-"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["explain.pdf", "explain.png"]


def test_display_image_undoes_the_normalisation():
    rgb = torch.rand(3, 2, 2)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    torch.testing.assert_close(display_image((rgb - mean) / std), rgb.permute(1, 2, 0))
    with pytest.raises(ValueError, match="no valid"):
        depth_limits([torch.zeros(2, 2)])
