"""``evaluate pose``: ATE / RPE / KITTI drift of a trajectory file against ground truth (TUM, KITTI or EuRoC)."""

from __future__ import annotations

import argparse

import numpy as np

from .pose_metrics import absolute_trajectory_error, kitti_odometry_error, relative_pose_error


def add_pose_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("pose", help="trajectory accuracy against ground truth")
    parser.add_argument("--estimate", required=True, help="estimated trajectory (TUM, KITTI or EuRoC format)")
    parser.add_argument("--reference", required=True, help="ground-truth trajectory")
    parser.add_argument("--alignment", default="sim3", choices=["sim3", "se3", "scale", "none"],
                        help="alignment before ATE (sim3 for monocular estimates, whose scale is arbitrary)")
    parser.add_argument("--delta", type=int, default=1, help="RPE frame distance")
    parser.add_argument("--max-time-difference", type=float, default=0.01,
                        help="association tolerance in seconds when both files carry timestamps")
    parser.add_argument("--kitti", action="store_true", help="also compute KITTI t_err (%%) / r_err (deg/100 m)")
    parser.add_argument("--json", help="write the metrics here")


def associate(stamps_est: np.ndarray, stamps_ref: np.ndarray, max_difference: float) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs of nearest timestamps within ``max_difference`` (each reference stamp used once).

    Greedy by smallest difference, as TUM's ``associate.py`` and evo's ``associate_trajectories`` do.
    """
    candidates = []
    order = np.argsort(stamps_ref)
    sorted_ref = stamps_ref[order]
    for i, stamp in enumerate(stamps_est):
        j = np.searchsorted(sorted_ref, stamp)
        for k in (j - 1, j):
            if 0 <= k < len(sorted_ref) and abs(sorted_ref[k] - stamp) < max_difference:
                candidates.append((abs(sorted_ref[k] - stamp), i, int(order[k])))
    candidates.sort()
    used_est, used_ref, pairs = set(), set(), []
    for _, i, j in candidates:
        if i not in used_est and j not in used_ref:
            used_est.add(i)
            used_ref.add(j)
            pairs.append((i, j))
    pairs.sort()
    if not pairs:
        raise ValueError(f"no timestamps of the estimate and the reference lie within {max_difference} s")
    index = np.array(pairs)
    return index[:, 0], index[:, 1]


def run_pose(args: argparse.Namespace) -> int:
    from ..data.trajectory_io import read_trajectory
    from .__main__ import _write_json, print_table

    stamps_est, T_est = read_trajectory(args.estimate)
    stamps_ref, T_ref = read_trajectory(args.reference)
    if len(T_est) == len(T_ref) and np.allclose(stamps_est, stamps_ref, atol=args.max_time_difference):
        est_index = ref_index = np.arange(len(T_est))
    else:
        est_index, ref_index = associate(stamps_est, stamps_ref, args.max_time_difference)
    T_est, T_ref = T_est[est_index], T_ref[ref_index]
    ate = absolute_trajectory_error(T_est, T_ref, alignment=args.alignment)
    # RPE of a monocular estimate needs its scale fixed; the same alignment as the ATE is used.
    rpe = relative_pose_error(T_est, T_ref, delta=args.delta, alignment=args.alignment)
    summary = {
        "num_poses": len(T_est),
        "alignment": args.alignment,
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
    print_table({"estimate": summary}, [k for k in summary if k not in ("num_poses", "alignment")])
    _write_json(args.json, {"estimate": args.estimate, "reference": args.reference, **summary})
    return 0
