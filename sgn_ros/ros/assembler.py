# The frame assembler of sgn_node, without rclpy: the messages of one camera frame (image,
# CameraInfo, the depth cue's messages) arrive on separate topics in any order; this matches them
# by stamp, hands on the NEWEST complete frame (older incomplete ones are dropped, as a live node
# must keep up), detects time going backwards (bag loop, simulation reset), keeps the history the
# temporal variants need (frames at offsets such as -12, -9, -6, -3) with their poses, and counts
# every message it receives as matched, dropped (with the reason) or still pending, for
# /diagnostics. Messages are opaque payloads with a stamp in ns, so the tests use plain objects.
"""`FrameAssembler`: stamp matching, time resets and temporal history of sgn_node's inputs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["AssembledFrame", "FrameAssembler", "InputCounts", "Neighbour", "DROP_REASONS"]

#: why a message was dropped (the keys of InputCounts.dropped)
DROP_REASONS = (
    "out_of_order",  # stamp behind the input's last one (by less than the reset threshold)
    "superseded",  # a newer frame completed first; this message was never part of a frame
    "evicted",  # the input's buffer was full; the oldest unmatched message made room
    "time_reset",  # still waiting when time jumped back: buffers cleared
    "rejected",  # refused by the caller (`reject`: unreadable header, wrong type, ...)
)


@dataclass
class AssembledFrame:
    """The messages of one camera frame; `messages[reference]` is the reference (image) message.

    `pose` is the grid frame's pose in the fixed (odom) frame, looked up when first needed;
    `cache` is free for the consumer (decoded arrays), kept with the frame in the history."""

    stamp_ns: int
    messages: dict[str, Any]
    complete_time: float
    pose: np.ndarray | None = None
    cache: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Neighbour:
    """A past frame of a temporal variant at `offset` frames (negative) from the current one.

    frame is None when it is missing (gap in the input, history too short, no pose); the caller
    then lets the current frame stand in, as the reference implementation does. current_to_past
    maps points in the current grid frame into the past grid frame (T_past_current)."""

    offset: int
    frame: AssembledFrame | None
    current_to_past: np.ndarray | None
    reason: str = ""


@dataclass
class InputCounts:
    """Per-input message counts; received == matched + sum(dropped.values()) + pending."""

    received: int = 0
    matched: int = 0
    pending: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))

    def balanced(self) -> bool:
        return self.received == self.matched + sum(self.dropped.values()) + self.pending


class _Entry:
    """One buffered message; `matched` once it has been part of a frame (counted once)."""

    __slots__ = ("stamp", "payload", "matched")

    def __init__(self, stamp: int, payload: Any) -> None:
        self.stamp, self.payload, self.matched = stamp, payload, False


class FrameAssembler:
    """Stamp matching of a node's inputs into frames. Thread-safe (subscription callbacks add while
    an inference thread takes).

    reference: the input whose stamp is the frame's (the camera image).
    required: the other inputs every frame needs (e.g. info, right_image, right_info).
    tolerance_s: the largest stamp difference of a message to the reference in one frame.
    reset_threshold_s: a stamp this far behind its input's last one is a time reset (bag loop,
        simulation restart): buffers and history are cleared; a smaller step back is out-of-order
        input and dropped.
    buffer_size: messages kept per input while waiting for their partners.
    temporal_offsets: frame offsets of the temporal variants' past frames (e.g. (-12, -9, -6, -3));
        empty: no history is kept.
    frame_period_s: camera period for locating past frames by stamp (None: estimated from the
        history, the median stamp step); past frames are found by stamp, so a gap in the input
        leaves that neighbour missing instead of shifting every later one.
    pose_lookup: stamp_ns -> 4x4 pose of the grid frame in the fixed frame (TF: odom <- grid), used
        when no odometry message is near the stamp; raises ValueError (TransformError) or returns
        None when unavailable.
    odometry_size: odometry poses kept (`add_odometry`).
    notify: (kind, text) called for problems worth a (throttled) warning: out_of_order,
        time_reset, evicted, pose. Called with the assembler's lock held: it must not call back.
    clock: time source of AssembledFrame.complete_time.
    """

    def __init__(
        self,
        reference: str,
        required: Sequence[str],
        tolerance_s: float,
        reset_threshold_s: float,
        buffer_size: int = 8,
        temporal_offsets: Sequence[int] = (),
        frame_period_s: float | None = None,
        pose_lookup: Callable[[int], np.ndarray | None] | None = None,
        odometry_size: int = 64,
        notify: Callable[[str, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        required = list(required)
        if reference in required or len(set(required)) != len(required):
            raise ValueError(
                f"FrameAssembler: inputs must be distinct, got reference {reference!r}, required {required}"
            )
        if "odom" in (reference, *required):
            raise ValueError("FrameAssembler: 'odom' is reserved for add_odometry")
        if not tolerance_s >= 0:
            raise ValueError(f"FrameAssembler: tolerance_s must be >= 0, got {tolerance_s}")
        if not reset_threshold_s > tolerance_s:
            raise ValueError(f"FrameAssembler: reset_threshold_s must be > tolerance_s, got {reset_threshold_s}")
        if buffer_size < 1 or odometry_size < 1:
            raise ValueError(f"FrameAssembler: buffer sizes must be >= 1, got {buffer_size}, {odometry_size}")
        offsets = tuple(int(o) for o in temporal_offsets)
        if any(o >= 0 for o in offsets):
            raise ValueError(f"FrameAssembler: temporal_offsets must be negative frame offsets, got {offsets}")
        if frame_period_s is not None and not frame_period_s > 0:
            raise ValueError(f"FrameAssembler: frame_period_s must be > 0 or None, got {frame_period_s}")
        self.reference = reference
        self.required = tuple(required)
        self.inputs = (reference, *required)
        self.tol_ns = int(round(tolerance_s * 1e9))
        self.reset_ns = int(round(reset_threshold_s * 1e9))
        self.buffer_size = int(buffer_size)
        self.odometry_size = int(odometry_size)
        self.temporal_offsets = offsets
        self.period_ns = None if frame_period_s is None else int(round(frame_period_s * 1e9))
        self.pose_lookup = pose_lookup
        self._notify = notify
        self._clock = clock
        self._lock = threading.RLock()
        self._buffers: dict[str, list[_Entry]] = {k: [] for k in (*self.inputs, "odom")}
        self._last_stamp: dict[str, int] = {}
        self._counts = {k: InputCounts() for k in (*self.inputs, "odom")}
        self._history: list[AssembledFrame] = []
        self._history_len = 1 + max((-o for o in offsets), default=0) if offsets else 0
        self._pending: AssembledFrame | None = None
        self._frames = {"complete": 0, "dropped": 0, "taken": 0, "time_resets": 0, "neighbours_missing": 0}
        self.last_problem = ""

    # ------------------------------------------------------------------ input
    def add(self, key: str, stamp_ns: int, payload: Any) -> AssembledFrame | None:
        """Add one message; returns the frame it completed (also left for `take`), else None."""
        if key not in self.inputs:
            raise ValueError(f"FrameAssembler.add: unknown input {key!r}; inputs are {list(self.inputs)}")
        with self._lock:
            if not self._accept(key, int(stamp_ns), payload):
                return None
            return self._assemble()

    def add_odometry(self, stamp_ns: int, pose: np.ndarray) -> None:
        """Add a pose of the grid frame in the fixed frame (nav_msgs/Odometry), 4x4."""
        pose = np.asarray(pose, dtype=np.float64)
        if pose.shape != (4, 4):
            raise ValueError(f"FrameAssembler.add_odometry: expected a 4x4 pose, got shape {pose.shape}")
        with self._lock:
            self._accept("odom", int(stamp_ns), pose)

    def reject(self, key: str, reason: str) -> None:
        """Count a message of `key` that the caller could not use (no stamp, malformed)."""
        if key not in self._counts:
            raise ValueError(f"FrameAssembler.reject: unknown input {key!r}")
        with self._lock:
            c = self._counts[key]
            c.received += 1
            c.dropped["rejected"] += 1
            self.last_problem = f"{key}: {reason}"

    def _accept(self, key: str, stamp: int, payload: Any) -> bool:
        counts = self._counts[key]
        counts.received += 1
        last = self._last_stamp.get(key)
        if last is not None and stamp < last:
            if last - stamp >= self.reset_ns:
                self._reset(f"{key}: time jumped back {(last - stamp) / 1e9:.3f} s")
            else:
                counts.dropped["out_of_order"] += 1
                behind = (last - stamp) / 1e9
                self._problem("out_of_order", f"{key}: stamp out of order ({behind:.3f} s behind); dropped")
                return False
        self._last_stamp[key] = stamp
        buf = self._buffers[key]
        buf.append(_Entry(stamp, payload))
        counts.pending += 1
        limit = self.odometry_size if key == "odom" else self.buffer_size
        while len(buf) > limit:
            old = buf.pop(0)
            if not old.matched:
                counts.pending -= 1
                counts.dropped["evicted"] += 1
                self._problem("evicted", f"{key}: message at {old.stamp / 1e9:.3f} s never matched; buffer full")
        return True

    def _problem(self, kind: str, text: str) -> None:
        self.last_problem = text
        if self._notify is not None:
            self._notify(kind, text)

    def _reset(self, why: str) -> None:
        for key, buf in self._buffers.items():
            counts = self._counts[key]
            for e in buf:
                if not e.matched:
                    counts.pending -= 1
                    counts.dropped["time_reset"] += 1
            buf.clear()
        self._last_stamp.clear()
        self._history.clear()
        self._frames["time_resets"] += 1
        self._problem("time_reset", f"{why}: time reset, input buffers and history cleared")

    def _match(self, key: str, entry: _Entry) -> None:
        if not entry.matched:
            entry.matched = True
            counts = self._counts[key]
            counts.pending -= 1
            counts.matched += 1

    def _nearest(self, key: str, stamp: int) -> _Entry | None:
        best, best_dt = None, self.tol_ns + 1
        for e in self._buffers[key]:
            dt = abs(e.stamp - stamp)
            if dt < best_dt:
                best, best_dt = e, dt
        return best

    def _assemble(self) -> AssembledFrame | None:
        """Form the newest frame whose messages are all there; older reference messages go."""
        refs = self._buffers[self.reference]
        for i in range(len(refs) - 1, -1, -1):
            ref = refs[i]
            parts: dict[str, _Entry] = {}
            for key in self.required:
                e = self._nearest(key, ref.stamp)
                if e is None:
                    break
                parts[key] = e
            else:
                break
        else:
            return None
        ref_counts = self._counts[self.reference]
        for old in refs[:i]:
            if not old.matched:
                ref_counts.pending -= 1
                ref_counts.dropped["superseded"] += 1
        del refs[: i + 1]
        self._match(self.reference, ref)
        for key, e in parts.items():
            self._match(key, e)
            buf, counts = self._buffers[key], self._counts[key]
            keep = []
            for other in buf:  # older partners that no frame used can no longer be used
                if other.stamp < e.stamp and not other.matched:
                    counts.pending -= 1
                    counts.dropped["superseded"] += 1
                else:
                    keep.append(other)
            buf[:] = keep
        frame = AssembledFrame(
            stamp_ns=ref.stamp,
            messages={self.reference: ref.payload, **{k: e.payload for k, e in parts.items()}},
            complete_time=self._clock(),
        )
        self._frames["complete"] += 1
        if self._history_len:
            if self._history and self._history[-1].stamp_ns == frame.stamp_ns:
                self._history.pop()  # the same frame sent again: one entry per camera frame
            self._history.append(frame)
            del self._history[: -self._history_len]
        if self._pending is not None:
            self._frames["dropped"] += 1
        self._pending = frame
        return frame

    # ------------------------------------------------------------------ output
    def has_pending(self) -> bool:
        with self._lock:
            return self._pending is not None

    def neighbours(self, frame: AssembledFrame) -> list[Neighbour]:
        """The past frames of `frame` as `take` gives them, looked up now: a consumer that starts
        later (sgn_node's decode stage) sees odometry that arrived after the frame completed."""
        with self._lock:
            return self._neighbours(frame)

    def take(self) -> tuple[AssembledFrame, list[Neighbour]] | None:
        """The newest complete frame not yet taken (None: none) and, for temporal variants, its
        past frames in the order of temporal_offsets. A frame replaced before being taken is
        counted as dropped (the consumer was busy)."""
        with self._lock:
            frame, self._pending = self._pending, None
            if frame is None:
                return None
            self._frames["taken"] += 1
            return frame, self._neighbours(frame)

    def pose(self, frame: AssembledFrame) -> np.ndarray | None:
        """The frame's pose in the fixed frame: the nearest odometry within the tolerance, else
        pose_lookup(stamp); cached in the frame. None (and a `pose` notification) if neither has it."""
        with self._lock:
            return self._pose(frame)[0]

    def _pose(self, frame: AssembledFrame) -> tuple[np.ndarray | None, str]:
        if frame.pose is not None:
            return frame.pose, ""
        e = self._nearest("odom", frame.stamp_ns)
        if e is not None:
            self._match("odom", e)
            frame.pose = e.payload
            return frame.pose, ""
        t = f"{frame.stamp_ns / 1e9:.3f} s"
        if self.pose_lookup is None:
            return None, f"no odometry within {self.tol_ns / 1e9:.3f} s of {t}"
        try:
            pose = self.pose_lookup(frame.stamp_ns)
        except ValueError as err:  # TransformError names both frames and why
            return None, f"no pose at {t}: {err}"
        if pose is None:
            return None, f"no pose at {t}"
        frame.pose = np.asarray(pose, dtype=np.float64)
        return frame.pose, ""

    def _period(self) -> int | None:
        if self.period_ns is not None:
            return self.period_ns
        steps = np.diff([f.stamp_ns for f in self._history])
        steps = steps[steps > 0]
        return int(np.median(steps)) if len(steps) else None

    def _neighbours(self, frame: AssembledFrame) -> list[Neighbour]:
        if not self.temporal_offsets:
            return []
        out: list[Neighbour] = []
        period = self._period()
        pose, why = self._pose(frame)
        for off in self.temporal_offsets:
            past, reason, pose_problem = None, "", False
            if period is None:
                reason = "history too short to know the frame period"
            elif pose is None:
                reason, pose_problem = why, True
            else:
                want = frame.stamp_ns + off * period
                cands = [f for f in self._history if abs(f.stamp_ns - want) * 2 <= period]
                if not cands:
                    reason = f"no frame near {want / 1e9:.3f} s (offset {off}) in the history"
                else:
                    cand = min(cands, key=lambda f: abs(f.stamp_ns - want))
                    past_pose, reason = self._pose(cand)
                    pose_problem = past_pose is None
                    past = cand if past_pose is not None else None
            if past is None:
                self._frames["neighbours_missing"] += 1
                if pose_problem:
                    self._problem("pose", reason)
                else:
                    self.last_problem = reason
                out.append(Neighbour(off, None, None, reason))
            else:
                out.append(Neighbour(off, past, np.linalg.inv(past.pose) @ pose))
        return out

    # ------------------------------------------------------------------ statistics
    def counts(self) -> dict[str, InputCounts]:
        """Snapshot of the per-input counts (inputs, then 'odom')."""
        with self._lock:
            return {
                k: InputCounts(c.received, c.matched, c.pending, dict(c.dropped)) for k, c in self._counts.items()
            }

    def frame_counts(self) -> dict[str, int]:
        """complete, dropped (replaced before taken), taken, time_resets, neighbours_missing."""
        with self._lock:
            return dict(self._frames)

    def history(self) -> list[AssembledFrame]:
        """The kept history, oldest first (temporal variants only)."""
        with self._lock:
            return list(self._history)
