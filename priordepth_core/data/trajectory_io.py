"""Camera trajectories on disk: KITTI odometry poses, TUM and EuRoC ground truth, read into 4x4 ``T_world_cam``.

Formats (auto-detected from the first data line, or forced with ``format=``):

- ``"kitti"``: 12 numbers per line, the top 3x4 of the camera-to-world transform in row-major order. The files carry
  no stamps: they come from a ``times.txt``-style file (one stamp in seconds per line) or default to 10 Hz.
- ``"tum"``: ``timestamp tx ty tz qx qy qz qw`` separated by whitespace, ``#`` comment lines (TUM RGB-D, scalar-last).
- ``"euroc"``: comma-separated ``timestamp[ns], p_x, p_y, p_z, q_w, q_x, q_y, q_z[, ...]`` (scalar FIRST), ``#``
  header; extra columns (velocity, biases) are ignored.

Quaternions are normalised after a tolerance check (the published files round them to 4-7 digits); KITTI rotations
are checked for orthonormality but kept as written, so poses agree with evo's ``file_interface`` readers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np

from ..geometry.se3 import quaternion_xyzw_from_rotation_np, rotation_from_quaternion_xyzw_np
from .errors import DatasetError

TrajectoryFormat = Literal["kitti", "tum", "euroc"]

# Published files round quaternions and rotation matrices to 4-9 digits; a deviation this large means a wrong column
# order or a corrupt line rather than rounding.
UNIT_QUATERNION_TOLERANCE = 1e-2
ROTATION_TOLERANCE = 1e-2
KITTI_DEFAULT_PERIOD_S = 0.1


def _data_lines(path: Path, comment: str = "#") -> list[tuple[int, str]]:
    """(1-based line number, stripped text) of every non-empty, non-comment line."""
    try:
        text = path.read_text()
    except OSError as error:
        raise DatasetError(f"{path}: cannot read trajectory file ({error.strerror or error})") from error
    lines = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith(comment):
            lines.append((number, stripped))
    return lines


def _parse_row(path: Path, number: int, fields: list[str], min_columns: int, max_columns: int | None,
               what: str, parse: Callable[[str], float] = float) -> list[float]:
    if len(fields) < min_columns or (max_columns is not None and len(fields) > max_columns):
        expected = str(min_columns) if max_columns == min_columns else f"at least {min_columns}"
        raise DatasetError(f"{path}:{number}: expected {expected} columns ({what}), got {len(fields)}")
    try:
        values = [parse(field) for field in fields]
    except ValueError as error:
        raise DatasetError(f"{path}:{number}: non-numeric value ({error})") from None
    if not np.all(np.isfinite(values)):
        raise DatasetError(f"{path}:{number}: non-finite value")
    return values


def _quaternions_to_matrices(path: Path, numbers: list[int], q_xyzw: np.ndarray) -> np.ndarray:
    """(N, 4) scalar-last quaternions -> (N, 3, 3) rotations, rejecting the first line whose norm is far from 1."""
    norms = np.linalg.norm(q_xyzw, axis=1)
    bad = np.flatnonzero(np.abs(norms - 1.0) > UNIT_QUATERNION_TOLERANCE)
    if bad.size:
        raise DatasetError(f"{path}:{numbers[bad[0]]}: quaternion is not unit length (norm {norms[bad[0]]:.6g})")
    return rotation_from_quaternion_xyzw_np(q_xyzw)


def _check_rotations(path: Path, numbers: list[int], R: np.ndarray) -> None:
    """Reject the first line whose (N, 3, 3) block is not orthonormal with determinant +1."""
    orthogonality = np.abs(np.swapaxes(R, 1, 2) @ R - np.eye(3)).max(axis=(1, 2))
    determinant = np.linalg.det(R)
    bad = np.flatnonzero((orthogonality > ROTATION_TOLERANCE) | (np.abs(determinant - 1.0) > ROTATION_TOLERANCE))
    if bad.size:
        i = bad[0]
        raise DatasetError(
            f"{path}:{numbers[i]}: 3x3 block is not a rotation "
            f"(max |R^T R - I| = {orthogonality[i]:.3g}, det {determinant[i]:.6g})"
        )


def _detect_format(path: Path, lines: list[tuple[int, str]]) -> TrajectoryFormat:
    number, first = lines[0]
    if "," in first:
        return "euroc"
    columns = len(first.split())
    if columns == 12:
        return "kitti"
    if columns == 8:
        return "tum"
    raise DatasetError(
        f"{path}:{number}: cannot detect the trajectory format from {columns} columns "
        "(KITTI has 12, TUM has 8, EuRoC is comma-separated)"
    )


def _read_stamps(times_path: Path, count: int) -> np.ndarray:
    lines = _data_lines(times_path)
    stamps = np.array([_parse_row(times_path, n, text.split(), 1, 1, "one stamp in seconds")[0] for n, text in lines])
    if len(stamps) != count:
        raise DatasetError(f"{times_path}: has {len(stamps)} stamps but the pose file has {count} poses")
    return stamps


def _read_kitti(path: Path, lines: list[tuple[int, str]], times_path: Path | None) -> tuple[np.ndarray, np.ndarray]:
    numbers = [number for number, _ in lines]
    rows = np.array([_parse_row(path, n, text.split(), 12, 12, "3x4 row-major camera-to-world") for n, text in lines])
    poses = np.tile(np.eye(4), (len(lines), 1, 1))
    poses[:, :3, :] = rows.reshape(-1, 3, 4)
    _check_rotations(path, numbers, poses[:, :3, :3])
    if times_path is None:
        stamps = np.arange(len(lines), dtype=np.float64) * KITTI_DEFAULT_PERIOD_S
    else:
        stamps = _read_stamps(Path(times_path), len(lines))
    return stamps, poses


def _read_tum(path: Path, lines: list[tuple[int, str]]) -> tuple[np.ndarray, np.ndarray]:
    numbers = [number for number, _ in lines]
    rows = np.array([_parse_row(path, n, text.split(), 8, 8, "timestamp tx ty tz qx qy qz qw") for n, text in lines])
    poses = np.tile(np.eye(4), (len(lines), 1, 1))
    poses[:, :3, 3] = rows[:, 1:4]
    poses[:, :3, :3] = _quaternions_to_matrices(path, numbers, rows[:, 4:8])
    return rows[:, 0].copy(), poses


def _nanoseconds_to_seconds(field: str) -> float:
    # Integer nanoseconds (19 digits) exceed float64's exact range; split before converting.
    field = field.strip()
    if field.lstrip("-").isdigit():
        seconds, nanoseconds = divmod(int(field), 1_000_000_000)
        return seconds + nanoseconds * 1e-9
    return float(field) * 1e-9


def _read_euroc(path: Path, lines: list[tuple[int, str]]) -> tuple[np.ndarray, np.ndarray]:
    numbers = [number for number, _ in lines]
    stamps = np.empty(len(lines))
    rows = np.empty((len(lines), 7))
    for i, (number, text) in enumerate(lines):
        fields = text.split(",")
        if len(fields) < 8:
            raise DatasetError(
                f"{path}:{number}: expected at least 8 comma-separated columns "
                f"(timestamp[ns], p_x, p_y, p_z, q_w, q_x, q_y, q_z), got {len(fields)}"
            )
        rows[i] = _parse_row(path, number, fields[1:8], 7, 7, "p_x, p_y, p_z, q_w, q_x, q_y, q_z")
        try:
            stamps[i] = _nanoseconds_to_seconds(fields[0])
        except ValueError:
            raise DatasetError(f"{path}:{number}: non-numeric timestamp {fields[0].strip()!r}") from None
    poses = np.tile(np.eye(4), (len(lines), 1, 1))
    poses[:, :3, 3] = rows[:, 0:3]
    poses[:, :3, :3] = _quaternions_to_matrices(path, numbers, rows[:, [4, 5, 6, 3]])  # w-first -> scalar-last
    return stamps, poses


def trajectory_format(path: str | Path) -> TrajectoryFormat:
    """The format of a trajectory file, detected from its first data line as :func:`read_trajectory` does.

    Callers that pair two trajectories need it: a ``"kitti"`` file has no stamps of its own, so the stamps
    :func:`read_trajectory` gives it without ``times_path`` are only its row order.

    Raises:
        DatasetError: an unreadable or empty file, or a first data line of no known format.
    """
    path = Path(path)
    lines = _data_lines(path)
    if not lines:
        raise DatasetError(f"{path}: trajectory file has no data lines")
    return _detect_format(path, lines)


def read_trajectory(path: str | Path, format: TrajectoryFormat | None = None,
                    times_path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read a camera trajectory file.

    Args:
        path: the trajectory file (KITTI poses, TUM ground truth or EuRoC csv).
        format: ``"kitti"``, ``"tum"`` or ``"euroc"`` to skip auto-detection.
        times_path: KITTI only: a file with one stamp in seconds per line (``times.txt``); without it stamps are
            ``0.1 * index``.

    Returns:
        ``(stamps, T_world_cam)``: (N,) float64 seconds and (N, 4, 4) float64 camera-to-world transforms.

    Raises:
        DatasetError: (a ``ValueError``) naming the file, line number and problem: wrong column count, a
            non-numeric value, a non-unit quaternion, a 3x3 block that is not a rotation, an empty file, or a
            ``times_path`` whose stamp count differs from the pose count.

    Example:
        >>> stamps, T_world_cam = read_trajectory("sequences/00/poses.txt", times_path="sequences/00/times.txt")
    """
    path = Path(path)
    lines = _data_lines(path)
    if not lines:
        raise DatasetError(f"{path}: trajectory file has no data lines")
    format = format or _detect_format(path, lines)
    if format == "kitti":
        return _read_kitti(path, lines, times_path)
    if times_path is not None:
        raise DatasetError(f"{path}: times_path is only used for KITTI pose files, not {format!r}")
    if format == "tum":
        return _read_tum(path, lines)
    if format == "euroc":
        return _read_euroc(path, lines)
    raise ValueError(f"format must be 'kitti', 'tum' or 'euroc', got {format!r}")


def _check_poses(T_world_cam: np.ndarray, stamps: np.ndarray | None = None) -> np.ndarray:
    T_world_cam = np.asarray(T_world_cam, dtype=np.float64)
    if T_world_cam.ndim != 3 or T_world_cam.shape[1:] != (4, 4):
        raise ValueError(f"T_world_cam must have shape (N, 4, 4), got {T_world_cam.shape}")
    if stamps is not None and stamps.shape != (len(T_world_cam),):
        raise ValueError(f"stamps must have shape ({len(T_world_cam)},) to match T_world_cam, got {stamps.shape}")
    if not np.all(np.isfinite(T_world_cam)):
        raise ValueError("T_world_cam contains non-finite values")
    return T_world_cam


def write_tum_trajectory(path: str | Path, stamps: np.ndarray, T_world_cam: np.ndarray) -> None:
    """Write ``timestamp tx ty tz qx qy qz qw`` lines (with a ``#`` header), at full float precision.

    Args:
        path: output file.
        stamps: (N,) seconds.
        T_world_cam: (N, 4, 4) camera-to-world transforms; rotations are written as unit quaternions with qw >= 0.
    """
    stamps = np.asarray(stamps, dtype=np.float64)
    T_world_cam = _check_poses(T_world_cam, stamps)
    q_xyzw = quaternion_xyzw_from_rotation_np(T_world_cam[:, :3, :3])
    rows = np.concatenate([stamps[:, None], T_world_cam[:, :3, 3], q_xyzw], axis=1)
    lines = ["# timestamp tx ty tz qx qy qz qw"] + [" ".join(repr(float(v)) for v in row) for row in rows]
    Path(path).write_text("\n".join(lines) + "\n")


def write_kitti_poses(path: str | Path, T_world_cam: np.ndarray) -> None:
    """Write the top 3x4 of each transform, row-major, 12 numbers per line, at full float precision.

    Args:
        path: output file.
        T_world_cam: (N, 4, 4) camera-to-world transforms.
    """
    rows = _check_poses(T_world_cam)[:, :3, :].reshape(-1, 12)
    Path(path).write_text("".join(" ".join(repr(float(v)) for v in row) + "\n" for row in rows))
