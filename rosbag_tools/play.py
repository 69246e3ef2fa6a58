"""Replay a rosbag2 into live ROS 2 topics with rclpy, for environments that have rclpy but not ``ros2 bag``.

Messages go out as the bag stores them (serialized CDR, ``Publisher.publish`` of bytes): no deserialization, so any
type the local ROS environment can import is replayed exactly, header stamps included (they are not rewritten; use
``--clock`` and ``use_sim_time`` for nodes that compare stamps with their clock). Timing follows the bag's receive
times relative to the first played message, divided by ``rate``; a message that is late (slow disk) goes out at once
and later ones keep their schedule.

QoS per topic follows the recorded offered profiles: transient-local durability when every recorded publisher
offered it (``/tf_static``), best-effort when every one offered best-effort, otherwise reliable and volatile;
history keep-last ``qos_depth``.
"""

from __future__ import annotations

import importlib
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from rosbags.interfaces import QosDurability, QosReliability

from priordepth_core.data import DatasetError

from .bag_to_frames import open_bag

NANOSECONDS = 1_000_000_000


class PlayError(RuntimeError):
    """Replay cannot start or was aborted: no rclpy, an unimportable message type, subscribers that never came."""


# Seconds the player stays up after its last message (see play()).
END_LINGER_S = 0.5


@dataclass
class PlaySummary:
    """What a replay published: messages per topic (output names) and loops completed."""

    published: Counter = field(default_factory=Counter)
    loops: int = 0


def _message_class(msgtype: str, topic: str, bag: Path):
    package, _, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError) as error:
        hint = " (build it with `make ros-interfaces`)" if package == "tf2_msgs" else ""
        raise PlayError(f"{bag}: topic {topic!r} has type {msgtype}, which this ROS 2 environment cannot import "
                        f"({error}){hint}") from None


def _qos_profile(offered: list, depth: int):
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    transient = bool(offered) and all(q.durability == QosDurability.TRANSIENT_LOCAL for q in offered)
    best_effort = bool(offered) and all(q.reliability == QosReliability.BEST_EFFORT for q in offered)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if transient else DurabilityPolicy.VOLATILE)


def parse_remaps(remaps: list[str]) -> dict[str, str]:
    """``["/a:=/b", ...]`` -> ``{"/a": "/b"}``."""
    mapping = {}
    for remap in remaps:
        source, separator, target = remap.partition(":=")
        if not separator or not source or not target:
            raise ValueError(f"remap must look like /from:=/to, got {remap!r}")
        mapping[source] = target
    return mapping


def play(bag: str | Path, rate: float = 1.0, loop: bool = False, start_offset: float = 0.0,
         topics: list[str] | None = None, remap: dict[str, str] | None = None, wait_for: list[str] | None = None,
         wait_timeout: float = 30.0, delay: float = 0.0, clock: bool = False, qos_depth: int = 100,
         max_loops: int | None = None, node_name: str = "rosbag_tools_player") -> PlaySummary:
    """Publish a bag's messages with their original relative timing.

    Args:
        bag: rosbag2 folder or file.
        rate: playback speed factor (2 = twice as fast).
        loop: start over at the end, until interrupted (or ``max_loops``).
        start_offset: seconds into the bag to start at (every loop starts there).
        topics: play only these (bag names); None = all.
        remap: bag topic -> published topic.
        wait_for: published topic names that must have a subscriber before playing starts.
        wait_timeout: seconds to wait for them.
        delay: seconds to sleep after the publishers exist (and subscribers came), before the first message.
        clock: also publish ``/clock`` (rosgraph_msgs/Clock) with each message's bag time.
        qos_depth: keep-last history depth of the publishers.
        max_loops: stop after this many passes (with ``loop``); None = forever.
        node_name: the player node's name.

    Returns:
        a :class:`PlaySummary`; Ctrl-C ends playback early and still returns it.

    Raises:
        DatasetError: unreadable bag, or a requested topic not in it.
        PlayError: rclpy missing, a type that cannot be imported, or ``wait_for`` subscribers not there in time.
        ValueError: bad arguments.
    """
    bag = Path(bag)
    if not rate > 0:
        raise ValueError(f"rate must be positive, got {rate}")
    if start_offset < 0 or delay < 0 or wait_timeout < 0:
        raise ValueError("start offset, delay and wait timeout must not be negative")
    if qos_depth < 1:
        raise ValueError(f"qos depth must be positive, got {qos_depth}")
    try:
        import rclpy
        from rclpy.duration import Duration
    except ImportError as error:
        raise PlayError(f"play needs rclpy ({error}); install the ROS 2 client libraries (pip install '.[ros]') "
                        "or source a ROS 2 installation") from None
    remap = remap or {}

    reader = open_bag(bag)
    context = rclpy.Context()
    try:
        available = sorted({c.topic for c in reader.connections})
        missing = [t for t in (topics or []) if t not in available]
        if missing:
            raise DatasetError(f"{bag}: topic {missing[0]!r} is not in the bag; topics: {', '.join(available)}")
        connections = [c for c in reader.connections if topics is None or c.topic in topics]
        if not connections:
            raise DatasetError(f"{bag}: the bag has no topics to play")
        classes = {c.topic: _message_class(c.msgtype, c.topic, bag) for c in connections}
        unknown = [t for t in (wait_for or []) if t not in {remap.get(c.topic, c.topic) for c in connections}]
        if unknown:
            raise ValueError(f"--wait-for topic {unknown[0]!r} is not among the played topics")

        rclpy.init(args=[], context=context)  # our --remap is not a ROS argument
        node = rclpy.create_node(node_name, context=context)
        publishers = {}
        for topic in sorted({c.topic for c in connections}):
            offered = [q for c in connections if c.topic == topic for q in c.ext.offered_qos_profiles]
            publishers[topic] = node.create_publisher(classes[topic], remap.get(topic, topic),
                                                      _qos_profile(offered, qos_depth))
        clock_publisher = None
        if clock:
            from rosgraph_msgs.msg import Clock

            clock_publisher = node.create_publisher(Clock, "/clock", 10)
        _wait_for_subscribers(publishers, remap, wait_for or [], wait_timeout, bag)
        time.sleep(delay)

        summary = PlaySummary()
        start_ns = reader.start_time + round(start_offset * NANOSECONDS)
        if start_ns >= reader.end_time:
            raise ValueError(f"{bag}: start offset {start_offset} s is past the bag's end "
                             f"({(reader.end_time - 1 - reader.start_time) / NANOSECONDS:.3f} s)")
        try:
            while True:
                _play_once(reader, connections, publishers, remap, clock_publisher, start_ns, rate, summary)
                summary.loops += 1
                if not loop or (max_loops is not None and summary.loops >= max_loops):
                    break
        except KeyboardInterrupt:
            pass
        for publisher in publishers.values():
            # Reliable data still in flight would be lost with the publisher; give subscribers time to take it.
            publisher.wait_for_all_acked(Duration(seconds=2.0))
        # Best-effort subscribers (sensor-data QoS, as a camera driver's consumers use) acknowledge nothing, so the
        # wait above returns at once for them; without this pause the last image was lost with the process (measured:
        # the node received 15 of 16 replayed frames).
        time.sleep(END_LINGER_S)
        node.destroy_node()
        return summary
    finally:
        reader.close()
        if context.ok():
            rclpy.shutdown(context=context)


def _wait_for_subscribers(publishers: dict, remap: dict[str, str], wait_for: list[str], timeout: float,
                          bag: Path) -> None:
    by_output = {remap.get(topic, topic): publisher for topic, publisher in publishers.items()}
    deadline = time.monotonic() + timeout
    for topic in wait_for:
        while by_output[topic].get_subscription_count() == 0:
            if time.monotonic() > deadline:
                raise PlayError(f"{bag}: no subscriber on {topic!r} within {timeout} s (--wait-for)")
            time.sleep(0.01)


def _play_once(reader, connections: list, publishers: dict, remap: dict[str, str], clock_publisher,
               start_ns: int, rate: float, summary: PlaySummary) -> None:
    first_ns, wall_start = None, 0.0
    clock_message = None
    if clock_publisher is not None:
        from builtin_interfaces.msg import Time
        from rosgraph_msgs.msg import Clock

        clock_message = Clock(clock=Time())
    for connection, timestamp, raw in reader.messages(connections=connections, start=start_ns):
        if first_ns is None:
            first_ns, wall_start = timestamp, time.perf_counter()
        due = wall_start + (timestamp - first_ns) / NANOSECONDS / rate
        remaining = due - time.perf_counter()
        if remaining > 0:
            time.sleep(remaining)
        if clock_message is not None:
            clock_message.clock.sec, clock_message.clock.nanosec = divmod(timestamp, NANOSECONDS)
            clock_publisher.publish(clock_message)
        publishers[connection.topic].publish(bytes(raw))
        summary.published[remap.get(connection.topic, connection.topic)] += 1
