"""Helpers of the end-to-end ROS tests (a module of its own: ``from conftest import`` picks whichever conftest was
imported first when several test folders are collected together)."""

from __future__ import annotations

import sys
import time
from pathlib import Path


def spin_until(executor, done, timeout: float) -> bool:
    """Spin ``executor`` until ``done()`` or ``timeout`` seconds; whether ``done()`` holds at the end."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return True
        executor.spin_once(timeout_sec=0.01)
    return done()


def replay_command(bag: Path, rate: float, image_topic: str, camera_info_topic: str,
                   wait_for: tuple[str, ...]) -> list[str]:
    """``rosbag_tools play`` of a synth2bag bag's image and CameraInfo onto the given topics, once ``wait_for`` have
    subscribers (after a further second, so that the subscribers' discovery settles)."""
    return [sys.executable, "-m", "rosbag_tools", "play", str(bag), "--rate", str(rate), "--topics", "/camera/image",
            "/camera/camera_info", "--remap", f"/camera/image:={image_topic}",
            f"/camera/camera_info:={camera_info_topic}", "--wait-for", *wait_for, "--delay", "1.0"]


def latest_totals(diagnostics: list) -> dict[str, int]:
    """The integer values of the node's latest diagnostics report (DiagnosticArray messages received), by key."""
    if not diagnostics:
        return {}
    values = {kv.key: kv.value for kv in diagnostics[-1].status[0].values}
    return {key: int(value) for key, value in values.items() if value.isdigit()}
