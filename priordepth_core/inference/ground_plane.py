"""Metric scale for monocular depth from the camera's known height above the ground.

The lower part of the image of a road or floor camera sees the ground. Back-projected with the predicted depth, those
pixels lie on a plane whose distance from the optical centre is the camera height *in the depth's units*; the ratio
of the true height to it is the depth's metric scale (as in monocular KITTI odometry that assumes a 1.65 m camera).

The plane is found by RANSAC on a subsample of the region (robust to cars, walls and kerbs there), accepted only if
it is roughly horizontal in the camera frame (normal close to the optical y axis, which points down) and lies below
the camera, then refitted by least squares on its inliers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Lower image region searched for the ground: rows from this fraction of the height, columns in the central band.
GROUND_REGION_TOP = 0.6
GROUND_REGION_SIDE_MARGIN = 0.1
# Points used for the fit (a regular subsample of the region).
MAX_GROUND_POINTS = 1500
RANSAC_ITERATIONS = 96
# Inlier band around the plane, as a fraction of the median depth of the region's points (scale-free).
INLIER_BAND = 0.03
# A plane is the ground only if its normal is within this angle of the camera's y axis and it has this support.
MAX_TILT_DEG = 30.0
MIN_INLIER_FRACTION = 0.3


@dataclass(frozen=True)
class GroundPlane:
    """A plane ``normal . X = height`` in the camera frame, with ``normal`` pointing down (y > 0).

    Attributes:
        normal: (3,) unit normal.
        height: distance of the optical centre from the plane, in the depth's units (positive: plane below).
        inlier_fraction: share of the region's points within the inlier band.
    """

    normal: np.ndarray
    height: float
    inlier_fraction: float


def ground_points(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(P, 3) camera-frame points of the lower central image region, subsampled to at most ``MAX_GROUND_POINTS``.

    Args:
        depth: (H, W) depth (invalid: non-finite or <= 0, skipped).
        K: (3, 3) intrinsics of ``depth``.
    """
    H, W = depth.shape
    top = int(H * GROUND_REGION_TOP)
    left, right = int(W * GROUND_REGION_SIDE_MARGIN), int(W * (1 - GROUND_REGION_SIDE_MARGIN))
    count = max(1, (H - top) * (right - left))
    stride = max(1, int(np.ceil(np.sqrt(count / MAX_GROUND_POINTS))))
    rows, cols = np.mgrid[top:H:stride, left:right:stride]
    z = depth[rows, cols].astype(np.float64)
    keep = np.isfinite(z) & (z > 0)
    u, v, z = cols[keep].astype(np.float64), rows[keep].astype(np.float64), z[keep]
    fx, skew, cx, fy, cy = K[0, 0], K[0, 1], K[0, 2], K[1, 1], K[1, 2]
    y = (v - cy) / fy
    x = (u - cx - skew * y) / fx
    return np.stack([x * z, y * z, z], axis=1)


def fit_ground_plane(points: np.ndarray, rng: np.random.Generator) -> GroundPlane | None:
    """RANSAC plane through ``points`` (P, 3) that qualifies as the ground; None when there is none.

    The ground must be within ``MAX_TILT_DEG`` of horizontal in the camera frame, below the camera and hold at least
    ``MIN_INLIER_FRACTION`` of the points.
    """
    if len(points) < 3 * 10:
        return None
    band = INLIER_BAND * float(np.median(points[:, 2]))
    samples = rng.integers(0, len(points), size=(RANSAC_ITERATIONS, 3))
    p0, p1, p2 = points[samples[:, 0]], points[samples[:, 1]], points[samples[:, 2]]
    normals = np.cross(p1 - p0, p2 - p0)  # (I, 3)
    norms = np.linalg.norm(normals, axis=1)
    usable = norms > 1e-12
    normals = normals[usable] / norms[usable, None]
    normals *= np.where(normals[:, 1:2] < 0, -1.0, 1.0)  # point down, like the camera's y axis
    offsets = np.einsum("ij,ij->i", normals, p0[usable])  # normal . X = offset on the plane
    level = normals[:, 1] >= np.cos(np.radians(MAX_TILT_DEG))
    below = offsets > 0
    if not np.any(level & below):
        return None
    normals, offsets = normals[level & below], offsets[level & below]
    distances = np.abs(points @ normals.T - offsets)  # (P, I)
    support = (distances < band).sum(axis=0)
    best = int(np.argmax(support))
    inliers = distances[:, best] < band
    if inliers.mean() < MIN_INLIER_FRACTION:
        return None
    # Least-squares refit on the inliers: the normal is the direction of least spread.
    chosen = points[inliers]
    centroid = chosen.mean(axis=0)
    normal = np.linalg.svd(chosen - centroid, full_matrices=False)[2][-1]
    normal = normal if normal[1] > 0 else -normal
    height = float(normal @ centroid)
    if normal[1] < np.cos(np.radians(MAX_TILT_DEG)) or height <= 0:
        return None
    fraction = float((np.abs(points @ normal - height) < band).mean())
    return GroundPlane(normal=normal, height=height, inlier_fraction=fraction)


def estimate_camera_height(depth: np.ndarray, K: np.ndarray, rng: np.random.Generator) -> GroundPlane | None:
    """The ground plane seen in the lower image of ``depth`` (H, W) with intrinsics ``K``, or None."""
    return fit_ground_plane(ground_points(depth, K), rng)
