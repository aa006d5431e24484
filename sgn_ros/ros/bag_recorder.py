# Recording topics into a rosbag2 without `ros2 bag`: raw rclpy subscriptions whose serialized
# bytes go straight into a `rosbags` writer (mcap by default). Used by `sgn-ros demo` to keep
# the node's outputs; the bag replays with `ros2 bag play` or our `bag_player`.
"""Raw-subscription rosbag2 recorder."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from rclpy.node import Node

from sgn_ros.ros.qos import make_qos
from sgn_ros.ros.rosbag_io import DEFAULT_DISTRO, bag_qos, message_class, open_writer, typestore


class BagRecorder:
    """Records `topics` (name -> ``pkg/msg/Type``) seen by `node` into a new rosbag2 at `out`.

    Messages are stored with their receive time (ns, wall clock) as bag time. Call `close()`
    (or use as a context manager) to finish the bag; `counts` tells what was recorded.
    """

    def __init__(self, node: Node, out: str | Path, topics: dict[str, str], storage: str = "mcap",
                 distro: str = DEFAULT_DISTRO, reliability: str = "reliable", depth: int = 10) -> None:
        self.out = Path(out)
        store = typestore(distro)
        unknown = [t for t in topics.values() if t not in store.types]
        if unknown:
            raise ValueError(f"BagRecorder: no message definition for {unknown} (typestore {distro})")
        self._lock = threading.Lock()
        self._writer = open_writer(self.out, storage)
        self.counts = dict.fromkeys(topics, 0)
        self._subs = []
        self._conns = {}
        for topic, msgtype in topics.items():
            self._conns[topic] = self._writer.add_connection(topic, msgtype, typestore=store,
                                                             offered_qos_profiles=[bag_qos(depth=depth)])
            self._subs.append(node.create_subscription(
                message_class(msgtype), topic, self._callback(topic), make_qos(reliability, depth), raw=True
            ))
        self._node = node
        self._clock = node.get_clock()

    def _callback(self, topic: str) -> Any:
        def record(data: bytes) -> None:
            stamp = self._clock.now().nanoseconds or time.time_ns()  # sim time may not have started
            with self._lock:
                if self._writer is not None:
                    self._writer.write(self._conns[topic], stamp, data)
                    self.counts[topic] += 1
        return record

    def close(self) -> None:
        """Stop recording and finish the bag (metadata.yaml written)."""
        for sub in self._subs:
            self._node.destroy_subscription(sub)
        self._subs = []
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None

    def __enter__(self) -> BagRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
