# The input side of sgn_node that is about ROS graph plumbing, not frames: subscribing each input
# with a QoS that matches its publishers (as `ros2 bag record` does), re-subscribing when a new
# publisher offers less, reporting QoS mismatches by topic and policy, and telling the user which
# inputs are silent and which existing topics of the same type they may have meant. Frames are the
# assembler's business (assembler.py); this class only hands messages to the callbacks it is given.
"""`InputSubscriptions`: QoS-matched subscriptions of a node's inputs and silent-input warnings."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sgn_ros.ros.qos import did_you_mean, make_qos, subscription_qos_for

__all__ = ["InputSubscriptions", "type_name"]


def type_name(cls: type) -> str:
    """ROS type string of a message class (``sensor_msgs/msg/Image``)."""
    return f"{cls.__module__.split('.')[0]}/msg/{cls.__name__}"


def _policy(value: Any, choices: tuple[str, ...], fallback: str) -> str:
    name = str(getattr(value, "name", value)).lower()
    return name if name in choices else fallback


class InputSubscriptions:
    """The subscriptions of a node's inputs.

    node: the rclpy node (its graph queries and subscriptions are used).
    inputs: key -> (message type, topic) of every input.
    callbacks: key -> callable(msg) for each input (must not block).
    reliability: ``auto`` (each input subscribed once it has publishers, with the QoS they all
        offer, re-made when that changes), ``reliable`` or ``best_effort`` (fixed).
    depth: history depth of the subscriptions.
    warn: (text, kind) -> None, a throttled warning.
    """

    def __init__(
        self,
        node: Any,
        inputs: dict[str, tuple[type, str]],
        callbacks: dict[str, Callable[[Any], None]],
        reliability: str,
        depth: int,
        warn: Callable[[str, str], None],
    ) -> None:
        if reliability not in ("auto", "reliable", "best_effort"):
            raise ValueError(f"input_reliability: must be auto, reliable or best_effort, got {reliability!r}")
        self.node = node
        self.inputs = dict(inputs)
        self.callbacks = callbacks
        self.reliability = reliability
        self.depth = int(depth)
        self._warn = warn
        self._subs: dict[str, tuple[Any, tuple[str, str]]] = {}
        self.last_arrival: dict[str, float] = {}
        self.started = time.monotonic()

    def resolve(self, topic: str) -> str:
        """The fully qualified name of `topic` (namespace and remappings applied)."""
        return self.node.resolve_topic_name(topic) if hasattr(self.node, "resolve_topic_name") else topic

    def offered(self, topic: str) -> list[tuple[str, str]]:
        """(reliability, durability) offered by each publisher of `topic` (unknown policies are
        taken as the weakest: best_effort, volatile)."""
        return [(_policy(i.qos_profile.reliability, ("reliable", "best_effort"), "best_effort"),
                 _policy(i.qos_profile.durability, ("volatile", "transient_local"), "volatile"))
                for i in self.node.get_publishers_info_by_topic(self.resolve(topic))]

    def subscribed(self, key: str) -> tuple[str, str] | None:
        """(reliability, durability) of the input's subscription, None while it has none."""
        sub = self._subs.get(key)
        return None if sub is None else sub[1]

    def refresh(self) -> None:
        """Create or re-make the subscriptions whose wanted QoS changed (call periodically).

        WHY match: a reliable subscriber never hears a best-effort camera driver (and nothing says
        so), and a best-effort one loses large frames of a reliable replay on a loaded machine."""
        for key, (msg_type, topic) in self.inputs.items():
            if self.reliability == "auto":
                offered = self.offered(topic)
                if not offered:
                    continue
                wanted = subscription_qos_for(offered)
            else:
                wanted = (self.reliability, "volatile")
            current = self._subs.get(key)
            if current is not None and current[1] == wanted:
                continue
            if current is not None:
                self.node.destroy_subscription(current[0])
            qos = make_qos(wanted[0], self.depth, wanted[1], what=f"input QoS of {topic}")
            self._subs[key] = (self._subscribe(key, msg_type, topic, qos), wanted)
            self.node.get_logger().info(
                f"subscribed {self.resolve(topic)} ({type_name(msg_type)}) {wanted[0]} {wanted[1]}"
                + (" (matched to its publishers)" if self.reliability == "auto" else ""))

    def _subscribe(self, key: str, msg_type: type, topic: str, qos: Any) -> Any:
        """A subscription that records arrivals and reports a QoS mismatch by topic and policy."""
        try:
            from rclpy.event_handler import SubscriptionEventCallbacks
        except ImportError:  # Humble
            from rclpy.qos_event import SubscriptionEventCallbacks

        def incompatible(event: Any) -> None:
            policy = getattr(getattr(event, "last_policy_kind", None), "name", "?")
            self._warn(f"{self.resolve(topic)}: a publisher's QoS is incompatible with this subscription ({policy}, "
                       f"{event.total_count} so far): its messages are NOT received; set input_reliability "
                       f"(now {self.reliability}) to auto or match the publisher", f"qos_{key}")

        callback = self.callbacks[key]

        def on_message(msg: Any) -> None:
            self.last_arrival[key] = time.monotonic()
            callback(msg)

        events = SubscriptionEventCallbacks(incompatible_qos=incompatible)
        return self.node.create_subscription(msg_type, topic, on_message, qos, event_callbacks=events)

    def stale(self, timeout_s: float, keys: list[str] | None = None, now: float | None = None) -> list[str]:
        """Inputs (of `keys`, default all) without a message for `timeout_s` (since start if none)."""
        now = time.monotonic() if now is None else now
        return [k for k in (self.inputs if keys is None else keys)
                if now - self.last_arrival.get(k, self.started) > timeout_s]

    def describe_missing(self, keys: list[str]) -> str:
        """'<topic> (<type>, N publisher(s)) - did you mean <similar topics>?' for each input."""
        by_type: dict[str, list[str]] = {}
        for name, types in self.node.get_topic_names_and_types():
            for t in types:
                by_type.setdefault(t, []).append(name)
        parts = []
        for k in keys:
            msg_type, topic = self.inputs[k]
            resolved, tname = self.resolve(topic), type_name(msg_type)
            text = f"{resolved} ({tname}, {self.node.count_publishers(resolved)} publisher(s))"
            guesses = did_you_mean(resolved, by_type.get(tname, []))
            if guesses:
                text += f" - did you mean {' or '.join(guesses)}?"
            elif by_type.get(tname):
                text += f" - topics of that type: {sorted(by_type[tname])[:5]}"
            parts.append(text)
        return "; ".join(parts)

    def close(self) -> None:
        """Destroy every subscription."""
        for sub, _ in self._subs.values():
            self.node.destroy_subscription(sub)
        self._subs = {}
