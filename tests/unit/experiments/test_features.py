"""unit_views (Fig. 1/5 data): feature maps and bins of chosen units."""

from __future__ import annotations

import pytest
import torch
from _tiny_models import DepthInImage, make_batches

from imde.core.bins import dataset_edges
from imde.experiments.dissect import LayerDissection, compute_responses
from imde.experiments.features import unit_views


def test_unit_views_assigned_and_preferred_bins():
    model = DepthInImage([0.1, 0.2, 0.3, 0.4])
    batch = make_batches(1, 2, seed=4)[0]
    views = unit_views(model, batch, "feat", [1, 3], index=1)
    edges = dataset_edges("nyu", 4)
    assert [v.unit for v in views] == [1, 3]
    torch.testing.assert_close(views[0].feature_map, 2 * batch["depth"][1, 0])  # feat[k] = (k+1) depth
    torch.testing.assert_close(views[1].prediction, batch["depth"][1, 0])
    assert views[0].bin_range == (float(edges[1]), float(edges[2]))  # assigned bin of unit 1 of 4 is 1

    dissection = LayerDissection.from_response("feat", compute_responses(model, [batch], ["feat"])["feat"])
    (view,) = unit_views(model, batch, "feat", [0], dissection=dissection)
    assert view.bin_range == (float(edges[3]), float(edges[4]))  # every unit prefers the farthest bin


def test_unit_views_bad_arguments():
    model = DepthInImage([0.5, 0.3, 0.2])
    batch = make_batches(1, 2)[0]
    with pytest.raises(ValueError, match=r"units=\[3\]: expected unit indices in \[0, 3\)"):
        unit_views(model, batch, "feat", [3])
    with pytest.raises(ValueError, match="index=2"):
        unit_views(model, batch, "feat", [0], index=2)
    other = LayerDissection.from_response("feat", compute_responses(DepthInImage([0.5, 0.5, 0.0, 0.0]), [batch],
                                                                    ["feat"])["feat"])
    with pytest.raises(ValueError, match="has 4 units, but the layer outputs 3"):
        unit_views(model, batch, "feat", [0], dissection=other)
