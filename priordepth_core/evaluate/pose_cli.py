"""``evaluate pose``: ATE / RPE / KITTI drift of a trajectory file against ground truth (TUM, KITTI or EuRoC).

Poses are paired by timestamp when both files carry stamps (TUM, EuRoC, or KITTI given its ``times.txt``), and by row
only when a KITTI file without stamps meets a trajectory of the same length; anything else is refused rather than
guessed. The pairing used is printed (``association: ...``) and written to the JSON.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import numpy as np

from ..data.trajectory_io import read_trajectory, trajectory_format
from ..data.tum_rgbd import associate as associate_stamps
from .pose_metrics import absolute_trajectory_error, kitti_odometry_error, relative_pose_error
from .report import print_table, write_json

# Ground truth with tracking gaps still pairs most estimate poses; fewer than half of the shorter trajectory paired
# means the stamps are on different clocks or in different units, and the metrics would describe a fragment.
MIN_MATCHED_FRACTION = 0.5


def add_pose_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("pose", help="trajectory accuracy against ground truth")
    parser.add_argument("--estimate", required=True, help="estimated trajectory (TUM, KITTI or EuRoC format)")
    parser.add_argument("--reference", required=True, help="ground-truth trajectory")
    parser.add_argument("--alignment", default="sim3", choices=["sim3", "se3", "scale", "none"],
                        help="alignment before ATE (sim3 for monocular estimates, whose scale is arbitrary)")
    parser.add_argument("--delta", type=int, default=1, help="RPE frame distance")
    parser.add_argument("--max-time-difference", type=float, default=0.01,
                        help="association tolerance in seconds when both files carry timestamps")
    parser.add_argument("--min-matched-fraction", type=float, default=MIN_MATCHED_FRACTION,
                        help="refuse a timestamp association that pairs fewer than this fraction of the shorter "
                             "trajectory's poses")
    parser.add_argument("--estimate-times", help="KITTI-format estimate: its stamps, one per line in seconds "
                                                 "(times.txt); without them it can only be paired by index")
    parser.add_argument("--reference-times", help="KITTI-format reference: its stamps (times.txt)")
    parser.add_argument("--kitti", action="store_true", help="also compute KITTI t_err (%%) / r_err (deg/100 m)")
    parser.add_argument("--json", help="write the metrics here")


def associate(stamps_est: np.ndarray, stamps_ref: np.ndarray, max_difference: float) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs of nearest timestamps within ``max_difference`` (each stamp used once), sorted by estimate stamp.

    Greedy by smallest difference, as TUM's ``associate.py`` and evo's ``associate_trajectories`` do.

    Raises:
        ValueError: if no pair of stamps lies within ``max_difference``.
    """
    pairs = associate_stamps(stamps_est, stamps_ref, max_difference)
    if not pairs:
        raise ValueError(f"no timestamps of the estimate and the reference lie within {max_difference} s")
    index = np.array(pairs)
    return index[:, 0], index[:, 1]


@dataclass(frozen=True)
class TrajectoryFile:
    """A trajectory read from disk; ``stamps`` is None for a KITTI file without its times (rows are only ordered)."""

    path: str
    stamps: np.ndarray | None
    T_world_cam: np.ndarray

    @classmethod
    def read(cls, path: str, times_path: str | None = None) -> TrajectoryFile:
        format = trajectory_format(path)
        if times_path is not None and format != "kitti":
            raise ValueError(f"{path}: a {format.upper()} file carries its own timestamps; --estimate-times / "
                             "--reference-times are only for KITTI-format files: drop the option")
        stamps, T_world_cam = read_trajectory(path, format=format, times_path=times_path)
        has_stamps = format != "kitti" or times_path is not None
        return cls(path=str(path), stamps=stamps if has_stamps else None, T_world_cam=T_world_cam)

    def describe(self) -> str:
        """``path (N poses[, no timestamps])``, as the association errors name it."""
        return f"{self.path} ({len(self.T_world_cam)} poses{'' if self.stamps is not None else ', no timestamps'})"


@dataclass(frozen=True)
class Association:
    """Row pairs of an estimate and a reference, and how they were found.

    Attributes:
        est_index: (P,) rows of the estimate.
        ref_index: (P,) rows of the reference paired with them.
        by_timestamp: paired by nearest stamp; otherwise row i with row i.
        max_difference_s: the largest stamp difference of a pair (0 when by index).
    """

    est_index: np.ndarray
    ref_index: np.ndarray
    by_timestamp: bool
    max_difference_s: float = 0.0

    def describe(self) -> str:
        if self.by_timestamp:
            return f"by timestamp (max diff {self.max_difference_s * 1e3:.1f} ms, {len(self.est_index)} pairs)"
        return f"by index (both have {len(self.est_index)} poses)"


def associate_trajectories(estimate: TrajectoryFile, reference: TrajectoryFile, max_difference: float,
                           min_matched_fraction: float = MIN_MATCHED_FRACTION) -> Association:
    """Pair the poses of two trajectory files: by timestamp when both have stamps, else by index if counts match.

    Args:
        estimate: the estimated trajectory.
        reference: the ground truth.
        max_difference: timestamp association tolerance in seconds.
        min_matched_fraction: the fewest pairs accepted, as a fraction of the shorter trajectory.

    Raises:
        ValueError: naming both files and their pose counts, when a file without stamps has a different pose count
            than the other, or when the stamps pair fewer poses than ``min_matched_fraction`` asks.
    """
    if not 0.0 < min_matched_fraction <= 1.0:
        raise ValueError(f"min_matched_fraction must lie in (0, 1], got {min_matched_fraction}")
    num_est, num_ref = len(estimate.T_world_cam), len(reference.T_world_cam)
    if estimate.stamps is None or reference.stamps is None:
        if num_est != num_ref:
            raise ValueError(
                f"cannot pair {estimate.describe()} with {reference.describe()}: a KITTI-format file has no "
                "timestamps, so poses can only be paired by index, and the counts differ. Give its stamps with "
                "--estimate-times/--reference-times (one per line, as KITTI's times.txt) or write it in TUM format"
            )
        rows = np.arange(num_est)
        return Association(rows, rows, by_timestamp=False)
    needed = max(2, math.ceil(min_matched_fraction * min(num_est, num_ref)))
    pairs = np.array(associate_stamps(estimate.stamps, reference.stamps, max_difference), dtype=np.int64)
    if len(pairs) < needed:
        raise ValueError(
            f"only {len(pairs)} poses of {estimate.describe()} have a pose of {reference.describe()} within "
            f"{max_difference} s; at least {needed} are needed. Stamps span {_span(estimate.stamps)} and "
            f"{_span(reference.stamps)}: check both files use the same clock and units, or widen "
            "--max-time-difference"
        )
    est_index, ref_index = pairs[:, 0], pairs[:, 1]
    difference = np.abs(estimate.stamps[est_index] - reference.stamps[ref_index]).max()
    return Association(est_index, ref_index, by_timestamp=True, max_difference_s=float(difference))


def _span(stamps: np.ndarray) -> str:
    return f"{stamps.min():.3f}..{stamps.max():.3f} s"


def run_pose(args: argparse.Namespace) -> int:
    estimate = TrajectoryFile.read(args.estimate, args.estimate_times)
    reference = TrajectoryFile.read(args.reference, args.reference_times)
    association = associate_trajectories(estimate, reference, args.max_time_difference, args.min_matched_fraction)
    print(f"association: {association.describe()}")
    T_est = estimate.T_world_cam[association.est_index]
    T_ref = reference.T_world_cam[association.ref_index]
    ate = absolute_trajectory_error(T_est, T_ref, alignment=args.alignment)
    # RPE of a monocular estimate needs its scale fixed; the same alignment as the ATE is used.
    rpe = relative_pose_error(T_est, T_ref, delta=args.delta, alignment=args.alignment)
    summary = {
        "num_poses": len(T_est),
        "alignment": args.alignment,
        "association": association.describe(),
        "scale": float(ate["scale"]),
        "ate_rmse": float(ate["rmse"]),
        "ate_mean": float(ate["mean"]),
        "ate_median": float(ate["median"]),
        "rpe_trans_rmse": float(rpe["translation"]["rmse"]),
        "rpe_rot_rmse_deg": float(rpe["rotation_deg"]["rmse"]),
    }
    if args.kitti:
        kitti = kitti_odometry_error(T_est, T_ref, alignment=args.alignment)
        summary["kitti_t_err_percent"] = float(kitti["t_err_percent"])
        summary["kitti_r_err_deg_per_100m"] = float(kitti["r_err_deg_per_100m"])
    print(f"{summary['num_poses']} associated poses, {args.alignment} alignment (scale {summary['scale']:.4f}), "
          f"RPE delta {args.delta} frames")
    print_table({"estimate": summary}, [k for k in summary if k not in ("num_poses", "alignment", "association")])
    write_json(args.json, {"estimate": args.estimate, "reference": args.reference, **summary})
    return 0
