"""``python -m priordepth_core.infer``: every output written and parseable; bad input exits 1 leaving nothing."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from priordepth_core.data import read_trajectory
from priordepth_core.infer.__main__ import main


def test_pipeline_infer_cli_writes_all_outputs(tum_plane_sequence, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--input", str(tum_plane_sequence), "--out", str(out), "--no-progress", "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "ATE (Sim3)" in printed and "depth abs_rel" in printed and "FPS" in printed
    frames = 8
    depth_files = sorted((out / "depth").glob("*.png"))
    assert len(depth_files) == frames
    depth_mm = cv2.imread(str(depth_files[0]), cv2.IMREAD_UNCHANGED)
    assert depth_mm.dtype == np.uint16 and depth_mm.shape == (96, 320) and depth_mm.max() > 0
    color = cv2.imread(str(out / "depth_color" / "000003.png"))
    assert color.shape == (96, 320, 3)
    assert len(list((out / "matches").glob("*.png"))) == frames - 1  # none for the first frame
    assert cv2.imread(str(out / "matches" / "000001.png")).shape == (96, 640, 3)
    for picture in ("overview.png", "trajectory.png"):
        assert cv2.imread(str(out / picture)) is not None, picture
    stamps, poses = read_trajectory(out / "trajectory.txt", format="tum")
    assert len(stamps) == frames and np.allclose(stamps, 10 + np.arange(frames) / 10)
    assert np.allclose(poses[0], np.eye(4))
    rows = (out / "frames.csv").read_text().strip().splitlines()
    assert len(rows) == frames + 1 and rows[0].startswith("frame,stamp,state")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["frames"] == frames and metrics["tracking"]["initializing"] == 1
    assert np.isfinite(metrics["pose"]["ate_rmse_m"])
    assert metrics["pose"]["path_length_m"] == pytest.approx(0.9497, abs=1e-3)  # 7 x 4 px sideways, wobbling down
    assert 0 < metrics["depth"]["abs_rel"] < 1 and metrics["depth"]["num_images"] == frames
    assert metrics["speed"]["fps"] > 0 and metrics["speed"]["frames_timed"] == frames - 2
    assert metrics["provenance"]["pose_source"]
    assert not list(tmp_path.glob(".run.partial-*"))


def test_pipeline_infer_cli_reads_rosbag(tum_plane_sequence, tmp_path, capsys):
    from rosbag_tools.__main__ import main as rosbag_main

    bag = tmp_path / "plane_bag"
    assert rosbag_main(["tum2bag", str(tum_plane_sequence), "-o", str(bag)]) == 0
    out = tmp_path / "from_bag"
    assert main(["--input", str(bag), "--out", str(out), "--no-progress", "--max-frames", "5"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["input_kind"] == "rosbag" and metrics["frames"] == 5
    assert "pose" in metrics  # ground truth from /ground_truth/odometry
    assert "depth" not in metrics  # the bag reader yields no depth


def test_pipeline_infer_cli_bad_input_leaves_nothing(tum_plane_sequence, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--input", str(tmp_path / "missing"), "--out", str(out), "--no-progress"]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["--input", "suite:nowhere", "--out", str(out), "--no-progress"]) == 1
    assert "unknown suite" in capsys.readouterr().err
    not_a_sequence = tmp_path / "empty"
    not_a_sequence.mkdir()
    assert main(["--input", str(not_a_sequence), "--out", str(out), "--no-progress"]) == 1
    assert "not a supported input" in capsys.readouterr().err
    # A sequence whose sixth image is corrupt: fails mid-run, and the partial output is removed.
    broken = tmp_path / "broken"
    shutil.copytree(tum_plane_sequence, broken)
    sixth = sorted((broken / "rgb").glob("*.png"))[5]
    sixth.write_bytes(sixth.read_bytes()[:100])
    assert main(["--input", str(broken), "--out", str(out), "--no-progress"]) == 1
    assert "cannot decode" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".run.partial-*"))
    # An existing output is not overwritten without --overwrite.
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["--input", str(tum_plane_sequence), "--out", str(out), "--no-progress"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
    assert main(["--input", str(tum_plane_sequence), "--out", str(tmp_path / "x"), "--every", "0"]) == 1
    assert not (tmp_path / "x").exists()


def test_pipeline_infer_cli_reads_kitti_odometry_layout(tmp_path, capsys):
    from priordepth_core.data.synthetic import SequenceSpec, make_sequence, write_sequence

    root = write_sequence(make_sequence(SequenceSpec("street", "car", 4, 320, 96, seed=3)), tmp_path / "kitti",
                          "kitti", progress=False)
    out = tmp_path / "run"
    assert main(["--input", str(root / "sequences" / "00"), "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["input_kind"] == "kitti_odometry" and metrics["frames"] == 4
    assert "pose" in metrics and "depth" in metrics  # poses/00.txt and depth_exact/
    assert len(list((out / "depth").glob("*.png"))) == 4
