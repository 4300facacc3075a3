"""Procedural surface textures for the rendered rooms: checkers, planks, tiles, smooth noise (pure numpy).

Every texture is a seamless ``[size, size, 3]`` uint8 image drawn from a ``numpy.random.Generator``, so a
scene's look is a function of its seed. The renderer tiles them over surfaces through the uv coordinates.

Two material sets (:data:`MATERIALS`): ``"random"`` gives every surface any pattern in any colour;
``"indoor"`` gives floors, walls and ceilings the look they have in real rooms (wooden planks in warm tones,
light paint, near-white plaster), so that, as in NYU Depth V2, what a surface looks like tells what it is.
Furniture and objects stay random in both.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

TEXTURE_SIZE = 64
MATERIALS = ("random", "indoor")
"""Material sets of the room's surfaces: the ``materials`` option of the renderer and the rendered dataset."""


def _colour(rng: np.random.Generator) -> np.ndarray:
    """A random RGB colour in [0, 1], biased towards the muted tones of indoor surfaces."""
    base = rng.uniform(0.15, 0.95)
    tint = rng.uniform(-0.25, 0.25, size=3)
    return np.clip(base + tint, 0.02, 1.0)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Seamless value noise in [0, 1]: a random ``cells x cells`` grid, bilinearly upsampled with wrap-around."""
    grid = rng.uniform(0.0, 1.0, size=(cells, cells))
    coords = np.arange(size) * cells / size
    lo = np.floor(coords).astype(int)
    frac = coords - lo
    hi = (lo + 1) % cells
    rows = grid[lo] * (1 - frac)[:, None] + grid[hi] * frac[:, None]
    return rows[:, lo] * (1 - frac)[None, :] + rows[:, hi] * frac[None, :]


def _checker(rng: np.random.Generator, size: int) -> np.ndarray:
    n = int(rng.choice([2, 4, 8]))
    y, x = np.indices((size, size)) * n // size
    mask = ((x + y) % 2).astype(bool)
    return np.where(mask[..., None], _colour(rng), _colour(rng))


def _light(rng: np.random.Generator) -> np.ndarray:
    """A light, nearly grey RGB colour: wall paint and ceiling plaster."""
    return np.clip(rng.uniform(0.7, 0.95) + rng.uniform(-0.06, 0.06, size=3), 0.0, 1.0)


def _warm(rng: np.random.Generator) -> np.ndarray:
    """A brown RGB colour of random lightness: wood."""
    base = rng.uniform(0.25, 0.6)
    return np.clip(base * np.array([1.0, 0.75, 0.5]) + rng.uniform(-0.05, 0.05, size=3), 0.0, 1.0)


def _planks(rng: np.random.Generator, size: int,
            palette: Callable[[np.random.Generator], np.ndarray] = _colour) -> np.ndarray:
    n = int(rng.choice([4, 8]))
    plank = np.arange(size) * n // size
    shade = rng.uniform(0.75, 1.15, size=n)[plank]
    grain = 0.85 + 0.3 * _smooth_noise(rng, size, 16)
    gaps = (np.arange(size) % (size // n) == 0).astype(float)
    value = shade[:, None] * grain * (1 - 0.5 * gaps[:, None])
    return palette(rng) * value[..., None]


def _tiles(rng: np.random.Generator, size: int) -> np.ndarray:
    n = int(rng.choice([2, 4]))
    step = size // n
    y, x = np.indices((size, size))
    grout = (x % step < 2) | (y % step < 2)
    speckle = 0.9 + 0.2 * _smooth_noise(rng, size, 32)
    tile = _colour(rng) * speckle[..., None]
    return np.where(grout[..., None], _colour(rng) * 0.6, tile)


def _mottled(rng: np.random.Generator, size: int) -> np.ndarray:
    noise = _smooth_noise(rng, size, int(rng.choice([4, 8, 16])))
    return _colour(rng) * (1 - noise[..., None]) + _colour(rng) * noise[..., None]


def _plain(rng: np.random.Generator, size: int) -> np.ndarray:
    return _colour(rng) * (0.92 + 0.08 * _smooth_noise(rng, size, 32))[..., None]


def _wood_floor(rng: np.random.Generator, size: int) -> np.ndarray:
    return _planks(rng, size, palette=_warm)


def _paint(rng: np.random.Generator, size: int) -> np.ndarray:
    noise = _smooth_noise(rng, size, int(rng.choice([4, 8])))
    return _light(rng) * (0.85 + 0.15 * noise[..., None])


def _plaster(rng: np.random.Generator, size: int) -> np.ndarray:
    return _light(rng) * (0.95 + 0.05 * _smooth_noise(rng, size, 32))[..., None]


Pattern = Callable[[np.random.Generator, int], np.ndarray]
_PATTERNS: tuple[Pattern, ...] = (_checker, _planks, _tiles, _mottled, _plain)
_INDOOR: dict[str, Pattern] = {"floor": _wood_floor, "wall": _paint, "ceiling": _plaster}


def _to_uint8(texture: np.ndarray) -> np.ndarray:
    return (np.clip(texture, 0.0, 1.0) * 255).round().astype(np.uint8)


def random_texture(rng: np.random.Generator, size: int = TEXTURE_SIZE) -> np.ndarray:
    """Draw one texture of a random pattern.

    Args:
        rng: the scene's random generator.
        size: side in pixels (a multiple of 8 keeps the patterns seamless).

    Returns:
        ``[size, size, 3]`` uint8 image.
    """
    pattern = _PATTERNS[int(rng.integers(len(_PATTERNS)))]
    return _to_uint8(pattern(rng, size))


def surface_texture(rng: np.random.Generator, surface: str, materials: str = "random",
                    size: int = TEXTURE_SIZE) -> np.ndarray:
    """Draw the texture of one ``surface`` (``"floor"``, ``"wall"``, ``"ceiling"`` or ``"object"``).

    With ``materials="random"`` this is :func:`random_texture` for every surface (the same random numbers, so
    the same rooms as before the option existed); with ``"indoor"`` floors, walls and ceilings get their own
    patterns and palettes and objects stay random.

    Raises:
        ValueError: an unknown material set or surface.
    """
    if materials not in MATERIALS:
        raise ValueError(f"materials={materials!r}: expected one of {', '.join(MATERIALS)}")
    if surface not in (*_INDOOR, "object"):
        raise ValueError(f"surface={surface!r}: expected floor, wall, ceiling or object")
    if materials == "indoor" and surface in _INDOOR:
        return _to_uint8(_INDOOR[surface](rng, size))
    return random_texture(rng, size)
