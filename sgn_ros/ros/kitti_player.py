# `kitti_player`: a ROS 2 node that plays a KITTI odometry sequence folder live.
#
# It publishes what a recording made with kitti2bag holds (left/right colour images as rgb8,
# camera_info from P2/P3, plus odometry, TF, depth maps and velodyne clouds where available) at
# `rate_hz`, so sgn_node can be run on KITTI or the synthetic world without making a bag first.
# The messages come serialized from kitti_sequence.py (shared with `sgn-ros kitti-to-bag`) and
# are published as raw CDR bytes. The timer runs on the steady clock, so the player keeps going
# when `use_sim_time` is set and it drives /clock itself.
"""Live KITTI sequence player node."""

from __future__ import annotations

import sys
import time
from dataclasses import fields
from typing import Any

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.clock import Clock, ClockType
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from sgn_ros.ros.kitti_sequence import KittiFrames, KittiMessageBuilder, KittiSequence, KittiStreams, KittiTopics
from sgn_ros.ros.qos import make_qos
from sgn_ros.ros.rosbag_io import message_class


class KittiPlayer(Node):
    """Publishes frames [start, end) of a KITTI sequence at `rate_hz` (see `_declare` for parameters)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("kitti_player", **kwargs)
        p = self._declare()
        self.seq = KittiSequence(p["sequence_dir"])
        topics = KittiTopics(**{f.name: p[f"topics.{f.name}"] for f in fields(KittiTopics)})
        frames = KittiFrames(**{f.name: p[f"frames.{f.name}"] for f in fields(KittiFrames)})
        streams = KittiStreams(**{f.name: p[f"publish_{f.name}"] for f in fields(KittiStreams)})
        self.builder = KittiMessageBuilder(self.seq, topics=topics, frames=frames, streams=streams)
        n = len(self.seq)
        self.start = p["start"]
        self.end = n if p["end"] < 0 else min(p["end"], n)
        if not 0 <= self.start < self.end:
            raise ValueError(f"kitti_player: parameters start={self.start}, end={p['end']} select no frame of "
                             f"{n} in {self.seq.root}")
        self.step = p["step"]
        if self.step < 1:
            raise ValueError(f"kitti_player: parameter step must be >= 1, got {self.step}")
        if p["rate_hz"] <= 0:
            raise ValueError(f"kitti_player: parameter rate_hz must be > 0, got {p['rate_hz']}")
        self.loop, self.publish_clock = p["loop"], p["publish_clock"]
        self.exit_when_done = p["exit_when_done"]
        self.wait_for_subscribers = p["wait_for_subscribers"]
        self.use_dataset_stamps = self.publish_clock or p["dataset_stamps"]
        qos = make_qos(p["qos_reliability"], p["qos_depth"], what="qos_reliability/qos_depth")

        self.pubs: dict[str, Any] = {}
        for topic, msgtype in self.builder.topic_types().items():
            try:
                cls = message_class(msgtype)
            except ImportError as exc:
                self.get_logger().warning(f"not publishing {topic}: message package missing ({exc})")
                continue
            latched = make_qos("reliable", 1, "transient_local")  # /tf_static: late joiners get it
            self.pubs[topic] = self.create_publisher(cls, topic, latched if topic == topics.tf_static else qos)
        if self.publish_clock:
            self.pubs[topics.clock] = self.create_publisher(message_class("rosgraph_msgs/msg/Clock"), topics.clock, 10)
        self._paced = 0  # pace messages received
        self._sent_at: float | None = None  # monotonic time of the last frame (pacing)
        self.pace_timeout = p["pace_timeout_s"]
        if p["pace_topic"]:
            self._pace_sub = self.create_subscription(
                message_class(p["pace_type"]), p["pace_topic"], self._on_pace, make_qos("reliable", 10), raw=True
            )
        self.pace_topic = p["pace_topic"]
        self.index = self.start
        self.done = False
        self.frames_published = 0
        self.started = False
        self._t_wait = time.monotonic()
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.timer = self.create_timer(1.0 / p["rate_hz"], self._tick, clock=steady)
        self.get_logger().info(
            f"playing {self.seq.root} frames [{self.start}, {self.end}) step {self.step} at {p['rate_hz']} Hz"
            f"{' in a loop' if self.loop else ''}; topics: {', '.join(sorted(self.pubs))}"
        )

    def _declare(self) -> dict[str, Any]:
        """Declare every parameter (with its description); return their values by name."""
        specs: list[tuple[str, Any, str]] = [
            ("sequence_dir", "", "KITTI odometry sequence folder (.../dataset/sequences/NN); required"),
            ("rate_hz", 10.0, "frames per second (KITTI records at 10 Hz)"),
            ("start", 0, "first frame index"),
            ("end", -1, "one past the last frame (-1: to the end of the sequence)"),
            ("step", 1, "play every step-th frame (5: SemanticKITTI's labelled frames 0, 5, 10, ...)"),
            ("loop", False, "start again from `start` after the last frame"),
            ("exit_when_done", True, "shut the node down after the last frame (when not looping)"),
            ("publish_clock", False, "publish /clock with dataset time (use with use_sim_time elsewhere); "
                                     "stamps are then dataset time"),
            ("dataset_stamps", False, "stamp messages with KITTI epoch + times.txt instead of the wall clock"),
            ("wait_for_subscribers", 0, "hold the first frame until the left image topic has this many "
                                        "subscribers (0: start at once)"),
            ("pace_topic", "", "closed-loop replay: after each frame wait for one message on this topic (e.g. "
                               "/ssc/grid) before the next, so a slow consumer drops nothing (empty: off)"),
            ("pace_type", "sgn_ros/msg/SemanticVoxelGrid", "message type of pace_topic"),
            ("pace_timeout_s", 120.0, "play the next frame anyway after this many seconds without a pace message"),
            ("qos_reliability", "reliable", "QoS reliability of the data topics: reliable | best_effort"),
            ("qos_depth", 5, "QoS history depth of the data topics"),
        ]
        specs += [(f"publish_{f.name}", f.default, f"publish the {f.name} stream where the sequence has it")
                  for f in fields(KittiStreams)]
        specs += [(f"topics.{f.name}", f.default, f"topic name of the {f.name} stream") for f in fields(KittiTopics)]
        specs += [(f"frames.{f.name}", f.default, f"TF frame id of the {f.name} frame") for f in fields(KittiFrames)]
        out = {}
        for name, default, text in specs:
            out[name] = self.declare_parameter(name, default, ParameterDescriptor(description=text)).value
        if not out["sequence_dir"]:
            raise ValueError("kitti_player: parameter sequence_dir is required (a KITTI .../sequences/NN folder)")
        return out

    def _stamp_ns(self, index: int) -> int:
        return self.builder.dataset_stamp_ns(index) if self.use_dataset_stamps else time.time_ns()

    def _tick(self) -> None:
        if self.done:
            return
        if not self.started:
            left = self.builder.topics.left_image
            have = self.count_subscribers(left)
            if have < self.wait_for_subscribers:
                if time.monotonic() - self._t_wait > 5.0:
                    self.get_logger().info(f"waiting for {self.wait_for_subscribers} subscriber(s) on {left} "
                                           f"(have {have})")
                    self._t_wait = time.monotonic()
                return
            self.started = True
            if self.builder.streams.tf and self.builder.topics.tf_static in self.pubs:
                self._publish([self.builder.static_tf_message(self._stamp_ns(self.index))])
        if self.pace_topic and self._sent_at is not None and self._paced < self.frames_published:
            if time.monotonic() - self._sent_at < self.pace_timeout:
                return  # the consumer has not answered the last frame yet
            self.get_logger().warning(f"no message on {self.pace_topic} for {self.pace_timeout:.0f} s; going on")
            self._paced = self.frames_published
        stamp = self._stamp_ns(self.index)
        self._sent_at = time.monotonic()
        if self.publish_clock:
            self._publish([self.builder.clock_message(stamp)])
        self._publish(self.builder.frame_messages(self.index, stamp))
        self.frames_published += 1
        self.index += self.step
        if self.index >= self.end:
            if self.loop:
                self.index = self.start
            else:
                self.done = True
                self.get_logger().info(f"played {self.frames_published} frame(s); done")

    def _on_pace(self, _data: bytes) -> None:
        self._paced += 1

    def wait_for_acks(self, timeout_s: float = 10.0) -> None:
        """Before exiting: let reliable subscribers acknowledge the last messages (a slow reader of
        a multi-megabyte image would otherwise lose the last frame when this process ends)."""
        deadline = time.monotonic() + timeout_s
        for pub in self.pubs.values():
            left = max(0.0, deadline - time.monotonic())
            pub.wait_for_all_acked(Duration(nanoseconds=int(left * 1e9)))

    def _publish(self, messages: list[tuple[str, str, bytes]]) -> None:
        for topic, _, data in messages:
            pub = self.pubs.get(topic)
            if pub is not None:
                pub.publish(data)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `kitti_player` executable (``--ros-args -p sequence_dir:=...``)."""
    from sgn_ros.allocator import keep_heap

    keep_heap()  # a 1.4 MB image per frame: buffers reused (sgn_ros.allocator)
    rclpy.init(args=sys.argv if argv is None else argv)
    node = None
    try:
        node = KittiPlayer()
        while rclpy.ok() and not (node.done and node.exit_when_done):
            rclpy.spin_once(node, timeout_sec=0.1)
        if node.done:
            node.wait_for_acks()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ValueError, FileNotFoundError) as exc:
        logger = node.get_logger() if node is not None else rclpy.logging.get_logger("kitti_player")
        logger.error(str(exc))
        return 2
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
