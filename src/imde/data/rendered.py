"""The embedded default dataset: furnished rooms rendered with PyBullet's TinyRenderer, cached on disk.

``generate(root, ...)`` renders a train and a test split (scenes drawn from disjoint seed streams, several
camera views per scene, one PyBullet client per worker process) and caches them as one compressed ``.npz``
per split (RGB uint8, depth uint16 millimetres, focal length, scene ids) plus ``index.json``. The index is
written last, atomically, so an interrupted render never leaves a cache that looks complete.
``RenderedDataset`` reuses a cache whose index matches its parameters and renders one otherwise.
See ``docs/rendered.md``.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from imde.data._io import rgb_array_to_tensor
from imde.data._listed import Sample, Transform
from imde.data._scenes import CAMERAS, MAX_DEPTH, RenderedView, render_scene
from imde.data._textures import MATERIALS
from imde.utils.io import atomic_path, atomic_write_json
from imde.utils.optional import require

FORMAT_VERSION = 2
"""Bumped whenever the scene generator changes, so that older caches are re-rendered."""
INDEX_NAME = "index.json"
VIEWS_PER_SCENE = 8
SPLITS = ("train", "test")
_SPLIT_STREAM = {"train": 0, "test": 1}  # SeedSequence spawn keys: the splits never share a scene seed
_MM_PER_METRE = 1000.0
#: Parameters added to the index after its format was fixed: a cache written before holds their default.
_ADDED_PARAMS = {"camera": "varied", "materials": "random"}


def scene_seeds(seed: int, split: str, num_scenes: int) -> list[int]:
    """Seeds of the scenes of ``split``: independent ``SeedSequence`` streams keyed by (split, scene index).

    >>> set(scene_seeds(0, "train", 50)).isdisjoint(scene_seeds(0, "test", 50))
    True
    """
    key = _SPLIT_STREAM[split]
    return [
        int(np.random.SeedSequence(seed, spawn_key=(key, i)).generate_state(1, np.uint64)[0]) for i in range(num_scenes)
    ]


def _check_params(
    size: Sequence[int], num_train: int, num_test: int, seed: int, views_per_scene: int, camera: str = "varied",
    materials: str = "random",
) -> dict[str, Any]:
    """Validate the generation parameters and return them as the index records them."""
    if len(size) != 2 or any(int(s) != s or s < 16 for s in size):
        raise ValueError(f"size={tuple(size)!r}: expected (height, width), integers of at least 16 pixels")
    for name, value, low in (
        ("num_train", num_train, 1),
        ("num_test", num_test, 1),
        ("views_per_scene", views_per_scene, 1),
    ):
        if int(value) != value or value < low:
            raise ValueError(f"{name}={value!r}: expected an integer >= {low}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed={seed!r}: expected a non-negative integer")
    if camera not in CAMERAS:
        raise ValueError(f"camera={camera!r}: expected one of {', '.join(CAMERAS)}")
    if materials not in MATERIALS:
        raise ValueError(f"materials={materials!r}: expected one of {', '.join(MATERIALS)}")
    return {
        "version": FORMAT_VERSION,
        "size": [int(size[0]), int(size[1])],
        "num_train": int(num_train),
        "num_test": int(num_test),
        "seed": int(seed),
        "views_per_scene": int(views_per_scene),
        "camera": camera,
        "materials": materials,
    }


def _split_tasks(params: dict[str, Any], split: str) -> list[tuple[str, int, int, int]]:
    """``(split, scene index, scene seed, views)`` for every scene of ``split``; the last scene may have fewer views."""
    total, per_scene = params[f"num_{split}"], params["views_per_scene"]
    seeds = scene_seeds(params["seed"], split, math.ceil(total / per_scene))
    return [(split, i, s, min(per_scene, total - i * per_scene)) for i, s in enumerate(seeds)]


_WORKER_CLIENT: int | None = None


def _init_worker() -> None:
    """Pool initializer: one PyBullet DIRECT client per worker process, reused for all its scenes."""
    global _WORKER_CLIENT
    pybullet = require("pybullet", extra="data")

    _WORKER_CLIENT = pybullet.connect(pybullet.DIRECT)


def _render_task(task: tuple[str, int, int, int], size: tuple[int, int], look: dict[str, str]) -> list[RenderedView]:
    return render_scene(task[2], size=size, num_views=task[3], client=_WORKER_CLIENT, **look)


def _render_all(
    tasks: list[tuple[str, int, int, int]], size: tuple[int, int], num_workers: int, look: dict[str, str]
) -> Iterator[list[RenderedView]]:
    """Render the scenes of ``tasks`` in order, in this process (``num_workers == 0``) or in a process pool.

    ``look`` holds :func:`render_scene`'s ``camera`` and ``materials``.
    """
    if num_workers == 0:
        for task in tasks:
            yield render_scene(task[2], size=size, num_views=task[3], **look)
        return
    # Linux forks (no `if __name__ == "__main__"` guard needed in user scripts; workers use only numpy and
    # PyBullet, and connect their own client after the fork); elsewhere fork is unsafe, so spawn.
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    with context.Pool(num_workers, initializer=_init_worker) as pool:
        yield from pool.imap(partial(_render_task, size=size, look=look), tasks)


def _write_split(path: Path, views: list[RenderedView], scene_ids: np.ndarray) -> None:
    """Save one split as a compressed npz, atomically."""
    depth_mm = np.round(np.stack([v.depth for v in views]) * _MM_PER_METRE).astype(np.uint16)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(
            handle,
            image=np.stack([v.image for v in views]),
            depth_mm=depth_mm,
            focal=np.array([v.focal for v in views], dtype=np.float32),
            scene=scene_ids,
        )


def generate(
    root: str | os.PathLike[str],
    size: Sequence[int] = (128, 160),
    num_train: int = 2000,
    num_test: int = 300,
    seed: int = 0,
    views_per_scene: int = VIEWS_PER_SCENE,
    num_workers: int | None = None,
    progress: bool = True,
    camera: str = "varied",
    materials: str = "random",
) -> Path:
    """Render both splits into ``root`` and write its index.

    Args:
        root: output folder (created if needed); an existing index there is removed first.
        size: image ``(height, width)``.
        num_train: training images.
        num_test: test images.
        seed: dataset seed; scene ``i`` of a split gets an independent seed stream keyed by (split, i).
        views_per_scene: camera views rendered per room.
        num_workers: render processes (``None``: the number of CPUs; ``0``: render in this process).
        progress: show a tqdm progress bar.
        camera: camera rig of the views, a name in ``imde.data._scenes.CAMERAS`` (``"varied"``: random height,
            pitch and field of view per view; ``"fixed"``: one lens, one height, a near-level tilt; see ``CAMERAS``).
        materials: surface materials, a name in ``imde.data._textures.MATERIALS`` (``"random"``: any pattern
            and colour on every surface; ``"indoor"``: wooden floors, painted walls, plaster ceilings).

    Returns:
        Path of the written ``index.json``.
    """
    params = _check_params(size, num_train, num_test, seed, views_per_scene, camera, materials)
    if num_workers is not None and (int(num_workers) != num_workers or num_workers < 0):
        raise ValueError(f"num_workers={num_workers!r}: expected None or an integer >= 0")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / INDEX_NAME).unlink(missing_ok=True)
    tasks = [task for split in SPLITS for task in _split_tasks(params, split)]
    workers = min(len(tasks), os.cpu_count() or 1) if num_workers is None else int(num_workers)
    start = time.perf_counter()
    views: dict[str, list[RenderedView]] = {split: [] for split in SPLITS}
    with tqdm(total=num_train + num_test, desc=f"rendering rooms into {root}", unit="img", disable=not progress) as bar:
        for task, scene_views in zip(tasks, _render_all(tasks, tuple(params["size"]), workers,
                                                             {"camera": camera, "materials": materials})):
            views[task[0]].extend(scene_views)
            bar.update(len(scene_views))
    splits = {}
    for split in SPLITS:
        tasks_of_split = [t for t in tasks if t[0] == split]
        scene_ids = np.repeat([t[1] for t in tasks_of_split], [t[3] for t in tasks_of_split]).astype(np.int32)
        _write_split(root / f"{split}.npz", views[split], scene_ids)
        splits[split] = {
            "file": f"{split}.npz",
            "count": len(views[split]),
            "scene_seeds": [t[2] for t in tasks_of_split],
        }
    index = {
        "format": "imde-rendered",
        **params,
        "splits": splits,
        "render_seconds": round(time.perf_counter() - start, 2),
        "num_workers": workers,
    }
    return atomic_write_json(root / INDEX_NAME, index)


_generate = generate  # RenderedDataset's ``generate`` argument shadows the function's name

_DATASET_OPTIONS = ("size", "num_train", "num_test", "seed", "views_per_scene", "camera", "materials")


def cached_options(root: str | os.PathLike[str]) -> dict[str, Any]:
    """The :class:`RenderedDataset` options ``root``'s cache was rendered with (to open it as it is).

    Raises:
        FileNotFoundError: ``root`` holds no ``index.json``.
        ValueError: the index is unreadable or not a rendered dataset's.
    """
    path = Path(root) / INDEX_NAME
    if not path.is_file():
        raise FileNotFoundError(f"root={str(root)!r} holds no rendered dataset ({path} not found); "
                                "render one with `imde data render --root ...`")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is unreadable ({err})") from None
    if not isinstance(index, dict) or index.get("format") != "imde-rendered":
        raise ValueError(f"{path} is not the index of an imde rendered dataset")
    return {key: index.get(key, _ADDED_PARAMS.get(key)) for key in _DATASET_OPTIONS}


def _cache_problem(root: Path, params: dict[str, Any]) -> str | None:
    """Why ``root`` holds no complete cache for ``params`` (``None`` when it does)."""
    path = root / INDEX_NAME
    if not path.is_file():
        return f"{path} not found"
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        return f"{path} is unreadable ({err})"
    differ = [
        f"{key}={index.get(key, _ADDED_PARAMS.get(key))!r} (wanted {value!r})"
        for key, value in params.items()
        if index.get(key, _ADDED_PARAMS.get(key)) != value
    ]
    if differ:
        return f"{path} was generated with other parameters: {', '.join(differ)}"
    missing = [name for name in SPLITS if not (root / f"{name}.npz").is_file()]
    if missing:
        return f"{path} lists split files that are missing: {', '.join(f'{m}.npz' for m in missing)}"
    return None


class RenderedDataset(Dataset[Sample]):
    """Rendered furnished rooms with exact metric depth, read from the cache in ``root``.

    A missing or mismatched cache is an error unless ``generate=True`` (what `imde data render` and the study's
    ``render`` step pass): a mistyped ``root`` must not silently render and train on a fresh dataset.

    Args:
        root: cache folder.
        split: ``"train"`` or ``"test"`` (rendered from disjoint scene seeds).
        transform: joint sample transform, or ``None`` for the raw sample.
        size: image ``(height, width)``.
        num_train: training images.
        num_test: test images.
        seed: dataset seed.
        generate: render the dataset when ``root`` has no matching cache (default ``False``: that is an error
            saying how to render it).
        num_workers: render processes (see :func:`generate`).
        progress: show a progress bar while rendering.
        views_per_scene: camera views rendered per room (fewer views: more rooms for the same image count).
        camera: camera rig, ``"varied"`` or ``"fixed"`` (see :func:`generate`).
        materials: surface materials, ``"random"`` or ``"indoor"`` (see :func:`generate`).

    Items: ``image`` float32 ``[3, H, W]`` in [0, 1], ``depth`` float32 ``[1, H, W]`` metres (0 = invalid),
    ``focal`` (pixels), ``name``.

    Attributes:
        images: the split's RGB, uint8 ``[N, H, W, 3]``.
        depth_mm: its depth in millimetres, uint16 ``[N, H, W]`` (0 = invalid).
        focals: focal lengths in pixels, float32 ``[N]``.
        scenes: index of each image's room within the split, int32 ``[N]``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        transform: Transform | None = None,
        size: Sequence[int] = (128, 160),
        num_train: int = 2000,
        num_test: int = 300,
        seed: int = 0,
        generate: bool = False,
        num_workers: int | None = None,
        progress: bool = True,
        views_per_scene: int = VIEWS_PER_SCENE,
        camera: str = "varied",
        materials: str = "random",
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split={split!r}: expected one of {SPLITS}")
        params = _check_params(size, num_train, num_test, seed, views_per_scene, camera, materials)
        self.root = Path(root)
        self.split = split
        self.transform = transform
        problem = _cache_problem(self.root, params)
        if problem is not None:
            if not generate:
                raise FileNotFoundError(
                    f"root={str(self.root)!r} holds no complete rendered dataset: {problem}; render it with "
                    f"`imde data render --root {self.root}` (with the same options), let `imde study` render it "
                    "(its render step), or pass generate=True"
                )
            _generate(self.root, size, num_train, num_test, seed, views_per_scene, num_workers, progress, camera,
                      materials)
        with np.load(self.root / f"{split}.npz") as data:
            self.images = data["image"]
            self.depth_mm = data["depth_mm"]
            self.focals = data["focal"]
            self.scenes = data["scene"]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for the {len(self)} {self.split} images in {self.root}")
        depth = torch.from_numpy(self.depth_mm[index].astype(np.float32) / _MM_PER_METRE).unsqueeze(0)
        sample: Sample = {
            "image": rgb_array_to_tensor(self.images[index]),
            "depth": depth,
            "focal": float(self.focals[index]),
            "name": f"rendered/{self.split}/{index % len(self):05d}",
        }
        return sample if self.transform is None else self.transform(sample)


def cue_statistics(dataset: RenderedDataset, bins: int = 20) -> dict[str, Any]:
    """How much single cues reveal depth: Pearson correlations of valid depth with image row and brightness.

    Args:
        dataset: a rendered split.
        bins: bins of the depth histogram over ``(0, MAX_DEPTH]``.

    Returns:
        ``{"corr_row": r, "corr_brightness": r, "valid_fraction": f, "depth_hist": counts, "depth_edges": edges,
        "depth_min": m, "depth_max": M}`` over all valid pixels of the split.
    """
    depth = dataset.depth_mm / _MM_PER_METRE
    valid = depth > 0
    rows = np.broadcast_to(np.arange(depth.shape[1], dtype=np.float64)[None, :, None], depth.shape)
    brightness = dataset.images.mean(axis=-1, dtype=np.float64)  # no float copy of the RGB array
    d = depth[valid]
    counts, edges = np.histogram(d, bins=bins, range=(0.0, MAX_DEPTH))
    return {
        "corr_row": float(np.corrcoef(d, rows[valid])[0, 1]),
        "corr_brightness": float(np.corrcoef(d, brightness[valid])[0, 1]),
        "valid_fraction": float(valid.mean()),
        "depth_hist": counts.tolist(),
        "depth_edges": edges.tolist(),
        "depth_min": float(d.min()),
        "depth_max": float(d.max()),
    }


def save_contact_sheet(
    dataset: Dataset[Sample], path: str | os.PathLike[str], n: int = 16, columns: int = 4, max_depth: float = MAX_DEPTH
) -> Path:
    """Save a grid of ``n`` samples evenly spaced over the dataset, each as RGB beside its colour-mapped depth.

    Invalid depth (0) is drawn in black.

    Args:
        dataset: any dataset of the sample contract (``transform=None``).
        path: output png, written atomically.
        n: number of samples shown.
        columns: samples per row.
        max_depth: top of the colour scale (m).

    Returns:
        ``path``.
    """
    if n < 1 or n > len(dataset):  # type: ignore[arg-type]
        raise ValueError(f"n={n}: expected between 1 and len(dataset)={len(dataset)}")  # type: ignore[arg-type]
    matplotlib = require("matplotlib", extra="viz")
    Figure = require("matplotlib.figure", extra="viz").Figure  # no pyplot: the user's backend stays

    rows = math.ceil(n / columns)
    fig = Figure(figsize=(2.4 * columns, 0.95 * rows))
    axes = fig.subplots(rows, 2 * columns, squeeze=False)
    cmap = matplotlib.colormaps["turbo"].with_extremes(bad="black")
    for ax in axes.flat:
        ax.axis("off")
    for i, index in enumerate(np.linspace(0, len(dataset) - 1, n).round().astype(int)):  # type: ignore[arg-type]
        sample = dataset[int(index)]
        row, col = divmod(i, columns)
        depth = sample["depth"][0].numpy()
        axes[row, 2 * col].imshow(sample["image"].permute(1, 2, 0).numpy())
        axes[row, 2 * col + 1].imshow(np.ma.masked_less_equal(depth, 0), cmap=cmap, vmin=0, vmax=max_depth)
    fig.subplots_adjust(left=0.005, right=0.995, top=0.995, bottom=0.005, wspace=0.03, hspace=0.03)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return Path(path)
