# `bag_player`: replays a rosbag2 (mcap or sqlite3) with rclpy, for machines without `ros2 bag`.
#
# Messages are read with `rosbags` and published as the serialized bytes they were recorded as,
# at their recorded timing divided by `rate`, optionally driving /clock with the bag's time
# (what `ros2 bag play --clock` does). Topics whose message package is not installed (e.g.
# tf2_msgs on a wheel set-up before scripts/build_ros.sh) are skipped with a warning. Publishers take the QoS the bag
# recorded as offered: transient-local topics such as /tf_static stay latched.
"""rosbag2 replay node."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

from sgn_ros.ros.qos import make_qos
from sgn_ros.ros.rosbag_io import message_class


def _offers_transient_local(connection: Any) -> bool:
    from rosbags.interfaces import QosDurability

    profiles = getattr(connection.ext, "offered_qos_profiles", None) or []
    if not profiles:  # a bare MCAP (kitti2mcap) stores no QoS: /tf_static is latched by convention
        return connection.topic == "/tf_static"
    return any(getattr(q, "durability", None) == QosDurability.TRANSIENT_LOCAL for q in profiles)


class BagPlayer(Node):
    """Publishes the messages of one rosbag2 at recorded timing / `rate` (see `_declare`)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("bag_player", **kwargs)
        p = {}
        for name, default, text in (
            ("bag", "", "rosbag2 folder (or its .mcap/.db3 file's folder); required"),
            ("rate", 1.0, "playback speed factor (2.0 = twice as fast as recorded)"),
            ("publish_clock", False, "publish /clock with the bag's time, like `ros2 bag play --clock`"),
            ("clock_hz", 40.0, "how often /clock is published while waiting between messages"),
            ("loop", False, "play the bag again after its end"),
            ("start_offset_s", 0.0, "skip this many seconds at the start of the bag"),
            ("topics", [""], "topics to play (empty: all)"),
            ("wait_for_subscribers", 0, "hold playback until `wait_topic` has this many subscribers"),
            ("wait_topic", "", "topic `wait_for_subscribers` counts on (default: the bag's first topic)"),
            ("qos_depth", 10, "history depth of the publishers"),
            ("exit_when_done", True, "shut the node down after the bag ends (when not looping)"),
        ):
            p[name] = self.declare_parameter(name, default, ParameterDescriptor(description=text)).value
        if not p["bag"]:
            raise ValueError("bag_player: parameter bag is required (a rosbag2 folder)")
        if p["rate"] <= 0 or p["clock_hz"] <= 0:
            raise ValueError(f"bag_player: rate and clock_hz must be > 0, got {p['rate']}, {p['clock_hz']}")
        self.bag = Path(p["bag"])
        if not self.bag.exists():
            raise FileNotFoundError(f"bag_player: rosbag2 not found: {self.bag} (parameter bag)")
        self.p = p
        self.wanted = {t for t in p["topics"] if t}
        self.done = False
        self.messages_published = 0
        self._stop = threading.Event()
        self.clock_pub = (self.create_publisher(message_class("rosgraph_msgs/msg/Clock"), "/clock", 10)
                          if p["publish_clock"] else None)
        self.pubs: dict[int, Any] = {}  # connection id -> publisher
        from rosbags.rosbag2 import Reader

        with Reader(self.bag) as reader:
            self.start_ns, self.end_ns = reader.start_time, reader.end_time
            self.connections = [c for c in reader.connections if not self.wanted or c.topic in self.wanted]
        missing = self.wanted - {c.topic for c in self.connections}
        if missing:
            self.get_logger().warning(f"topics not in {self.bag}: {', '.join(sorted(missing))}")
        for c in self.connections:
            try:
                cls = message_class(c.msgtype)
            except ImportError as exc:
                self.get_logger().warning(f"not playing {c.topic}: message package missing ({exc})")
                continue
            latched = _offers_transient_local(c)
            qos = make_qos("reliable", 1 if latched else p["qos_depth"], "transient_local" if latched else "volatile")
            self.pubs[c.id] = self.create_publisher(cls, c.topic, qos)
        self.get_logger().info(f"playing {self.bag} ({(self.end_ns - self.start_ns) / 1e9:.2f} s) at x{p['rate']}: "
                               f"{', '.join(sorted({c.topic for c in self.connections if c.id in self.pubs}))}")

    def stop(self) -> None:
        self._stop.set()

    def wait_for_acks(self, timeout_s: float = 10.0) -> None:
        """Before exiting: let reliable subscribers acknowledge the last messages."""
        deadline = time.monotonic() + timeout_s
        for pub in self.pubs.values():
            pub.wait_for_all_acked(Duration(nanoseconds=int(max(0.0, deadline - time.monotonic()) * 1e9)))

    def _publish_clock(self, stamp_ns: int) -> None:
        if self.clock_pub is not None:
            msg = self.clock_pub.msg_type()
            msg.clock.sec, msg.clock.nanosec = int(stamp_ns // 10**9), int(stamp_ns % 10**9)
            self.clock_pub.publish(msg)

    def _wait_for_subscribers(self) -> None:
        need = self.p["wait_for_subscribers"]
        topic = self.p["wait_topic"] or (self.connections[0].topic if self.connections else "")
        while need > 0 and topic and self.count_subscribers(topic) < need and not self._stop.is_set():
            time.sleep(0.05)

    def play(self) -> None:
        """Play the bag (blocking) once, or until `stop()` when looping."""
        from rosbags.rosbag2 import Reader

        self._wait_for_subscribers()
        rate, period = self.p["rate"], 1.0 / self.p["clock_hz"]
        first_ns = self.start_ns + int(self.p["start_offset_s"] * 1e9)
        conns = [c for c in self.connections if c.id in self.pubs]
        while not self._stop.is_set():
            self._publish_clock(first_ns)
            wall0 = None
            with Reader(self.bag) as reader:
                for conn, stamp, raw in reader.messages(connections=conns, start=first_ns):
                    if wall0 is None:  # the time line starts once the bag is open and read
                        wall0 = time.monotonic() - (stamp - first_ns) / 1e9 / rate
                    target = wall0 + (stamp - first_ns) / 1e9 / rate
                    while not self._stop.is_set():
                        now = time.monotonic()
                        if now >= target:
                            break
                        time.sleep(min(period, target - now))
                        self._publish_clock(min(stamp, first_ns + int((time.monotonic() - wall0) * rate * 1e9)))
                    if self._stop.is_set():
                        return
                    self._publish_clock(stamp)
                    self.pubs[conn.id].publish(bytes(raw))
                    self.messages_published += 1
            if not self.p["loop"]:
                break
        self.done = True
        self.get_logger().info(f"played {self.messages_published} message(s); done")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `bag_player` executable (``--ros-args -p bag:=DIR [-p rate:=2.0]``)."""
    from sgn_ros.allocator import keep_heap

    keep_heap()  # a 1.4 MB image per frame: buffers reused (sgn_ros.allocator)
    rclpy.init(args=sys.argv if argv is None else argv)
    node = None
    executor = SingleThreadedExecutor()
    spinner = threading.Thread(target=executor.spin, daemon=True)
    try:
        node = BagPlayer()
        executor.add_node(node)  # parameter services etc. while the main thread plays
        spinner.start()
        node.play()
        while rclpy.ok() and not node.p["exit_when_done"]:
            time.sleep(0.1)
        node.wait_for_acks()
    except (KeyboardInterrupt, ExternalShutdownException):
        if node is not None:
            node.stop()
    except (ValueError, FileNotFoundError) as exc:
        rclpy.logging.get_logger("bag_player").error(str(exc))
        return 2
    finally:
        executor.shutdown()
        if spinner.is_alive():
            spinner.join()
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
