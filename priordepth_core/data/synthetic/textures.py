"""Texture library of the synthetic scenes: scikit-image's CC0 photos plus procedural patterns, all tileable.

Every surface of a scene samples one layer of a single texture array, tinted per object, so photometric losses and
keypoint matchers find texture everywhere (no large flat regions). The library itself is fixed (built from
``LIBRARY_SEED``); scenes vary by choosing layers, tints and texture offsets from their own seed.

Tileability matters because layers repeat across large surfaces: procedural noise is shaped in the Fourier domain
(periodic by construction) and the photographs are mirror-tiled.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
import skimage.data

TEXTURE_SIZE = 512
LIBRARY_SEED = 20240601

# Layer order of the texture array; scenes refer to layers by name.
LAYERS = (
    "road", "sidewalk", "grass", "facade_brick", "facade_plaster", "facade_concrete", "car_paint", "car_glass",
    "bark", "foliage", "metal", "wood_floor", "wallpaper", "ceiling", "wood", "books", "poster_0", "poster_1",
    "poster_2", "poster_3", "carpet", "concrete", "cardboard", "clouds",
)
LAYER_INDEX = {name: index for index, name in enumerate(LAYERS)}

# Road texture geometry: one texture repeat spans the full road width across (u) and this length along (v).
ROAD_HALF_WIDTH_M = 5.5
ROAD_REPEAT_LENGTH_M = 12.0
LANE_LINE_OFFSETS_M = (-3.5, 3.5)  # solid lines between the driving lanes and the parking lanes
LANE_LINE_WIDTH_M = 0.15


def spectral_noise(rng: np.random.Generator, size: int, beta: float, anisotropy: tuple[float, float] = (1.0, 1.0)
                   ) -> np.ndarray:
    """(size, size) periodic noise in [0, 1] with a 1/f^beta power spectrum; ``anisotropy`` stretches it (y, x)."""
    white = rng.standard_normal((size, size))
    fy = np.fft.fftfreq(size)[:, None] * anisotropy[0]
    fx = np.fft.fftfreq(size)[None, :] * anisotropy[1]
    radius = np.sqrt(fx**2 + fy**2)
    radius[0, 0] = 1.0
    noise = np.real(np.fft.ifft2(np.fft.fft2(white) * radius ** (-beta / 2.0)))
    noise -= noise.min()
    return noise / noise.max()


def mirror_tile(gray: np.ndarray, size: int) -> np.ndarray:
    """Make a photo tileable: shrink it to half the size and mirror it into the four quadrants; returns [0, 1]."""
    half = cv2.resize(gray, (size // 2, size // 2), interpolation=cv2.INTER_AREA).astype(np.float64) / 255.0
    top = np.concatenate([half, half[:, ::-1]], axis=1)
    return np.concatenate([top, top[::-1]], axis=0)


def colorize(gray: np.ndarray, dark: tuple[float, float, float], bright: tuple[float, float, float]) -> np.ndarray:
    """(H, W) in [0, 1] -> (H, W, 3): linear ramp between two RGB colours."""
    dark_rgb, bright_rgb = np.asarray(dark), np.asarray(bright)
    return dark_rgb + gray[..., None] * (bright_rgb - dark_rgb)


def _stretch(gray: np.ndarray) -> np.ndarray:
    low, high = np.percentile(gray, [1, 99])
    return np.clip((gray - low) / (high - low), 0.0, 1.0)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    coords = (np.arange(size) + 0.5) / size
    return np.meshgrid(coords, coords, indexing="ij")  # v (rows), u (columns) in [0, 1)


def _road(rng, size):
    gravel = _stretch(mirror_tile(skimage.data.gravel(), size))
    base = 0.55 * gravel + 0.45 * spectral_noise(rng, size, 2.2)
    rgb = colorize(base, (0.16, 0.16, 0.17), (0.52, 0.51, 0.50))
    v, u = _grid(size)
    lateral = (u - 0.5) * 2 * ROAD_HALF_WIDTH_M
    along = v * ROAD_REPEAT_LENGTH_M
    wear = 0.75 + 0.25 * spectral_noise(rng, size, 1.5)
    paint = np.zeros_like(u, dtype=bool)
    for offset in LANE_LINE_OFFSETS_M:
        paint |= np.abs(lateral - offset) < LANE_LINE_WIDTH_M / 2
    paint |= (np.abs(lateral) < LANE_LINE_WIDTH_M / 2) & ((along % 6.0) < 3.0)  # dashed centre line
    for edge in (-ROAD_HALF_WIDTH_M + 0.1, ROAD_HALF_WIDTH_M - 0.1):  # dark gutters along the kerbs
        rgb[np.abs(lateral - edge) < 0.12] *= 0.6
    rgb[paint] = (0.92 * wear[paint])[:, None] * np.array([1.0, 0.98, 0.9])
    return rgb


def _paving(rng, size, slabs, color_dark, color_bright, joint=0.025):
    v, u = _grid(size)
    slab_v, slab_u = np.floor(v * slabs).astype(int), np.floor(u * slabs * 0.5 + 0.5 * (np.floor(v * slabs) % 2))
    slab_u = slab_u.astype(int) % (slabs // 2)
    tone = rng.uniform(0.75, 1.15, (slabs, slabs // 2))[slab_v, slab_u]
    base = 0.6 * spectral_noise(rng, size, 2.0) + 0.4 * _stretch(mirror_tile(skimage.data.gravel(), size))
    rgb = colorize(base, color_dark, color_bright) * tone[..., None]
    frac_v, frac_u = (v * slabs) % 1.0, (u * slabs * 0.5 + 0.5 * (np.floor(v * slabs) % 2)) % 1.0
    joints = (np.minimum(frac_v, 1 - frac_v) < joint * 2) | (np.minimum(frac_u, 1 - frac_u) < joint)
    rgb[joints] *= 0.45
    return rgb


def _windows(rng, size, base_rgb):
    """One storey x one bay per repeat: a window with a light frame on the facade material."""
    v, u = _grid(size)
    glass = (np.abs(u - 0.5) < 0.22) & (v > 0.22) & (v < 0.78)
    frame = (np.abs(u - 0.5) < 0.26) & (v > 0.18) & (v < 0.82) & ~glass
    mullion = glass & ((np.abs(u - 0.5) < 0.012) | (np.abs(v - 0.45) < 0.012))
    reflection = spectral_noise(rng, size, 2.6, anisotropy=(1.0, 3.0))
    rgb = base_rgb.copy()
    rgb[glass] = colorize(reflection, (0.08, 0.11, 0.15), (0.45, 0.55, 0.65))[glass]
    rgb[frame | mullion] = np.array([0.85, 0.84, 0.80]) * (0.8 + 0.2 * reflection[frame | mullion, None])
    rgb[(v > 0.82) & (v < 0.86)] *= 0.7  # sill shadow
    return rgb


def _wood(rng, size, planks, dark, bright):
    v, u = _grid(size)
    warp = spectral_noise(rng, size, 3.0)
    grain = 0.5 + 0.5 * np.sin(2 * np.pi * (v * planks * 9 + 3.0 * warp))
    plank = np.floor(v * planks).astype(int)
    tone = rng.uniform(0.8, 1.2, planks)[plank]
    base = 0.55 * grain + 0.45 * spectral_noise(rng, size, 1.8, anisotropy=(4.0, 0.5))
    rgb = colorize(base, dark, bright) * tone[..., None]
    seams = np.minimum((v * planks) % 1.0, 1 - (v * planks) % 1.0) < 0.02
    offsets = rng.uniform(0, 1, planks)[plank]
    seams |= np.minimum((u + offsets) % 0.5, 0.5 - (u + offsets) % 0.5) < 0.004
    rgb[seams] *= 0.5
    return rgb


def _books(rng, size):
    v, u = _grid(size)
    rows = 4
    rgb = np.zeros((size, size, 3))
    boards = np.minimum((v * rows) % 1.0, 1 - (v * rows) % 1.0) < 0.05
    for row in range(rows):
        rows_mask = (v * rows >= row) & (v * rows < row + 1)
        edges = np.cumsum(rng.uniform(0.012, 0.05, 80))
        edges = edges[edges < 1.0]
        colors = rng.uniform(0.1, 0.9, (len(edges) + 1, 3))
        heights = rng.uniform(0.55, 0.95, len(edges) + 1)
        book = np.searchsorted(edges, u[0])
        top = (row + 1 - heights[book]) / rows
        column_rgb = colors[book]
        mask = rows_mask & (v >= top[None, :])
        rgb[mask] = np.broadcast_to(column_rgb[None, :, :], rgb.shape)[mask]
        rgb[rows_mask & ~mask] = 0.12
        spine_lines = np.abs(((v * rows * 7) % 1.0) - 0.5) < 0.04
        rgb[mask & spine_lines] *= 0.6
    rgb *= (0.75 + 0.25 * spectral_noise(rng, size, 1.5))[..., None]
    rgb[boards] = colorize(spectral_noise(rng, size, 2.0), (0.35, 0.22, 0.12), (0.6, 0.42, 0.25))[boards]
    return rgb


def _poster(rng, size):
    v, u = _grid(size)
    rgb = colorize(spectral_noise(rng, size, 1.2), rng.uniform(0.2, 0.6, 3), rng.uniform(0.6, 1.0, 3))
    for _ in range(14):
        color = rng.uniform(0.0, 1.0, 3)
        if rng.random() < 0.5:
            u0, v0 = rng.uniform(0.05, 0.75, 2)
            w, h = rng.uniform(0.08, 0.35, 2)
            mask = (u > u0) & (u < u0 + w) & (v > v0) & (v < v0 + h)
        else:
            cu, cv, r = *rng.uniform(0.15, 0.85, 2), rng.uniform(0.05, 0.2)
            mask = (u - cu) ** 2 + (v - cv) ** 2 < r * r
        rgb[mask] = color
    text = (v > 0.8) & (v < 0.94) & (u > 0.08) & (u < 0.92)
    lines = ((v * 60) % 1.0 < 0.45) & (spectral_noise(rng, size, 0.6, anisotropy=(8.0, 1.0)) > 0.45)
    rgb[text & lines] = 0.05
    border = (np.minimum(u, 1 - u) < 0.025) | (np.minimum(v, 1 - v) < 0.025)
    rgb[border] = 0.95
    return rgb


def _clouds(rng, size):
    noise = spectral_noise(rng, size, 3.2)
    cover = np.clip((noise - 0.45) * 3.0, 0.0, 1.0)
    return colorize(cover, (0.36, 0.55, 0.85), (0.97, 0.97, 0.98))


def _build_layer(name: str, rng: np.random.Generator, size: int) -> np.ndarray:
    noise = spectral_noise(rng, size, 2.0)
    if name == "road":
        return _road(rng, size)
    if name == "sidewalk":
        return _paving(rng, size, 8, (0.38, 0.37, 0.35), (0.78, 0.76, 0.72))
    if name == "grass":
        return colorize(_stretch(mirror_tile(skimage.data.grass(), size)), (0.08, 0.18, 0.04), (0.55, 0.72, 0.3))
    if name == "facade_brick":
        brick = colorize(_stretch(mirror_tile(skimage.data.brick(), size)), (0.3, 0.12, 0.08), (0.85, 0.5, 0.38))
        return _windows(rng, size, brick)
    if name == "facade_plaster":
        plaster = colorize(0.7 * noise + 0.3 * spectral_noise(rng, size, 0.8), (0.6, 0.56, 0.5), (0.95, 0.92, 0.86))
        return _windows(rng, size, plaster)
    if name == "facade_concrete":
        concrete = _paving(rng, size, 4, (0.45, 0.45, 0.46), (0.8, 0.8, 0.82), joint=0.01)
        return _windows(rng, size, concrete)
    if name == "car_paint":
        v, _ = _grid(size)
        rgb = colorize(0.4 * noise + 0.6, (0.5, 0.5, 0.5), (1.0, 1.0, 1.0))
        rgb[np.abs(v - 0.55) < 0.01] *= 0.4  # panel seam
        rgb[v > 0.85] *= 0.35  # dark sill / wheels band
        return rgb
    if name == "car_glass":
        return colorize(spectral_noise(rng, size, 2.8, anisotropy=(1.0, 4.0)), (0.05, 0.07, 0.1), (0.5, 0.6, 0.7))
    if name == "bark":
        return colorize(spectral_noise(rng, size, 2.0, anisotropy=(0.15, 2.0)), (0.12, 0.08, 0.05), (0.5, 0.38, 0.25))
    if name == "foliage":
        blobs = 0.6 * spectral_noise(rng, size, 1.4) + 0.4 * _stretch(mirror_tile(skimage.data.grass(), size))
        return colorize(blobs, (0.03, 0.12, 0.02), (0.45, 0.7, 0.2))
    if name == "metal":
        return colorize(spectral_noise(rng, size, 1.8, anisotropy=(0.2, 2.0)), (0.3, 0.31, 0.33), (0.7, 0.72, 0.75))
    if name == "wood_floor":
        return _wood(rng, size, 6, (0.3, 0.18, 0.09), (0.72, 0.52, 0.32))
    if name == "wallpaper":
        v, u = _grid(size)
        pattern = 0.5 + 0.5 * np.sin(2 * np.pi * 6 * (u + v)) * np.sin(2 * np.pi * 6 * (u - v))
        return colorize(0.45 * pattern + 0.55 * noise, (0.55, 0.55, 0.52), (0.95, 0.94, 0.9))
    if name == "ceiling":
        return _paving(rng, size, 4, (0.65, 0.65, 0.63), (0.95, 0.95, 0.93), joint=0.012)
    if name == "wood":
        return _wood(rng, size, 3, (0.25, 0.14, 0.07), (0.62, 0.42, 0.24))
    if name == "books":
        return _books(rng, size)
    if name.startswith("poster_"):
        return _poster(rng, size)
    if name == "carpet":
        gravel = _stretch(mirror_tile(skimage.data.gravel(), size))
        return colorize(0.6 * gravel + 0.4 * noise, (0.35, 0.3, 0.3), (0.85, 0.8, 0.75))
    if name == "concrete":
        return colorize(0.5 * _stretch(mirror_tile(skimage.data.gravel(), size)) + 0.5 * noise,
                        (0.35, 0.35, 0.35), (0.75, 0.75, 0.74))
    if name == "cardboard":
        v, _ = _grid(size)
        rgb = colorize(spectral_noise(rng, size, 1.6), (0.45, 0.32, 0.18), (0.8, 0.62, 0.4))
        rgb[np.abs(v - 0.5) < 0.05] = colorize(noise, (0.6, 0.58, 0.5), (0.85, 0.83, 0.78))[np.abs(v - 0.5) < 0.05]
        return rgb
    if name == "clouds":
        return _clouds(rng, size)
    raise ValueError(f"unknown texture layer {name!r}; known: {', '.join(LAYERS)}")


@lru_cache(maxsize=2)
def texture_library(size: int = TEXTURE_SIZE) -> np.ndarray:
    """All layers as one array.

    Args:
        size: edge length in pixels of every (square) layer.

    Returns:
        (len(LAYERS), size, size, 3) uint8 RGB, row 0 = texture coordinate v = 0. Read-only (cached).
    """
    layers = []
    for index, name in enumerate(LAYERS):
        rng = np.random.default_rng([LIBRARY_SEED, index])
        layers.append(np.clip(_build_layer(name, rng, size), 0.0, 1.0))
    library = np.round(np.stack(layers) * 255.0).astype(np.uint8)
    library.flags.writeable = False
    return library
