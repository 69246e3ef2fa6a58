"""Which two-view model the matches support: general motion (essential), a plane (homography) or pure rotation.

Torr's GRIC (Geometric Robust Information Criterion, Torr 1998 / DF-VO's model selection) scores each model by its
robust residuals plus a penalty for the dimension of its manifold in the 4-D space of correspondences and for its
parameter count:

    GRIC = sum_i min(e_i^2 / sigma^2, LAMBDA_3 (r - d)) + LAMBDA_1 d n + LAMBDA_2(n) k,

with r = 4 (two pixels), d = 3 for the essential model (a 3-D variety) and 2 for homographies, k = 5 (essential),
8 (homography) and 3 (pure rotation, the homography at infinity ``K2 R K1^-1``), LAMBDA_1 = log r, LAMBDA_2 = log rn
and LAMBDA_3 = 2. The lowest GRIC wins. Residuals: the Sampson distance for the essential model and half the squared
transfer error for homographies (both measure the squared distance of the 4-D correspondence to the model's variety).
GRIC is summed over the points that are inliers of the essential or of the rotation model: gross outliers would
otherwise add their cap, larger for the 2-D varieties, and bias the choice towards the essential model in proportion
to the outlier ratio. The noise sigma is the larger of two estimates on those points, clamped to
``[MIN_SIGMA_PX, threshold]``: from the essential model's Sampson residuals (MAD) and from the rotation model's
transfer errors (``|e|^2 / (2 sigma^2)`` is chi-square with 2 degrees of freedom, median ``2 ln 2``). The essential
estimate alone is too small exactly where it matters: on a pure rotation the free translation direction absorbs
part of the noise (measured 0.41-0.46 px for 0.5 px noise), which tips GRIC towards the essential model. On the
KeypointNet's matches the effect is stronger (the Sampson residuals of pure-rotation pairs are 1/6 of the rotation
model's instead of 1/2: the matching error runs mostly along the flow, which a translation along the flow
explains), so GRIC flags only about 70 % of those pairs (docs/geometry.md).
"""

from __future__ import annotations

import math

import torch

from ..camera import project_points
from .procrustes import solve_procrustes
from .triangulation import weighted_median

ESSENTIAL, HOMOGRAPHY, ROTATION = 0, 1, 2
MODEL_NAMES = ("essential", "homography", "rotation")
MODEL_DIMENSION = (3, 2, 2)
MODEL_PARAMETERS = (5, 8, 3)
DATA_DIMENSION = 4
LAMBDA_3 = 2.0
# Noise floor: exact synthetic data would otherwise give sigma = 0 and an unbounded GRIC.
MIN_SIGMA_PX = 0.05
MAD_TO_SIGMA = 1.4826
# The rotation and homography fits are repeated on the points within this many thresholds of the previous fit.
REFIT_STEPS = 2
REFIT_THRESHOLD_FACTOR = 2.0


def _homography_dlt(x1: torch.Tensor, x2: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Weighted, Hartley-normalised DLT: (B, N, 2) pixels and (B, N) weights -> (B, 3, 3) homographies x2 ~ H x1."""
    def normaliser(x):
        wn = w / w.sum(-1, keepdim=True).clamp_min(1e-300)
        centre = (wn.unsqueeze(-1) * x).sum(1)
        spread = (wn * (x - centre[:, None]).norm(dim=-1)).sum(-1).clamp_min(1e-12)
        s = math.sqrt(2.0) / spread
        T = torch.zeros(x.shape[0], 3, 3, dtype=x.dtype, device=x.device)
        T[:, 0, 0], T[:, 1, 1], T[:, 2, 2] = s, s, 1.0
        T[:, :2, 2] = -s[:, None] * centre
        return T

    T1, T2 = normaliser(x1), normaliser(x2)
    ones = torch.ones_like(x1[..., :1])
    p1 = torch.cat([x1, ones], -1) @ T1.transpose(1, 2)
    p2 = torch.cat([x2, ones], -1) @ T2.transpose(1, 2)
    zero = torch.zeros_like(p1)
    u, v = p2[..., :1], p2[..., 1:2]
    rows = torch.cat([torch.cat([zero, -p1, v * p1], -1), torch.cat([p1, zero, -u * p1], -1)], dim=1)  # (B, 2N, 9)
    w2 = torch.cat([w, w], dim=1)
    M = (rows * w2.unsqueeze(-1)).transpose(1, 2) @ rows
    M = torch.where(torch.isfinite(M).flatten(1).all(-1)[:, None, None], M, torch.eye(9, dtype=M.dtype))
    h = torch.linalg.eigh(M).eigenvectors[..., 0].reshape(-1, 3, 3)
    return torch.linalg.solve(T2, h @ T1)


def _transfer_sq(H: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """(B, N) squared transfer error |x2 - H x1|^2 (pixels^2); points mapped behind or to infinity get 1e12."""
    mapped = torch.cat([x1, torch.ones_like(x1[..., :1])], -1) @ H.transpose(1, 2)
    z = mapped[..., 2]
    ok = z.abs() > 1e-12
    pixels = mapped[..., :2] / torch.where(ok, z, torch.ones_like(z)).unsqueeze(-1)
    error = (pixels - x2).square().sum(-1)
    return torch.where(ok & torch.isfinite(error), error, torch.full_like(error, 1e12))


def decompose_homography(H: torch.Tensor, K1_inv: torch.Tensor, K2_inv: torch.Tensor, b1: torch.Tensor,
                         b2: torch.Tensor, w: torch.Tensor):
    """The two motions a plane admits: (B, 3, 3) pixel homographies -> R (B, 2, 3, 3), unit t (B, 2, 3) (sign open).

    ``b1, b2`` (B, N, 3) bearings and ``w`` (B, N) weights fix the sign of the homography (``b2 ~ +G b1`` for
    points in front of both cameras).

    The calibrated ``G = K2^-1 H K1`` scaled to middle singular value 1 is ``R + t n^T`` (plane depth 1) for two
    (R, t, n) up to the signs of t and n (Ma, Soatto, Kosecka, Sastry, "An Invitation to 3-D Vision", 5.3.3): with
    ``G^T G = V diag(s1^2, 1, s3^2) V^T``, ``u_{1,2} = (sqrt(1 - s3^2) v1 +- sqrt(s1^2 - 1) v3) / sqrt(s1^2 - s3^2)``,
    ``R_i = [G v2, G u_i, [G v2]x G u_i] [v2, u_i, [v2]x u_i]^T``, ``n_i = [v2]x u_i``, ``t_i = (G - R_i) n_i``.
    Where ``s1 = s3`` (pure rotation) the translations are meaningless (zero up to rounding); callers check.
    """
    G = K2_inv @ H @ torch.linalg.inv(K1_inv)
    G = G / torch.linalg.svdvals(G)[:, 1:2, None].clamp_min(1e-300)
    agreement = (w * ((b1 @ G.transpose(1, 2)) * b2).sum(-1)).sum(-1)
    G = G * torch.where(agreement < 0, -1.0, 1.0).to(G.dtype)[:, None, None]
    evals, V = torch.linalg.eigh(G.transpose(1, 2) @ G)  # ascending: s3^2, 1, s1^2
    s3, s1 = evals[:, 0].clamp(max=1.0), evals[:, 2].clamp(min=1.0)
    v1, v2, v3 = V[..., 2], V[..., 1], V[..., 0]
    denom = (s1 - s3).clamp_min(1e-300).sqrt()[:, None]
    a, b = (1.0 - s3).sqrt()[:, None], (s1 - 1.0).sqrt()[:, None]
    Rs, ts = [], []
    for u in ((a * v1 + b * v3) / denom, (a * v1 - b * v3) / denom):
        U = torch.stack([v2, u, torch.linalg.cross(v2, u, dim=-1)], dim=-1)
        Gv2, Gu = (G @ v2.unsqueeze(-1))[..., 0], (G @ u.unsqueeze(-1))[..., 0]
        W = torch.stack([Gv2, Gu, torch.linalg.cross(Gv2, Gu, dim=-1)], dim=-1)
        R = W @ U.transpose(1, 2)
        n = torch.linalg.cross(v2, u, dim=-1)
        Rs.append(R)
        ts.append(torch.nn.functional.normalize(((G - R) @ n.unsqueeze(-1))[..., 0], dim=-1))
    return torch.stack(Rs, dim=1), torch.stack(ts, dim=1)


def fit_rotation(b1: torch.Tensor, b2: torch.Tensor, x2: torch.Tensor, K2: torch.Tensor, w: torch.Tensor,
                 threshold_px: float):
    """Rotation-only model on bearings, refitted on its own inliers.

    Returns:
        R (B, 3, 3) (differentiable w.r.t. the bearings and weights), squared transfer errors (B, N) and the
        (B, N) inlier mask of the last refit.
    """
    w_fit = w
    for _ in range(REFIT_STEPS + 1):
        rot = solve_procrustes(b1, b2, w_fit, with_translation=False)
        x2_rot, _, ahead = project_points(b1 @ rot.R.transpose(1, 2), K2)
        error_sq = torch.where(ahead, (x2_rot - x2).square().sum(-1), torch.full_like(w, 1e12)).detach()
        keep = error_sq < (REFIT_THRESHOLD_FACTOR * threshold_px) ** 2
        w_fit = torch.where(keep, w, torch.zeros_like(w))
    return rot.R, error_sq, keep


def select_model(sampson_sq: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor, b1: torch.Tensor, b2: torch.Tensor,
                 K2: torch.Tensor, usable: torch.Tensor, inliers: torch.Tensor, threshold_px: float) -> dict:
    """GRIC over essential, homography and pure rotation.

    Args:
        sampson_sq: (B, N) squared Sampson distances (pixels^2) of the essential model.
        x1, x2: (B, N, 2) pixels; b1, b2: (B, N, 3) unit bearings; K2: (B, 3, 3).
        usable: (B, N) bool, points that count; inliers: (B, N) bool, the essential model's inliers.
        threshold_px: the RANSAC inlier threshold.

    Returns:
        dict of (B,) tensors: ``model`` (0 essential, 1 homography, 2 rotation), ``confidence`` (the winner's share of
        ``exp(-GRIC / 2)``), ``gric`` (B, 3), ``sigma_px``, ``rotation_error_sq`` (B, N) and ``rotation_inliers``
        (B, N) of the rotation fit, ``rotation_R`` (B, 3, 3) and ``homography`` (B, 3, 3), the pixel homography
        ``x2 ~ H x1`` refitted on its inliers.
    """
    with torch.no_grad():
        counted = usable & inliers
        w_inl = counted.to(x1.dtype)
        H = _homography_dlt(x1, x2, w_inl)
        for _ in range(REFIT_STEPS):
            keep = _transfer_sq(H, x1, x2) < (REFIT_THRESHOLD_FACTOR * threshold_px) ** 2
            H = _homography_dlt(x1, x2, torch.where(keep & usable, 1.0, 0.0).to(x1.dtype))
        homography_sq = 0.5 * _transfer_sq(H, x1, x2)
    R_rot, rotation_sq, rotation_inliers = fit_rotation(b1, b2, x2, K2, w_inl, threshold_px)
    counted = usable & (inliers | rotation_inliers)
    w_inl = counted.to(x1.dtype)
    sigma_essential = MAD_TO_SIGMA * weighted_median(sampson_sq.sqrt(), w_inl)
    sigma_rotation = (weighted_median(rotation_sq, w_inl) / (4 * math.log(2.0))).sqrt()
    sigma = torch.maximum(sigma_essential, sigma_rotation).nan_to_num(nan=threshold_px)
    sigma = sigma.clamp(MIN_SIGMA_PX, threshold_px)[:, None]
    n = counted.sum(-1).to(x1.dtype).clamp_min(1)
    grics = []
    for model, error_sq in ((ESSENTIAL, sampson_sq), (HOMOGRAPHY, homography_sq), (ROTATION, 0.5 * rotation_sq)):
        d, k = MODEL_DIMENSION[model], MODEL_PARAMETERS[model]
        cap = LAMBDA_3 * (DATA_DIMENSION - d)
        rho = torch.where(counted, (error_sq.detach() / sigma.square()).clamp(max=cap), torch.zeros_like(error_sq))
        grics.append(rho.sum(-1) + math.log(DATA_DIMENSION) * d * n + torch.log(DATA_DIMENSION * n) * k)
    gric = torch.stack(grics, dim=-1)  # (B, 3)
    gric = torch.nan_to_num(gric, nan=float("inf"))
    model = gric.argmin(-1)
    relative = gric - gric.gather(-1, model[:, None])
    confidence = 1.0 / torch.exp(-0.5 * relative).sum(-1)
    return {"model": model, "confidence": confidence, "gric": gric, "sigma_px": sigma[:, 0],
            "rotation_error_sq": rotation_sq, "rotation_inliers": rotation_inliers & usable, "rotation_R": R_rot,
            "homography": H}
