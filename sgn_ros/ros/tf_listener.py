# TF for sgn_node: where tf2_ros is installed (a ROS 2 installation) its Buffer and
# TransformListener do the work; where it cannot be (the PyPI wheels have no tf2_ros) the node
# subscribes /tf and /tf_static itself (with tf2's QoS) into sgn_ros's pure TransformBuffer. Either
# way a lookup returns a 4x4 matrix or raises a TransformError (ValueError) naming both frames.
# The grid frame is put into the tree with a static broadcaster (/tf_static, transient-local), so
# RViz shows the outputs with the robot's fixed frame.
"""`TFListener` (lookups from TF) and `StaticTransformPublisher` (/tf_static)."""

from __future__ import annotations

from typing import Any

import numpy as np

from sgn_ros.ros.tf_buffer import (
    ExtrapolationError,
    NotConnectedError,
    TransformBuffer,
    TransformError,
    UnknownFrameError,
    _matrix_to_quat,  # to be replaced by sgn_ros.geometry
    _quat_normalise,
    _to_matrix,
)

__all__ = [
    "StaticTransformPublisher",
    "TFListener",
    "add_transform_stamped",
    "matrix_to_transform_stamped",
    "stamp_ns",
    "tf2_ros_available",
    "tf_qos",
    "transform_to_matrix",
]


def tf2_ros_available() -> bool:
    """Whether tf2_ros (Python) imports: a ROS 2 installation, not the PyPI wheels."""
    try:
        import tf2_ros  # noqa: F401
    except ImportError:
        return False
    return True


def tf_qos(static: bool) -> Any:
    """tf2's QoS: /tf reliable volatile, /tf_static reliable transient-local (latched), depth 100
    (tf2_ros' DynamicListenerQoS / StaticListenerQoS), so late joiners still get the static tree."""
    from sgn_ros.ros.qos import make_qos

    topic = "/tf_static" if static else "/tf"
    return make_qos("reliable", 100, "transient_local" if static else "volatile", what=topic)


def transform_to_matrix(transform: Any) -> np.ndarray:
    """geometry_msgs/Transform -> 4x4 (pose of the child in the parent)."""
    t, q = transform.translation, transform.rotation
    rot = _quat_normalise([q.x, q.y, q.z, q.w], "Transform")
    return _to_matrix(np.array([t.x, t.y, t.z], dtype=np.float64), rot)


def stamp_ns(ts: Any) -> int:
    """The header stamp of a TransformStamped in ns."""
    return int(ts.header.stamp.sec) * 10**9 + int(ts.header.stamp.nanosec)


def add_transform_stamped(buffer: TransformBuffer, ts: Any, static: bool) -> bool:
    """Put a geometry_msgs/TransformStamped (rclpy's, or rosbags' deserialised one) into `buffer`;
    False when it was too old for the cache. Raises ValueError on a malformed transform."""
    t, q = ts.transform.translation, ts.transform.rotation
    return buffer.set_transform(
        ts.header.frame_id, ts.child_frame_id, stamp_ns(ts), [t.x, t.y, t.z], [q.x, q.y, q.z, q.w], static
    )


def matrix_to_transform_stamped(parent: str, child: str, stamp_ns: int, T: np.ndarray) -> Any:
    """geometry_msgs/TransformStamped of `child` in `parent` from a 4x4 pose."""
    from geometry_msgs.msg import TransformStamped

    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise ValueError(f"transform {parent} -> {child}: expected a 4x4 matrix, got shape {T.shape}")
    msg = TransformStamped()
    msg.header.frame_id, msg.child_frame_id = parent, child
    msg.header.stamp.sec, msg.header.stamp.nanosec = int(stamp_ns // 10**9), int(stamp_ns % 10**9)
    msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = map(float, T[:3, 3])
    q = _matrix_to_quat(T[:3, :3])
    r = msg.transform.rotation
    r.x, r.y, r.z, r.w = map(float, q)
    return msg


class TFListener:
    """Transform lookups from TF for one node.

    node: the rclpy node whose subscriptions (own backend) or tf2_ros listener feed the buffer;
        its executor must spin (the tf2_ros listener's own thread is not used).
    cache_time_s: how long transforms are kept (tf2: 10 s).
    extrapolation_tolerance_s: a stamp at most this far beyond the transforms uses the nearest
        ones (0: tf2's behaviour, refuse).
    reset_threshold_s: a /tf stamp this far behind the newest seen is a time reset (bag loop,
        simulation restart): dynamic transforms are forgotten, static ones kept (own backend).
    use_tf2_ros: True / False to force a backend; None: tf2_ros when importable.

    `backend` says which is in use ('tf2_ros' or 'sgn_ros'); `received` and `malformed` count
    transforms taken from /tf + /tf_static by the own backend.
    """

    def __init__(
        self,
        node: Any,
        cache_time_s: float = 10.0,
        extrapolation_tolerance_s: float = 0.0,
        reset_threshold_s: float = 2.0,
        use_tf2_ros: bool | None = None,
    ) -> None:
        if use_tf2_ros is None:
            use_tf2_ros = tf2_ros_available()
        self.node = node
        self.tolerance_ns = int(round(extrapolation_tolerance_s * 1e9))
        self.reset_ns = int(round(reset_threshold_s * 1e9))
        self.received = 0
        self.malformed = 0
        self.time_resets = 0
        self.last_error = ""
        self._newest_ns: int | None = None
        self._subs: list[Any] = []
        if use_tf2_ros:
            import tf2_ros
            from rclpy.duration import Duration

            self.backend = "tf2_ros"
            self._tf2 = tf2_ros.Buffer(cache_time=Duration(nanoseconds=int(cache_time_s * 1e9)), node=node)
            self._tf2_listener = tf2_ros.TransformListener(self._tf2, node, spin_thread=False)
            self.buffer = None
        else:
            from tf2_msgs.msg import TFMessage

            self.backend = "sgn_ros"
            self._tf2 = None
            self.buffer = TransformBuffer(cache_time_s, extrapolation_tolerance_s)
            self._subs = [
                node.create_subscription(TFMessage, "/tf", lambda m: self._on_tf(m, False), tf_qos(False)),
                node.create_subscription(TFMessage, "/tf_static", lambda m: self._on_tf(m, True), tf_qos(True)),
            ]

    # ------------------------------------------------------------------ own backend
    def _on_tf(self, msg: Any, static: bool) -> None:
        for ts in msg.transforms:
            try:
                stamp = stamp_ns(ts)
                if not static:
                    if self._newest_ns is not None and stamp < self._newest_ns - self.reset_ns:
                        self.buffer.clear(keep_static=True)
                        self.time_resets += 1
                        self._newest_ns = None
                    self._newest_ns = stamp if self._newest_ns is None else max(self._newest_ns, stamp)
                add_transform_stamped(self.buffer, ts, static)
                self.received += 1
            except (ValueError, TypeError, AttributeError) as e:
                self.malformed += 1
                self.last_error = f"{'/tf_static' if static else '/tf'}: transform skipped: {e}"

    # ------------------------------------------------------------------ lookups
    def lookup(self, target_frame: str, source_frame: str, stamp_ns: int | None = None) -> np.ndarray:
        """T_target_source (4x4) at `stamp_ns` (None: latest). Raises TransformError (ValueError)."""
        if self._tf2 is None:
            return self.buffer.lookup(target_frame, source_frame, stamp_ns)
        return self._lookup_tf2(target_frame, source_frame, stamp_ns)

    can_transform = TransformBuffer.can_transform  # True when `lookup` succeeds

    def _lookup_tf2(self, target: str, source: str, stamp_ns: int | None) -> np.ndarray:
        import tf2_ros
        from rclpy.time import Time

        when = Time() if stamp_ns is None else Time(nanoseconds=int(stamp_ns))
        try:
            ts = self._tf2.lookup_transform(target, source, when)
        except tf2_ros.ExtrapolationException as e:
            if self.tolerance_ns > 0 and stamp_ns is not None:  # within tolerance: the latest transform
                try:
                    ts = self._tf2.lookup_transform(target, source, Time())
                except tf2_ros.TransformException:
                    raise ExtrapolationError(target, source, str(e)) from None
                latest = stamp_ns(ts)
                if abs(int(stamp_ns) - latest) > self.tolerance_ns:
                    raise ExtrapolationError(target, source, str(e)) from None
            else:
                raise ExtrapolationError(target, source, str(e)) from None
        except tf2_ros.ConnectivityException as e:
            raise NotConnectedError(target, source, str(e)) from None
        except tf2_ros.LookupException as e:
            raise UnknownFrameError(target, source, str(e)) from None
        except tf2_ros.TransformException as e:
            raise TransformError(target, source, str(e)) from None
        return transform_to_matrix(ts.transform)

    def close(self) -> None:
        for sub in self._subs:
            self.node.destroy_subscription(sub)
        self._subs = []
        if self._tf2 is not None:
            self._tf2_listener.unregister()


class StaticTransformPublisher:
    """Puts frames into the TF tree on /tf_static (transient-local, as tf2_ros'
    StaticTransformBroadcaster): every `send` republishes all frames sent so far in one message,
    since a latched topic keeps only the last one."""

    def __init__(self, node: Any) -> None:
        from tf2_msgs.msg import TFMessage

        self._msg_type = TFMessage
        qos = tf_qos(static=True)
        qos.depth = 1
        self._pub = node.create_publisher(TFMessage, "/tf_static", qos)
        self._frames: dict[str, Any] = {}

    def send(self, parent: str, child: str, T: np.ndarray, stamp_ns: int = 0) -> None:
        """Publish `child`'s pose `T` (4x4) in `parent` (with the others sent before)."""
        self._frames[child] = matrix_to_transform_stamped(parent, child, stamp_ns, T)
        self._pub.publish(self._msg_type(transforms=list(self._frames.values())))
