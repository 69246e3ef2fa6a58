"""What a user checks first about a rosbag2: storage, size, duration, and per topic its type, message count, rate,
and for image topics the size and encoding of the first message."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from rosbags.image import ImageError, message_to_cvimage

from priordepth_core.data import DatasetError

from .bag_to_frames import IMAGE_TYPES, open_bag
from .messages import COMPRESSED_IMAGE, NANOSECONDS


@dataclass
class TopicInfo:
    """One topic: type, count, rate over its own time span (Hz; None with fewer than two messages), and for image
    topics the first message's size and encoding (``format`` of a CompressedImage)."""

    topic: str
    msgtype: str
    count: int
    rate_hz: float | None
    image_width: int | None = None
    image_height: int | None = None
    encoding: str | None = None


@dataclass
class BagInfo:
    path: str
    storage: str
    size_bytes: int
    start_s: float
    end_s: float
    duration_s: float
    message_count: int
    topics: list[TopicInfo] = field(default_factory=list)


def _storage_of(path: Path) -> str:
    files = [path] if path.is_file() else list(path.iterdir())
    suffixes = {f.suffix for f in files}
    return "mcap" if ".mcap" in suffixes else "sqlite3" if ".db3" in suffixes else "unknown"


def _size_of(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _image_description(reader, connection, raw: bytes, bag: Path) -> tuple[int, int, str]:
    message = reader.deserialize(raw, connection.msgtype)
    if connection.msgtype == COMPRESSED_IMAGE:
        try:
            image = message_to_cvimage(message)
        except (ImageError, ValueError, AssertionError) as error:
            raise DatasetError(f"{bag}: topic {connection.topic!r}: cannot decode compressed image ({error})") from None
        return int(image.shape[1]), int(image.shape[0]), f"compressed {message.format}"
    return int(message.width), int(message.height), str(message.encoding)


def bag_info(bag: str | Path) -> BagInfo:
    """Summarise a rosbag2 (reads every message's time; decodes only the first message of image topics).

    Raises:
        DatasetError: unreadable or truncated bag.
    """
    bag = Path(bag)
    reader = open_bag(bag)
    try:
        times: dict[int, list[int]] = {c.id: [] for c in reader.connections}
        first_raw: dict[int, bytes] = {}
        image_ids = {c.id for c in reader.connections if c.msgtype in IMAGE_TYPES}
        try:
            for connection, timestamp, raw in reader.messages():
                times[connection.id].append(timestamp)
                if connection.id in image_ids and connection.id not in first_raw:
                    first_raw[connection.id] = bytes(raw)
        except Exception as error:  # a bag truncated after its index was read fails here
            raise DatasetError(f"{bag}: cannot read messages ({error})") from error
        topics = []
        for connection in sorted(reader.connections, key=lambda c: c.topic):
            stamps = np.array(times[connection.id], dtype=np.int64)
            span = (stamps.max() - stamps.min()) / NANOSECONDS if len(stamps) > 1 else 0.0
            rate = (len(stamps) - 1) / span if span > 0 else None
            info = TopicInfo(connection.topic, connection.msgtype, len(stamps), rate)
            if connection.id in first_raw:
                info.image_width, info.image_height, info.encoding = _image_description(
                    reader, connection, first_raw[connection.id], bag)
            topics.append(info)
        start, end = reader.start_time, reader.end_time
        count = sum(len(t) for t in times.values())
    finally:
        reader.close()
    start_s = start / NANOSECONDS if count else 0.0
    end_s = (end - 1) / NANOSECONDS if count else 0.0  # rosbags reports the end exclusive (last stamp + 1 ns)
    return BagInfo(path=str(bag), storage=_storage_of(bag), size_bytes=_size_of(bag), start_s=start_s, end_s=end_s,
                   duration_s=end_s - start_s, message_count=count, topics=topics)


def format_info(info: BagInfo) -> str:
    """A plain-text table of :func:`bag_info`'s result."""
    lines = [
        f"bag:       {info.path}",
        f"storage:   {info.storage}, {info.size_bytes / 2**20:.1f} MiB",
        f"time:      {info.start_s:.6f} .. {info.end_s:.6f} s ({info.duration_s:.3f} s)",
        f"messages:  {info.message_count}",
        "",
    ]
    rows = [("topic", "type", "count", "rate [Hz]", "image")]
    for t in info.topics:
        image = f"{t.image_width}x{t.image_height} {t.encoding}" if t.encoding is not None else ""
        rate = f"{t.rate_hz:.2f}" if t.rate_hz is not None else "-"
        rows.append((t.topic, t.msgtype, str(t.count), rate, image))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return "\n".join(lines)


def info_json(info: BagInfo) -> str:
    return json.dumps(asdict(info), indent=2)
