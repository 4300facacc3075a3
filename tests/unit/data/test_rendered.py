"""The rendered RGB-D rooms: metric depth against analytic planes, determinism, splits, the on-disk cache."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pb = pytest.importorskip("pybullet")

from imde.core.bins import dataset_edges, digitize  # noqa: E402
from imde.data import rendered  # noqa: E402
from imde.data._scenes import CAMERAS, FAR, NEAR, _render, focal_from_fov, render_scene, zbuffer_to_depth  # noqa: E402
from imde.data._textures import random_texture, surface_texture  # noqa: E402
from imde.data.rendered import RenderedDataset, cue_statistics, generate, save_contact_sheet  # noqa: E402

SIZE = (48, 64)
TINY = {"size": SIZE, "num_train": 8, "num_test": 4, "seed": 3, "num_workers": 0, "progress": False}


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny cached dataset (one train scene of 8 views, one test scene of 4), rendered in this process."""
    root = tmp_path_factory.mktemp("rendered")
    RenderedDataset(root, "train", **TINY, generate=True)
    return root


def _copy(root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(root, tmp_path / "copy"))


def _arrays(root: Path, split: str) -> dict[str, np.ndarray]:
    with np.load(root / f"{split}.npz") as data:
        return {key: data[key] for key in data.files}


# --- depth and focal length against analytic planes -------------------------------------------------------


def _plane(client: int, corners: list[list[float]]) -> None:
    """A two-sided quad."""
    normal = np.cross(np.subtract(corners[1], corners[0]), np.subtract(corners[3], corners[0])).tolist()
    shape = pb.createVisualShape(
        pb.GEOM_MESH,
        vertices=corners,
        indices=[0, 1, 2, 0, 2, 3, 0, 2, 1, 0, 3, 2],
        normals=[normal] * 4,
        physicsClientId=client,
    )
    pb.createMultiBody(0, -1, shape, [0, 0, 0], physicsClientId=client)


@pytest.fixture()
def client():
    handle = pb.connect(pb.DIRECT)
    yield handle
    pb.disconnect(physicsClientId=handle)


def test_zbuffer_to_depth_inverts_the_opengl_projection() -> None:
    # OpenGL maps eye depth z to the buffer value b = (1/near - 1/z) / (1/near - 1/far).
    z = np.array([NEAR, 0.5, 1.0, 3.7, 10.0, FAR])
    buffer = (1 / NEAR - 1 / z) / (1 / NEAR - 1 / FAR)
    np.testing.assert_allclose(zbuffer_to_depth(buffer), z, rtol=1e-5)


def test_focal_from_fov_hand_values() -> None:
    assert focal_from_fov(128, 90.0) == pytest.approx(64.0)
    assert focal_from_fov(100, 60.0) == pytest.approx(50.0 * math.sqrt(3))


def test_frontal_wall_renders_at_its_distance(client: int) -> None:
    # A wall 3.25 m in front of the camera: z-depth is 3.25 m at every pixel.
    _plane(client, [[3.25, -20, -20], [3.25, 20, -20], [3.25, 20, 20], [3.25, -20, 20]])
    view = _render(pb, client, np.random.default_rng(0), ([0, 0, 1], [1, 0, 1], 60.0), SIZE)
    np.testing.assert_allclose(view.depth, 3.25, rtol=1e-4)


@pytest.mark.parametrize("fov, pitch_deg, height", [(55.0, 20.0, 1.3), (68.0, 35.0, 0.9)])
def test_floor_and_side_wall_depth_match_the_pinhole_model(client: int, fov: float, pitch_deg: float, height: float):
    """Per-pixel depth of a floor and a side wall follows from the focal length implied by the FOV."""
    h, w = SIZE
    _plane(client, [[-30, -30, 0], [30, -30, 0], [30, 30, 0], [-30, 30, 0]])  # floor
    _plane(client, [[-30, 1, -30], [30, 1, -30], [30, 1, 30], [-30, 1, 30]])  # wall 1 m to the left
    pitch = math.radians(pitch_deg)
    pose = ([0, 0, height], [math.cos(pitch), 0, height - math.sin(pitch)], fov)
    view = _render(pb, client, np.random.default_rng(0), pose, SIZE)
    assert view.focal == pytest.approx(0.5 * h / math.tan(math.radians(fov) / 2))
    # Ray through a pixel centre in the camera frame: (x, y, 1), x right, y down, principal point at the centre.
    y = ((np.arange(h) + 0.5 - h / 2) / view.focal)[:, None]
    x = ((np.arange(w) + 0.5 - w / 2) / view.focal)[None, :]
    # Floor: the ray drops by sin(pitch) + y cos(pitch) per metre of depth. Wall: it moves left by -x per metre.
    drop = np.broadcast_to(math.sin(pitch) + y * math.cos(pitch), SIZE)
    floor = np.where(drop > 0, height / np.maximum(drop, 1e-12), np.inf)
    wall = np.broadcast_to(np.where(x < 0, 1 / np.maximum(-x, 1e-12), np.inf), SIZE)
    expected = np.minimum(floor, wall)
    with np.errstate(invalid="ignore"):  # inf - inf where neither plane is hit
        clear = np.abs(floor - wall) > 0.05 * expected  # away from the floor/wall edge, where sampling decides
    near = clear & (expected < 8.0)
    assert near.sum() > 0.5 * near.size and (near & (wall < floor)).sum() > 100
    np.testing.assert_allclose(view.depth[near], expected[near], rtol=2e-4)
    # Beyond MAX_DEPTH the depth is invalid (0).
    assert np.all(view.depth[clear & (expected > 10.5)] == 0)


# --- render_scene ----------------------------------------------------------------------------------------------


def test_render_scene_is_deterministic_and_resets_a_reused_client(client: int) -> None:
    fresh = render_scene(11, size=SIZE, num_views=2)
    render_scene(12, size=SIZE, num_views=2, client=client)  # leave another room in the client
    reused = render_scene(11, size=SIZE, num_views=2, client=client)
    other = render_scene(13, size=SIZE, num_views=2)
    for a, b, c in zip(fresh, reused, other):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.depth, b.depth)
        assert a.focal == b.focal
        assert not np.array_equal(a.depth, c.depth)


def test_render_scene_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="size"):
        render_scene(0, size=(4, 64))
    with pytest.raises(ValueError, match="num_views"):
        render_scene(0, size=SIZE, num_views=0)
    with pytest.raises(ValueError, match="camera='tripod'"):
        render_scene(0, size=SIZE, camera="tripod")
    with pytest.raises(ValueError, match="materials='marble'"):
        render_scene(0, size=SIZE, materials="marble")
    with pytest.raises(ValueError, match="surface='door'"):
        surface_texture(np.random.default_rng(0), "door")


def _texture(seed: int, surface: str, materials: str) -> np.ndarray:
    return surface_texture(np.random.default_rng(seed), surface, materials).astype(float) / 255


@pytest.mark.parametrize("seed", range(6))
def test_indoor_materials_give_rooms_their_usual_look_and_random_ones_are_unchanged(seed: int) -> None:
    # "random": every surface draws exactly random_texture's numbers (rooms rendered before the option are kept)
    for surface in ("floor", "wall", "ceiling", "object"):
        expected = random_texture(np.random.default_rng(seed))
        np.testing.assert_array_equal(surface_texture(np.random.default_rng(seed), surface, "random"), expected)
    np.testing.assert_array_equal(surface_texture(np.random.default_rng(seed), "object", "indoor"),
                                  random_texture(np.random.default_rng(seed)))
    # "indoor": wood floors are brown (R > G > B), walls and ceilings light and nearly grey; the brightness of
    # ceilings varies least, that of the planked floors most
    floor, wall, ceiling = (_texture(seed, s, "indoor") for s in ("floor", "wall", "ceiling"))
    red, green, blue = floor.reshape(-1, 3).mean(axis=0)
    assert red > green > blue
    for surface in (wall, ceiling):
        assert surface.mean() > 0.55
        assert np.ptp(surface.reshape(-1, 3).mean(axis=0)) < 0.13
    brightness_spread = [surface.mean(axis=2).std() for surface in (ceiling, wall, floor)]
    assert brightness_spread == sorted(brightness_spread)


def test_materials_change_the_surfaces_not_the_camera() -> None:
    indoor = render_scene(5, size=SIZE, num_views=2, camera="fixed", materials="indoor")
    plain = render_scene(5, size=SIZE, num_views=2, camera="fixed", materials="random")
    assert [v.focal for v in indoor] == [v.focal for v in plain]
    assert all(not np.array_equal(a.image, b.image) for a, b in zip(indoor, plain))


def test_fixed_camera_rig_has_one_lens_and_varied_rig_does_not() -> None:
    fixed = render_scene(21, size=SIZE, num_views=4, camera="fixed")
    varied = render_scene(21, size=SIZE, num_views=4, camera="varied")
    expected = focal_from_fov(SIZE[0], CAMERAS["fixed"].fov[0])
    assert [view.focal for view in fixed] == pytest.approx([expected] * 4)
    assert len({round(view.focal, 6) for view in varied}) == 4
    # The rigs draw the same random numbers: the views differ, the default rig is unchanged.
    np.testing.assert_array_equal(varied[0].depth, render_scene(21, size=SIZE, num_views=1)[0].depth)
    assert not np.array_equal(fixed[0].depth, varied[0].depth)


@pytest.mark.parametrize("camera", ["fixed", "varied"])
def test_rendered_depth_preset_leaves_no_bin_rare_where_nyu_does(camera: str) -> None:
    # 6 scenes x 8 views: under NYU's range the nearest of 8 SID bins holds ~0.3 % of the pixels, under the
    # rendered preset every bin holds a few percent and few pixels fall above beta (docs/rendered.md).
    depth = np.concatenate([view.depth.ravel() for seed in range(6)
                            for view in render_scene(seed, size=SIZE, num_views=8, camera=camera)])
    depth = torch.from_numpy(depth.astype(np.float64))

    def bin_fractions(preset: str) -> tuple[torch.Tensor, float]:
        bins = digitize(depth, dataset_edges(preset, 8))
        return torch.bincount(bins[bins >= 0], minlength=8).double() / bins.numel(), float((bins < 0).double().mean())

    rendered_fractions, above_beta = bin_fractions("rendered")
    nyu_fractions, _ = bin_fractions("nyu")
    assert rendered_fractions.min() >= 0.02
    assert nyu_fractions.min() < 0.005
    assert above_beta < 0.03


# --- dataset contract --------------------------------------------------------------------------------------------


def test_items_follow_the_dataset_contract(tiny_root: Path) -> None:
    index = json.loads((tiny_root / "index.json").read_text())
    for split, count in (("train", 8), ("test", 4)):
        dataset = RenderedDataset(tiny_root, split, **TINY)
        assert len(dataset) == count == index["splits"][split]["count"]
        sample = dataset[count - 1]
        assert set(sample) == {"image", "depth", "focal", "name"}
        assert sample["image"].dtype == torch.float32 and sample["image"].shape == (3, *SIZE)
        assert sample["depth"].dtype == torch.float32 and sample["depth"].shape == (1, *SIZE)
        assert 0.0 <= sample["image"].min() and sample["image"].max() <= 1.0
        assert sample["name"] == f"rendered/{split}/{count - 1:05d}"
        # Closed rooms: almost every pixel has geometry within range; depth is stored to the millimetre.
        depth = torch.stack([dataset[i]["depth"] for i in range(count)])
        assert (depth > 0).float().mean() > 0.95
        assert float(depth.max()) <= rendered.MAX_DEPTH
        assert torch.equal(torch.round(depth * 1000) / 1000, depth)
        # The focal length is that of the drawn vertical field of view (45-70 degrees).
        focals = np.array([dataset[i]["focal"] for i in range(count)])
        assert np.all((focals >= focal_from_fov(SIZE[0], 70.0) - 1e-3) & (focals <= focal_from_fov(SIZE[0], 45.0)))
    assert dataset[-1]["name"] == dataset[count - 1]["name"]
    with pytest.raises(IndexError):
        dataset[count]


def test_transform_receives_the_sample(tiny_root: Path) -> None:
    def halve(sample: dict) -> dict:
        return {**sample, "depth": sample["depth"] / 2}

    plain = RenderedDataset(tiny_root, "test", **TINY)
    halved = RenderedDataset(tiny_root, "test", transform=halve, **TINY)
    assert torch.equal(halved[1]["depth"], plain[1]["depth"] / 2)


def test_splits_share_no_scene(tiny_root: Path) -> None:
    index = json.loads((tiny_root / "index.json").read_text())
    assert set(index["splits"]["train"]["scene_seeds"]).isdisjoint(index["splits"]["test"]["scene_seeds"])
    assert set(rendered.scene_seeds(0, "train", 300)).isdisjoint(rendered.scene_seeds(0, "test", 300))
    train, test = _arrays(tiny_root, "train"), _arrays(tiny_root, "test")
    assert not any(np.array_equal(a, b) for a in train["depth_mm"] for b in test["depth_mm"])


def test_same_seed_same_arrays_in_a_worker_pool_and_other_seed_differs(tiny_root: Path, tmp_path: Path) -> None:
    generate(tmp_path / "pool", **{**TINY, "num_workers": 2})
    generate(tmp_path / "other", **{**TINY, "seed": 4})
    for split in ("train", "test"):
        reference, pooled = _arrays(tiny_root, split), _arrays(tmp_path / "pool", split)
        for key in reference:
            np.testing.assert_array_equal(reference[key], pooled[key], err_msg=f"{split}/{key}")
        assert not np.array_equal(reference["image"], _arrays(tmp_path / "other", split)["image"])


# --- cache -----------------------------------------------------------------------------------------------------


def test_cache_is_reused_without_rendering(tiny_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = {name: (tiny_root / name).stat().st_mtime_ns for name in ("index.json", "train.npz", "test.npz")}

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("render_scene called although the cache is complete")

    monkeypatch.setattr(rendered, "render_scene", fail)
    dataset = RenderedDataset(tiny_root, "test", **TINY)
    assert len(dataset) == 4
    assert before == {name: (tiny_root / name).stat().st_mtime_ns for name in before}


def test_parameter_change_invalidates_the_cache(tiny_root: Path, tmp_path: Path) -> None:
    root = _copy(tiny_root, tmp_path)
    with pytest.raises(FileNotFoundError, match=r"num_test=4 \(wanted 5\)"):
        RenderedDataset(root, "test", **{**TINY, "num_test": 5}, generate=False)
    dataset = RenderedDataset(root, "test", **{**TINY, "num_test": 5}, generate=True)
    assert len(dataset) == 5
    assert json.loads((root / "index.json").read_text())["num_test"] == 5
    # Scenes are keyed by (seed, split, index): the first test scene is unchanged by the new count.
    np.testing.assert_array_equal(_arrays(root, "test")["image"][:4], _arrays(tiny_root, "test")["image"])


@pytest.mark.parametrize(("key", "default", "other"),
                         [("camera", "varied", "fixed"), ("materials", "random", "indoor")])
def test_a_look_change_invalidates_the_cache_and_an_index_without_the_key_has_the_default(
        tiny_root: Path, tmp_path: Path, key: str, default: str, other: str) -> None:
    root = _copy(tiny_root, tmp_path)
    with pytest.raises(FileNotFoundError, match=rf"{key}='{default}' \(wanted '{other}'\)"):
        RenderedDataset(root, "test", **TINY, **{key: other}, generate=False)
    index = json.loads((root / "index.json").read_text())
    assert index[key] == default
    del index[key]  # a cache written before the option existed
    (root / "index.json").write_text(json.dumps(index))
    assert len(RenderedDataset(root, "test", **TINY, generate=False)) == 4
    with pytest.raises(FileNotFoundError, match=key):
        RenderedDataset(root, "test", **TINY, **{key: other}, generate=False)


def test_version_change_invalidates_the_cache(tiny_root: Path, tmp_path: Path, monkeypatch) -> None:
    root = _copy(tiny_root, tmp_path)
    monkeypatch.setattr(rendered, "FORMAT_VERSION", rendered.FORMAT_VERSION + 1)
    with pytest.raises(FileNotFoundError, match="version"):
        RenderedDataset(root, "train", **TINY, generate=False)


def test_interrupted_generation_leaves_no_complete_index(tiny_root: Path, tmp_path: Path, monkeypatch) -> None:
    root = _copy(tiny_root, tmp_path)  # a complete cache that a new render (other seed) replaces
    calls = []

    def crash_on_second_scene(seed: int, size: tuple[int, int], num_views: int, **look: str) -> list:
        calls.append(seed)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return render_scene(seed, size=size, num_views=num_views, **look)

    monkeypatch.setattr(rendered, "render_scene", crash_on_second_scene)
    with pytest.raises(KeyboardInterrupt):
        RenderedDataset(root, "train", **{**TINY, "seed": 9}, generate=True)
    assert not (root / "index.json").exists()
    assert not list(root.glob(".*.tmp"))
    with pytest.raises(FileNotFoundError, match="index.json not found"):
        RenderedDataset(root, "train", **TINY, generate=False)


def test_a_missing_root_is_an_error_that_says_how_to_render_and_renders_nothing(tmp_path: Path) -> None:
    typo = tmp_path / "renderd"
    with pytest.raises(FileNotFoundError, match=r"imde data render --root .*renderd"):
        RenderedDataset(typo, "train", **TINY)
    assert not typo.exists()


def test_missing_split_file_is_not_a_complete_cache(tiny_root: Path, tmp_path: Path) -> None:
    root = _copy(tiny_root, tmp_path)
    (root / "test.npz").unlink()
    with pytest.raises(FileNotFoundError, match="test.npz"):
        RenderedDataset(root, "train", **TINY, generate=False)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"split": "val"}, "split='val'"),
        ({"size": (8, 64)}, "size"),
        ({"num_train": 0}, "num_train=0"),
        ({"seed": -1}, "seed=-1"),
        ({"camera": "tripod"}, "camera='tripod'"),
    ],
)
def test_bad_arguments_are_rejected_before_rendering(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RenderedDataset(tmp_path, **{**TINY, **kwargs})
    assert not list(tmp_path.iterdir())


def test_create_dispatches_to_the_rendered_dataset(tiny_root: Path) -> None:
    from imde.data import create

    dataset = create("rendered", tiny_root, split="test", **TINY)
    assert isinstance(dataset, RenderedDataset) and len(dataset) == 4


# --- statistics and contact sheet -----------------------------------------------------------------------------


def test_cue_statistics_match_a_per_sample_computation(tiny_root: Path) -> None:
    dataset = RenderedDataset(tiny_root, "train", **TINY)
    stats = cue_statistics(dataset, bins=10)
    depth, rows, bright = [], [], []
    for i in range(len(dataset)):
        sample = dataset[i]
        valid = sample["depth"][0] > 0
        depth.append(sample["depth"][0][valid].double())
        rows.append(torch.arange(SIZE[0]).view(-1, 1).expand(SIZE)[valid].double())
        bright.append((sample["image"].double() * 255).mean(0)[valid])
    d, r, b = torch.cat(depth), torch.cat(rows), torch.cat(bright)
    assert stats["corr_row"] == pytest.approx(float(torch.corrcoef(torch.stack([d, r]))[0, 1]), abs=1e-6)
    assert stats["corr_brightness"] == pytest.approx(float(torch.corrcoef(torch.stack([d, b]))[0, 1]), abs=1e-6)
    assert sum(stats["depth_hist"]) == d.numel()
    assert stats["depth_min"] == pytest.approx(float(d.min()))
    # Neither image row nor brightness alone determines depth.
    assert abs(stats["corr_row"]) < 0.9 and abs(stats["corr_brightness"]) < 0.9


def test_contact_sheet_is_a_png_of_rgb_and_depth_panels(tiny_root: Path, tmp_path: Path) -> None:
    dataset = RenderedDataset(tiny_root, "train", **TINY)
    path = save_contact_sheet(dataset, tmp_path / "sheet.png", n=6, columns=3)
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape == (190, 720, 3)  # figsize (2.4 * 3, 0.95 * 2) inches at 100 dpi
    assert image.std() > 20  # not blank
    with pytest.raises(ValueError, match="n=9"):
        save_contact_sheet(dataset, tmp_path / "bad.png", n=9)


@pytest.mark.slow
def test_full_size_generation_is_under_three_minutes(tmp_path: Path) -> None:
    index = json.loads(generate(tmp_path, progress=False).read_text())
    assert index["splits"]["train"]["count"] == 2000 and index["splits"]["test"]["count"] == 300
    assert index["render_seconds"] < 180
