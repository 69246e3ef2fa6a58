"""priordepth-train-bag (priordepth_core.train.from_bag): a bag recorded through a known plumb_bob lens is rectified
back to the exact pinhole render, bad recordings are refused before anything is written, and (slow) a 20-step run
gives a packed model.pt that the offline runner loads and runs on every frame, with its report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import Reader, Writer

from priordepth_core.data import RosbagReader
from priordepth_core.inference import load_inference_model
from priordepth_core.train import from_bag
from rosbag_tools.bag_writer import write_bag
from rosbag_tools.messages import TYPESTORE
from rosbag_tools.sources import CameraSequence, synthetic_rendered_sequence, with_lens

# A barrel lens as webcams have (plumb_bob k1 k2 p1 p2 k3).
LENS = (-0.25, 0.07, 0.001, -0.0005, 0.0)
WIDTH, HEIGHT, FRAMES = 128, 96, 16


@pytest.fixture(scope="module")
def pinhole_sequence() -> CameraSequence:
    """A short synthetic room filmed handheld: exact pinhole renders (the ground truth of rectification)."""
    sequence = synthetic_rendered_sequence("room", "handheld", FRAMES, WIDTH, HEIGHT, seed=3)
    frames = list(sequence.frames())
    return CameraSequence(name=sequence.name, K=sequence.K, stamps=sequence.stamps, frames=lambda: iter(frames),
                          T_world_cam=sequence.T_world_cam, has_depth=True)


@pytest.fixture(scope="module")
def lens_bag(pinhole_sequence, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lens") / "room_lens"
    write_bag(with_lens(pinhole_sequence, LENS), out, progress=False)
    return out


def textured_sequence(count: int, step_px: float, name: str = "textured") -> CameraSequence:
    """A smooth random texture panning ``step_px`` per frame (0: a static camera), without rendering."""
    rng = np.random.default_rng(1)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (HEIGHT, WIDTH + 200, 3), dtype=np.uint8), (5, 5), 1.5)
    K = np.array([[110.0, 0, (WIDTH - 1) / 2], [0, 110.0, (HEIGHT - 1) / 2], [0, 0, 1]])

    def frames():
        for i in range(count):
            start = round(i * step_px)
            yield np.ascontiguousarray(texture[:, start:start + WIDTH]), None

    return CameraSequence(name=name, K=K, stamps=np.arange(count) / 10.0, frames=frames)


def test_reader_rectifies_the_lens_bag_to_the_pinhole_render_within_half_a_pixel(lens_bag, pinhole_sequence):
    reader = RosbagReader(lens_bag, "/camera/image", "/camera/camera_info")
    raw = RosbagReader(lens_bag, "/camera/image", "/camera/camera_info", undistort=False)
    frame = reader.sequences[0][5]
    assert raw.sequences[0][5].distortion.coefficients == LENS and frame.distortion is None
    np.testing.assert_array_equal(frame.K, pinhole_sequence.K)  # CameraInfo P = [K | 0]: the rectified camera is K
    pinhole = list(pinhole_sequence.frames())[5][0]
    grey = [cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
            for image in (pinhole, reader.load_rgb(frame), raw.load_rgb(raw.sequences[0][5]))]
    inside = np.zeros((HEIGHT, WIDTH), bool)
    inside[12:-12, 12:-12] = True  # away from the black border the barrel lens leaves

    def displacement(image: np.ndarray) -> np.ndarray:
        """Per-pixel distance (px) by which ``image`` is displaced from the pinhole render (dense optical flow)."""
        flow = cv2.calcOpticalFlowFarneback(grey[0], image, None, 0.5, 3, 9, 5, 5, 1.1, 0)
        return np.linalg.norm(flow, axis=2)[inside]

    assert np.percentile(displacement(grey[2]), 90) > 2.0  # the recorded (distorted) image is off by pixels
    rectified = displacement(grey[1])
    assert np.median(rectified) < 0.25 and np.percentile(rectified, 90) < 0.5
    # Points: where the lens put a pinhole pixel, the reader's undistortion puts it back.
    undistorter = raw.undistorter_of(raw.sequences[0][0]) or reader.undistorter_of(frame)
    grid = np.stack(np.meshgrid(np.arange(4.0, WIDTH, 9), np.arange(4.0, HEIGHT, 9)), axis=-1).reshape(-1, 2)
    back = reader.undistorter_of(frame).undistort_points(reader.undistorter_of(frame).distort_points(grid))
    assert undistorter is not None and np.abs(back - grid).max() < 0.5


def test_checks_measure_the_lens_bag_and_choose_handheld(lens_bag):
    summary = from_bag.check_recording(RosbagReader(lens_bag, "/camera/image", "/camera/camera_info"), "lens")
    assert not summary.failed
    assert summary.lens.startswith("plumb_bob") and 0.9 < summary.valid_fraction <= 1.0
    assert 2.0 < summary.median_flow_px < 60.0
    from_bag.choose_kind(summary, None)
    assert summary.kind == "handheld"
    assert from_bag.network_size((375, 1242)) == (96, 320) and from_bag.network_size((480, 640)) == (256, 320)


@pytest.mark.parametrize("case, expected", [
    ("single frame", r"frames: at least 10 frames are needed"),
    ("static camera", r"motion: the camera barely moves"),
    ("no camera_info", r"no CameraInfo topic for '/camera/image'.*record its camera_info"),
    ("no images on the topic", r"image topic '/camera/left' is not in the bag"),
])
def test_bad_recordings_exit_non_zero_with_a_plain_message_and_write_nothing(case, expected, tmp_path, capsys):
    bag = tmp_path / "bag"
    sequence = {"single frame": textured_sequence(1, 3.0), "static camera": textured_sequence(14, 0.0)}.get(
        case, textured_sequence(14, 3.0))
    write_bag(sequence, bag, progress=False)
    if case == "no camera_info":  # the image topic alone, as a camera driver without calibration records it
        info = next(bag.glob("*.mcap"))

        stripped = tmp_path / "stripped"
        with Reader(bag) as reader, Writer(stripped, version=Writer.VERSION_LATEST) as writer:
            connections = {}
            for connection in reader.connections:
                if connection.topic != "/camera/camera_info":
                    connections[connection.id] = writer.add_connection(connection.topic, connection.msgtype,
                                                                       typestore=TYPESTORE)
            for connection, stamp, raw in reader.messages():
                if connection.id in connections:
                    writer.write(connections[connection.id], stamp, raw)
        assert info.exists()
        bag = stripped
    out = tmp_path / "run"
    arguments = [str(bag), "--out", str(out), "--max-steps", "1"]
    if case == "no images on the topic":
        arguments += ["--image-topic", "/camera/left", "--camera-info-topic", "/camera/camera_info"]
    status = from_bag.main(arguments)
    assert status == 2
    assert re.search(expected, capsys.readouterr().err, flags=re.S)
    assert not out.exists()


@pytest.mark.slow
def test_twenty_steps_give_a_model_the_runner_runs_on_every_frame(lens_bag, tmp_path):
    """About a minute on one CPU core: check, train 20 steps from the shipped model, pack, run, report."""
    out = tmp_path / "my_camera"
    status = from_bag.main([str(lens_bag), "--out", str(out), "--max-steps", "20", "--size", f"{WIDTH}x{HEIGHT}",
                            "--set", "run.num_threads=1", "--report-frames", "0"])
    assert status == 0
    model = load_inference_model(out / "model.pt")
    assert model.input_size == (HEIGHT, WIDTH) and model.provenance["pose_source"] == "priordepth"
    assert model.provenance["step"] == 20
    run = out / "report" / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["frames"] == FRAMES and len(list((run / "depth").iterdir())) == FRAMES
    checks = json.loads((out / "report" / "checks.json").read_text())
    assert checks["kind"] == "handheld" and checks["steps"] == 20
    report = (out / "report.md").read_text()
    for part in ("plumb_bob [-0.25, 0.07, 0.001, -0.0005, 0.0] (removed)", "report/learning_curve.png",
                 "report/run/overview.png", "report/run/trajectory.png", "## If it went badly"):
        assert part in report
    assert (out / "train" / "tensorboard").is_dir() and (out / "report" / "learning_curve.png").stat().st_size > 1000
    # A second run into the same folder is refused; --resume at the step limit finishes at once and rewrites nothing.
    assert from_bag.main([str(lens_bag), "--out", str(out), "--max-steps", "20"]) == 2
