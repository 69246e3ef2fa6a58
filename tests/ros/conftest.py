"""Fixtures of the priordepth_ros tests: isolated ROS 2 domains on loopback, and short synthetic driving bags."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
FASTDDS_PROFILE = REPO_ROOT / "config" / "fastdds_large_data.xml"


@pytest.fixture(scope="session")
def new_ros_environment():
    """``new_ros_environment()`` -> environment variables for a test's ROS processes: a domain of their own,
    discovery on loopback only, the large-data Fast DDS profile the launch files use, one OpenMP thread."""
    rng = random.Random(f"{os.getpid()}-{time.time_ns()}")

    def make() -> dict[str, str]:
        return {"ROS_DOMAIN_ID": str(rng.randint(20, 100)), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
                "FASTRTPS_DEFAULT_PROFILES_FILE": str(FASTDDS_PROFILE), "OMP_NUM_THREADS": "1"}

    return make


@pytest.fixture
def ros_domain(monkeypatch, new_ros_environment) -> int:
    """A per-test ROS domain, exported so that rclpy in this process and child processes use it."""
    environment = new_ros_environment()
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("ROS_LOCALHOST_ONLY", raising=False)
    return int(environment["ROS_DOMAIN_ID"])


@pytest.fixture(scope="session")
def synthetic_street_bag(tmp_path_factory):
    """``synthetic_street_bag(frames)`` -> a bag of a synthetic street driven by car (10 Hz, 12 m/s) at the shipped
    model's 320x96, written by ``rosbag_tools synth2bag`` (made once per length). Seed 62 turns by 32 degrees within
    its first 30 frames (35 m): a straight drive would let a trajectory with wrong rotations pass a Sim(3) check."""
    pytest.importorskip("tf2_msgs.msg", reason="tf2_msgs is not built into this environment (make ros-interfaces)")
    from rosbag_tools.__main__ import main

    bags: dict[int, Path] = {}

    def make(frames: int) -> Path:
        if frames not in bags:
            out = tmp_path_factory.mktemp("street") / f"street_{frames}"
            status = main(["synth2bag", "--scene", "street", "--motion", "car", "--frames", str(frames), "--size",
                           "320x96", "--seed", "62", "-o", str(out), "--no-progress"])
            assert status == 0
            bags[frames] = out
        return bags[frames]

    return make
