#!/usr/bin/env bash
# The keypoint-pose diagnostics quoted in docs/experiments.md, written to docs/results/pose_diagnostics.md.
# Needs the checkpoints of experiments/pose_sources.sh and runs/synthetic_driving (the 999-step PoseNet baseline).
set -euo pipefail
py=${PYTHON:-.venv/bin/python}
out=docs/results/pose_diagnostics.md
tmp=$out.partial
d=runs/pose_sources
{
  echo "# Keypoint pose on training pairs: ground-truth depth vs the runs' depth (experiments/pose_diagnostics.py)"
  echo
  "$py" experiments/pose_diagnostics.py --suite driving --height 96 --width 320 \
    --checkpoint runs/synthetic_driving/epoch_009.pt --checkpoint $d/driving/posenet/last.pt \
    --checkpoint $d/driving/pnp/last.pt --checkpoint $d/driving/pnp_detached/last.pt \
    --checkpoint $d/driving_long/posenet/last.pt --checkpoint $d/driving_long/pnp_detached/last.pt
  echo
  "$py" experiments/pose_diagnostics.py --suite driving --height 192 --width 640
  echo
  "$py" experiments/pose_diagnostics.py --suite handheld --height 128 --width 160 --offset 1
  echo
  "$py" experiments/pose_diagnostics.py --suite handheld --height 128 --width 160 --offset 3 \
    --checkpoint $d/handheld_wide/posenet/last.pt --checkpoint $d/handheld_wide/pnp/last.pt
  echo
  "$py" experiments/pose_diagnostics.py --suite handheld --height 224 --width 320 --offset 3
} > "$tmp"
mv "$tmp" "$out"
echo "wrote $out"
