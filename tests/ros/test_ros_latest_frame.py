"""LatestFrameSlot: the newest item wins, waiting ones are counted as dropped, the worker is woken and released."""

from __future__ import annotations

import threading
import time

from priordepth_ros.latest_frame import LatestFrameSlot


def test_newest_item_replaces_the_waiting_one():
    slot = LatestFrameSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True and slot.put(3) is True
    assert slot.superseded == 2
    assert slot.take(timeout=0) == 3
    assert slot.take(timeout=0.01) is None  # empty again: nothing is queued behind


def test_take_waits_for_a_producer_and_close_releases_it():
    slot = LatestFrameSlot()
    taken = []
    worker = threading.Thread(target=lambda: taken.append(slot.take(timeout=5)))
    worker.start()
    time.sleep(0.05)
    slot.put("frame")
    worker.join(timeout=5)
    assert taken == ["frame"]

    blocked = threading.Thread(target=lambda: taken.append(slot.take(timeout=30)))
    started = time.monotonic()
    blocked.start()
    slot.close()
    blocked.join(timeout=5)
    assert not blocked.is_alive() and time.monotonic() - started < 5 and taken[-1] is None and slot.closed


def test_clear_forgets_without_counting_a_drop():
    slot = LatestFrameSlot()
    slot.put(1)
    slot.clear()
    assert slot.take(timeout=0) is None and slot.superseded == 0
