"""Sliding-window bundle adjustment over the last keyframes, with the predicted depth as a prior on each landmark.

Every keyframe brings its keypoints (network pixels), the keypoints lifted with the DepthNet's depth, and its inlier
matches to the previous keyframe. A match continues the landmark of the previous keyframe's keypoint, or starts a
landmark anchored in the previous keyframe (its point there is the lifted keypoint). When a keyframe arrives the
window (the last ``window`` keyframes) is solved with gtsam's Levenberg-Marquardt:

- variables: each keyframe's ``T_odom_cam`` (``Pose3``; gtsam's camera pose is the camera in the world, optical axes
  as OpenCV's) and each landmark seen at least twice in the window (``Point3`` in the odometry frame);
- reprojection factors (``GenericProjectionFactorCal3_S2``) of every observation, with a Cauchy loss: the pull of
  a mismatch that survived RANSAC fades beyond ``robust_px`` (a Huber loss keeps pulling: 10 matches 40 px off in
  120 moved a pose by 6 cm in tests/inference/test_keyframes_window_ba.py);
- the depth prior: the landmark's distance from its anchor keyframe's centre (``RangeFactor3D``) equals the length
  of the lifted keypoint, with a standard deviation of ``depth_sigma`` times that length. The keypoint's ray is fixed
  by its own reprojection factor, so this is a prior on the landmark's depth along that ray; it is what gives the
  window its scale (the depth's, never the ground truth's);
- the oldest keyframe's pose is held fixed (a tight prior): the gauge of a fixed-lag window whose older part has
  already been reported.

A landmark whose anchor left the window keeps its reprojection factors but no depth prior; one seen only once in the
window is left out. Solving once per keyframe over a few keyframes keeps the problem small (a few hundred landmarks).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import gtsam
import numpy as np
from gtsam.symbol_shorthand import L, X

# Standard deviation (metres in the window's own scale) of the prior that fixes the oldest keyframe's pose: tight
# enough to hold it, loose enough to keep the information matrix well conditioned.
FIXED_POSE_SIGMA = 1e-6
# Fewest keyframes solved: two views a few pixels apart with a loose depth prior are ill-conditioned (on a
# fronto-parallel plane the solve traded 7 cm of translation for pitch to fit the keypoint noise).
MIN_WINDOW_KEYFRAMES = 3
# Landmarks nearer than this (same units as the depth) are not used: their depth prior would be meaningless.
MIN_LANDMARK_RANGE = 1e-6


@dataclass
class WindowSettings:
    """How the window is solved (``PipelineConfig``'s ``ba_*`` fields)."""

    window: int = 6  # keyframes in the window
    reprojection_sigma_px: float = 1.0  # keypoint localisation noise, network pixels
    robust_px: float = 2.0  # scale of the Cauchy loss of the reprojection residual, network pixels
    depth_sigma: float = 0.15  # relative standard deviation of the predicted depth
    max_iterations: int = 10  # Levenberg-Marquardt iterations per keyframe


@dataclass
class WindowResult:
    """What one solve did.

    Attributes:
        T_odom_cam: (4, 4) the newest keyframe's pose after the solve (its input pose where nothing was solved).
        points_cam: (N, 3) the newest keyframe's keypoints in its camera: the refined landmark where the keypoint has
            one in the window, else the lifted keypoint as given.
        optimised: the window was solved (False with a single keyframe, no landmark, or a failed solve).
        rms_before_px, rms_after_px: RMS reprojection error over the window's observations before and after.
        num_landmarks, num_observations: the problem's size.
        message: why nothing was solved ("" otherwise).
    """

    T_odom_cam: np.ndarray
    points_cam: np.ndarray
    optimised: bool = False
    rms_before_px: float = float("nan")
    rms_after_px: float = float("nan")
    num_landmarks: int = 0
    num_observations: int = 0
    message: str = ""


@dataclass
class _Keyframe:
    id: int
    T_odom_cam: np.ndarray  # (4, 4)
    K: np.ndarray  # (3, 3)
    pixels: np.ndarray  # (N, 2) network pixels
    points_cam: np.ndarray  # (N, 3) keypoints lifted with the predicted depth
    landmarks: np.ndarray  # (N,) int64 landmark id per keypoint, -1 = none


@dataclass
class _Landmark:
    anchor: int  # keyframe id
    anchor_range: float  # length of the lifted keypoint in the anchor keyframe
    point_odom: np.ndarray  # (3,)
    observers: list[int] = field(default_factory=list)  # keyframe ids


class SlidingWindowBundleAdjuster:
    """Keyframes in, the refined newest keyframe out (see the module docstring).

    Example:
        >>> adjuster = SlidingWindowBundleAdjuster(WindowSettings(window=5))  # doctest: +SKIP
        >>> result = adjuster.add_keyframe(T_odom_cam, K, pixels, points_cam, inlier_matches)  # doctest: +SKIP
    """

    def __init__(self, settings: WindowSettings | None = None):
        self.settings = WindowSettings() if settings is None else settings
        if self.settings.window < 2:
            raise ValueError(f"the window needs at least 2 keyframes, got {self.settings.window}")
        self.reset()

    def reset(self) -> None:
        """Forget every keyframe and landmark (a new trajectory, or tracking re-anchored without a link)."""
        self._keyframes: deque[_Keyframe] = deque()
        self._landmarks: dict[int, _Landmark] = {}
        self._next_keyframe = 0
        self._next_landmark = 0

    @property
    def num_keyframes(self) -> int:
        return len(self._keyframes)

    def keyframe_poses(self) -> list[np.ndarray]:
        """``T_odom_cam`` of the keyframes in the window, oldest first."""
        return [keyframe.T_odom_cam.copy() for keyframe in self._keyframes]

    def add_keyframe(self, T_odom_cam: np.ndarray, K: np.ndarray, pixels: np.ndarray, points_cam: np.ndarray,
                     matches_to_previous: np.ndarray | None = None) -> WindowResult:
        """Add a keyframe and solve the window.

        Args:
            T_odom_cam: (4, 4) its pose from tracking (the initial value).
            K: (3, 3) intrinsics of ``pixels``.
            pixels: (N, 2) its keypoints; points_cam: (N, 3) the keypoints lifted with the predicted depth.
            matches_to_previous: (M, 2) inlier matches (index in the previous keyframe, index here); None or empty
                for the first keyframe (the window restarts without a link to older keyframes).

        Raises:
            ValueError: mismatched shapes or a match index out of range.
        """
        pixels = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
        points_cam = np.asarray(points_cam, dtype=np.float64).reshape(-1, 3)
        if len(pixels) != len(points_cam):
            raise ValueError(f"{len(pixels)} keypoints but {len(points_cam)} lifted points")
        if matches_to_previous is None or len(matches_to_previous) == 0 or not self._keyframes:
            self.reset()
            matches = np.zeros((0, 2), dtype=np.int64)
        else:
            matches = np.asarray(matches_to_previous, dtype=np.int64).reshape(-1, 2)
        keyframe = _Keyframe(self._next_keyframe, np.asarray(T_odom_cam, dtype=np.float64).copy(),
                             np.asarray(K, dtype=np.float64), pixels, points_cam,
                             np.full(len(pixels), -1, dtype=np.int64))
        self._next_keyframe += 1
        if len(matches):
            self._associate(self._keyframes[-1], keyframe, matches)
        self._keyframes.append(keyframe)
        while len(self._keyframes) > self.settings.window:
            self._drop_oldest()
        return self._solve()

    # ------------------------------------------------------------------------------------------------ bookkeeping
    def _associate(self, previous: _Keyframe, current: _Keyframe, matches: np.ndarray) -> None:
        if matches.min() < 0 or matches[:, 0].max() >= len(previous.pixels) or \
                matches[:, 1].max() >= len(current.pixels):
            raise ValueError("a match indexes a keypoint that does not exist")
        for index_previous, index_current in matches:
            landmark_id = int(previous.landmarks[index_previous])
            if landmark_id < 0:
                point = previous.points_cam[index_previous]
                distance = float(np.linalg.norm(point))
                if not (np.isfinite(point).all() and point[2] > 0 and distance > MIN_LANDMARK_RANGE):
                    continue
                landmark_id = self._next_landmark
                self._next_landmark += 1
                self._landmarks[landmark_id] = _Landmark(
                    previous.id, distance, _transform(previous.T_odom_cam, point), [previous.id])
                previous.landmarks[index_previous] = landmark_id
            elif current.id in self._landmarks[landmark_id].observers:
                continue  # two keypoints of one frame on one landmark: keep the first
            current.landmarks[index_current] = landmark_id
            self._landmarks[landmark_id].observers.append(current.id)

    def _drop_oldest(self) -> None:
        oldest = self._keyframes.popleft()
        for landmark_id in oldest.landmarks[oldest.landmarks >= 0]:
            landmark = self._landmarks[int(landmark_id)]
            landmark.observers.remove(oldest.id)
            if not landmark.observers:
                del self._landmarks[int(landmark_id)]

    # ------------------------------------------------------------------------------------------------ solve
    def _observations(self) -> tuple[list[tuple[_Keyframe, int, int]], set[int]]:
        """(keyframe, keypoint index, landmark id) of every landmark seen by at least 2 keyframes of the window."""
        used = {landmark_id for landmark_id, landmark in self._landmarks.items() if len(landmark.observers) >= 2}
        observations = [(keyframe, int(index), int(keyframe.landmarks[index]))
                        for keyframe in self._keyframes for index in np.nonzero(keyframe.landmarks >= 0)[0]
                        if int(keyframe.landmarks[index]) in used]
        return observations, used

    def _solve(self) -> WindowResult:
        newest = self._keyframes[-1]
        observations, used = self._observations()
        if len(self._keyframes) < MIN_WINDOW_KEYFRAMES or not used:
            return WindowResult(newest.T_odom_cam.copy(), newest.points_cam.copy(),
                                message="window BA skipped: " + (f"fewer than {MIN_WINDOW_KEYFRAMES} keyframes"
                                                                 if len(self._keyframes) < MIN_WINDOW_KEYFRAMES
                                                                 else "no landmark seen twice"))
        settings = self.settings
        graph = gtsam.NonlinearFactorGraph()
        values = gtsam.Values()
        in_window = {keyframe.id for keyframe in self._keyframes}
        for keyframe in self._keyframes:
            values.insert(X(keyframe.id), gtsam.Pose3(keyframe.T_odom_cam))
        oldest = self._keyframes[0]
        graph.add(gtsam.PriorFactorPose3(X(oldest.id), gtsam.Pose3(oldest.T_odom_cam),
                                         gtsam.noiseModel.Isotropic.Sigma(6, FIXED_POSE_SIGMA)))
        reprojection_noise = gtsam.noiseModel.Robust.Create(
            gtsam.noiseModel.mEstimator.Cauchy.Create(settings.robust_px / settings.reprojection_sigma_px),
            gtsam.noiseModel.Isotropic.Sigma(2, settings.reprojection_sigma_px))
        calibrations = {keyframe.id: _calibration(keyframe.K) for keyframe in self._keyframes}
        for landmark_id in used:
            landmark = self._landmarks[landmark_id]
            values.insert(L(landmark_id), landmark.point_odom.copy())
            if landmark.anchor in in_window:
                graph.add(gtsam.RangeFactor3D(X(landmark.anchor), L(landmark_id), landmark.anchor_range,
                                              gtsam.noiseModel.Isotropic.Sigma(
                                                  1, settings.depth_sigma * landmark.anchor_range)))
        for keyframe, index, landmark_id in observations:
            # throwCheirality False: a landmark pushed behind a camera during the iterations costs a large error
            # instead of aborting the solve.
            graph.add(gtsam.GenericProjectionFactorCal3_S2(keyframe.pixels[index], reprojection_noise, X(keyframe.id),
                                                           L(landmark_id), calibrations[keyframe.id], False, False))
        rms_before = self._rms(observations)
        parameters = gtsam.LevenbergMarquardtParams()
        parameters.setMaxIterations(settings.max_iterations)
        try:
            solution = gtsam.LevenbergMarquardtOptimizer(graph, values, parameters).optimize()
        except RuntimeError as error:  # an indeterminate system (e.g. a landmark seen along one ray only)
            return WindowResult(newest.T_odom_cam.copy(), newest.points_cam.copy(), False, rms_before, rms_before,
                                len(used), len(observations), f"window BA failed ({error}); tracking pose kept")
        updated = {keyframe.id: solution.atPose3(X(keyframe.id)).matrix() for keyframe in self._keyframes}
        points = {landmark_id: solution.atPoint3(L(landmark_id)) for landmark_id in used}
        if not all(np.isfinite(T).all() for T in updated.values()) or \
                not all(np.isfinite(p).all() for p in points.values()):
            return WindowResult(newest.T_odom_cam.copy(), newest.points_cam.copy(), False, rms_before, rms_before,
                                len(used), len(observations), "window BA diverged; tracking pose kept")
        for keyframe in self._keyframes:
            keyframe.T_odom_cam = updated[keyframe.id]
        for landmark_id, point in points.items():
            self._landmarks[landmark_id].point_odom = np.asarray(point, dtype=np.float64)
        rms_after = self._rms(observations)
        T_cam_odom = np.linalg.inv(newest.T_odom_cam)
        points_cam = newest.points_cam.copy()
        for index in np.nonzero(newest.landmarks >= 0)[0]:
            landmark_id = int(newest.landmarks[index])
            if landmark_id in used:
                refined = _transform(T_cam_odom, self._landmarks[landmark_id].point_odom)
                if refined[2] > 0:
                    points_cam[index] = refined
        return WindowResult(newest.T_odom_cam.copy(), points_cam, True, rms_before, rms_after, len(used),
                            len(observations))

    def _rms(self, observations: list[tuple[_Keyframe, int, int]]) -> float:
        """RMS reprojection error (pixels) of the observations at the current estimates."""
        squared = []
        T_cam_odom = {keyframe.id: np.linalg.inv(keyframe.T_odom_cam) for keyframe in self._keyframes}
        for keyframe, index, landmark_id in observations:
            point = _transform(T_cam_odom[keyframe.id], self._landmarks[landmark_id].point_odom)
            if point[2] <= 0:
                continue
            projected = keyframe.K @ point
            squared.append(float(np.sum((projected[:2] / projected[2] - keyframe.pixels[index]) ** 2)))
        return float(np.sqrt(np.mean(squared))) if squared else float("nan")


def _transform(T: np.ndarray, point: np.ndarray) -> np.ndarray:
    return T[:3, :3] @ point + T[:3, 3]


def _calibration(K: np.ndarray) -> gtsam.Cal3_S2:
    return gtsam.Cal3_S2(K[0, 0], K[1, 1], K[0, 1], K[0, 2], K[1, 2])
