"""``python -m priordepth_core.infer``: every output written and parseable; bad input exits 1 leaving nothing."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from priordepth_core.data import read_trajectory
from priordepth_core.infer.__main__ import main
from priordepth_core.infer.outputs import OUTPUT_MARKER

# The CLI's main with every frame's writing followed by a long sleep: a run that is surely still writing when the
# test signals it.
SLOW_INFER = """
import signal, sys, time
from priordepth_core.infer import outputs
from priordepth_core.infer.__main__ import main
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even when started in the background
add = outputs.FrameWriter.add
def add_then_wait(self, *args):
    add(self, *args)
    time.sleep(600)
outputs.FrameWriter.add = add_then_wait
sys.exit(main(sys.argv[1:]))
"""


def folder_contents(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes): equal before and after means nothing was touched."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def dead_pid() -> int:
    """The pid of a process that has ended."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


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


def test_pipeline_infer_cli_refuses_an_output_overlapping_the_input(tum_plane_sequence, tmp_path, capsys):
    sequence = shutil.copytree(tum_plane_sequence, tmp_path / "seq")
    (tmp_path / "notes.txt").write_text("the user's")
    (tmp_path / "link").symlink_to(sequence)
    bag_folder = tmp_path / "drive"
    bag_folder.mkdir()
    (bag_folder / "drive.mcap").write_bytes(b"recorded")
    before = folder_contents(tmp_path)
    for input_path, out, relation in ((sequence, sequence, "is the input"),
                                      (sequence, tmp_path / "link", "is the input"),
                                      (sequence, tmp_path, "contains the input"),
                                      (sequence, sequence / "run", "is inside the input"),
                                      (bag_folder / "drive.mcap", bag_folder, "contains the input")):
        status = main(["--input", str(input_path), "--out", str(out), "--overwrite", "--no-progress"])
        err = capsys.readouterr().err
        assert status == 2, (out, err)
        assert relation in err and "choose an output folder outside it" in err and str(out) in err
        assert folder_contents(tmp_path) == before
    assert (tmp_path / "link").is_symlink()


def test_pipeline_infer_cli_overwrites_only_its_own_output(tum_plane_sequence, tiny_model_path, tmp_path, capsys):
    run = ["--input", str(tum_plane_sequence), "--checkpoint", str(tiny_model_path), "--max-frames", "3",
           "--no-progress"]
    users = tmp_path / "results"
    users.mkdir()
    (users / "thesis.tex").write_text("mine")
    assert main([*run, "--out", str(users), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert f"--out {users} exists and was not written by this runner" in err and "remove it yourself" in err
    assert folder_contents(users) == {"thesis.tex": b"mine"}

    out = tmp_path / "run"
    assert main([*run, "--out", str(out)]) == 0
    assert (out / OUTPUT_MARKER).is_file()
    (out / "stale.txt").write_text("from the last run")
    assert main([*run, "--out", str(out), "--overwrite"]) == 0
    assert not (out / "stale.txt").exists() and (out / OUTPUT_MARKER).is_file() and (out / "metrics.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results", "run"]


def test_pipeline_infer_cli_removes_stale_staging_of_dead_runs_only(tum_plane_sequence, tiny_model_path, tmp_path,
                                                                     capsys):
    out = tmp_path / "run"
    stale = tmp_path / f".run.partial-{dead_pid()}"
    (stale / "run" / "depth").mkdir(parents=True)
    running = subprocess.Popen(["sleep", "60"])
    try:
        kept = [tmp_path / f".run.partial-{running.pid}", tmp_path / ".run.partial-notapid",
                tmp_path / f".other.partial-{dead_pid()}", tmp_path / f"run.partial-{dead_pid()}"]
        for folder in kept:
            folder.mkdir()
            (folder / "file").write_text("keep")
        assert main(["--input", str(tum_plane_sequence), "--checkpoint", str(tiny_model_path), "--max-frames", "2",
                     "--out", str(out), "--no-progress"]) == 0
        assert not stale.exists()
        assert all((folder / "file").read_text() == "keep" for folder in kept)
    finally:
        running.kill()
        running.wait()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_pipeline_infer_cli_signal_removes_the_partial_output(tum_plane_sequence, tiny_model_path, tmp_path,
                                                               signal_cli_while_writing, signum):
    sequence = shutil.copytree(tum_plane_sequence, tmp_path / "seq")
    before = folder_contents(sequence)
    out = tmp_path / "run"
    status, err = signal_cli_while_writing(
        SLOW_INFER, ["--input", sequence, "--out", out, "--checkpoint", tiny_model_path, "--no-progress"],
        tmp_path, ".run.partial-*/run/depth/000000.png", signum)
    assert status == 128 + signum, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (f"error: interrupted by {signal.Signals(signum).name}; the partial output "
                                            f"was removed and {out} left as it was: run the command again")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seq"]
    assert folder_contents(sequence) == before
