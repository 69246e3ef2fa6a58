"""Random two-view problems with known answers, shared by the pose-solver tests and benchmarks.

Each problem is a pinhole camera seen twice: 3D points in frame 1 that lie in front of both cameras and project inside
both images, a random relative motion ``X2 = R @ X1 + t`` and the two pixel sets, optionally with Gaussian pixel noise
and outliers. Options produce the degenerate cases a solver must survive: a planar scene, a pure rotation (t = 0) and
a tiny baseline.

Every random number is drawn in float64 on the CPU from one ``torch.Generator``, whatever ``dtype`` is asked for, so
the same seed gives the same scene in float32 and float64 (the float32 problem is the float64 one rounded).

Example:
    >>> g = torch.Generator().manual_seed(0)
    >>> p = make_two_view_problems(2, 100, noise_px=0.5, outlier_ratio=0.2, generator=g)
    >>> p.x1.shape, p.R.shape, p.t.shape, int(p.inliers.sum())
    (torch.Size([2, 100, 2]), torch.Size([2, 3, 3]), torch.Size([2, 3]), 160)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from ..camera import project_points, unproject_points
from ..se3 import make_transform, random_rotation

# Depth range (metres, frame 1) of general scenes; a baseline_ratio is relative to its midpoint.
DEPTH_RANGE = (2.0, 10.0)
NOMINAL_DEPTH = 0.5 * (DEPTH_RANGE[0] + DEPTH_RANGE[1])
# Default relative baseline |camera-2 centre| / NOMINAL_DEPTH, drawn uniformly in this range when none is given.
DEFAULT_BASELINE_RANGE = (0.02, 0.2)
# Default largest relative rotation angle.
DEFAULT_MAX_ROTATION_DEG = 20.0
# Focal length as a fraction of the image width (horizontal field of view about 53 to 79 degrees).
FOCAL_RANGE = (0.6, 1.0)
# Planar scenes: the plane passes at a depth in PLANE_DEPTH_RANGE on the optical axis with its normal tilted up to
# PLANE_MAX_TILT_DEG away from the optical axis; points are kept between these depths.
PLANE_DEPTH_RANGE = (4.0, 8.0)
PLANE_MAX_TILT_DEG = 50.0
PLANE_KEEP_DEPTH = (1.0, 30.0)
# Points must lie at least this far in front of camera 2.
MIN_DEPTH_2 = 0.5
# Candidates drawn per wanted point per round, and rounds before giving up.
OVERSAMPLE = 4
MAX_ROUNDS = 100


@dataclass
class TwoViewProblem:
    """A batch of two-view problems with their ground truth.

    Attributes:
        x1: (B, N, 2) pixel coordinates in image 1 (with noise).
        x2: (B, N, 2) pixel coordinates in image 2 (with noise; outliers replaced by random pixels).
        K: (B, 3, 3) intrinsics, shared by both images.
        R: (B, 3, 3) rotation of frame-1 points into frame 2.
        t: (B, 3) translation, ``X2 = R @ X1 + t`` (zero for pure rotation).
        points1: (B, N, 3) noise-free 3D points in frame 1 (for outliers, the point whose x2 was replaced).
        inliers: (B, N) bool, False where x2 was replaced by a random pixel.
        image_size: (width, height) of both images.
    """

    x1: torch.Tensor
    x2: torch.Tensor
    K: torch.Tensor
    R: torch.Tensor
    t: torch.Tensor
    points1: torch.Tensor
    inliers: torch.Tensor
    image_size: tuple[int, int]

    @property
    def points2(self) -> torch.Tensor:
        """(B, N, 3) the points in frame 2, ``R @ X1 + t``."""
        return self.points1 @ self.R.transpose(1, 2) + self.t[:, None]

    @property
    def depth1(self) -> torch.Tensor:
        """(B, N) depth (z) of each point in frame 1."""
        return self.points1[..., 2]

    def transform(self) -> torch.Tensor:
        """(B, 4, 4) ``T_2_1`` mapping frame-1 points to frame 2."""
        return make_transform(self.R, self.t)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> TwoViewProblem:
        """A copy with every floating tensor moved to ``device`` and cast to ``dtype``."""
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                value = value.to(device=device, dtype=dtype if value.is_floating_point() else None)
            moved[f.name] = value
        return TwoViewProblem(**moved)


def _uniform(shape, low, high, generator):
    return low + (high - low) * torch.rand(shape, generator=generator, dtype=torch.float64)


def _random_intrinsics(batch: int, width: int, height: int, generator) -> torch.Tensor:
    f = _uniform((batch,), FOCAL_RANGE[0] * width, FOCAL_RANGE[1] * width, generator)
    aspect = _uniform((batch,), 0.98, 1.02, generator)
    cx = (width - 1) / 2 + _uniform((batch,), -0.03, 0.03, generator) * width
    cy = (height - 1) / 2 + _uniform((batch,), -0.03, 0.03, generator) * height
    K = torch.zeros(batch, 3, 3, dtype=torch.float64)
    K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = f, f * aspect, cx, cy, 1.0
    return K


def _random_unit_vectors(batch: int, generator) -> torch.Tensor:
    v = torch.randn(batch, 3, generator=generator, dtype=torch.float64)
    return v / v.norm(dim=-1, keepdim=True)


def _inside(pixels: torch.Tensor, width: int, height: int) -> torch.Tensor:
    x, y = pixels[..., 0], pixels[..., 1]
    return (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)


def make_two_view_problems(batch: int, num_points: int, noise_px: float = 0.0, outlier_ratio: float = 0.0,
                           planar: bool = False, pure_rotation: bool = False, baseline_ratio: float | None = None,
                           image_size: tuple[int, int] = (640, 480), dtype: torch.dtype = torch.float64,
                           generator: torch.Generator | None = None,
                           max_rotation_deg: float = DEFAULT_MAX_ROTATION_DEG,
                           device: torch.device | str | None = None) -> TwoViewProblem:
    """Draw ``batch`` random two-view problems of ``num_points`` correspondences each.

    Scene: pixels uniform over image 1 lifted at depths uniform in ``DEPTH_RANGE`` (or onto a random plane), kept
    when they are at least ``MIN_DEPTH_2`` in front of camera 2 and project inside image 2. Motion: a rotation about
    a uniformly random axis by an angle uniform in ``[0, max_rotation_deg]``, and camera 2's centre at a uniformly
    random direction from camera 1's, at distance ``baseline_ratio * NOMINAL_DEPTH`` (the midpoint of the depth
    range). Intrinsics: square-ish pixels, focal length 0.6 to 1.0 image widths, principal point near the centre.

    Args:
        batch: B, number of independent problems.
        num_points: N, correspondences per problem.
        noise_px: standard deviation of the Gaussian noise added to every coordinate of x1 and x2 (pixels).
        outlier_ratio: fraction of correspondences (``round(ratio * N)`` per problem, at random positions) whose x2
            is replaced by a pixel uniform over image 2; ``inliers`` marks the others.
        planar: put all points on one plane (random tilt, normal within ``PLANE_MAX_TILT_DEG`` of the optical axis).
        pure_rotation: camera 2 at camera 1's centre (t = 0); depth then does not affect the pixels.
        baseline_ratio: distance between the camera centres over ``NOMINAL_DEPTH`` (e.g. 1e-3 for a tiny baseline);
            uniform in ``DEFAULT_BASELINE_RANGE`` per problem when None. Ignored when ``pure_rotation``.
        image_size: (width, height) in pixels.
        dtype: floating dtype of the returned tensors (the scene is drawn in float64 and cast).
        generator: CPU random generator, for reproducible problems.
        max_rotation_deg: largest relative rotation angle.
        device: device of the returned tensors (CPU when None).

    Returns:
        :class:`TwoViewProblem` with x1, x2 (B, N, 2), K (B, 3, 3), R (B, 3, 3), t (B, 3), points1 (B, N, 3) and
        inliers (B, N).

    Raises:
        ValueError: on a non-positive batch or point count, a negative noise, an outlier ratio outside [0, 1) or a
            non-floating dtype.
        RuntimeError: if the motion leaves too few points visible in both images after ``MAX_ROUNDS`` draws.
    """
    if batch < 1 or num_points < 1:
        raise ValueError(f"batch and num_points must be positive, got {batch} and {num_points}")
    if noise_px < 0:
        raise ValueError(f"noise_px must be non-negative, got {noise_px}")
    if not 0.0 <= outlier_ratio < 1.0:
        raise ValueError(f"outlier_ratio must lie in [0, 1), got {outlier_ratio}")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating dtype, got {dtype}")
    if baseline_ratio is not None and baseline_ratio < 0:
        raise ValueError(f"baseline_ratio must be non-negative, got {baseline_ratio}")
    width, height = image_size
    B, N, g = batch, num_points, generator

    K = _random_intrinsics(B, width, height, g)
    R = random_rotation(B, max_angle=math.radians(max_rotation_deg), generator=g, dtype=torch.float64)
    if pure_rotation:
        centre2 = torch.zeros(B, 3, dtype=torch.float64)
    else:
        if baseline_ratio is None:
            ratio = _uniform((B, 1), *DEFAULT_BASELINE_RANGE, g)
        else:
            ratio = torch.full((B, 1), float(baseline_ratio), dtype=torch.float64)
        centre2 = _random_unit_vectors(B, g) * ratio * NOMINAL_DEPTH
    t = -(R @ centre2.unsqueeze(-1)).squeeze(-1)  # X2 = R (X1 - C2)

    if planar:
        tilt = math.radians(PLANE_MAX_TILT_DEG)
        normal_rot = random_rotation(B, max_angle=tilt, generator=g, dtype=torch.float64)
        normal = normal_rot[:, :, 2]  # (B, 3), within `tilt` of the optical axis
        plane_depth = _uniform((B,), *PLANE_DEPTH_RANGE, g)
        plane_offset = plane_depth * normal[:, 2]  # n . X = offset through (0, 0, plane_depth)

    points1 = torch.zeros(B, N, 3, dtype=torch.float64)
    count = torch.zeros(B, dtype=torch.int64)
    M = OVERSAMPLE * N
    for _ in range(MAX_ROUNDS):
        pixels = torch.stack([_uniform((B, M), 0.0, width - 1.0, g), _uniform((B, M), 0.0, height - 1.0, g)], -1)
        if planar:
            rays = unproject_points(pixels, torch.ones(B, M, dtype=torch.float64), K)  # (B, M, 3), z = 1
            cos = (rays * normal[:, None]).sum(-1)  # (B, M)
            depth = plane_offset[:, None] / torch.where(cos.abs() > 1e-9, cos, torch.full_like(cos, 1e-9))
            keep = (depth > PLANE_KEEP_DEPTH[0]) & (depth < PLANE_KEEP_DEPTH[1])
        else:
            depth = _uniform((B, M), *DEPTH_RANGE, g)
            keep = torch.ones(B, M, dtype=torch.bool)
        cand1 = unproject_points(pixels, depth, K)  # (B, M, 3)
        cand2 = cand1 @ R.transpose(1, 2) + t[:, None]
        proj2, z2, _ = project_points(cand2, K)
        keep = keep & (z2 > MIN_DEPTH_2) & _inside(proj2, width, height)
        slot = count[:, None] + keep.long().cumsum(1) - 1  # (B, M) destination index of each kept candidate
        take = keep & (slot < N)
        bi, mi = take.nonzero(as_tuple=True)
        points1[bi, slot[bi, mi]] = cand1[bi, mi]
        count = (count + keep.long().sum(1)).clamp(max=N)
        if bool((count == N).all()):
            break
    else:
        raise RuntimeError(f"could not place {N} points visible in both views within {MAX_ROUNDS} draws; reduce the "
                           f"rotation or the baseline")

    x1, _, _ = project_points(points1, K)
    x2, _, _ = project_points(points1 @ R.transpose(1, 2) + t[:, None], K)
    if noise_px > 0:
        x1 = x1 + noise_px * torch.randn(B, N, 2, generator=g, dtype=torch.float64)
        x2 = x2 + noise_px * torch.randn(B, N, 2, generator=g, dtype=torch.float64)

    num_outliers = round(outlier_ratio * N)
    inliers = torch.ones(B, N, dtype=torch.bool)
    if num_outliers > 0:
        order = torch.rand(B, N, generator=g, dtype=torch.float64).argsort(dim=1)
        inliers.scatter_(1, order[:, :num_outliers], False)
        random_pixels = torch.stack([_uniform((B, N), 0.0, width - 1.0, g), _uniform((B, N), 0.0, height - 1.0, g)],
                                    -1)
        x2 = torch.where(inliers[..., None], x2, random_pixels)

    problem = TwoViewProblem(x1=x1, x2=x2, K=K, R=R, t=t, points1=points1, inliers=inliers,
                             image_size=(width, height))
    return problem.to(device=device, dtype=dtype)
