"""Random furnished rooms rendered with PyBullet's CPU TinyRenderer: RGB, metric depth and focal length.

A scene is a function of one integer seed: room size, surface textures, furniture, objects, lights and
camera poses are all drawn from ``numpy.random.default_rng(seed)``. The renderer is deterministic, so the
same seed always gives identical arrays.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from imde.data._textures import MATERIALS, surface_texture
from imde.utils.optional import require

Image = require("PIL.Image", extra="data")

NEAR = 0.05
"""Near clipping plane of the camera (m)."""
FAR = 30.0
"""Far clipping plane of the camera (m)."""
MAX_DEPTH = 10.0
"""Depth beyond this (m) is marked invalid (0), like the NYU Depth V2 range."""

_ROOM_LENGTH = (3.0, 9.5)
_ROOM_WIDTH = (2.5, 6.5)
_ROOM_HEIGHT = (2.4, 3.3)
_WALL_MARGIN = 0.45  # closest a camera gets to a wall (m)
_TARGET_CANDIDATES = 3  # a view looks at the farthest of this many random points of the room
_STANDPOINTS = 2  # camera positions per room; views alternate between them
_STAND_JITTER = 0.15  # views move this far (m) from their standpoint in x and y
_CAMERA_CLEARANCE = 0.45  # free radius around each camera (m)
_RANDOM_URDFS = 1000


@dataclass(frozen=True)
class CameraRig:
    """Uniform ranges the pose and intrinsics of every view are drawn from (a range ``(a, a)`` fixes the value).

    Attributes:
        height: camera height above the floor (m); capped at 0.4 m below the ceiling.
        pitch: pitch (degrees, negative looks down).
        fov: vertical field of view (degrees).
    """

    height: tuple[float, float]
    pitch: tuple[float, float]
    fov: tuple[float, float]


CAMERAS = {
    # Every view its own height, pitch and lens: absolute scale is ambiguous from the image alone.
    "varied": CameraRig(height=(0.8, 1.8), pitch=(-35.0, 8.0), fov=(45.0, 70.0)),
    # One lens, one height, a near-level tilt (a rig, like KITTI's car-mounted camera): a floor point's image
    # row then fixes its metric depth, so absolute scale is learnable in minutes on a CPU (docs/demo.md).
    "fixed": CameraRig(height=(1.3, 1.3), pitch=(-12.0, -8.0), fov=(55.0, 55.0)),
}
"""Camera rigs by name: the ``camera`` option of :func:`render_scene` and the rendered dataset."""
# Nominal largest extent (m) of bundled meshes at scale 1, used to draw objects at a chosen size.
_MESH_OBJECTS = {
    "random": 0.12,
    "duck_vhacd.urdf": 0.09,
    "teddy_vhacd.urdf": 0.1,
    "objects/mug.urdf": 0.13,
    "soccerball.urdf": 1.0,
    "sphere2.urdf": 1.0,
    "tray/traybox.urdf": 0.6,
    "jenga/jenga.urdf": 0.15,
}


@dataclass(frozen=True)
class RenderedView:
    """One rendered camera view.

    Attributes:
        image: ``[H, W, 3]`` uint8 RGB.
        depth: ``[H, W]`` float32 z-depth in metres along the optical axis, 0 where invalid.
        focal: focal length in pixels (square pixels, principal point at the centre).
    """

    image: np.ndarray
    depth: np.ndarray
    focal: float


def zbuffer_to_depth(zbuffer: np.ndarray, near: float = NEAR, far: float = FAR) -> np.ndarray:
    """Convert an OpenGL depth buffer in [0, 1] to metric z-depth.

    Inverts the perspective projection of the depth buffer: ``z = far * near / (far - (far - near) * b)``.

    Args:
        zbuffer: depth-buffer values in [0, 1] (1 at the far plane).
        near: near clipping plane (m).
        far: far clipping plane (m).

    Returns:
        float32 depth in metres, same shape.
    """
    zbuffer = np.asarray(zbuffer, dtype=np.float64)
    return (far * near / (far - (far - near) * zbuffer)).astype(np.float32)


def focal_from_fov(height: int, fov_y_deg: float) -> float:
    """Focal length in pixels of a pinhole camera: ``f = (H / 2) / tan(fov_y / 2)``."""
    return 0.5 * height / math.tan(math.radians(fov_y_deg) / 2)


@dataclass(frozen=True)
class _Room:
    length: float  # along x
    width: float  # along y
    height: float


class _SceneBuilder:
    """Adds textured geometry to one PyBullet client, keeping the floor footprints to avoid overlaps."""

    def __init__(self, pb: ModuleType, client: int, rng: np.random.Generator, texture_dir: Path,
                 materials: str = "random") -> None:
        self.pb = pb
        self.client = client
        self.rng = rng
        self.texture_dir = texture_dir
        self.materials = materials
        self.footprints: list[tuple[float, float, float]] = []
        self._num_textures = 0

    def texture(self, surface: str = "object") -> int:
        """Draw the texture of a ``surface`` kind, write it to the scene's folder and load it into the renderer."""
        path = self.texture_dir / f"tex{self._num_textures:03d}.png"
        self._num_textures += 1
        Image.fromarray(surface_texture(self.rng, surface, self.materials)).save(path)
        return self.pb.loadTexture(str(path), physicsClientId=self.client)

    def quad(self, corners: np.ndarray, tile: float, texture: int) -> None:
        """A rectangle ``corners[0..3]`` (counter-clockwise seen from the room) tiled every ``tile`` metres."""
        edge_u, edge_v = corners[1] - corners[0], corners[3] - corners[0]
        normal = np.cross(edge_u, edge_v)
        normal /= np.linalg.norm(normal)
        size_u, size_v = np.linalg.norm(edge_u) / tile, np.linalg.norm(edge_v) / tile
        uvs = [[0, 0], [size_u, 0], [size_u, size_v], [0, size_v]]
        shape = self.pb.createVisualShape(
            self.pb.GEOM_MESH,
            vertices=corners.tolist(),
            indices=[0, 1, 2, 0, 2, 3],
            uvs=uvs,
            normals=[normal.tolist()] * 4,
            physicsClientId=self.client,
        )
        body = self.pb.createMultiBody(0, -1, shape, [0, 0, 0], physicsClientId=self.client)
        self.pb.changeVisualShape(body, -1, textureUniqueId=texture, physicsClientId=self.client)

    def boxes(self, parts: list[tuple[list[float], list[float]]], position: list[float], yaw: float) -> int:
        """One rigid body made of boxes ``(half_extents, local_centre)``, placed at ``position`` turned by ``yaw``."""
        shape = self.pb.createVisualShapeArray(
            shapeTypes=[self.pb.GEOM_BOX] * len(parts),
            halfExtents=[half for half, _ in parts],
            visualFramePositions=[centre for _, centre in parts],
            physicsClientId=self.client,
        )
        orientation = self.pb.getQuaternionFromEuler([0, 0, yaw])
        body = self.pb.createMultiBody(0, -1, shape, position, orientation, physicsClientId=self.client)
        self.paint(body, texture=self.rng.random() < 0.6)
        return body

    def paint(self, body: int, texture: bool) -> None:
        """Give ``body`` a random colour, and a random texture when ``texture``."""
        colour = [*np.clip(self.rng.uniform(0.2, 1.0, 3), 0, 1).tolist(), 1.0]
        options = {"textureUniqueId": self.texture()} if texture else {}
        self.pb.changeVisualShape(body, -1, rgbaColor=colour, physicsClientId=self.client, **options)

    def free_spot(self, room: _Room, radius: float, tries: int = 25) -> tuple[float, float] | None:
        """A floor position whose disc of ``radius`` is inside the room and clear of earlier footprints."""
        for _ in range(tries):
            x = self.rng.uniform(radius, room.length - radius)
            y = self.rng.uniform(radius, room.width - radius)
            if self._claim(x, y, radius):
                return x, y
        return None

    def wall_spot(self, room: _Room, width: float, depth: float) -> tuple[float, float, float] | None:
        """A position against a random wall for a piece ``width`` wide and ``depth`` deep; returns (x, y, yaw)."""
        for _ in range(25):
            side = int(self.rng.integers(4))
            along = room.length if side % 2 == 0 else room.width
            if width + 0.1 >= along:
                continue
            t = self.rng.uniform(width / 2 + 0.05, along - width / 2 - 0.05)
            off = depth / 2 + 0.01
            x, y, yaw = [
                (t, off, 0.0),
                (room.length - off, t, math.pi / 2),
                (t, room.width - off, math.pi),
                (off, t, -math.pi / 2),
            ][side]
            if self._claim(x, y, 0.5 * math.hypot(width, depth)):
                return x, y, yaw
        return None

    def _claim(self, x: float, y: float, radius: float) -> bool:
        """Reserve the disc ``(x, y, radius)`` of floor if it overlaps no earlier footprint."""
        if any(math.hypot(x - fx, y - fy) < radius + fr for fx, fy, fr in self.footprints):
            return False
        self.footprints.append((x, y, radius))
        return True


def _build_room(b: _SceneBuilder, room: _Room) -> None:
    """Floor, ceiling and four walls as inward-facing textured quads, with doors and pictures on the walls."""
    lx, ly, lz = room.length, room.width, room.height
    floor = np.array([[0, 0, 0], [lx, 0, 0], [lx, ly, 0], [0, ly, 0]], dtype=float)
    b.quad(floor, b.rng.uniform(0.3, 1.2), b.texture("floor"))
    b.quad(floor[::-1] + [0, 0, lz], b.rng.uniform(0.5, 2.0), b.texture("ceiling"))
    wall_textures = [b.texture("wall") for _ in range(int(b.rng.integers(1, 3)))]
    corners = [(0, 0), (lx, 0), (lx, ly), (0, ly)]
    for i in range(4):
        (x0, y0), (x1, y1) = corners[i], corners[(i + 1) % 4]
        wall = np.array([[x1, y1, 0], [x0, y0, 0], [x0, y0, lz], [x1, y1, lz]], dtype=float)
        b.quad(wall, b.rng.uniform(0.4, 2.5), wall_textures[i % len(wall_textures)])
    for _ in range(int(b.rng.integers(1, 5))):
        _wall_panel(b, room)


def _wall_panel(b: _SceneBuilder, room: _Room) -> None:
    """A door, window or picture: a thin box flat on a wall."""
    kind = b.rng.integers(3)
    width, height = [
        (0.9, 2.05),
        (b.rng.uniform(0.8, 1.8), b.rng.uniform(0.8, 1.4)),
        (b.rng.uniform(0.3, 1.2), b.rng.uniform(0.3, 0.9)),
    ][kind]
    bottom = [0.0, b.rng.uniform(0.7, 1.0), b.rng.uniform(1.0, 1.6)][kind]
    side = int(b.rng.integers(4))
    along = room.length if side % 2 == 0 else room.width
    if width + 0.2 >= along:
        return
    t = b.rng.uniform(width / 2 + 0.1, along - width / 2 - 0.1)
    x, y, yaw = [(t, 0.0, 0.0), (room.length, t, math.pi / 2), (t, room.width, math.pi), (0.0, t, -math.pi / 2)][side]
    b.boxes([([width / 2, 0.03, height / 2], [0.0, 0.0, bottom + height / 2])], [x, y, 0.0], yaw)


def _table(b: _SceneBuilder, room: _Room) -> float | None:
    """A free-standing table (top and four legs); returns its top height, or None when it did not fit."""
    w, d, h = b.rng.uniform(0.5, 1.6), b.rng.uniform(0.4, 1.0), b.rng.uniform(0.4, 0.95)
    spot = b.free_spot(room, 0.5 * math.hypot(w, d))
    if spot is None:
        return None
    leg = 0.03
    parts = [([w / 2, d / 2, 0.02], [0.0, 0.0, h - 0.02])]
    parts += [
        ([leg, leg, (h - 0.04) / 2], [sx * (w / 2 - leg), sy * (d / 2 - leg), (h - 0.04) / 2])
        for sx in (-1, 1)
        for sy in (-1, 1)
    ]
    yaw = b.rng.uniform(-math.pi, math.pi)
    b.boxes(parts, [spot[0], spot[1], 0.0], yaw)
    for _ in range(int(b.rng.integers(0, 4))):
        ox, oy = b.rng.uniform(-0.4, 0.4) * w, b.rng.uniform(-0.4, 0.4) * d
        x = spot[0] + ox * math.cos(yaw) - oy * math.sin(yaw)
        y = spot[1] + ox * math.sin(yaw) + oy * math.cos(yaw)
        _mesh_object(b, [x, y, h], (0.05, 0.35))
    return h


def _against_wall(b: _SceneBuilder, room: _Room) -> None:
    """A cabinet, bookshelf or sofa/bed standing against a wall."""
    kind = b.rng.integers(3)
    if kind == 0:  # cabinet or wardrobe
        w, d, h = b.rng.uniform(0.4, 1.6), b.rng.uniform(0.35, 0.65), b.rng.uniform(0.5, 2.1)
        parts = [([w / 2, d / 2, h / 2], [0.0, 0.0, h / 2])]
    elif kind == 1:  # bookshelf: two sides and shelves, with books
        w, d, h = b.rng.uniform(0.6, 1.5), b.rng.uniform(0.25, 0.4), b.rng.uniform(1.0, 2.2)
        parts = [([0.02, d / 2, h / 2], [sx * (w / 2 - 0.02), 0.0, h / 2]) for sx in (-1, 1)]
        parts += [([w / 2, 0.01, h / 2], [0.0, -d / 2 + 0.01, h / 2])]
        levels = np.linspace(0.02, h - 0.02, int(b.rng.integers(3, 6)))
        parts += [([w / 2, d / 2, 0.015], [0.0, 0.0, float(z)]) for z in levels]
        for z0, z1 in zip(levels[:-1], levels[1:]):
            book_h = min(0.9 * (z1 - z0), b.rng.uniform(0.15, 0.3))
            x = -w / 2 + 0.05
            while x < w / 2 - 0.1 and b.rng.random() < 0.85:
                bw = b.rng.uniform(0.02, 0.08)
                parts.append(([bw / 2, d * 0.4, book_h / 2], [x + bw / 2, 0.0, float(z0) + 0.015 + book_h / 2]))
                x += bw + b.rng.uniform(0.0, 0.05)
    else:  # sofa or bed: base and back
        w, d = b.rng.uniform(1.2, 2.2), b.rng.uniform(0.8, 2.0)
        h, back = b.rng.uniform(0.3, 0.55), b.rng.uniform(0.3, 0.6)
        parts = [
            ([w / 2, d / 2, h / 2], [0.0, 0.0, h / 2]),
            ([w / 2, 0.1, (h + back) / 2], [0.0, -d / 2 + 0.1, (h + back) / 2]),
        ]
    spot = b.wall_spot(room, w, d)
    if spot is not None:
        b.boxes(parts, [spot[0], spot[1], 0.0], spot[2])


def _mesh_object(b: _SceneBuilder, position: list[float], size_range: tuple[float, float]) -> None:
    """A bundled mesh (random_urdfs, duck, teddy, mug, ball, ...) of a log-uniform random size, resting on a surface.

    The size range is wide on purpose: apparent size alone must not reveal distance.
    """
    names = list(_MESH_OBJECTS)
    name = names[int(b.rng.integers(len(names)))]
    nominal = _MESH_OBJECTS[name]
    if name == "random":
        index = int(b.rng.integers(_RANDOM_URDFS))
        name = f"random_urdfs/{index:03d}/{index:03d}.urdf"
    size = math.exp(b.rng.uniform(math.log(size_range[0]), math.log(size_range[1])))
    orientation = b.pb.getQuaternionFromEuler([0, 0, b.rng.uniform(-math.pi, math.pi)])
    body = b.pb.loadURDF(
        name, position, orientation, globalScaling=size / nominal, useFixedBase=True, physicsClientId=b.client
    )
    lowest = b.pb.getAABB(body, physicsClientId=b.client)[0][2]
    b.pb.resetBasePositionAndOrientation(
        body, [position[0], position[1], 2 * position[2] - lowest], orientation, physicsClientId=b.client
    )
    b.paint(body, texture=False)


def _floor_objects(b: _SceneBuilder, room: _Room) -> None:
    """Boxes, cylinders and meshes of very different sizes standing on the floor."""
    for _ in range(int(b.rng.integers(3, 11))):
        size = math.exp(b.rng.uniform(math.log(0.1), math.log(1.1)))
        spot = b.free_spot(room, 0.5 * size)
        if spot is None:
            continue
        if b.rng.random() < 0.4:
            _mesh_object(b, [spot[0], spot[1], 0.0], (0.6 * size, size))
            continue
        h = size * b.rng.uniform(0.4, 1.5)
        if b.rng.random() < 0.5:
            shape = b.pb.createVisualShape(
                b.pb.GEOM_BOX, halfExtents=[size / 2, size / 2 * b.rng.uniform(0.4, 1), h / 2], physicsClientId=b.client
            )
        else:
            shape = b.pb.createVisualShape(b.pb.GEOM_CYLINDER, radius=size / 2, length=h, physicsClientId=b.client)
        orientation = b.pb.getQuaternionFromEuler([0, 0, b.rng.uniform(-math.pi, math.pi)])
        body = b.pb.createMultiBody(0, -1, shape, [spot[0], spot[1], h / 2], orientation, physicsClientId=b.client)
        b.paint(body, texture=b.rng.random() < 0.5)


def _standpoints(rng: np.random.Generator, room: _Room) -> list[tuple[float, float]]:
    """Floor positions the cameras stand at (kept clear of furniture)."""
    low, high = (_WALL_MARGIN, _WALL_MARGIN), (room.length - _WALL_MARGIN, room.width - _WALL_MARGIN)
    return [tuple(point) for point in rng.uniform(low, high, size=(_STANDPOINTS, 2)).tolist()]


def _cameras(
    rng: np.random.Generator, room: _Room, stands: list[tuple[float, float]], num_views: int, rig: CameraRig
) -> list[tuple[list[float], list[float], float]]:
    """Camera poses ``(eye, target, fov_y_deg)``: views alternate between the standpoints, each with its own pose."""
    poses = []
    for view in range(num_views):
        sx, sy = stands[view % len(stands)]
        x = float(np.clip(sx + rng.uniform(-_STAND_JITTER, _STAND_JITTER), _WALL_MARGIN, room.length - _WALL_MARGIN))
        y = float(np.clip(sy + rng.uniform(-_STAND_JITTER, _STAND_JITTER), _WALL_MARGIN, room.width - _WALL_MARGIN))
        z = rng.uniform(rig.height[0], min(rig.height[1], room.height - 0.4))
        # Look roughly towards the farthest of a few random points of the room, so that most views span its depth.
        candidates = rng.uniform((0, 0), (room.length, room.width), size=(_TARGET_CANDIDATES, 2))
        tx, ty = candidates[np.argmax(np.hypot(candidates[:, 0] - x, candidates[:, 1] - y))]
        yaw = math.atan2(ty - y, tx - x) + math.radians(rng.uniform(-25, 25))
        pitch = math.radians(rng.uniform(*rig.pitch))
        direction = [math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), math.sin(pitch)]
        poses.append(([x, y, z], [x + direction[0], y + direction[1], z + direction[2]], rng.uniform(*rig.fov)))
    return poses


def _centred_projection(pb: ModuleType, fov_y_deg: float, height: int, width: int) -> list[float]:
    """OpenGL projection whose principal point is the image centre, ``((W - 1) / 2, (H - 1) / 2)`` in pixel indices.

    TinyRenderer samples pixel ``(u, v)`` at ``(u + 1, v + 1)`` rather than at its centre ``(u + 0.5, v + 0.5)``;
    shifting the image plane by half a pixel in x and y makes the rendered depth that of an ideal pinhole camera
    with focal :func:`focal_from_fov` and a centred principal point (checked against analytic planes in the tests).
    """
    projection = list(pb.computeProjectionMatrixFOV(fov_y_deg, width / height, NEAR, FAR))
    projection[8] += 1.0 / width  # column-major: entries 8 and 9 offset x and y in normalised device coordinates
    projection[9] += 1.0 / height
    return projection


def _render(pb: ModuleType, client: int, rng: np.random.Generator, pose: tuple, size: tuple[int, int]) -> RenderedView:
    """Render one view under random lighting and convert its depth buffer to metres."""
    height, width = size
    eye, target, fov = pose
    view = pb.computeViewMatrix(eye, target, [0, 0, 1], physicsClientId=client)
    projection = _centred_projection(pb, fov, height, width)
    elevation, azimuth = math.radians(rng.uniform(30, 85)), rng.uniform(-math.pi, math.pi)
    light = [math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth), math.sin(elevation)]
    _, _, rgba, zbuffer, _ = pb.getCameraImage(
        width,
        height,
        view,
        projection,
        lightDirection=light,
        lightColor=(1.0 - rng.uniform(0.0, 0.25, 3)).tolist(),
        lightDistance=10.0,
        shadow=int(rng.random() < 0.5),
        lightAmbientCoeff=rng.uniform(0.3, 0.7),
        lightDiffuseCoeff=rng.uniform(0.3, 0.7),
        lightSpecularCoeff=rng.uniform(0.0, 0.3),
        renderer=pb.ER_TINY_RENDERER,
        physicsClientId=client,
    )
    image = np.asarray(rgba, dtype=np.uint8).reshape(height, width, 4)[..., :3].copy()
    depth = zbuffer_to_depth(np.asarray(zbuffer).reshape(height, width))
    depth[(depth > MAX_DEPTH) | ~np.isfinite(depth)] = 0.0
    return RenderedView(image=image, depth=depth, focal=focal_from_fov(height, fov))


def render_scene(
    seed: int, size: tuple[int, int] = (128, 160), num_views: int = 8, client: int | None = None,
    camera: str = "varied", materials: str = "random",
) -> list[RenderedView]:
    """Build one random furnished room from ``seed`` and render it from ``num_views`` camera poses.

    Args:
        seed: the scene's seed; the same seed always gives identical views.
        size: image ``(height, width)`` in pixels.
        num_views: camera views rendered in this room.
        client: an open PyBullet client (reset before use), e.g. one per worker process; ``None`` opens
            and closes a private ``DIRECT`` client.
        camera: name of the :data:`CAMERAS` rig the views are drawn from. The rigs draw the same random
            numbers, so a room and its furniture do not depend on the rig, only the views do.
        materials: the room's surface materials, a name in ``imde.data._textures.MATERIALS`` (``"random"``:
            any pattern and colour on every surface; ``"indoor"``: wooden floors, painted walls, plaster
            ceilings). The room's size and the camera poses do not depend on it; the furniture does (it is
            drawn from the same random stream as the textures, which keeps ``"random"`` rooms as they were).

    Returns:
        ``num_views`` rendered views.

    Raises:
        ValueError: on a non-positive size or number of views, an unknown camera rig or material set.
    """
    if len(size) != 2 or min(size) < 8:
        raise ValueError(f"size={size!r}: expected (height, width) of at least 8 pixels each")
    if num_views < 1:
        raise ValueError(f"num_views={num_views}: expected at least 1")
    if camera not in CAMERAS:
        raise ValueError(f"camera={camera!r}: expected one of {', '.join(CAMERAS)}")
    if materials not in MATERIALS:
        raise ValueError(f"materials={materials!r}: expected one of {', '.join(MATERIALS)}")
    pb = require("pybullet", extra="data")
    pybullet_data = require("pybullet_data", extra="data")

    own = client is None
    if own:
        client = pb.connect(pb.DIRECT)
    try:
        pb.resetSimulation(physicsClientId=client)
        pb.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=client)
        # Independent streams: the room and view i do not depend on how many views are rendered.
        rng, camera_rng, light_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
        room = _Room(rng.uniform(*_ROOM_LENGTH), rng.uniform(*_ROOM_WIDTH), rng.uniform(*_ROOM_HEIGHT))
        stands = _standpoints(camera_rng, room)
        poses = _cameras(camera_rng, room, stands, num_views, CAMERAS[camera])
        with tempfile.TemporaryDirectory(prefix="imde-textures-") as texture_dir:
            builder = _SceneBuilder(pb, client, rng, Path(texture_dir), materials)
            clearance = _CAMERA_CLEARANCE + math.sqrt(2) * _STAND_JITTER
            builder.footprints = [(x, y, clearance) for x, y in stands]
            _build_room(builder, room)
            for _ in range(int(rng.integers(1, 5))):
                _against_wall(builder, room)
            for _ in range(int(rng.integers(0, 3))):
                _table(builder, room)
            _floor_objects(builder, room)
            return [_render(pb, client, light_rng, pose, size) for pose in poses]
    finally:
        if own:
            pb.disconnect(physicsClientId=client)
