"""Node statistics and the DiagnosticStatus built from them: rates, timings, totals, and the level rules."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.ros
pytest.importorskip("diagnostic_msgs.msg", reason="the ros-jazzy message wheels are not installed")

from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402

from priordepth_ros.diagnostics import NodeStatistics, diagnostic_status  # noqa: E402


def values_of(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def test_report_averages_the_window_and_keeps_totals():
    statistics = NodeStatistics()
    for i in range(4):
        statistics.received()
        statistics.processed({"depth": 10.0 + i, "total": 20.0}, {"convert": 0.5, "publish": 1.0 + i}, 30.0, "ok",
                             "", 100, 380, "relative")
    statistics.received()
    statistics.superseded()
    time.sleep(0.05)
    report = statistics.report()
    assert report.received_total == 5 and report.processed_total == 4 and report.superseded_total == 1
    assert report.pipeline_ms["depth"] == pytest.approx(11.5) and report.node_ms["publish"] == pytest.approx(2.5)
    assert report.overhead_ms == pytest.approx(3.0) and report.overhead_max_ms == pytest.approx(4.5)
    assert report.output_rate_hz == pytest.approx(4 / report.period_s)
    status = diagnostic_status(report, "priordepth: depth and odometry", "camera_optical", "/camera/image")
    assert status.level == DiagnosticStatus.OK and status.hardware_id == "camera_optical"
    values = values_of(status)
    assert values["frames processed"] == "4" and values["pipeline depth (ms)"] == "11.5"
    assert values["node overhead, conversion + publishing (ms)"] == "3.00"
    nothing = statistics.report()  # a new window: rates drop to zero, totals stay
    assert nothing.output_rate_hz == 0 and nothing.processed_total == 4
    status = diagnostic_status(nothing, "n", "c", "/camera/image")
    assert status.level == DiagnosticStatus.WARN and status.message == "no images on /camera/image"


def test_levels_name_the_problem():
    statistics = NodeStatistics()
    statistics.received()
    statistics.rejected("no CameraInfo for frame 'cam'")
    status = diagnostic_status(statistics.report(), "n", "c", "/image")
    assert status.level == DiagnosticStatus.WARN
    assert "none is processed: no CameraInfo for frame 'cam'" in status.message
    statistics.received()
    statistics.failed("RuntimeError: boom")
    status = diagnostic_status(statistics.report(), "n", "c", "/image")
    assert status.level == DiagnosticStatus.ERROR and "RuntimeError: boom" in status.message
    statistics.received()
    statistics.processed({"total": 1.0}, {"convert": 0.1, "publish": 0.1}, 2.0, "lost", "too few inliers", 3, 100,
                         "relative")
    status = diagnostic_status(statistics.report(), "n", "c", "/image")
    assert status.level == DiagnosticStatus.WARN and "tracking lost" in status.message
    assert values_of(status)["frames rejected, bad input"] == "1" and values_of(status)["pipeline errors"] == "1"


def test_odometry_resets_and_dropped_stamps_are_reported():
    statistics = NodeStatistics()
    statistics.received()
    statistics.out_of_order("image stamped 1.000 s repeats the stamp of the previous image; frame dropped")
    statistics.camera_info_refused("CameraInfo of frame 'cam' refused: CameraInfo has no image size (0x0)")
    statistics.odometry_reset("image stamps jumped back by 5.000 s (from 6.000 s to 1.000 s)")
    status = diagnostic_status(statistics.report(), "n", "c", "/image")
    assert status.level == DiagnosticStatus.WARN
    assert status.message == "odometry reset: image stamps jumped back by 5.000 s (from 6.000 s to 1.000 s)"
    values = values_of(status)
    assert values["odometry resets"] == "1" and values["CameraInfo refused"] == "1"
    assert values["frames dropped, stamp not newer than the previous frame"] == "1"
    statistics.received()
    status = diagnostic_status(statistics.report(), "n", "c", "/image")  # the next period: said once
    assert not status.message.startswith("odometry reset") and values_of(status)["odometry resets"] == "1"
