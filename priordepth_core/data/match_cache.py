"""Frozen keypoint matches and their two-view geometry per sequence, built once and reused by every training run.

Solved-pose training needs, for each target and context frame, keypoint matches and the essential-matrix pose they
give. With frozen keypoints both are functions of the frames alone, so they are computed once per sequence at the
frames' native resolution (where keypoints are 3x more precise than at training resolution, docs/experiments.md) and
stored beside the sequence:

- keypoints: SIFT (default; 0.37 px match error on the driving suite against 1.04 px for the KeypointNet at 320x96)
  or ORB, from OpenCV, mutual nearest neighbours passing Lowe's ratio test;
- per frame pair ``(i, i + d)``, ``1 <= d <= max_offset``: the essential matrix of the 5-point LO-RANSAC with model
  selection (:func:`~priordepth_core.geometry.pose.solve_essential_ransac`, float64), the pair's status (``OK``;
  ``LOW_PARALLAX`` when the solver's median rotation-compensated parallax is below 1 px: the direction is kept but
  may be unreliable; ``ROTATION_ONLY`` when it finds a pure rotation; ``FAILED``), its
  median rotation-compensated parallax, and up to ``max_matches`` inliers with their depths in both frames
  triangulated with a unit baseline and their parallax angle.

A cache file is named by a hash of the settings, the cache version and the frames (names, sizes, intrinsics), so a
change of any of them builds a new one; it is written atomically, so concurrent runs never read a partial file.
About 2 MB per 150-frame sequence with ``max_offset=8``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ..geometry.pose import solve_essential_ransac
from ..geometry.pose.triangulation import triangulate_with_info
from ..pose.problem import EssentialStatus
from .errors import DatasetError
from .frames import Frame, FrameReader

log = logging.getLogger(__name__)

CACHE_VERSION = 1
KEYPOINT_METHODS = ("sift", "orb")
# Pair status codes (the pose layer's, which reads them).
OK, LOW_PARALLAX, ROTATION_ONLY, FAILED = (int(status) for status in EssentialStatus)
# Problems per batched essential solve (the batched solver's time per problem is lowest from about 64 on).
SOLVE_BATCH = 64
# A triangulated point feeds the sparse prior only above this parallax angle (below it keypoint noise dominates).
PRIOR_MIN_PARALLAX_DEG = 0.5


@dataclass(frozen=True)
class MatchCacheSettings:
    """How a sequence's matches and poses are computed (all part of the cache file's key).

    Attributes:
        keypoints: ``"sift"`` or ``"orb"`` (OpenCV), on the native-resolution frames.
        max_offset: pairs up to this many frames apart are cached (the parallax-chosen context frames come from them).
        max_features: keypoints per frame.
        ratio: Lowe's ratio test threshold.
        threshold_px: the essential RANSAC's inlier threshold at native resolution.
        max_matches: inliers kept per pair (the best by descriptor distance).
        num_hypotheses: RANSAC minimal sets per pair.
    """

    keypoints: str = "sift"
    max_offset: int = 3
    max_features: int = 1500
    ratio: float = 0.8
    threshold_px: float = 1.0
    max_matches: int = 200
    num_hypotheses: int = 256

    def __post_init__(self):
        if self.keypoints not in KEYPOINT_METHODS:
            raise ValueError(f"unknown keypoints {self.keypoints!r}; choose one of {', '.join(KEYPOINT_METHODS)}")
        if self.max_offset < 1 or self.max_matches < 8 or self.max_features < 8:
            raise ValueError(f"max_offset must be >= 1 and max_matches, max_features >= 8, got {self}")


@dataclass
class PairMatches:
    """One directed pair: the target's matches into a context frame and the essential pose between them.

    Attributes:
        x_target, x_context: (M, 2) float32 native pixels of the inliers.
        depth_target: (M,) float32 triangulated depth in the target camera for a unit-length translation.
        parallax_deg: (M,) float32 parallax angle of each triangulation.
        T_context_target: (4, 4) float64 essential pose, unit-length translation (zero for ``ROTATION_ONLY``).
        status: ``OK``, ``LOW_PARALLAX``, ``ROTATION_ONLY`` or ``FAILED``.
        parallax_px: median rotation-compensated parallax of the inliers, native pixels.
    """

    x_target: np.ndarray
    x_context: np.ndarray
    depth_target: np.ndarray
    parallax_deg: np.ndarray
    T_context_target: np.ndarray
    status: int
    parallax_px: float


class SequenceMatchCache:
    """The cached matches of one sequence, looked up by directed pair.

    Args:
        arrays: the cache file's arrays (see :func:`build_sequence_cache`).
    """

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.keypoints = arrays["keypoints"]  # (F, P, 2) float32
        self.match_index = arrays["match_index"]  # (F, D, M, 2) int16, -1 = none
        self.depth = arrays["depth"]  # (F, D, M, 2) float16: depth in frame i and in frame i + d
        self.parallax_deg = arrays["parallax_deg"]  # (F, D, M) float16
        self.R = arrays["R"]  # (F, D, 3, 3) float64, maps frame i points into frame i + d
        self.t = arrays["t"]  # (F, D, 3) float64, unit or zero
        self.status = arrays["status"]  # (F, D) int8
        self.parallax_px = arrays["parallax_px"]  # (F, D) float32
        self.image_hw = tuple(int(v) for v in arrays["image_hw"])  # native (H, W) the pixels refer to
        self.num_frames = self.keypoints.shape[0]
        self.max_offset = self.match_index.shape[1]

    def pair(self, target: int, context: int) -> PairMatches:
        """The matches of frame ``target`` into frame ``context`` (either order in time).

        Raises:
            KeyError: the pair is not cached (same frame, outside the sequence or more than ``max_offset`` apart).
        """
        d = context - target
        first, offset = (target, d) if d > 0 else (context, -d)
        if d == 0 or not 0 < offset <= self.max_offset or not 0 <= first < self.num_frames - offset:
            raise KeyError(f"pair ({target}, {context}) is not in the cache (max_offset {self.max_offset}, "
                           f"{self.num_frames} frames)")
        index = self.match_index[first, offset - 1]
        used = index[:, 0] >= 0
        index = index[used].astype(np.int64)
        x_first = self.keypoints[first][index[:, 0]]
        x_second = self.keypoints[first + offset][index[:, 1]]
        depth = self.depth[first, offset - 1][used].astype(np.float32)
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = self.R[first, offset - 1], self.t[first, offset - 1]
        if d < 0:  # the cached direction is context -> target: invert it
            T = _invert(T)
            x_target, x_context, depth_target = x_second, x_first, depth[:, 1]
        else:
            x_target, x_context, depth_target = x_first, x_second, depth[:, 0]
        return PairMatches(x_target.astype(np.float32), x_context.astype(np.float32), depth_target,
                           self.parallax_deg[first, offset - 1][used].astype(np.float32), T,
                           int(self.status[first, offset - 1]), float(self.parallax_px[first, offset - 1]))

    def pair_parallax_px(self, target: int, context: int) -> float:
        """Median rotation-compensated parallax (native px) of a cached pair, 0 for a failed or rotation-only one."""
        d = context - target
        first, offset = (target, d) if d > 0 else (context, -d)
        status = int(self.status[first, offset - 1])
        return float(self.parallax_px[first, offset - 1]) if status in (OK, LOW_PARALLAX) else 0.0


def _invert(T: np.ndarray) -> np.ndarray:
    inverse = np.eye(4)
    inverse[:3, :3] = T[:3, :3].T
    inverse[:3, 3] = -T[:3, :3].T @ T[:3, 3]
    return inverse


def _detector(settings: MatchCacheSettings):
    if settings.keypoints == "sift":
        return cv2.SIFT_create(nfeatures=settings.max_features), cv2.NORM_L2
    return cv2.ORB_create(nfeatures=settings.max_features), cv2.NORM_HAMMING


def _detect(reader: FrameReader, frames: list[Frame], settings: MatchCacheSettings
            ) -> tuple[np.ndarray, list[np.ndarray], tuple[int, int]]:
    detector, _ = _detector(settings)
    points = np.full((len(frames), settings.max_features, 2), np.nan, dtype=np.float32)
    descriptors = []
    for i, frame in enumerate(frames):
        gray = cv2.cvtColor(reader.load_rgb(frame), cv2.COLOR_RGB2GRAY)
        keypoints, desc = detector.detectAndCompute(gray, None)
        keypoints = keypoints[:settings.max_features]
        if desc is None:
            desc = np.zeros((0, 128), dtype=np.float32)
        points[i, :len(keypoints)] = [kp.pt for kp in keypoints]
        descriptors.append(desc[:settings.max_features])
    return points, descriptors, gray.shape[:2]


def _match(desc_a: np.ndarray, desc_b: np.ndarray, norm: int, ratio: float) -> np.ndarray:
    """(N, 2) indices of mutual nearest neighbours passing the ratio test, best (smallest distance) first."""
    if len(desc_a) < 2 or len(desc_b) < 2:
        return np.zeros((0, 2), dtype=np.int64)
    matcher = cv2.BFMatcher(norm)
    forward = matcher.knnMatch(desc_a, desc_b, k=2)
    backward = {m.queryIdx: m.trainIdx for m in matcher.match(desc_b, desc_a)}
    kept = [(m.distance, m.queryIdx, m.trainIdx) for m, n in (pair for pair in forward if len(pair) == 2)
            if m.distance < ratio * n.distance and backward.get(m.trainIdx) == m.queryIdx]
    kept.sort()
    return np.asarray([(q, t) for _, q, t in kept], dtype=np.int64).reshape(-1, 2)


def build_sequence_cache(reader: FrameReader, frames: list[Frame], settings: MatchCacheSettings,
                         generator_seed: int = 0) -> dict[str, np.ndarray]:
    """Detect, match and solve every pair of ``frames`` up to ``settings.max_offset`` apart; the cache's arrays."""
    F, D, M = len(frames), settings.max_offset, settings.max_matches
    points, descriptors, image_hw = _detect(reader, frames, settings)
    _, norm = _detector(settings)
    K = torch.tensor(frames[0].K, dtype=torch.float64)
    pairs = [(i, d) for d in range(1, D + 1) for i in range(F - d)]
    match_index = np.full((F, D, M, 2), -1, dtype=np.int16)
    depth = np.zeros((F, D, M, 2), dtype=np.float16)
    parallax_deg = np.zeros((F, D, M), dtype=np.float16)
    R_all = np.tile(np.eye(3), (F, D, 1, 1))
    t_all = np.zeros((F, D, 3))
    status = np.full((F, D), FAILED, dtype=np.int8)
    parallax_px = np.zeros((F, D), dtype=np.float32)
    generator = torch.Generator().manual_seed(generator_seed)
    for start in range(0, len(pairs), SOLVE_BATCH):
        chunk = pairs[start:start + SOLVE_BATCH]
        matches = [_match(descriptors[i], descriptors[i + d], norm, settings.ratio) for i, d in chunk]
        N = max(8, max(len(m) for m in matches))
        x1 = torch.zeros(len(chunk), N, 2, dtype=torch.float64)
        x2 = torch.zeros_like(x1)
        weights = torch.zeros(len(chunk), N, dtype=torch.float64)
        for b, ((i, d), m) in enumerate(zip(chunk, matches)):
            x1[b, :len(m)] = torch.from_numpy(points[i][m[:, 0]].astype(np.float64))
            x2[b, :len(m)] = torch.from_numpy(points[i + d][m[:, 1]].astype(np.float64))
            weights[b, :len(m)] = 1.0
        Kb = K.expand(len(chunk), 3, 3)
        est = solve_essential_ransac(x1, x2, Kb, weights, num_hypotheses=settings.num_hypotheses,
                                     threshold_px=settings.threshold_px, generator=generator)
        pure_rotation = est.info["pure_rotation"]
        low_parallax = est.info["low_parallax"]
        tri = triangulate_with_info(x1, x2, Kb, est.R, est.t)
        for b, ((i, d), m) in enumerate(zip(chunk, matches)):
            R_all[i, d - 1] = est.R[b].numpy()
            parallax_px[i, d - 1] = float(est.info["median_parallax_px"][b])
            if bool(est.valid[b]):
                status[i, d - 1] = LOW_PARALLAX if bool(low_parallax[b]) else OK
                t_all[i, d - 1] = est.t[b].numpy()
            elif bool(est.info["rotation_valid"][b]) or bool(pure_rotation[b]):
                status[i, d - 1] = ROTATION_ONLY
            inliers = (est.inliers[b, :len(m)] & (weights[b, :len(m)] > 0)).numpy()
            has_direction = status[i, d - 1] in (OK, LOW_PARALLAX)
            if has_direction:
                inliers &= tri.in_front[b, :len(m)].numpy()
            kept = np.flatnonzero(inliers)[:M]
            match_index[i, d - 1, :len(kept)] = m[kept]
            if has_direction:
                depth[i, d - 1, :len(kept), 0] = tri.depth1[b, kept].numpy()
                depth[i, d - 1, :len(kept), 1] = tri.depth2[b, kept].numpy()
                parallax_deg[i, d - 1, :len(kept)] = tri.parallax_deg[b, kept].numpy()
    return {"keypoints": points, "match_index": match_index, "depth": depth, "parallax_deg": parallax_deg,
            "R": R_all, "t": t_all, "status": status, "parallax_px": parallax_px,
            "image_hw": np.asarray(image_hw, dtype=np.int64)}


def cache_key(frames: list[Frame], settings: MatchCacheSettings) -> str:
    """Hash of the cache version, the settings and the frames (image names and sizes, intrinsics)."""
    def describe(frame: Frame) -> str:
        image = frame.image
        if isinstance(image, str | Path) and Path(image).is_file():
            return f"{Path(image).name}:{Path(image).stat().st_size}"
        return str(image)

    payload = json.dumps({"version": CACHE_VERSION, "settings": asdict(settings),
                          "K": np.asarray(frames[0].K).round(6).tolist(),
                          "frames": [describe(f) for f in frames]}, sort_keys=True)
    return hashlib.sha1(payload.encode()).hexdigest()[:16]


def default_cache_dir(reader: FrameReader) -> Path:
    """Beside the sequence (``<root>/match_cache``) when the reader has a writable folder, else the user cache."""
    root = getattr(reader, "root", None)
    if root is not None and Path(root).is_dir() and os.access(root, os.W_OK):
        return Path(root) / "match_cache"
    return Path.home() / ".cache" / "priordepth" / "match_cache"


def load_or_build(reader: FrameReader, frames: list[Frame], settings: MatchCacheSettings,
                  cache_dir: Path | None = None) -> SequenceMatchCache:
    """The sequence's cache, read from ``cache_dir`` or built and written there atomically first.

    Raises:
        DatasetError: the sequence has fewer than two frames.
    """
    if len(frames) < 2:
        raise DatasetError(f"{reader.source}: a match cache needs at least two frames, found {len(frames)}")
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir(reader)
    path = cache_dir / f"{settings.keypoints}_{cache_key(frames, settings)}.npz"
    if path.is_file():
        try:
            with np.load(path) as data:
                return SequenceMatchCache({key: data[key] for key in data.files})
        except (OSError, ValueError, KeyError) as exc:
            log.warning("match cache %s is unreadable (%s); building it again", path, exc)
    log.info("building the %s match cache of %s (%d frames, pairs up to %d apart) in %s", settings.keypoints,
             reader.source, len(frames), settings.max_offset, path)
    arrays = build_sequence_cache(reader, frames, settings)
    cache_dir.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=cache_dir, prefix=f".{path.stem}.", suffix=".npz")
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez_compressed(stream, **arrays)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return SequenceMatchCache(arrays)
