"""Keypoint detector and descriptor metrics under a known homography (SuperPoint / KP2D protocol).

Definitions follow TRI-ML/KP2D ``kp2d/evaluation/detector_evaluation.py`` (repeatability, localisation error) and
``descriptor_evaluation.py`` (homography correctness, matching score), themselves adapted from SuperPoint. Keypoints
are ``(x, y)`` pixel coordinates with pixel centres at integers; the homography maps image-1 pixels to image-2
pixels. Visibility tests keep KP2D's exact inequalities (``0 <= x < W`` for repeatability and correctness,
``0 <= x <= W - 1`` for the matching score).
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

Norm = Literal["l2", "hamming"]


def warp_keypoints(points: np.ndarray, H: np.ndarray) -> np.ndarray:
    """Map (N, 2) ``(x, y)`` points by a 3x3 homography -> (N, 2)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    homogeneous = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ np.asarray(H, dtype=np.float64).T
    return homogeneous[:, :2] / homogeneous[:, 2:]


def _visible(points: np.ndarray, shape: tuple[int, int], inclusive_last: bool = False) -> np.ndarray:
    height, width = shape
    x, y = points[:, 0], points[:, 1]
    if inclusive_last:
        return (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
    return (x >= 0) & (x < width) & (y >= 0) & (y < height)


def _top_k(scores: np.ndarray | None, count: int, k: int) -> np.ndarray:
    """Indices of the k highest scores (KP2D ``select_k_best``: ascending argsort, last k); all if no scores."""
    if scores is None:
        return np.arange(min(k, count))
    order = np.argsort(np.asarray(scores, dtype=np.float64).reshape(-1))
    return order[-min(k, count):] if count else order[:0]


def _check_points(points: np.ndarray, name: str) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"{name} must have shape (N, 2) (x, y), got {points.shape}")
    return points


def _check_homography(H: np.ndarray) -> np.ndarray:
    H = np.asarray(H, dtype=np.float64)
    if H.shape != (3, 3):
        raise ValueError(f"H must have shape (3, 3), got {H.shape}")
    return H


def repeatability(keypoints1: np.ndarray, keypoints2: np.ndarray, H: np.ndarray, image_shape: tuple[int, int],
                  scores1: np.ndarray | None = None, scores2: np.ndarray | None = None, top_k: int = 300,
                  distance_threshold: float = 3.0) -> dict[str, float]:
    """Repeatability and localisation error (KP2D ``compute_repeatability``).

    Image-2 keypoints whose back-warp leaves image 1 and image-1 keypoints whose warp leaves image 2 are dropped,
    the ``top_k`` best of each are kept, and a keypoint is repeated if the nearest keypoint of the other set (in
    image 2) lies within ``distance_threshold``.

    Args:
        keypoints1: (N1, 2) keypoints of image 1, ``(x, y)``.
        keypoints2: (N2, 2) keypoints of image 2.
        H: (3, 3) maps image-1 pixels to image-2 pixels.
        image_shape: ``(H, W)`` of both images.
        scores1, scores2: (N,) detection scores for the top-k selection; None keeps the first ``top_k``.
        top_k: keypoints kept per image (KP2D: 300).
        distance_threshold: pixels (KP2D: 3).

    Returns:
        ``repeatability`` = (repeated in 1 + repeated in 2) / (N1' + N2'), ``localization_error`` = mean distance of
        the repeated pairs, ``num_keypoints1``, ``num_keypoints2`` (after filtering); both metrics are -1 when no
        keypoint is left (KP2D's value) and ``localization_error`` is -1 when nothing is repeated.
    """
    points1, points2, H = _check_points(keypoints1, "keypoints1"), _check_points(keypoints2, "keypoints2"), \
        _check_homography(H)
    keep2 = _visible(warp_keypoints(points2, np.linalg.inv(H)), image_shape)
    points2, scores2 = points2[keep2], None if scores2 is None else np.asarray(scores2).reshape(-1)[keep2]
    warped1 = warp_keypoints(points1, H)
    keep1 = _visible(warped1, image_shape)
    warped1, scores1 = warped1[keep1], None if scores1 is None else np.asarray(scores1).reshape(-1)[keep1]
    warped1 = warped1[_top_k(scores1, len(warped1), top_k)]
    points2 = points2[_top_k(scores2, len(points2), top_k)]

    n1, n2 = len(warped1), len(points2)
    if n1 + n2 == 0:
        return {"repeatability": -1.0, "localization_error": -1.0, "num_keypoints1": 0, "num_keypoints2": 0}
    count, error_sum = 0, 0.0
    if n1 and n2:
        distance = np.linalg.norm(warped1[:, None, :] - points2[None, :, :], axis=2)  # (n1, n2)
        for nearest in (distance.min(axis=1), distance.min(axis=0)):
            correct = nearest <= distance_threshold
            count += int(correct.sum())
            error_sum += float(nearest[correct].sum())
    return {
        "repeatability": count / (n1 + n2),
        "localization_error": error_sum / count if count else -1.0,
        "num_keypoints1": n1,
        "num_keypoints2": n2,
    }


def _matcher(norm: Norm, cross_check: bool) -> cv2.BFMatcher:
    if norm not in ("l2", "hamming"):
        raise ValueError(f"norm must be 'l2' or 'hamming', got {norm!r}")
    return cv2.BFMatcher(cv2.NORM_L2 if norm == "l2" else cv2.NORM_HAMMING, crossCheck=cross_check)


def _descriptors(descriptors: np.ndarray, count: int, name: str, norm: Norm) -> np.ndarray:
    descriptors = np.asarray(descriptors)
    if descriptors.ndim != 2 or len(descriptors) != count:
        raise ValueError(f"{name} must have shape ({count}, D), got {descriptors.shape}")
    if norm == "hamming":
        if descriptors.dtype != np.uint8:
            raise ValueError(f"{name} must be uint8 packed bits for norm='hamming', got {descriptors.dtype}")
        return np.ascontiguousarray(descriptors)
    return np.ascontiguousarray(descriptors, dtype=np.float32)


def _match(desc_query: np.ndarray, desc_train: np.ndarray, norm: Norm, cross_check: bool) -> np.ndarray:
    """(M, 2) index pairs (query, train) of nearest-neighbour matches."""
    if len(desc_query) == 0 or len(desc_train) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    matches = _matcher(norm, cross_check).match(desc_query, desc_train)
    return np.array([(m.queryIdx, m.trainIdx) for m in matches], dtype=np.int64).reshape(-1, 2)


def homography_correctness(keypoints1: np.ndarray, descriptors1: np.ndarray, keypoints2: np.ndarray,
                           descriptors2: np.ndarray, H: np.ndarray, image_shape: tuple[int, int],
                           scores1: np.ndarray | None = None, scores2: np.ndarray | None = None, top_k: int = 1000,
                           thresholds: tuple[float, ...] = (1.0, 3.0, 5.0), norm: Norm = "l2",
                           ransac_threshold: float = 3.0, seed: int | None = 0) -> dict[str, float]:
    """Homography estimation accuracy (KP2D ``compute_homography``).

    Keypoints visible in the other image are kept (top ``top_k`` by score), matched by mutual nearest neighbours,
    and a homography is fitted with ``cv2.findHomography`` (RANSAC, 3 px, 5000 iterations). The four image corners
    ``(0, 0), (0, H-1), (W-1, 0), (W-1, H-1)`` are warped by the estimate and the truth; the estimate is correct at
    ``eps`` when the mean corner distance is at most ``eps``.

    Args:
        keypoints1, keypoints2: (N1, 2), (N2, 2) keypoints ``(x, y)``.
        descriptors1, descriptors2: (N, D) float descriptors, or uint8 packed binary ones with ``norm="hamming"``.
        H: (3, 3) ground truth mapping image 1 to image 2.
        image_shape: ``(H, W)`` of both images.
        scores1, scores2: (N,) scores for the top-k selection; None keeps the first ``top_k``.
        top_k: keypoints kept per image (KP2D: 1000).
        thresholds: corner-error thresholds in pixels (C1, C3, C5).
        norm: descriptor distance, ``"l2"`` or ``"hamming"`` (ORB).
        ransac_threshold: RANSAC reprojection threshold in pixels.
        seed: seeds OpenCV's RNG before RANSAC so the result is reproducible; None leaves it.

    Returns:
        ``correctness_{eps:g}`` for each threshold (1.0 or 0.0), ``mean_corner_error`` (inf when no homography
        could be estimated, all correctness 0 then), ``num_matches`` and ``num_inliers``.
    """
    points1, points2, H = _check_points(keypoints1, "keypoints1"), _check_points(keypoints2, "keypoints2"), \
        _check_homography(H)
    desc1 = _descriptors(descriptors1, len(points1), "descriptors1", norm)
    desc2 = _descriptors(descriptors2, len(points2), "descriptors2", norm)

    def shared(points, desc, scores, H_to_other):
        keep = _visible(warp_keypoints(points, H_to_other), image_shape)
        points, desc = points[keep], desc[keep]
        scores = None if scores is None else np.asarray(scores).reshape(-1)[keep]
        index = _top_k(scores, len(points), top_k)
        return points[index], desc[index]

    points1, desc1 = shared(points1, desc1, scores1, H)
    points2, desc2 = shared(points2, desc2, scores2, np.linalg.inv(H))
    pairs = _match(desc1, desc2, norm, cross_check=True)
    result = {f"correctness_{eps:g}": 0.0 for eps in thresholds}
    result.update(mean_corner_error=float("inf"), num_matches=len(pairs), num_inliers=0)
    if len(pairs) < 4:
        return result
    if seed is not None:
        cv2.setRNGSeed(seed)
    H_est, inliers = cv2.findHomography(points1[pairs[:, 0]], points2[pairs[:, 1]], cv2.RANSAC, ransac_threshold,
                                        maxIters=5000)
    if H_est is None:
        return result
    height, width = image_shape
    corners = np.array([[0, 0], [0, height - 1], [width - 1, 0], [width - 1, height - 1]], dtype=np.float64)
    corner_error = float(np.mean(np.linalg.norm(warp_keypoints(corners, H) - warp_keypoints(corners, H_est), axis=1)))
    result.update({f"correctness_{eps:g}": float(corner_error <= eps) for eps in thresholds})
    result.update(mean_corner_error=corner_error, num_inliers=int(inliers.sum()))
    return result


def matching_score(keypoints1: np.ndarray, descriptors1: np.ndarray, keypoints2: np.ndarray,
                   descriptors2: np.ndarray, H: np.ndarray, image_shape: tuple[int, int],
                   scores1: np.ndarray | None = None, scores2: np.ndarray | None = None, top_k: int = 1000,
                   norm: Norm = "l2", distance_threshold: float = 3.0) -> dict[str, float]:
    """Matching score (KP2D ``compute_matching_score``): share of nearest-neighbour matches that are correct.

    All top-k keypoints take part (not only those visible in the other image). Each match 1 -> 2 is correct when the
    image-2 keypoint warped back into image 1 lies within ``distance_threshold`` of the image-1 keypoint, counted
    over matches whose back-warp is visible; the same for 2 -> 1 with the forward warp; the two scores are averaged.

    Args:
        keypoints1, keypoints2, descriptors1, descriptors2, H, image_shape, scores1, scores2, top_k, norm: as for
            :func:`homography_correctness`.
        distance_threshold: pixels (KP2D: 3, strict ``<``).

    Returns:
        ``matching_score`` and the two directional scores ``score_1to2`` and ``score_2to1``.
    """
    points1, points2, H = _check_points(keypoints1, "keypoints1"), _check_points(keypoints2, "keypoints2"), \
        _check_homography(H)
    desc1 = _descriptors(descriptors1, len(points1), "descriptors1", norm)
    desc2 = _descriptors(descriptors2, len(points2), "descriptors2", norm)
    index1 = _top_k(None if scores1 is None else np.asarray(scores1).reshape(-1), len(points1), top_k)
    index2 = _top_k(None if scores2 is None else np.asarray(scores2).reshape(-1), len(points2), top_k)
    points1, desc1, points2, desc2 = points1[index1], desc1[index1], points2[index2], desc2[index2]

    def directional(query_points, query_desc, train_points, train_desc, H_train_to_query):
        pairs = _match(query_desc, train_desc, norm, cross_check=False)
        if len(pairs) == 0:
            return 0.0
        back = warp_keypoints(train_points[pairs[:, 1]], H_train_to_query)
        visible = _visible(back, image_shape, inclusive_last=True)
        correct = np.linalg.norm(back - query_points[pairs[:, 0]], axis=1) < distance_threshold
        return float(np.sum(correct & visible) / max(np.sum(visible), 1.0))

    score_1to2 = directional(points1, desc1, points2, desc2, np.linalg.inv(H))
    score_2to1 = directional(points2, desc2, points1, desc1, H)
    return {"matching_score": (score_1to2 + score_2to1) / 2, "score_1to2": score_1to2, "score_2to1": score_2to1}
