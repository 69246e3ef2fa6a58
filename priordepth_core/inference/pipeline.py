"""The streaming pipeline: one camera frame in, depth, keypoints, matches, pose and its uncertainty out.

Per frame (``Pipeline.process``)::

    image (H, W, 3) uint8, K -> resize to the network size (K scaled alike)
      -> DepthNet -> depth (network scale; x camera-height scale) -> upsampled to (H, W)
      -> KeypointNet -> best cells -> keypoints, scores, descriptors; lifted to 3D with the depth
      -> mutual nearest-neighbour + ratio matching against the last keyframe's descriptors
      -> the pose source ``pose_source`` (default ``pnp_essential``: PnP-RANSAC of the reference's lifted keypoints
         on the current keypoints, the essential matrix as fallback)
      -> T_ref_curr -> T_odom_curr, covariance, tracking state
      -> keyframe decision (keyframes.py: parallax, tracked-match ratio, age); a new keyframe is refined by the
         sliding-window bundle adjustment (window_ba.py, gtsam) over the last keyframes with the depth as a prior

State kept between frames: the reference frame (the last keyframe; every frame with ``keyframe_parallax_px`` 0) with
its keypoints, descriptors and lifted keypoints (never recomputed; refined by the window where it has landmarks), its
odometry pose and covariance, the window of keyframes, the last motion, the last stamp and the blur statistics.

Tracking states: OK with at least ``min_inliers`` inliers on a sharp, translating view; DEGRADED with fewer (but at
least half), on a blurred frame, on pure rotation (the motion does not observe depth) or when only the pose source's
fallback (the essential matrix) worked; LOST below half or without a pose. While lost the pose is held (or
extrapolated, ``lost_motion``) with ``LOST_VARIANCE`` on the covariance diagonal, depth keeps coming, and the next
frames are matched against the last well-tracked frame so the pose recovers exactly where it was; after
``max_frames_lost_reference`` frames the newest frame becomes the reference at the held pose (re-anchoring, said in
``message``). Stamps going back start a new trajectory; a forward gap over ``max_time_gap_s`` re-initialises tracking.
"""

from __future__ import annotations

import collections
import concurrent.futures
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ..geometry.camera import resize_intrinsics_np
from ..geometry.se3 import invert_transform_np
from ..models import gather_matches, match_descriptors, select_keypoints
from ..pose import PoseSourceSettings, build_pose_source
from .backends import NetworkBackend, create_backend
from .config import PipelineConfig, resolve_precision
from .ground_plane import estimate_camera_height
from .keyframes import KeyframePolicy
from .model_file import InferenceModel, load_inference_model, model_path
from .odometry import orthonormalise, propagate, relative_covariance_from_pnp, rotate_covariance
from .relative_pose import RelativePose, estimate_relative_pose
from .result import TIMING_STAGES, FrameResult, TrackingState
from .window_ba import SlidingWindowBundleAdjuster, WindowSettings

# Covariance diagonal (m^2, rad^2) reported while tracking is lost: "unknown", as rtabmap reports.
LOST_VARIANCE = 1e4
# Covariance inflation of a degraded pose (few inliers, blur, pure rotation, essential fallback).
DEGRADED_INFLATION = 10.0
# Recent sharpness values (of frames not flagged blurred) kept for the running median, and how many are needed.
SHARPNESS_HISTORY = 30
MIN_SHARPNESS_HISTORY = 5
# Below this variance of the Laplacian (grey in [0, 1]) the image has no usable texture at all (blank, lens cap).
MIN_TEXTURE_SHARPNESS = 1e-5
# Camera-height scale: per-frame estimates kept for the running median.
SCALE_HISTORY = 15
# Intrinsics equal within this relative tolerance count as unchanged.
K_RTOL = 1e-6


@dataclass
class _Frame:
    """This frame's network outputs (numpy, network resolution)."""

    depth_net: np.ndarray  # (h, w) the network's depth, before ``scale``
    scale: float
    scale_source: str
    keypoints_net: np.ndarray  # (N, 2) valid keypoints
    points: np.ndarray  # (N, 3) keypoints lifted with the scaled depth
    keypoints: dict[str, torch.Tensor]  # select_keypoints output of batch 1, valid keypoints only


@dataclass
class _Pairing:
    """Matches of this frame to the reference: index pairs, and the matched pixels and weights (None without any)."""

    matches: np.ndarray  # (M, 2) int64 (reference index, current index)
    previous_keypoints: np.ndarray  # (P, 2) the reference's keypoints at the input resolution
    x_ref: np.ndarray | None = None  # (M, 2)
    x_curr: np.ndarray | None = None  # (M, 2)
    weights: np.ndarray | None = None  # (M,)


class _Reference:
    """The frame later frames are matched against (numpy, network resolution)."""

    def __init__(self, keypoints: dict[str, torch.Tensor], points: np.ndarray, T_odom: np.ndarray,
                 covariance: np.ndarray, keypoints_input: np.ndarray, scale: float, stamp: float):
        self.keypoints = keypoints  # select_keypoints output of batch 1
        self.points = points  # (N, 3) lifted keypoints, scaled
        self.T_odom = T_odom  # (4, 4)
        self.covariance = covariance  # (6, 6) body-frame
        self.keypoints_input = keypoints_input  # (N, 2) at the input resolution (for drawing)
        self.scale = scale
        self.stamp = stamp


class Pipeline:
    """Stateful streaming inference (see the module docstring).

    Args:
        config: the pipeline settings (validated here).
        checkpoint: packaged inference model or trainer checkpoint; None = the model shipped in the package.
        backend: a ready network runtime to use instead of building ``config.backend`` (e.g. one shared between
            pipelines); it must run at the pipeline's input size.

    Raises:
        ValueError: a bad config or checkpoint.
        FileNotFoundError: a missing checkpoint.
        BackendUnavailableError: the backend cannot run on this machine (e.g. TensorRT without CUDA).

    Example:
        >>> pipeline = Pipeline.from_checkpoint()  # the shipped model, OpenVINO INT8  # doctest: +SKIP
        >>> result = pipeline.process(image_rgb, K, stamp=0.0)  # doctest: +SKIP
        >>> result.depth.shape, result.tracking_state  # doctest: +SKIP
    """

    def __init__(self, config: PipelineConfig | None = None, checkpoint: str | Path | None = None,
                 backend: NetworkBackend | None = None):
        config = PipelineConfig() if config is None else config
        config.validate()
        self.config = config
        self.checkpoint = model_path(checkpoint)  # a path, a shipped name (driving, indoor) or None: the default
        if config.num_threads > 0:
            torch.set_num_threads(config.num_threads)
        self.model: InferenceModel = load_inference_model(self.checkpoint, config.keypoint_checkpoint or None)
        self.input_size = ((config.input_height, config.input_width) if config.input_height
                           else tuple(self.model.input_size))
        if backend is not None and tuple(backend.input_size) != tuple(self.input_size):
            raise ValueError(f"backend runs at {backend.input_size}, the pipeline at {self.input_size}")
        self.backend = backend if backend is not None else create_backend(
            config.backend, self.model, self.input_size, config.device, config.num_threads, config.precision,
            config.onnx_cache)
        self.cell = self.model.keypoint_net.cell
        self.pose_source = build_pose_source(config.pose_source, PoseSourceSettings(
            num_hypotheses=config.ransac_hypotheses, threshold_px=config.ransac_threshold_px,
            min_inliers=config.min_inliers, differentiable=False, pnp_dtype=torch.float32))
        if self.pose_source.needs_posenet:
            raise ValueError(f"pose_source {config.pose_source!r} needs a PoseNet, which the inference model has not; "
                             "use a source that solves from keypoint matches")
        self.keyframe_policy = KeyframePolicy(config.keyframe_parallax_px, config.keyframe_min_tracked_ratio,
                                              config.keyframe_max_frames)
        self._window = SlidingWindowBundleAdjuster(WindowSettings(
            window=config.ba_window_keyframes, robust_px=config.ba_robust_px, depth_sigma=config.ba_depth_sigma,
            max_iterations=config.ba_max_iterations)) if config.window_ba else None
        self._executor = (concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="priordepth-depth")
                          if config.concurrent_networks else None)
        self._clear("first frame")

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None, backend: str | None = None, device: str = "cpu",
                        **config_overrides) -> Pipeline:
        """Build a pipeline from a checkpoint (None = the shipped model) with config fields as keyword arguments;
        ``backend`` None = the config's default (openvino)."""
        if backend is not None:
            config_overrides["backend"] = backend
        config = PipelineConfig().replace(device=device, **config_overrides)
        return cls(config, path)

    def network_precision(self) -> str:
        """What each network runs in, e.g. "depth int8, keypoints int8" (an INT8 graph that failed its parity check
        runs in FP32)."""
        describe = getattr(self.backend, "describe", None)
        if describe is not None:
            return describe()
        try:
            return resolve_precision(self.backend.name, self.config.precision, self.config.device)
        except ValueError:  # a backend object handed in by the caller (not one of the named runtimes)
            return self.config.precision

    # ------------------------------------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget every frame: the next one starts a new trajectory at the identity."""
        self._clear("reset: new trajectory")

    def _clear(self, reason: str) -> None:
        self._reference: _Reference | None = None
        self._image_size: tuple[int, int] | None = None
        self._K: np.ndarray | None = None
        self._T_odom_last = np.eye(4)
        self._covariance_last = np.zeros((6, 6))
        self._motion_last = np.eye(4)  # T_prev_curr of the last tracked frame (constant-velocity prior)
        self._motion_valid = False
        self._frames_lost = 0
        self._frames_since_keyframe = 0
        self._first_tracked_inliers = 0  # inliers of the first frame tracked against the keyframe
        self._last_stamp: float | None = None
        if self._window is not None:
            self._window.reset()
        self._sharpness_history: collections.deque[float] = collections.deque(maxlen=SHARPNESS_HISTORY)
        self._scale_history: collections.deque[float] = collections.deque(maxlen=SCALE_HISTORY)
        self._pending_reinit = reason
        self._generator = torch.Generator().manual_seed(0)
        self._plane_rng = np.random.default_rng(0)

    def _reinitialise(self, reason: str) -> None:
        """Drop the tracking state after a size/intrinsics change; the pose continues unless configured not to."""
        keep = self.config.keep_pose_on_reinit
        T_odom = self._T_odom_last if keep else np.eye(4)
        self._clear(reason + ("; tracking re-initialised at the last pose" if keep
                              else "; tracking re-initialised at the identity"))
        self._T_odom_last = T_odom

    # ------------------------------------------------------------------------------------------------ input
    @staticmethod
    def check_inputs(image_rgb: np.ndarray, K: np.ndarray, stamp: float) -> tuple[np.ndarray, float]:
        """Validate one frame; returns K as float64 and the stamp as float. Raises ValueError naming the problem."""
        if not isinstance(image_rgb, np.ndarray):
            raise ValueError(f"image_rgb must be a numpy array, got {type(image_rgb).__name__}")
        if image_rgb.dtype != np.uint8:
            raise ValueError(f"image_rgb must be uint8 RGB, got dtype {image_rgb.dtype}")
        if image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
            raise ValueError(f"image_rgb must have shape (H, W, 3), got {image_rgb.shape}")
        if image_rgb.shape[0] < 8 or image_rgb.shape[1] < 8:
            raise ValueError(f"image_rgb is too small ({image_rgb.shape[1]}x{image_rgb.shape[0]}); need >= 8x8")
        try:
            K = np.asarray(K, dtype=np.float64) if isinstance(K, (np.ndarray, list, tuple)) else None
        except (TypeError, ValueError):
            K = None
        if K is None or K.shape != (3, 3):
            raise ValueError(f"K must be a (3, 3) intrinsics matrix, got {getattr(K, 'shape', None)}")
        if not np.all(np.isfinite(K)):
            raise ValueError("K contains non-finite values")
        if not (K[0, 0] > 0 and K[1, 1] > 0) or not np.allclose(K[2], (0.0, 0.0, 1.0)) or K[1, 0] != 0 \
                or K[2, 0] != 0:
            raise ValueError(f"K must be pinhole intrinsics [[fx, s, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0, "
                             f"got {K.tolist()}")
        try:
            stamp = float(stamp)
        except (TypeError, ValueError):
            raise ValueError(f"stamp must be a number of seconds, got {stamp!r}") from None
        if not np.isfinite(stamp):
            raise ValueError(f"stamp must be finite, got {stamp}")
        return K, stamp

    def _network_intrinsics(self, K: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
        """K of the image resized to the network input (pixel centres at integers, as resize_intrinsics)."""
        return resize_intrinsics_np(K, image_hw, self.input_size)

    # ------------------------------------------------------------------------------------------------ frame
    def process(self, image_rgb: np.ndarray, K: np.ndarray, stamp: float) -> FrameResult:
        """Run one frame; see the module docstring and :class:`FrameResult`.

        Raises:
            ValueError: wrong image dtype/shape, malformed or non-finite K, non-finite stamp (state unchanged).
        """
        start = time.perf_counter()
        K, stamp = self.check_inputs(image_rgb, K, stamp)
        timings = dict.fromkeys(TIMING_STAGES, 0.0)
        image_hw = image_rgb.shape[:2]
        messages: list[str] = []
        self._follow_time(stamp)
        reinitialized = self._follow_camera(image_hw, K, messages)
        tensor, K_net, sharpness = self._preprocess(image_rgb, K)
        timings["preprocess"] = (time.perf_counter() - start) * 1e3

        frame = self._run_networks(tensor, K_net, timings, messages)
        reference = self._reference
        t = time.perf_counter()
        pairing = self._match(frame, reference)
        if reference is not None:
            t, timings["matching"] = _lap(t)
        relative = self._relative_pose(reference, pairing, K_net)

        state, T_odom, covariance_body, T_prev_curr, covariance_rel, state_message = self._track(
            relative, reference, sharpness)
        if state_message:
            messages.append(state_message)
        keypoints_input = _to_input_pixels(frame.keypoints_net, self.input_size, image_hw)
        keyframe, T_odom = self._update_reference(state, frame, relative, pairing, K_net, T_odom, covariance_body,
                                                  keypoints_input, stamp, messages)
        if reference is not None and state != TrackingState.LOST:
            # The window may have moved this keyframe: the motion reported, and extrapolated from, follows it.
            T_prev_curr = orthonormalise(invert_transform_np(self._T_odom_last) @ T_odom)
            self._motion_last = T_prev_curr
        self._T_odom_last, self._covariance_last = T_odom, covariance_body
        self._last_stamp = stamp
        t, timings["pose"] = _lap(t)

        depth = _upsample_depth(frame.depth_net * frame.scale, image_hw)
        timings["total"] = (time.perf_counter() - start) * 1e3
        covariance = (np.eye(6) * LOST_VARIANCE if state == TrackingState.LOST
                      else rotate_covariance(covariance_body, T_odom[:3, :3]))
        relative_covariance = (np.eye(6) * LOST_VARIANCE if covariance_rel is None
                               else rotate_covariance(covariance_rel, invert_transform_np(relative.T_curr_ref)[:3, :3]))
        return FrameResult(
            stamp=stamp, depth=depth, keypoints=keypoints_input.astype(np.float32),
            keypoint_scores=frame.keypoints["scores"][0].numpy().astype(np.float32),
            points_camera=frame.points.astype(np.float32), matches=pairing.matches,
            match_inliers=np.zeros(0, dtype=bool) if relative is None else np.asarray(relative.inliers, dtype=bool),
            previous_keypoints=pairing.previous_keypoints, T_prev_curr=T_prev_curr, T_odom_curr=T_odom,
            covariance=covariance, tracking_state=state, scale_source=frame.scale_source, timings_ms=timings,
            reinitialized=reinitialized, message="; ".join(messages),
            num_inliers=0 if relative is None else relative.num_inliers, relative_covariance=relative_covariance,
            scale=float(frame.scale), sharpness=sharpness,
            reference_stamp=float("nan") if reference is None else reference.stamp, keyframe=keyframe)

    # ------------------------------------------------------------------------------------------------ stages
    def _follow_time(self, stamp: float) -> None:
        """A new trajectory when the stamps go back (a looping bag, a restarted source); tracking re-initialised
        after a gap longer than ``max_time_gap_s`` (the motion in between is unknown)."""
        last = self._last_stamp
        if last is None:
            return
        if stamp < last:
            self._clear(f"time jumped back by {last - stamp:.3f} s: new trajectory")
        elif 0 < self.config.max_time_gap_s < stamp - last:
            self._reinitialise(f"time jumped forward by {stamp - last:.3f} s (max_time_gap_s "
                               f"{self.config.max_time_gap_s:g})")

    def _follow_camera(self, image_hw: tuple[int, int], K: np.ndarray, messages: list[str]) -> bool:
        """Re-initialise on an image size or intrinsics change; True when this frame has nothing to track against."""
        if self._image_size is not None and image_hw != self._image_size:
            self._reinitialise(f"image size changed from {self._image_size[1]}x{self._image_size[0]} to "
                               f"{image_hw[1]}x{image_hw[0]}")
        elif self._K is not None and not np.allclose(K, self._K, rtol=K_RTOL, atol=0.0):
            self._reinitialise("camera intrinsics changed")
        reinitialized = self._pending_reinit != ""
        if reinitialized:
            messages.append(self._pending_reinit)
            self._pending_reinit = ""
        self._image_size, self._K = image_hw, K.copy()
        return reinitialized

    def _preprocess(self, image_rgb: np.ndarray, K: np.ndarray) -> tuple[torch.Tensor, np.ndarray, float]:
        """Network input (1, 3, h, w) in [0, 1] (area averaging when shrinking), K scaled alike, and sharpness."""
        image_hw = image_rgb.shape[:2]
        h, w = self.input_size
        resized = image_rgb if image_hw == (h, w) else cv2.resize(
            image_rgb, (w, h), interpolation=cv2.INTER_AREA if h * w < image_hw[0] * image_hw[1] else cv2.INTER_LINEAR)
        if not resized.flags.writeable:  # e.g. a decoded ROS message buffer; torch wants to own writable memory
            resized = resized.copy()
        tensor = torch.from_numpy(np.ascontiguousarray(resized)).permute(2, 0, 1)[None].float().div_(255.0)
        grey = cv2.cvtColor(resized, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
        sharpness = float(cv2.Laplacian(grey, cv2.CV_32F).var())
        return tensor, self._network_intrinsics(K, image_hw), sharpness

    def _run_networks(self, tensor: torch.Tensor, K_net: np.ndarray, timings: dict[str, float],
                      messages: list[str]) -> _Frame:
        """DepthNet and KeypointNet (side by side when configured), the depth scale, and the lifted keypoints."""
        if self._executor is not None:
            pending = self._executor.submit(_timed, self.backend.depth, tensor)
            dense, timings["keypoints"] = _timed(self.backend.keypoints, tensor)
            depth_out, timings["depth"] = pending.result()
        else:
            depth_out, timings["depth"] = _timed(self.backend.depth, tensor)
            dense, timings["keypoints"] = _timed(self.backend.keypoints, tensor)
        depth_net = depth_out[0, 0].numpy()  # (h, w) network scale
        selection_start = time.perf_counter()
        keypoints = select_keypoints(dense, top_k=self.config.max_keypoints, cell=self.cell)
        t = time.perf_counter()
        timings["keypoints"] += (t - selection_start) * 1e3

        scale, scale_source, scale_message = self._scale(depth_net, K_net)
        if scale_message:
            messages.append(scale_message)
        _, timings["scale"] = _lap(t)

        valid = keypoints["valid"][0].numpy()
        keypoints_net = keypoints["keypoints"][0].numpy()[valid]  # (N, 2)
        return _Frame(depth_net=depth_net, scale=scale, scale_source=scale_source, keypoints_net=keypoints_net,
                      points=_lift(keypoints_net, depth_net * scale, K_net),
                      keypoints={key: value[:, torch.from_numpy(valid)] for key, value in keypoints.items()})

    def _match(self, frame: _Frame, reference: _Reference | None) -> _Pairing:
        """Mutual nearest-neighbour + ratio matches of this frame's descriptors to the reference's."""
        previous = np.zeros((0, 2), dtype=np.float32) if reference is None else reference.keypoints_input
        if reference is None or not len(frame.keypoints_net) or not len(reference.points):
            return _Pairing(np.zeros((0, 2), dtype=np.int64), previous)
        match = match_descriptors(reference.keypoints["descriptors"], frame.keypoints["descriptors"],
                                  ratio=self.config.match_ratio)
        x_ref, x_curr, weights = gather_matches(reference.keypoints, frame.keypoints, match)
        matched = match["valid"][0].numpy()
        ref_index = np.nonzero(matched)[0]
        cur_index = match["index"][0].numpy()[matched]
        return _Pairing(np.stack([ref_index, cur_index], axis=1).astype(np.int64), previous,
                        x_ref[0].numpy()[matched], x_curr[0].numpy()[matched], weights[0].numpy()[matched])

    def _relative_pose(self, reference: _Reference | None, pairing: _Pairing, K_net: np.ndarray) -> RelativePose | None:
        """``T_curr_ref`` from the configured pose source (None without matches), the last motion as its prior."""
        if pairing.x_ref is None:
            return None
        init = None
        if self._motion_valid and self._frames_lost == 0:
            # Constant velocity from the last frame, expressed relative to the keyframe matched against.
            T_ref_predicted = invert_transform_np(reference.T_odom) @ self._T_odom_last @ self._motion_last
            init = invert_transform_np(T_ref_predicted)
        return estimate_relative_pose(self.pose_source, reference.points[pairing.matches[:, 0]], pairing.x_ref,
                                      pairing.x_curr, pairing.weights, K_net, self._generator, init, LOST_VARIANCE)

    def _scale(self, depth_net: np.ndarray, K_net: np.ndarray) -> tuple[float, str, str]:
        """Depth scale factor, its source, and a message when the camera-height scale is not (yet) available."""
        if self.config.scale_mode != "camera_height":
            return 1.0, "relative", ""
        plane = estimate_camera_height(depth_net, K_net, self._plane_rng)
        if plane is not None:
            self._scale_history.append(self.config.camera_height_m / plane.height)
        if not self._scale_history:
            return 1.0, "relative", "no ground plane found yet: depth and translation in the network's scale"
        message = "" if plane is not None else "no ground plane in this frame: camera-height scale of recent frames"
        return float(np.median(self._scale_history)), "camera_height", message

    def _blurred(self, sharpness: float) -> bool:
        history = self._sharpness_history
        blurred = (len(history) >= MIN_SHARPNESS_HISTORY
                   and sharpness < self.config.blur_ratio * float(np.median(history)))
        if not blurred:
            history.append(sharpness)
        return blurred

    def _track(self, relative: RelativePose | None, reference: _Reference | None, sharpness: float):
        """Tracking state, T_odom_curr, its body covariance, T_prev_curr, the body covariance of the relative pose
        to the reference (None without one) and the reason when not OK."""
        config = self.config
        blurred = self._blurred(sharpness)
        if reference is None:
            return TrackingState.INITIALIZING, self._T_odom_last.copy(), np.zeros((6, 6)), np.eye(4), None, ""
        reasons = []
        if sharpness < MIN_TEXTURE_SHARPNESS:
            lost_reason = "image has no texture"
        elif relative is None or not relative.valid:
            lost_reason = "no pose from the keypoint matches"
        elif relative.num_inliers < (config.min_inliers + 1) // 2:
            lost_reason = f"only {relative.num_inliers} inlier matches (need {config.min_inliers})"
        else:
            lost_reason = ""
        if lost_reason:
            self._frames_lost += 1
            if config.lost_motion == "constant_velocity" and self._motion_valid:
                T_prev_curr = self._motion_last
                T_odom = orthonormalise(self._T_odom_last @ T_prev_curr)
            else:
                T_prev_curr, T_odom = np.eye(4), self._T_odom_last.copy()
            reason = "tracking lost: " + lost_reason + (" (pose extrapolated)" if config.lost_motion ==
                                                        "constant_velocity" and self._motion_valid else
                                                        " (pose held)")
            return TrackingState.LOST, T_odom, self._covariance_last, T_prev_curr, None, reason

        if relative.num_inliers < config.min_inliers:
            reasons.append(f"few inlier matches ({relative.num_inliers} < {config.min_inliers})")
        if blurred:
            reasons.append("image blurred")
        if relative.fallback_note:
            reasons.append(relative.fallback_note)
        noise_floor = max(config.pure_rotation_parallax_px,
                          config.pure_rotation_parallax_ratio * relative.median_residual_px)
        if relative.rotation_deg >= config.pure_rotation_min_deg and relative.parallax_px < noise_floor:
            reasons.append(f"pure rotation ({relative.rotation_deg:.1f} deg, parallax {relative.parallax_px:.2f} px): "
                           "translation observed through depth only")
        T_ref_curr = invert_transform_np(relative.T_curr_ref)
        covariance_rel = relative_covariance_from_pnp(relative.covariance)
        if reasons:
            covariance_rel = covariance_rel * DEGRADED_INFLATION
        T_odom = orthonormalise(reference.T_odom @ T_ref_curr)
        covariance_body = propagate(reference.covariance, T_ref_curr, covariance_rel)
        T_prev_curr = orthonormalise(invert_transform_np(self._T_odom_last) @ T_odom)
        recovered = self._frames_lost > 0
        if recovered:
            reasons_text = f"tracking recovered after {self._frames_lost} lost frame(s)"
            reasons = [reasons_text, *reasons]
        self._frames_lost = 0
        self._motion_last, self._motion_valid = T_prev_curr, True
        state = TrackingState.DEGRADED if any(not r.startswith("tracking recovered") for r in reasons) \
            else TrackingState.OK
        return state, T_odom, covariance_body, T_prev_curr, covariance_rel, "; ".join(reasons)

    def _update_reference(self, state: TrackingState, frame: _Frame, relative: RelativePose | None,
                          pairing: _Pairing, K_net: np.ndarray, T_odom: np.ndarray, covariance_body: np.ndarray,
                          keypoints_input: np.ndarray, stamp: float, messages: list[str]) -> tuple[bool, np.ndarray]:
        """Take this frame as the new keyframe when the policy says so (window-refined), keep the last one otherwise
        (while lost too, for a while). Returns (keyframe taken, this frame's pose, refined where it is a keyframe)."""
        reference = self._reference
        link = None  # inlier matches to the previous keyframe
        if state == TrackingState.LOST:
            if self._frames_lost <= self.config.max_frames_lost_reference:
                return False, T_odom
            # Too long without a match to the last keyframe: start again from this one at the held pose. The jump
            # hidden in the gap is unobservable, so the covariance (and the window) restart as well.
            covariance_body = np.zeros((6, 6))
            self._motion_valid = False
            messages.append(f"re-anchored on this frame after {self._frames_lost} lost frames")
            self._frames_lost = 0
        elif reference is not None:
            self._frames_since_keyframe += 1
            if self._frames_since_keyframe == 1:
                self._first_tracked_inliers = relative.num_inliers
            decision = self.keyframe_policy.decide(relative.parallax_px, relative.num_inliers,
                                                   self._first_tracked_inliers, self._frames_since_keyframe)
            if not decision.new_keyframe:
                return False, T_odom
            link = pairing.matches[np.asarray(relative.inliers, dtype=bool)]
        points = frame.points
        if self._window is not None:
            refined = self._window.add_keyframe(T_odom, K_net, frame.keypoints_net, frame.points, link)
            if refined.optimised:
                T_odom, points = orthonormalise(refined.T_odom_cam), refined.points_cam
            elif refined.num_observations:  # the window had a problem to solve, and the solve failed
                messages.append(refined.message)
        self._reference = _Reference(frame.keypoints, points, T_odom, covariance_body, keypoints_input, frame.scale,
                                     stamp)
        self._frames_since_keyframe = 0
        return True, T_odom


def _timed(function, *args):
    """``(function(*args), milliseconds it took)``."""
    start = time.perf_counter()
    result = function(*args)
    return result, (time.perf_counter() - start) * 1e3


def _lap(since: float) -> tuple[float, float]:
    now = time.perf_counter()
    return now, (now - since) * 1e3


def _lift(pixels: np.ndarray, depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(N, 2) network pixels lifted with the (h, w) depth sampled bilinearly -> (N, 3) camera points."""
    if len(pixels) == 0:
        return np.zeros((0, 3))
    map_x = pixels[:, 0].astype(np.float32).reshape(1, -1)
    map_y = pixels[:, 1].astype(np.float32).reshape(1, -1)
    z = cv2.remap(depth.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)[0]
    z = z.astype(np.float64)
    y = (pixels[:, 1] - K[1, 2]) / K[1, 1]
    x = (pixels[:, 0] - K[0, 2] - K[0, 1] * y) / K[0, 0]
    return np.stack([x * z, y * z, z], axis=1)


def _to_input_pixels(pixels: np.ndarray, network_hw: tuple[int, int], image_hw: tuple[int, int]) -> np.ndarray:
    """Network-resolution pixels -> input-resolution pixels (pixel centres at integers)."""
    sx, sy = image_hw[1] / network_hw[1], image_hw[0] / network_hw[0]
    out = np.empty_like(pixels, dtype=np.float64)
    out[:, 0] = (pixels[:, 0] + 0.5) * sx - 0.5
    out[:, 1] = (pixels[:, 1] + 0.5) * sy - 0.5
    return out


def _upsample_depth(depth: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """(h, w) depth -> (H, W) float32 by bilinear interpolation of the disparity (as MonoDepth2); NaN if invalid."""
    if depth.shape != image_hw:
        disparity = 1.0 / np.maximum(depth, np.float32(1e-12))
        depth = 1.0 / cv2.resize(disparity, (image_hw[1], image_hw[0]), interpolation=cv2.INTER_LINEAR)
    depth = depth.astype(np.float32)
    depth[~np.isfinite(depth) | (depth <= 0)] = np.nan
    return depth
