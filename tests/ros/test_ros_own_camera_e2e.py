"""A user's own camera, end to end: record -> train -> run live (real rclpy on loopback, separate processes).

``synth2bag --distortion`` writes a short bag filmed through a known plumb_bob lens (its CameraInfo carries the
coefficients), ``priordepth-train-bag --max-steps 20`` turns it into DIR/model.pt, and ``priordepth_node`` started
with ``checkpoint:=DIR/model.pt`` gets the bag replayed into it by ``python -m rosbag_tools play``. The replay is slow
enough (a frame a second; the node needs well under that per 128x96 frame on one busy core) that no frame is ever
superseded, so every bag frame must give exactly one depth image, in the rectified pinhole camera, equal to what the
trained model computes offline on the rectified frames. tests/train/test_from_bag.py checks the same model in the
offline runner; the node's handling of bad input and its odometry are checked in test_ros_node_e2e.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

# About 1-2 minutes on two busy cores: the bag (5 s), 20 training steps (30 s to a few minutes), the node's start and
# a 16 s replay, and the offline re-run of the 16 frames.
pytestmark = [pytest.mark.ros, pytest.mark.slow]
rclpy = pytest.importorskip("rclpy", reason="rclpy (the ros-jazzy wheels) is not installed")
pytest.importorskip("std_srvs.srv", reason="std_srvs (ros-jazzy-std-srvs) is not installed")
pytest.importorskip("tf2_msgs.msg", reason="tf2_msgs is not built into this environment (make ros-interfaces)")

from ros_e2e_helpers import latest_totals, replay_command, spin_until  # noqa: E402
from rosbags.highlevel import AnyReader  # noqa: E402

from priordepth_ros.conversions import image_to_depth, stamp_to_nanoseconds, stamp_to_seconds  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
# The lens, size and length of tests/train/test_from_bag.py's lens bag (a handheld room, seed 3, 30 Hz).
LENS = (-0.25, 0.07, 0.001, -0.0005, 0.0)
WIDTH, HEIGHT, FRAMES = 128, 96, 16
BAG_FPS = 30.0
# A frame a second: several times the node's time per frame even on a loaded core, so none is superseded.
PLAY_RATE = 1.0 / BAG_FPS
IMAGE_TOPIC = "/own_camera/image_raw"
CAMERA_INFO_TOPIC = "/own_camera/camera_info"
CAMERA_FRAME = "camera_optical"  # what synth2bag writes
DEPTH_TOPIC = "/priordepth/depth"
DEPTH_INFO_TOPIC = "/priordepth/depth/camera_info"


@dataclass
class BagContents:
    image_stamps_ns: list[int] = field(default_factory=list)
    distortion_model: str = ""
    d: tuple[float, ...] = ()
    K: np.ndarray | None = None  # the raw camera
    P: np.ndarray | None = None  # the camera it rectifies to (REP 104)


@dataclass
class Session:
    """What one run recorded: the bag, the model, messages per topic, the node's exit and log."""

    bag: Path
    model: Path
    contents: BagContents
    received: dict[str, list] = field(default_factory=lambda: defaultdict(list))
    node_alive_after_replay: bool = False
    node_returncode: int | None = None
    node_log: str = ""
    player_returncode: int | None = None
    player_log: str = ""


def read_bag(bag: Path) -> BagContents:
    contents = BagContents()
    with AnyReader([bag]) as reader:
        connections = [c for c in reader.connections if c.topic in ("/camera/image", "/camera/camera_info")]
        for connection, _, raw in reader.messages(connections=connections):
            message = reader.deserialize(raw, connection.msgtype)
            if connection.topic == "/camera/image":
                contents.image_stamps_ns.append(message.header.stamp.sec * 10**9 + message.header.stamp.nanosec)
            else:
                contents.distortion_model, contents.d = message.distortion_model, tuple(message.d)
                contents.K = np.asarray(message.k, dtype=np.float64).reshape(3, 3)
                contents.P = np.asarray(message.p, dtype=np.float64).reshape(3, 4)
    return contents


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(bag, DIR/model.pt): the lens bag written by synth2bag and 20 steps of priordepth-train-bag on it."""
    from priordepth_core.train import from_bag
    from rosbag_tools.__main__ import main as rosbag_tools_main

    root = tmp_path_factory.mktemp("own_camera")
    bag = root / "room_lens"
    status = rosbag_tools_main(["synth2bag", "--scene", "room", "--motion", "handheld", "--frames", str(FRAMES),
                                "--size", f"{WIDTH}x{HEIGHT}", "--seed", "3", "--distortion", *map(str, LENS),
                                "-o", str(bag), "--no-progress"])
    assert status == 0
    out = root / "my_camera"
    status = from_bag.main([str(bag), "--out", str(out), "--max-steps", "20", "--size", f"{WIDTH}x{HEIGHT}",
                            "--set", "run.num_threads=1", "--report-frames", "0"])
    assert status == 0
    return bag, out / "model.pt"


def run_session(bag: Path, model: Path, environment: dict[str, str], tmp_path: Path) -> Session:
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    session = Session(bag=bag, model=model, contents=read_bag(bag))
    parameters = tmp_path / "node.yaml"
    parameters.write_text(f"""\
/**:
  ros__parameters:
    checkpoint: {json.dumps(str(model))}
    num_threads: 1
    diagnostics_period_s: 0.5
""")
    env = {**os.environ, **environment}
    node_log = tmp_path / "node.log"
    with open(node_log, "w") as log:
        node = subprocess.Popen([sys.executable, "-m", "priordepth_ros.node", "--ros-args", "--params-file",
                                 str(parameters), "-r", f"image:={IMAGE_TOPIC}", "-r",
                                 f"camera_info:={CAMERA_INFO_TOPIC}"],
                                cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(environment["ROS_DOMAIN_ID"]))
    listener = rclpy.create_node("own_camera_listener", context=context)
    reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    for topic, kind in ((DEPTH_TOPIC, Image), (DEPTH_INFO_TOPIC, CameraInfo), ("/diagnostics", DiagnosticArray)):
        listener.create_subscription(kind, topic, lambda message, t=topic: session.received[t].append(message),
                                     reliable)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(listener)

    player = None
    try:
        subscribed = spin_until(
            executor, lambda: listener.count_subscribers(IMAGE_TOPIC) > 0 or node.poll() is not None, 180)
        assert subscribed, "the node never subscribed to the image topic"
        assert node.poll() is None, node_log.read_text()
        # No CameraInfo before the replay: the player sends each frame's CameraInfo and image at the same instant,
        # so the first image may reach the processing thread before its CameraInfo is stored; the node waits for it
        # (FIRST_CAMERA_INFO_WAIT_S) instead of skipping the frame, which the exact counts below check.
        player = subprocess.Popen(
            replay_command(bag, PLAY_RATE, IMAGE_TOPIC, CAMERA_INFO_TOPIC, (IMAGE_TOPIC, CAMERA_INFO_TOPIC)),
            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert spin_until(executor, lambda: player.poll() is not None, 30 + FRAMES / BAG_FPS / PLAY_RATE * 3), \
            "the replay did not end"
        session.player_log = player.stdout.read()
        session.player_returncode = player.returncode

        def settled() -> bool:  # every frame received is accounted for and every depth image has arrived
            totals = latest_totals(session.received["/diagnostics"])
            handled = sum(totals.get(key, 0) for key in DROP_KEYS) + totals.get("frames processed", 0)
            return (totals.get("frames received", 0) >= FRAMES and handled == totals["frames received"]
                    and len(session.received[DEPTH_TOPIC]) >= totals["frames processed"]
                    and len(session.received[DEPTH_INFO_TOPIC]) >= totals["frames processed"])

        spin_until(executor, settled, 60)
        spin_until(executor, lambda: False, 1.0)  # a duplicate or late message would still arrive
        session.node_alive_after_replay = node.poll() is None
    finally:
        if player is not None and player.poll() is None:
            player.kill()
            player.wait()
        if node.poll() is None:
            node.send_signal(signal.SIGINT)
            try:
                node.wait(timeout=30)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait()
        session.node_returncode = node.returncode
        session.node_log = node_log.read_text()
        executor.shutdown()
        listener.destroy_node()
        rclpy.shutdown(context=context)
    return session


DROP_KEYS = ("frames dropped, superseded by a newer frame", "frames dropped, older than max_input_age_s",
             "frames rejected, bad input", "frames dropped, stamp not newer than the previous frame",
             "pipeline errors")



@pytest.fixture(scope="module")
def session(trained, new_ros_environment, tmp_path_factory) -> Session:
    environment = new_ros_environment()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in environment.items():
            patch.setenv(key, value)
        patch.delenv("ROS_LOCALHOST_ONLY", raising=False)
        return run_session(*trained, environment, tmp_path_factory.mktemp("own_camera_node"))


def stamps(messages) -> list[int]:
    return [stamp_to_nanoseconds(m.header.stamp) for m in messages]


def test_the_bag_is_distorted_and_the_model_is_trained_on_it(session):
    from priordepth_core.inference import load_inference_model

    contents = session.contents
    assert len(contents.image_stamps_ns) == FRAMES
    assert contents.distortion_model == "plumb_bob" and contents.d == LENS
    model = load_inference_model(session.model)
    assert model.input_size == (HEIGHT, WIDTH) and model.provenance["step"] == 20


def test_node_loads_the_trained_model_runs_through_the_replay_and_exits_cleanly_on_sigint(session):
    assert session.player_returncode == 0, session.player_log
    assert f"{IMAGE_TOPIC} {FRAMES}" in session.player_log, session.player_log
    assert session.node_alive_after_replay, session.node_log
    assert session.node_returncode == 0, session.node_log
    # The shipped models run at other sizes (driving 320x96); only the trained model.pt runs at 128x96.
    assert f"pipeline ready: {session.model.name}," in session.node_log, session.node_log
    assert f"network input {WIDTH}x{HEIGHT}," in session.node_log, session.node_log


def test_every_bag_frame_gives_exactly_one_depth_image(session):
    totals = latest_totals(session.received["/diagnostics"])
    assert totals["frames received"] == FRAMES, totals
    assert totals["frames processed"] == FRAMES, totals
    assert all(totals[key] == 0 for key in DROP_KEYS), totals
    assert totals["CameraInfo refused"] == 0, totals
    assert stamps(session.received[DEPTH_TOPIC]) == session.contents.image_stamps_ns


def test_depth_is_in_the_rectified_pinhole_camera_and_positive(session):
    depth = session.received[DEPTH_TOPIC]
    assert depth, "no depth image"
    for message in depth:
        assert (message.encoding, message.width, message.height) == ("32FC1", WIDTH, HEIGHT)
        assert message.header.frame_id == CAMERA_FRAME
        values = image_to_depth(message)
        finite = np.isfinite(values)
        assert finite.mean() > 0.95 and (values[finite] > 0).all()
    infos = session.received[DEPTH_INFO_TOPIC]
    assert stamps(infos) == stamps(depth)
    rectified_K = session.contents.P[:, :3]
    for info in infos:
        assert (info.width, info.height, info.header.frame_id) == (WIDTH, HEIGHT, CAMERA_FRAME)
        # The camera the images were rectified to (the input's P), without the lens the input carries.
        assert info.distortion_model == "plumb_bob" and not np.any(info.d)
        np.testing.assert_allclose(np.asarray(info.k).reshape(3, 3), rectified_K)
        np.testing.assert_allclose(np.asarray(info.p).reshape(3, 4)[:, :3], rectified_K)


def test_depth_equals_the_trained_model_on_the_rectified_frames(session):
    """The node ran the trained model on the rectified frames: Pipeline.process offline on the same rectified
    frames, in the same order, gives the same depth; the raw frames, or the model training started from, do not."""
    from priordepth_core.data import RosbagReader
    from priordepth_core.inference import Pipeline, PipelineConfig

    depth = session.received[DEPTH_TOPIC]
    assert stamps(depth) == session.contents.image_stamps_ns  # all frames, in order: the same pipeline state
    rectified = RosbagReader(session.bag, "/camera/image", "/camera/camera_info")
    frames = rectified.single_sequence()
    pipeline = Pipeline(PipelineConfig(num_threads=1), session.model)
    first_offline = None
    for frame, message in zip(frames, depth):
        np.testing.assert_allclose(frame.K, session.contents.P[:, :3])
        result = pipeline.process(rectified.load_rgb(frame), frame.K, stamp_to_seconds(message.header.stamp))
        np.testing.assert_allclose(image_to_depth(message), result.depth, rtol=1e-5)
        first_offline = result.depth if first_offline is None else first_offline

    def close_to_first(other: np.ndarray) -> bool:
        return other.shape == first_offline.shape and np.allclose(other, first_offline, rtol=1e-3)

    raw = RosbagReader(session.bag, "/camera/image", "/camera/camera_info", undistort=False)
    raw_frame = raw.single_sequence()[0]
    unrectified = Pipeline(PipelineConfig(num_threads=1), session.model).process(
        raw.load_rgb(raw_frame), raw_frame.K, frames[0].stamp)
    assert not close_to_first(unrectified.depth)
    untrained = Pipeline(PipelineConfig(num_threads=1, input_height=HEIGHT, input_width=WIDTH), "indoor").process(
        rectified.load_rgb(frames[0]), frames[0].K, frames[0].stamp)
    assert not close_to_first(untrained.depth)
