"""The pose sources: one class each, one interface, ``solve(problem, generator) -> PoseResult``.

- :class:`PoseNetSource` (``posenet``): MonoDepth2's PoseNet prediction, given in the problem; never fails.
- :class:`PnPSource` (``pnp``): target keypoints lifted to 3D with the depth, robust PnP to the context keypoints.
  The translation carries the depth's scale.
- :class:`EssentialSource` (``essential``): rotation and translation direction from the weighted essential matrix,
  the translation length from the depth (triangulated vs given depth at the inliers). A pure rotation is detected by
  the solver and gives t = 0; its pose is valid.
- :class:`AnchoredEssentialSource` (``priordepth``): the default for training: rotation and translation direction of
  a precomputed essential matrix on frozen native-resolution matches (the match cache), the translation length from
  the depth at the inliers against their triangulated depth (a detached robust median ratio), so the pose does not
  follow the depth: a flat depth is no fixed point of the photometric loss, as it is under PnP.
- :class:`AnchoredRotationPoseNetSource` (``priordepth_posenet_t``): the cached rotation with the PoseNet's
  translation (the handheld comparison of docs/experiments.md).
- :class:`FallbackSource`: a primary source, and where its pose is not supported a fallback's pose when that one is
  better supported; it records which won per pair (``pnp_essential``, and the trainer's ``pose.fallback``).
"""

from __future__ import annotations

import abc

import numpy as np
import poselib
import torch

from ..geometry.pose import recover_translation_scale, solve_essential_ransac, solve_pnp_ransac
from ..geometry.pose.essential_refinement import sampson_residuals
from ..geometry.pose.triangulation import weighted_median
from ..geometry.se3 import make_transform
from ..losses.sparse_prior import sample_depth_at
from .problem import EssentialStatus, PoseProblem, PoseSourceSettings
from .result import PoseResult, invalid_result

# Fewest matches each solver can use (its minimal set); below it no solve is attempted.
PNP_MIN_MATCHES = 6
# poselib's RANSAC stops adaptively after at least this many iterations (its default, 1000, is for offline use: at
# batch 1 on the Pipeline's 300 matches 100 already reach its success probability).
POSELIB_MIN_ITERATIONS = 100
ESSENTIAL_MIN_MATCHES = 8
# Fewest triangulated inliers for a depth-derived translation length.
MIN_SCALE_POINTS = 5


class PoseSource(abc.ABC):
    """A named way of finding ``T_context_target`` for a batch of frame pairs.

    Attributes:
        name: the registry name (``pose.source`` of the trainer, ``pose_source`` of the Pipeline).
        needs_matches: the source solves from keypoint matches (the caller must run the KeypointNet).
        needs_posenet: the source uses a PoseNet prediction (the caller must run a PoseNet).
        needs_match_cache: the source reads a precomputed essential solve (the ``essential_*`` and
            ``triangulated_depth_target`` fields of the problem, from the frozen match cache).
        has_fallback: some pairs may take a fallback's pose (``PoseResult.fallback_used``).
    """

    name: str = ""
    needs_matches: bool = True
    needs_posenet: bool = False
    needs_match_cache: bool = False
    has_fallback: bool = False

    def __init__(self, settings: PoseSourceSettings):
        self.settings = settings

    @abc.abstractmethod
    def solve(self, problem: PoseProblem, generator: torch.Generator | None = None) -> PoseResult:
        """Poses of ``problem``'s pairs; ``generator`` makes the robust sampling reproducible."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def _result(self, R: torch.Tensor, t: torch.Tensor, valid: torch.Tensor, inliers: torch.Tensor,
                pure_rotation: torch.Tensor, problem: PoseProblem, failure: str) -> PoseResult:
        T = make_transform(R, t).to(problem.K.dtype)
        valid = valid & torch.isfinite(T).flatten(1).all(dim=1)
        identity = torch.eye(4, dtype=T.dtype, device=T.device).expand_as(T)
        T = torch.where(valid[:, None, None], T, identity)
        num_inliers = inliers.sum(dim=1)
        supported = valid & (num_inliers >= self.settings.min_inliers)
        return PoseResult(T, valid, supported, inliers, num_inliers, pure_rotation, self.name, failure,
                          self.settings.min_inliers)

    def _too_few_matches(self, problem: PoseProblem, failure: str) -> PoseResult:
        return invalid_result(problem.batch_size, problem.num_matches, self.name, failure, self.settings.min_inliers,
                              problem.K.dtype, problem.K.device)


class PoseNetSource(PoseSource):
    """The PoseNet's prediction as the pose: valid and supported for every pair."""

    name = "posenet"
    needs_matches = False
    needs_posenet = True

    def solve(self, problem: PoseProblem, generator: torch.Generator | None = None) -> PoseResult:
        problem.require(self.name, "posenet_T_context_target")
        T = problem.posenet_T_context_target
        true = torch.ones(T.shape[0], dtype=torch.bool, device=T.device)
        return PoseResult(T, true, true.clone(), None, torch.zeros(T.shape[0], dtype=torch.int64, device=T.device),
                          torch.zeros_like(true), self.name, "", self.settings.min_inliers)


class PnPSource(PoseSource):
    """Robust PnP of the lifted target keypoints on the context keypoints (seeded by the problem's motion prior)."""

    name = "pnp"
    FAILURE = "PnP found no pose (too few or degenerate matches)"

    def solve(self, problem: PoseProblem, generator: torch.Generator | None = None) -> PoseResult:
        problem.require(self.name, "x_target", "x_context", "weights")
        problem.require_depth(self.name)
        if problem.num_matches < PNP_MIN_MATCHES:
            return self._too_few_matches(problem, self.FAILURE)
        settings = self.settings
        dtype = settings.pnp_dtype or problem.K.dtype
        init = problem.init_rotation_translation()
        if init is not None:
            init = (init[0].to(dtype), init[1].to(dtype))
        est = solve_pnp_ransac(problem.target_points(settings.detach_depth).to(dtype), problem.x_context.to(dtype),
                               problem.K.to(dtype), problem.weights.to(dtype), num_hypotheses=settings.num_hypotheses,
                               threshold_px=settings.threshold_px, generator=generator,
                               refine=settings.differentiable, init=init)
        return self._result(est.R, est.t, est.valid, est.inliers, torch.zeros_like(est.valid), problem, self.FAILURE)


class EssentialSource(PoseSource):
    """Essential matrix for rotation and translation direction, the depth for the translation length."""

    name = "essential"
    FAILURE = "no essential matrix, or no translation scale from the depth"

    def solve(self, problem: PoseProblem, generator: torch.Generator | None = None) -> PoseResult:
        problem.require(self.name, "x_target", "x_context", "weights")
        problem.require_depth(self.name)
        if problem.num_matches < ESSENTIAL_MIN_MATCHES:
            return self._too_few_matches(problem, self.FAILURE)
        x_target, x_context, K, weights = problem.x_target, problem.x_context, problem.K, problem.weights
        est = solve_essential_ransac(x_target, x_context, K, weights, num_hypotheses=self.settings.num_hypotheses,
                                     threshold_px=self.settings.threshold_px, generator=generator)
        pure_rotation = est.info.get("pure_rotation", torch.zeros_like(est.valid))
        inlier_weights = weights * est.inliers.to(weights.dtype)
        # The lifted keypoints' depth where the caller has it (the Pipeline), else the depth map at the nearest pixel.
        if problem.points_target is not None:
            depth = {"depth_at_x1": problem.points_target[..., 2]}
        else:
            depth = {"depth1": problem.depth_target}
        scale, scale_valid = recover_translation_scale(x_target, x_context, K, est.R, est.t, weights=inlier_weights,
                                                       **depth)
        t = torch.where(pure_rotation[:, None], torch.zeros_like(est.t), est.t * scale[:, None])
        # A detected pure rotation has a correct R and t = 0, whatever the depth.
        valid = (est.valid | pure_rotation) & (scale_valid | pure_rotation)
        return self._result(est.R, t, valid, est.inliers, pure_rotation, problem, self.FAILURE)


class AnchoredEssentialSource(PoseSource):
    """The cached essential pose with its translation length from the depth: ``priordepth``.

    Per pair, by :class:`EssentialStatus`: ``OK``: R, the unit direction times ``s``, the weighted median over the
    inliers of predicted depth / unit-baseline triangulated depth (differentiable, so the warp is invariant to the
    depth's global scale; ``settings.detach_depth`` detaches it); ``LOW_PARALLAX``: the same pose, but the pair does
    not train the depth (``depth_gradient`` False); ``ROTATION_ONLY``: R with t = 0 (the warp is a homography that
    no depth changes); ``FAILED``, or fewer than ``MIN_SCALE_POINTS`` usable inliers: invalid.
    """

    name = "priordepth"
    needs_matches = False
    needs_match_cache = True
    FAILURE = "no cached essential pose, or too few triangulated inliers for its scale"

    def solve(self, problem: PoseProblem, generator: torch.Generator | None = None) -> PoseResult:
        scale, scale_valid, status, inliers = _anchored_scale(self.name, problem, self.settings)
        T_essential = problem.essential_T_context_target.to(problem.K.dtype)
        has_direction = (status == EssentialStatus.OK) | (status == EssentialStatus.LOW_PARALLAX)
        rotation_only = status == EssentialStatus.ROTATION_ONLY
        t = torch.where(has_direction[:, None], T_essential[:, :3, 3] * scale[:, None],
                        torch.zeros_like(T_essential[:, :3, 3]))
        valid = (has_direction & scale_valid) | rotation_only
        result = self._result(T_essential[:, :3, :3], t, valid, inliers, rotation_only, problem, self.FAILURE)
        result.supported = valid  # the solve's support was judged when the cache was built
        result.depth_gradient = status == EssentialStatus.OK
        result.translation_scale = scale.detach()
        return result


class AnchoredRotationPoseNetSource(PoseSource):
    """The cached essential rotation with the PoseNet's translation: ``priordepth_posenet_t``.

    Where the cached solve failed the pair takes the PoseNet's whole pose. ``translation_scale`` is the same depth /
    triangulation ratio as ``priordepth``'s (the sparse prior's scale).
    """

    name = "priordepth_posenet_t"
    needs_matches = False
    needs_posenet = True
    needs_match_cache = True

    def solve(self, problem: PoseProblem, generator: torch.Generator | None = None) -> PoseResult:
        problem.require(self.name, "posenet_T_context_target")
        scale, _, status, inliers = _anchored_scale(self.name, problem, self.settings)
        posenet = problem.posenet_T_context_target
        solved = status != EssentialStatus.FAILED
        R = torch.where(solved[:, None, None], problem.essential_T_context_target[:, :3, :3].to(posenet.dtype),
                        posenet[:, :3, :3])
        T = make_transform(R, posenet[:, :3, 3])
        true = torch.ones_like(solved)
        return PoseResult(T, true, true.clone(), inliers, inliers.sum(dim=1), status == EssentialStatus.ROTATION_ONLY,
                          self.name, "", self.settings.min_inliers, translation_scale=scale.detach())


def _anchored_scale(name: str, problem: PoseProblem, settings: PoseSourceSettings
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(scale (B,), scale_valid (B,), status (B,), inliers (B, N)) of a problem carrying a cached essential solve:
    the weighted median over the inliers of predicted / unit-baseline triangulated depth."""
    problem.require(name, "x_target", "weights", "essential_T_context_target", "essential_status",
                    "triangulated_depth_target")
    problem.require_depth(name)
    # The length follows the depth's global scale *with* its gradient, so that the warp is exactly invariant to a
    # uniform rescaling of the depth and the photometric loss has no gradient along it: with a detached length the
    # depth's scale drifted to the network's min_depth bound and its range collapsed (driving abs_rel 0.50 vs
    # PoseNet's 0.21 at 999 steps, docs/experiments.md). pose.detach_depth restores the detached length.
    depth = problem.depth_target.detach() if settings.detach_depth else problem.depth_target
    predicted = sample_depth_at(depth, problem.x_target.to(depth.dtype)).to(problem.K.dtype)
    triangulated = problem.triangulated_depth_target.to(problem.K.dtype)
    inliers = problem.weights > 0
    usable = inliers & (triangulated > 0) & (predicted > 0)
    ratio = torch.where(usable, predicted / triangulated.clamp(min=1e-12), torch.zeros_like(predicted))
    scale = weighted_median(ratio, usable.to(ratio.dtype))
    scale_valid = (usable.sum(dim=1) >= MIN_SCALE_POINTS) & torch.isfinite(scale.detach()) & (scale.detach() > 0)
    return scale, scale_valid, problem.essential_status, inliers


class FallbackSource(PoseSource):
    """``primary``'s pose, replaced per pair by ``fallback``'s where the primary's is not supported and the fallback's
    is better: supported, or valid with more inliers (or the primary's invalid).

    Args:
        primary, fallback: the two sources; the fallback runs only when some pair needs it.
        name: the registry name of the combination.
        note: why a fallback pose is used, in words (diagnostics, the Pipeline's message).
    """

    has_fallback = True

    def __init__(self, primary: PoseSource, fallback: PoseSource, name: str, note: str):
        super().__init__(primary.settings)
        self.primary, self.fallback = primary, fallback
        self.name = name
        self.note = note
        self.needs_matches = primary.needs_matches or fallback.needs_matches
        self.needs_posenet = primary.needs_posenet or fallback.needs_posenet

    def __repr__(self) -> str:
        return f"FallbackSource({self.name!r}: {self.primary!r} -> {self.fallback!r})"

    def solve(self, problem: PoseProblem, generator: torch.Generator | None = None) -> PoseResult:
        first = self.primary.solve(problem, generator)
        needed = ~first.supported
        if not bool(needed.any()):
            return first
        return self._merge(first, self.fallback.solve(problem, generator), needed, self.note)

    @staticmethod
    def _merge(first: PoseResult, second: PoseResult, needed: torch.Tensor, note: str) -> PoseResult:
        """``first`` with ``second``'s pose where ``needed`` and ``second``'s is better (see the class)."""
        better = second.supported | (second.valid & (~first.valid | (second.num_inliers > first.num_inliers)))
        use = needed & better
        T = torch.where(use[:, None, None], second.T_context_target.to(first.T_context_target.dtype),
                        first.T_context_target)
        inliers, num_inliers, pure_rotation = first.inliers, first.num_inliers, first.pure_rotation
        if second.inliers is not None:  # a PoseNet fallback has no inliers: the primary's stay as diagnostics
            inliers = torch.where(use[:, None], second.inliers, first.inliers)
            num_inliers = torch.where(use, second.num_inliers, first.num_inliers)
            pure_rotation = torch.where(use, second.pure_rotation, first.pure_rotation)
        return PoseResult(T, torch.where(use, second.valid, first.valid),
                          torch.where(use, second.supported, first.supported), inliers, num_inliers, pure_rotation,
                          first.method, first.failure, first.min_inliers, use, second.method, note)


class EpipolarCheckedSource(FallbackSource):
    """A PnP primary whose pose must also agree with the epipolar geometry, else the essential-matrix fallback.

    PnP fits the matches through the predicted depth: with per-point depth errors a wrong pose can reproject more
    lifted points within the threshold than the right one (measured with poselib's LO-RANSAC PnP on the synthetic
    suites: 4 deg and 70 % translation error on 20-25 inliers, docs/odometry.md). The epipolar constraint does not
    involve the depth, so both poses are scored on it. The PnP pose stays only where (a) its Sampson inliers (same
    pixel threshold) number at least ``epipolar_agreement`` times the essential pose's own inliers, and (b) its PnP
    inliers number at least ``depth_agreement`` times the essential's: where the depth explains far fewer matches
    than the two-view geometry does, the depth-derived translation length of the essential pose (a median over its
    inliers) is the safer one (on the problem above the PnP pose kept 0.96 of the epipolar inliers with an 80 %
    translation error, from 25 of 200 matches). Both solvers run on every pair (poselib's take about a millisecond
    each at batch 1).
    """

    def __init__(self, primary: PoseSource, fallback: PoseSource, name: str, note: str, epipolar_agreement: float,
                 depth_agreement: float):
        super().__init__(primary, fallback, name, note)
        for label, value in (("epipolar_agreement", epipolar_agreement), ("depth_agreement", depth_agreement)):
            if not 0 <= value <= 1:
                raise ValueError(f"{label} must be in [0, 1], got {value}")
        self.epipolar_agreement, self.depth_agreement = epipolar_agreement, depth_agreement

    def solve(self, problem: PoseProblem, generator: torch.Generator | None = None) -> PoseResult:
        first = self.primary.solve(problem, generator)
        second = self.fallback.solve(problem, generator)
        epipolar_inliers = self.epipolar_inliers(first.T_context_target, problem)
        agrees = ((epipolar_inliers.to(second.num_inliers.dtype) >= self.epipolar_agreement * second.num_inliers)
                  & (first.num_inliers >= self.depth_agreement * second.num_inliers))
        disagrees = first.supported & ~agrees & second.valid
        notes = "; ".join(filter(None, (
            self.note if bool((~first.supported).any()) else "",
            (f"{self.primary.name} pose contradicts the epipolar geometry; pose from {self.fallback.name}"
             if bool(disagrees.any()) else ""))))
        return self._merge(first, second, ~first.supported | disagrees, notes)

    def epipolar_inliers(self, T_context_target: torch.Tensor, problem: PoseProblem) -> torch.Tensor:
        """(B,) matches (weight > 0) within the pixel threshold of the epipolar lines of the pose."""
        K_inv = torch.linalg.inv(problem.K.double())
        x_target = torch.cat([problem.x_target.double(), torch.ones_like(problem.x_target[..., :1]).double()], -1)
        x_context = torch.cat([problem.x_context.double(), torch.ones_like(problem.x_context[..., :1]).double()], -1)
        T = T_context_target.double()
        residuals = sampson_residuals(T[:, :3, :3], T[:, :3, 3], x_target, x_context, K_inv, K_inv)
        return ((residuals.abs() <= self.settings.threshold_px) & (problem.weights > 0)).sum(-1)


def _poselib_camera(K: torch.Tensor) -> dict:
    K = K.detach().double().cpu().numpy()
    # width/height only bound poselib's optional checks; the pinhole projection uses fx, fy, cx, cy.
    return {"model": "PINHOLE", "width": int(2 * K[0, 2] + 1), "height": int(2 * K[1, 2] + 1),
            "params": [K[0, 0], K[1, 1], K[0, 2], K[1, 2]]}


def _solve_each_pair(used: np.ndarray, min_matches: int, solve_pair
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Run ``solve_pair(b, index) -> (poselib pose, info)`` on each pair's used matches; (R, t, solved, inliers)
    with identity, unsolved and no inliers where a pair has fewer than ``min_matches`` (matches or inliers)."""
    B, N = used.shape
    R, t = np.tile(np.eye(3), (B, 1, 1)), np.zeros((B, 3))
    solved, inliers = np.zeros(B, dtype=bool), np.zeros((B, N), dtype=bool)
    for b in range(B):
        index = np.flatnonzero(used[b])
        if len(index) < min_matches:
            continue
        pose, info = solve_pair(b, index)
        R[b], t[b], solved[b] = pose.R, pose.t, info["num_inliers"] >= min_matches
        inliers[b, index] = np.asarray(info["inliers"], dtype=bool)
    return R, t, solved, inliers


def _poselib_ransac_options(threshold_key: str, threshold: float, generator: torch.Generator | None) -> dict:
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator)) if generator is not None else 0
    return {threshold_key: threshold, "min_iterations": POSELIB_MIN_ITERATIONS, "seed": seed}


class PoselibPnPSource(PoseSource):
    """poselib's LO-RANSAC PnP (P3P, bundle refinement), one pair at a time on the CPU: for inference, no gradients.

    At batch 1 it is faster than the batched torch PnP (Pipeline pose stage 2.2 vs 9 ms, ``benchmarks/odometry.py``
    column ``f2f/poselib``) but accepts wrong poses where ours falls back (docs/odometry.md); the trainer keeps ``pnp``.
    """

    name = "poselib_pnp"
    FAILURE = "poselib PnP found no pose (too few or degenerate matches)"

    def solve(self, problem: PoseProblem, generator: torch.Generator | None = None) -> PoseResult:
        problem.require(self.name, "x_target", "x_context", "weights")
        problem.require_depth(self.name)
        if problem.num_matches < PNP_MIN_MATCHES:
            return self._too_few_matches(problem, self.FAILURE)
        points = problem.target_points(detach_depth=True).detach().double().cpu().numpy()
        x_context = problem.x_context.detach().double().cpu().numpy()
        used = (problem.weights > 0).cpu().numpy() & np.isfinite(points).all(axis=-1) & (points[..., 2] > 0)

        def solve_pair(b: int, index: np.ndarray):
            return poselib.estimate_absolute_pose(
                x_context[b, index], points[b, index], _poselib_camera(problem.K[b]),
                _poselib_ransac_options("max_reproj_error", self.settings.threshold_px, generator), {})

        R, t, valid, inliers = _solve_each_pair(used, PNP_MIN_MATCHES, solve_pair)
        B = len(valid)
        like = problem.K
        return self._result(torch.from_numpy(R).to(like), torch.from_numpy(t).to(like),
                            torch.from_numpy(valid).to(like.device), torch.from_numpy(inliers).to(like.device),
                            torch.zeros(B, dtype=torch.bool, device=like.device), problem, self.FAILURE)


class PoselibEssentialSource(PoseSource):
    """poselib's 5-point LO-RANSAC relative pose for rotation and direction, the depth for the translation length
    (as :class:`EssentialSource`); one pair at a time on the CPU, for inference. No pure-rotation detection."""

    name = "poselib_essential"
    FAILURE = "poselib found no relative pose, or no translation scale from the depth"

    def solve(self, problem: PoseProblem, generator: torch.Generator | None = None) -> PoseResult:
        problem.require(self.name, "x_target", "x_context", "weights")
        problem.require_depth(self.name)
        if problem.num_matches < ESSENTIAL_MIN_MATCHES:
            return self._too_few_matches(problem, self.FAILURE)
        x_target_np = problem.x_target.detach().double().cpu().numpy()
        x_context_np = problem.x_context.detach().double().cpu().numpy()
        used = (problem.weights > 0).cpu().numpy()

        def solve_pair(b: int, index: np.ndarray):
            camera = _poselib_camera(problem.K[b])
            return poselib.estimate_relative_pose(
                x_target_np[b, index], x_context_np[b, index], camera, camera,
                _poselib_ransac_options("max_epipolar_error", self.settings.threshold_px, generator), {})

        R, t, solved, inliers = _solve_each_pair(used, ESSENTIAL_MIN_MATCHES, solve_pair)
        B = len(solved)
        K, weights = problem.K, problem.weights
        R_t = torch.from_numpy(R).to(K)
        t_t = torch.from_numpy(t).to(K)
        inliers_t = torch.from_numpy(inliers).to(K.device)
        depth = ({"depth_at_x1": problem.points_target[..., 2]} if problem.points_target is not None
                 else {"depth1": problem.depth_target})
        scale, scale_valid = recover_translation_scale(problem.x_target, problem.x_context, K, R_t, t_t,
                                                       weights=weights * inliers_t.to(weights.dtype), **depth)
        valid = torch.from_numpy(solved).to(K.device) & scale_valid
        return self._result(R_t, t_t * scale[:, None].detach(), valid, inliers_t,
                            torch.zeros(B, dtype=torch.bool, device=K.device), problem, self.FAILURE)
