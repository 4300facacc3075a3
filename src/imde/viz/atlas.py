"""The unit atlas: every unit's feature map on a few images, as one sprite PNG per layer, for the unit browser.

``export_unit_atlas`` runs one batch through a model with ``imde.LayerTap`` on the chosen layers and writes,
into ``out_dir``:

- ``images.png``: one column per sample, rows ``image`` (the input), ``depth`` (ground truth) and
  ``prediction``, depths in one colour map with shared limits (grey where the ground truth is invalid);
- ``layer_<i>_<name>.png`` per layer: row ``k`` = unit ``k``, column ``s`` = sample ``s``; each unit's maps are
  normalised together over the samples (one ``[min, max]`` per unit, kept in the index) and drawn with one
  shared colour map;
- ``masks_<N_b>.png`` per bin count when a depth preset is known: row ``d`` = the pixels whose *predicted*
  depth falls in bin ``d`` (Fig. 5 b), drawn over the dimmed input;
- ``index.json``: tile sizes, row meanings, per-unit ranges and file names (format ``imde-unit-atlas/1``).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from imde.core.bins import DepthBins
from imde.utils.device import resolve_device
from imde.utils.io import atomic_write_bytes, atomic_write_json
from imde.utils.optional import require
from imde.viz.colors import DEPTH_CMAP, FEATURE_CMAP, depth_limits, display_image

ATLAS_FORMAT = "imde-unit-atlas/1"
INVALID_RGB = (222, 226, 230)
MASK_RGB = (245, 159, 0)


def export_unit_atlas(
    model: nn.Module,
    layers: str | Sequence[str],
    samples: Mapping[str, Any],
    out_dir: str | Path,
    *,
    device: str | torch.device = "auto",
    bins: DepthBins | None = None,
    max_tile: int = 96,
    image_normalized: bool = True,
) -> dict[str, Any]:
    """Write the sprites and ``index.json`` of the unit atlas of ``layers`` on a batch; return the index.

    Args:
        model: any depth network that ``imde.models.run_model`` can run.
        layers: one or several declared layer names or dotted module names (as for ``imde.LayerTap``).
        samples: a collated batch dict with ``image`` ``[S, 3, H, W]`` and ``depth`` ``[S, 1, H, W]`` (metres,
            0 where invalid), plus whatever else the model needs; optional ``name`` (list of str).
        out_dir: the atlas folder, e.g. ``runs/<name>/atlas/<variant>``.
        device: where the forward pass runs (``resolve_device``).
        bins: the depth bins of the dissection (each layer uses ``bins.for_units(K)``, Sec. 4.2); default 64 bins
            of ``model.depth_preset`` if the model declares one; without either no masks are written.
        max_tile: feature maps larger than this (longer side, pixels) are area-downsampled; images and
            depths are drawn at ``max_tile`` on their longer side.
        image_normalized: ``samples["image"]`` is ImageNet-normalised (the model transforms' output); it is
            un-normalised for display.

    Raises:
        ValueError: on a batch without ``image``/``depth``, mismatched shapes, no layers or ``max_tile < 4``.
    """
    from imde.models import run_with_features

    layers = [layers] if isinstance(layers, str) else list(layers)
    image, depth = _check_samples(samples, layers, max_tile)
    dev = resolve_device(device)
    if bins is None and getattr(model, "depth_preset", None) is not None:
        bins = DepthBins(model.depth_preset)
    prediction, tapped = run_with_features(model.to(dev), samples, layers, device=dev)
    prediction = prediction.float().cpu()
    features = {name: tapped[name].float().cpu() for name in layers}

    out = Path(out_dir)
    names = samples.get("name")
    display = _display_images(image, image_normalized)
    tile_hw = _fit((image.shape[-2], image.shape[-1]), max_tile)
    rgb = F.interpolate(display, size=tile_hw, mode="bilinear", align_corners=False).clamp(0, 1)
    index: dict[str, Any] = {
        "format": ATLAS_FORMAT,
        "samples": int(image.shape[0]),
        "names": [str(n) for n in names] if isinstance(names, list | tuple) else None,
        "feature_cmap": FEATURE_CMAP,
        "images": _write_images(out, rgb, depth, prediction, tile_hw),
        "layers": {},
    }
    masks: dict[int, dict[str, Any]] = {}
    for i, name in enumerate(layers):
        entry = _write_layer(out / f"layer_{i:02d}_{_file_stem(name)}.png", features[name], max_tile)
        if bins is not None:
            layer_bins = bins.for_units(entry["units"])
            count = layer_bins.num_bins
            if count not in masks:
                masks[count] = _write_masks(out / f"masks_{count:03d}.png", prediction, layer_bins.edges, rgb)
            entry["masks"] = masks[count]
        index["layers"][str(name)] = entry
    atomic_write_json(out / "index.json", index)
    return index


def _check_samples(samples: Mapping[str, Any], layers: Sequence[str], max_tile: int) -> tuple[torch.Tensor, ...]:
    if not isinstance(samples, Mapping) or "image" not in samples or "depth" not in samples:
        keys = sorted(samples) if isinstance(samples, Mapping) else type(samples).__name__
        raise ValueError(f"samples: expected a batch dict with 'image' [S,3,H,W] and 'depth' [S,1,H,W], got {keys}")
    image = torch.as_tensor(samples["image"]).detach().float().cpu()
    depth = torch.as_tensor(samples["depth"]).detach().float().cpu()
    if image.ndim != 4 or image.shape[1] < 3:
        raise ValueError(f"samples['image']: expected shape [S, 3, H, W], got {tuple(image.shape)}")
    if depth.ndim == 3:
        depth = depth.unsqueeze(1)
    if depth.ndim != 4 or depth.shape[1] != 1 or depth.shape[0] != image.shape[0]:
        raise ValueError(f"samples['depth']: expected shape [{image.shape[0]}, 1, H, W], got {tuple(depth.shape)}")
    if not layers:
        raise ValueError("layers: expected at least one layer name")
    if max_tile < 4:
        raise ValueError(f"max_tile={max_tile}: expected at least 4 pixels")
    return image, depth


def _file_stem(name: str) -> str:
    """A layer name reduced to file-name-safe characters (the index keeps the real name)."""
    stem = "".join(c if c.isalnum() or c in "._-" else "_" for c in name).strip("._")
    return stem[:40] or "layer"


def _fit(size: tuple[int, int], longest: int) -> tuple[int, int]:
    """``size`` scaled so its longer side is ``longest`` (keeping the aspect ratio)."""
    h, w = size
    scale = longest / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def _display_images(image: torch.Tensor, normalized: bool) -> torch.Tensor:
    """``[S, 3, H, W]`` RGB in ``[0, 1]`` for display (``imde.viz.colors.display_image`` on the side-by-side batch)."""
    s, c, h, w = image.shape
    side_by_side = display_image(image.permute(1, 2, 0, 3).reshape(c, h, s * w), normalized)  # [H, S*W, 3]
    return side_by_side.reshape(h, s, w, 3).permute(1, 3, 0, 2)


def colormap_lut(name: str) -> torch.Tensor:
    """The 256-entry ``uint8`` RGB lookup table of a matplotlib colour map."""
    matplotlib = require("matplotlib", extra="viz")

    table = matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3]
    return torch.from_numpy(np.round(table * 255).astype(np.uint8))


def normalize_units(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scale each unit of ``features`` ``[S, K, h, w]`` to ``[0, 1]`` jointly over its samples and pixels.

    Returns:
        ``(normalised [S, K, h, w], low [K], high [K])``; a constant unit maps to 0.
    """
    low = features.amin(dim=(0, 2, 3))
    high = features.amax(dim=(0, 2, 3))
    span = (high - low).view(1, -1, 1, 1)
    scaled = (features - low.view(1, -1, 1, 1)) / torch.where(span > 0, span, torch.ones_like(span))
    return scaled.clamp(0, 1), low, high


def colorize(values: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """``values`` in ``[0, 1]`` (any shape) to ``uint8`` RGB ``[..., 3]`` through a 256-entry lookup table."""
    return lut[(values.clamp(0, 1) * 255).round().long()]


def tile_sprite(tiles: torch.Tensor) -> torch.Tensor:
    """Lay out ``[rows, cols, h, w, 3]`` tiles as one ``[rows * h, cols * w, 3]`` image (row-major)."""
    rows, cols, h, w, c = tiles.shape
    return tiles.permute(0, 2, 1, 3, 4).reshape(rows * h, cols * w, c)


def _write_png(path: Path, pixels: torch.Tensor) -> None:
    Image = require("PIL.Image", extra="viz")

    buffer = io.BytesIO()
    Image.fromarray(pixels.contiguous().numpy()).save(buffer, format="PNG", optimize=True)
    atomic_write_bytes(path, buffer.getvalue())


def _write_layer(path: Path, features: torch.Tensor, max_tile: int) -> dict[str, Any]:
    """Sprite of one layer: rows = units, columns = samples, each unit normalised over its samples."""
    if features.ndim != 4:
        raise ValueError(f"layer output: expected a feature map [S, K, h, w], got shape {tuple(features.shape)}")
    h, w = features.shape[-2:]
    if max(h, w) > max_tile:
        features = F.interpolate(features, size=_fit((h, w), max_tile), mode="area")
    scaled, low, high = normalize_units(features)
    tiles = colorize(scaled.transpose(0, 1), colormap_lut(FEATURE_CMAP))  # [K, S, h, w, 3]
    _write_png(path, tile_sprite(tiles))
    return {
        "file": path.name,
        "tile": list(tiles.shape[2:4]),
        "units": int(tiles.shape[0]),
        "range": torch.stack([low, high], dim=1).tolist(),
        "masks": None,
    }


def _write_images(out: Path, rgb: torch.Tensor, depth: torch.Tensor, prediction: torch.Tensor,
                  tile_hw: tuple[int, int]) -> dict[str, Any]:
    """Sprite of the inputs, ground-truth depths and predictions (one column per sample)."""
    gt = F.interpolate(depth, size=tile_hw, mode="nearest")[:, 0]
    pred = F.interpolate(prediction, size=tile_hw, mode="bilinear", align_corners=False)[:, 0]
    valid = torch.isfinite(gt) & (gt > 0)
    low, high = depth_limits([gt, pred])
    span = high - low if high > low else 1.0
    lut = colormap_lut(DEPTH_CMAP)
    gt_rgb = torch.where(valid.unsqueeze(-1), colorize((gt - low) / span, lut),
                         torch.tensor(INVALID_RGB, dtype=torch.uint8))
    image_rgb = (rgb.permute(0, 2, 3, 1) * 255).round().to(torch.uint8)
    tiles = torch.stack([image_rgb, gt_rgb, colorize((pred - low) / span, lut)])  # [3, S, h, w, 3]
    _write_png(out / "images.png", tile_sprite(tiles))
    return {"file": "images.png", "tile": list(tile_hw), "rows": ["image", "depth", "prediction"],
            "depth_range": [low, high], "depth_cmap": DEPTH_CMAP}


def _write_masks(path: Path, prediction: torch.Tensor, edges: torch.Tensor, rgb: torch.Tensor) -> dict[str, Any]:
    """Sprite of the predicted-depth bins: row ``d`` highlights the pixels predicted in bin ``d`` (Fig. 5 b)."""
    from imde.core.bins import digitize

    tile_hw = tuple(rgb.shape[-2:])
    bins = digitize(F.interpolate(prediction, size=tile_hw, mode="nearest")[:, 0], edges)  # [S, h, w]
    num_bins = edges.numel() - 1
    inside = bins.unsqueeze(0) == torch.arange(num_bins).view(-1, 1, 1, 1)  # [N_b, S, h, w]
    base = rgb.permute(0, 2, 3, 1).unsqueeze(0)  # [1, S, h, w, 3]
    highlight = 0.45 * base + 0.55 * torch.tensor(MASK_RGB) / 255.0
    dimmed = 0.25 * base.mean(dim=-1, keepdim=True).expand_as(base)
    tiles = torch.where(inside.unsqueeze(-1), highlight, dimmed)
    _write_png(path, tile_sprite((tiles * 255).round().to(torch.uint8)))
    return {"file": path.name, "tile": list(tile_hw), "bins": num_bins}
