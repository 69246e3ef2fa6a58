"""Writers of tiny datasets in the exact official on-disk formats, and checks shared by the reader tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from priordepth_core.data.trajectory_io import write_kitti_poses, write_tum_trajectory


def frame_color(index: int) -> tuple[int, int, int]:
    """A distinct flat RGB colour per frame, so tests can tell which frame landed where."""
    return (10 + 20 * index) % 256, (200 - 15 * index) % 256, (60 + 35 * index) % 256


def write_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def flat_image(index: int, height: int, width: int) -> np.ndarray:
    return np.broadcast_to(np.array(frame_color(index), dtype=np.uint8), (height, width, 3)).copy()


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def trajectory(n: int, seed: int = 0) -> np.ndarray:
    """(n, 4, 4) a smooth camera path: forward motion with a slow yaw and some roll."""
    rng = np.random.default_rng(seed)
    from scipy.spatial.transform import Rotation

    T = np.tile(np.eye(4), (n, 1, 1))
    T[:, :3, :3] = Rotation.from_euler("yxz", np.cumsum(rng.normal(0, 0.05, (n, 3)), axis=0)).as_matrix()
    T[:, :3, 3] = np.cumsum(rng.normal([0, 0, 0.8], 0.1, (n, 3)), axis=0)
    return T


def check_common_sample(sample: dict, size_hw: tuple[int, int], num_context: int, *, depth_hw=None,
                        has_poses: bool) -> None:
    """Keys, shapes and dtypes of the sample contract (priordepth_core/data/sample.py)."""
    height, width = size_hw
    expected = {"image", "context", "context_offsets", "K", "stamp", "frame_index", "sequence"}
    if depth_hw is not None:
        expected.add("depth_gt")
    if has_poses:
        expected |= {"T_world_cam", "T_context_target"}
    assert set(sample) == expected
    assert sample["image"].shape == (3, height, width) and sample["image"].dtype == torch.float32
    assert 0.0 <= float(sample["image"].min()) and float(sample["image"].max()) <= 1.0
    assert sample["context"].shape == (num_context, 3, height, width) and sample["context"].dtype == torch.float32
    assert sample["context_offsets"].shape == (num_context,) and sample["context_offsets"].dtype == torch.int64
    assert sample["K"].shape == (3, 3) and sample["K"].dtype == torch.float32
    if depth_hw is not None:
        assert sample["depth_gt"].shape == (1, *depth_hw) and sample["depth_gt"].dtype == torch.float32
    if has_poses:
        assert sample["T_world_cam"].shape == (4, 4) and sample["T_world_cam"].dtype == torch.float32
        assert sample["T_context_target"].shape == (num_context, 4, 4)
        assert sample["T_context_target"].dtype == torch.float32
    assert isinstance(sample["stamp"], float) and isinstance(sample["frame_index"], int)
    assert isinstance(sample["sequence"], str)


def mean_color(image: torch.Tensor) -> np.ndarray:
    """(3,) mean RGB in 0..255 of a (3, H, W) image."""
    return image.mean(dim=(1, 2)).numpy() * 255.0


# ----------------------------------------------------------------------------------------------------- KITTI raw

KITTI_RAW_HW = (24, 40)
KITTI_RAW_DATE = "2011_09_26"
KITTI_RAW_DRIVE = "2011_09_26_drive_0001_sync"
# Rectified projections of a 40x24 toy camera: cam 2 is 6 cm left of cam 0, cam 3 is 48 cm right (as KITTI).
KITTI_RAW_P2 = np.array([[30.0, 0.0, 19.5, 30.0 * 0.06], [0.0, 30.0, 11.5, 0.0], [0.0, 0.0, 1.0, 0.0027]])
KITTI_RAW_P3 = np.array([[30.0, 0.0, 19.5, -30.0 * 0.48], [0.0, 30.0, 11.5, 0.0], [0.0, 0.0, 1.0, 0.0027]])
KITTI_RAW_R_RECT = np.array([[0.9999239, 0.00983776, -0.007445048], [-0.009869795, 0.9999421, -0.004278459],
                             [0.007402527, 0.004351614, 0.9999631]])
KITTI_RAW_R_VELO = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
KITTI_RAW_T_VELO = np.array([-0.004069766, -0.07631618, -0.2717806])


def _kitti_numbers(values: np.ndarray) -> str:
    return " ".join(f"{v:.6e}" for v in np.ravel(values))


def write_kitti_raw(root: Path, num_frames: int = 6, with_timestamps: bool = True,
                    extension: str = ".png") -> Path:
    """A one-drive KITTI raw tree; returns the drive folder."""
    date_dir = root / KITTI_RAW_DATE
    date_dir.mkdir(parents=True)
    height, width = KITTI_RAW_HW
    (date_dir / "calib_cam_to_cam.txt").write_text(
        "calib_time: 09-Jan-2012 13:57:47\n"
        "corner_dist: 9.950000e-02\n"
        f"S_00: {_kitti_numbers([width, height])}\n"
        f"K_00: {_kitti_numbers(KITTI_RAW_P2[:, :3])}\n"
        f"D_00: {_kitti_numbers([-0.37, 0.2, 0.001, -0.001, -0.07])}\n"
        f"R_00: {_kitti_numbers(np.eye(3))}\n"
        f"T_00: {_kitti_numbers(np.zeros(3))}\n"
        f"S_rect_00: {_kitti_numbers([width, height])}\n"
        f"R_rect_00: {_kitti_numbers(KITTI_RAW_R_RECT)}\n"
        f"P_rect_00: {_kitti_numbers(np.hstack([KITTI_RAW_P2[:, :3], np.zeros((3, 1))]))}\n"
        f"S_rect_02: {_kitti_numbers([width, height])}\n"
        f"R_rect_02: {_kitti_numbers(np.eye(3))}\n"
        f"P_rect_02: {_kitti_numbers(KITTI_RAW_P2)}\n"
        f"S_rect_03: {_kitti_numbers([width, height])}\n"
        f"R_rect_03: {_kitti_numbers(np.eye(3))}\n"
        f"P_rect_03: {_kitti_numbers(KITTI_RAW_P3)}\n"
    )
    (date_dir / "calib_velo_to_cam.txt").write_text(
        "calib_time: 15-Mar-2012 11:37:16\n"
        f"R: {_kitti_numbers(KITTI_RAW_R_VELO)}\n"
        f"T: {_kitti_numbers(KITTI_RAW_T_VELO)}\n"
        "delta_f: 0.000000e+00 0.000000e+00\n"
        "delta_c: 0.000000e+00 0.000000e+00\n"
    )
    drive = date_dir / KITTI_RAW_DRIVE
    for camera in ("image_02", "image_03"):
        for i in range(num_frames):
            write_rgb(drive / camera / "data" / f"{i:010d}{extension}", flat_image(i, height, width))
        if with_timestamps:
            (drive / camera / "timestamps.txt").write_text(
                "".join(f"2011-09-26 13:02:{25 + i // 10:02d}.{(i % 10) * 103_700_000 + 964389:09d}\n"
                        for i in range(num_frames))
            )
    (drive / "velodyne_points" / "data").mkdir(parents=True)
    for i in range(num_frames):
        np.zeros((0, 4), dtype=np.float32).tofile(drive / "velodyne_points" / "data" / f"{i:010d}.bin")
    return drive


def velodyne_point_for_pixel(u: float, v: float, depth: float, P: np.ndarray) -> np.ndarray:
    """The velodyne point that P_rect @ R_rect @ T_cam0_velo projects to pixel (u, v) at depth (P's third row)."""
    # Solve P @ [X; 1] = depth * [u, v, 1] for the rectified point X.
    X_rect = np.linalg.solve(P[:, :3], depth * np.array([u, v, 1.0]) - P[:, 3])
    X_cam0 = KITTI_RAW_R_RECT.T @ X_rect
    return KITTI_RAW_R_VELO.T @ (X_cam0 - KITTI_RAW_T_VELO)


def write_split(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


# ------------------------------------------------------------------------------------------------- KITTI odometry

KITTI_ODOM_HW = (24, 48)
KITTI_ODOM_P = {
    0: np.array([[40.0, 0.0, 23.5, 0.0], [0.0, 40.0, 11.5, 0.0], [0.0, 0.0, 1.0, 0.0]]),
    1: np.array([[40.0, 0.0, 23.5, -40.0 * 0.54], [0.0, 40.0, 11.5, 0.0], [0.0, 0.0, 1.0, 0.0]]),
    # P2 = K [I | t] with t = (0.06, 0.001, 0.004): K t = (40 * 0.06 + 23.5 * 0.004, 40 * 0.001 + 11.5 * 0.004, 0.004)
    2: np.array([[40.0, 0.0, 23.5, 2.494], [0.0, 40.0, 11.5, 0.086], [0.0, 0.0, 1.0, 0.004]]),
    3: np.array([[40.0, 0.0, 23.5, -40.0 * 0.47], [0.0, 40.0, 11.5, 0.0], [0.0, 0.0, 1.0, 0.003]]),
}


def write_kitti_odometry(root: Path, sequence: str = "00", num_frames: int = 5, with_poses: bool = True,
                         with_depth: bool = False) -> np.ndarray:
    """A KITTI odometry sequence; returns its T_world_cam0 (num_frames, 4, 4)."""
    folder = root / "sequences" / sequence
    height, width = KITTI_ODOM_HW
    for i in range(num_frames):
        write_rgb(folder / "image_2" / f"{i:06d}.png", flat_image(i, height, width))
    (folder / "calib.txt").write_text(
        "".join(f"P{c}: " + " ".join(f"{v:.12e}" for v in KITTI_ODOM_P[c].ravel()) + "\n" for c in range(4))
        + "Tr: " + " ".join(f"{v:.12e}" for v in np.eye(4)[:3].ravel()) + "\n"
    )
    (folder / "times.txt").write_text("".join(f"{0.103736 * i:.6e}\n" for i in range(num_frames)))
    T_world_cam0 = trajectory(num_frames, seed=3)
    if with_poses:
        (root / "poses").mkdir(exist_ok=True)
        write_kitti_poses(root / "poses" / f"{sequence}.txt", T_world_cam0)
    if with_depth:
        (folder / "depth_exact").mkdir()
        for i in range(num_frames):
            depth = np.full((height, width), 2.0 + i, dtype=np.float32)
            depth[0, 0] = np.nan
            np.save(folder / "depth_exact" / f"{i:06d}.npy", depth)
    return T_world_cam0


# --------------------------------------------------------------------------------------------------------- TUM

TUM_HW = (24, 32)


def write_tum(folder: Path, rgb_stamps: np.ndarray, depth_stamps: np.ndarray, gt_stamps: np.ndarray,
              image_hw: tuple[int, int] = TUM_HW, intrinsics_line: str | None = "16.0 17.0 15.5 11.5 32 24",
              seed: int = 0) -> np.ndarray:
    """A TUM RGB-D sequence folder; rgb frame i is coloured by ``frame_color(i)`` and depth j is ``1 + j`` metres.

    Returns the ground-truth poses (len(gt_stamps), 4, 4).
    """
    height, width = image_hw
    folder.mkdir(parents=True)
    (folder / "rgb").mkdir()
    (folder / "depth").mkdir()
    rgb_lines = ["# color images", f"# file: '{folder.name}.bag'", "# timestamp filename"]
    for i, stamp in enumerate(rgb_stamps):
        name = f"rgb/{stamp:.6f}.png"
        write_rgb(folder / name, flat_image(i, height, width))
        rgb_lines.append(f"{stamp:.6f} {name}")
    depth_lines = ["# depth maps", f"# file: '{folder.name}.bag'", "# timestamp filename"]
    for j, stamp in enumerate(depth_stamps):
        name = f"depth/{stamp:.6f}.png"
        assert cv2.imwrite(str(folder / name), np.full((height, width), 5000 * (1 + j), dtype=np.uint16))
        depth_lines.append(f"{stamp:.6f} {name}")
    (folder / "rgb.txt").write_text("\n".join(rgb_lines) + "\n")
    (folder / "depth.txt").write_text("\n".join(depth_lines) + "\n")
    poses = trajectory(len(gt_stamps), seed=seed)
    write_tum_trajectory(folder / "groundtruth.txt", gt_stamps, poses)
    if intrinsics_line is not None:
        (folder / "intrinsics.txt").write_text("# fx fy cx cy width height\n" + intrinsics_line + "\n")
    return poses
