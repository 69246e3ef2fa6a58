"""Camera paths for the synthetic scenes: a driving car, a shaky handheld camera, a slow TUM-like sweep, and the
replay of a real trajectory file.

All paths are ``T_world_cam`` of an optical camera (x right, y down, z forward) in the scene's world frame (metres,
z up) with stamps in seconds rounded to microseconds (so file names, lists and ground truth agree exactly).

Replay of a file (:func:`replay_trajectory`) maps the recorded motion into a scene rigidly, except for an optional
uniform scale:

1. Poses are read with :func:`priordepth_core.data.trajectory_io.read_trajectory`. KITTI and TUM poses are those
   of optical cameras; EuRoC ground truth is the body (IMU) frame, so the published cam0 extrinsic
   ``T_body_cam0`` (EuRoC ``cam0/sensor.yaml``) is appended to make it the left camera's optical frame.
2. Gravity alignment: the world's up direction is +z for TUM and EuRoC (motion-capture worlds are z up); for KITTI,
   whose world is the first camera frame (y down, but pitched by a degree or two), it is the normal of the plane
   best fitting the replayed positions, oriented against +y (plain -y when the path is a straight line). The world
   is rotated by the smallest rotation taking up to +z.
3. Resampling: poses are interpolated (linear positions, slerp rotations) at the file's own rate when that is at most
   30 Hz (KITTI: 10 Hz), otherwise at 30 Hz (TUM ground truth is 100 Hz, EuRoC 200 Hz), from ``start_s`` seconds
   after the first pose.
4. Placement: for the street the first camera position goes to the origin at ``CAMERA_HEIGHT_M`` (the road is laid
   along the path at camera height - 1.65 m); for the room the path's horizontal bounding-box centre goes to the
   origin and its mean height to 1.4 m (raised so that it stays >= 0.4 m above the floor). The room grows to contain
   the path; only a path wider than ``ROOM_MAX_PATH_EXTENT_M`` (or taller than ``ROOM_MAX_PATH_HEIGHT_M``) is scaled
   down uniformly about its centre, and the scale is reported in ``Trajectory.scale``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.spatial.transform import Rotation, Slerp

from ..errors import DatasetError
from ..trajectory_io import read_trajectory
from .scenes import CAMERA_HEIGHT_M

MOTIONS = ("car", "handheld", "slow")
DEFAULT_FPS = {"car": 10.0, "handheld": 30.0, "slow": 30.0}
MAX_REPLAY_FPS = 30.0
ROOM_CAMERA_HEIGHT_M = 1.4
ROOM_MAX_PATH_EXTENT_M = 9.0
ROOM_MAX_PATH_HEIGHT_M = 2.4

# Optical camera axes in a body frame with x forward, y left, z up (columns: camera x, y, z).
R_BODY_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])

# EuRoC MAV: cam0 in the body (IMU) frame, from the dataset's cam0/sensor.yaml (T_BS).
T_EUROC_BODY_CAM0 = np.array([
    [0.0148655429818, -0.999880929698, 0.00414029679422, -0.0216401454975],
    [0.999557249008, 0.0149672133247, 0.025715529948, -0.064676986768],
    [-0.0257744366974, 0.00375618835797, 0.999660727178, 0.00981073058949],
    [0.0, 0.0, 0.0, 1.0],
])


@dataclass(frozen=True)
class Trajectory:
    """A camera path.

    Attributes:
        stamps: (N,) seconds.
        T_world_cam: (N, 4, 4) optical camera to world.
        scale: uniform scale applied to a replayed file's positions (1 for generated paths).
        source: how it was made (``"car"``, ``"handheld"``, ``"slow"`` or the replayed file's name).
    """

    stamps: np.ndarray
    T_world_cam: np.ndarray
    scale: float = 1.0
    source: str = ""

    @property
    def positions(self) -> np.ndarray:
        """(N, 3) camera centres in the world."""
        return self.T_world_cam[:, :3, 3]


def frame_stamps(frames: int, fps: float, start: float = 0.0) -> np.ndarray:
    """(frames,) ``start + i / fps`` rounded to microseconds."""
    return np.round(start + np.arange(frames) / fps, 6)


def _smooth_noise(rng: np.random.Generator, count: int, correlation: float) -> np.ndarray:
    """(count,) Gaussian-smoothed white noise with unit standard deviation; ``correlation`` in samples."""
    pad = int(4 * correlation) + 1
    noise = gaussian_filter1d(rng.standard_normal(count + 2 * pad), correlation, mode="wrap")[pad:pad + count]
    return noise / max(float(noise.std()), 1e-12)


def _poses(positions: np.ndarray, yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """(N, 4, 4) optical camera poses from positions and body yaw (about z), pitch (nose up) and roll."""
    R_world_body = Rotation.from_euler("ZYX", np.stack([yaw, -pitch, roll], axis=1)).as_matrix()
    T = np.tile(np.eye(4), (len(positions), 1, 1))
    T[:, :3, :3] = R_world_body @ R_BODY_OPTICAL
    T[:, :3, 3] = positions
    return T


def car_trajectory(seed: int, frames: int, fps: float = DEFAULT_FPS["car"]) -> Trajectory:
    """KITTI-like driving: 5-12 m/s with smooth speed changes, straight stretches, curves and 90-degree turns, the
    camera ``CAMERA_HEIGHT_M`` above the road looking along it, with small suspension bounce and pitch/roll.

    Args:
        seed: random seed.
        frames: number of poses.
        fps: frame rate (KITTI: 10 Hz).
    """
    rng = np.random.default_rng([seed, 10])
    fine = 20  # integration substeps per frame
    count = frames * fine
    dt = 1.0 / (fps * fine)
    speed = np.clip(8.8 + 2.5 * _smooth_noise(rng, count, 6.0 * fps * fine), 5.0, 12.0)
    arclength = np.concatenate([[0.0], np.cumsum(speed[:-1] * dt)])

    # Curvature along the road: straights, gentle curves and turns of 30-90 degrees with radius 12-35 m.
    ds = 0.25
    total = arclength[-1] + 10.0
    curvature_parts = []
    length = 0.0
    while length < total:
        straight = rng.uniform(25.0, 90.0)
        curvature_parts.append(np.full(int(straight / ds), rng.normal(0.0, 0.002)))
        radius, angle = rng.uniform(12.0, 35.0), np.deg2rad(rng.uniform(30.0, 90.0))
        turn = angle * radius
        curvature_parts.append(np.full(int(turn / ds), rng.choice([-1.0, 1.0]) / radius))
        length += straight + turn
    curvature = gaussian_filter1d(np.concatenate(curvature_parts), 6.0 / ds)  # smooth entry into turns
    heading0 = rng.uniform(0, 2 * np.pi)
    heading = heading0 + np.concatenate([[0.0], np.cumsum(curvature[:-1] * ds)])
    path_s = np.arange(len(heading)) * ds
    x = np.concatenate([[0.0], np.cumsum(np.cos(heading[:-1]) * ds)])
    y = np.concatenate([[0.0], np.cumsum(np.sin(heading[:-1]) * ds)])

    s = arclength[::fine]
    t = np.arange(frames) / fps
    positions = np.stack([np.interp(s, path_s, x), np.interp(s, path_s, y),
                          CAMERA_HEIGHT_M + 0.01 * np.sin(2 * np.pi * 1.3 * t + rng.uniform(0, 6))], axis=1)
    yaw = np.interp(s, path_s, heading) + np.deg2rad(0.6) * _smooth_noise(rng, frames, 0.6 * fps)
    pitch = np.deg2rad(0.4) * _smooth_noise(rng, frames, 0.5 * fps)
    roll = np.deg2rad(0.3) * _smooth_noise(rng, frames, 0.7 * fps)
    return Trajectory(frame_stamps(frames, fps), _poses(positions, yaw, pitch, roll), source="car")


def handheld_trajectory(seed: int, frames: int, fps: float = DEFAULT_FPS["handheld"]) -> Trajectory:
    """A fast, rotation-heavy, shaky handheld camera with varying pace, moving within about 2.4 x 2 x 0.6 m
    around (0, 0, 1.45) (the room is built around it).

    Args:
        seed: random seed.
        frames: number of poses.
        fps: frame rate (30 Hz like TUM RGB-D).
    """
    rng = np.random.default_rng([seed, 11])
    fine = 4
    count = frames * fine
    dt = 1.0 / (fps * fine)
    pace = np.clip(1.0 + 0.55 * _smooth_noise(rng, count, 1.2 * fps * fine), 0.25, 1.9)
    # Signals are generated in "phase" time, which runs faster or slower than real time with the pace.
    phase = np.concatenate([[0.0], np.cumsum(pace[:-1] * dt)])
    grid_step = 1.0 / (fps * fine)
    grid = np.arange(0.0, phase[-1] + 2 * grid_step, grid_step)

    def signal(correlation_s: float) -> np.ndarray:
        return np.interp(phase, grid, _smooth_noise(rng, len(grid), correlation_s / grid_step))

    half_extent = np.array([1.2, 1.0, 0.3])
    positions = np.stack([half_extent[i] * np.tanh(0.9 * signal(0.45)) for i in range(3)], axis=1)
    positions += np.array([0.0, 0.0, 1.45])
    yaw = rng.uniform(0, 2 * np.pi) + np.cumsum(np.deg2rad(120.0) * np.tanh(signal(0.8)) * pace * dt)
    pitch = np.deg2rad(-12.0) + np.deg2rad(22.0) * np.tanh(signal(0.6))
    roll = np.deg2rad(12.0) * np.tanh(signal(0.7))
    # Hand tremor: fast, small rotations and translations in real time.
    tremor = np.deg2rad(0.6)
    yaw += tremor * _smooth_noise(rng, count, 0.04 * fps * fine)
    pitch += tremor * _smooth_noise(rng, count, 0.04 * fps * fine)
    roll += 0.5 * tremor * _smooth_noise(rng, count, 0.04 * fps * fine)
    positions += 0.004 * np.stack([_smooth_noise(rng, count, 0.05 * fps * fine) for _ in range(3)], axis=1)
    keep = slice(0, count, fine)
    return Trajectory(frame_stamps(frames, fps),
                      _poses(positions[keep], yaw[keep], pitch[keep], roll[keep]), source="handheld")


def slow_trajectory(seed: int, frames: int, fps: float = DEFAULT_FPS["slow"]) -> Trajectory:
    """A slow TUM-like sweep (fr1_xyz / fr2_desk pace: about 0.1-0.25 m/s and 5-15 deg/s), the camera pitched down
    towards furniture, moving within about 1.2 x 1.2 x 0.4 m around (0, 0, 1.4).

    Args:
        seed: random seed.
        frames: number of poses.
        fps: frame rate (30 Hz).
    """
    rng = np.random.default_rng([seed, 12])
    correlation = 1.5 * fps
    positions = np.stack([0.7 * np.tanh(0.8 * _smooth_noise(rng, frames, correlation)),
                          0.7 * np.tanh(0.8 * _smooth_noise(rng, frames, correlation)),
                          1.4 + 0.2 * np.tanh(_smooth_noise(rng, frames, correlation))], axis=1)
    yaw = rng.uniform(0, 2 * np.pi) + np.deg2rad(20.0) * _smooth_noise(rng, frames, 4.0 * fps)
    pitch = np.deg2rad(-22.0) + np.deg2rad(6.0) * _smooth_noise(rng, frames, 4.0 * fps)
    roll = np.deg2rad(3.0) * _smooth_noise(rng, frames, 3.0 * fps)
    return Trajectory(frame_stamps(frames, fps), _poses(positions, yaw, pitch, roll), source="slow")


def _file_kind(path: Path) -> str:
    """``"kitti"``, ``"tum"`` or ``"euroc"`` from the first data line (frame conventions differ, see module doc)."""
    with open(path) as handle:
        for line in handle:
            text = line.strip()
            if text and not text.startswith("#"):
                if "," in text:
                    return "euroc"
                return "kitti" if len(text.split()) == 12 else "tum"
    raise DatasetError(f"{path}: trajectory file has no data lines")


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(3, 3) smallest rotation taking unit vector a to unit vector b."""
    axis = np.cross(a, b)
    sin, cos = np.linalg.norm(axis), float(np.dot(a, b))
    if sin < 1e-12:
        if cos > 0:
            return np.eye(3)
        perpendicular = np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 else [0.0, 1.0, 0.0])
        return Rotation.from_rotvec(np.pi * perpendicular / np.linalg.norm(perpendicular)).as_matrix()
    return Rotation.from_rotvec(axis / sin * np.arctan2(sin, cos)).as_matrix()


def _kitti_up(positions: np.ndarray) -> np.ndarray:
    """Up in a KITTI world (the first camera frame, y down): the normal of the plane best fitting the driven path,
    which removes the first camera's small pitch and roll; -y when the path is too straight to define a plane."""
    centred = positions - positions.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    if len(positions) < 3 or singular[1] < 0.05 * max(singular[0], 1e-9):
        return np.array([0.0, -1.0, 0.0])
    normal = vt[2]
    return normal if normal[1] < 0 else -normal


def replay_trajectory(path: str | Path, scene: str, frames: int, fps: float | None = None,
                      start_s: float = 0.0) -> Trajectory:
    """A real trajectory file mapped into a scene (see the module docstring for every step).

    Args:
        path: KITTI poses, TUM ground truth or EuRoC csv (a KITTI ``<name>_times.txt`` / ``times.txt`` beside it
            is not needed: stamps only set the rate, 10 Hz for KITTI).
        scene: ``"street"`` or ``"room"``.
        frames: number of poses.
        fps: resampling rate; default: the file's rate when <= 30 Hz, else 30 Hz.
        start_s: seconds after the file's first pose where the replay starts.

    Raises:
        ValueError: (``DatasetError``) for an unreadable or malformed file, or one too short for ``frames``.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: trajectory file does not exist")
    kind = _file_kind(path)
    stamps, T_file = read_trajectory(path)
    order = np.argsort(stamps, kind="stable")
    stamps, T_file = stamps[order], T_file[order]
    keep = np.concatenate([[True], np.diff(stamps) > 0])
    stamps, T_file = stamps[keep], T_file[keep]
    if len(stamps) < 2:
        raise DatasetError(f"{path}: a replay needs at least 2 poses with distinct stamps")
    if kind == "euroc":
        T_file = T_file @ T_EUROC_BODY_CAM0
    native_fps = 1.0 / float(np.median(np.diff(stamps)))
    fps = float(fps) if fps is not None else min(native_fps, MAX_REPLAY_FPS)
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    t0 = stamps[0] + start_s
    query = t0 + np.arange(frames) / fps
    if query[-1] > stamps[-1] + 1e-6 or start_s < 0:
        available = int(np.floor((stamps[-1] - t0) * fps + 1e-6)) + 1 if stamps[-1] >= t0 else 0
        raise DatasetError(f"{path}: the trajectory covers {stamps[-1] - stamps[0]:.2f} s; from start {start_s} s "
                           f"at {fps:g} Hz it holds {max(available, 0)} frames, {frames} were requested")
    query = np.clip(query, stamps[0], stamps[-1])
    rotations = Slerp(stamps, Rotation.from_matrix(T_file[:, :3, :3]))(query).as_matrix()
    positions = np.stack([np.interp(query, stamps, T_file[:, i, 3]) for i in range(3)], axis=1)

    up = _kitti_up(positions) if kind == "kitti" else np.array([0.0, 0.0, 1.0])
    R_align = _rotation_between(up, np.array([0.0, 0.0, 1.0]))
    rotations = R_align @ rotations
    positions = positions @ R_align.T

    scale = 1.0
    if scene == "street":
        positions = positions - positions[0] + np.array([0.0, 0.0, CAMERA_HEIGHT_M])
    elif scene == "room":
        lo, hi = positions.min(axis=0), positions.max(axis=0)
        extent = hi - lo
        scale = min(1.0, ROOM_MAX_PATH_EXTENT_M / max(extent[0], extent[1], 1e-9),
                    ROOM_MAX_PATH_HEIGHT_M / max(extent[2], 1e-9))
        centre = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, positions[:, 2].mean()])
        positions = (positions - centre) * scale + np.array([0.0, 0.0, ROOM_CAMERA_HEIGHT_M])
        positions[:, 2] += max(0.0, 0.4 - positions[:, 2].min())
    else:
        raise ValueError(f"unknown scene {scene!r}; choose one of street, room")
    T = np.tile(np.eye(4), (frames, 1, 1))
    T[:, :3, :3] = rotations
    T[:, :3, 3] = positions
    return Trajectory(frame_stamps(frames, fps, start=0.0), T, scale=scale, source=path.name)


def make_trajectory(motion: str | Path, scene: str, seed: int, frames: int, fps: float | None = None,
                    start_s: float = 0.0) -> Trajectory:
    """A generated path (``"car"``, ``"handheld"``, ``"slow"``) or the replay of a trajectory file.

    Raises:
        ValueError: for a non-positive frame count or an unreadable trajectory file.
    """
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    if str(motion) in MOTIONS:
        generator = {"car": car_trajectory, "handheld": handheld_trajectory, "slow": slow_trajectory}[str(motion)]
        return generator(seed, frames, fps if fps is not None else DEFAULT_FPS[str(motion)])
    return replay_trajectory(motion, scene, frames, fps=fps, start_s=start_s)


def motion_statistics(trajectory: Trajectory) -> dict[str, float]:
    """Median and 95th percentile of the per-frame rotation (degrees) and translation (metres), and the rate."""
    T = trajectory.T_world_cam
    relative = np.linalg.inv(T[:-1]) @ T[1:]
    angles = np.rad2deg(Rotation.from_matrix(relative[:, :3, :3]).magnitude())
    steps = np.linalg.norm(relative[:, :3, 3], axis=1)
    return {
        "fps": float(1.0 / np.median(np.diff(trajectory.stamps))) if len(T) > 1 else 0.0,
        "rotation_deg_median": float(np.median(angles)), "rotation_deg_p95": float(np.percentile(angles, 95)),
        "translation_m_median": float(np.median(steps)), "translation_m_p95": float(np.percentile(steps, 95)),
    }
