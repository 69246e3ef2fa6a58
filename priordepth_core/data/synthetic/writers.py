"""Write rendered sequences in the official TUM RGB-D and KITTI odometry layouts (plus exact float depth), atomically.

TUM RGB-D layout (one folder per sequence)::

    rgb/<stamp>.png            8-bit RGB, stamp as "%.6f" seconds
    depth/<stamp>.png          16-bit depth, metres * 5000 rounded, 0 = invalid; depth beyond 65535 / 5000 = 13.107 m
                               (far street surfaces) does not fit and is written as 0: use depth_exact
    depth_exact/<stamp>.npy    float32 metres (camera z), 0 = invalid (sky)
    rgb.txt, depth.txt         "timestamp filename" lines with TUM's three '#' header lines
    groundtruth.txt            "timestamp tx ty tz qx qy qz qw": T_world_cam of the optical colour camera, world z up
    intrinsics.txt             one line "fx fy cx cy width height" after a '#' header (pixel centres at integers)
    synthetic.json             how it was generated (spec, K, motion statistics)

KITTI odometry layout (``out`` is the dataset root)::

    sequences/<XX>/image_2/000000.png         8-bit RGB of the left colour camera
    sequences/<XX>/depth_exact/000000.npy     float32 metres, 0 = invalid
    sequences/<XX>/calib.txt                  "P0: ..." .. "P3: ...", 12 numbers "%.12e" each, row-major 3x4
    sequences/<XX>/times.txt                  one stamp per line, seconds, "%.12e"
    sequences/<XX>/synthetic.json
    poses/<XX>.txt                            3x4 row-major T_cam0_0_cam0_i (KITTI: relative to the first frame)

The rendered camera is camera 2 and coincides with camera 0 (``P0 = P2 = K [I | 0]``), so the poses of camera 0
are the rendered poses; cameras 1 and 3 are a stereo pair ``STEREO_BASELINE_M`` to the right
(``P1 = P3 = K [I | (-b, 0, 0)]``, KITTI's convention ``P[0, 3] = -fx b``) that is not rendered. As in KITTI, poses
are expressed in the first camera's frame (the first pose is the identity).

Writing goes to a hidden temporary folder beside the output, renamed into place when complete: an error or Ctrl-C
leaves nothing behind.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ...atomic_output import atomic_output
from ..trajectory_io import write_kitti_poses, write_tum_trajectory
from .renderer import Renderer
from .sequence import SyntheticSequence, render_frames

FORMATS = ("tum", "kitti")
TUM_DEPTH_FACTOR = 5000.0
STEREO_BASELINE_M = 0.54
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3]


def depth_to_tum_png(depth: np.ndarray) -> np.ndarray:
    """(H, W) float metres -> uint16 metres * 5000 rounded; non-positive, non-finite or out-of-range depth -> 0."""
    scaled = np.round(np.nan_to_num(depth.astype(np.float64), nan=0.0, posinf=0.0) * TUM_DEPTH_FACTOR)
    scaled[(scaled < 1) | (scaled > np.iinfo(np.uint16).max)] = 0
    return scaled.astype(np.uint16)


def _write_png(path: Path, image: np.ndarray) -> None:
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), image, PNG_PARAMS):
        raise OSError(f"{path}: cannot write PNG")


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _stamp_name(stamp: float) -> str:
    return f"{stamp:.6f}"


def write_tum_sequence(sequence: SyntheticSequence, folder: Path, renderer: Renderer,
                       on_frame: Callable[[], None] = lambda: None) -> None:
    """Render and write a sequence in TUM RGB-D layout into an existing empty ``folder``."""
    for name in ("rgb", "depth", "depth_exact"):
        (folder / name).mkdir()
    stamps = sequence.trajectory.stamps
    names = [_stamp_name(s) for s in stamps]
    for index, rgb, depth in render_frames(sequence, renderer):
        _write_png(folder / "rgb" / f"{names[index]}.png", rgb)
        _write_png(folder / "depth" / f"{names[index]}.png", depth_to_tum_png(depth))
        np.save(folder / "depth_exact" / f"{names[index]}.npy", depth)
        on_frame()
    for kind, what in (("rgb", "color images"), ("depth", "depth maps")):
        header = f"# {what}\n# file: 'synthetic'\n# timestamp filename\n"
        lines = "".join(f"{n} {kind}/{n}.png\n" for n in names)
        (folder / f"{kind}.txt").write_text(header + lines)
    write_tum_trajectory(folder / "groundtruth.txt", stamps, sequence.trajectory.T_world_cam)
    K = sequence.K
    (folder / "intrinsics.txt").write_text(
        "# fx fy cx cy width height (pinhole, no distortion, pixel centres at integer coordinates)\n"
        + " ".join(repr(float(v)) for v in (K[0, 0], K[1, 1], K[0, 2], K[1, 2]))
        + f" {sequence.spec.width} {sequence.spec.height}\n")
    _write_json(folder / "synthetic.json", sequence.metadata())


def kitti_projections(K: np.ndarray) -> dict[str, np.ndarray]:
    """P0..P3 (3, 4) of the synthetic rig: cameras 0 and 2 at the rendered camera, 1 and 3 ``STEREO_BASELINE_M``
    to its right."""
    P_left = np.concatenate([K, np.zeros((3, 1))], axis=1)
    P_right = P_left.copy()
    P_right[:, 3] = K @ np.array([-STEREO_BASELINE_M, 0.0, 0.0])
    return {"P0": P_left, "P1": P_right, "P2": P_left.copy(), "P3": P_right.copy()}


def write_kitti_sequence(sequence: SyntheticSequence, root: Path, renderer: Renderer, name: str = "00",
                         on_frame: Callable[[], None] = lambda: None) -> None:
    """Render and write a sequence in KITTI odometry layout under an existing empty dataset ``root``."""
    folder = root / "sequences" / name
    (folder / "image_2").mkdir(parents=True)
    (folder / "depth_exact").mkdir()
    (root / "poses").mkdir()
    for index, rgb, depth in render_frames(sequence, renderer):
        _write_png(folder / "image_2" / f"{index:06d}.png", rgb)
        np.save(folder / "depth_exact" / f"{index:06d}.npy", depth)
        on_frame()
    calib = "".join(f"{key}: " + " ".join(f"{v:.12e}" for v in P.ravel()) + "\n"
                    for key, P in kitti_projections(sequence.K).items())
    (folder / "calib.txt").write_text(calib)
    (folder / "times.txt").write_text("".join(f"{s:.12e}\n" for s in sequence.trajectory.stamps))
    T_world_cam = sequence.trajectory.T_world_cam
    write_kitti_poses(root / "poses" / f"{name}.txt", kitti_poses(T_world_cam))
    _write_json(folder / "synthetic.json", sequence.metadata())


def kitti_poses(T_world_cam: np.ndarray) -> np.ndarray:
    """(N, 4, 4) poses relative to the first camera, as KITTI's ground truth (the first is the identity)."""
    relative = np.linalg.inv(T_world_cam[0]) @ T_world_cam
    relative[0] = np.eye(4)
    return relative


def write_sequence(sequence: SyntheticSequence, out: str | Path, format: str = "tum", *,
                   renderer: Renderer | None = None, progress: bool = True, kitti_name: str = "00") -> Path:
    """Render a sequence and write it atomically.

    Args:
        sequence: from :func:`make_sequence`.
        out: the sequence folder (TUM) or dataset root (KITTI); must not exist yet.
        format: ``"tum"`` or ``"kitti"``.
        renderer: reuse an open renderer of the sequence's size; default: one is created and released.
        progress: show a tqdm progress bar.
        kitti_name: the two-digit sequence name in KITTI layout.

    Returns:
        ``out`` as a Path.

    Raises:
        ValueError: unknown format, or ``out`` exists.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    own_renderer = renderer is None
    try:
        with atomic_output(out) as temporary:
            temporary.mkdir()
            if own_renderer:
                renderer = Renderer(sequence.spec.width, sequence.spec.height)
            with tqdm(total=len(sequence.trajectory.stamps), desc=Path(out).name, unit="frame",
                      disable=not progress) as bar:
                if format == "tum":
                    write_tum_sequence(sequence, temporary, renderer, on_frame=lambda: bar.update(1))
                else:
                    write_kitti_sequence(sequence, temporary, renderer, kitti_name, on_frame=lambda: bar.update(1))
    finally:
        if own_renderer and renderer is not None:
            renderer.release()
    return Path(out)
