"""Procedural scenes made of textured quads and yaw-rotated boxes: a KITTI-like street and a TUM-like room.

World frame: metres, z up (gravity along -z). A scene is built around the camera path it will be filmed from, so
that every object keeps a clearance from the camera: the street's road follows the path (the camera drives in the
right lane) and the room is sized to contain it; objects that would come too close to any camera position are not
placed. :func:`camera_clearance` checks the result with exact point-to-geometry distances.

Only two primitive kinds exist so that the numpy ray caster (``raycast.py``) can serve as an exact oracle:
``Quad`` (four coplanar corners, drawn and ray-cast as the triangles (0, 1, 2) and (0, 2, 3)) and ``Box``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .textures import LAYER_INDEX, ROAD_HALF_WIDTH_M, ROAD_REPEAT_LENGTH_M

SCENES = ("street", "room")

CAMERA_HEIGHT_M = 1.65  # KITTI's colour cameras above the road
LANE_OFFSET_M = 1.75  # camera to road centreline (driving in the right lane)
SIDEWALK_WIDTH_M = 3.0
KERB_HEIGHT_M = 0.12
STREET_CLEARANCE_M = 1.0  # minimum camera-to-object distance when placing street objects
ROOM_CLEARANCE_M = 0.35
ROOM_WALL_MARGIN_M = 1.0  # the room is at least this much larger than the camera path on every side


@dataclass(frozen=True)
class Quad:
    """A planar quadrilateral.

    Attributes:
        corners: (4, 3) world points, coplanar, in order around the outline.
        uv: (4, 2) texture coordinates of the corners (1 = one texture repeat).
        layer: texture array layer (``textures.LAYER_INDEX``).
        tint: (3,) RGB multiplier of the texture.
    """

    corners: np.ndarray
    uv: np.ndarray
    layer: int
    tint: np.ndarray


@dataclass(frozen=True)
class Box:
    """A box rotated about the world z axis.

    Attributes:
        center: (3,) world position of the centre.
        half_size: (3,) half extents along the box's own x, y, z axes.
        yaw: rotation about world z (radians) of the box's x axis.
        layer: texture array layer of all faces.
        tint: (3,) RGB multiplier.
        texture_scale: metres per texture repeat on every face; face v runs downwards from the box top so that
            window rows line up with the roof.
        uv_offset: (2,) shift of the texture coordinates, to decorrelate identical objects.
    """

    center: np.ndarray
    half_size: np.ndarray
    yaw: float
    layer: int
    tint: np.ndarray
    texture_scale: float = 1.0
    uv_offset: np.ndarray = field(default_factory=lambda: np.zeros(2))

    @property
    def rotation(self) -> np.ndarray:
        """(3, 3) R_world_box."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class Lighting:
    """Lambertian shading ``albedo * (ambient + intensity * max(0, n . direction)) * white_balance``.

    Attributes:
        direction: (3,) unit vector towards the light (world frame).
        intensity: directional light strength.
        ambient: ambient light strength.
        white_balance: (3,) per-channel gain of the whole image.
    """

    direction: np.ndarray
    intensity: float
    ambient: float
    white_balance: np.ndarray


@dataclass(frozen=True)
class Scene:
    """Everything the renderer and the ray caster need.

    Attributes:
        name: ``"street"`` or ``"room"``.
        quads: planar surfaces (ground, road, walls, posters...).
        boxes: solid objects (buildings, cars, furniture...).
        lighting: per-sequence light.
        sky: whether rays that hit nothing show the sky (depth 0 = invalid, the sky is at infinity).
    """

    name: str
    quads: tuple[Quad, ...]
    boxes: tuple[Box, ...]
    lighting: Lighting
    sky: bool


def box_face_quads(box: Box) -> list[Quad]:
    """The six faces of a box as quads with texture coordinates in metres / ``texture_scale``."""
    R, h = box.rotation, box.half_size
    quads = []
    # (normal axis, sign, horizontal axis) in box coordinates; u runs along the horizontal axis, v down z.
    for axis, sign in ((0, 1), (0, -1), (1, 1), (1, -1), (2, 1), (2, -1)):
        a, b = [i for i in range(3) if i != axis]
        local = np.zeros((4, 3))
        local[:, axis] = sign * h[axis]
        local[:, a] = np.array([-1, 1, 1, -1]) * h[a]
        local[:, b] = np.array([-1, -1, 1, 1]) * h[b]
        if axis == 2:  # top/bottom: u, v along x, y
            uv = np.stack([local[:, 0] + h[0], local[:, 1] + h[1]], axis=1)
        else:  # sides: u along the horizontal axis, v from the top down
            uv = np.stack([local[:, a] + h[a], h[2] - local[:, 2]], axis=1)
        corners = local @ R.T + box.center
        quads.append(Quad(corners, uv / box.texture_scale + box.uv_offset, box.layer, box.tint))
    return quads


def _tint(rng: np.random.Generator, spread: float, base=(1.0, 1.0, 1.0)) -> np.ndarray:
    return np.clip(np.asarray(base) * rng.uniform(1.0 - spread, 1.0 + spread, 3), 0.05, 1.6)


def _rectangle_distance(points_xy: np.ndarray, center_xy: np.ndarray, yaw: float, half_xy: np.ndarray) -> np.ndarray:
    """(N,) distance in the plane from points to an oriented rectangle (0 inside)."""
    c, s = np.cos(yaw), np.sin(yaw)
    d = points_xy - center_xy
    local = np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]], axis=1)
    outside = np.maximum(np.abs(local) - half_xy, 0.0)
    return np.linalg.norm(outside, axis=1)


def _rectangles_overlap(a: Box, b: Box, margin: float = 0.0) -> bool:
    """Separating-axis test of two boxes' footprints (yaw-rotated rectangles), grown by ``margin``."""
    def axes_and_corners(box):
        R = box.rotation[:2, :2]
        signs = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]])
        corners = (signs * (box.half_size[:2] + margin)) @ R.T + box.center[:2]
        return R.T, corners

    axes_a, corners_a = axes_and_corners(a)
    axes_b, corners_b = axes_and_corners(b)
    for axis in np.concatenate([axes_a, axes_b]):
        pa, pb = corners_a @ axis, corners_b @ axis
        if pa.max() < pb.min() or pb.max() < pa.min():
            return False
    return True


def point_box_distance(points: np.ndarray, box: Box) -> np.ndarray:
    """(N,) signed distance from points (N, 3) to a box surface: negative inside."""
    local = (points - box.center) @ box.rotation
    q = np.abs(local) - box.half_size
    outside = np.linalg.norm(np.maximum(q, 0.0), axis=1)
    inside = np.minimum(q.max(axis=1), 0.0)
    return outside + inside


def point_triangle_distance(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(N, T) unsigned distance from points (N, 3) to triangles (T, 3, 3)."""
    a, b, c = triangles[:, 0], triangles[:, 1], triangles[:, 2]
    normal = np.cross(b - a, c - a)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    p = points[:, None, :]
    plane_distance = np.einsum("ntk,tk->nt", p - a, normal)
    projected = p - plane_distance[..., None] * normal
    inside = np.ones(plane_distance.shape, dtype=bool)
    for start, end in ((a, b), (b, c), (c, a)):
        inside &= np.einsum("ntk,tk->nt", np.cross(end - start, projected - start), normal) >= 0
    edge_distance = np.full(plane_distance.shape, np.inf)
    for start, end in ((a, b), (b, c), (c, a)):
        edge = end - start
        t = np.clip(np.einsum("ntk,tk->nt", p - start, edge) / np.einsum("tk,tk->t", edge, edge), 0.0, 1.0)
        edge_distance = np.minimum(edge_distance, np.linalg.norm(p - (start + t[..., None] * edge), axis=2))
    return np.where(inside, np.abs(plane_distance), edge_distance)


def quad_triangles(quads: tuple[Quad, ...] | list[Quad]) -> np.ndarray:
    """(2 * Q, 3, 3) the triangles (0, 1, 2), (0, 2, 3) of every quad."""
    if not quads:
        return np.zeros((0, 3, 3))
    corners = np.stack([q.corners for q in quads])
    return np.concatenate([corners[:, [0, 1, 2]], corners[:, [0, 2, 3]]], axis=0)


def camera_clearance(scene: Scene, positions: np.ndarray) -> np.ndarray:
    """(N,) distance from each camera position to the nearest surface of the scene (negative inside a box)."""
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    distance = np.full(len(positions), np.inf)
    for box in scene.boxes:
        distance = np.minimum(distance, point_box_distance(positions, box))
    triangles = quad_triangles(scene.quads)
    for start in range(0, len(triangles), 512):
        distance = np.minimum(distance, point_triangle_distance(positions, triangles[start:start + 512]).min(axis=1))
    return distance


# ----------------------------------------------------------------------------------------------------------------
# Street


def _resample_path(positions: np.ndarray, spacing: float, extension: float) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal path resampled every ``spacing`` metres, extended straight by ``extension`` at both ends.

    Returns:
        points: (M, 3) positions (z interpolated), headings: (M, 2) unit tangent directions.
    """
    xy = positions[:, :2]
    steps = np.linalg.norm(np.diff(xy, axis=0), axis=1)
    keep = np.concatenate([[True], steps > 1e-6])
    xy, z = xy[keep], positions[keep, 2]
    arclength = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(xy, axis=0), axis=1))])
    if arclength[-1] < spacing:  # (nearly) stationary path: pretend it heads along the camera's start direction
        return None, None
    samples = np.arange(0.0, arclength[-1] + 1e-9, spacing)
    points = np.stack([np.interp(samples, arclength, xy[:, 0]), np.interp(samples, arclength, xy[:, 1]),
                       np.interp(samples, arclength, z)], axis=1)
    # Headings from a path smoothed over ~9 m so that small lateral wobbles do not bend the road.
    kernel = np.ones(9) / 9.0
    padded = np.pad(points[:, :2], ((4, 4), (0, 0)), mode="edge")
    smooth = np.stack([np.convolve(padded[:, i], kernel, mode="valid") for i in range(2)], axis=1)
    tangent = np.gradient(smooth, axis=0)
    tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-9)
    count = int(extension / spacing)
    before = points[0] - (np.arange(count, 0, -1)[:, None] * spacing) * np.append(tangent[0], 0.0)
    after = points[-1] + (np.arange(1, count + 1)[:, None] * spacing) * np.append(tangent[-1], 0.0)
    points = np.concatenate([before, points, after])
    tangent = np.concatenate([np.repeat(tangent[:1], count, 0), tangent, np.repeat(tangent[-1:], count, 0)])
    return points, tangent


def _ribbon(centre: np.ndarray, left: np.ndarray, heights: np.ndarray, lateral: tuple[float, float],
            along: np.ndarray, u_range: tuple[float, float], v_length: float, layer: int, tint: np.ndarray,
            z_offset: tuple = (0.0, 0.0)) -> list[Quad]:
    """Quads spanning ``lateral`` (metres left of the centreline) along a polyline; vertical when both laterals
    are equal and ``z_offset`` (scalars or (M,) arrays added to ``heights``) differs (kerbs)."""
    quads = []
    dz = [np.broadcast_to(np.asarray(z, dtype=np.float64), (len(centre),)) for z in z_offset]
    for i in range(len(centre) - 1):
        corners, uv = [], []
        for j, side, u in ((i, 0, u_range[0]), (i + 1, 0, u_range[0]), (i + 1, 1, u_range[1]),
                           (i, 1, u_range[1])):
            xy = centre[j, :2] + lateral[side] * left[j]
            corners.append([xy[0], xy[1], heights[j] + dz[side][j]])
            uv.append([u, along[j] / v_length])
        quads.append(Quad(np.array(corners), np.array(uv), layer, tint))
    return quads


def street_scene(seed: int, camera_positions: np.ndarray) -> Scene:
    """A street around a driving path: road with lane markings, kerbs and sidewalks, facades, parked cars, poles,
    trees, a grass ground and the sky.

    Args:
        seed: appearance and layout seed.
        camera_positions: (N, 3) world positions of the camera (z up); the camera drives in the right lane,
            ``CAMERA_HEIGHT_M`` above the road, which follows its height.

    Returns:
        the scene; every box keeps ``STREET_CLEARANCE_M`` from every camera position.
    """
    rng = np.random.default_rng([seed, 1])
    positions = np.asarray(camera_positions, dtype=np.float64)
    centre, tangent = _resample_path(positions, 1.0, 90.0)
    if centre is None:  # a stationary camera: lay the road along its position heading +x
        centre = positions[:1] + np.arange(-90.0, 91.0)[:, None] * np.array([1.0, 0.0, 0.0])
        tangent = np.tile([1.0, 0.0], (len(centre), 1))
    left = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    centre[:, :2] += LANE_OFFSET_M * left
    # Road height under the camera, smoothed over ~15 m.
    kernel = np.ones(15) / 15.0
    road_z = np.convolve(np.pad(centre[:, 2] - CAMERA_HEIGHT_M, 7, mode="edge"), kernel, mode="valid")
    along = np.arange(len(centre), dtype=np.float64)
    ground_z = road_z.min() - 0.01  # just below the road: the outer kerb face closes the step

    quads: list[Quad] = []
    road_tint = _tint(rng, 0.08)
    quads += _ribbon(centre, left, road_z, (-ROAD_HALF_WIDTH_M, ROAD_HALF_WIDTH_M), along, (0.0, 1.0),
                     ROAD_REPEAT_LENGTH_M, LAYER_INDEX["road"], road_tint)
    walk_tint = _tint(rng, 0.1)
    outer = ROAD_HALF_WIDTH_M + SIDEWALK_WIDTH_M
    for sign in (-1.0, 1.0):
        edge = sign * ROAD_HALF_WIDTH_M
        quads += _ribbon(centre, left, road_z, (edge, edge), along, (0.0, KERB_HEIGHT_M / 3.0), 3.0,
                         LAYER_INDEX["concrete"], walk_tint, z_offset=(0.0, KERB_HEIGHT_M))
        quads += _ribbon(centre, left, road_z + KERB_HEIGHT_M, (edge, sign * outer), along, (0.0, 1.0), 4.0,
                         LAYER_INDEX["sidewalk"], walk_tint)
        # The ground beyond the sidewalk is one flat plane at the lowest road level; this face closes the step.
        quads += _ribbon(centre, left, road_z, (sign * outer, sign * outer), along,
                         (0.0, 1.0), 3.0, LAYER_INDEX["concrete"], walk_tint,
                         z_offset=(KERB_HEIGHT_M, ground_z - road_z))
    lo, hi = centre[:, :2].min(axis=0) - 400.0, centre[:, :2].max(axis=0) + 400.0
    ground = np.array([[lo[0], lo[1], ground_z], [hi[0], lo[1], ground_z], [hi[0], hi[1], ground_z],
                       [lo[0], hi[1], ground_z]])
    quads.append(Quad(ground, ground[:, :2] / 4.0, LAYER_INDEX["grass"], _tint(rng, 0.12)))

    boxes: list[Box] = []
    def try_place(box: Box, clearance: float = STREET_CLEARANCE_M, footprint_free: bool = False) -> bool:
        if point_box_distance(positions, box).min() < clearance:
            return False
        if footprint_free:
            road_distance = _rectangle_distance(centre[:, :2], box.center[:2], box.yaw, box.half_size[:2])
            if road_distance.min() < outer + 0.2 or any(_rectangles_overlap(box, b, 0.2) for b in buildings):
                return False
            buildings.append(box)
        boxes.append(box)
        return True

    buildings: list[Box] = []
    facades = [LAYER_INDEX[n] for n in ("facade_brick", "facade_plaster", "facade_concrete")]
    heading = np.arctan2(tangent[:, 1], tangent[:, 0])
    for sign in (-1.0, 1.0):
        s = rng.uniform(0.0, 6.0)
        while s < len(centre) - 2:
            width, depth, height = rng.uniform(8.0, 22.0), rng.uniform(8.0, 16.0), rng.uniform(6.0, 22.0)
            i = min(int(s + width / 2), len(centre) - 1)
            setback = rng.uniform(0.3, 3.0)
            offset = sign * (outer + setback + depth / 2)
            xy = centre[i, :2] + offset * left[i]
            bottom, top = ground_z - 0.5, road_z[i] + height  # reaches below the ground on sloped roads
            box = Box(np.array([xy[0], xy[1], (bottom + top) / 2]),
                      np.array([width / 2, depth / 2, (top - bottom) / 2]), float(heading[i]),
                      int(rng.choice(facades)), _tint(rng, 0.15), texture_scale=3.0,
                      uv_offset=np.array([rng.uniform(0, 1), 0.0]))
            try_place(box, footprint_free=True)
            s += width + (rng.uniform(0.5, 4.0) if rng.random() < 0.8 else rng.uniform(6.0, 15.0))

        # Parked cars in the parking lane.
        s = rng.uniform(0.0, 10.0)
        while s < len(centre) - 3:
            i = int(s)
            yaw = float(heading[i] + rng.normal(0.0, 0.03))
            lateral = sign * (ROAD_HALF_WIDTH_M - 1.05)
            xy = centre[i, :2] + lateral * left[i]
            paint = np.clip(rng.uniform(0.1, 1.0, 3), 0.05, 1.0)
            body = Box(np.array([xy[0], xy[1], road_z[i] + 0.475]), np.array([2.15, 0.9, 0.475]), yaw,
                       LAYER_INDEX["car_paint"], paint, texture_scale=1.0, uv_offset=rng.uniform(0, 1, 2))
            cabin_xy = xy - 0.25 * np.array([np.cos(yaw), np.sin(yaw)])
            cabin = Box(np.array([cabin_xy[0], cabin_xy[1], road_z[i] + 1.22]), np.array([1.2, 0.82, 0.27]), yaw,
                        LAYER_INDEX["car_glass"], _tint(rng, 0.1), texture_scale=1.5, uv_offset=rng.uniform(0, 1, 2))
            if try_place(body):
                try_place(cabin)
            s += rng.uniform(5.0, 9.0) if rng.random() < 0.7 else rng.uniform(12.0, 30.0)

        # Street lamps (pole + arm over the road + lamp head) and trees on the sidewalk.
        s = rng.uniform(0.0, 20.0)
        while s < len(centre) - 1:
            i = int(s)
            xy = centre[i, :2] + sign * (ROAD_HALF_WIDTH_M + 0.45) * left[i]
            pole_height = rng.uniform(5.5, 7.5)
            metal = _tint(rng, 0.1)
            pole = Box(np.array([xy[0], xy[1], road_z[i] + pole_height / 2]), np.array([0.09, 0.09, pole_height / 2]),
                       float(heading[i]), LAYER_INDEX["metal"], metal, texture_scale=1.0)
            arm_xy = xy - sign * 0.9 * left[i]
            arm = Box(np.array([arm_xy[0], arm_xy[1], road_z[i] + pole_height - 0.1]), np.array([0.06, 0.95, 0.05]),
                      float(heading[i]), LAYER_INDEX["metal"], metal, texture_scale=1.0)
            if try_place(pole):
                try_place(arm)
            s += rng.uniform(25.0, 40.0)
        s = rng.uniform(0.0, 12.0)
        while s < len(centre) - 1:
            i = int(s)
            xy = centre[i, :2] + sign * (ROAD_HALF_WIDTH_M + 1.9 + rng.uniform(-0.3, 0.3)) * left[i]
            trunk_height, crown = rng.uniform(2.4, 3.4), rng.uniform(1.1, 1.8)
            trunk = Box(np.array([xy[0], xy[1], road_z[i] + trunk_height / 2]),
                        np.array([0.14, 0.14, trunk_height / 2]), float(rng.uniform(0, np.pi)),
                        LAYER_INDEX["bark"], _tint(rng, 0.1), texture_scale=1.0)
            if try_place(trunk):
                yaw = float(rng.uniform(0, np.pi / 2))
                for k, scale in enumerate((1.0, 0.8)):
                    z = road_z[i] + trunk_height - 0.3 + crown * (1.0 + 0.9 * k)
                    crown_box = Box(np.array([xy[0], xy[1], z]), np.array([crown, crown, crown]) * scale,
                                    yaw + k * np.pi / 4, LAYER_INDEX["foliage"], _tint(rng, 0.15),
                                    texture_scale=1.5, uv_offset=rng.uniform(0, 1, 2))
                    try_place(crown_box)
            s += rng.uniform(9.0, 20.0)

    elevation, azimuth = np.deg2rad(rng.uniform(25.0, 65.0)), rng.uniform(0.0, 2 * np.pi)
    direction = np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)])
    lighting = Lighting(direction, float(rng.uniform(0.55, 0.8)), float(rng.uniform(0.35, 0.5)), _tint(rng, 0.06))
    return Scene("street", tuple(quads), tuple(boxes), lighting, sky=True)


# ----------------------------------------------------------------------------------------------------------------
# Room


def room_bounds(seed: int, camera_positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Interior (min, max) corners of the room for a camera path: random size, grown to contain the path.

    The path's horizontal centre is the room's centre; the floor is at z = 0.
    """
    rng = np.random.default_rng([seed, 2])
    positions = np.asarray(camera_positions, dtype=np.float64)
    size = np.array([rng.uniform(5.0, 8.0), rng.uniform(4.0, 7.0), rng.uniform(2.6, 3.1)])
    lo, hi = positions.min(axis=0), positions.max(axis=0)
    needed_xy = hi[:2] - lo[:2] + 2 * (ROOM_WALL_MARGIN_M + 0.5)
    size[:2] = np.maximum(size[:2], needed_xy)
    size[2] = max(size[2], hi[2] + 0.6)
    middle = (lo[:2] + hi[:2]) / 2
    return np.array([middle[0] - size[0] / 2, middle[1] - size[1] / 2, 0.0]), \
        np.array([middle[0] + size[0] / 2, middle[1] + size[1] / 2, size[2]])


def _wall_quad(lo, hi, wall: int, layer: int, tint, scale: float, inset: float = 0.0,
               span: tuple[float, float] | None = None, z_span: tuple[float, float] | None = None) -> Quad:
    """An axis-aligned rectangle on one wall (0: x=lo, 1: x=hi, 2: y=lo, 3: y=hi), ``inset`` into the room.

    ``span`` limits it along the wall, ``z_span`` in height; texture v runs downwards.
    """
    axis = 0 if wall < 2 else 1
    along = 1 - axis
    coordinate = (lo[axis] + inset) if wall % 2 == 0 else (hi[axis] - inset)
    a0, a1 = span if span is not None else (lo[along], hi[along])
    z0, z1 = z_span if z_span is not None else (lo[2], hi[2])
    corners = np.zeros((4, 3))
    corners[:, axis] = coordinate
    corners[:, along] = [a0, a1, a1, a0]
    corners[:, 2] = [z0, z0, z1, z1]
    uv = np.stack([(corners[:, along] - a0), (z1 - corners[:, 2])], axis=1) / scale
    return Quad(corners, uv, layer, np.asarray(tint))


def room_scene(seed: int, camera_positions: np.ndarray) -> Scene:
    """A furnished room around a camera path: textured floor, walls and ceiling, shelves, cabinets, tables with
    objects, boxes, posters, a rug and a door.

    Args:
        seed: appearance and layout seed.
        camera_positions: (N, 3) world positions of the camera (z up, floor at z = 0).

    Returns:
        the scene; every box keeps ``ROOM_CLEARANCE_M`` from every camera position.
    """
    rng = np.random.default_rng([seed, 3])
    positions = np.asarray(camera_positions, dtype=np.float64)
    lo, hi = room_bounds(seed, positions)
    quads: list[Quad] = []
    boxes: list[Box] = []

    floor_layer = LAYER_INDEX["wood_floor" if rng.random() < 0.6 else "carpet"]
    floor = np.array([[lo[0], lo[1], 0.0], [hi[0], lo[1], 0.0], [hi[0], hi[1], 0.0], [lo[0], hi[1], 0.0]])
    quads.append(Quad(floor, floor[:, :2] / 2.0, floor_layer, _tint(rng, 0.12)))
    ceiling = floor + np.array([0.0, 0.0, hi[2]])
    quads.append(Quad(ceiling, ceiling[:, :2] / 2.4, LAYER_INDEX["ceiling"], _tint(rng, 0.05)))
    wall_layers = [LAYER_INDEX["wallpaper"], LAYER_INDEX["wallpaper"], LAYER_INDEX["concrete"],
                   LAYER_INDEX["facade_brick"]]
    wall_tint = _tint(rng, 0.15)
    for wall in range(4):
        layer = int(rng.choice(wall_layers))
        quads.append(_wall_quad(lo, hi, wall, layer, wall_tint * rng.uniform(0.92, 1.08, 3),
                                2.5 if layer != LAYER_INDEX["facade_brick"] else hi[2]))

    def place(box: Box) -> bool:
        if point_box_distance(positions, box).min() < ROOM_CLEARANCE_M:
            return False
        if any(_rectangles_overlap(box, other, 0.02) and abs(box.center[2] - other.center[2])
               < box.half_size[2] + other.half_size[2] for other in boxes):
            return False
        boxes.append(box)
        return True

    def against_wall(wall: int, width: float, depth: float, height: float, z0: float = 0.0):
        axis = 0 if wall < 2 else 1
        along = 1 - axis
        length = hi[along] - lo[along]
        if length < width + 0.4:
            return None
        centre = np.zeros(3)
        centre[along] = lo[along] + rng.uniform(0.2 + width / 2, length - 0.2 - width / 2)
        centre[axis] = (lo[axis] + 0.01 + depth / 2) if wall % 2 == 0 else (hi[axis] - 0.01 - depth / 2)
        centre[2] = z0 + height / 2
        half = np.array([width / 2, depth / 2, height / 2]) if axis == 1 else np.array([depth / 2, width / 2,
                                                                                          height / 2])
        return centre, half

    occupied_spans: list[tuple[int, float, float]] = []
    for _ in range(rng.integers(3, 6)):  # shelves and cabinets along the walls
        wall = int(rng.integers(0, 4))
        tall = rng.random() < 0.6
        size = (rng.uniform(0.8, 2.0), rng.uniform(0.3, 0.45), rng.uniform(1.5, 2.2)) if tall else \
            (rng.uniform(0.8, 1.6), rng.uniform(0.45, 0.6), rng.uniform(0.7, 1.1))
        spot = against_wall(wall, *size)
        if spot is None:
            continue
        layer = LAYER_INDEX["books"] if tall else LAYER_INDEX["wood"]
        box = Box(spot[0], spot[1], 0.0, layer, _tint(rng, 0.1), texture_scale=size[2] if tall else 1.0)
        if place(box):
            along = 1 if wall < 2 else 0
            occupied_spans.append((wall, box.center[along] - spot[1][along], box.center[along] + spot[1][along]))

    for _ in range(rng.integers(2, 4)):  # tables with legs and objects on top
        top_size = np.array([rng.uniform(1.0, 1.8), rng.uniform(0.6, 0.9)])
        height = rng.uniform(0.70, 0.78)
        margin = top_size.max() / 2 + 0.15
        if np.any(hi[:2] - lo[:2] <= 2 * margin):
            continue
        xy = rng.uniform(lo[:2] + margin, hi[:2] - margin)
        yaw = float(rng.choice([0.0, np.pi / 2]) + rng.normal(0.0, 0.1))
        wood = _tint(rng, 0.12)
        top = Box(np.array([xy[0], xy[1], height - 0.02]), np.array([*top_size / 2, 0.02]), yaw,
                  LAYER_INDEX["wood"], wood, texture_scale=1.2, uv_offset=rng.uniform(0, 1, 2))
        footprint = Box(np.array([xy[0], xy[1], height / 2]), np.array([*top_size / 2, height / 2]), yaw,
                        LAYER_INDEX["wood"], wood)
        if point_box_distance(positions, footprint).min() < ROOM_CLEARANCE_M or not place(top):
            continue
        R = top.rotation[:2, :2]
        for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
            leg_xy = xy + R @ (np.array([sx, sy]) * (top_size / 2 - 0.06))
            boxes.append(Box(np.array([leg_xy[0], leg_xy[1], (height - 0.04) / 2]),
                             np.array([0.03, 0.03, (height - 0.04) / 2]), yaw, LAYER_INDEX["metal"],
                             _tint(rng, 0.1)))
        for _ in range(rng.integers(2, 6)):
            size = rng.uniform([0.08, 0.08, 0.03], [0.4, 0.35, 0.35])
            local = rng.uniform(-(top_size / 2 - size[:2] / 2 - 0.02), top_size / 2 - size[:2] / 2 - 0.02)
            obj_xy = xy + R @ local
            layer = LAYER_INDEX[str(rng.choice(["books", "cardboard", "poster_0", "poster_1", "wood"]))]
            place(Box(np.array([obj_xy[0], obj_xy[1], height + size[2] / 2]), size / 2,
                      yaw + float(rng.normal(0, 0.3)), layer, _tint(rng, 0.1), texture_scale=0.5,
                      uv_offset=rng.uniform(0, 1, 2)))

    for _ in range(rng.integers(2, 6)):  # cardboard boxes on the floor
        size = rng.uniform([0.3, 0.3, 0.25], [0.7, 0.6, 0.6])
        xy = rng.uniform(lo[:2] + 0.5, hi[:2] - 0.5)
        place(Box(np.array([xy[0], xy[1], size[2] / 2]), size / 2, float(rng.uniform(0, np.pi)),
                  LAYER_INDEX["cardboard"], _tint(rng, 0.1), texture_scale=0.6, uv_offset=rng.uniform(0, 1, 2)))

    # Posters and a door hang 5 mm in front of the walls (far above depth-buffer resolution, see renderer).
    for index in range(rng.integers(4, 9)):
        wall = int(rng.integers(0, 4))
        along = 1 if wall < 2 else 0
        width, height = rng.uniform(0.5, 1.2), rng.uniform(0.6, 1.2)
        if hi[along] - lo[along] < width + 0.4:
            continue
        a0 = rng.uniform(lo[along] + 0.2, hi[along] - 0.2 - width)
        z0 = rng.uniform(1.0, max(1.05, hi[2] - 0.3 - height))
        if any(w == wall and a0 < s1 and a0 + width > s0 for w, s0, s1 in occupied_spans) and z0 < 2.3:
            continue
        layer = LAYER_INDEX[f"poster_{index % 4}"]
        quads.append(_wall_quad(lo, hi, wall, layer, _tint(rng, 0.1), 1.0, inset=0.005, span=(a0, a0 + width),
                                z_span=(z0, z0 + height)))
    wall = int(rng.integers(0, 4))
    along = 1 if wall < 2 else 0
    a0 = rng.uniform(lo[along] + 0.3, hi[along] - 1.3)
    quads.append(_wall_quad(lo, hi, wall, LAYER_INDEX["wood"], _tint(rng, 0.1), 2.1, inset=0.005,
                            span=(a0, a0 + 0.9), z_span=(0.0, 2.1)))
    rug = rng.uniform(lo[:2] + 0.5, hi[:2] - 0.5)
    rug_half = rng.uniform([0.6, 0.5], [1.4, 1.0])
    rug_corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * rug_half + rug
    rug_corners = np.clip(rug_corners, lo[:2] + 0.05, hi[:2] - 0.05)
    quads.append(Quad(np.concatenate([rug_corners, np.full((4, 1), 0.005)], axis=1), rug_corners / 1.5,
                      LAYER_INDEX["carpet"], _tint(rng, 0.3)))

    direction = np.array([rng.uniform(-0.4, 0.4), rng.uniform(-0.4, 0.4), 1.0])
    lighting = Lighting(direction / np.linalg.norm(direction), float(rng.uniform(0.35, 0.55)),
                        float(rng.uniform(0.45, 0.6)), _tint(rng, 0.06))
    return Scene("room", tuple(quads), tuple(boxes), lighting, sky=False)


def build_scene(name: str, seed: int, camera_positions: np.ndarray) -> Scene:
    """Dispatch to :func:`street_scene` or :func:`room_scene`.

    Raises:
        ValueError: for an unknown scene name.
    """
    if name == "street":
        return street_scene(seed, camera_positions)
    if name == "room":
        return room_scene(seed, camera_positions)
    raise ValueError(f"unknown scene {name!r}; choose one of {', '.join(SCENES)}")
