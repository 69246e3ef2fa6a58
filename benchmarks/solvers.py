"""Speed and accuracy of the batched pose solvers against OpenCV called in a loop on the same problems.

    python benchmarks/solvers.py [--points 500] [--batches 1 64] [--noise 0.5] [--outliers 0.3] [--device cpu]
                                 [--threads 1]

Prints one table: per-problem time (median of repeats, after a warm-up) and median rotation / translation-direction
errors for each solver at each batch size, and OpenCV's figures on identical inputs.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import cv2
import numpy as np
import torch

from priordepth_core.geometry.pose import (
    solve_essential,
    solve_essential_ransac,
    solve_pnp,
    solve_pnp_ransac,
    solve_procrustes,
)
from priordepth_core.geometry.pose.synthetic_problems import make_two_view_problems
from priordepth_core.geometry.se3 import rotation_error_deg, translation_direction_error_deg


def _timed(fn, repeats: int) -> tuple[float, object]:
    fn()  # warm-up
    times, result = [], None
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def _errors(R_est, t_est, problem) -> tuple[float, float]:
    rot = rotation_error_deg(R_est.double().cpu(), problem.R.double().cpu())
    trans = translation_direction_error_deg(t_est.double().cpu(), problem.t.double().cpu())
    return float(rot.median()), float(trans.median())


def _opencv_essential(problem):
    Rs, ts = [], []
    for b in range(problem.x1.shape[0]):
        x1 = problem.x1[b].cpu().numpy().astype(np.float64)
        x2 = problem.x2[b].cpu().numpy().astype(np.float64)
        K = problem.K[b].cpu().numpy().astype(np.float64)
        E, mask = cv2.findEssentialMat(x1, x2, K, method=cv2.RANSAC, prob=0.999, threshold=1.0)
        if E is None or E.shape != (3, 3):
            Rs.append(np.eye(3))
            ts.append(np.zeros(3))
            continue
        _, R, t, _ = cv2.recoverPose(E, x1, x2, K, mask=mask)
        Rs.append(R)
        ts.append(t.ravel())
    return torch.from_numpy(np.stack(Rs)), torch.from_numpy(np.stack(ts))


def _opencv_pnp(problem):
    Rs, ts = [], []
    for b in range(problem.x1.shape[0]):
        X = problem.points1[b].cpu().numpy().astype(np.float64)
        x2 = problem.x2[b].cpu().numpy().astype(np.float64)
        K = problem.K[b].cpu().numpy().astype(np.float64)
        ok, rvec, tvec, inliers = cv2.solvePnPRansac(X, x2, K, None, reprojectionError=1.0, confidence=0.999,
                                                     iterationsCount=1000, flags=cv2.SOLVEPNP_EPNP)
        if not ok or inliers is None:
            Rs.append(np.eye(3))
            ts.append(np.zeros(3))
            continue
        # OpenCV's own refinement on the inlier set, as a user would call it.
        keep = inliers.ravel()
        rvec, tvec = cv2.solvePnPRefineLM(X[keep], x2[keep], K, None, rvec, tvec)
        Rs.append(cv2.Rodrigues(rvec)[0])
        ts.append(tvec.ravel())
    return torch.from_numpy(np.stack(Rs)), torch.from_numpy(np.stack(ts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=500)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--noise", type=float, default=0.5, help="pixel noise sigma")
    parser.add_argument("--outliers", type=float, default=0.3, help="outlier fraction")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch and OpenCV (0 = default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)

    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"device {device}, {args.dtype}; torch {torch.__version__}, OpenCV {cv2.__version__}")
    print(f"problems: N={args.points} correspondences, {args.noise} px noise, {args.outliers:.0%} outliers\n")
    header = f"| {'solver':<35} | {'batch':>5} | {'ms/problem':>10} | {'rot err (deg)':>13} | {'t dir err (deg)':>15} |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")

    def row(name, batch, seconds, errors):
        ms = 1000 * seconds / batch
        print(f"| {name:<35} | {batch:>5} | {ms:>10.3f} | {errors[0]:>13.4f} | {errors[1]:>15.4f} |")

    for batch in args.batches:
        gen = torch.Generator().manual_seed(batch)
        problem = make_two_view_problems(batch, args.points, noise_px=args.noise, outlier_ratio=args.outliers,
                                         dtype=torch.float64, generator=gen)
        x1, x2, K = (problem.x1.to(device, dtype), problem.x2.to(device, dtype), problem.K.to(device, dtype))
        points1 = problem.points1.to(device, dtype)
        clean = problem.inliers.to(device, dtype)

        seconds, est = _timed(lambda: solve_essential_ransac(x1, x2, K), args.repeats)  # noqa: B023
        row("solve_essential_ransac", batch, seconds, _errors(est.R, est.t, problem))
        seconds, est = _timed(lambda: _opencv_essential(problem), args.repeats)  # noqa: B023
        row("OpenCV findEssentialMat+recoverPose", batch, seconds, _errors(est[0], est[1], problem))
        seconds, est = _timed(lambda: solve_pnp_ransac(points1, x2, K), args.repeats)  # noqa: B023
        row("solve_pnp_ransac", batch, seconds, _errors(est.R, est.t, problem))
        seconds, est = _timed(lambda: _opencv_pnp(problem), args.repeats)  # noqa: B023
        row("OpenCV solvePnPRansac+LM", batch, seconds, _errors(est[0], est[1], problem))
        # Direct weighted solvers on the known inliers (what the training step differentiates through).
        seconds, est = _timed(lambda: solve_essential(x1, x2, K, clean), args.repeats)  # noqa: B023
        row("solve_essential (inliers)", batch, seconds, _errors(est.R, est.t, problem))
        seconds, est = _timed(lambda: solve_pnp(points1, x2, K, clean), args.repeats)  # noqa: B023
        row("solve_pnp (inliers)", batch, seconds, _errors(est.R, est.t, problem))
        points2 = points1 @ problem.R.to(device, dtype).transpose(1, 2) + problem.t.to(device, dtype)[:, None]
        seconds, est = _timed(lambda: solve_procrustes(points1, points2, clean), args.repeats)  # noqa: B023
        row("solve_procrustes (3D-3D)", batch, seconds, _errors(est.R, est.t, problem))


if __name__ == "__main__":
    main()
