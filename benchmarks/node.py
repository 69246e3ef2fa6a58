"""priordepth_node under a live camera stream: what the node adds to ``Pipeline.process``, and whether it keeps up.

Two tables:

1. Message <-> numpy conversions (in-process, no middleware), median of many runs at 640x480 and 1280x720, with
   the slower ways of filling a ``uint8[]`` field for comparison.
2. The node as a subprocess on loopback (Fast DDS with config/fastdds_large_data.xml), fed 640x480 rgb8 images and
   CameraInfo at 30 Hz for ``--seconds`` by this process, which subscribes to the outputs. Per configuration:
   frames sent / received by the node / processed / dropped (superseded by a newer frame: the no-backlog policy),
   output rate, the node's overhead per frame (image conversion + building and publishing every output, i.e. the
   time outside ``Pipeline.process``, from the node's diagnostics: mean over frames and worst window mean),
   the processing thread's CPU time in those stages (what the node costs, without the waiting for a core that a
   loaded machine adds to the wall time), ``Pipeline.process`` time, end-to-end latency (publish of the image
   here -> depth image back here) in the first and second half of the run (a backlog would make the second
   larger), and the node's resident memory after warm-up and at the end.

Configurations: ``outputs``: a subscriber to depth and odometry only (the pictures are then never drawn);
``rviz``: subscribers to every output, as RViz with config/priordepth.rviz (colourised depth and matches drawn).

``--soak SECONDS`` runs instead one long stream (the ``outputs`` configuration) and prints a row every
``--sample-s`` seconds: frames sent, received and processed by the node (its diagnostics), depth images received
here, how many of them hold NaN pixels (NaN is the documented invalid marker, so this alone is no fault), how many
are entirely NaN (no valid pixel: a useless output) and how many hold +-inf or a depth <= 0 (invalid values not
marked as such), and the node's resident memory (RSS).

Run: ``.venv/bin/python benchmarks/node.py [--seconds 60] [--rate 30] [--size 640x480] [--num-threads 1]``, or
``.venv/bin/python benchmarks/node.py --soak 600`` for the soak table.
"""

from __future__ import annotations

import argparse
import array
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
FASTDDS_PROFILE = REPO_ROOT / "config" / "fastdds_large_data.xml"


def median_ms(function, repeats: int = 200) -> float:
    for _ in range(5):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def conversion_cases(width: int, height: int) -> list[tuple[str, object]]:
    """(name, function) pairs timing each conversion on one image size."""
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import CompressedImage, Image
    from std_msgs.msg import Header

    from priordepth_ros import conversions as c
    from priordepth_ros.overlays import colorize_depth, draw_match_tracks

    header = Header(stamp=Time(sec=1), frame_id="camera")
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    depth = rng.uniform(1, 50, (height, width)).astype(np.float32)
    rgb_message = c.rgb_to_image(rgb, header)
    bgr_message = c.rgb_to_image(rgb, header, "bgr8")
    mono_message = Image(header=header, width=width, height=height, encoding="mono8", step=width,
                         data=c._byte_array(rgb[..., 0]))
    _, jpeg = cv2.imencode(".jpg", rgb)
    compressed = CompressedImage(header=header, format="jpeg", data=c._byte_array(jpeg))
    points = rng.normal(size=(512, 3)).astype(np.float32)
    keypoints = rng.uniform(0, min(width, height), (512, 2)).astype(np.float32)
    matches = np.stack([np.arange(400), np.arange(400)], axis=1)
    inliers = rng.random(400) > 0.3
    message = Image()

    def fill_frombytes():
        message.data = c._byte_array(rgb)

    def fill_tobytes():
        message.data = array.array("B", rgb.tobytes())

    def fill_list():
        message.data = array.array("B", rgb.reshape(-1).tolist())

    return [
        ("Image rgb8 -> numpy RGB", lambda: c.image_to_rgb(rgb_message)),
        ("Image bgr8 -> numpy RGB", lambda: c.image_to_rgb(bgr_message)),
        ("Image mono8 -> numpy RGB", lambda: c.image_to_rgb(mono_message)),
        ("CompressedImage JPEG -> numpy RGB", lambda: c.compressed_image_to_rgb(compressed)),
        ("numpy depth -> Image 32FC1", lambda: c.depth_to_image(depth, header)),
        ("numpy RGB -> Image rgb8", lambda: c.rgb_to_image(rgb, header)),
        ("uint8[] field: array.frombytes(memoryview) (used)", fill_frombytes),
        ("uint8[] field: array('B', ndarray.tobytes())", fill_tobytes),
        ("uint8[] field: array('B', ndarray.tolist()) (per element)", fill_list),
        ("512 keypoints -> PointCloud2", lambda: c.points_to_pointcloud2(points, header, points[:, 0])),
        ("colourised depth (only with a subscriber)", lambda: colorize_depth(depth)),
        ("match tracks, 400 matches (only with a subscriber)",
         lambda: draw_match_tracks(rgb, keypoints, keypoints, matches, inliers)),
    ]


def conversion_table() -> None:
    rows = defaultdict(list)
    for width, height in ((640, 480), (1280, 720)):
        for name, function in conversion_cases(width, height):
            rows[name].append(median_ms(function, repeats=20 if "per element" in name else 200))
    print("| conversion | 640x480 (ms) | 1280x720 (ms) |\n| --- | --- | --- |")
    for name, (small, large) in rows.items():
        print(f"| {name} | {small:.3f} | {large:.3f} |")
    print()


def panning_frames(width: int, height: int, count: int) -> list[np.ndarray]:
    """A textured scene panning 4 px per frame (trackable, like a slowly turning camera), as RGB frames."""
    from skimage import data

    scene = cv2.resize(data.astronaut(), (width + 4 * count, height + 16), interpolation=cv2.INTER_LINEAR)
    return [np.ascontiguousarray(scene[8:8 + height, 4 * i:4 * i + width]) for i in range(count)]


def resident_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_node(num_threads: int, backend: str = "") -> tuple[subprocess.Popen, Path, int]:
    """The node as a subprocess on a ROS domain of its own (exported to this process too), its log file, the domain."""
    domain = random.Random(time.time_ns()).randint(110, 140)
    environment = {**os.environ, "ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
                   "FASTRTPS_DEFAULT_PROFILES_FILE": str(FASTDDS_PROFILE), "OMP_NUM_THREADS": str(num_threads)}
    os.environ.update({k: environment[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE",
                                                    "FASTRTPS_DEFAULT_PROFILES_FILE")})
    log = tempfile.NamedTemporaryFile("w+", prefix="priordepth_node_", suffix=".log", delete=False)
    backend_parameter = ["-p", f"backend:={backend}"] if backend else []
    node = subprocess.Popen([sys.executable, "-m", "priordepth_ros.node", "--ros-args", "-p",
                             f"num_threads:={num_threads}", *backend_parameter, "-r", "image:=/bench/image", "-r",
                             "camera_info:=/bench/camera_info"], cwd=REPO_ROOT, env=environment, stdout=log,
                            stderr=subprocess.STDOUT)
    return node, Path(log.name), domain


def wait_for_node(node: subprocess.Popen, log: Path, image_publisher) -> None:
    deadline = time.monotonic() + 120
    while image_publisher.get_subscription_count() == 0:
        if node.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the node did not start: {log.read_text()}")
        time.sleep(0.1)
    time.sleep(1.0)


def camera_matrix(width: int, height: int) -> np.ndarray:
    f = 0.9 * width
    return np.array([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])


def ping_pong(frames: list[np.ndarray], count: int) -> np.ndarray:
    """Frame ``count`` of a stream that runs through ``frames`` forth and back, so the motion never jumps."""
    index = count % (2 * len(frames) - 2)
    return frames[index if index < len(frames) else 2 * len(frames) - 2 - index]


def frame_stamp_ns(count: int, period: float) -> int:
    """The stamp of frame ``count`` of the benchmark stream: 1 s + count * period."""
    return 1_000_000_000 + count * round(period * 1e9)


@dataclass
class StreamingClient:
    """The node under test and a client node publishing camera frames to it (spun on a thread of its own)."""

    node: subprocess.Popen
    log: Path
    client: object  # rclpy Node: subscribe to the node's outputs on it
    image_publisher: object
    info_publisher: object

    def publish_frame(self, count: int, period: float, rgb: np.ndarray, K: np.ndarray) -> int:
        """Frame ``count`` of the stream (CameraInfo, then the image), stamped ``1 s + count * period``; its stamp."""
        from builtin_interfaces.msg import Time
        from std_msgs.msg import Header

        from priordepth_ros import conversions as c

        t_ns = frame_stamp_ns(count, period)
        header = Header(stamp=Time(sec=t_ns // 10**9, nanosec=t_ns % 10**9), frame_id="camera_optical")
        self.info_publisher.publish(c.camera_info_message(K, rgb.shape[1], rgb.shape[0], header))
        self.image_publisher.publish(c.rgb_to_image(rgb, header))
        return t_ns


@contextmanager
def streaming_client(num_threads: int, name: str, backend: str = "") -> Iterator[StreamingClient]:
    """Start the node and a spinning client; on exit stop the node (SIGINT) and the client. Subscribe to outputs on
    ``client`` before calling :func:`wait_for_node`."""
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image

    node, log, domain = start_node(num_threads, backend)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    client = rclpy.create_node(name, context=context)
    image_publisher = client.create_publisher(Image, "/bench/image", qos_profile_sensor_data)
    info_publisher = client.create_publisher(CameraInfo, "/bench/camera_info", qos_profile_sensor_data)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(client)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        yield StreamingClient(node, log, client, image_publisher, info_publisher)
    finally:
        if node.poll() is None:
            node.send_signal(signal.SIGINT)
            node.wait(timeout=30)
        executor.shutdown()
        spinner.join(timeout=10)
        client.destroy_node()
        rclpy.shutdown(context=context)


def run_node(configuration: str, seconds: float, rate: float, width: int, height: int, num_threads: int,
             backend: str = "") -> dict:
    from diagnostic_msgs.msg import DiagnosticArray
    from nav_msgs.msg import Odometry
    from nav_msgs.msg import Path as PathMessage
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2
    from tf2_msgs.msg import TFMessage

    from priordepth_ros import conversions as c

    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    sent: dict[int, float] = {}
    arrivals: list[tuple[int, float]] = []
    diagnostics: list[dict[str, str]] = []
    lock = threading.Lock()

    def on_depth(message) -> None:
        with lock:
            arrivals.append((c.stamp_to_nanoseconds(message.header.stamp), time.perf_counter()))

    with streaming_client(num_threads, "node_benchmark", backend) as stream:
        node, client = stream.node, stream.client
        client.create_subscription(Image, "/priordepth/depth", on_depth, reliable)
        client.create_subscription(Odometry, "/priordepth/odometry", lambda m: None, reliable)
        client.create_subscription(DiagnosticArray, "/diagnostics",
                                   lambda m: diagnostics.append({kv.key: kv.value for kv in m.status[0].values}),
                                   reliable)
        if configuration == "rviz":
            for topic, kind in (("/priordepth/depth/colored", Image), ("/priordepth/matches", Image),
                                ("/priordepth/keypoints", PointCloud2), ("/priordepth/path", PathMessage),
                                ("/tf", TFMessage), ("/priordepth/depth/camera_info", CameraInfo)):
                client.create_subscription(kind, topic, lambda m: None, reliable)
        wait_for_node(node, stream.log, stream.image_publisher)

        frames = panning_frames(width, height, 90)
        K = camera_matrix(width, height)
        period = 1.0 / rate
        start = time.perf_counter()
        count = 0
        memory = {}
        while (now := time.perf_counter()) - start < seconds:
            with lock:  # the send time is taken as the frame (CameraInfo, then the image) goes out
                sent[frame_stamp_ns(count, period)] = time.perf_counter()
            stream.publish_frame(count, period, ping_pong(frames, count), K)
            count += 1
            if "warm" not in memory and now - start > min(10.0, seconds / 3):
                memory["warm"] = resident_mib(node.pid)
            time.sleep(max(0.0, start + count * period - time.perf_counter()))
        time.sleep(2.0)
        memory["end"] = resident_mib(node.pid)

    with lock:
        latencies = [(sent[stamp], (arrival - sent[stamp]) * 1e3) for stamp, arrival in arrivals if stamp in sent]
    busy = [d for d in diagnostics if float(d.get("output rate (Hz)", 0)) > 0]
    weights = np.array([float(d["output rate (Hz)"]) for d in busy])
    overhead = np.array([float(d["node overhead, conversion + publishing (ms)"]) for d in busy])
    overhead_cpu = np.array([float(d["node overhead, CPU time of the processing thread (ms)"]) for d in busy])
    convert = np.array([float(d["node convert (ms)"]) for d in busy])
    publish = np.array([float(d["node publish (ms)"]) for d in busy])
    pipeline = np.array([float(d["pipeline total (ms)"]) for d in busy])
    totals = diagnostics[-1]
    half = start + seconds / 2
    first = [latency for sent_at, latency in latencies if sent_at < half]
    second = [latency for sent_at, latency in latencies if sent_at >= half]
    return {
        "configuration": configuration, "sent": count, "received": int(totals["frames received"]),
        "processed": int(totals["frames processed"]), "dropped": int(totals["frames dropped, superseded by a newer "
                                                                            "frame"]),
        "rejected": int(totals["frames rejected, bad input"]), "output_hz": len(arrivals) / seconds,
        "overhead_ms": float(np.average(overhead, weights=weights)), "overhead_worst_window_ms": float(overhead.max()),
        "overhead_cpu_ms": float(np.average(overhead_cpu, weights=weights)),
        "convert_ms": float(np.average(convert, weights=weights)), "publish_ms": float(np.average(publish,
                                                                                                   weights=weights)),
        "pipeline_ms": float(np.average(pipeline, weights=weights)),
        "latency_first_ms": float(np.median(first)), "latency_second_ms": float(np.median(second)),
        "latency_p95_ms": float(np.percentile([lat for _, lat in latencies], 95)),
        "memory_warm_mib": memory.get("warm", float("nan")), "memory_end_mib": memory["end"],
        "node_exit": node.returncode,
    }


@dataclass
class DepthCounts:
    """Depth images received by the soak client, by what their pixels hold."""

    received: int = 0
    with_nan: int = 0  # some pixels NaN: the documented invalid marker
    all_nan: int = 0  # no valid pixel at all
    unmarked_invalid: int = 0  # +-inf or depth <= 0 among the pixels not marked NaN

    def add(self, depth: np.ndarray) -> None:
        nan = np.isnan(depth)
        valid = depth[~nan]
        self.received += 1
        self.with_nan += bool(nan.any())
        self.all_nan += bool(nan.all())
        self.unmarked_invalid += bool(valid.size and not (np.isfinite(valid).all() and (valid > 0).all()))


def run_soak(seconds: float, rate: float, width: int, height: int, num_threads: int, sample_s: float) -> None:
    """Stream for ``seconds`` and print a table row every ``sample_s`` seconds (see the module docstring)."""
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from priordepth_ros import conversions as c

    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    counts = DepthCounts()
    totals: dict[str, str] = {}
    lock = threading.Lock()

    def on_depth(message) -> None:
        depth = c.image_to_depth(message)
        with lock:
            counts.add(depth)

    def on_diagnostics(message) -> None:
        with lock:
            totals.update({kv.key: kv.value for kv in message.status[0].values})

    with streaming_client(num_threads, "node_soak") as stream:
        node, log = stream.node, stream.log
        stream.client.create_subscription(Image, "/priordepth/depth", on_depth, reliable)
        stream.client.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, reliable)
        wait_for_node(node, log, stream.image_publisher)

        frames = panning_frames(width, height, 90)
        K = camera_matrix(width, height)
        print(f"soak: {width}x{height} rgb8 at {rate:g} Hz for {seconds:g} s, node pid {node.pid}, log {log}\n")
        print("| time (s) | frames sent | received by the node | processed by the node | depth images received | "
              "with NaN pixels | all NaN | +-inf or <= 0 unmarked | node RSS (MiB) |")
        print("| --- " * 9 + "|", flush=True)

        def row(elapsed: float, sent: int) -> None:
            with lock:
                d = counts
                print(f"| {elapsed:.0f} | {sent} | {totals.get('frames received', '-')} | "
                      f"{totals.get('frames processed', '-')} | {d.received} | {d.with_nan} | {d.all_nan} | "
                      f"{d.unmarked_invalid} | {resident_mib(node.pid):.0f} |", flush=True)

        period = 1.0 / rate
        start = time.perf_counter()
        count = 0
        next_sample = 0.0
        while (now := time.perf_counter()) - start < seconds and node.poll() is None:
            if now - start >= next_sample:
                row(now - start, count)
                next_sample += sample_s
            stream.publish_frame(count, period, ping_pong(frames, count), K)
            count += 1
            time.sleep(max(0.0, start + count * period - time.perf_counter()))
        time.sleep(2.0)  # the last frame's outputs and one more diagnostics report
        alive = node.poll() is None
        row(time.perf_counter() - start, count)
    print(f"\nnode {'exited with status ' + str(node.returncode) if alive else 'DIED during the run'}; "
          f"load average {os.getloadavg()[0]:.1f} after the run; node log: {log}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="stream length per configuration (default 60)")
    parser.add_argument("--rate", type=float, default=30.0, help="camera rate in Hz (default 30)")
    parser.add_argument("--size", default="640x480", help="WIDTHxHEIGHT (default 640x480)")
    parser.add_argument("--num-threads", type=int, default=1, help="the node's torch threads (default 1)")
    parser.add_argument("--configurations", nargs="+", default=["outputs", "rviz"], choices=["outputs", "rviz"])
    parser.add_argument("--backends", nargs="+", default=["openvino", "torch"],
                        help="the node's backend parameter per run (default: openvino, the default, and torch, the "
                             "reference it replaced)")
    parser.add_argument("--skip-conversions", action="store_true", help="only the node table")
    parser.add_argument("--soak", type=float, metavar="SECONDS", help="instead: one long stream, a row per sample")
    parser.add_argument("--sample-s", type=float, default=10.0, help="soak: seconds between rows (default 10)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    cv2.setNumThreads(1)
    print(f"{os.cpu_count()} CPUs visible, load average {os.getloadavg()[0]:.1f} before the run\n")
    if args.soak:
        run_soak(args.soak, args.rate, width, height, args.num_threads, args.sample_s)
        return
    if not args.skip_conversions:
        conversion_table()
    results = []
    for backend in args.backends:
        for configuration in args.configurations:
            print(f"streaming {width}x{height} at {args.rate:g} Hz for {args.seconds:g} s ({backend}, "
                  f"{configuration}) ...", flush=True)
            result = run_node(configuration, args.seconds, args.rate, width, height, args.num_threads, backend)
            results.append({**result, "configuration": f"{backend}, {configuration}"})
    print(f"\n{width}x{height} rgb8 at {args.rate:g} Hz for {args.seconds:g} s, node with {args.num_threads} "
          f"network thread(s); load average {os.getloadavg()[0]:.1f} after the run\n")
    print("| backend, configuration | sent | received | processed | dropped (superseded) | output (Hz) | "
          "node overhead mean (ms) | worst window (ms) | overhead CPU time (ms) | convert (ms) | publish (ms) | "
          "Pipeline.process (ms) | latency 1st half (ms) | latency 2nd half (ms) | latency p95 (ms) | "
          "RSS warm (MiB) | RSS end (MiB) |")
    print("| --- " * 17 + "|")
    for r in results:
        print(f"| {r['configuration']} | {r['sent']} | {r['received']} | {r['processed']} | {r['dropped']} | "
              f"{r['output_hz']:.2f} | {r['overhead_ms']:.2f} | {r['overhead_worst_window_ms']:.2f} | "
              f"{r['overhead_cpu_ms']:.2f} | "
              f"{r['convert_ms']:.2f} | {r['publish_ms']:.2f} | {r['pipeline_ms']:.1f} | "
              f"{r['latency_first_ms']:.0f} | {r['latency_second_ms']:.0f} | {r['latency_p95_ms']:.0f} | "
              f"{r['memory_warm_mib']:.0f} | {r['memory_end_mib']:.0f} |")
    for r in results:
        if r["node_exit"] != 0:
            print(f"warning: the node exited with status {r['node_exit']} after the {r['configuration']} run")


if __name__ == "__main__":
    main()
