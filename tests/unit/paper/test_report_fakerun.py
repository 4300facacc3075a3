"""A complete small run directory with plausible numbers, built with the real writers, for the report tests.

``make_fake_run(root)`` writes what ``imde study`` leaves in ``runs/<name>/``: ``config.yaml``, ``results.json``
(the public schema), ``dissect/<variant>/dissect.json`` (``DissectResult.save`` on responses accumulated
from synthetic activations tuned to depth), ``atlas/<variant>/`` (``export_unit_atlas`` on ``mff_tiny``),
``explain/<variant>.json`` and small ``figures/*.png``. The tests of this file check the fake run itself.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

VARIANTS = ("baseline", "assign", "reg")
LAYERS = ("D", "MFF")
UNITS = 16  # mff_tiny's D and MFF layers
RANDOM_BASELINE = 0.3511

RESULTS: dict[str, Any] = {
    "random_baseline": RANDOM_BASELINE,
    "models": {
        "baseline": {"selectivity": {"train": 0.4217, "test": 0.4102},
                     "layers": {"test": {"D": 0.5311, "MFF": 0.2893}},
                     "metrics": {"delta1": 0.8123, "delta2": 0.9541, "delta3": 0.9877, "rms": 0.5312,
                                 "rel": 0.1421, "log10": 0.0612}},
        "assign": {"selectivity": {"train": 0.8342, "test": 0.7764},
                   "layers": {"test": {"D": 0.7605, "MFF": 0.7923}},
                   "metrics": {"delta1": 0.8187, "delta2": 0.9566, "delta3": 0.9881, "rms": 0.5208,
                               "rel": 0.1398, "log10": 0.0598}},
        "reg": {"selectivity": {"train": 0.5521, "test": 0.5304},
                "metrics": {"delta1": 0.8051, "delta2": 0.9503, "delta3": 0.9862, "rms": 0.5477,
                            "rel": 0.1466, "log10": 0.0627}},
    },
    "correction": {
        "baseline": {"before": {"delta1": 0.8123, "rms": 0.5312}, "after": {"delta1": 0.8390, "rms": 0.5011}},
        "assign": {"before": {"delta1": 0.8187, "rms": 0.5208}, "after": {"delta1": 0.9012, "rms": 0.4233}},
    },
    "ablation": {
        "baseline": {"layers": ["D", "MFF"], "units": list(range(0, 17, 2)),
                     "most_selective_first": [0.81, 0.74, 0.66, 0.55, 0.47, 0.38, 0.30, 0.22, 0.12],
                     "least_selective_first": [0.81, 0.80, 0.78, 0.75, 0.70, 0.61, 0.49, 0.33, 0.12]},
        "assign": {"units": list(range(0, 17, 2)),
                   "most_selective_first": [0.82, 0.70, 0.58, 0.46, 0.37, 0.29, 0.21, 0.15, 0.10],
                   "least_selective_first": [0.82, 0.81, 0.79, 0.76, 0.71, 0.62, 0.48, 0.30, 0.10]},
    },
    "claims": [
        {"claim": "interpretable model's test selectivity >= 0.70", "holds": True, "value": 0.7764},
        {"claim": "test selectivity gain over the baseline >= 0.25", "holds": True, "value": 0.3662},
        {"claim": "delta1 drop vs the baseline <= 0.01", "holds": True, "value": -0.0064},
        {"claim": "L_assign selectivity above L_reg", "holds": True, "value": 0.2460},
        {"claim": "correction gain (delta1): interpretable above baseline", "holds": False, "value": -0.0001},
        {"claim": "ablating most selective first hurts more (mean delta1 gap)", "holds": True, "value": 0.1078},
    ],
    "seconds": 734.2,
}

# ExplainResult.to_dict() of imde.experiments.explain
EXPLAIN = {
    "layer": "MFF", "epsilon": 0.05, "unit_bins": "assigned", "edges": [0.0] + [0.75 + 0.6 * i for i in range(16)],
    "clean": {"loss": 0.31, "error_fraction": 0.18, "delta1": 0.82, "histogram": [0] * 11 + [40, 12, 3, 0, 0],
              "top_bin": 11, "units": [11], "localisation": [0.12]},
    "adversarial": {"loss": 0.92, "error_fraction": 0.51, "delta1": 0.49, "histogram": [0] * 11 + [310, 40, 9, 1, 0],
                    "top_bin": 11, "units": [11], "localisation": [0.41]},
}
CONFIG = "name: demo\nseed: 0\nmodel:\n  name: mff_tiny\ntrain:\n  epochs: 4\n  lambda: 0.1\n"
FIGURES = ("fig2_ablation.png", "fig5_feature_maps.png", "fig6_predictions.png", "fig8_explain.png",
           "fig3_dissection_assign.png", "contact_sheet.png")


def make_fake_run(root: Path, *, atlas: bool = True, figures: bool = True, layer_names: tuple[str, ...] = LAYERS,
                  config: str = CONFIG, results: dict[str, Any] | None = None) -> Path:
    """Write a complete small run directory under ``root`` and return it.

    Args:
        root: the run directory to create.
        atlas: export a real unit atlas of ``mff_tiny`` per variant (a few hundred ms each).
        figures: write small PNGs into ``figures/``.
        layer_names: names under which the D/MFF dissections are stored (to test escaping).
        config: the text of ``config.yaml``.
        results: ``results.json`` content (default: ``RESULTS``).
    """
    from imde.utils.io import atomic_write_json, atomic_write_text

    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / "config.yaml", config)
    atomic_write_json(root / "results.json", RESULTS if results is None else results)
    for variant in VARIANTS:
        write_dissection(root / "dissect" / variant, variant, layer_names)
        atomic_write_json(root / "explain" / f"{variant}.json", EXPLAIN)
    if atlas:
        for variant in ("baseline", "assign"):
            write_atlas(root / "atlas" / variant, seed=VARIANTS.index(variant))
    if figures:
        for i, name in enumerate(FIGURES):
            width = 300 if name.startswith("fig3") else 120  # a wide figure (a grid of units) spans the page
            atomic_write_bytes_png(root / "figures" / name, (40 + 30 * i, 90, 160 - 15 * i), width)
    return root


def atomic_write_bytes_png(path: Path, rgb: tuple[int, int, int], width: int = 120) -> None:
    """A small ``width`` x 80 PNG with a gradient (a stand-in for a matplotlib figure)."""
    from PIL import Image

    from imde.utils.io import atomic_write_bytes

    ramp = torch.linspace(0.3, 1.0, width).view(1, width, 1) * torch.tensor(rgb, dtype=torch.float32).view(1, 1, 3)
    pixels = ramp.expand(80, width, 3).round().to(torch.uint8).numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def synthetic_depth(batch: int, height: int = 48, width: int = 64, seed: int = 0) -> torch.Tensor:
    """Depth maps ``[B, 1, H, W]`` in metres: a floor ramp from 0.8 m to 9.5 m with a box and invalid holes."""
    gen = torch.Generator().manual_seed(seed)
    rows = torch.linspace(9.5, 0.8, height).view(1, 1, height, 1)
    depth = rows.expand(batch, 1, height, width).clone()
    depth *= 1 + 0.1 * torch.rand(batch, 1, 1, width, generator=gen)
    depth[:, :, height // 4: height // 2, width // 3: width // 2] = 2.0 + 5 * torch.rand(batch, 1, 1, 1, generator=gen)
    depth[:, :, :2, :] = 0.0  # no measurement
    return depth.clamp(max=9.9)


def write_dissection(out_dir: Path, variant: str, layer_names: tuple[str, ...]) -> None:
    """``DissectResult.save`` of responses accumulated from activations tuned to depth like each variant."""
    from imde.accumulators import DepthResponse
    from imde.core.bins import dataset_edges, digitize
    from imde.experiments.dissect import DissectResult

    edges = dataset_edges("nyu", UNITS)
    centre = torch.arange(UNITS, dtype=torch.float32).view(1, UNITS, 1, 1)
    width = {"baseline": 6.0, "assign": 0.9, "reg": 2.0}[variant]
    responses = {}
    for split, seed in (("train", 1), ("test", 2)):
        gen = torch.Generator().manual_seed(seed + 10 * VARIANTS.index(variant))
        depth = synthetic_depth(4, seed=seed)
        bins = digitize(depth, edges).float().clamp(min=0)
        order = torch.randperm(UNITS, generator=gen).view(1, UNITS, 1, 1) if variant != "assign" else centre
        noise = 0.05 * torch.rand(4, UNITS, 48, 64, generator=gen)
        features = torch.exp(-((bins - order) ** 2) / (2 * width**2)) + noise
        if variant == "reg":
            features[:, ::5] = 0.0  # collapsed units (Fig. 4)
        responses[split] = {}
        for name in layer_names:
            response = DepthResponse(UNITS, edges)
            response.update(features, depth)
            responses[split][name] = response
    DissectResult.from_responses(responses).save(out_dir)


def write_atlas(out_dir: Path, seed: int) -> dict[str, Any]:
    """``export_unit_atlas`` of a randomly initialised ``mff_tiny`` on 3 synthetic images."""
    import imde.models
    from imde.viz.atlas import export_unit_atlas

    torch.manual_seed(seed)
    model = imde.models.create("mff_tiny")
    depth = synthetic_depth(3, 64, 96, seed=seed)
    image = torch.stack([torch.linspace(-1.5, 1.5, 96).expand(64, 96) * (c - 1) for c in range(3)]).expand(3, 3, 64, 96)
    image = image + (depth / 5.0 - 1.0)
    batch = {"image": image.contiguous(), "depth": depth, "name": [f"sample_{i}" for i in range(3)]}
    return export_unit_atlas(model, list(LAYERS), batch, out_dir, device="cpu", max_tile=48)


# ------------------------------------------------------------------------------ checks of the fake run


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fake_run(tmp_path_factory.mktemp("fake") / "demo")


def test_fake_results_follow_the_public_schema(fake_run: Path) -> None:
    from imde.paper.report import validate_results

    results = json.loads((fake_run / "results.json").read_text())
    validate_results(results, fake_run / "results.json")
    for variant in ("baseline", "assign", "reg"):
        assert set(results["models"][variant]["metrics"]) >= {"delta1", "delta2", "delta3", "rms", "rel", "log10"}
    assert all(math.isfinite(c["value"]) and isinstance(c["holds"], bool) for c in results["claims"])


def test_fake_dissection_is_selective_where_it_should_be(fake_run: Path) -> None:
    from imde.paper.report import load_run

    run = load_run(fake_run)
    assert list(run.dissect) == ["baseline", "assign", "reg"]
    assign = run.dissect["assign"]["test"]["D"]
    baseline = run.dissect["baseline"]["test"]["D"]
    assert assign["num_units"] == UNITS and assign["num_bins"] == UNITS
    assert assign["selectivity"] > baseline["selectivity"] + 0.2
    assert any(run.dissect["reg"]["test"]["MFF"]["units"]["dead"])
