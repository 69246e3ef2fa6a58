"""Robust relative pose: batched 5-point LO-RANSAC, robust refinement with implicit gradients, GRIC model selection.

:func:`solve_essential_ransac` (the default relative-pose solver) for B problems at once:

1. Hypotheses: minimal 5-point sets drawn by weight (:mod:`.ransac`), solved by :func:`.five_point.solve_five_point`
   (up to 10 essential matrices each), scored by the truncated quadratic (MSAC) Sampson cost in pixels on a weighted
   subset of ``RANKING_POINTS`` points. Rounds of ``HYPOTHESES_PER_ROUND`` continue for each problem until RANSAC's
   stopping rule (one all-inlier sample with ``confidence``, from the best inlier ratio so far) holds or
   ``num_hypotheses`` are drawn; finished problems drop out of later rounds.
2. Local optimisation: the ``LO_CANDIDATES`` best hypotheses are decomposed into (R, t) (cheirality: the most weight
   triangulated in front of both cameras picks among the four), and refined by Levenberg-Marquardt on the essential
   manifold with a Cauchy-weighted Sampson cost on the inliers of a shrinking threshold (``LO_SCHEDULE``); the
   lowest MSAC cost on all points wins.
3. Final refinement on the winner's inliers (weights times the inlier mask) with
   :func:`.essential_refinement.refine_pose_differentiable`: gradients w.r.t. points, weights and intrinsics come
   from the implicit function theorem at the optimum, not from unrolling RANSAC.
4. Model selection (:mod:`.model_selection`, GRIC): pure rotation wins (or a homography that the rotation model
   explains better than the essential one, or an essential fit with most inliers behind a camera) -> ``valid=False``,
   ``info["pure_rotation"]``,
   R = the rotation-only fit (differentiable), t = 0 (never a random direction); homography wins -> ``info["planar"]``,
   the pose stands: on the project's low-parallax handheld and driving pairs the homography often wins while the
   essential pose is right. A plane admits two motions (the two-fold ambiguity of homography decomposition, H&Z 13.5),
   so for a homography winner both motions of its H (:func:`.model_selection.decompose_homography`) are refined like
   LO candidates beside the pose, and the one with the lowest MSAC cost on all points (the off-plane points decide)
   is refined with gradients and returned (measured: a plane plus 24 off-plane points, 3 of 24 problems 7-10 degrees
   off without, none with). On a truly planar scene the choice is still a coin toss: callers that cannot afford
   that reject ``info["planar"]``.

``solver="eight_point"`` runs the previous weighted 8-point MSAC (:func:`.essential.solve_essential_ransac_8pt`)
instead; measured in docs/geometry.md.
"""

from __future__ import annotations

import torch

from ..camera import invert_intrinsics
from ..se3 import nearest_rotation
from .essential import (
    _check_robust_inputs,
    _fundamental,
    _homogeneous,
    _sanitise,
    sampson_distance_sq,
    solve_essential_ransac_8pt,
)
from .essential_refinement import refine_pose, refine_pose_differentiable, sampson_residuals
from .five_point import solve_five_point
from .model_selection import ESSENTIAL, HOMOGRAPHY, ROTATION, decompose_homography, select_model
from .procrustes import solve_procrustes
from .ransac import gather_sets, msac_score, ranking_subset, run_ransac
from .result import PoseEstimate
from .triangulation import triangulate_bearings, weighted_median

SAMPLE_SIZE = 5
DEFAULT_THRESHOLD_PX = 1.0
DEFAULT_NUM_HYPOTHESES = 256
DEFAULT_CONFIDENCE = 0.999
DEFAULT_MIN_PARALLAX_PX = 1.0
HYPOTHESES_PER_ROUND = 32
# Hypotheses are ranked on a weighted subset of this many points (the bulk of the cost is B x 10 H x points).
# Search and LO sizes measured at B = 64, N = 500, 0.5 px, 30 % outliers (loaded 2-core machine, one thread) and on
# 24 driving pairs of KeypointNet matches: 3 LO candidates x 6 iterations, final 10, 128 ranking points: 13.6 ms per
# problem, 0.037 / 0.173 deg, driving 86 % usable; the values below: 8.4 ms, 0.041 / 0.173 deg, 85 %.
RANKING_POINTS = 64
RANKING_DTYPE = torch.float32
STOPPING_THRESHOLD_FACTOR = 2.0
# Local optimisation: this many best hypotheses are refined; each refinement runs LO_ITERATIONS LM steps on the
# inliers at each threshold multiple of LO_SCHEDULE in turn (a loose start lets a noisy minimal model collect its
# inliers before the strict threshold decides).
LO_CANDIDATES = 2
LO_SCHEDULE = (3.0, 1.0)
LO_ITERATIONS = 4
FINAL_ITERATIONS = 8
# LO only chooses the start and inliers of the float64 final refinement: float32 halves its cost.
LO_DTYPE = torch.float32
# Cauchy scale of the LO and final refinement, times the threshold. poselib uses half its threshold; measured here
# (48 seed-1 pairs per regime): 1.0 / 0.5 / 0.35 give driving usable 94 / 88 / 90 %, handheld t-dir median 25 / 26 /
# 18 deg, pure rotation flagged 90 / 85 / 88 %: no setting better everywhere, 1.0 kept.
CAUCHY_SCALE_FACTOR = 1.0
LO_STEP_TOLERANCE = 1e-5
CHEIRALITY_POINTS = 128
# A valid pose has at least this fraction of the inlier weight in front of both cameras.
MIN_CHEIRAL_FRACTION = 0.5
# Homography winners: the other motion the plane admits is tried (see _planar_twin).
PLANAR_TWIN = True


def _sampson_sq_scores(F: torch.Tensor, x1_t: torch.Tensor, x2_t: torch.Tensor) -> torch.Tensor:
    """Squared Sampson distances of many hypotheses, for ranking: F (B, H, 3, 3), points transposed (B, 3, N) ->
    (B, H, N).

    Same value as :func:`.essential.sampson_distance_sq`. Points as columns and the H hypotheses stacked as rows
    make each product one (3 H x 3) @ (3 x N) matmul per problem, without materialising the points once per
    hypothesis (measured at B = 64, H = 320, N = 64: the ranking from 29 + 17 ms of broadcast bmm and copies to
    a few ms).
    """
    B, H = F.shape[:2]
    N = x1_t.shape[-1]
    Fx1 = (F.reshape(B, H * 3, 3) @ x1_t).view(B, H, 3, N)
    Ftx2 = (F[..., :2].transpose(-1, -2).reshape(B, H * 2, 3) @ x2_t).view(B, H, 2, N)  # rows 0, 1 of F^T x2
    x2_t = x2_t.unsqueeze(1)
    numerator = Fx1[:, :, 0] * x2_t[:, :, 0] + Fx1[:, :, 1] * x2_t[:, :, 1] + Fx1[:, :, 2] * x2_t[:, :, 2]
    denominator = Fx1[:, :, 0].square() + Fx1[:, :, 1].square() + Ftx2[:, :, 0].square() + Ftx2[:, :, 1].square()
    return numerator.square() / denominator.clamp_min(torch.finfo(denominator.dtype).tiny)


def _decompose_essential(E: torch.Tensor):
    """(M, 3, 3) essential matrices -> the twisted-pair rotations R_a, R_b (M, 3, 3) and t (M, 3) (sign open).

    The classical SVD form (H&Z 9.6.2): hypotheses are chosen without gradients, so the SVD's infinite derivative at
    the two equal singular values does not matter here, and one batched 3 x 3 SVD costs a fifth of the smooth polar
    iteration of :func:`.essential._essential_candidates` at B = 1.
    """
    U, _, Vh = torch.linalg.svd(E)
    U = U * torch.sign(torch.linalg.det(U))[:, None, None]
    Vh = Vh * torch.sign(torch.linalg.det(Vh))[:, None, None]
    W = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=E.dtype, device=E.device)
    return U @ W @ Vh, U @ W.T @ Vh, U[..., 2]


def _pick_by_cheirality(E: torch.Tensor, b1: torch.Tensor, b2: torch.Tensor, w: torch.Tensor):
    """(M, 3, 3) essential matrices, (M, N, 3) bearings, (M, N) weights -> R (M, 3, 3), t (M, 3) of the four
    decompositions the one with the most weight triangulated in front of both cameras, and that weight fraction."""
    R_a, R_b, t = _decompose_essential(E)
    R_cand = torch.stack([R_a, R_a, R_b, R_b], dim=1)  # (M, 4, 3, 3)
    t_cand = torch.stack([t, -t, t, -t], dim=1)
    front = triangulate_bearings(b1.unsqueeze(1), b2.unsqueeze(1), R_cand, t_cand).in_front
    front_weight = (front.to(w.dtype) * w.unsqueeze(1)).sum(-1)  # (M, 4)
    best = front_weight.argmax(-1)
    rows = torch.arange(E.shape[0], device=E.device)
    return R_cand[rows, best], t_cand[rows, best], front_weight[rows, best] / w.sum(-1).clamp_min(1e-300)


def _cheiral_fraction(R, t, b1, b2, w):
    front = triangulate_bearings(b1, b2, R, t).in_front
    return (front.to(w.dtype) * w).sum(-1) / w.sum(-1).clamp_min(1e-300)


def _assess(R, t, x1h, x2h, x1d, x2d, b1, b2, K1_inv, K2_inv, K2d, w, usable, found, threshold_px):
    """Inliers, cheirality and model selection of the refined pose.

    Returns:
        squared Sampson residuals (B, N), inliers (B, N), the inlier weight fraction in front of both cameras (B,),
        median Sampson distance (B,) and :func:`select_model`'s dict.
    """
    with torch.no_grad():
        residual_sq = sampson_residuals(R.detach(), t.detach(), x1h, x2h, K1_inv, K2_inv).square()
        inliers = msac_score(residual_sq[:, None], threshold_px, usable)[1][:, 0] & found[:, None]
        median_sampson = weighted_median(residual_sq.sqrt(), (w * inliers).clamp_min(0))
        cheiral = _cheiral_fraction(R.detach(), t.detach(), b1, b2, w * inliers)
    selection = select_model(residual_sq, x1d, x2d, b1, b2, K2d, usable, inliers | ~found[:, None], threshold_px)
    return residual_sq, inliers, cheiral, median_sampson, selection


@torch.no_grad()
def _planar_twin(H, R, t, x1h, x2h, b1, b2, K1_inv, K2_inv, w, usable, threshold_px):
    """The pose or one of the two motions of the homography H, whichever fits all points best.

    Each of the current pose and the two decompositions of H (:func:`.model_selection.decompose_homography`) is
    refined as in LO (LM on the inliers at each threshold multiple of ``LO_SCHEDULE``, float64) and scored by MSAC
    on all points.

    Returns:
        R (P, 3, 3), t (P, 3) of the winner (sign by cheirality), its inliers (P, N) and ``replace`` (P,): a
        decomposition won.
    """
    P, N = w.shape
    R_h, t_h = decompose_homography(H, K1_inv, K2_inv, b1, b2, w * usable)
    R_c = torch.cat([R.unsqueeze(1), R_h], dim=1).reshape(P * 3, 3, 3)
    t_c = torch.cat([t.unsqueeze(1), t_h], dim=1).reshape(P * 3, 3)
    rep = lambda v: v.unsqueeze(1).expand(P, 3, *v.shape[1:]).reshape(P * 3, *v.shape[1:])  # noqa: E731
    x1k, x2k, K1k, K2k, wk, usable_k = rep(x1h), rep(x2h), rep(K1_inv), rep(K2_inv), rep(w), rep(usable)
    ok = torch.isfinite(R_c).flatten(1).all(-1) & torch.isfinite(t_c).all(-1) & (t_c.norm(dim=-1) > 0.5)
    eye = torch.eye(3, dtype=R.dtype, device=R.device)
    R_c = torch.where(ok[:, None, None], R_c, eye)
    t_c = torch.where(ok[:, None], t_c, torch.tensor([0.0, 0.0, 1.0], dtype=t.dtype, device=t.device))
    residual_sq = sampson_residuals(R_c, t_c, x1k, x2k, K1k, K2k).square()
    for factor in LO_SCHEDULE:
        inliers = msac_score(residual_sq[:, None], factor * threshold_px, usable_k)[1][:, 0]
        R_c, t_c, _ = refine_pose(R_c, t_c, x1k, x2k, wk * inliers, K1k, K2k, CAUCHY_SCALE_FACTOR * threshold_px,
                                  LO_ITERATIONS)
        residual_sq = sampson_residuals(R_c, t_c, x1k, x2k, K1k, K2k).square()
    cost, inliers = msac_score(residual_sq[:, None], threshold_px, usable_k)
    cost = torch.where(ok, cost[:, 0], torch.full_like(cost[:, 0], float("inf"))).view(P, 3)
    best = cost.argmin(-1)
    rows = torch.arange(P, device=R.device)
    R_best, t_best = R_c.view(P, 3, 3, 3)[rows, best], t_c.view(P, 3, 3)[rows, best]
    inliers_best = inliers[:, 0].view(P, 3, N)[rows, best]
    vote = w * inliers_best
    flip = _cheiral_fraction(R_best, -t_best, b1, b2, vote) > _cheiral_fraction(R_best, t_best, b1, b2, vote)
    t_best = torch.where(flip[:, None], -t_best, t_best)
    return R_best, t_best, inliers_best, best > 0


class _FivePointHypotheses:
    """5-point essential matrices for :func:`.ransac.run_ransac` (up to 10 per minimal set, validity-masked), scored
    by squared Sampson distances of the ranking points in ``RANKING_DTYPE``."""

    sample_size = SAMPLE_SIZE

    def __init__(self, n1, n2, x1r, x2r, K1_inv, K2_inv):
        self.n1, self.n2, self.K1_inv, self.K2_inv = n1, n2, K1_inv, K2_inv
        # Hypotheses are only ranked here (the winners are refined in float64), so they are scored in RANKING_DTYPE.
        self.x1r = x1r.transpose(1, 2).to(RANKING_DTYPE).contiguous()
        self.x2r = x2r.transpose(1, 2).to(RANKING_DTYPE).contiguous()

    def hypotheses(self, rows, index):
        E, ok = solve_five_point(gather_sets(self.n1[rows], index), gather_sets(self.n2[rows], index))
        E, ok = E.flatten(1, 2), ok.flatten(1, 2)  # (A, count * 10, 3, 3)
        # Only the slots that hold a real root are scored (typically 3-4 of the 10 per minimal set): the problems'
        # real roots first, as many columns as the problem with the most (measured at B = 64: 320 -> ~130 columns).
        keep = max(int(ok.sum(1).max()), 1)
        order = ok.to(torch.int8).argsort(dim=1, descending=True, stable=True)[:, :keep]
        return (torch.gather(E, 1, order[..., None, None].expand(-1, -1, 3, 3)),), torch.gather(ok, 1, order)

    def residuals_sq(self, models, rows):
        F = _fundamental(models[0], self.K1_inv[rows], self.K2_inv[rows]).to(RANKING_DTYPE)
        return _sampson_sq_scores(F, self.x1r[rows], self.x2r[rows])


def _hypothesis_search(n1, n2, x1h, x2h, K1_inv, K2_inv, w, usable, num_hypotheses, threshold_px, confidence,
                       generator):
    """Rounds of 5-point hypotheses (:func:`.ransac.run_ransac`) until each problem's stopping rule holds; finished
    problems drop out.

    The stopping rule needs the inlier ratio of the model LO will make of the best hypothesis; a noisy minimal
    model's inliers at STOPPING_THRESHOLD_FACTOR x the threshold estimate it.

    Returns:
        E (B, LO_CANDIDATES, 3, 3) the best hypotheses by subset MSAC cost (zeros where fewer exist), their costs
        (B, LO_CANDIDATES) and the number of hypotheses drawn per problem (B,).
    """
    B = w.shape[0]
    subset = ranking_subset(w, RANKING_POINTS, generator)
    if subset is None:
        x1r, x2r, usable_r = x1h, x2h, usable
    else:
        pick = lambda v: torch.gather(v, 1, subset.unsqueeze(-1).expand(-1, -1, v.shape[-1]))  # noqa: E731
        x1r, x2r, usable_r = pick(x1h), pick(x2h), torch.gather(usable, 1, subset)
    initial = ((torch.zeros(B, LO_CANDIDATES, 3, 3, dtype=n1.dtype, device=n1.device),),
               torch.full((B, LO_CANDIDATES), float("inf"), dtype=n1.dtype, device=n1.device))
    result = run_ransac(_FivePointHypotheses(n1, n2, x1r, x2r, K1_inv, K2_inv), w, usable_r,
                        num_hypotheses=num_hypotheses, per_round=HYPOTHESES_PER_ROUND, candidates=LO_CANDIDATES,
                        threshold=threshold_px, confidence=confidence,
                        stopping_threshold=STOPPING_THRESHOLD_FACTOR * threshold_px, per_problem_stop=True,
                        initial=initial, generator=generator)
    return result.models[0], result.cost, result.drawn


def _local_optimisation(E, b1, b2, x1h, x2h, K1_inv, K2_inv, w, usable, threshold_px):
    """Decompose and refine (B, k) candidate essential matrices; the best by full MSAC cost per problem.

    Returns:
        R (B, 3, 3), t (B, 3), MSAC cost (B,) and inliers (B, N) of the winner.
    """
    B, k = E.shape[:2]
    N = x1h.shape[1]
    rep = lambda v: v.unsqueeze(1).expand(B, k, *v.shape[1:]).reshape(B * k, *v.shape[1:])  # noqa: E731
    lo = lambda v: rep(v).to(LO_DTYPE)  # noqa: E731
    x1k, x2k, K1k, K2k, wk, usable_k = lo(x1h), lo(x2h), lo(K1_inv), lo(K2_inv), lo(w), rep(usable)
    E = E.reshape(B * k, 3, 3)
    F = _fundamental(E.unsqueeze(1), K1k.double(), K2k.double()).to(LO_DTYPE)
    residual_sq = sampson_distance_sq(F, x1k, x2k)[:, 0]
    inliers = msac_score(residual_sq[:, None], LO_SCHEDULE[0] * threshold_px, usable_k)[1][:, 0]
    degenerate = E.flatten(1).norm(dim=-1) == 0
    E = torch.where(degenerate[:, None, None], torch.eye(3, dtype=E.dtype, device=E.device), E)
    # Cheirality votes on the CHEIRALITY_POINTS heaviest inliers: four decompositions x all points cost as much as
    # the LM below (an evenly strided subset lost 6 % of the usable driving pairs, whose ~55 matches sit among 300
    # padded slots).
    vote = (wk * inliers).double()
    heaviest = vote.topk(min(N, CHEIRALITY_POINTS), dim=-1).indices  # (B k, M)
    pick_points = lambda v: torch.gather(v, 1, heaviest.unsqueeze(-1).expand(-1, -1, 3))  # noqa: E731
    R, t, _ = _pick_by_cheirality(E, pick_points(rep(b1)), pick_points(rep(b2)), torch.gather(vote, 1, heaviest))
    R, t = R.to(LO_DTYPE), t.to(LO_DTYPE)
    for factor in LO_SCHEDULE:
        inliers = msac_score(residual_sq[:, None], factor * threshold_px, usable_k)[1][:, 0]
        R, t, _ = refine_pose(R, t, x1k, x2k, wk * inliers, K1k, K2k, CAUCHY_SCALE_FACTOR * threshold_px, LO_ITERATIONS,
                              step_tolerance=LO_STEP_TOLERANCE)
        residual_sq = sampson_residuals(R, t, x1k, x2k, K1k, K2k).square()
    cost, inliers = msac_score(residual_sq[:, None], threshold_px, usable_k)
    cost = torch.where(degenerate, torch.full_like(cost[:, 0], float("inf")), cost[:, 0]).view(B, k)
    best = cost.argmin(-1)
    rows = torch.arange(B, device=E.device)
    pick = lambda v: v.view(B, k, *v.shape[1:])[rows, best]  # noqa: E731
    # Back to float64 on the manifold: a float32 rotation is orthogonal only to 1e-7, and [t]x R with a non-orthogonal
    # R is no essential matrix, which left noise-free solves stuck at 1e-6 deg.
    R_best, t_best = nearest_rotation(pick(R).double()), torch.nn.functional.normalize(pick(t).double(), dim=-1)
    return R_best, t_best, cost[rows, best].double(), pick(inliers[:, 0])


def solve_essential_ransac(x1: torch.Tensor, x2: torch.Tensor, K: torch.Tensor, weights: torch.Tensor | None = None,
                           num_hypotheses: int = DEFAULT_NUM_HYPOTHESES, threshold_px: float = DEFAULT_THRESHOLD_PX,
                           generator: torch.Generator | None = None, refine: bool = True, *,
                           K2: torch.Tensor | None = None, min_parallax_px: float = DEFAULT_MIN_PARALLAX_PX,
                           confidence: float = DEFAULT_CONFIDENCE, solver: str = "five_point") -> PoseEstimate:
    """Robust relative pose from pixel matches: 5-point LO-RANSAC, implicit-gradient refinement, model selection.

    Args:
        x1: (B, N, 2) pixels in image 1.
        x2: (B, N, 2) pixels in image 2.
        K: (B, 3, 3) intrinsics of camera 1 (and 2 unless ``K2``).
        weights: (B, N) non-negative match weights: sampling probabilities and least-squares weights.
        num_hypotheses: the most minimal sets drawn per problem (fewer when the stopping rule holds earlier).
        threshold_px: inlier threshold on the Sampson distance in pixels (also the Cauchy scale of the refinement).
        generator: RNG on the inputs' device; the result is deterministic under a seeded generator.
        refine: run local optimisation and the final refinement; otherwise the best minimal hypothesis is returned
            (no gradients).
        K2: (B, 3, 3) intrinsics of camera 2, optional.
        min_parallax_px: ``info["low_parallax"]`` is set where the median rotation-compensated parallax of the
            inliers is below this.
        confidence: RANSAC's stopping confidence.
        solver: ``"five_point"`` (default) or ``"eight_point"`` (the weighted 8-point MSAC of
            :func:`.essential.solve_essential_ransac_8pt`; all other arguments but ``confidence`` are forwarded).

    Returns:
        PoseEstimate ``(R (B, 3, 3), t (B, 3) unit, inliers (B, N))`` with ``valid`` (B,) and ``info`` (B,) tensors:
        ``"pure_rotation"`` (the rotation model won: R is the rotation-only fit, t = 0, ``valid`` False),
        ``"rotation_valid"`` (``valid | pure_rotation``), ``"planar"`` (the homography won; the pose stands but may be
        the wrong one of the two a plane admits),
        ``"model"`` (0 essential, 1 homography, 2 rotation) and ``"model_confidence"``, ``"low_parallax"``,
        ``"median_parallax_px"``, ``"median_sampson_px"``, ``"cheiral_fraction"``, ``"num_points"``,
        ``"num_inliers"``, ``"num_hypotheses"``, ``"msac_cost"`` and ``"degenerate"`` (too few usable points or no
        hypothesis). Invalid problems (fewer than 5 usable matches, NaN/inf, identical points, zero weights) give
        ``valid=False``, R = I, t = 0, finite values and zero gradients, without an exception.

    Raises:
        ValueError: on wrong shapes or dtypes, a non-positive ``num_hypotheses`` / ``threshold_px`` or an unknown
            ``solver``.

    Example:
        >>> from priordepth_core.geometry.pose.synthetic_problems import make_two_view_problems
        >>> p = make_two_view_problems(2, 100, noise_px=0.5, outlier_ratio=0.2,
        ...                            generator=torch.Generator().manual_seed(0))
        >>> est = solve_essential_ransac(p.x1, p.x2, p.K, generator=torch.Generator().manual_seed(0))
        >>> bool(est.valid.all()), tuple(est.inliers.shape)
        (True, (2, 100))
    """
    if solver == "eight_point":
        return solve_essential_ransac_8pt(x1, x2, K, weights, num_hypotheses, threshold_px, generator, refine, K2=K2,
                                          min_parallax_px=min_parallax_px)
    if solver != "five_point":
        raise ValueError(f"solver must be 'five_point' or 'eight_point', got {solver!r}")
    # Without gradients the whole solve runs under inference_mode (no autograd bookkeeping on a few thousand small
    # ops: measured 35 -> 27 ms at B = 1, one thread); the outputs are cloned out of it so that callers can use them
    # in autograd graphs.
    if torch.is_grad_enabled() and any(v is not None and v.requires_grad for v in (x1, x2, K, weights, K2)):
        return _solve(x1, x2, K, weights, num_hypotheses, threshold_px, generator, refine, K2, min_parallax_px,
                      confidence)
    with torch.inference_mode():
        est = _solve(x1, x2, K, weights, num_hypotheses, threshold_px, generator, refine, K2, min_parallax_px,
                     confidence)
    out = lambda v: None if v is None else v.clone()  # noqa: E731
    return PoseEstimate(out(est.R), out(est.t), out(est.valid), out(est.inliers),
                        info={key: out(value) for key, value in est.info.items()})


def _solve(x1, x2, K, weights, num_hypotheses, threshold_px, generator, refine, K2, min_parallax_px, confidence):
    """The 5-point path of :func:`solve_essential_ransac` (same arguments)."""
    weights = _check_robust_inputs(x1, x2, K, weights, K2, num_hypotheses, threshold_px)
    B, N = x1.shape[:2]
    device = x1.device
    with torch.no_grad():
        x1d, x2d, K1d, K2d, w, K_ok = _sanitise(x1, x2, K, weights, K2)
        usable = w > 0
        K1_inv, K2_inv = invert_intrinsics(K1d), invert_intrinsics(K2d)
        x1h, x2h = _homogeneous(x1d), _homogeneous(x2d)
        n1, n2 = x1h @ K1_inv.transpose(1, 2), x2h @ K2_inv.transpose(1, 2)
        b1, b2 = torch.nn.functional.normalize(n1, dim=-1), torch.nn.functional.normalize(n2, dim=-1)
        num_points = usable.sum(-1)
        enough = K_ok & (num_points >= SAMPLE_SIZE)
        eye = torch.eye(3, dtype=torch.float64, device=device).expand(B, 3, 3)
        if N >= SAMPLE_SIZE:
            E_cand, cost_cand, drawn = _hypothesis_search(n1, n2, x1h, x2h, K1_inv, K2_inv, w, usable,
                                                          num_hypotheses, threshold_px, confidence, generator)
        else:
            E_cand = torch.zeros(B, 1, 3, 3, dtype=torch.float64, device=device)
            cost_cand = torch.full((B, 1), float("inf"), dtype=torch.float64, device=device)
            drawn = torch.zeros(B, dtype=torch.long, device=device)
        found = enough & torch.isfinite(cost_cand[:, 0])
        if refine:
            R0, t0, msac_cost, inliers = _local_optimisation(E_cand, b1, b2, x1h, x2h, K1_inv, K2_inv, w, usable,
                                                             threshold_px)
        else:
            F = _fundamental(E_cand[:, :1], K1_inv, K2_inv)
            msac_cost, inliers = msac_score(sampson_distance_sq(F, x1h, x2h), threshold_px, usable)
            msac_cost, inliers = msac_cost[:, 0], inliers[:, 0]
            E0 = torch.where(found[:, None, None], E_cand[:, 0], eye)
            R0, t0, _ = _pick_by_cheirality(E0, b1, b2, w * inliers)
        found = found & (inliers.sum(-1) >= SAMPLE_SIZE)
        R0 = torch.where(found[:, None, None], R0, eye)
        t0 = torch.where(found[:, None], t0, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64, device=device))
        inliers = inliers & found[:, None]

    # Final refinement with gradients: float64 copies of the inputs that keep the autograd graph (the sanitised
    # tensors above are detached); bad entries are replaced with torch.where, so their gradient is zero.
    finite = torch.isfinite(x1).all(-1) & torch.isfinite(x2).all(-1) & torch.isfinite(weights)
    zero_xy = torch.zeros_like(x1)
    x1g = _homogeneous(torch.where(finite[..., None], x1, zero_xy).double())
    x2g = _homogeneous(torch.where(finite[..., None], x2, zero_xy).double())
    final_weights = torch.where(finite & inliers, weights, torch.zeros_like(weights)).double()
    K1g = torch.where(K_ok[:, None, None], K.double(), eye)
    K2g = torch.where(K_ok[:, None, None], (K if K2 is None else K2).double(), eye)
    K1_inv_g, K2_inv_g = invert_intrinsics(K1g), invert_intrinsics(K2g)
    if refine:
        R, t = refine_pose_differentiable(R0, t0, x1g, x2g, final_weights, K1_inv_g, K2_inv_g,
                                          CAUCHY_SCALE_FACTOR * threshold_px,
                                          FINAL_ITERATIONS, active=found)
    else:
        R, t = R0, t0

    assess = lambda R, t: _assess(R, t, x1h, x2h, x1d, x2d, b1, b2, K1_inv, K2_inv, K2d, w, usable, found,  # noqa: E731
                                  threshold_px)
    residual_sq, inliers, cheiral, median_sampson, selection = assess(R, t)
    planar_rows = (found & (selection["model"] == HOMOGRAPHY)).nonzero()[:, 0]
    if refine and PLANAR_TWIN and len(planar_rows) > 0:
        # The two-fold ambiguity of a plane: the other motion the homography admits, refined like the LO candidates,
        # replaces the pose where it explains all points (the off-plane ones decide) at a lower MSAC cost.
        R_twin, t_twin, twin_inliers, replace = _planar_twin(
            selection["homography"][planar_rows], R.detach()[planar_rows], t.detach()[planar_rows],
            *(v[planar_rows] for v in (x1h, x2h, b1, b2, K1_inv, K2_inv, w, usable)), threshold_px)
        if bool(replace.any()):
            rows = planar_rows[replace]
            twin_weights = torch.where(finite[rows] & twin_inliers[replace], weights[rows],
                                       torch.zeros_like(weights[rows])).double()
            R_sub, t_sub = refine_pose_differentiable(R_twin[replace], t_twin[replace], x1g[rows], x2g[rows],
                                                      twin_weights, K1_inv_g[rows], K2_inv_g[rows],
                                                      CAUCHY_SCALE_FACTOR * threshold_px, FINAL_ITERATIONS)
            R, t = R.clone(), t.clone()
            R[rows], t[rows] = R_sub, t_sub
            residual_sq, inliers, cheiral, median_sampson, selection = assess(R, t)
    # The rotation-only fit, differentiable w.r.t. the matches, on its own inliers.
    b1g = torch.nn.functional.normalize(x1g @ K1_inv_g.transpose(1, 2), dim=-1)
    b2g = torch.nn.functional.normalize(x2g @ K2_inv_g.transpose(1, 2), dim=-1)
    rot = solve_procrustes(b1g, b2g, torch.where(selection["rotation_inliers"] & finite, weights,
                                                 torch.zeros_like(weights)).double(), with_translation=False)
    with torch.no_grad():
        median_parallax = weighted_median(selection["rotation_error_sq"].sqrt(), w * inliers)
    # Pure rotation: the rotation model wins; or a homography wins but the rotation model beats the essential one
    # (a plane at infinity); or the essential model wins with most inlier weight behind a camera (no valid
    # translation). Measured on 48 pairs per regime of KeypointNet matches (seed 1, not the benchmark's): pure
    # rotation flagged 71 % -> 90 %, driving usable 94 % -> 94 %, handheld usable 6 % -> 4 %.
    model = selection["model"]
    gric = selection["gric"]
    rotation_like = ((model == ROTATION) | ((model == HOMOGRAPHY) & (gric[:, ROTATION] < gric[:, ESSENTIAL]))
                     | ((model == ESSENTIAL) & (cheiral < MIN_CHEIRAL_FRACTION)))
    pure_rotation = found & rotation_like & rot.valid
    model = torch.where(pure_rotation, torch.full_like(model, ROTATION), model)
    planar = found & (model == HOMOGRAPHY)
    valid = found & ~pure_rotation & (cheiral >= MIN_CHEIRAL_FRACTION)
    R_out = torch.where(pure_rotation[:, None, None], rot.R, torch.where(valid[:, None, None], R, eye))
    t_out = torch.where(valid[:, None], t, torch.zeros_like(t))
    inliers_out = torch.where(pure_rotation[:, None], selection["rotation_inliers"], inliers)
    info = {
        "pure_rotation": pure_rotation,
        "rotation_valid": valid | pure_rotation,
        "planar": planar,
        "model": torch.where(found, model, torch.full_like(model, -1)),
        "model_confidence": torch.where(found, selection["confidence"], torch.zeros_like(selection["confidence"])),
        "low_parallax": found & (median_parallax < min_parallax_px),
        "median_parallax_px": median_parallax,
        "median_sampson_px": median_sampson,
        "cheiral_fraction": cheiral,
        "num_points": num_points,
        "num_inliers": inliers_out.sum(-1),
        "num_hypotheses": drawn,
        "msac_cost": msac_cost,
        "degenerate": ~found,
    }
    dtype = x1.dtype
    return PoseEstimate(R_out.to(dtype), t_out.to(dtype), valid, inliers_out, info=info)
