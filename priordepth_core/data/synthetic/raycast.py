"""Exact ray caster for scenes of quads and boxes, in float64 numpy: the oracle the OpenGL renderer is tested
against, and the free-space check of camera paths.

Quads are intersected as the same two triangles the renderer draws (Moeller-Trumbore); boxes analytically with the
slab method in their own frame, independently of the renderer's face triangulation.
"""

from __future__ import annotations

import numpy as np

from .scenes import Box, Scene, quad_triangles

# Hits closer than this along the ray are ignored (a ray leaving a surface must not hit it again).
RAY_EPSILON = 1e-9


def _intersect_triangles(origins: np.ndarray, directions: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(R, T) ray parameter of each ray-triangle hit, inf for misses (Moeller-Trumbore, two-sided)."""
    a = triangles[:, 0]
    edge1, edge2 = triangles[:, 1] - a, triangles[:, 2] - a  # (T, 3)
    p = np.cross(directions[:, None, :], edge2[None])  # (R, T, 3)
    det = np.einsum("rtk,tk->rt", p, edge1)
    parallel = np.abs(det) < 1e-14
    inv_det = 1.0 / np.where(parallel, 1.0, det)
    s = origins[:, None, :] - a[None]  # (R, T, 3)
    u = np.einsum("rtk,rtk->rt", s, p) * inv_det
    q = np.cross(s, edge1[None])
    v = np.einsum("rk,rtk->rt", directions, q) * inv_det
    t = np.einsum("tk,rtk->rt", edge2, q) * inv_det
    hit = ~parallel & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > RAY_EPSILON)
    return np.where(hit, t, np.inf)


def _intersect_boxes(origins: np.ndarray, directions: np.ndarray, boxes: list[Box]) -> np.ndarray:
    """(R, B) ray parameter of the first surface hit of each box (the exit face when the origin is inside)."""
    if not boxes:
        return np.full((len(origins), 0), np.inf)
    R = np.stack([b.rotation for b in boxes])  # (B, 3, 3)
    centers = np.stack([b.center for b in boxes])
    half = np.stack([b.half_size for b in boxes])
    local_origin = np.einsum("bkj,rbk->rbj", R, origins[:, None, :] - centers[None])  # R^T (o - c)
    local_direction = np.einsum("bkj,rk->rbj", R, directions)
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse = 1.0 / local_direction
        t1 = (-half[None] - local_origin) * inverse
        t2 = (half[None] - local_origin) * inverse
    # A direction component of 0 gives +-inf (or nan when the origin lies on the slab plane): inside the slab the
    # axis constrains nothing, outside it the ray misses.
    zero = local_direction == 0
    inside_slab = np.abs(local_origin) <= half[None]
    t_low = np.where(zero, np.where(inside_slab, -np.inf, np.inf), np.minimum(t1, t2))
    t_high = np.where(zero, np.where(inside_slab, np.inf, -np.inf), np.maximum(t1, t2))
    t_enter, t_exit = t_low.max(axis=2), t_high.min(axis=2)
    hit = t_enter <= t_exit
    t = np.where(t_enter > RAY_EPSILON, t_enter, t_exit)
    return np.where(hit & (t > RAY_EPSILON), t, np.inf)


def cast_rays(scene: Scene, origins: np.ndarray, directions: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Nearest hit along each ray.

    Args:
        scene: the scene.
        origins: (R, 3) world ray origins.
        directions: (R, 3) world directions, not necessarily unit: the result is in units of their length.
        chunk: rays per vectorised batch (memory ~ chunk x primitives).

    Returns:
        (R,) float64 ray parameter t of the first surface (``origin + t * direction``), inf where nothing is hit.
    """
    origins = np.asarray(origins, dtype=np.float64).reshape(-1, 3)
    directions = np.asarray(directions, dtype=np.float64).reshape(-1, 3)
    triangles = quad_triangles(scene.quads)
    boxes = list(scene.boxes)
    result = np.full(len(origins), np.inf)
    for start in range(0, len(origins), chunk):
        o, d = origins[start:start + chunk], directions[start:start + chunk]
        t = np.full(len(o), np.inf)
        if len(triangles):
            t = np.minimum(t, _intersect_triangles(o, d, triangles).min(axis=1))
        if boxes:
            t = np.minimum(t, _intersect_boxes(o, d, boxes).min(axis=1))
        result[start:start + chunk] = t
    return result


def _frustum_culled(scene: Scene, K: np.ndarray, T_world_cam: np.ndarray, width: int, height: int) -> Scene:
    """The scene without primitives entirely outside one of the image's four side planes (speed only)."""
    T_cam_world = np.linalg.inv(T_world_cam)
    fx, s, cx = K[0]
    fy, cy = K[1, 1], K[1, 2]
    # Half-spaces a . X_cam >= 0 of points whose pixel lies within [-0.5, W - 0.5] x [-0.5, H - 0.5].
    planes = np.array([
        [fx, s, cx + 0.5], [-fx, -s, width - 0.5 - cx], [0.0, fy, cy + 0.5], [0.0, -fy, height - 0.5 - cy]])

    def visible(points_world: np.ndarray) -> bool:
        points = points_world @ T_cam_world[:3, :3].T + T_cam_world[:3, 3]
        return bool(np.all((points @ planes.T).max(axis=0) >= -1e-9))

    quads = tuple(q for q in scene.quads if visible(q.corners))
    boxes = []
    for box in scene.boxes:
        signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)])
        if visible((signs * box.half_size) @ box.rotation.T + box.center):
            boxes.append(box)
    return Scene(scene.name, quads, tuple(boxes), scene.lighting, scene.sky)


def raycast_depth(scene: Scene, K: np.ndarray, T_world_cam: np.ndarray, width: int, height: int) -> np.ndarray:
    """Exact depth image by ray casting every pixel centre.

    Args:
        scene: the scene.
        K: (3, 3) intrinsics (pixel centres at integer coordinates).
        T_world_cam: (4, 4) camera-to-world pose of the optical frame.
        width, height: image size.

    Returns:
        (H, W) float64 camera z of the first surface, 0 where the ray hits nothing (sky).
    """
    K = np.asarray(K, dtype=np.float64)
    T_world_cam = np.asarray(T_world_cam, dtype=np.float64)
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    pixels = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], axis=1)
    rays_cam = pixels @ np.linalg.inv(K).T  # z = 1: the ray parameter is the camera z
    directions = rays_cam @ T_world_cam[:3, :3].T
    origins = np.broadcast_to(T_world_cam[:3, 3], directions.shape)
    t = cast_rays(_frustum_culled(scene, K, T_world_cam, width, height), origins, directions)
    return np.where(np.isfinite(t), t, 0.0).reshape(height, width)


def segment_hits(scene: Scene, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """(N,) bool: the straight segment from each ``start`` (N, 3) to ``end`` (N, 3) crosses a surface."""
    start = np.asarray(start, dtype=np.float64).reshape(-1, 3)
    end = np.asarray(end, dtype=np.float64).reshape(-1, 3)
    t = cast_rays(scene, start, end - start)
    return t <= 1.0
