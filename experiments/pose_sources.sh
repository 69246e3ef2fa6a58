#!/usr/bin/env bash
# The PriorDepth pose-source experiment (docs/experiments.md): the same lite DepthNet, seed, data and step budget for
# every run; only the pose source (and the losses that come with it) changes.
#
#   bash experiments/pose_sources.sh <suite> <run>      suite: driving | driving_long | handheld | handheld_wide |
#                                                             indoor_slow
#                                                      run:   posenet | essential | pnp | pnp_prior | pnp_detached |
#                                                             pnp_frozen
# Step budget and PoseNet warm-up per suite (STEPS / WARMUP override them): 200 / 80; handheld_wide 400 / 80;
# driving_long 600 / 300. Runs go to runs/pose_sources/<suite>/<run>. One CPU thread per run (run.num_threads: 1),
# so two runs share this 2-core machine. Resumable: re-running the same command continues from last.pt.
set -euo pipefail
suite=$1
run=$2
case $suite in
  handheld_wide) steps=${STEPS:-400} warmup=${WARMUP:-80} ;;
  driving_long) steps=${STEPS:-600} warmup=${WARMUP:-300} ;;
  *) steps=${STEPS:-200} warmup=${WARMUP:-80} ;;
esac
out=runs/pose_sources/$suite/$run

common=(--set "optim.max_steps=$steps" --set "run.out_dir=$out" --set run.num_threads=1 --set run.eval_each_epoch=false
        --set run.checkpoint_every=50)
# KeypointNet: lite, 128-d descriptors, started from the homography-adaptation checkpoint of
#   python -m priordepth_core.train.keypoints --out runs/keypoints   (docs/keypoints.md)
# and trained jointly (KP2D homography + KP3D multi-view losses, keypoint_weight).
keypoints=(--set model.keypoint_lite=true --set model.descriptor_dim=128
           --set model.keypoint_init=runs/keypoints/keypoint_net.pt --set loss.keypoint_weight=1.0
           --set pose.ransac_threshold_px=2.0 --set pose.min_inliers=15)
hybrid=(--set pose.source=pnp --set pose.warmup_source=posenet --set "pose.warmup_steps=$warmup"
        --set pose.fallback=posenet --set pose.posenet_seed=true)
case $suite in
  driving) config=config/train/synthetic_driving.yaml ;;
  # Driving at three times the budget, with the switch to PnP when the depth is better (docs/experiments.md: PnP's
  # pose is only as good as the depth it lifts with). The learning rate does not drop before step 999.
  driving_long) config=config/train/synthetic_driving.yaml ;;
  handheld) config=config/train/synthetic_handheld.yaml
            common+=(--set data.height=128 --set data.width=160 --set run.num_threads=1) ;;
  # The handheld suite with context frames 3 apart (100 ms at 30 Hz, as KITTI's +-1 at 10 Hz): adjacent handheld
  # frames move 7 mm-7 cm, about one pixel of parallax at 160x128, too little for depth (docs/experiments.md).
  handheld_wide) config=config/train/synthetic_handheld.yaml
            common+=(--set data.height=128 --set data.width=160 --set "data.context_offsets=[-3,3]") ;;
  indoor_slow) config=config/train/synthetic_indoor_slow.yaml ;;
  *) echo "unknown suite $suite" >&2; exit 2 ;;
esac
case $run in
  posenet) extra=(--set pose.source=posenet) ;;
  essential) extra=("${keypoints[@]}" --set pose.source=essential) ;;
  # PnP lifts keypoints with the predicted depth: from an untrained DepthNet the solves are valid but their
  # translation direction is 64-80 degrees off (docs/experiments.md), so a PoseNet drives the first WARMUP steps,
  # then PnP takes over; pairs whose PnP solve fails fall back to the PoseNet's pose (which also seeds RANSAC).
  pnp) extra=("${keypoints[@]}" "${hybrid[@]}") ;;
  pnp_prior) extra=("${keypoints[@]}" "${hybrid[@]}" --set loss.sparse_prior_weight=0.1) ;;
  # PnP on a detached depth: the DepthNet learns only through the warp, not through the pose it produced.
  pnp_detached) extra=("${keypoints[@]}" "${hybrid[@]}" --set pose.detach_depth=true) ;;
  # ... and with the KeypointNet frozen at its homography-adaptation checkpoint (no keypoint losses): joint training
  # drifted the keypoints to points that barely move between frames (docs/experiments.md).
  pnp_frozen) extra=("${keypoints[@]}" "${hybrid[@]}" --set pose.detach_depth=true --set model.keypoint_frozen=true
                     --set loss.keypoint_weight=0) ;;
  *) echo "unknown run $run" >&2; exit 2 ;;
esac
resume=()
[[ -f $out/last.pt ]] && resume=(--resume)
exec "${PYTHON:-.venv/bin/python}" -m priordepth_core.train --config "$config" "${common[@]}" "${extra[@]}" "${resume[@]}"
