"""What the node reports on /diagnostics: counters and timings gathered per frame, summarised per period.

:class:`NodeStatistics` is filled by the subscription callbacks and the processing thread (thread-safe);
:meth:`NodeStatistics.report` empties the current window and returns a :class:`StatisticsReport`, which
:func:`diagnostic_status` turns into one ``diagnostic_msgs/DiagnosticStatus``.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

# Node-side stages timed per frame, besides the pipeline's own stages.
NODE_STAGES = ("convert", "publish")


@dataclass
class StatisticsReport:
    """One period's summary. Rates in Hz, times in ms (means over the period, ``overhead_max_ms`` the worst)."""

    period_s: float
    input_rate_hz: float
    output_rate_hz: float
    received_total: int
    processed_total: int
    superseded_total: int
    stale_total: int
    rejected_total: int
    errors_total: int
    rejected_in_period: int
    errors_in_period: int
    out_of_order_total: int = 0
    camera_info_refused_total: int = 0
    resets_total: int = 0
    resets_in_period: int = 0
    last_reset: str = ""
    pipeline_ms: dict[str, float] = field(default_factory=dict)
    node_ms: dict[str, float] = field(default_factory=dict)
    overhead_ms: float = float("nan")
    overhead_max_ms: float = float("nan")
    overhead_cpu_ms: float = float("nan")
    latency_ms: float = float("nan")
    tracking_state: str = "no frame yet"
    tracking_message: str = ""
    inliers: int = 0
    keypoints: int = 0
    scale_source: str = ""
    last_problem: str = ""


class NodeStatistics:
    """Thread-safe counters and per-frame timings of the current reporting window, plus totals."""

    def __init__(self):
        self._lock = threading.Lock()
        self._totals = defaultdict(int)
        self._window_start = time.monotonic()
        self._new_window()
        self.tracking_state = "no frame yet"
        self.tracking_message = ""
        self.inliers = 0
        self.keypoints = 0
        self.scale_source = ""
        self.last_problem = ""
        self.last_reset = ""

    def _new_window(self) -> None:
        self._received = 0
        self._rejected = 0
        self._errors = 0
        self._resets = 0
        self._pipeline_ms: dict[str, list[float]] = defaultdict(list)
        self._node_ms: dict[str, list[float]] = defaultdict(list)
        self._overhead_ms: list[float] = []
        self._overhead_cpu_ms: list[float] = []
        self._latency_ms: list[float] = []

    def received(self) -> None:
        with self._lock:
            self._totals["received"] += 1
            self._received += 1

    def superseded(self) -> None:
        """A waiting frame was replaced by a newer one before processing (the no-backlog policy)."""
        with self._lock:
            self._totals["superseded"] += 1

    def stale(self) -> None:
        with self._lock:
            self._totals["stale"] += 1

    def rejected(self, problem: str) -> None:
        """A frame skipped for bad input (encoding, size, missing CameraInfo, ...)."""
        with self._lock:
            self._totals["rejected"] += 1
            self._rejected += 1
            self.last_problem = problem

    def out_of_order(self, problem: str) -> None:
        """A frame dropped because its stamp repeats or slightly precedes the previous frame's."""
        with self._lock:
            self._totals["out_of_order"] += 1
            self._rejected += 1
            self.last_problem = problem

    def camera_info_refused(self, problem: str) -> None:
        """A CameraInfo refused (the last good one stays in use)."""
        with self._lock:
            self._totals["camera_info_refused"] += 1
            self.last_problem = problem

    def odometry_reset(self, reason: str) -> None:
        """Odometry and path restarted at the identity (reset service, or image stamps that jumped back)."""
        with self._lock:
            self._totals["resets"] += 1
            self._resets += 1
            self.last_reset = reason

    def failed(self, problem: str) -> None:
        """An exception in the pipeline."""
        with self._lock:
            self._totals["errors"] += 1
            self._errors += 1
            self.last_problem = problem

    def processed(self, pipeline_ms: dict[str, float], node_ms: dict[str, float], latency_ms: float,
                  tracking_state: str, tracking_message: str, inliers: int, keypoints: int,
                  scale_source: str, node_cpu_ms: float = float("nan")) -> None:
        """One frame published: the pipeline's stage timings, the node's own stages (wall time; ``node_cpu_ms``: the
        processing thread's CPU time in them, which other processes and threads competing for the cores do not
        inflate), and the receipt-to-published latency."""
        with self._lock:
            self._totals["processed"] += 1
            for stage, value in pipeline_ms.items():
                self._pipeline_ms[stage].append(value)
            for stage, value in node_ms.items():
                self._node_ms[stage].append(value)
            self._overhead_ms.append(sum(node_ms.values()))
            self._overhead_cpu_ms.append(node_cpu_ms)
            self._latency_ms.append(latency_ms)
            self.tracking_state, self.tracking_message = tracking_state, tracking_message
            self.inliers, self.keypoints, self.scale_source = inliers, keypoints, scale_source

    def totals(self) -> dict[str, int]:
        with self._lock:
            return dict(self._totals)

    def report(self) -> StatisticsReport:
        """Summarise the window since the last report and start a new one."""
        with self._lock:
            now = time.monotonic()
            period = max(now - self._window_start, 1e-9)
            report = StatisticsReport(
                period_s=period, input_rate_hz=self._received / period,
                output_rate_hz=len(self._latency_ms) / period, received_total=self._totals["received"],
                processed_total=self._totals["processed"],
                superseded_total=self._totals["superseded"], stale_total=self._totals["stale"],
                rejected_total=self._totals["rejected"], errors_total=self._totals["errors"],
                rejected_in_period=self._rejected, errors_in_period=self._errors,
                out_of_order_total=self._totals["out_of_order"],
                camera_info_refused_total=self._totals["camera_info_refused"], resets_total=self._totals["resets"],
                resets_in_period=self._resets, last_reset=self.last_reset,
                pipeline_ms={k: float(np.mean(v)) for k, v in self._pipeline_ms.items()},
                node_ms={k: float(np.mean(v)) for k, v in self._node_ms.items()},
                overhead_ms=float(np.mean(self._overhead_ms)) if self._overhead_ms else float("nan"),
                overhead_max_ms=float(np.max(self._overhead_ms)) if self._overhead_ms else float("nan"),
                overhead_cpu_ms=float(np.mean(self._overhead_cpu_ms)) if self._overhead_cpu_ms else float("nan"),
                latency_ms=float(np.mean(self._latency_ms)) if self._latency_ms else float("nan"),
                tracking_state=self.tracking_state, tracking_message=self.tracking_message, inliers=self.inliers,
                keypoints=self.keypoints, scale_source=self.scale_source, last_problem=self.last_problem)
            self._window_start = now
            self._new_window()
            return report


def diagnostic_status(report: StatisticsReport, name: str, hardware_id: str, image_topic: str) -> DiagnosticStatus:
    """The report as one DiagnosticStatus: OK while frames flow and tracking holds, WARN otherwise, ERROR when
    the pipeline fails on every frame."""
    if report.errors_in_period and report.output_rate_hz == 0:
        level, message = DiagnosticStatus.ERROR, f"pipeline failing: {report.last_problem}"
    elif report.resets_in_period:  # said once, in the period it happened
        level, message = DiagnosticStatus.WARN, f"odometry reset: {report.last_reset}"
    elif report.input_rate_hz == 0 and report.output_rate_hz == 0:
        level, message = DiagnosticStatus.WARN, f"no images on {image_topic}"
    elif report.output_rate_hz == 0:
        level, message = DiagnosticStatus.WARN, f"images arrive but none is processed: {report.last_problem}"
    elif report.tracking_state == "lost":
        level, message = DiagnosticStatus.WARN, f"{report.output_rate_hz:.1f} Hz, tracking lost"
    elif report.rejected_in_period or report.errors_in_period:
        level = DiagnosticStatus.WARN
        message = f"{report.output_rate_hz:.1f} Hz, some frames skipped: {report.last_problem}"
    else:
        level, message = DiagnosticStatus.OK, f"{report.output_rate_hz:.1f} Hz, tracking {report.tracking_state}"

    values = [
        ("input rate (Hz)", f"{report.input_rate_hz:.2f}"),
        ("output rate (Hz)", f"{report.output_rate_hz:.2f}"),
        ("tracking state", report.tracking_state),
        ("tracking message", report.tracking_message),
        ("inlier matches", str(report.inliers)),
        ("keypoints", str(report.keypoints)),
        ("scale source", report.scale_source),
        ("latency, image received to outputs published (ms)", f"{report.latency_ms:.1f}"),
        ("node overhead, conversion + publishing (ms)", f"{report.overhead_ms:.2f}"),
        ("node overhead max (ms)", f"{report.overhead_max_ms:.2f}"),
        ("node overhead, CPU time of the processing thread (ms)", f"{report.overhead_cpu_ms:.2f}"),
    ]
    values += [(f"node {stage} (ms)", f"{ms:.2f}") for stage, ms in report.node_ms.items()]
    values += [(f"pipeline {stage} (ms)", f"{ms:.1f}") for stage, ms in report.pipeline_ms.items()]
    values += [
        ("frames received", str(report.received_total)),
        ("frames processed", str(report.processed_total)),
        ("frames dropped, superseded by a newer frame", str(report.superseded_total)),
        ("frames dropped, older than max_input_age_s", str(report.stale_total)),
        ("frames rejected, bad input", str(report.rejected_total)),
        ("frames dropped, stamp not newer than the previous frame", str(report.out_of_order_total)),
        ("CameraInfo refused", str(report.camera_info_refused_total)),
        ("odometry resets", str(report.resets_total)),
        ("last odometry reset", report.last_reset),
        ("pipeline errors", str(report.errors_total)),
        ("last problem", report.last_problem),
    ]
    return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                            values=[KeyValue(key=key, value=value) for key, value in values])
