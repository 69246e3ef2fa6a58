"""Relative pose from the essential matrix: weighted, differentiable 8-point solve and its batched robust wrapper.

:func:`solve_essential` (differentiable, for the training step):

1. Pixels become normalised camera coordinates (``K^-1 x``) and are Hartley-normalised with weights (centroid at the
   origin, mean distance sqrt(2)); all of it in float64, the result cast back to the input dtype.
2. The weighted 8-point system ``M = sum_i w_i a_i a_i^T`` (9 x 9, ``a_i = kron(p2_i, p1_i)``) gives E as its
   smallest eigenvector. The eigenvector's backward pass is our own (:class:`_SmallestEigenvector`): it needs only
   the gap between the smallest eigenvalue and the others, whereas ``torch.linalg.eigh``'s backward divides by every
   pairwise gap and returns NaN when two unused eigenvalues coincide.
3. Projection onto the essential manifold and decomposition without an SVD of E, whose two equal singular values
   (the defining property of an essential matrix) make SVD gradients infinite: t is the left null vector of E and v
   its right null vector (smallest eigenvectors of ``E E^T`` and ``E^T E``, well separated from the others), and
   ``R = polar(-[t]x E + t v^T)`` (sign of v chosen for det > 0), the polar factor computed by Newton's iteration
   ``R <- (R + R^-T) / 2``. This equals the classical ``U W V^T`` of the nearest essential matrix (Hartley & Zisserman
   9.6.2) and is smooth. The twisted pair is ``(2 t t^T - I) R``.
4. The four candidates ``(R, ±t)``, ``(R', ±t)`` are scored by the weighted count of points triangulated (midpoint,
   :mod:`.triangulation`) in front of both cameras, per batch entry; the best one is returned.
5. Pure rotation (no measurable parallax) is detected by fitting the rotation-only model (Procrustes on bearings):
   see :func:`solve_essential` for the rule and what is returned.

Degenerate entries (fewer than 8 positive weights, all weights zero, NaN/inf input, collinear or planar points or
pure rotation, where the 8-point null space is not one-dimensional) give ``valid=False`` and finite values and
gradients: the 9 x 9 system of such an entry is replaced by a fixed well-conditioned stand-in before the eigen
solve, and its outputs are replaced by the identity and zero.

Planar scenes: for points on one plane the 8-point system has a three-dimensional null space (H&Z 11.9.2) even when
the motion is general, so E is not determined by it; such scenes come out ``valid=False`` (``info["degenerate"]``),
not with a wrong pose. Homography decomposition would be the tool there (its two-fold ambiguity is inherent).

:func:`solve_essential_ransac_8pt` (reached as ``solve_essential_ransac(..., solver="eight_point")``; the default is
the 5-point LO-RANSAC of :mod:`.lo_ransac`) draws minimal 8-point sets for all batch entries and hypotheses at once,
scores them by the Sampson distance in pixels with MSAC, refits the best on its inliers (local optimisation) and ends
with the differentiable :func:`solve_essential` on the inliers (weights times inlier mask).

kornia's ``kornia.geometry.epipolar`` is not used: its ``run_8point``/``decompose_essential_matrix`` go through
``torch.linalg.svd`` of E (infinite gradients at the equal singular values of an essential matrix) and
``motion_from_essential_choose_solution`` picks the candidate with a cheirality test that has no weights.
"""

from __future__ import annotations

import math

import torch

from ..camera import invert_intrinsics, project_points
from ..se3 import skew
from ..validation import check_same_device_dtype, check_shape
from .procrustes import solve_procrustes
from .ransac import gather_sets, msac_score, ranking_subset, required_hypotheses, sample_minimal_sets, select_best
from .result import PoseEstimate
from .triangulation import triangulate_bearings, weighted_median

MIN_POINTS = 8
SAMPLE_SIZE = 8
# The 8-point null space counts as one-dimensional when the second-smallest eigenvalue of the (trace-normalised)
# system exceeds NULL_GAP_RATIO times the smallest plus NULL_ABS_EPS: planar scenes, pure rotation, collinear points
# and fewer than 8 points leave several near-zero eigenvalues.
NULL_GAP_RATIO = 4.0
NULL_ABS_EPS = 1e-10
# Smallest-eigenvector backward: eigenvalue gaps are floored at this fraction of the largest eigenvalue so that a
# degenerate (already flagged) system cannot produce an infinite gradient.
EIG_GAP_FLOOR = 1e-12
# Newton iterations of the polar decomposition; converges quadratically from singular values near 1.
POLAR_ITERATIONS = 12
# Pure rotation: the weighted median transfer error of the rotation-only model is below this many pixels, or below
# PURE_ROTATION_RATIO times the weighted median Sampson distance of the essential model.
DEFAULT_MIN_PARALLAX_PX = 1.0
PURE_ROTATION_RATIO = 2.0
# The rotation-only fit is repeated ROTATION_TRIM_STEPS times on the points within ROTATION_TRIM_FACTOR times the
# weighted median transfer error.
ROTATION_TRIM_STEPS = 2
ROTATION_TRIM_FACTOR = 3.0
# A valid solution has at least this fraction of the weight in front of both cameras.
MIN_CHEIRAL_FRACTION = 0.5
# Robust solver defaults: threshold on the Sampson distance (pixels, as OpenCV's findEssentialMat), hypotheses,
# local-optimisation refits, and the transfer-error threshold factor used to re-select inliers after a pure rotation.
DEFAULT_THRESHOLD_PX = 1.0
DEFAULT_NUM_HYPOTHESES = 256
# Candidates are the best hypotheses at HYPOTHESIS_THRESHOLD_FACTOR times the threshold and at the threshold itself;
# each is refitted on the inliers of these threshold multiples in turn (a shrinking band lets a noisy minimal model
# collect its inliers before the strict threshold decides). Measured on 64 problems (N=500, 0.5 px noise, 30 %
# outliers): the schedule (4, 2, 1) with 4 candidates gives median errors 0.071 deg / 0.23 deg, the longer
# (10, 4, 2, 1, 0.5, 1) 0.067 / 0.20 at 30 % more time.
HYPOTHESIS_THRESHOLD_FACTOR = 10.0
LOCAL_OPTIMISATION_SCHEDULE = (4.0, 2.0, 1.0)
LOCAL_OPTIMISATION_CANDIDATES = 4
ROTATION_INLIER_FACTOR = 2.0
# Hypotheses are solved and ranked in this precision on a weighted subset of this many points (the final solve is
# float64 on all inliers); at batch 64 x 256 hypotheses x 500 points this more than halved the robust solve's time.
RANKING_DTYPE = torch.float32
RANKING_POINTS = 128
# Hypotheses are drawn in rounds of this many until one all-inlier minimal set has been drawn with this confidence
# (estimated from the best candidate's inlier ratio) or num_hypotheses is reached.
HYPOTHESES_PER_ROUND = 64
RANSAC_CONFIDENCE = 0.999
# Elements (batch x hypotheses x points) scored at once, to bound memory.
SCORE_CHUNK = 2_000_000


class _SmallestEigenvector(torch.autograd.Function):
    """Unit eigenvector of the smallest eigenvalue of symmetric (..., n, n) matrices.

    Backward: ``dv = -sum_{j>0} v_j v_j^T dM v / (l_j - l_0)``, so only the gaps to the smallest eigenvalue matter.
    The sign is fixed so the largest-magnitude component is positive (stable under small perturbations).
    """

    @staticmethod
    def forward(ctx, M):
        evals, evecs = torch.linalg.eigh(M)
        v = evecs[..., 0]
        index = v.abs().argmax(-1, keepdim=True)
        sign = torch.sign(v.gather(-1, index))
        sign = torch.where(sign == 0, torch.ones_like(sign), sign)
        v = v * sign
        evecs = torch.cat([v.unsqueeze(-1), evecs[..., 1:]], dim=-1)
        ctx.save_for_backward(evals, evecs)
        return v

    @staticmethod
    def backward(ctx, grad_v):
        evals, evecs = ctx.saved_tensors
        v, others = evecs[..., 0], evecs[..., 1:]
        floor = EIG_GAP_FLOOR * evals[..., -1:].abs().clamp_min(torch.finfo(evals.dtype).tiny)
        gap = (evals[..., 1:] - evals[..., :1]).clamp_min(floor)  # (..., n-1)
        coeff = (others.transpose(-1, -2) @ grad_v.unsqueeze(-1)).squeeze(-1) / gap
        G = -(others @ coeff.unsqueeze(-1)) @ v.unsqueeze(-2)  # (..., n, n)
        return 0.5 * (G + G.transpose(-1, -2))


def _cofactor(A: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) cofactor matrix (rows a2 x a3, a3 x a1, a1 x a2), so ``A^-T = cof(A) / det(A)``."""
    a1, a2, a3 = A.unbind(-2)
    cross = torch.linalg.cross
    return torch.stack([cross(a2, a3, dim=-1), cross(a3, a1, dim=-1), cross(a1, a2, dim=-1)], dim=-2)


def _polar_rotation(A: torch.Tensor) -> torch.Tensor:
    """Orthogonal polar factor of non-singular (..., 3, 3) matrices with det > 0 (Newton's iteration, smooth)."""
    R = A
    for _ in range(POLAR_ITERATIONS):
        cof = _cofactor(R)
        det = (R[..., 0, :] * cof[..., 0, :]).sum(-1)
        det = torch.where(det.abs() > 1e-300, det, torch.full_like(det, 1e-300))
        R = 0.5 * (R + cof / det[..., None, None])
    return R


def _hartley(p: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """(B, N, 3) homogeneous points (z = 1) and (B, N) weights -> (B, 3, 3) similarity: weighted centroid to the
    origin, weighted mean distance sqrt(2)."""
    w_sum = w.sum(-1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)
    wn = w / w_sum  # (B, N)
    centre = (wn.unsqueeze(-1) * p[..., :2]).sum(1)  # (B, 2)
    dist = ((p[..., :2] - centre[:, None]).square().sum(-1) + 1e-30).sqrt()  # (B, N)
    mean_dist = (wn * dist).sum(-1).clamp_min(1e-12)  # (B,)
    s = math.sqrt(2.0) / mean_dist
    T = torch.zeros(p.shape[0], 3, 3, dtype=p.dtype, device=p.device)
    T[:, 0, 0], T[:, 1, 1], T[:, 2, 2] = s, s, 1.0
    T[:, :2, 2] = -s[:, None] * centre
    return T


def _epipolar_rows(p1: torch.Tensor, p2: torch.Tensor) -> torch.Tensor:
    """(..., N, 3) pairs -> (..., N, 9) rows ``kron(p2, p1)`` with ``row . vec(E) = p2^T E p1`` (row-major E)."""
    return (p2.unsqueeze(-1) * p1.unsqueeze(-2)).flatten(-2)


def _stand_in_system(dtype, device) -> torch.Tensor:
    """A fixed, well-conditioned (9, 9) 8-point system of a general scene (12 points), used for degenerate entries."""
    i = torch.arange(12, dtype=dtype, device=device)
    X = torch.stack([torch.sin(1.3 * i + 0.2), torch.cos(2.1 * i + 0.5), 4.0 + torch.sin(0.7 * i)], dim=-1)
    R = torch.tensor([[0.99, -0.1, 0.0995], [0.1, 0.995, 0.0], [-0.099, 0.0099, 0.995]], dtype=dtype, device=device)
    X2 = X @ R.T + torch.tensor([0.5, 0.1, 0.05], dtype=dtype, device=device)
    rows = _epipolar_rows(X / X[:, 2:], X2 / X2[:, 2:])
    M = rows.T @ rows
    return M / M.diagonal().sum()


def _finite_or_stand_in(M: torch.Tensor) -> torch.Tensor:
    """(..., 9, 9) systems with any non-finite entry replaced by the stand-in (LAPACK's eigh fails on them)."""
    finite = torch.isfinite(M).flatten(-2).all(-1)
    return torch.where(finite[..., None, None], M, _stand_in_system(M.dtype, M.device))


def _weighted_system(n1: torch.Tensor, n2: torch.Tensor, w: torch.Tensor):
    """Hartley-normalised weighted 8-point system.

    Returns:
        M: (B, 9, 9) trace-normalised system; T1, T2: (B, 3, 3) the normalising transforms.
    """
    T1, T2 = _hartley(n1, w), _hartley(n2, w)
    p1, p2 = n1 @ T1.transpose(1, 2), n2 @ T2.transpose(1, 2)
    rows = _epipolar_rows(p1, p2)  # (B, N, 9)
    M = (rows * w.unsqueeze(-1)).transpose(1, 2) @ rows  # (B, 9, 9)
    trace = M.diagonal(dim1=-2, dim2=-1).sum(-1).clamp_min(torch.finfo(M.dtype).tiny)
    return M / trace[:, None, None], T1, T2


def _essential_candidates(E: torch.Tensor):
    """Project E onto the essential manifold and decompose it.

    Args:
        E: (..., 3, 3) (approximately) essential matrix, any scale and sign.

    Returns:
        R_a, R_b: (..., 3, 3) the twisted-pair rotations; t: (..., 3) unit translation (sign undetermined).
    """
    E = E / (0.5 * E.square().sum((-2, -1))).clamp_min(torch.finfo(E.dtype).tiny).sqrt()[..., None, None]
    t = _SmallestEigenvector.apply(E @ E.transpose(-1, -2))  # left null vector: t^T E = 0
    v = _SmallestEigenvector.apply(E.transpose(-1, -2) @ E)  # right null vector: E v = 0
    Q = -skew(t) @ E
    A = Q + t.unsqueeze(-1) * v.unsqueeze(-2)
    sign = torch.sign(torch.linalg.det(A.detach()))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    R_a = _polar_rotation(Q + sign[..., None, None] * t.unsqueeze(-1) * v.unsqueeze(-2))
    eye = torch.eye(3, dtype=E.dtype, device=E.device)
    R_b = (2 * t.unsqueeze(-1) * t.unsqueeze(-2) - eye) @ R_a
    return R_a, R_b, t


def _homogeneous(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, torch.ones_like(x[..., :1])], dim=-1)


def sampson_distance_sq(F: torch.Tensor, x1h: torch.Tensor, x2h: torch.Tensor) -> torch.Tensor:
    """Squared Sampson distance of correspondences to fundamental (or essential) matrices.

    Args:
        F: (B, H, 3, 3) matrices with ``x2^T F x1 = 0``.
        x1h: (B, N, 3) and x2h: (B, N, 3) homogeneous points (z = 1) in the units the distance is wanted in.

    Returns:
        (B, H, N) squared first-order geometric distances (finite).
    """
    Fx1 = torch.einsum("bhij,bnj->bhni", F, x1h)  # (B, H, N, 3)
    Ftx2 = torch.einsum("bhji,bnj->bhni", F, x2h)
    num = (x2h.unsqueeze(1) * Fx1).sum(-1).square()
    den = Fx1[..., :2].square().sum(-1) + Ftx2[..., :2].square().sum(-1)
    return num / den.clamp_min(torch.finfo(den.dtype).tiny)


def _fundamental(E: torch.Tensor, K1_inv: torch.Tensor, K2_inv: torch.Tensor) -> torch.Tensor:
    """(B, H, 3, 3) essential -> fundamental ``K2^-T E K1^-1`` with (B, 3, 3) inverse intrinsics."""
    return K2_inv.transpose(1, 2).unsqueeze(1) @ E @ K1_inv.unsqueeze(1)


def _check_inputs(x1, x2, K, weights, K2):
    dims = check_shape(x1, "x1", ("B", "N", 2))
    check_shape(x2, "x2", ("B", "N", 2), dims)
    check_shape(K, "K", ("B", 3, 3), dims)
    named = [("x1", x1), ("x2", x2), ("K", K)]
    if K2 is not None:
        check_shape(K2, "K2", ("B", 3, 3), dims)
        named.append(("K2", K2))
    check_same_device_dtype(*named)
    if weights is not None:
        check_shape(weights, "weights", ("B", "N"), dims)
        check_same_device_dtype(("x1", x1), ("weights", weights))


def _check_robust_inputs(x1, x2, K, weights, K2, num_hypotheses: int, threshold_px: float) -> torch.Tensor:
    """The checks both robust essential solvers make; the weights, all ones when omitted."""
    _check_inputs(x1, x2, K, weights, K2)
    if num_hypotheses < 1 or threshold_px <= 0:
        raise ValueError(f"num_hypotheses must be >= 1 and threshold_px > 0, got {num_hypotheses}, {threshold_px}")
    return torch.ones_like(x1[..., 0]) if weights is None else weights


def _sanitise(x1, x2, K, weights, K2):
    """float64 copies with non-finite points given zero weight and unusable intrinsics replaced; gradients stay
    finite because ``torch.where`` (not arithmetic) removes the bad values."""
    x1d, x2d = x1.double(), x2.double()
    w = torch.ones_like(x1d[..., 0]) if weights is None else weights.double()
    finite = torch.isfinite(x1d).all(-1) & torch.isfinite(x2d).all(-1) & torch.isfinite(w)
    w = torch.where(finite & (w > 0), w, torch.zeros_like(w))
    x1d = torch.where(finite.unsqueeze(-1), x1d, torch.zeros_like(x1d))
    x2d = torch.where(finite.unsqueeze(-1), x2d, torch.zeros_like(x2d))
    eye = torch.eye(3, dtype=torch.float64, device=x1.device).expand(x1.shape[0], 3, 3)
    K_ok = torch.ones(x1.shape[0], dtype=torch.bool, device=x1.device)
    Ks = []
    for Ki in (K, K if K2 is None else K2):
        Kd = Ki.double()
        ok = torch.isfinite(Kd).flatten(1).all(-1) & (Kd[:, 0, 0] > 0) & (Kd[:, 1, 1] > 0)
        K_ok = K_ok & ok
        Ks.append(Kd)
    K1d = torch.where(K_ok[:, None, None], Ks[0], eye)
    K2d = torch.where(K_ok[:, None, None], Ks[1], eye)
    return x1d, x2d, K1d, K2d, w, K_ok


def _null_space_is_simple(evals: torch.Tensor) -> torch.Tensor:
    """(B, 9) ascending eigenvalues of a trace-normalised system -> (B,) bool, one-dimensional null space."""
    return evals[:, 1] > NULL_GAP_RATIO * evals[:, 0].clamp_min(0) + NULL_ABS_EPS


def _solve_essential_float64(x1d, x2d, K1d, K2d, w, K_ok, min_parallax_px):
    """The body of :func:`solve_essential` on sanitised float64 inputs; returns R, t, valid, info (float64)."""
    B = x1d.shape[0]
    K1_inv, K2_inv = invert_intrinsics(K1d), invert_intrinsics(K2d)
    n1 = _homogeneous(x1d) @ K1_inv.transpose(1, 2)  # (B, N, 3) normalised camera coordinates, z = 1
    n2 = _homogeneous(x2d) @ K2_inv.transpose(1, 2)
    num_points = (w > 0).sum(-1)
    enough = (num_points >= MIN_POINTS) & K_ok

    M, T1, T2 = _weighted_system(n1, n2, w)
    evals = torch.linalg.eigvalsh(M.detach())
    simple = _null_space_is_simple(evals) & torch.isfinite(evals).all(-1)
    solvable = enough & simple
    M_safe = torch.where(solvable[:, None, None], M, _stand_in_system(M.dtype, M.device))
    e = _SmallestEigenvector.apply(M_safe)  # (B, 9)
    E = T2.transpose(1, 2) @ e.reshape(B, 3, 3) @ T1  # (B, 3, 3) in normalised camera coordinates

    R_a, R_b, t_unit = _essential_candidates(E)
    R_cand = torch.stack([R_a, R_a, R_b, R_b], dim=1)  # (B, 4, 3, 3)
    t_cand = torch.stack([t_unit, -t_unit, t_unit, -t_unit], dim=1)  # (B, 4, 3)
    b1 = torch.nn.functional.normalize(n1, dim=-1)
    b2 = torch.nn.functional.normalize(n2, dim=-1)
    tri = triangulate_bearings(b1.unsqueeze(1), b2.unsqueeze(1), R_cand, t_cand)
    front_weight = (tri.in_front.to(w.dtype) * w.unsqueeze(1)).sum(-1)  # (B, 4)
    best = front_weight.argmax(-1)
    batch = torch.arange(B, device=x1d.device)
    R_ess, t_ess = R_cand[batch, best], t_cand[batch, best]
    cheiral_fraction = front_weight[batch, best] / w.sum(-1).clamp_min(1e-300)

    # Rotation-only model and its transfer error in pixels (the parallax left after removing the rotation).
    # A few points that fit the essential model but not the rotation (outliers near an epipolar line) would bias the
    # least-squares rotation, so it is refitted on points within ROTATION_TRIM_FACTOR times the median transfer error.
    w_rot = w
    for _ in range(ROTATION_TRIM_STEPS + 1):
        rot = solve_procrustes(b1, b2, w_rot, with_translation=False)
        x2_rot, _, ahead = project_points(b1 @ rot.R.transpose(1, 2), K2d)
        transfer = torch.where(ahead, (x2_rot - x2d).norm(dim=-1), torch.full_like(w, 1e6))  # (B, N)
        median_parallax = weighted_median(transfer.detach(), w)
        keep = transfer.detach() <= ROTATION_TRIM_FACTOR * median_parallax.clamp_min(1e-6)[:, None]
        w_rot = w * keep
    F = _fundamental(E.detach().unsqueeze(1), K1_inv, K2_inv)
    sampson = sampson_distance_sq(F, _homogeneous(x1d), _homogeneous(x2d)).squeeze(1).sqrt()  # (B, N) pixels
    median_sampson = weighted_median(sampson.detach(), w)
    pure = enough & rot.valid & (
        (median_parallax < min_parallax_px) | (simple & (median_parallax < PURE_ROTATION_RATIO * median_sampson)))

    valid = solvable & ~pure & (cheiral_fraction > MIN_CHEIRAL_FRACTION)
    eye = torch.eye(3, dtype=E.dtype, device=E.device).expand(B, 3, 3)
    R = torch.where(valid[:, None, None], R_ess, torch.where(pure[:, None, None], rot.R, eye))
    t = torch.where(valid[:, None], t_ess, torch.zeros_like(t_ess))
    info = {
        "pure_rotation": pure,
        "rotation_valid": valid | pure,
        "degenerate": enough & ~simple & ~pure,
        "num_points": num_points,
        "cheiral_fraction": cheiral_fraction.detach(),
        "median_parallax_px": median_parallax,
        "median_sampson_px": median_sampson,
        "rotation_only": rot.R,
    }
    return R, t, valid, info


def solve_essential(x1: torch.Tensor, x2: torch.Tensor, K: torch.Tensor, weights: torch.Tensor | None = None, *,
                    K2: torch.Tensor | None = None, min_parallax_px: float = DEFAULT_MIN_PARALLAX_PX) -> PoseEstimate:
    """Relative pose from pixel correspondences by the weighted, differentiable 8-point essential matrix.

    Args:
        x1: (B, N, 2) pixel coordinates in image 1.
        x2: (B, N, 2) matching pixel coordinates in image 2.
        K: (B, 3, 3) intrinsics of camera 1 (and of camera 2 unless ``K2`` is given).
        weights: (B, N) non-negative weights (e.g. match confidence times an inlier mask); ones when omitted.
        K2: (B, 3, 3) intrinsics of camera 2, optional.
        min_parallax_px: pure-rotation threshold on the weighted median transfer error of the rotation-only model.

    Returns:
        PoseEstimate ``(R (B, 3, 3), t (B, 3))`` with ``X2 = R @ X1 + t`` and ``|t| = 1`` where ``valid`` (B,).
        Gradients flow to x1, x2, K and weights. ``info`` holds (B,) tensors:

        - ``"pure_rotation"``: no measurable parallax: the weighted median transfer error of the rotation-only fit
          (Procrustes on bearings) is below ``min_parallax_px``, or below ``PURE_ROTATION_RATIO`` times the median
          Sampson distance of the essential fit. Then ``valid=False`` (t is unobservable), **R is the rotation-only
          fit** (accurate, differentiable) and t = 0. Use ``info["rotation_valid"]`` to accept R alone.
        - ``"rotation_valid"``: ``valid | pure_rotation``.
        - ``"degenerate"``: enough points but the 8-point null space is not one-dimensional (planar or collinear
          points) and no pure rotation: R = I, t = 0.
        - ``"num_points"``, ``"cheiral_fraction"`` (weight in front of both cameras), ``"median_parallax_px"``,
          ``"median_sampson_px"``, and ``"rotation_only"`` (B, 3, 3).

        Invalid entries (fewer than 8 positive finite weights, bad K, degenerate, fewer than half the weight in
        front) have R = I (or the rotation-only fit for pure rotation), t = 0, finite values and gradients.

    Raises:
        ValueError: on wrong shapes, non-floating dtypes or mixed devices/dtypes.

    Example:
        >>> from priordepth_core.geometry.pose.synthetic_problems import make_two_view_problems
        >>> p = make_two_view_problems(2, 50, generator=torch.Generator().manual_seed(0))
        >>> R, t = solve_essential(p.x1, p.x2, p.K)
        >>> bool(torch.allclose(R, p.R, atol=1e-9)), bool(torch.allclose(t, p.t / p.t.norm(dim=-1, keepdim=True)))
        (True, True)
    """
    _check_inputs(x1, x2, K, weights, K2)
    x1d, x2d, K1d, K2d, w, K_ok = _sanitise(x1, x2, K, weights, K2)
    R, t, valid, info = _solve_essential_float64(x1d, x2d, K1d, K2d, w, K_ok, min_parallax_px)
    info["rotation_only"] = info["rotation_only"].to(x1.dtype)
    return PoseEstimate(R.to(x1.dtype), t.to(x1.dtype), valid, info=info)


def _hypotheses(n1: torch.Tensor, n2: torch.Tensor, T1: torch.Tensor, T2: torch.Tensor, index: torch.Tensor,
                dtype: torch.dtype | None = None) -> torch.Tensor:
    """Unweighted 8-point essential matrices of minimal sets, projected onto the essential manifold.

    The null vector is found in Hartley coordinates, mapped back to normalised camera coordinates, and only there
    projected onto the essential manifold (equal singular values): Hartley-space matrices are not essential, and
    projecting them there moves exact minimal solutions away from the truth.

    Args:
        n1, n2: (B, N, 3) normalised camera coordinates (K^-1 x).
        T1, T2: (B, 3, 3) Hartley normalisations of n1 and n2.
        index: (B, H, 8) minimal sets.
        dtype: precision of the solve (float32 suffices for hypotheses: they are only ranked, then refitted).

    Returns:
        (B, H, 3, 3) essential matrices in normalised camera coordinates, in ``dtype``.
    """
    if dtype is not None:
        n1, n2, T1, T2 = n1.to(dtype), n2.to(dtype), T1.to(dtype), T2.to(dtype)
    p1, p2 = n1 @ T1.transpose(1, 2), n2 @ T2.transpose(1, 2)
    rows = _epipolar_rows(gather_sets(p1, index), gather_sets(p2, index))  # (B, H, 8, 9)
    # The null vector of a minimal set does not change when its rows are rescaled; unit rows keep float32 in range
    # when degenerate weights made the Hartley scaling extreme.
    rows = rows / rows.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(rows.dtype).tiny)
    M = _finite_or_stand_in(rows.transpose(-1, -2) @ rows)
    e = torch.linalg.eigh(M).eigenvectors[..., 0]  # (B, H, 9)
    E = T2.transpose(1, 2).unsqueeze(1) @ e.unflatten(-1, (3, 3)) @ T1.unsqueeze(1)
    E = E / E.flatten(-2).norm(dim=-1).clamp_min(torch.finfo(E.dtype).tiny)[..., None, None]
    U, _, Vh = torch.linalg.svd(E)
    diag = torch.tensor([1.0, 1.0, 0.0], dtype=n1.dtype, device=n1.device)
    return (U * diag) @ Vh


def _residuals(F_pix: torch.Tensor, x1h: torch.Tensor, x2h: torch.Tensor) -> torch.Tensor:
    """(B, H, N) squared Sampson distances of fundamental matrices (B, H, 3, 3), chunked over the batch."""
    H, N = F_pix.shape[1], x1h.shape[1]
    step = max(1, SCORE_CHUNK // max(1, H * N))
    return torch.cat([sampson_distance_sq(F_pix[sl], x1h[sl], x2h[sl])
                      for sl in (slice(start, start + step) for start in range(0, F_pix.shape[0], step))])


def solve_essential_ransac_8pt(x1: torch.Tensor, x2: torch.Tensor, K: torch.Tensor,
                               weights: torch.Tensor | None = None, num_hypotheses: int = DEFAULT_NUM_HYPOTHESES,
                               threshold_px: float = DEFAULT_THRESHOLD_PX, generator: torch.Generator | None = None,
                               refine: bool = True, *, K2: torch.Tensor | None = None,
                               min_parallax_px: float = DEFAULT_MIN_PARALLAX_PX) -> PoseEstimate:
    """Robust relative pose: batched 8-point MSAC with local optimisation, finished by :func:`solve_essential`.

    All batch entries and hypotheses are processed at once on the inputs' device: minimal sets are drawn with
    probability proportional to the weights, every hypothesis is scored (MSAC) by the Sampson distance in pixels at
    ``HYPOTHESIS_THRESHOLD_FACTOR * threshold_px``, the best few are refitted (weighted 8-point) on their inliers at the
    shrinking thresholds ``LOCAL_OPTIMISATION_SCHEDULE`` (the lowest MSAC cost at ``threshold_px`` wins) and the final
    pose is the differentiable weighted :func:`solve_essential` on ``weights * inliers``, so gradients reach points
    and weights through the inliers. Where that final solve reports a pure rotation, the inliers are
    re-selected with the rotation-only model (transfer error below ``ROTATION_INLIER_FACTOR * threshold_px``) and the
    rotation refitted on them.

    Args:
        x1: (B, N, 2) pixels in image 1.
        x2: (B, N, 2) pixels in image 2.
        K: (B, 3, 3) intrinsics of camera 1 (and 2 unless ``K2``).
        weights: (B, N) non-negative weights: sampling probabilities and final least-squares weights.
        num_hypotheses: minimal sets per batch entry (256 reaches 99.9 % confidence at about 35 % outliers).
        threshold_px: inlier threshold on the Sampson distance in pixels.
        generator: RNG on the inputs' device for reproducible sampling.
        refine: run the local optimisation (refits on inliers); otherwise the best minimal-set inliers are final.
        K2: (B, 3, 3) intrinsics of camera 2, optional.
        min_parallax_px: forwarded to :func:`solve_essential`.

    Returns:
        PoseEstimate ``(R, t, inliers (B, N) bool)`` with ``valid`` and the ``info`` of :func:`solve_essential` plus
        ``"num_inliers"`` (B,) and ``"msac_cost"`` (B,).

    Raises:
        ValueError: on wrong shapes or dtypes, or a non-positive ``num_hypotheses`` / ``threshold_px``.
    """
    weights = _check_robust_inputs(x1, x2, K, weights, K2, num_hypotheses, threshold_px)
    B, N = x1.shape[:2]
    with torch.no_grad():
        x1d, x2d, K1d, K2d, w, K_ok = _sanitise(x1, x2, K, weights, K2)
        usable = w > 0
        K1_inv, K2_inv = invert_intrinsics(K1d), invert_intrinsics(K2d)
        x1h, x2h = _homogeneous(x1d), _homogeneous(x2d)
        n1, n2 = x1h @ K1_inv.transpose(1, 2), x2h @ K2_inv.transpose(1, 2)
        T1, T2 = _hartley(n1, w), _hartley(n2, w)
        # The hypothesis search and local optimisation only choose the inlier set, in RANKING_DTYPE; the final
        # differentiable solve on those inliers runs in float64.
        lo = RANKING_DTYPE
        n1_lo, n2_lo, w_lo, x1h_lo, x2h_lo = n1.to(lo), n2.to(lo), w.to(lo), x1h.to(lo), x2h.to(lo)
        K1_inv_lo, K2_inv_lo = K1_inv.to(lo), K2_inv.to(lo)
        to_pixels = lambda E_n: K2_inv_lo.transpose(1, 2).unsqueeze(1) @ E_n @ K1_inv_lo.unsqueeze(1)  # noqa: E731

        def refit(mask):
            """(B, k, N) point weights -> (B, k, 3, 3) pixel fundamental matrices of weighted 8-point refits."""
            k = mask.shape[1]
            rep = lambda v: v.unsqueeze(1).expand(B, k, *v.shape[1:]).reshape(B * k, *v.shape[1:])  # noqa: E731
            M, T1r, T2r = _weighted_system(rep(n1_lo), rep(n2_lo), rep(w_lo) * mask.reshape(B * k, N))
            e = torch.linalg.eigh(_finite_or_stand_in(M)).eigenvectors[..., 0]
            E_n = T2r.transpose(1, 2) @ e.reshape(B * k, 3, 3) @ T1r
            U, _, Vh = torch.linalg.svd(E_n)
            E_n = ((U * E_n.new_tensor([1.0, 1.0, 0.0])) @ Vh).reshape(B, k, 3, 3)
            return _fundamental(E_n, K1_inv_lo, K2_inv_lo)

        if N >= SAMPLE_SIZE:
            # Preemptive ranking: every hypothesis is scored on a weighted subset of the points (the bulk of the
            # cost, B x H x subset), only the best few on all points below.
            subset = ranking_subset(w, RANKING_POINTS, generator)  # (B, M) or None
            if subset is not None:
                pick = lambda v: torch.gather(v, 1, subset.unsqueeze(-1).expand(-1, -1, v.shape[-1]))  # noqa: E731
                x1r, x2r, usable_r = pick(x1h_lo), pick(x2h_lo), torch.gather(usable, 1, subset)
            else:
                x1r, x2r, usable_r = x1h_lo, x2h_lo, usable
            rows = torch.arange(B, device=x1.device)[:, None]
            half = max(1, LOCAL_OPTIMISATION_CANDIDATES // 2)
            # Hypotheses come in rounds until RANSAC's stopping rule is met for every batch entry (from the inlier
            # ratio of its best candidate) or num_hypotheses are drawn; candidates carry over between rounds.
            F_c = loose_c = strict_c = None
            drawn = 0
            while drawn < num_hypotheses:
                count = min(HYPOTHESES_PER_ROUND, num_hypotheses - drawn)
                index = sample_minimal_sets(w, count, SAMPLE_SIZE, generator)  # (B, count, 8)
                F_h = to_pixels(_hypotheses(n1, n2, T1, T2, index, lo))  # (B, count, 3, 3)
                drawn += count
                residuals_sq = _residuals(F_h, x1r, x2r)
                # Half the candidates are the best at the loose threshold (noisy minimal models: their inliers lie
                # a few pixels off), half at the strict one (accurate minimal models, which the loose cost cannot
                # tell from models that merely pull more outliers within the loose band).
                loose = msac_score(residuals_sq, HYPOTHESIS_THRESHOLD_FACTOR * threshold_px, usable_r)[0]
                strict = msac_score(residuals_sq, threshold_px, usable_r)[0]
                if F_c is not None:
                    F_h = torch.cat([F_c, F_h], 1)
                    loose, strict = torch.cat([loose_c, loose], 1), torch.cat([strict_c, strict], 1)
                top_loose = loose.topk(min(half, loose.shape[1]), dim=1, largest=False).indices
                strict_rest = strict.scatter(1, top_loose, float("inf"))  # no candidate twice
                top_strict = strict_rest.topk(min(half, loose.shape[1] - top_loose.shape[1]), dim=1,
                                              largest=False).indices
                top = torch.cat([top_loose, top_strict], dim=1)
                F_c, loose_c, strict_c = F_h[rows, top], loose[rows, top], strict[rows, top]
                best = strict_c.argmin(dim=1, keepdim=True)
                best_inliers_r = msac_score(_residuals(F_c[rows, best], x1r, x2r), threshold_px, usable_r)[1][:, 0]
                ratio = best_inliers_r.sum(-1) / usable_r.sum(-1).clamp_min(1)
                if bool((required_hypotheses(ratio, SAMPLE_SIZE, RANSAC_CONFIDENCE) <= drawn).all()):
                    break
            F_cur = F_c  # (B, k, 3, 3)
            residuals_sq = sampson_distance_sq(F_cur, x1h_lo, x2h_lo)  # (B, k, N)
            best_cost, best_inliers = msac_score(residuals_sq, threshold_px, usable)
            mask = msac_score(residuals_sq, LOCAL_OPTIMISATION_SCHEDULE[0] * threshold_px, usable)[1]
        else:
            best_inliers = usable.unsqueeze(1)
            best_cost = torch.full((B, 1), float("inf"), dtype=lo, device=w.device)
            mask = best_inliers

        if refine:
            # Local optimisation of the best few hypotheses: weighted least-squares refits on the inliers of a
            # shrinking threshold (minimal 8-point models are too noisy for their strict-threshold inliers to be a
            # good start); the lowest MSAC cost at threshold_px wins. Each refit's residuals serve twice: for its
            # cost and for the next step's inlier mask.
            for step, factor in enumerate(LOCAL_OPTIMISATION_SCHEDULE):
                if step > 0:
                    mask = msac_score(residuals_sq, factor * threshold_px, usable)[1]
                F_cur = refit(mask.to(lo))
                residuals_sq = sampson_distance_sq(F_cur, x1h_lo, x2h_lo)
                cost, inl = msac_score(residuals_sq, threshold_px, usable)
                better = torch.isfinite(cost) & (cost < best_cost) & (inl.sum(-1) >= MIN_POINTS)
                best_cost = torch.where(better, cost, best_cost)
                best_inliers = torch.where(better[..., None], inl, best_inliers)
        _, best_inliers, best_cost = select_best(best_cost, best_inliers, best_cost)

    final_weights = weights * best_inliers.to(weights.dtype)
    est = solve_essential(x1, x2, K, final_weights, K2=K2, min_parallax_px=min_parallax_px)
    inliers, R = best_inliers, est.R
    pure = est.info["pure_rotation"]
    if bool(pure.any()):
        with torch.no_grad():
            b1 = torch.nn.functional.normalize(n1, dim=-1)
            x2_rot, _, ahead = project_points(b1 @ est.R.detach().double().transpose(1, 2), K2d)
            rot_inliers = ahead & usable & ((x2_rot - x2d).norm(dim=-1) < ROTATION_INLIER_FACTOR * threshold_px)
        b1g = torch.nn.functional.normalize(_homogeneous(x1) @ invert_intrinsics(K).transpose(1, 2), dim=-1)
        b2g = torch.nn.functional.normalize(
            _homogeneous(x2) @ invert_intrinsics(K if K2 is None else K2).transpose(1, 2), dim=-1)
        safe = torch.isfinite(b1g).all(-1) & torch.isfinite(b2g).all(-1)
        b1g = torch.where(safe.unsqueeze(-1), b1g, torch.zeros_like(b1g))
        b2g = torch.where(safe.unsqueeze(-1), b2g, torch.zeros_like(b2g))
        rot = solve_procrustes(b1g, b2g, torch.where(safe & rot_inliers, weights, torch.zeros_like(weights)),
                               with_translation=False)
        use = pure & rot.valid
        R = torch.where(use[:, None, None], rot.R, R)
        inliers = torch.where(use[:, None], rot_inliers, inliers)
    info = dict(est.info)
    info["num_inliers"] = inliers.sum(-1)
    info["msac_cost"] = best_cost
    return PoseEstimate(R, est.t, est.valid, inliers, info=info)
