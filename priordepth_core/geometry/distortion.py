"""Lens distortion, removed in one place: the readers, the offline runner and the ROS node all rectify through here.

A :class:`LensDistortion` names a model and its coefficients as ROS ``sensor_msgs/CameraInfo`` does
(``distortion_model``, ``d``). An :class:`Undistorter` is built once per camera (K, distortion, image size) with
OpenCV's maps and then rectifies images, depth maps and points; the networks only ever see rectified pinhole images
with the rectified intrinsics :attr:`Undistorter.rectified_K`.

Models (OpenCV's conventions; ROS names):

==========================  ==============================  ================================================
``distortion_model``        coefficients ``d``              OpenCV
==========================  ==============================  ================================================
``plumb_bob``               k1 k2 p1 p2 [k3] (4 or 5)       radial-tangential, ``cv2.initUndistortRectifyMap``
``rational_polynomial``     k1 k2 p1 p2 k3 k4 k5 k6 (8)     the same functions with 8 coefficients
``equidistant``             k1 k2 k3 k4 (4)                 fisheye, ``cv2.fisheye.*``
==========================  ==============================  ================================================

The rectified camera: ``rectified_K`` is the one given (ROS: the CameraInfo's ``P``, which is what ``image_proc``
rectifies to and what ``camera_calibration`` chose for the lens), else K itself. Keeping K keeps the centre of the
image at its calibrated scale and the image size unchanged, so configs, network sizes and the node's output
CameraInfo need no change; where the lens bends pixels outward (pincushion, k1 > 0) the rectified corners may fall
outside the raw image and stay black (:attr:`Undistorter.valid_fraction` says how much).

All-zero coefficients with the same rectified K are the identity: no map is built and images pass through untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PLUMB_BOB = "plumb_bob"
RATIONAL_POLYNOMIAL = "rational_polynomial"
EQUIDISTANT = "equidistant"
# Model name -> accepted coefficient counts (plumb_bob's k3 is optional, as in OpenCV and ROS).
COEFFICIENT_COUNTS = {PLUMB_BOB: (4, 5), RATIONAL_POLYNOMIAL: (8,), EQUIDISTANT: (4,)}
SUPPORTED_MODELS = tuple(COEFFICIENT_COUNTS)
_SUPPORTED_TEXT = (
    "plumb_bob (k1 k2 p1 p2 [k3]), rational_polynomial (k1 k2 p1 p2 k3 k4 k5 k6), equidistant (k1 k2 k3 k4)")
# Point undistortion is iterative in OpenCV; its default 5 iterations leave pixels of error on strong lenses.
_POINT_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)


@dataclass(frozen=True)
class LensDistortion:
    """A lens distortion model and its coefficients, as ``CameraInfo.distortion_model`` and ``CameraInfo.d``.

    Raises:
        ValueError: an unsupported model (naming it and the supported ones), a wrong coefficient count, or a
            non-finite coefficient.
    """

    model: str
    coefficients: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.model not in COEFFICIENT_COUNTS:
            raise ValueError(f"unsupported lens distortion model {self.model!r}; supported: {_SUPPORTED_TEXT}")
        coefficients = tuple(float(c) for c in self.coefficients)
        if len(coefficients) not in COEFFICIENT_COUNTS[self.model]:
            counts = " or ".join(str(n) for n in COEFFICIENT_COUNTS[self.model])
            raise ValueError(f"distortion model {self.model} takes {counts} coefficients, got {len(coefficients)}: "
                             f"{list(coefficients)}")
        if not all(np.isfinite(coefficients)):
            raise ValueError(f"distortion coefficients must be finite, got {list(coefficients)}")
        object.__setattr__(self, "coefficients", coefficients)

    @classmethod
    def from_camera_info(cls, model: str, coefficients) -> LensDistortion | None:
        """The distortion of a CameraInfo (or a camera_calibration YAML); None when ``d`` is empty (a pinhole).

        Raises:
            ValueError: as the constructor, for a non-empty ``d``.
        """
        coefficients = tuple(float(c) for c in np.asarray(coefficients, dtype=np.float64).reshape(-1))
        if not coefficients:
            return None
        return cls(model, coefficients)

    @property
    def is_zero(self) -> bool:
        """Every coefficient is 0: the lens is a pinhole."""
        return not any(self.coefficients)

    def as_array(self) -> np.ndarray:
        return np.asarray(self.coefficients, dtype=np.float64)


def _check_intrinsics(K: np.ndarray, name: str) -> np.ndarray:
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3) or not np.all(np.isfinite(K)) or not (K[0, 0] > 0 and K[1, 1] > 0):
        raise ValueError(f"{name} must be a finite (3, 3) pinhole matrix with fx, fy > 0, got {K.tolist()}")
    return K


class Undistorter:
    """Rectification of one camera: maps built once, then applied to every image.

    Args:
        K: (3, 3) intrinsics of the raw (distorted) image.
        distortion: its lens distortion, or None for a pinhole.
        size_hw: (height, width) of the raw image; the rectified image has the same size.
        rectified_K: (3, 3) intrinsics of the rectified image (ROS: CameraInfo ``P[:, :3]``); None = K.

    Attributes:
        rectified_K: (3, 3) float64 intrinsics of every image this returns.
        is_identity: nothing to do (no or all-zero distortion, rectified_K == K); images pass through unchanged.
        valid_fraction: fraction of rectified pixels that see the raw image (1.0 for the identity).

    Example:
        >>> undistorter = Undistorter(K, LensDistortion("plumb_bob", (-0.2, 0.05, 0, 0, 0)), (480, 640))
        >>> rectified = undistorter.rectify_image(raw_rgb)  # doctest: +SKIP
    """

    def __init__(self, K: np.ndarray, distortion: LensDistortion | None, size_hw: tuple[int, int],
                 rectified_K: np.ndarray | None = None):
        self.K = _check_intrinsics(K, "K")
        self.rectified_K = self.K.copy() if rectified_K is None else _check_intrinsics(rectified_K, "rectified_K")
        height, width = (int(v) for v in size_hw)
        if height <= 0 or width <= 0:
            raise ValueError(f"image size must be positive, got {size_hw}")
        self.size_hw = (height, width)
        self.distortion = distortion
        self.is_identity = (distortion is None or distortion.is_zero) and np.array_equal(self.rectified_K, self.K)
        self._map_x = self._map_y = None
        self.valid_fraction = 1.0
        if self.is_identity:
            return
        D = self._coefficients()
        if self._fisheye:
            map_x, map_y = cv2.fisheye.initUndistortRectifyMap(self.K, D, np.eye(3), self.rectified_K, (width, height),
                                                               cv2.CV_32FC1)
        else:
            map_x, map_y = cv2.initUndistortRectifyMap(self.K, D, None, self.rectified_K, (width, height),
                                                       cv2.CV_32FC1)
        # (H, W) float32 each: the raw pixel that every rectified pixel samples.
        self._map_x, self._map_y = map_x, map_y
        inside = (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)
        self.valid_fraction = float(inside.mean())

    @property
    def _fisheye(self) -> bool:
        return self.distortion is not None and self.distortion.model == EQUIDISTANT

    def _coefficients(self) -> np.ndarray:
        if self.distortion is None:
            return np.zeros(4 if self._fisheye else 5)
        return self.distortion.as_array()

    def _check_size(self, array: np.ndarray, what: str) -> None:
        if tuple(array.shape[:2]) != self.size_hw:
            raise ValueError(f"{what} is {array.shape[1]}x{array.shape[0]} but this camera's undistortion maps are for "
                             f"{self.size_hw[1]}x{self.size_hw[0]}")

    def rectify_image(self, image: np.ndarray) -> np.ndarray:
        """(H, W[, C]) raw image -> the rectified image, bilinear; pixels outside the raw image are 0."""
        self._check_size(image, "image")
        if self.is_identity:
            return image
        return cv2.remap(image, self._map_x, self._map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=0)

    def rectify_depth(self, depth: np.ndarray) -> np.ndarray:
        """(H, W) depth registered to the raw image -> registered to the rectified one (nearest: depths are never
        blended across object edges; 0 = invalid outside)."""
        self._check_size(depth, "depth map")
        if self.is_identity:
            return depth
        return cv2.remap(depth, self._map_x, self._map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=0)

    def undistort_points(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) raw pixel coordinates -> (N, 2) float64 pixel coordinates in the rectified image."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 1, 2)
        if self.is_identity or len(points) == 0:
            return points.reshape(-1, 2).copy()
        D = self._coefficients()
        if self._fisheye:
            rectified = cv2.fisheye.undistortPoints(points, self.K, D, R=np.eye(3), P=self.rectified_K,
                                                    criteria=_POINT_CRITERIA)
        else:
            rectified = cv2.undistortPoints(points, self.K, D, R=None, P=self.rectified_K, criteria=_POINT_CRITERIA)
        return rectified.reshape(-1, 2).astype(np.float64)

    def distort_points(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) rectified pixel coordinates -> (N, 2) float64 raw pixel coordinates (the lens model forward)."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if self.is_identity or len(points) == 0:
            return points.copy()
        homogeneous = np.concatenate([points, np.ones((len(points), 1))], axis=1)
        normalised = (np.linalg.inv(self.rectified_K) @ homogeneous.T).T  # (N, 3), z = 1
        D = self._coefficients()
        if self._fisheye:
            raw = cv2.fisheye.distortPoints(normalised[:, None, :2].copy(), self.K, D)
        else:
            raw, _ = cv2.projectPoints(normalised[:, None, :], np.zeros(3), np.zeros(3), self.K, D)
        return raw.reshape(-1, 2).astype(np.float64)

    def distort_image(self, rectified: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
        """(H, W[, C]) pinhole image with ``rectified_K`` -> what the lens would record (synthetic data with a known
        lens). Raw pixels whose ray leaves the pinhole image are 0. Use ``cv2.INTER_NEAREST`` for depth."""
        self._check_size(rectified, "image")
        if self.is_identity:
            return rectified
        height, width = self.size_hw
        u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
        source = self.undistort_points(np.stack([u.ravel(), v.ravel()], axis=1)).astype(np.float32)
        map_x, map_y = source[:, 0].reshape(height, width), source[:, 1].reshape(height, width)
        return cv2.remap(rectified, map_x, map_y, interpolation, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


class UndistorterCache:
    """One :class:`Undistorter` per distinct camera (K, distortion, size, rectified K): maps are built once."""

    def __init__(self):
        self._undistorters: dict[bytes, Undistorter] = {}

    def get(self, K: np.ndarray, distortion: LensDistortion | None, size_hw: tuple[int, int],
            rectified_K: np.ndarray | None = None) -> Undistorter:
        key = (np.asarray(K, dtype=np.float64).tobytes() + repr((distortion, tuple(size_hw))).encode()
               + (b"" if rectified_K is None else np.asarray(rectified_K, dtype=np.float64).tobytes()))
        undistorter = self._undistorters.get(key)
        if undistorter is None:
            undistorter = self._undistorters[key] = Undistorter(K, distortion, size_hw, rectified_K)
        return undistorter
