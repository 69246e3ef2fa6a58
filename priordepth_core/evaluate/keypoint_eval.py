"""Keypoint detectors (ORB, SIFT, KeypointNet) behind one interface, scored on image pairs with a known homography.

Every detector maps an (H, W, 3) uint8 RGB image to ``(keypoints (N, 2) float64 (x, y), descriptors (N, D),
scores (N,), norm)`` with ``norm`` the descriptor distance, ``"l2"`` or ``"hamming"`` (ORB's packed bits). A pair is
scored with the KP2D/SuperPoint protocol of :mod:`.keypoint_metrics`: repeatability and localisation error on the
best ``repeatability_top_k`` (KP2D: 300) keypoints, homography correctness at 1/3/5 px and matching score on the best
``top_k`` (KP2D: 1000).

``python -m priordepth_core.evaluate keypoints`` (:mod:`.keypoint_cli`) runs them on the real graffiti pair graf1 ->
graf3 (Mikolajczyk et al., with its ground-truth homography) and on random homography warps of held-out images.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import torch

from ..losses.keypoint import sample_random_homography, warp_image_homography
from ..models.keypoint_net import KEYPOINT_CELL, KeypointNet, select_keypoints
from .keypoint_metrics import Norm, homography_correctness, matching_score, repeatability

Detection = tuple[np.ndarray, np.ndarray, np.ndarray, Norm]

# ../shared/data beside the checkout (the project's workspace); a user's clone passes --graf.
DEFAULT_GRAF_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "homography_graf"
GRAF_SOURCE = ("Oxford affine 'graffiti' pair (Mikolajczyk et al., affine covariant regions dataset), as "
               "redistributed in OpenCV's sample data (BSD-3/Apache-2.0)")


class KeypointDetector(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> Detection: ...


def check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Raise ``ValueError`` unless ``image`` is an (H, W, 3) uint8 RGB array of at least 16x16."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{name} must be a numpy array (H, W, 3) uint8 RGB, got {type(image).__name__}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name} must be (H, W, 3) uint8 RGB, got shape {image.shape} dtype {image.dtype}")
    if min(image.shape[:2]) < 16:
        raise ValueError(f"{name} must be at least 16x16, got {image.shape[:2]}")
    return image


def _opencv_detection(keypoints: Sequence[cv2.KeyPoint], descriptors: np.ndarray | None, width: int,
                      dtype: type, norm: Norm) -> Detection:
    points = np.array([kp.pt for kp in keypoints], dtype=np.float64).reshape(-1, 2)
    scores = np.array([kp.response for kp in keypoints], dtype=np.float64)
    if descriptors is None:
        descriptors = np.zeros((0, width), dtype=dtype)
    return points, descriptors, scores, norm


class _OpenCVDetector:
    """An OpenCV ``Feature2D`` (greyscale ``detectAndCompute``) as a detector; subclasses name the algorithm."""

    name = ""
    descriptor_width = 0
    descriptor_dtype: type = np.float32
    norm: Norm = "l2"

    def __init__(self, num_features: int = 1000):
        if num_features < 1:
            raise ValueError(f"num_features must be positive, got {num_features}")
        self.feature2d = self._create(num_features)

    @staticmethod
    def _create(num_features: int):
        raise TypeError("use OrbDetector or SiftDetector")

    def detect(self, image: np.ndarray) -> Detection:
        gray = cv2.cvtColor(check_image(image), cv2.COLOR_RGB2GRAY)
        keypoints, descriptors = self.feature2d.detectAndCompute(gray, None)
        return _opencv_detection(keypoints, descriptors, self.descriptor_width, self.descriptor_dtype, self.norm)


class OrbDetector(_OpenCVDetector):
    """OpenCV ORB (oriented FAST + rotated BRIEF, 256-bit descriptors packed in 32 bytes, Hamming distance).

    Args:
        num_features: ``nfeatures`` of ``cv2.ORB_create``, the most keypoints kept (by Harris response).
    """

    name, descriptor_width, descriptor_dtype, norm = "orb", 32, np.uint8, "hamming"

    @staticmethod
    def _create(num_features: int):
        return cv2.ORB_create(nfeatures=num_features)


class SiftDetector(_OpenCVDetector):
    """OpenCV SIFT (difference-of-Gaussians keypoints, 128-float descriptors, L2 distance).

    Args:
        num_features: ``nfeatures`` of ``cv2.SIFT_create``, the best keypoints kept by contrast response.
    """

    name, descriptor_width, descriptor_dtype, norm = "sift", 128, np.float32, "l2"

    @staticmethod
    def _create(num_features: int):
        return cv2.SIFT_create(nfeatures=num_features)


class KeypointNetDetector:
    """A trained :class:`KeypointNet` as a detector.

    The image is resized to the nearest multiple of 8 on each side (the network's cell; no change for graf's
    640x800), and keypoints are mapped back to the original pixels with the pixel-centre convention
    ``x = (x' + 0.5) * W / W' - 0.5``. Descriptors are sampled where the keypoints are, before the mapping.

    Args:
        net: the network (put in eval mode here).
        top_k: keypoints kept per image, best score first.
        nms_radius: non-maximum suppression radius in cells (0 = none, as KP2D evaluates).
        device: where the network runs.
    """

    name = "ours"

    def __init__(self, net: KeypointNet, top_k: int = 1000, nms_radius: int = 0, device: str | torch.device = "cpu"):
        if top_k < 1 or nms_radius < 0:
            raise ValueError(f"need top_k >= 1 and nms_radius >= 0, got {top_k}, {nms_radius}")
        self.net = net.to(device).eval()
        self.top_k = top_k
        self.nms_radius = nms_radius
        self.device = torch.device(device)

    @staticmethod
    def network_size(height: int, width: int) -> tuple[int, int]:
        """The (H', W') the network runs at: each side rounded to the nearest multiple of 8, at least 3 cells."""
        def round_side(side: int) -> int:
            return max(3 * KEYPOINT_CELL, int(np.floor(side / KEYPOINT_CELL + 0.5)) * KEYPOINT_CELL)

        return round_side(height), round_side(width)

    @torch.no_grad()
    def detect(self, image: np.ndarray) -> Detection:
        height, width = check_image(image).shape[:2]
        net_h, net_w = self.network_size(height, width)
        if (net_h, net_w) != (height, width):
            image = cv2.resize(image, (net_w, net_h), interpolation=cv2.INTER_AREA if net_h * net_w < height * width
                               else cv2.INTER_LINEAR)
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).unsqueeze(0).float() / 255.0
        outputs = self.net(tensor.to(self.device))
        selected = select_keypoints(outputs, top_k=self.top_k, nms_radius=self.nms_radius)
        valid = selected["valid"][0].cpu().numpy()
        points = selected["keypoints"][0].cpu().double().numpy()[valid]  # (N, 2) in the network's pixels
        scale = np.array([width / net_w, height / net_h])
        points = (points + 0.5) * scale - 0.5
        points = np.clip(points, 0.0, [width - 1, height - 1])
        descriptors = selected["descriptors"][0].cpu().float().numpy()[valid]
        scores = selected["scores"][0].cpu().double().numpy()[valid]
        return points, descriptors, scores, "l2"


def evaluate_pair(detector: KeypointDetector, image1: np.ndarray, image2: np.ndarray, H_1to2: np.ndarray,
                  top_k: int = 1000, repeatability_top_k: int = 300) -> dict[str, float]:
    """Detect in both images and score the pair.

    Args:
        detector: anything with ``detect(image) -> (keypoints, descriptors, scores, norm)``.
        image1, image2: (H, W, 3) uint8 RGB of the same size.
        H_1to2: (3, 3) homography mapping image-1 pixels to image-2 pixels.
        top_k: keypoints per image for homography correctness and matching score (KP2D 1000).
        repeatability_top_k: keypoints per image for repeatability (KP2D 300).

    Returns:
        ``repeatability``, ``localization_error`` (px), ``correctness_1|3|5`` (0/1), ``mean_corner_error`` (px),
        ``matching_score``, ``num_keypoints1|2`` (kept for repeatability: visible in the other image, top-k),
        ``num_detected1|2``, ``num_matches``, ``num_inliers`` and ``detect_ms`` (mean detection time per image).
    """
    check_image(image1, "image1")
    check_image(image2, "image2")
    if image1.shape != image2.shape:
        raise ValueError(f"image1 and image2 must have the same size, got {image1.shape} and {image2.shape}")
    H_1to2 = np.asarray(H_1to2, dtype=np.float64)
    if H_1to2.shape != (3, 3) or not np.isfinite(H_1to2).all() or abs(np.linalg.det(H_1to2)) < 1e-12:
        raise ValueError(f"H_1to2 must be a finite invertible 3x3 matrix, got shape {H_1to2.shape}")
    start = time.perf_counter()
    points1, desc1, scores1, norm = detector.detect(image1)
    points2, desc2, scores2, _ = detector.detect(image2)
    detect_ms = (time.perf_counter() - start) * 500.0
    shape = image1.shape[:2]
    result: dict[str, float] = {}
    result.update(repeatability(points1, points2, H_1to2, shape, scores1, scores2, top_k=repeatability_top_k))
    correctness = homography_correctness(points1, desc1, points2, desc2, H_1to2, shape, scores1, scores2,
                                         top_k=top_k, norm=norm)
    result.update(correctness)
    result.update(matching_score(points1, desc1, points2, desc2, H_1to2, shape, scores1, scores2, top_k=top_k,
                                 norm=norm))
    result.update(num_detected1=len(points1), num_detected2=len(points2), detect_ms=detect_ms)
    return result


def warp_pair(image: np.ndarray, generator: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random homography (the training distribution of :func:`sample_random_homography`) and the exactly warped
    copy of ``image``: ``(warped (H, W, 3) uint8, H_1to2 (3, 3))``."""
    height, width = check_image(image).shape[:2]
    H = sample_random_homography(1, height, width, generator=generator, dtype=torch.float64)
    tensor = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).double() / 255.0
    warped, _ = warp_image_homography(tensor, H)
    warped = (warped[0].permute(1, 2, 0).clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()
    return warped, H[0].numpy()


def evaluate_synthetic_pairs(detector: KeypointDetector, images: Sequence[np.ndarray], num_pairs: int, seed: int = 0,
                             top_k: int = 1000, repeatability_top_k: int = 300) -> dict[str, float]:
    """Mean metrics over ``num_pairs`` (image, random homography warp of it) pairs, cycling through ``images``.

    The same ``seed`` gives every detector the same pairs. ``localization_error`` and ``mean_corner_error`` are
    averaged over the pairs where they are defined (finite, not -1); ``num_failed_homographies`` counts pairs where
    no homography could be estimated.

    Args:
        detector: as for :func:`evaluate_pair`.
        images: (H, W, 3) uint8 RGB images (held out of training).
        num_pairs: pairs in all.
        seed: of the homography draws.
        top_k, repeatability_top_k: as for :func:`evaluate_pair`.
    """
    if num_pairs < 1 or not images:
        raise ValueError(f"need num_pairs >= 1 and at least one image, got {num_pairs} and {len(images)} images")
    generator = torch.Generator().manual_seed(seed)
    per_pair = []
    for index in range(num_pairs):
        image = check_image(images[index % len(images)], f"images[{index % len(images)}]")
        warped, H = warp_pair(image, generator)
        per_pair.append(evaluate_pair(detector, image, warped, H, top_k=top_k,
                                      repeatability_top_k=repeatability_top_k))
    summary: dict[str, float] = {"num_pairs": num_pairs}
    for key in per_pair[0]:
        values = np.array([pair[key] for pair in per_pair], dtype=np.float64)
        if key in ("localization_error", "mean_corner_error"):
            defined = values[np.isfinite(values) & (values >= 0)]
            summary[key] = float(defined.mean()) if len(defined) else -1.0
        else:
            summary[key] = float(values.mean())
    summary["num_failed_homographies"] = int(sum(not np.isfinite(pair["mean_corner_error"]) for pair in per_pair))
    return summary


def read_image_rgb(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB from an image file; FileNotFoundError / ValueError when missing / unreadable."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def load_graf_pair(folder: str | Path = DEFAULT_GRAF_DIR) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """graf1, graf3 (H, W, 3) uint8 RGB and ``H1to3p`` (3, 3) mapping graf1 pixels to graf3 pixels.

    Raises:
        FileNotFoundError: naming the folder when it or a file is absent.
    """
    folder = Path(folder)
    needed = [folder / name for name in ("graf1.png", "graf3.png", "H1to3p.xml")]
    missing = [p.name for p in needed if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"graf folder {folder} lacks {', '.join(missing)} (expected graf1.png, graf3.png, "
                                "H1to3p.xml; pass --graf DIR)")
    storage = cv2.FileStorage(str(needed[2]), cv2.FILE_STORAGE_READ)
    try:
        H = storage.getFirstTopLevelNode().mat()
    finally:
        storage.release()
    if H is None or H.shape != (3, 3):
        raise ValueError(f"{needed[2]} does not hold a 3x3 matrix")
    return read_image_rgb(needed[0]), read_image_rgb(needed[1]), H.astype(np.float64)
