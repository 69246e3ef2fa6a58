"""INT8 versions of the inference graphs, and the parity check that decides whether one may replace FP32.

Static post-training quantisation with ONNX Runtime's quantiser: QDQ format, per-channel symmetric INT8 weights and
asymmetric UINT8 activations, **Conv layers only**, activation ranges by MinMax over calibration images. Conv-only
because quantising every op (the sigmoid/tanh heads, the coordinate arithmetic, the descriptor normalisation) moves
keypoint coordinates by pixels; measured here on the shipped driving model at 320x96 (15 rendered street frames):
Conv-only INT8 keeps 99 % of the 256 best keypoint cells, moves their coordinates by a median 0.13 px, keeps
descriptors at cosine 0.998; MinMax was as good as Entropy and better than Percentile calibration. In DepthNet only
the ResNet encoder's Convs are quantised: with the decoder in INT8 too the depth's abs_rel on 60 rendered street
frames rose from 0.1998 to 0.2173, with the encoder alone it is 0.1974 (OpenVINO: 8.2 ms against 4.6 ms all-INT8
and 11.9 ms FP32; the decoder alone in INT8 gave 0.2179). The same QDQ graph runs in ONNX Runtime and in OpenVINO,
which executes it with INT8 kernels.

Calibration and parity images are real photographs shipped with scikit-image (no download, the same on every
machine), cropped to the network's aspect ratio: a deployment may not have its own frames at start-up, and the
ranges of a ReLU network's activations depend on image statistics, not on the scene type. The parity images are
disjoint from the calibration images.

Every INT8 graph is checked against its FP32 graph before use (:func:`int8_parity`); a graph outside the bounds of
:data:`PARITY_BOUNDS` is not used (the backend falls back to FP32 and says why).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .networks import IMAGE_NAME

log = logging.getLogger(__name__)

# Bump when the recipe changes, so that cached INT8 graphs of an older recipe are not reused.
QUANTISATION_RECIPE = "qdq-conv-minmax-v2"
CALIBRATION_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "brick", "gravel", "immunohistochemistry")
PARITY_PHOTOS = ("motorcycle_left", "page", "grass", "coins")
# Crops per calibration photo (left, centre, right along the long side).
CROPS_PER_PHOTO = 2

# The bounds an INT8 graph must meet against FP32 on the parity photos (measured values, shipped driving model at
# 320x96 on rendered street frames, in brackets): median relative depth difference (0.016), share of the 256
# best-scoring keypoint cells that stay among the 256 best (0.99), median coordinate shift of those keypoints in
# network pixels (0.13), median cosine between their descriptors (0.998).
PARITY_BOUNDS = {"depth_median_rel_diff": ("<=", 0.05), "keypoint_top256_overlap": (">=", 0.9),
                 "keypoint_median_shift_px": ("<=", 0.5), "descriptor_median_cosine": (">=", 0.98)}
TOP_CELLS = 256


def _photo(name: str) -> np.ndarray:
    """A scikit-image photo as uint8 RGB."""
    import skimage.data

    image = skimage.data.stereo_motorcycle()[0] if name == "motorcycle_left" else getattr(skimage.data, name)()
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255).astype(np.uint8) if image.dtype.kind == "f" else image.astype(np.uint8)
    return image[..., :3]


def photo_batches(names: Sequence[str], input_size: tuple[int, int], crops: int = CROPS_PER_PHOTO) -> list[np.ndarray]:
    """(1, 3, H, W) float32 images in [0, 1]: ``crops`` crops of each photo at the input's aspect ratio, resized."""
    height, width = input_size
    out = []
    for name in names:
        photo = _photo(name)
        ph, pw = photo.shape[:2]
        crop_w = min(pw, round(ph * width / height))
        crop_h = min(ph, round(crop_w * height / width))
        for index in range(crops):
            x0 = (pw - crop_w) * (index + 1) // (crops + 1)
            y0 = (ph - crop_h) // 2
            crop = photo[y0:y0 + crop_h, x0:x0 + crop_w]
            resized = cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA)
            out.append(np.ascontiguousarray(resized.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0)
    return out


def quantize_onnx(fp32_model: bytes, calibration: Sequence[np.ndarray], quantised_convs: int | None = None) -> bytes:
    """The Conv-only QDQ INT8 model of an FP32 ONNX model (see the module docstring): every Conv, or only the first
    ``quantised_convs`` in graph order (DepthNet: its encoder's, which precede every decoder Conv)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.images = iter(calibration)

        def get_next(self):
            image = next(self.images, None)
            return None if image is None else {IMAGE_NAME: image}

    with tempfile.TemporaryDirectory(prefix="priordepth-int8-") as folder:
        source, prepared, quantised = (os.path.join(folder, name) for name in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        Path(source).write_bytes(fp32_model)
        quant_pre_process(source, prepared, skip_symbolic_shape=True)
        excluded = []
        if quantised_convs is not None:
            import onnx

            convs = [node.name for node in onnx.load(prepared).graph.node if node.op_type == "Conv"]
            excluded = convs[quantised_convs:]
        quantize_static(prepared, quantised, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"],
                        nodes_to_exclude=excluded)
        return Path(quantised).read_bytes()


@dataclass(frozen=True)
class ParityResult:
    """INT8 against FP32 on the parity photos: the measures of :data:`PARITY_BOUNDS` and which bounds failed."""

    measures: dict[str, float]
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures

    def describe(self) -> str:
        text = ", ".join(f"{name} {value:.4g}" for name, value in self.measures.items())
        return text + ("" if self.passed else "; outside the bounds: " + ", ".join(self.failures))


Runner = Callable[[np.ndarray], list[np.ndarray]]


def depth_parity(fp32: Runner, int8: Runner, images: Sequence[np.ndarray]) -> dict[str, float]:
    diffs = []
    for image in images:
        reference, quantised = fp32(image)[0], int8(image)[0]
        diffs.append(np.abs(quantised - reference) / np.maximum(np.abs(reference), 1e-6))
    return {"depth_median_rel_diff": float(np.median(np.concatenate([d.ravel() for d in diffs])))}


def keypoint_parity(fp32: Runner, int8: Runner, images: Sequence[np.ndarray], coord_scale: float = 1.0
                    ) -> dict[str, float]:
    """Selection overlap and coordinate shift of the ``TOP_CELLS`` best cells of the FP32 score map; the median
    cosine between the dense descriptor maps."""
    overlaps, shifts, cosines = [], [], []
    for image in images:
        (score_f, coord_f, desc_f), (score_q, coord_q, desc_q) = fp32(image)[:3], int8(image)[:3]
        top_f = np.argsort(-score_f.ravel(), kind="stable")[:TOP_CELLS]
        top_q = np.argsort(-score_q.ravel(), kind="stable")[:TOP_CELLS]
        overlaps.append(len(np.intersect1d(top_f, top_q)) / max(len(top_f), 1))
        shifts.append(np.linalg.norm(coord_f.reshape(2, -1)[:, top_f] - coord_q.reshape(2, -1)[:, top_f], axis=0)
                      * coord_scale)
        cosines.append(np.sum(desc_f * desc_q, axis=1).ravel())
    return {"keypoint_top256_overlap": float(np.mean(overlaps)),
            "keypoint_median_shift_px": float(np.median(np.concatenate(shifts))),
            "descriptor_median_cosine": float(np.median(np.concatenate(cosines)))}


def judge(measures: dict[str, float]) -> ParityResult:
    failures = []
    for name, value in measures.items():
        relation, bound = PARITY_BOUNDS[name]
        ok = value <= bound if relation == "<=" else value >= bound
        if not (ok and np.isfinite(value)):
            failures.append(f"{name} {value:.4g} (need {relation} {bound:g})")
    return ParityResult(measures, tuple(failures))


def int8_parity(kind: str, fp32: Runner, int8: Runner, input_size: tuple[int, int]) -> ParityResult:
    """Parity of an INT8 graph of ``kind`` ("depth" or "keypoints") against its FP32 graph on the parity photos."""
    images = photo_batches(PARITY_PHOTOS, input_size, crops=1)
    if kind == "depth":
        return judge(depth_parity(fp32, int8, images))
    if kind == "keypoints":
        return judge(keypoint_parity(fp32, int8, images))
    raise ValueError(f"unknown graph kind {kind!r}; expected depth or keypoints")
