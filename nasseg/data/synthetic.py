"""A procedural road-scene dataset with CamVid's 11 classes: the embedded default, no download.

Each image is a street seen from a car: sky, a horizon with a vanishing point, building facades
along both sides (with windows), a road with lane markings, pavements, and, placed in perspective
(smaller further away) trees, poles with signs, a fence, cars, pedestrians and bicyclists.

Colour alone is deliberately not enough to tell the classes apart, so that a network must learn
shape and context, as on CamVid:

* grey is everywhere: asphalt, concrete pavements, grey buildings, silver cars, metal poles and an
  overcast sky all draw from overlapping grey ranges;
* pavements are sometimes grass verges and trees are textured greens, olive or autumn brown;
* clothes, car paint, signs and facades draw from shared palettes;
* per-image lighting (gain, colour cast, gamma), cast shadows, shading and sensor noise move every
  class's colour around from one image to the next.

Everything is drawn in normalised coordinates (x, y in 0..1), so a seed gives the same scene at any
resolution; the splits use different seeds. Coordinates: ``y`` grows downwards, ``hz`` is the horizon
row, and ``s = (y - hz) / (1 - hz)`` is the perspective scale of a ground point (1 at the bottom).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from nasseg.data.base import DatasetInfo, SegmentationSplit, check_split
from nasseg.errors import DatasetError
from nasseg.data.camvid import CLASS_NAMES

SKY, BUILDING, POLE, ROAD, PAVEMENT, TREE, SIGN, FENCE, CAR, PEDESTRIAN, BICYCLIST = range(11)
SPLITS = ("train", "val", "test")
NATIVE_HW = (360, 480)
DEFAULTS = {"seed": 0, "train": 300, "val": 60, "test": 60}

# Shared palettes: the same colours appear on several classes on purpose.
GREYS = [(0.45, 0.45, 0.46), (0.55, 0.55, 0.53), (0.62, 0.62, 0.64), (0.35, 0.36, 0.38), (0.70, 0.69, 0.66)]
PAINTS = GREYS + [
    (0.75, 0.75, 0.75),
    (0.12, 0.12, 0.13),
    (0.60, 0.12, 0.10),
    (0.15, 0.22, 0.50),
    (0.85, 0.85, 0.82),
    (0.25, 0.35, 0.25),
    (0.55, 0.45, 0.30),
]
FACADES = GREYS + [(0.62, 0.50, 0.40), (0.55, 0.33, 0.25), (0.78, 0.72, 0.60), (0.70, 0.66, 0.62), (0.48, 0.42, 0.38)]
CLOTHES = PAINTS + [(0.70, 0.55, 0.20), (0.20, 0.20, 0.35), (0.45, 0.10, 0.30)]
FOLIAGE = [(0.20, 0.35, 0.12), (0.30, 0.42, 0.18), (0.38, 0.40, 0.20), (0.45, 0.35, 0.15), (0.25, 0.30, 0.22)]
SIGN_COLOURS = [
    (0.80, 0.10, 0.10),
    (0.10, 0.25, 0.70),
    (0.90, 0.90, 0.88),
    (0.90, 0.75, 0.10),
    (0.10, 0.45, 0.25),
    (0.15, 0.15, 0.15),
]


def info(uri: str) -> DatasetInfo:
    return DatasetInfo(uri=uri, name="synthetic", class_names=CLASS_NAMES, native_hw=NATIVE_HW)


def parse_options(options: str) -> dict[str, int]:
    """``seed=3,train=200,val=40`` -> options over the defaults; unknown keys list the valid ones."""
    values = dict(DEFAULTS)
    for item in filter(None, (p.strip() for p in options.split(","))):
        key, sep, raw = item.partition("=")
        if not sep or key not in DEFAULTS:
            raise DatasetError(f"synthetic option {item!r} is not key=value with a key among {', '.join(DEFAULTS)}")
        try:
            values[key] = int(raw)
        except ValueError:
            raise DatasetError(f"synthetic option {key}={raw!r} is not an integer") from None
        if values[key] < 0 or (key != "seed" and values[key] == 0):
            raise DatasetError(f"synthetic option {key}={raw} must be positive")
    return values


# --- the canvas: an RGB float image, its label map, and drawing in normalised coordinates -----


@dataclass
class Canvas:
    rgb: np.ndarray  # (3, H, W) float32 in 0..1: channels first, so per-pixel fields and (3, 1, 1)
    # colours broadcast along whole rows (numpy is slow when the innermost axis is only 3 long)
    label: np.ndarray  # (H, W) uint8
    rng: np.random.Generator  # pixel-level noise only, so the layout does not depend on resolution
    _grain: np.ndarray | None = None

    @property
    def h(self) -> int:
        return self.label.shape[0]

    @property
    def w(self) -> int:
        return self.label.shape[1]

    def region(self, x0: float, x1: float, y0: float, y1: float):
        """Pixel slices covering a normalised box, and its pixel-centre coordinates (or None)."""
        j0, j1 = max(0, math.floor(x0 * self.w)), min(self.w, math.ceil(x1 * self.w))
        i0, i1 = max(0, math.floor(y0 * self.h)), min(self.h, math.ceil(y1 * self.h))
        if j0 >= j1 or i0 >= i1:
            return None
        ys = ((np.arange(i0, i1, dtype=np.float32) + 0.5) / self.h)[:, None]
        xs = ((np.arange(j0, j1, dtype=np.float32) + 0.5) / self.w)[None, :]
        return (slice(i0, i1), slice(j0, j1)), ys, xs

    def paint(self, where, mask: np.ndarray | None, colour, cls: int) -> None:
        """Paint ``colour`` (an RGB triple, (3, 1, 1) or a (3, h, w) array) and ``cls`` where ``mask`` holds
        (everywhere in ``where`` when it is None: layers that fill their region skip the mask)."""
        colour = np.asarray(colour, dtype=np.float32)
        if colour.ndim == 1:
            colour = colour.reshape(3, 1, 1)
        rgb = self.rgb[(slice(None),) + tuple(where)]
        if mask is None:
            rgb[...] = colour
            self.label[where] = cls
            return
        if not mask.any():
            return
        # copyto with ``where`` writes in place without gathering the masked pixels (much faster)
        np.copyto(rgb, colour, where=mask)
        np.copyto(self.label[where], np.uint8(cls), where=mask)

    def min_half(self, half: float, axis: str = "x") -> float:
        """Thin things stay at least one pixel wide at any resolution."""
        return max(half, 0.5 / (self.w if axis == "x" else self.h))

    def noise(self, shape: tuple[int, int], cells: tuple[int, int]) -> np.ndarray:
        """Smooth value noise in -1..1: a coarse random grid resized bilinearly to ``shape``."""
        grid = self.rng.random((cells[0] + 1, cells[1] + 1), dtype=np.float32) * 2 - 1
        return np.asarray(Image.fromarray(grid, mode="F").resize((shape[1], shape[0]), Image.Resampling.BILINEAR))

    def grain(self, where, amount: float) -> np.ndarray:
        """Fine per-pixel texture: a slice of one noise field drawn per image (drawing a fresh field
        for every element was the generator's largest cost)."""
        if self._grain is None:
            self._grain = self.rng.standard_normal((self.h, self.w), dtype=np.float32)
        return self._grain[where] * amount


@dataclass
class Scene:
    """The per-image geometry every element shares."""

    hz: float  # horizon row
    vx: float  # vanishing point column
    road_l: float  # road edges where they leave the bottom row (may lie outside 0..1)
    road_r: float
    walk_l: float  # building lines at the bottom row (outside the image: the facades recede)
    walk_r: float

    def scale(self, y):
        return np.clip((y - self.hz) / (1 - self.hz), 1e-3, None)

    def at(self, x_bottom, s):
        """Column of a ground line that meets the bottom row at ``x_bottom``, at scale ``s``."""
        return self.vx + (x_bottom - self.vx) * s

    def row(self, s: float) -> float:
        return self.hz + s * (1 - self.hz)


def _jitter(rng: np.random.Generator, colour, amount: float = 0.06) -> np.ndarray:
    """A colour near ``colour``, as a (3, 1, 1) array ready to broadcast over a region."""
    jittered = np.asarray(colour, np.float32).reshape(3) + rng.normal(0, amount, 3).astype(np.float32)
    return np.clip(jittered, 0, 1).reshape(3, 1, 1)


def _pick(rng: np.random.Generator, palette) -> np.ndarray:
    return _jitter(rng, palette[rng.integers(len(palette))])


# --- background: sky, buildings, road, pavement -----------------------------------------------


def draw_sky(c: Canvas, sc: Scene, rng: np.random.Generator) -> None:
    """Blue to overcast white-grey, lighter towards the horizon, with soft clouds."""
    overcast = rng.random()
    top = (
        ((1 - overcast) * np.array([0.35, 0.52, 0.85]) + overcast * np.array([0.72, 0.74, 0.78]))
        .astype(np.float32)
        .reshape(3, 1, 1)
    )
    where, ys, _ = c.region(0, 1, 0, 1)
    t = np.clip(ys / max(sc.hz, 1e-3), 0, 1)
    colour = top * (1 - 0.35 * t) + 0.35 * 0.92 * t
    clouds = c.noise((c.h, c.w), (3, 6)) * np.float32(0.08 * (0.5 + overcast))
    c.paint(where, None, colour + clouds, SKY)


def draw_skyline(c: Canvas, sc: Scene, rng: np.random.Generator) -> None:
    """Distant buildings around the vanishing point: hazy blocks just above the horizon."""
    blocks = rng.integers(4, 10)
    edges = np.sort(rng.uniform(sc.vx - 0.35, sc.vx + 0.35, blocks + 1))
    heights = rng.uniform(0.02, 0.12, blocks) * rng.uniform(0.3, 1.0)
    haze = _jitter(rng, (0.62, 0.64, 0.68), 0.08)
    for k in range(blocks):
        if rng.random() < 0.25:
            continue  # a gap shows the sky
        found = c.region(edges[k], edges[k + 1], sc.hz - heights[k], sc.hz + 0.01)
        if found:
            where, ys, xs = found
            mask = np.ones((ys.size, xs.size), bool)
            c.paint(where, mask, _jitter(rng, haze, 0.04), BUILDING)


def draw_road(c: Canvas, sc: Scene, rng: np.random.Generator) -> None:
    """Asphalt between the two road edges, with stains, a dashed centre line and edge lines."""
    found = c.region(0, 1, sc.hz, 1)
    if not found:
        return
    where, ys, xs = found
    s = sc.scale(ys)
    left, right = sc.at(sc.road_l, s), sc.at(sc.road_r, s)
    mask = (xs >= left) & (xs <= right)
    shape = mask.shape
    base = _pick(rng, GREYS) * rng.uniform(0.7, 1.1)
    stains = c.noise(shape, (4, 8)) * 0.06
    colour = base + stains + c.grain(where, 0.03)
    c.paint(where, mask, colour, ROAD)
    # Markings are Road in CamVid's 11 classes: white or yellow, thin, dashed in depth.
    paint = _jitter(rng, (0.9, 0.9, 0.85) if rng.random() < 0.7 else (0.85, 0.75, 0.2), 0.04)
    half = np.maximum(0.006 * s, 0.5 / c.w)
    centre = sc.at(rng.uniform(0.4, 0.6) * (sc.road_r - sc.road_l) + sc.road_l, s)
    dashes = np.mod(1.0 / s * rng.uniform(0.8, 1.4) + rng.random(), 1.0) < 0.45
    c.paint(where, mask & (np.abs(xs - centre) < half) & dashes, paint, ROAD)
    if rng.random() < 0.6:
        for edge, inward in ((left, 1), (right, -1)):
            line = np.abs(xs - (edge + inward * 0.03 * s)) < half
            c.paint(where, mask & line, paint * 0.95, ROAD)


def draw_pavement(c: Canvas, sc: Scene, rng: np.random.Generator) -> None:
    """Ground outside the road: concrete slabs, brick, or a grass verge (green, like trees).

    It fills the whole ground; the road and the facades are drawn over it."""
    found = c.region(0, 1, sc.hz, 1)
    if not found:
        return
    where, ys, xs = found
    s = sc.scale(ys)
    shape = (ys.size, xs.size)
    kind = rng.random()
    if kind < 0.25:  # grass verge: noisy green, shares the foliage palette
        colour = _pick(rng, FOLIAGE) * 1.1 + c.noise(shape, (20, 40)) * 0.08 + c.grain(where, 0.05)
    else:  # slabs: a perspective grid of joints over a grey or beige base
        base = _pick(rng, GREYS + [(0.62, 0.55, 0.48), (0.55, 0.40, 0.35)])
        depth = 1.0 / s
        lateral = (xs - sc.vx) / s
        joints = (np.mod(depth * 2.0, 1.0) < 0.08) | (np.mod(lateral * 12.0, 1.0) < 0.06)
        colour = base * (1 - 0.25 * joints) + c.noise(shape, (8, 16)) * 0.05
        colour = colour + c.grain(where, 0.03)
    c.paint(where, None, colour, PAVEMENT)
    # A lighter kerb along each road edge.
    kerb = _jitter(rng, (0.7, 0.7, 0.68), 0.05)
    for edge, outward in ((sc.road_l, -1), (sc.road_r, 1)):
        e = sc.at(edge, s)
        band = (xs - e) * outward
        c.paint(where, (band > 0) & (band < 0.012 * s + 0.5 / c.w), kerb, PAVEMENT)


def draw_facade(c: Canvas, sc: Scene, rng: np.random.Generator, side: int) -> None:
    """A row of buildings along one side (side -1 left, +1 right) receding to the vanishing point.

    At column x the facade is at scale ``s_col``; its base sits on the building line and its top
    ``height * s_col`` above the horizon. Buildings are segments in depth with their own height and
    colour, and windows on a grid in the facade's own (depth, height) coordinates.
    """
    line = sc.walk_l if side < 0 else sc.walk_r
    segments = 10
    seg_len = rng.uniform(0.6, 1.6)
    heights = np.append(rng.uniform(0.25, 1.1, segments) * (1 - sc.hz) / 0.6, 0.0).astype(np.float32)
    heights[:segments][rng.random(segments) < 0.12] = 0.0  # an empty lot
    heights[int(rng.integers(3, segments)) :] = 0.0  # the row ends somewhere
    colours = np.array([_pick(rng, FACADES).reshape(3) for _ in range(segments + 1)], np.float32)
    light = rng.uniform(0.7, 1.0) if side < 0 else rng.uniform(0.85, 1.15)  # sunlit vs shaded side
    cols, rows = rng.uniform(2.0, 5.0), rng.uniform(4.0, 8.0)
    fill_u, fill_v = rng.uniform(0.35, 0.6), rng.uniform(0.4, 0.65)
    glass = _jitter(rng, (0.15, 0.18, 0.25) if rng.random() < 0.6 else (0.55, 0.6, 0.65), 0.05)
    # Only the band the facade can cover: from its highest roof to its base at the image edge.
    x0, x1 = (0.0, sc.vx) if side < 0 else (sc.vx, 1.0)
    s_edge = min(1.0, ((x0 if side < 0 else x1) - sc.vx) / (line - sc.vx))
    found = c.region(x0, x1, sc.hz - float(heights.max()) * s_edge, sc.row(s_edge))
    if not found:
        return
    where, ys, xs = found
    s_col = np.clip((xs - sc.vx) / (line - sc.vx), 1e-3, 1.0)
    depth = 1.0 / s_col
    seg = np.minimum(((depth - 1.0) / seg_len).astype(int), segments)  # ``segments`` = beyond the row
    base_y = sc.row(s_col)
    top_y = sc.hz - heights[seg] * s_col
    mask = (ys >= top_y) & (ys <= base_y)
    shape = mask.shape
    colour = colours.T[:, seg] * light + c.noise(shape, (10, 10)) * 0.04 + c.grain(where, 0.02)
    c.paint(where, mask, colour, BUILDING)
    # Windows: periodic in depth and in height above the ground, none on the ground floor.
    height = (base_y - ys) / (s_col * (1 - sc.hz))
    windows = (np.mod(depth * cols, 1.0) < fill_u) & (np.mod(height * rows, 1.0) < fill_v) & (height > 0.2)
    c.paint(where, mask & windows & (ys < base_y - 0.002), glass * light, BUILDING)


# --- objects, placed on the ground in perspective ---------------------------------------------


def draw_tree(c: Canvas, sc: Scene, rng: np.random.Generator, x: float, s: float) -> None:
    """A trunk and a crown of a few overlapping blobs, filled with high-frequency leaf texture."""
    y = sc.row(s)
    size = rng.uniform(0.35, 0.8) * s
    trunk_half = c.min_half(0.012 * s)
    found = c.region(x - trunk_half, x + trunk_half, y - size * 0.6, y)
    if found:
        where, ys, xs = found
        c.paint(where, np.ones((ys.size, xs.size), bool), _jitter(rng, (0.30, 0.22, 0.15)), TREE)
    cy, r = y - size * 0.75, size * 0.35
    found = c.region(x - 2 * r, x + 2 * r, cy - 1.6 * r, cy + 1.2 * r)
    if not found:
        return
    where, ys, xs = found
    aspect = c.w / c.h  # circles in pixels, not in normalised units
    mask = np.zeros((ys.size, xs.size), bool)
    for _ in range(rng.integers(3, 6)):
        bx, by = x + rng.uniform(-r, r) / aspect, cy + rng.uniform(-r, 0.5 * r)
        br = r * rng.uniform(0.5, 0.9)
        mask |= ((xs - bx) * aspect) ** 2 + (ys - by) ** 2 < br**2
    leaves = c.noise(mask.shape, (max(2, ys.size // 2), max(2, xs.size // 2)))
    colour = _pick(rng, FOLIAGE) * (1 + 0.35 * leaves) + c.grain(where, 0.04)
    c.paint(where, mask, colour, TREE)


def draw_pole(c: Canvas, sc: Scene, rng: np.random.Generator, x: float, s: float) -> None:
    """A thin metal pole; most carry a sign or a traffic light (SignSymbol) near the top."""
    y = sc.row(s)
    height = rng.uniform(0.3, 0.55) * s
    half = c.min_half(0.006 * s)
    found = c.region(x - half, x + half, y - height, y)
    if found:
        where, ys, xs = found
        shade = 1 - 0.3 * np.abs(xs - x) / half
        colour = _pick(rng, GREYS[:4] + [(0.2, 0.2, 0.2)]) * shade
        c.paint(where, np.ones((ys.size, xs.size), bool), colour, POLE)
    if rng.random() < 0.7:
        draw_sign(c, rng, x, y - height, s)


def draw_sign(c: Canvas, rng: np.random.Generator, x: float, top: float, s: float) -> None:
    """A round, square or triangular plate with a border, or a traffic-light box with one lamp lit."""
    r = c.min_half(0.035 * s, "y")
    rx = r * c.h / c.w
    found = c.region(x - rx, x + rx, top - 0.2 * r, top + 2.2 * r)
    if not found:
        return
    where, ys, xs = found
    u, v = (xs - x) / rx, (ys - top - r) / r  # -1..1 plate coordinates
    if rng.random() < 0.25:  # traffic light: a tall dark box
        v = (ys - top) / (2 * r) * 2 - 1
        mask = (np.abs(u) < 0.5) & (np.abs(v) < 1.0)
        lamp = (u**2 + (np.mod(v + 1, 2 / 3) * 3 - 1) ** 2 < 0.5) & (np.abs(u) < 0.5)
        c.paint(where, mask, _jitter(rng, (0.12, 0.12, 0.12)), SIGN)
        c.paint(where, mask & lamp, SIGN_COLOURS[rng.integers(0, 5)], SIGN)
        return
    shape = rng.integers(3)
    if shape == 0:
        dist = np.sqrt(u**2 + v**2)
    elif shape == 1:
        dist = np.maximum(np.abs(u), np.abs(v))
    else:  # triangle, apex up: inside when v < 1 and |u| < (v + 1) / 2
        dist = np.maximum(v, np.abs(u) - (v + 1) / 2 + 1)
    mask = dist < 1.0
    face, border = rng.choice(len(SIGN_COLOURS), 2, replace=False)
    c.paint(where, mask, _jitter(rng, SIGN_COLOURS[border], 0.04), SIGN)
    c.paint(where, dist < 0.7, _jitter(rng, SIGN_COLOURS[face], 0.04), SIGN)


def draw_fence(c: Canvas, sc: Scene, rng: np.random.Generator, side: int) -> None:
    """A low fence along one building line: two rails and vertical slats, open between the slats."""
    line = sc.walk_l if side < 0 else sc.walk_r
    inset = rng.uniform(0.1, 0.4)  # between the building line and the road edge
    road = sc.road_l if side < 0 else sc.road_r
    fline = line + (road - line) * inset
    x0, x1 = (0.0, sc.vx) if side < 0 else (sc.vx, 1.0)
    found = c.region(x0, x1, sc.hz - 0.3, 1)
    if not found:
        return
    where, ys, xs = found
    s_col = np.clip((xs - sc.vx) / (fline - sc.vx), 1e-3, 1.0)
    near, far = rng.uniform(0.5, 1.0), rng.uniform(0.05, 0.3)
    base_y = sc.row(s_col)
    height = rng.uniform(0.08, 0.18) * s_col
    up = (base_y - ys) / height  # 0 at the ground, 1 at the top
    inside = (up >= 0) & (up <= 1) & (s_col <= near) & (s_col >= far)
    rails = (np.abs(up - 0.85) < 0.08) | (np.abs(up - 0.35) < 0.08)
    slats = np.mod(1.0 / s_col * rng.uniform(6, 14), 1.0) < 0.5
    colour = _pick(rng, GREYS + [(0.45, 0.32, 0.2), (0.2, 0.35, 0.25)])
    c.paint(where, inside & (rails | slats), colour * (0.9 + 0.2 * np.clip(up, 0, 1)), FENCE)


def draw_car(c: Canvas, sc: Scene, rng: np.random.Generator, x: float, s: float) -> None:
    """A car from behind or in front: body, narrower cabin with dark glass, wheels and lamps."""
    y = sc.row(s)
    half_w, height = rng.uniform(0.09, 0.13) * s, rng.uniform(0.13, 0.2) * s * c.w / c.h * 0.75
    found = c.region(x - half_w, x + half_w, y - height, y + 0.01 * s)
    if not found:
        return
    where, ys, xs = found
    u = (xs - x) / half_w  # -1..1 across
    v = (y - ys) / height  # 0 at the ground, 1 at the roof
    body = (np.abs(u) <= 1) & (v >= 0.12) & (v <= 0.55)
    cabin = (np.abs(u) <= 0.82 - 0.25 * (v - 0.55) / 0.45) & (v > 0.55) & (v <= 1)
    wheels = (np.abs(np.abs(u) - 0.7) < 0.2) & (v >= -0.02) & (v < 0.2)
    paint = _pick(rng, PAINTS)
    shade = 0.8 + 0.3 * np.clip(v, 0, 1)
    c.paint(where, body | cabin, paint * shade + c.grain(where, 0.02), CAR)
    c.paint(
        where,
        cabin & (np.abs(u) < 0.7 - 0.25 * (v - 0.55) / 0.45) & (v < 0.93),
        _jitter(rng, (0.12, 0.14, 0.18), 0.04),
        CAR,
    )
    c.paint(where, wheels, (0.06, 0.06, 0.06), CAR)
    lamps = (np.abs(np.abs(u) - 0.78) < 0.14) & (np.abs(v - 0.45) < 0.05)
    c.paint(where, lamps, (0.8, 0.1, 0.08) if rng.random() < 0.6 else (0.9, 0.9, 0.8), CAR)


def _person(c: Canvas, rng: np.random.Generator, x: float, y: float, height: float):
    """Pixel masks of a standing person's head, torso and legs (shared by pedestrian and rider)."""
    half = height * 0.14 * c.h / c.w
    found = c.region(x - half * 1.5, x + half * 1.5, y - height, y)
    if not found:
        return None
    where, ys, xs = found
    u, v = (xs - x) / half, (y - ys) / height  # v: 0 at the feet, 1 at the top of the head
    head = (u * 0.14) ** 2 + (v - 0.92) ** 2 < 0.07**2  # a circle in pixels
    torso = (np.abs(u) < 0.9 - 0.2 * (0.82 - v) / 0.35) & (v > 0.47) & (v < 0.84)
    stride = rng.uniform(0.0, 0.5)
    legs = (np.abs(np.abs(u) - 0.35 - stride * (0.47 - v)) < 0.28) & (v <= 0.47) & (v >= 0)
    return where, head, torso, legs


def draw_pedestrian(c: Canvas, sc: Scene, rng: np.random.Generator, x: float, s: float) -> None:
    """A person on the pavement: skin or hair head, a torso and legs in random clothes."""
    parts = _person(c, rng, x, sc.row(s), rng.uniform(0.2, 0.3) * s)
    if parts is None:
        return
    where, head, torso, legs = parts
    c.paint(where, legs, _pick(rng, CLOTHES) * 0.8, PEDESTRIAN)
    c.paint(where, torso, _pick(rng, CLOTHES), PEDESTRIAN)
    skin_or_hair = (0.75, 0.6, 0.5) if rng.random() < 0.6 else (0.3, 0.22, 0.18)
    c.paint(where, head, _jitter(rng, skin_or_hair), PEDESTRIAN)


def draw_bicyclist(c: Canvas, sc: Scene, rng: np.random.Generator, x: float, s: float) -> None:
    """A rider on a bicycle seen from the side: two wheel rings, a frame, and a person above it."""
    y = sc.row(s)
    r = 0.05 * s  # wheel radius in units of image height
    rx = r * c.h / c.w
    found = c.region(x - 3.2 * rx, x + 3.2 * rx, y - 2 * r, y)
    if found:
        where, ys, xs = found
        frame_colour = _pick(rng, PAINTS)
        mask = np.zeros((ys.size, xs.size), bool)
        for cx in (x - 1.8 * rx, x + 1.8 * rx):
            d = np.sqrt(((xs - cx) / rx) ** 2 + ((ys - (y - r)) / r) ** 2)
            mask |= (d < 1.0) & (d > 1.0 - max(0.18, 1.5 / (r * c.h)))
        frame = (np.abs(ys - (y - 1.3 * r)) < c.min_half(0.08 * r, "y")) & (np.abs(xs - x) < 1.8 * rx)
        c.paint(where, mask, (0.08, 0.08, 0.08), BICYCLIST)
        c.paint(where, frame, frame_colour, BICYCLIST)
    parts = _person(c, rng, x, y - 1.1 * r, rng.uniform(0.16, 0.22) * s)
    if parts is not None:
        where, head, torso, legs = parts
        c.paint(where, legs, _pick(rng, CLOTHES) * 0.8, BICYCLIST)
        c.paint(where, torso, _pick(rng, CLOTHES), BICYCLIST)
        c.paint(where, head, _pick(rng, CLOTHES + [(0.75, 0.6, 0.5)]), BICYCLIST)  # helmet or face


# --- the scene ------------------------------------------------------------------------------


def _place_objects(sc: Scene, rng: np.random.Generator) -> list[tuple[float, str, float]]:
    """(scale, kind, column) for every object; scales are drawn so that far objects are common."""
    objects = []

    def side_walk_x(s: float) -> float:  # a column on one of the pavements at scale s
        left = rng.random() < 0.5
        road, line = (sc.road_l, sc.walk_l) if left else (sc.road_r, sc.walk_r)
        return sc.at(road + (line - road) * rng.uniform(0.1, 0.7), s)

    def lane_x(s: float, edge: bool = False) -> float:
        t = rng.uniform(0.05, 0.2) if edge else rng.uniform(0.2, 0.8)
        if edge and rng.random() < 0.5:
            t = 1 - t
        return sc.at(sc.road_l + (sc.road_r - sc.road_l) * t, s)

    counts = {
        "tree": rng.integers(0, 9),
        "pole": rng.integers(1, 7),
        "car": rng.integers(0, 6),
        "pedestrian": rng.integers(0, 6),
        "bicyclist": rng.integers(0, 3),
    }
    for kind, n in counts.items():
        for _ in range(int(n)):
            s = float(rng.uniform(0.08, 1.0) ** 1.5)
            x = lane_x(s, kind == "bicyclist") if kind in ("car", "bicyclist") else side_walk_x(s)
            objects.append((s, kind, float(x)))
    return sorted(objects)  # painter's order: far (small s) first


DRAW = {
    "tree": draw_tree,
    "pole": draw_pole,
    "car": draw_car,
    "pedestrian": draw_pedestrian,
    "bicyclist": draw_bicyclist,
}


def _lighting(c: Canvas, sc: Scene, rng: np.random.Generator) -> np.ndarray:
    """Per-image exposure, colour cast and gamma, cast shadows on the ground, vignetting, noise;
    returns the final uint8 image."""
    found = c.region(0, 1, sc.hz, 1)
    if found and rng.random() < 0.6:  # shadow bands across the ground (from off-screen buildings)
        where, ys, xs = found
        s = sc.scale(ys)
        phase, freq, tilt = rng.random(), rng.uniform(1.0, 3.0), rng.uniform(-2, 2)
        stripes = np.mod(1.0 / s * freq * 0.3 + (xs - sc.vx) / s * tilt * 0.1 + phase, 1.0)
        band = stripes < rng.uniform(0.2, 0.6)
        ground = (c.label[where] == ROAD) | (c.label[where] == PAVEMENT)
        band &= ground & (s > 0.08)  # shadows fall on the ground; near the horizon they would alias
        c.rgb[(slice(None),) + tuple(where)] *= np.where(band, rng.uniform(0.45, 0.7), 1.0).astype(np.float32)
    ys = ((np.arange(c.h, dtype=np.float32) + 0.5) / c.h)[:, None]
    xs = ((np.arange(c.w, dtype=np.float32) + 0.5) / c.w)[None, :]
    vignette = 1 - rng.uniform(0.0, 0.35) * ((xs - 0.5) ** 2 + (ys - 0.5) ** 2)
    gain = (rng.uniform(0.6, 1.3) * rng.uniform(0.85, 1.15, 3)).astype(np.float32).reshape(3, 1, 1)
    noise = c.rng.standard_normal((c.h, c.w), dtype=np.float32) * np.float32(rng.uniform(0.01, 0.04))
    # In place, and gamma plus the conversion to uint8 through one 1024-entry table: full-frame
    # temporaries and a per-pixel power were the slowest steps of the generator.
    rgb = c.rgb
    rgb *= vignette
    rgb *= gain
    rgb += noise
    np.clip(rgb, 0, 1, out=rgb)
    rgb *= 1023
    curve = np.linspace(0, 1, 1024) ** rng.uniform(0.75, 1.35) * 255 + 0.5
    return curve.astype(np.uint8)[rgb.astype(np.int16)]


def render(seed_key: tuple[int, ...], hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """One image (3, H, W) uint8 and its labels (H, W) uint8, deterministic in ``seed_key``."""
    layout = np.random.default_rng(list(seed_key) + [0])
    c = Canvas(np.zeros((3, *hw), np.float32), np.zeros(hw, np.uint8), np.random.default_rng(list(seed_key) + [1]))
    vx = layout.uniform(0.35, 0.65)
    sc = Scene(
        hz=layout.uniform(0.35, 0.5),
        vx=vx,
        road_l=layout.uniform(-0.35, 0.2),
        road_r=layout.uniform(0.8, 1.35),
        walk_l=layout.uniform(-1.0, -0.3),
        walk_r=layout.uniform(1.3, 2.0),
    )
    draw_sky(c, sc, layout)
    draw_skyline(c, sc, layout)
    draw_pavement(c, sc, layout)  # the facades then cover the ground beyond the building lines
    draw_facade(c, sc, layout, -1)
    draw_facade(c, sc, layout, +1)
    draw_road(c, sc, layout)
    if layout.random() < 0.5:
        draw_fence(c, sc, layout, -1 if layout.random() < 0.5 else 1)
    for s, kind, x in _place_objects(sc, layout):
        DRAW[kind](c, sc, layout, x, s)
    return _lighting(c, sc, layout), c.label


def load(uri: str, options: dict[str, int], split: str, hw: tuple[int, int] | None) -> SegmentationSplit:
    """Generate a split: image ``i`` of split ``k`` is seeded by (seed, k, i), so splits never share
    a scene and a split's first images do not change when its size does."""
    check_split(split, SPLITS)
    hw = hw or NATIVE_HW
    code = SPLITS.index(split)
    n = options[split]
    images = np.empty((n, 3, *hw), np.uint8)
    labels = np.empty((n, *hw), np.uint8)

    def work(i: int) -> None:
        images[i], labels[i] = render((options["seed"], code, i), hw)

    # numpy releases the GIL inside its larger array operations, so threads still overlap some work
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        list(pool.map(work, range(n)))
    return SegmentationSplit(
        info=info(uri),
        split=split,
        images=torch.from_numpy(images),
        labels=torch.from_numpy(labels),
        files=tuple(f"synthetic/{split}/{i:05d}" for i in range(n)),
    )
