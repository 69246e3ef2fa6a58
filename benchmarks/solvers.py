"""Speed and accuracy of the batched pose solvers against OpenCV and poselib called in a loop on the same problems.

    python benchmarks/solvers.py [--points 500] [--batches 1 64] [--noise 0.5] [--outliers 0.3] [--device cpu]
                                 [--threads 1] [--pairs 48] [--regimes driving handheld rotation]

Prints two tables:

1. Random problems (:func:`make_two_view_problems`): per-problem time (median of repeats, after a warm-up) and median
   rotation / translation-direction errors of each solver at each batch size, OpenCV's and poselib's on identical
   inputs.
2. The project's own matches (:mod:`priordepth_core.evaluate.pose_pairs`: rendered pairs of the synthetic suites,
   the packaged KeypointNet's top-300 matches): driving 640x192, handheld 320x240 and pure rotation (handheld scene,
   the second camera turned 2.5-5 degrees about its centre). Per regime and solver: median rotation error, median
   translation-direction error (for every solver over the pairs ours gives a translation), % usable (rotation < 2 deg
   and translation direction < 10 deg), % flagged pure rotation, and for ours the % of pairs whose gradients w.r.t.
   the matches and weights are finite.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import cv2
import numpy as np
import poselib
import torch

from priordepth_core.evaluate.pose_pairs import match_pairs, render_pairs
from priordepth_core.geometry.pose import (
    solve_essential,
    solve_essential_ransac,
    solve_pnp,
    solve_pnp_ransac,
    solve_procrustes,
)
from priordepth_core.geometry.pose.synthetic_problems import make_two_view_problems
from priordepth_core.geometry.se3 import rotation_error_deg, translation_direction_error_deg
from priordepth_core.inference.model_file import default_checkpoint_path, load_inference_model

# Pass/fail lines of the project's matches: a pose is usable with rotation error below USABLE_ROTATION_DEG and
# translation-direction error below USABLE_TRANSLATION_DEG.
USABLE_ROTATION_DEG = 2.0
USABLE_TRANSLATION_DEG = 10.0
# (name, suite, pure rotation angle) of the regimes of table 2.
REGIMES = {"driving": ("driving", None), "handheld": ("handheld", None), "rotation": ("handheld", 5.0)}


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


def _opencv_essential_matches(x1, x2, K, weights, threshold_px):
    """OpenCV on the matched (weight > 0) points of each pair; (R, t) with t = 0 where it fails."""
    Rs, ts = [], []
    for b in range(x1.shape[0]):
        keep = (weights[b] > 0).numpy()
        p1, p2, Kb = x1[b].numpy()[keep], x2[b].numpy()[keep], K[b].numpy()
        E, mask = (cv2.findEssentialMat(p1, p2, Kb, method=cv2.RANSAC, prob=0.999, threshold=threshold_px)
                   if len(p1) >= 5 else (None, None))
        if E is None or E.shape[0] < 3:
            Rs.append(np.eye(3))
            ts.append(np.zeros(3))
            continue
        _, R, t, _ = cv2.recoverPose(E[:3], p1, p2, Kb, mask=mask)
        Rs.append(R)
        ts.append(t.ravel())
    return torch.from_numpy(np.stack(Rs)), torch.from_numpy(np.stack(ts))


def _poselib_essential(x1, x2, K, weights, threshold_px, image_size):
    """poselib's LO-RANSAC (``estimate_relative_pose``, 5-point, Sampson, bundle refinement) looped over problems."""
    Rs, ts = [], []
    for b in range(x1.shape[0]):
        keep = (weights[b] > 0).numpy() if weights is not None else np.ones(x1.shape[1], dtype=bool)
        Kb = K[b].numpy()
        camera = {"model": "PINHOLE", "width": image_size[0], "height": image_size[1],
                  "params": [Kb[0, 0], Kb[1, 1], Kb[0, 2], Kb[1, 2]]}
        if keep.sum() < 5:
            Rs.append(np.eye(3))
            ts.append(np.zeros(3))
            continue
        pose, _ = poselib.estimate_relative_pose(x1[b].numpy()[keep], x2[b].numpy()[keep], camera, camera,
                                                 {"max_epipolar_error": threshold_px}, {})
        Rs.append(pose.R)
        ts.append(pose.t)
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
    parser.add_argument("--pairs", type=int, default=48, help="rendered pairs per regime of table 2")
    parser.add_argument("--regimes", nargs="*", default=list(REGIMES), choices=list(REGIMES),
                        help="regimes of table 2 (none: skip it)")
    parser.add_argument("--match-threshold", type=float, default=1.0, help="RANSAC threshold (px) of table 2")
    parser.add_argument("--seed", type=int, default=0, help="draws the pairs of table 2 and RANSAC's samples")
    parser.add_argument("--ransac-seeds", type=int, default=5,
                        help="table 2: also run ours with this many RANSAC seeds on the same pairs (spread of usable "
                             "and flagged %%)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)

    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"device {device}, {args.dtype}; torch {torch.__version__}, OpenCV {cv2.__version__}, "
          f"poselib {poselib.__version__}")
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
        seconds, est = _timed(lambda: solve_essential_ransac(x1, x2, K, solver="eight_point"),  # noqa: B023
                              args.repeats)
        row("solve_essential_ransac (8-point)", batch, seconds, _errors(est.R, est.t, problem))
        seconds, est = _timed(lambda: _opencv_essential(problem), args.repeats)  # noqa: B023
        row("OpenCV findEssentialMat+recoverPose", batch, seconds, _errors(est[0], est[1], problem))
        seconds, est = _timed(lambda: _poselib_essential(problem.x1, problem.x2, problem.K, None,  # noqa: B023
                                                         1.0, problem.image_size), args.repeats)  # noqa: B023
        row("poselib estimate_relative_pose", batch, seconds, _errors(est[0], est[1], problem))
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
    if args.regimes:
        _regime_table(args)


def _regime_table(args) -> None:
    """Table 2: the solvers on the project's own matches in the three regimes."""
    keypoint_net = load_inference_model(default_checkpoint_path()).keypoint_net
    print(f"\nproject matches: packaged KeypointNet ({default_checkpoint_path().name}), top-300, {args.pairs} pairs "
          f"per regime, threshold {args.match_threshold} px; usable = rot < {USABLE_ROTATION_DEG} deg and t dir < "
          f"{USABLE_TRANSLATION_DEG} deg; t dir median over the pairs solve_essential_ransac gives a translation\n")
    header = (f"| {'regime':<8} | {'solver':<31} | {'matches':>7} | {'rot err (deg)':>13} | {'t dir err (deg)':>15} "
              f"| {'usable':>6} | {'pure rot flagged':>16} | {'finite grad':>11} | {'ms/pair':>7} |")
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    notes = [_regime_rows(regime, args, keypoint_net) for regime in args.regimes]
    print()
    for note in notes:
        print(note)


def _regime_rows(regime: str, args, keypoint_net) -> str:
    """Render and match one regime's pairs; one row per solver. Returns a note: the spread of ours over RANSAC seeds
    on the same pairs, and pair by pair against poselib on the translation direction."""
    suite, rotation_deg = REGIMES[regime]
    pairs = render_pairs(suite, args.pairs, seed=args.seed, pure_rotation_deg=rotation_deg)
    x1, x2, weights = (v.double() for v in match_pairs(keypoint_net, pairs["image"], pairs["context"]))
    K, T = pairs["K"], pairs["T_context_target"]
    size = (pairs["image"].shape[-1], pairs["image"].shape[-2])
    matches = int((weights > 0).sum(1).median())
    threshold = args.match_threshold

    common = torch.ones(len(K), dtype=torch.bool)  # pairs where ours gives a translation (set by the first row)
    tdirs = {}

    def report(name, R, t, flagged, seconds, finite="–"):
        rot = rotation_error_deg(R.double(), T[:, :3, :3])
        has_t = t.norm(dim=-1) > 0
        tdir = translation_direction_error_deg(t.double(), T[:, :3, 3])
        usable = (rot < USABLE_ROTATION_DEG) & (tdir < USABLE_TRANSLATION_DEG) & has_t
        if name == "solve_essential_ransac":
            common.copy_(has_t)
        # Translation-direction medians on the same pairs for every solver (those ours gives a translation); none
        # where the true translation is zero.
        counted = has_t & common & (T[:, :3, 3].norm(dim=-1) > 0)
        tdir_median = f"{float(tdir[counted].median()):.3f}" if bool(counted.any()) else "–"
        tdirs[name] = (tdir, counted)
        flag = f"{100 * float(flagged.float().mean()):.0f} %" if flagged is not None else "–"
        print(f"| {regime:<8} | {name:<31} | {matches:>7} | {float(rot.median()):>13.3f} | {tdir_median:>15} "
              f"| {100 * float(usable.float().mean()):>4.0f} % | {flag:>16} | {finite:>11} "
              f"| {1000 * seconds / len(R):>7.2f} |")

    generator = lambda: torch.Generator().manual_seed(args.seed)  # noqa: E731
    seconds, est = _timed(lambda: solve_essential_ransac(x1, x2, K, weights, threshold_px=threshold,
                                                         generator=generator()), args.repeats)
    x1g, weights_g = x1.clone().requires_grad_(), weights.clone().requires_grad_()
    graded = solve_essential_ransac(x1g, x2, K, weights_g, threshold_px=threshold, generator=generator())
    (graded.R.sum() + graded.t.sum()).backward()
    finite = torch.isfinite(x1g.grad).all(-1).all(-1) & torch.isfinite(weights_g.grad).all(-1)
    report("solve_essential_ransac", est.R, est.t, est.info["pure_rotation"], seconds,
           f"{100 * float(finite.float().mean()):.0f} %")
    seconds, est = _timed(lambda: solve_essential_ransac(x1, x2, K, weights, threshold_px=threshold,
                                                         generator=generator(), solver="eight_point"),
                          args.repeats)
    report("solve_essential_ransac (8-point)", est.R, est.t, est.info["pure_rotation"], seconds)
    seconds, (R, t) = _timed(lambda: _opencv_essential_matches(x1, x2, K, weights, threshold),
                             args.repeats)
    report("OpenCV findEssentialMat+recover", R, t, None, seconds)
    seconds, (R, t) = _timed(lambda: _poselib_essential(x1, x2, K, weights, threshold, size),
                             args.repeats)
    report("poselib estimate_relative_pose", R, t, None, seconds)
    # The same pairs with other RANSAC seeds: how much of a percentage is the draw of the minimal sets.
    usable, flagged = [], []
    for ransac_seed in range(args.ransac_seeds):
        est = solve_essential_ransac(x1, x2, K, weights, threshold_px=threshold,
                                     generator=torch.Generator().manual_seed(ransac_seed))
        rot = rotation_error_deg(est.R.double(), T[:, :3, :3])
        tdir = translation_direction_error_deg(est.t.double(), T[:, :3, 3])
        ok = (rot < USABLE_ROTATION_DEG) & (tdir < USABLE_TRANSLATION_DEG) & (est.t.norm(dim=-1) > 0)
        usable.append(100 * float(ok.float().mean()))
        flagged.append(100 * float(est.info["pure_rotation"].float().mean()))
    note = (f"{regime}: solve_essential_ransac with RANSAC seeds 0-{args.ransac_seeds - 1} on the same pairs: usable "
            f"{min(usable):.0f}-{max(usable):.0f} % (mean {statistics.mean(usable):.1f}), pure rot flagged "
            f"{min(flagged):.0f}-{max(flagged):.0f} % (mean {statistics.mean(flagged):.1f})")
    ours, counted = tdirs["solve_essential_ransac"]
    theirs, _ = tdirs["poselib estimate_relative_pose"]
    if bool(counted.any()):
        better = int((ours[counted] < theirs[counted]).sum())
        note += (f"; t dir pair by pair against poselib on the {int(counted.sum())} pairs: ours closer on {better}, "
                 f"poselib on {int(counted.sum()) - better}")
    return note


if __name__ == "__main__":
    main()
