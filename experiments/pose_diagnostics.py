"""How good can the keypoint pose be? PnP and essential solves on training pairs against ground truth.

    python experiments/pose_diagnostics.py --suite driving --height 96 --width 320 [--offset 1] \
        [--checkpoint runs/synthetic_driving/epoch_009.pt ...] [--keypoints runs/keypoints/keypoint_net.pt]

Draws ``--pairs`` random (target, target + offset) pairs of the suite's training split at the given resolution,
matches the KeypointNet's top-300 keypoints exactly as the trainer does, and prints one row per depth source:

- ``gt``: target keypoints lifted with the ground-truth depth (bilinear, as the trainer samples) — the best a perfect
  DepthNet could give PnP with these keypoints at this resolution;
- one row per ``--checkpoint``: lifted with that checkpoint's DepthNet (its median-scaled abs_rel on the same batch
  is printed beside it);
- ``essential``: the weighted essential matrix on the same matches (fractions valid / pure rotation / degenerate and
  the median rotation-compensated parallax).

Errors are medians over the pairs: rotation (degrees), translation direction (degrees) and, for PnP, the ratio of the
solved to the true translation length (1 = the depth's scale is right).

    python experiments/pose_diagnostics.py --fixed-point config/train/runs/driving_priordepth.yaml [--pairs 12]

instead prints the fixed-point guard (priordepth_core/train/fixed_point.py) on held-out test samples of that config
(with its match cache and context choice): per pose source, the photometric error of the warp with the true depth and
with a flat depth, each with the pose the source gives for that depth, and the margin flat / true - 1 (> 0: the loss
can tell the true depth from a flat one).
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch.utils.data import default_collate

from priordepth_core.data.registry import build_split
from priordepth_core.evaluate.depth_cli import load_depth_model
from priordepth_core.evaluate.pose_pairs import match_pairs
from priordepth_core.geometry.camera import unproject_points
from priordepth_core.geometry.pose import solve_essential_ransac, solve_pnp_ransac
from priordepth_core.geometry.se3 import rotation_error_deg, translation_direction_error_deg
from priordepth_core.losses.sparse_prior import sample_depth_at
from priordepth_core.models import KeypointNet
from priordepth_core.train.checkpoint import load_checkpoint
from priordepth_core.train.config import load_config
from priordepth_core.train.fixed_point import depth_hypothesis_losses, fixed_point_margin
from priordepth_core.train.keypoints import load_keypoint_net


def _keypoint_net_from_checkpoint(path: str):
    """The jointly trained KeypointNet of a trainer checkpoint, or None when the run had none."""
    state = load_checkpoint(path)
    prefix = "keypoint_net."
    weights = {k[len(prefix):]: v for k, v in state["model"].items() if k.startswith(prefix)}
    if not weights:
        return None
    model = state["config"]["model"]
    net = KeypointNet(descriptor_dim=model["descriptor_dim"], lite=model["keypoint_lite"],
                      descriptor_head=model.get("keypoint_descriptor_head", "kp2d"))
    net.load_state_dict(weights)
    return net.eval()


def print_fixed_point(config_path: str, samples: int) -> int:
    config = load_config(config_path)
    dataset = build_split(config.data, "test")
    step = max(1, len(dataset) // samples)
    batch = default_collate([dataset[i] for i in range(0, len(dataset), step)][:samples])
    losses = depth_hypothesis_losses(batch)
    print(f"{config_path}: {len(batch['image'])} test samples, context offsets "
          f"{batch['context_offsets'].tolist()[:4]}...\n")
    print("| pose source | error, true depth | error, flat depth | margin flat/true - 1 |")
    print("|---|---|---|---|")
    for source, by_depth in losses.items():
        print(f"| {source} | {by_depth['true']:.4f} | {by_depth['flat']:.4f} | {fixed_point_margin(by_depth):.2f} |")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=("driving", "handheld", "indoor-slow"))
    parser.add_argument("--height", type=int)
    parser.add_argument("--width", type=int)
    parser.add_argument("--fixed-point", metavar="CONFIG", help="print the fixed-point guard for this training config")
    parser.add_argument("--offset", type=int, default=1, help="context frame offset of each pair")
    parser.add_argument("--pairs", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keypoints", default="runs/keypoints/keypoint_net.pt")
    parser.add_argument("--checkpoint", action="append", default=[], help="a trainer checkpoint whose DepthNet lifts")
    parser.add_argument("--threshold-px", type=float, default=2.0)
    args = parser.parse_args(argv)
    if args.fixed_point:
        return print_fixed_point(args.fixed_point, args.pairs)
    if args.suite is None or args.height is None or args.width is None:
        parser.error("--suite, --height and --width are required (or --fixed-point CONFIG)")

    config = load_config(overrides=[f"data.suite={args.suite}", f"data.height={args.height}",
                                    f"data.width={args.width}", f"data.context_offsets=[{args.offset}]"])
    dataset = build_split(config.data, "train")
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(args.seed))[:args.pairs]
    batch = default_collate([dataset[int(i)] for i in order])
    image, context, K = batch["image"], batch["context"][:, 0], batch["K"]
    T_true, depth_true = batch["T_context_target"][:, 0], batch["depth_gt"]
    def matches_of(keypoint_net):
        return match_pairs(keypoint_net, image, context, top_k=config.pose.top_k)

    pretrained_matches = matches_of(load_keypoint_net(args.keypoints)[0])
    x_target, x_context, weights = pretrained_matches

    def errors(R, t):
        rot = rotation_error_deg(R.float(), T_true[:, :3, :3]).median().item()
        tdir = translation_direction_error_deg(t.float(), T_true[:, :3, 3]).median().item()
        return rot, tdir

    print(f"{args.suite} {args.width}x{args.height}, offset {args.offset}, {args.pairs} pairs, "
          f"median true translation "
          f"{T_true[:, :3, 3].norm(dim=-1).median():.3f} m, median matches {int((weights > 0).sum(1).median())}\n")
    print("| depth + keypoints | abs_rel (batch) | match flow (px) | true depth at matches (m) | inliers "
          "| rot err (deg) | t dir err (deg) | t length ratio |")
    print("|---|---|---|---|---|---|---|---|")
    # (row name, depth that lifts, matches): the pretrained KeypointNet for every depth, and each run's own jointly
    # trained KeypointNet with ground-truth depth and with the run's depth (what its training solves saw).
    sources = [("gt + pretrained keypoints", depth_true, pretrained_matches)]
    for path in args.checkpoint:
        with torch.no_grad():
            depth = load_depth_model(path, [], "cpu")[1](image)["depth"][0]
        sources.append((path, depth, pretrained_matches))
        own = _keypoint_net_from_checkpoint(path)
        if own is not None:
            own_matches = matches_of(own)
            sources.append(("gt + its jointly trained keypoints", depth_true, own_matches))
            sources.append(("its depth + its keypoints", depth, own_matches))
    for name, depth, (x_target, x_context, weights) in sources:
        with torch.no_grad():
            z = sample_depth_at(depth, x_target)
            usable = weights * ((z > 0) & torch.isfinite(z))
            points = unproject_points(x_target, z.clamp_min(1e-3), K)
            est = solve_pnp_ransac(points.double(), x_context.double(), K.double(), usable.double(),
                                   num_hypotheses=128, threshold_px=args.threshold_px,
                                   generator=torch.Generator().manual_seed(args.seed))
        rot, tdir = errors(est.R, est.t)
        ratio = (est.t.float().norm(dim=-1) / T_true[:, :3, 3].norm(dim=-1)).median().item()
        valid = depth_true > 0
        scale = depth_true[valid].median() / depth[valid].median()
        abs_rel = ((depth * scale - depth_true).abs() / depth_true)[valid].mean().item()
        matched = weights > 0
        flow = (x_context - x_target).norm(dim=-1)[matched].median().item()
        z_true = sample_depth_at(depth_true, x_target)
        z_true = z_true[matched & (z_true > 0)].median().item()
        print(f"| {name} | {abs_rel:.3f} | {flow:.1f} | {z_true:.1f} | {int(est.inliers.sum(1).median())} | {rot:.2f} "
              f"| {tdir:.1f} | {ratio:.3f} |")
    x_target, x_context, weights = pretrained_matches
    with torch.no_grad():
        est = solve_essential_ransac(x_target.double(), x_context.double(), K.double(), weights.double(),
                                     num_hypotheses=128, threshold_px=args.threshold_px,
                                     generator=torch.Generator().manual_seed(args.seed))
    info = est.info
    rot, tdir = errors(est.R, est.t)
    print(f"\nessential: valid {est.valid.float().mean():.2f}, "
          f"pure rotation {info['pure_rotation'].float().mean():.2f}, "
          f"degenerate {info['degenerate'].float().mean():.2f}, median parallax after rotation "
          f"{info['median_parallax_px'].median():.2f} px, rot err {rot:.2f} deg, t dir err (valid pairs) "
          + (f"{translation_direction_error_deg(est.t[est.valid].float(), T_true[est.valid, :3, 3]).median():.1f} deg"
             if bool(est.valid.any()) else "–"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
